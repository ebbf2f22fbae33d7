//! `latchkey admin`: changes made directly in a deployment's database. Running servers see new
//! clients at once and new signing keys within a minute (they reload keys periodically).

use latchkey_core::oauth::{ClientOrigin, NewClient};
use latchkey_server::{ServeConfig, ServeOptions};

use latchkey_client::cli::exit::{CONFIG, CliError, INTERNAL};

use crate::cli::{AdminArgs, AdminCommand, ClientsCommand, KeysCommand};

pub async fn run(args: AdminArgs) -> Result<(), CliError> {
    let file = match &args.serve.config {
        Some(path) => ServeOptions::from_toml_file(path).map_err(|e| CliError::new(CONFIG, e))?,
        None => ServeOptions::default(),
    };
    let config =
        ServeConfig::try_from(args.serve.options.or(file)).map_err(|e| CliError::new(CONFIG, e))?;
    let service = latchkey_server::admin_service(&config)
        .await
        .map_err(|e| CliError::new(INTERNAL, e))?;
    match args.command {
        AdminCommand::Keys(KeysCommand::Rotate) => {
            let kids = service
                .rotate_signing_key()
                .await
                .map_err(|e| CliError::new(INTERNAL, e))?;
            println!(
                "Added signing keys {} (EdDSA, RS256, ES256). Running servers sign with them \
                 within a minute; the previous keys stay in the JWKS until the tokens they \
                 signed have expired.",
                kids.join(", ")
            );
        }
        AdminCommand::Clients(ClientsCommand::Create {
            name,
            redirect_uris,
            public,
        }) => {
            let (client, secret) = service
                .create_oauth_client(NewClient {
                    name,
                    redirect_uris,
                    confidential: !public,
                    origin: ClientOrigin::Operator,
                    registration_token: None,
                    post_logout_redirect_uris: Vec::new(),
                    id_token_alg: None,
                    access_token_alg: None,
                })
                .await
                .map_err(|e| CliError::new(CONFIG, e))?;
            println!("client_id: {}", client.id);
            if let Some(secret) = secret {
                println!("client_secret: {}", secret.expose_secret());
                eprintln!("Store the secret now: it is not shown again.");
            }
        }
    }
    Ok(())
}
