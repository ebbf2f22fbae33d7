//! `sessions`: where the logged-in person is signed in, and signing one of those out.

use serde_json::json;

use super::{SessionsArgs, commands::issuer_client, exit::CliError, keys::minute};
use crate::AppIdentity;

pub async fn run(app: &AppIdentity, args: SessionsArgs) -> Result<(), CliError> {
    let client = issuer_client(app, &args.issuer)?;
    if let Some(id) = &args.revoke {
        let listed = client.sessions().await?;
        let current = listed.sessions.iter().any(|s| s.current && s.id == *id)
            || listed.logins.iter().any(|l| l.current && l.id == *id);
        client.end_session(id).await?;
        println!("Signed out {id}.");
        if current {
            eprintln!(
                "That was this login: run `{} login` to log in again.",
                app.name
            );
        }
        return Ok(());
    }
    let listed = client.sessions().await?;
    if args.json {
        println!("{}", json!(listed));
        return Ok(());
    }
    let marked = |current: bool, id: &str| {
        if current {
            format!("* {id}")
        } else {
            format!("  {id}")
        }
    };
    let mut rows: Vec<[String; 5]> = listed
        .sessions
        .iter()
        .map(|s| {
            [
                marked(s.current, &s.id),
                format!("browser: {}", s.device),
                s.ip.clone().unwrap_or_default(),
                minute(&s.created_at),
                minute(&s.last_seen_at),
            ]
        })
        .collect();
    rows.extend(listed.logins.iter().map(|l| {
        [
            marked(l.current, &l.id),
            format!("{} ({})", l.client_name, l.method),
            l.device_name.clone().unwrap_or_default(),
            minute(&l.created_at),
            minute(&l.last_used_at),
        ]
    }));
    if rows.is_empty() {
        eprintln!(
            "No browser sessions or logins: API keys are listed by `{} keys list`.",
            app.name
        );
        return Ok(());
    }
    super::table::print(["ID", "WHAT", "WHERE", "SINCE", "LAST USED"], &rows);
    eprintln!(
        "`*` marks this credential. `{} sessions --revoke ID` signs one out.",
        app.name
    );
    Ok(())
}
