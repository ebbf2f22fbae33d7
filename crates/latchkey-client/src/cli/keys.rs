//! `keys create|list|revoke`: the logged-in account's API keys from the terminal.

use std::io::{BufRead, IsTerminal, Write};

use latchkey_proto::wire::{ApiKeyCreateRequest, ApiKeyInfo};
use serde_json::json;

use super::{
    KeysCreateArgs, KeysListArgs, KeysRevokeArgs,
    commands::issuer_client,
    exit::{CONFIG, CliError},
};
use crate::{AppIdentity, CredentialSource, keys::find_key};

/// `--expires`: a number and a unit (`45s`, `90m`, `12h`, `30d`, `2w`, `1y`), in seconds.
pub fn parse_lifetime(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let unit_secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        "y" => 365 * 86_400,
        _ => 0,
    };
    match number.parse::<u64>() {
        Ok(n) if n > 0 && unit_secs > 0 => n
            .checked_mul(unit_secs)
            .ok_or_else(|| format!("\"{text}\" is too long")),
        _ => Err(format!(
            "\"{text}\" is not a lifetime: use a number and a unit, as in 45s, 90m, 12h, 30d, 2w or 1y"
        )),
    }
}

pub async fn create(app: &AppIdentity, args: KeysCreateArgs) -> Result<(), CliError> {
    let expires_in = args
        .expires
        .as_deref()
        .map(parse_lifetime)
        .transpose()
        .map_err(|e| CliError::new(CONFIG, e))?;
    let client = issuer_client(app, &args.issuer)?;
    let created = client
        .create_api_key(&ApiKeyCreateRequest {
            name: Some(args.name),
            expires_in,
            scopes: (!args.scopes.is_empty()).then_some(args.scopes),
            org: args.org,
            ..ApiKeyCreateRequest::default()
        })
        .await?;
    if args.json {
        println!("{}", json!(created));
        return Ok(());
    }
    // The key alone on stdout (`KEY=$(… keys create …)`), the words on stderr.
    println!("{}", created.api_key);
    eprintln!(
        "Created the key \"{}\" ({}…){}{}. It is shown only this once: store it now.",
        created.info.name,
        created.info.key_prefix,
        created
            .info
            .expires_at
            .as_deref()
            .map(|at| format!(", expiring {}", minute(at)))
            .unwrap_or_default(),
        created
            .info
            .scopes
            .as_ref()
            .map(|s| format!(", limited to {}", s.join(" ")))
            .unwrap_or_default(),
    );
    Ok(())
}

pub async fn list(app: &AppIdentity, args: KeysListArgs) -> Result<(), CliError> {
    let client = issuer_client(app, &args.issuer)?;
    let (me, keys) = client.api_keys().await?;
    if args.json {
        println!("{}", json!({ "api_keys": keys }));
        return Ok(());
    }
    if keys.is_empty() {
        eprintln!(
            "No API keys on {}. `{} keys create --name <what it is for>` makes one.",
            me.email, app.name
        );
        return Ok(());
    }
    let org = |key: &ApiKeyInfo| {
        if key.org_id == me.org.id {
            me.org.slug.clone()
        } else {
            key.org_id.clone()
        }
    };
    let rows: Vec<[String; 8]> = keys
        .iter()
        .map(|k| {
            [
                k.name.clone(),
                format!("{}…", k.key_prefix),
                org(k),
                day(&k.created_at),
                k.last_used_at.as_deref().map_or("never".into(), day),
                k.usage_count.to_string(),
                match (&k.expires_at, k.expired) {
                    (_, true) => "expired".into(),
                    (Some(at), false) => day(at),
                    (None, false) => "never".into(),
                },
                k.scopes.as_ref().map_or("all".into(), |s| s.join(" ")),
            ]
        })
        .collect();
    super::table::print(
        [
            "NAME",
            "KEY",
            "ORG",
            "CREATED",
            "LAST USED",
            "USES",
            "EXPIRES",
            "SCOPES",
        ],
        &rows,
    );
    Ok(())
}

/// The date of an RFC 3339 time (in UTC), which is what a listing needs.
fn day(rfc3339: &str) -> String {
    rfc3339.get(..10).unwrap_or(rfc3339).to_owned()
}

/// An RFC 3339 time in UTC to the minute: `2027-01-02 17:43 UTC`.
pub(super) fn minute(rfc3339: &str) -> String {
    match (rfc3339.get(..10), rfc3339.get(11..16)) {
        (Some(date), Some(time)) if rfc3339.ends_with('Z') => format!("{date} {time} UTC"),
        _ => rfc3339.to_owned(),
    }
}

pub async fn revoke(app: &AppIdentity, args: KeysRevokeArgs) -> Result<(), CliError> {
    let client = issuer_client(app, &args.issuer)?;
    let (me, keys) = client.api_keys().await?;
    let key = find_key(&keys, &args.key)?;
    let described = format!("\"{}\" ({}…)", key.name, key.key_prefix);
    if !args.yes {
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            return Err(CliError::new(
                CONFIG,
                format!("revoking {described} needs a confirmation"),
            )
            .with_hint(format!(
                "pass --yes: `{} keys revoke {} --yes`",
                app.name, key.id
            )));
        }
        eprint!("Revoke the key {described}? Programs using it will be refused. [y/N] ");
        std::io::stderr().flush().ok();
        let mut answer = String::new();
        stdin
            .lock()
            .read_line(&mut answer)
            .map_err(|e| CliError::new(CONFIG, e))?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            eprintln!("Nothing was revoked.");
            return Ok(());
        }
    }
    client.revoke_api_key(&key.id).await?;
    println!("Revoked the key {described}.");
    let ours = matches!(
        &me.credential,
        latchkey_proto::wire::CredentialInfo::ApiKey { key_id, .. } if *key_id == key.id
    );
    if ours {
        let place = match client.credential()?.map(|c| c.source) {
            Some(CredentialSource::Env(var)) => format!("{var} holds it"),
            _ => "this CLI is logged in with it".to_owned(),
        };
        eprintln!("note: {place}; run `{} login` to log in again", app.name);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_shown_to_the_minute() {
        assert_eq!(
            minute("2027-01-02T17:43:41.92535811Z"),
            "2027-01-02 17:43 UTC"
        );
        assert_eq!(minute("not a time"), "not a time");
        assert_eq!(day("2027-01-02T17:43:41Z"), "2027-01-02");
    }

    #[test]
    fn lifetimes_need_a_number_and_a_unit() {
        assert_eq!(parse_lifetime("45s"), Ok(45));
        assert_eq!(parse_lifetime("90m"), Ok(5400));
        assert_eq!(parse_lifetime("12h"), Ok(43_200));
        assert_eq!(parse_lifetime("30d"), Ok(30 * 86_400));
        assert_eq!(parse_lifetime("2w"), Ok(14 * 86_400));
        assert_eq!(parse_lifetime("1y"), Ok(365 * 86_400));
        for bad in [
            "30",
            "d",
            "0d",
            "-1d",
            "1.5d",
            "30 days",
            "",
            "99999999999999999999y",
        ] {
            assert!(parse_lifetime(bad).is_err(), "{bad:?}");
        }
    }
}
