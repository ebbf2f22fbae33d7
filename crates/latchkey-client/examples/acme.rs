//! A tool called `acme` embedding latchkey's login: its own name, env vars (`ACME_API_KEY`,
//! `ACME_ISSUER`, …), key prefix and keychain service (`acme:<issuer-host>:<user-id>`).
//!
//! It logs in as its own public OAuth client, so the consent page says "Authorize acme CLI?":
//! register it in the server's config file,
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
//! `ACME_ISSUER=http://127.0.0.1:8080 cargo run -p latchkey-client --example acme`

use latchkey_client::{AppIdentity, Client, LoginEvent, LoginMethod, LoginOptions, Settings};
use latchkey_proto::KeyPrefix;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut app = AppIdentity::new("acme", "https://auth.acme.dev");
    app.key_prefix = KeyPrefix::parse("acme")?;
    app.client_id = "acme-cli".into();
    let config_dir = dirs::config_dir().ok_or("no config directory")?;
    let client = Client::new(Settings::resolve(
        app,
        |k| std::env::var(k).ok(),
        config_dir,
        None,
        None,
    )?)?;
    if let Some(credential) = client.credential()? {
        println!("Already logged in (key from {})", credential.source);
        return Ok(());
    }
    let options = LoginOptions {
        open_browser: true,
        utm_source: Some("acme-cli".into()),
    };
    let mut show = |event: LoginEvent<'_>| {
        if let LoginEvent::Started { url, code, .. } = event {
            eprintln!(
                "Open {url}\nand check that it shows {}",
                code.unwrap_or("no code")
            );
        }
    };
    let outcome = client
        .login(
            LoginMethod::Auto,
            options,
            &|url| open::that(url).is_ok(),
            &mut show,
        )
        .await?;
    println!("Logged in to acme as {}", outcome.me.email);
    Ok(())
}
