//! `orgs [list|create|invite|members|leave]`: the logged-in person's organizations from the
//! terminal.

use serde_json::json;

use super::{
    OrgsCreateArgs, OrgsInviteArgs, OrgsLeaveArgs, OrgsListArgs, OrgsMembersArgs,
    commands::issuer_client, exit::CliError, table,
};
use crate::AppIdentity;

/// The UTC date of a Unix time.
fn date(unix: i64) -> String {
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
