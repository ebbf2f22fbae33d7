//! The `latchkey` binary: `serve` runs the auth service, `gate` the auth proxy, `admin` the
//! deployment's chores; `login`, `status`, `logout`, `token` and `switch` are the reference CLI,
//! `latchkey-client`'s command set exactly as another tool embeds it.

mod admin;
mod cli;
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
            return ExitCode::from(latchkey_client::cli::exit::INTERNAL);
        }
    };
    match runtime.block_on(cli::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => e.report(&cli::latchkey()),
    }
}
