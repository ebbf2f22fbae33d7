//! A tool called `acme` with latchkey's whole login command set (`acme login|status|logout|token
//! |switch`), in its own name: env vars `ACME_ISSUER`, `ACME_API_KEY`, …, keys `acme_…`, the
//! keychain service `acme:<issuer-host>:<user-id>`, `.acme.toml` project files.
//!
//! It logs in as its own public OAuth client, so the consent page says "Authorize acme CLI?".
//! Register it in the server's config file,
//!
//! ```toml
//! [[oauth_clients]]
//! id = "acme-cli"
//! name = "acme CLI"
//! redirect_uris = ["http://127.0.0.1/callback", "http://[::1]/callback"]
//! ```
//!
//! (or `latchkey admin clients create --public --name "acme CLI" --redirect-uri
//! http://127.0.0.1/callback` and use the id it prints). Then, against a local
//! `latchkey serve --dev --key-prefix acme --config acme.toml`:
//! `cargo run -p latchkey-client --features cli --example acme -- login`

use latchkey_client::{AppIdentity, InvalidKeyPrefix, cli};

#[derive(clap::Parser)]
#[command(name = "acme", version, about = "Acme's command line")]
struct Acme {
    #[command(flatten)]
    global: cli::GlobalArgs,
    #[command(subcommand)]
    command: cli::AuthCommand,
}

fn main() -> Result<std::process::ExitCode, InvalidKeyPrefix> {
    let app = AppIdentity::new("acme", "http://127.0.0.1:8080")
        .with_client_id("acme-cli")
        .with_key_prefix("acme")?;
    let acme: Acme = cli::parse(&app);
    Ok(cli::main(app, acme.global, acme.command))
}
