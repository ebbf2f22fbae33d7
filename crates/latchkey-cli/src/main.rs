//! The `latchkey` binary: `serve` runs the auth service; `login`, `status`, `logout` and `token`
//! are the reference CLI, built on `latchkey-client` exactly as another tool would embed it.

mod admin;
mod auth_commands;
mod cli;
mod exit;
mod gate;
mod serve;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::Cli;

/// jemalloc leaves the pages of a connection's 8 KiB buffers that nothing wrote unbacked (glibc's
/// inline chunk headers touch them), and halves the idle server's RSS (BENCHMARKS.md).
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: could not start the async runtime: {e}");
            return ExitCode::from(exit::INTERNAL);
        }
    };
    match runtime.block_on(cli::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => e.report(),
    }
}
