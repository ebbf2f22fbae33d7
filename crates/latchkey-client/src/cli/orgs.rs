//! `orgs [list|create|invite|members|leave]`: the logged-in person's organizations from the
//! terminal.

use std::io::{BufRead, IsTerminal, Write};

use latchkey_proto::wire::OrgMembershipInfo;
use serde_json::json;

use super::{
    OrgsCreateArgs, OrgsInviteArgs, OrgsLeaveArgs, OrgsListArgs, OrgsMembersArgs,
    commands::issuer_client,
    exit::{CONFIG, CliError},
    table,
};
use crate::{AppIdentity, Client};

/// The org an answer to the picker names: its number in the list (1 first), its slug, or
/// nothing for the first (the personal org).
fn picked<'a>(answer: &str, orgs: &'a [OrgMembershipInfo]) -> Option<&'a OrgMembershipInfo> {
    let answer = answer.trim();
    if answer.is_empty() {
        return orgs.first();
    }
    match answer.parse::<usize>() {
        Ok(n) => n.checked_sub(1).and_then(|i| orgs.get(i)),
        Err(_) => orgs.iter().find(|o| o.slug == answer),
    }
}

/// After a login without `--org`, by someone in several orgs: at a terminal, asks which one
/// the login acts for (and trades for it); elsewhere, refuses with the list and what to run,
/// the login itself stored and acting for the personal org.
pub async fn choose_after_login(client: &Client) -> Result<(), CliError> {
    let (_, orgs) = client.orgs().await?;
    if orgs.len() < 2 {
        return Ok(());
    }
    let tool = &client.settings().app.name;
    let slugs: Vec<&str> = orgs.iter().map(|o| o.slug.as_str()).collect();
    if !(std::io::stdin().is_terminal() && std::io::stderr().is_terminal()) {
        return Err(CliError::new(
            CONFIG,
            format!(
                "you belong to {} orgs ({}); this login is stored and acts for your personal \
                 org {}",
                orgs.len(),
                slugs.join(", "),
                slugs[0]
            ),
        )
        .with_hint(format!(
            "choose one with `{tool} switch --org <org>`, or log in with `{tool} login --org <org>`"
        )));
    }
    eprintln!(
        "You belong to {} orgs. Which should this login act for?",
        orgs.len()
    );
    for (n, org) in orgs.iter().enumerate() {
        let kind = if org.personal { "personal, " } else { "" };
        eprintln!("  {}) {} ({kind}{})", n + 1, org.slug, org.role);
    }
    let mut stdin = std::io::stdin().lock();
    for _ in 0..3 {
        eprint!("Org [1]: ");
        std::io::stderr().flush().ok();
        let mut answer = String::new();
        if stdin.read_line(&mut answer).unwrap_or(0) == 0 {
            break;
        }
        match picked(&answer, &orgs) {
            Some(org) if org.personal => return Ok(()),
            Some(org) => return super::commands::use_org(client, &org.slug).await,
            None => eprintln!(
                "Answer a number from 1 to {}, or an org's slug.",
                orgs.len()
            ),
        }
    }
    Err(CliError::new(
        CONFIG,
        "no org chosen; the login acts for your personal org",
    )
    .with_hint(format!("choose one later with `{tool} switch --org <org>`")))
}

/// The UTC date of a Unix time.
pub(super) fn date(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .map(|t| t.date().to_string())
        .unwrap_or_else(|_| unix.to_string())
}

pub async fn list(app: &AppIdentity, args: OrgsListArgs) -> Result<(), CliError> {
    let client = issuer_client(app, &args.issuer)?;
    let (me, orgs) = client.orgs().await?;
    let (acting, _) = me.acting_org();
    if args.json {
        let orgs: Vec<_> = orgs
            .iter()
            .map(|o| {
                json!({"id": o.id, "slug": o.slug, "name": o.name, "role": o.role,
                    "personal": o.personal, "acting": o.id == *acting})
            })
            .collect();
        println!("{}", json!({ "orgs": orgs }));
        return Ok(());
    }
    let rows: Vec<[String; 4]> = orgs
        .iter()
        .map(|o| {
            let marker = if o.id == *acting { "*" } else { " " };
            let kind = if o.personal { "personal" } else { "" };
            [
                format!("{marker} {}", o.slug),
                o.name.clone(),
                o.role.clone(),
                kind.to_owned(),
            ]
        })
        .collect();
    table::print(["  ORG", "NAME", "ROLE", ""], &rows);
    Ok(())
}

pub async fn create(app: &AppIdentity, args: OrgsCreateArgs) -> Result<(), CliError> {
    let client = issuer_client(app, &args.issuer)?;
    let org = client.create_org(&args.slug, args.name).await?;
    println!(
        "Created the org {} (\"{}\"); you are its owner.",
        org.slug, org.name
    );
    eprintln!(
        "Invite people: `{} orgs invite <email> --org {}`",
        app.name, org.slug
    );
    Ok(())
}

pub async fn invite(app: &AppIdentity, args: OrgsInviteArgs) -> Result<(), CliError> {
    let client = issuer_client(app, &args.issuer)?;
    let invitation = client
        .invite(&args.org, &args.email, Some(args.role))
        .await?;
    println!(
        "Invited {} to {} as {}: they get a link by mail, valid until {}.",
        invitation.email,
        args.org,
        invitation.role,
        date(invitation.expires_at),
    );
    Ok(())
}

pub async fn members(app: &AppIdentity, args: OrgsMembersArgs) -> Result<(), CliError> {
    let client = issuer_client(app, &args.issuer)?;
    let listed = client.org_members(&args.org).await?;
    if args.json {
        println!("{}", json!(listed));
        return Ok(());
    }
    let rows: Vec<[String; 3]> = listed
        .members
        .iter()
        .map(|m| [m.email.clone(), m.role.clone(), date(m.joined_at)])
        .collect();
    table::print(["EMAIL", "ROLE", "JOINED"], &rows);
    Ok(())
}

pub async fn leave(app: &AppIdentity, args: OrgsLeaveArgs) -> Result<(), CliError> {
    let client = issuer_client(app, &args.issuer)?;
    client.leave_org(&args.org).await?;
    println!("You left {}; your API keys in it no longer work.", args.org);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn org(slug: &str, personal: bool) -> OrgMembershipInfo {
        OrgMembershipInfo {
            id: format!("org_{slug}"),
            slug: slug.into(),
            name: slug.into(),
            role: "member".into(),
            personal,
        }
    }

    #[test]
    fn the_picker_takes_a_number_a_slug_or_nothing_for_the_personal_org() {
        let orgs = [org("ann", true), org("acme", false), org("beta", false)];
        let slug = |answer: &str| picked(answer, &orgs).map(|o| o.slug.as_str());
        assert_eq!(slug("\n"), Some("ann"));
        assert_eq!(slug(" 2 \n"), Some("acme"));
        assert_eq!(slug("beta"), Some("beta"));
        for bad in ["0", "4", "-1", "acm", "ACME", "1.5"] {
            assert_eq!(slug(bad), None, "{bad}");
        }
    }
}
