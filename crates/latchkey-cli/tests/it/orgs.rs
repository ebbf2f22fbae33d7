//! Organizations over the JSON API and the invitation page: an owner creates, renames and
//! deletes one; people are invited by mail and join; roles decide who manages whom; an org
//! keeps an owner; removing a member or deleting the org cuts off its API keys. Every refusal
//! is tried and changes nothing.

use anyhow::{Context, Result};
use latchkey_testkit::{Person, Server, unique_email};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::process::Command;

use crate::{PASSWORD, bin};

/// Someone calling the JSON API with an API key of theirs.
struct Caller {
    http: reqwest::Client,
    base: String,
    key: String,
    user_id: String,
    person: Person,
    email: String,
}

impl Caller {
    async fn new(server: &Server, tag: &str) -> Result<Self> {
        let email = unique_email(tag);
        let person = Person::verified_account(server, &email, PASSWORD).await?;
        let key = person.new_api_key("orgs").await?;
        let user_id = person.me().await?["user_id"]
            .as_str()
            .context("user_id")?
            .to_owned();
        Ok(Self {
            http: reqwest::Client::new(),
            base: server.url.clone(),
            key,
            user_id,
            person,
            email,
        })
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(StatusCode, Value)> {
        self.call_with(&self.key, method, path, body).await
    }

    async fn call_with(
        &self,
        key: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(StatusCode, Value)> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await?;
        let status = response.status();
        let text = response.text().await?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }

    async fn get(&self, path: &str) -> Result<(StatusCode, Value)> {
        self.call(Method::GET, path, None).await
    }
}

/// A refusal: `status`, with the `{error, message}` body and this `error` code.
fn refused(answer: &(StatusCode, Value), status: StatusCode, error: &str) {
    assert_eq!(answer.0, status, "{}", answer.1);
    assert_eq!(answer.1["error"], error, "{}", answer.1);
    assert!(
        answer.1["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{}",
        answer.1
    );
}

fn unique_slug(tag: &str) -> String {
    unique_email(tag)
        .split('@')
        .next()
        .unwrap_or(tag)
        .to_owned()
}

/// The newest invitation link mailed to `email`.
fn invitation_link(server: &Server, email: &str) -> Result<String> {
    let mails = server.outbox()?;
    let mail = mails
        .iter()
        .rev()
        .find(|m| m.to == email && m.text.contains("/invitations/accept?token="))
        .context("no invitation mailed")?;
    mail.text
        .split_whitespace()
        .find(|w| w.contains("/invitations/accept?token="))
        .map(str::to_owned)
        .context("no link in the mail")
}

/// `who` opens the invitation link and joins.
async fn join(who: &Caller, link: &str) -> Result<latchkey_testkit::Page> {
    let page = who.person.get(link).await?;
    anyhow::ensure!(page.status == StatusCode::OK, "{}", page.html);
    who.person
        .post_form(
            "/invitations/accept",
            &[
                ("csrf", &page.csrf()?),
                ("token", &page.input("token").context("token")?),
            ],
        )
        .await
}

#[tokio::test]
async fn an_owner_creates_renames_and_deletes_an_org_and_strangers_see_nothing() -> Result<()> {
    let server = Server::start(bin()).await?;
    let ann = Caller::new(&server, "ann").await?;
    let bob = Caller::new(&server, "bob").await?;
    let slug = unique_slug("acme");

    let created = ann
        .call(
            Method::POST,
            "/v1/orgs",
            Some(json!({"slug": slug, "name": "Acme Tools"})),
        )
        .await?;
    assert_eq!(created.0, StatusCode::CREATED, "{}", created.1);
    assert_eq!(created.1["role"], "owner");
    assert_eq!(created.1["personal"], false);
    let (_, listed) = ann.get("/v1/orgs").await?;
    let orgs = listed["orgs"].as_array().context("orgs")?;
    assert_eq!(orgs.len(), 2);
    assert_eq!(orgs[0]["personal"], true, "the personal org first");
    assert_eq!(orgs[1]["slug"], slug.as_str());

    // Bad slugs and names, a taken slug, unknown fields: refused, nothing made.
    for body in [
        json!({"slug": "Acme"}),
        json!({"slug": "ab"}),
        json!({"slug": "acme--x"}),
        json!({"slug": "ok-slug", "name": ""}),
    ] {
        refused(
            &bob.call(Method::POST, "/v1/orgs", Some(body)).await?,
            StatusCode::BAD_REQUEST,
            "invalid_request",
        );
    }
    refused(
        &bob.call(Method::POST, "/v1/orgs", Some(json!({"slug": slug})))
            .await?,
        StatusCode::CONFLICT,
        "org_exists",
    );
    refused(
        &bob.call(
            Method::POST,
            "/v1/orgs",
            Some(json!({"slug": "fine-slug", "owner": "x"})),
        )
        .await?,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );
    assert_eq!(
        bob.get("/v1/orgs").await?.1["orgs"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );

    // Someone not in the org cannot tell it exists.
    let path = format!("/v1/orgs/{slug}");
    refused(&bob.get(&path).await?, StatusCode::NOT_FOUND, "not_found");
    refused(
        &bob.call(Method::PATCH, &path, Some(json!({"name": "Mine"})))
            .await?,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    refused(
        &bob.call(Method::DELETE, &path, None).await?,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    let key_elsewhere = bob
        .call(
            Method::POST,
            "/v1/api-keys",
            Some(json!({"name": "x", "org": slug})),
        )
        .await?;
    assert_eq!(
        key_elsewhere.0,
        StatusCode::FORBIDDEN,
        "{}",
        key_elsewhere.1
    );

    // The owner renames it, makes a key in it; the personal org cannot be deleted.
    let renamed = ann
        .call(Method::PATCH, &path, Some(json!({"name": "Acme, Inc."})))
        .await?;
    assert_eq!(renamed.1["name"], "Acme, Inc.", "{}", renamed.1);
    let personal = orgs[0]["slug"].as_str().context("slug")?;
    refused(
        &ann.call(Method::DELETE, &format!("/v1/orgs/{personal}"), None)
            .await?,
        StatusCode::FORBIDDEN,
        "personal_org",
    );
    let org_key = ann
        .call(
            Method::POST,
            "/v1/api-keys",
            Some(json!({"name": "ci", "org": slug})),
        )
        .await?;
    assert_eq!(org_key.0, StatusCode::CREATED, "{}", org_key.1);
    assert_eq!(org_key.1["org_id"], created.1["id"]);
    let org_key = org_key.1["api_key"].as_str().context("api_key")?.to_owned();
    // `/v1/me` says which org a credential acts for, and the role there.
    let (status, me) = ann.call_with(&org_key, Method::GET, "/v1/me", None).await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["acting_org"]["slug"], slug.as_str(), "{me}");
    assert_eq!(me["acting_org"]["role"], "owner");
    assert_eq!(
        me["org"]["slug"], orgs[0]["slug"],
        "`org` stays the personal org"
    );
    let (_, own) = ann.get("/v1/me").await?;
    assert_eq!(own["acting_org"]["personal"], true, "{own}");

    // A key limited to scopes without `orgs` cannot use the org API.
    let narrow = ann
        .call(
            Method::POST,
            "/v1/api-keys",
            Some(json!({"name": "narrow", "scopes": ["read"]})),
        )
        .await?;
    let narrow = narrow.1["api_key"].as_str().context("api_key")?.to_owned();
    refused(
        &ann.call_with(&narrow, Method::GET, "/v1/orgs", None)
            .await?,
        StatusCode::FORBIDDEN,
        "insufficient_scope",
    );

    // Deleted: gone, and its key no longer works.
    assert_eq!(
        ann.call(Method::DELETE, &path, None).await?.0,
        StatusCode::NO_CONTENT
    );
    refused(&ann.get(&path).await?, StatusCode::NOT_FOUND, "not_found");
    assert_eq!(
        ann.call_with(&org_key, Method::GET, "/v1/me", None)
            .await?
            .0,
        StatusCode::UNAUTHORIZED
    );
    Ok(())
}

#[tokio::test]
async fn invitations_and_roles_decide_who_manages_whom_and_an_org_keeps_an_owner() -> Result<()> {
    let server = Server::start(bin()).await?;
    let [ann, bob, carol, dave] = [
        Caller::new(&server, "ann").await?,
        Caller::new(&server, "bob").await?,
        Caller::new(&server, "carol").await?,
        Caller::new(&server, "dave").await?,
    ];
    let slug = unique_slug("team");
    ann.call(Method::POST, "/v1/orgs", Some(json!({"slug": slug})))
        .await?;
    let org = format!("/v1/orgs/{slug}");
    let invitations = format!("{org}/invitations");
    let member = |who: &Caller| format!("{org}/members/{}", who.user_id);

    // Ann invites Bob as admin; the link is mailed, never returned.
    let invited = ann
        .call(
            Method::POST,
            &invitations,
            Some(json!({"email": bob.email, "role": "admin"})),
        )
        .await?;
    assert_eq!(invited.0, StatusCode::CREATED, "{}", invited.1);
    assert!(invited.1.get("token").is_none() && !invited.1.to_string().contains("lki_"));
    let link = invitation_link(&server, &bob.email)?;
    // Someone else signed in cannot use Bob's link, and sees why.
    let other = carol.person.get(&link).await?;
    assert_eq!(other.status, StatusCode::FORBIDDEN, "{}", other.html);
    assert!(other.html.contains(&bob.email), "{}", other.html);
    let joined = join(&bob, &link).await?;
    assert!(joined.url.ends_with("/account"), "{}", joined.url);
    assert!(joined.html.contains(&slug), "{}", joined.html);
    // Spent.
    let again = bob.person.get(&link).await?;
    assert_eq!(again.status, StatusCode::BAD_REQUEST, "{}", again.html);

    // Bob (admin) invites Carol as a member, but cannot invite an owner.
    refused(
        &bob.call(
            Method::POST,
            &invitations,
            Some(json!({"email": dave.email, "role": "owner"})),
        )
        .await?,
        StatusCode::FORBIDDEN,
        "insufficient_role",
    );
    // Nor revoke an owner's invitation that Ann sent; Ann can.
    let for_owner = ann
        .call(
            Method::POST,
            &invitations,
            Some(json!({"email": unique_email("erin"), "role": "owner"})),
        )
        .await?;
    let for_owner = format!(
        "{invitations}/{}",
        for_owner.1["id"].as_str().context("id")?
    );
    refused(
        &bob.call(Method::DELETE, &for_owner, None).await?,
        StatusCode::FORBIDDEN,
        "insufficient_role",
    );
    assert_eq!(
        ann.call(Method::DELETE, &for_owner, None).await?.0,
        StatusCode::NO_CONTENT
    );
    bob.call(
        Method::POST,
        &invitations,
        Some(json!({"email": carol.email})),
    )
    .await?;
    join(&carol, &invitation_link(&server, &carol.email)?).await?;
    let (_, members) = carol.get(&format!("{org}/members")).await?;
    let roles: Vec<_> = members["members"]
        .as_array()
        .context("members")?
        .iter()
        .map(|m| m["role"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(roles, ["owner", "admin", "member"]);

    // Carol (member) may look, not manage.
    for attempt in [
        carol
            .call(
                Method::POST,
                &invitations,
                Some(json!({"email": dave.email})),
            )
            .await?,
        carol.get(&invitations).await?,
        carol
            .call(
                Method::PATCH,
                &member(&bob),
                Some(json!({"role": "member"})),
            )
            .await?,
        carol.call(Method::DELETE, &member(&bob), None).await?,
        carol
            .call(Method::PATCH, &org, Some(json!({"name": "Carol's"})))
            .await?,
        carol.call(Method::DELETE, &org, None).await?,
        bob.call(Method::DELETE, &org, None).await?,
        bob.call(Method::PATCH, &member(&ann), Some(json!({"role": "admin"})))
            .await?,
        bob.call(Method::DELETE, &member(&ann), None).await?,
        bob.call(
            Method::PATCH,
            &member(&carol),
            Some(json!({"role": "owner"})),
        )
        .await?,
    ] {
        refused(&attempt, StatusCode::FORBIDDEN, "insufficient_role");
    }
    refused(
        &bob.call(
            Method::PATCH,
            &member(&carol),
            Some(json!({"role": "boss"})),
        )
        .await?,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );
    refused(
        &bob.call(Method::DELETE, &member(&dave), None).await?,
        StatusCode::NOT_FOUND,
        "not_found",
    );

    // Removing Carol cuts off her key in the org at once.
    let carol_key = carol
        .call(
            Method::POST,
            "/v1/api-keys",
            Some(json!({"name": "team", "org": slug})),
        )
        .await?;
    let carol_key = carol_key.1["api_key"]
        .as_str()
        .context("api_key")?
        .to_owned();
    assert_eq!(
        carol
            .call_with(&carol_key, Method::GET, "/v1/me", None)
            .await?
            .0,
        StatusCode::OK
    );
    assert_eq!(
        bob.call(Method::DELETE, &member(&carol), None).await?.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        carol
            .call_with(&carol_key, Method::GET, "/v1/me", None)
            .await?
            .0,
        StatusCode::UNAUTHORIZED
    );
    refused(&carol.get(&org).await?, StatusCode::NOT_FOUND, "not_found");

    // The last owner can neither leave nor step down; after handing over, she can.
    refused(
        &ann.call(Method::DELETE, &member(&ann), None).await?,
        StatusCode::FORBIDDEN,
        "last_owner",
    );
    refused(
        &ann.call(Method::PATCH, &member(&ann), Some(json!({"role": "admin"})))
            .await?,
        StatusCode::FORBIDDEN,
        "last_owner",
    );
    assert_eq!(
        ann.call(Method::PATCH, &member(&bob), Some(json!({"role": "owner"})))
            .await?
            .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        ann.call(Method::DELETE, &member(&ann), None).await?.0,
        StatusCode::NO_CONTENT
    );
    refused(&ann.get(&org).await?, StatusCode::NOT_FOUND, "not_found");
    assert_eq!(bob.get(&org).await?.1["role"], "owner");

    // Invitations: a resend replaces the link, a revoked one stops working, members are
    // not invited twice, and a personal org is nobody else's.
    bob.call(
        Method::POST,
        &invitations,
        Some(json!({"email": dave.email})),
    )
    .await?;
    let first = invitation_link(&server, &dave.email)?;
    bob.call(
        Method::POST,
        &invitations,
        Some(json!({"email": dave.email})),
    )
    .await?;
    let second = invitation_link(&server, &dave.email)?;
    assert_ne!(first, second);
    assert_eq!(
        dave.person.get(&first).await?.status,
        StatusCode::BAD_REQUEST
    );
    let (_, pending) = bob.get(&invitations).await?;
    let pending = pending["invitations"]
        .as_array()
        .context("invitations")?
        .clone();
    assert_eq!(pending.len(), 1, "{pending:?}");
    let id = pending[0]["id"].as_str().context("id")?;
    assert_eq!(
        bob.call(Method::DELETE, &format!("{invitations}/{id}"), None)
            .await?
            .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        dave.person.get(&second).await?.status,
        StatusCode::BAD_REQUEST
    );
    refused(
        &bob.call(Method::DELETE, &format!("{invitations}/{id}"), None)
            .await?,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    refused(
        &bob.call(
            Method::POST,
            &invitations,
            Some(json!({"email": bob.email})),
        )
        .await?,
        StatusCode::CONFLICT,
        "already_a_member",
    );
    refused(
        &bob.call(
            Method::POST,
            &invitations,
            Some(json!({"email": "not an address"})),
        )
        .await?,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );
    let (_, bobs) = bob.get("/v1/orgs").await?;
    let personal = bobs["orgs"][0]["slug"].as_str().context("slug")?;
    refused(
        &bob.call(
            Method::POST,
            &format!("/v1/orgs/{personal}/invitations"),
            Some(json!({"email": dave.email})),
        )
        .await?,
        StatusCode::FORBIDDEN,
        "personal_org",
    );
    refused(
        &bob.call(
            Method::DELETE,
            &format!("/v1/orgs/{personal}/members/{}", bob.user_id),
            None,
        )
        .await?,
        StatusCode::FORBIDDEN,
        "personal_org",
    );
    Ok(())
}

/// The org the CLI's credential in force acts for, as `/v1/me` says.
async fn acting_org(cli: &latchkey_testkit::CliHome, server: &Server) -> Result<String> {
    let token = String::from_utf8(cli.run(&["token"]).await?.stdout)?;
    let me: Value = reqwest::Client::new()
        .get(server.url("/v1/me"))
        .bearer_auth(token.trim())
        .send()
        .await?
        .json()
        .await?;
    Ok(me["acting_org"]["slug"]
        .as_str()
        .context("acting_org")?
        .to_owned())
}

#[tokio::test]
async fn the_cli_lists_creates_invites_and_leaves_orgs() -> Result<()> {
    use crate::cli_login::text;
    let server = Server::start(bin()).await?;
    let ann = Caller::new(&server, "ann").await?;
    let bob = Caller::new(&server, "bob").await?;
    let cli = latchkey_testkit::CliHome::new(bin(), &server.url)?;
    let logged_in = cli
        .run_with_stdin(&["login", "--with-token"], &format!("{}\n", ann.key))
        .await?;
    assert!(logged_in.status.success(), "{}", text(&logged_in.stderr));
    let slug = unique_slug("cli");

    let created = cli
        .run(&["orgs", "create", &slug, "--name", "CLI Team"])
        .await?;
    assert!(created.status.success(), "{}", text(&created.stderr));
    assert!(text(&created.stdout).contains("you are its owner"));
    assert!(text(&created.stderr).contains(&format!("orgs invite <email> --org {slug}")));

    // Bare `orgs` lists them, the personal one first and marked: the key acts for it.
    let listed = cli.run(&["orgs"]).await?;
    let shown = text(&listed.stdout);
    let lines: Vec<&str> = shown.lines().collect();
    assert_eq!(lines.len(), 3, "{shown}");
    assert!(
        lines[1].starts_with("* ") && lines[1].contains("personal"),
        "{shown}"
    );
    assert!(
        lines[2].starts_with(&format!("  {slug}")) && lines[2].contains("owner"),
        "{shown}"
    );
    let json: Value = serde_json::from_slice(&cli.run(&["orgs", "list", "--json"]).await?.stdout)?;
    assert_eq!(json["orgs"][1]["slug"], slug.as_str());
    assert_eq!(json["orgs"][0]["acting"], true);

    let invited = cli
        .run(&[
            "orgs", "invite", &bob.email, "--org", &slug, "--role", "admin",
        ])
        .await?;
    assert!(invited.status.success(), "{}", text(&invited.stderr));
    assert!(text(&invited.stdout).contains(&format!("Invited {} to {slug} as admin", bob.email)));
    join(&bob, &invitation_link(&server, &bob.email)?).await?;
    let members = cli.run(&["orgs", "members", "--org", &slug]).await?;
    let shown = text(&members.stdout);
    assert!(
        shown.contains(&ann.email) && shown.contains(&bob.email),
        "{shown}"
    );

    // Refusals say why, with the usage exit codes: a bad role, an unknown org, the last owner.
    let bad_role = cli
        .run(&[
            "orgs",
            "invite",
            "x@example.com",
            "--org",
            &slug,
            "--role",
            "boss",
        ])
        .await?;
    assert_eq!(
        bad_role.status.code(),
        Some(2),
        "{}",
        text(&bad_role.stderr)
    );
    assert!(text(&bad_role.stderr).contains("is not a role"));
    let unknown = cli
        .run(&["orgs", "members", "--org", "no-such-org"])
        .await?;
    assert!(!unknown.status.success());
    assert!(
        text(&unknown.stderr).contains("no-such-org"),
        "{}",
        text(&unknown.stderr)
    );
    let last_owner = cli.run(&["orgs", "leave", "--org", &slug]).await?;
    assert!(!last_owner.status.success());
    assert!(
        text(&last_owner.stderr).contains("needs an owner"),
        "{}",
        text(&last_owner.stderr)
    );

    // `token --org` prints an access token that acts for the org, traded for the login.
    let token = cli.run(&["token", "--org", &slug]).await?;
    assert!(token.status.success(), "{}", text(&token.stderr));
    let token = text(&token.stdout).trim().to_owned();
    assert!(token.starts_with("eyJ"), "{token}");
    let (status, me) = ann.call_with(&token, Method::GET, "/v1/me", None).await?;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["acting_org"]["slug"], slug.as_str());
    let outsider = unique_slug("nobodys");
    let refused = cli.run(&["token", "--org", &outsider]).await?;
    assert!(!refused.status.success());
    assert!(
        text(&refused.stdout).is_empty(),
        "nothing printed on refusal"
    );
    assert!(
        text(&refused.stderr).contains("not a member"),
        "{}",
        text(&refused.stderr)
    );

    // Another machine logs Ann in by exchanging her key, read from a file, for one in the
    // team: no browser. Without --org a key cannot be exchanged, and the CLI says so.
    let ci = latchkey_testkit::CliHome::new(bin(), &server.url)?;
    std::fs::create_dir_all(ci.config_dir())?;
    let key_file = ci.config_dir().join("subject");
    std::fs::write(&key_file, format!("{}\n", ann.key))?;
    let key_file = key_file.display().to_string();
    let no_org = ci
        .run(&["login", "--subject-token-file", &key_file])
        .await?;
    assert!(!no_org.status.success());
    assert!(
        text(&no_org.stderr).contains("--org"),
        "{}",
        text(&no_org.stderr)
    );
    let exchanged = ci
        .run(&["login", "--subject-token-file", &key_file, "--org", &slug])
        .await?;
    assert!(exchanged.status.success(), "{}", text(&exchanged.stderr));
    assert_eq!(acting_org(&ci, &server).await?, slug);
    let stored = text(&ci.run(&["token"]).await?.stdout).trim().to_owned();
    assert!(
        stored.starts_with("lk_") && stored != ann.key,
        "a new key in the org"
    );

    // Bob leaves with his own CLI; the org no longer lists him.
    // Bob logs in straight into the team: a key for it is traded for his login and stored
    // beside it, under his user id and the org.
    let bobs = latchkey_testkit::CliHome::new(bin(), &server.url)?;
    let login = bobs
        .run_with_stdin(
            &["login", "--with-token", "--org", &slug],
            &format!("{}\n", bob.key),
        )
        .await?;
    assert!(login.status.success(), "{}", text(&login.stderr));
    assert!(
        text(&login.stdout).contains(&format!("(org {slug})")),
        "{}",
        text(&login.stdout)
    );
    assert_eq!(acting_org(&bobs, &server).await?, slug);
    let (_, bob_orgs) = bob.get("/v1/orgs").await?;
    let bob_personal = bob_orgs["orgs"][0]["slug"]
        .as_str()
        .context("slug")?
        .to_owned();
    let back = bobs.run(&["switch", "--org", &bob_personal]).await?;
    assert!(text(&back.stdout).contains(&format!("Now acting for the org {bob_personal}")));
    assert_eq!(acting_org(&bobs, &server).await?, bob_personal);
    let keys_before = bob.get("/v1/api-keys").await?.1["api_keys"]
        .as_array()
        .map(Vec::len);
    bobs.run(&["switch", "--org", &slug]).await?;
    assert_eq!(acting_org(&bobs, &server).await?, slug);
    assert_eq!(
        bob.get("/v1/api-keys").await?.1["api_keys"]
            .as_array()
            .map(Vec::len),
        keys_before,
        "switching back uses the stored credential"
    );
    let listed: Value = serde_json::from_slice(&bobs.run(&["switch", "--json"]).await?.stdout)?;
    let orgs: Vec<&str> = listed["accounts"]
        .as_array()
        .context("accounts")?
        .iter()
        .filter_map(|a| a["org"].as_str())
        .collect();
    assert_eq!(orgs.len(), 2, "{listed}");
    assert!(orgs.contains(&slug.as_str()) && orgs.contains(&bob_personal.as_str()));
    let left = bobs.run(&["orgs", "leave", "--org", &slug]).await?;
    assert!(left.status.success(), "{}", text(&left.stderr));
    let shown = text(&cli.run(&["orgs", "members", "--org", &slug]).await?.stdout);
    assert!(!shown.contains(&bob.email), "{shown}");
    Ok(())
}

const EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
pub(crate) const API_KEY_TYPE: &str = "urn:latchkey:params:oauth:token-type:api_key";
const ACCESS_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

/// A token-exchange request by the CLI's public client: its status and JSON answer.
pub(crate) async fn exchange(
    server: &Server,
    form: &[(&str, &str)],
) -> Result<(StatusCode, Value)> {
    let mut all = vec![("grant_type", EXCHANGE), ("client_id", "latchkey-cli")];
    all.extend_from_slice(form);
    let response = reqwest::Client::new()
        .post(server.url("/oauth/token"))
        .form(&all)
        .send()
        .await?;
    Ok((response.status(), response.json().await?))
}

#[tokio::test]
async fn authlib_exchanges_a_credential_for_one_scoped_to_an_org() -> Result<()> {
    let server = Server::start(bin()).await?;
    let ann = Caller::new(&server, "ann").await?;
    let slug = unique_slug("xchg");
    ann.call(Method::POST, "/v1/orgs", Some(json!({"slug": slug})))
        .await?;

    // authlib, as its users run it: an access token for the org from Ann's API key, then an
    // API key in the org from that access token.
    let output = Command::new(crate::mcp::python_in(".venv-oidc")?)
        .arg(crate::mcp::repo_root().join("tests/oidc/authlib_exchange.py"))
        .args([&server.url, "latchkey-cli", &ann.key, &slug])
        .output()
        .await?;
    anyhow::ensure!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let tokens: Value = serde_json::from_slice(&output.stdout)?;
    assert_eq!(tokens["access"]["issued_token_type"], ACCESS_TYPE);
    assert_eq!(tokens["api_key"]["issued_token_type"], API_KEY_TYPE);
    for credential in [
        &tokens["access"]["access_token"],
        &tokens["api_key"]["access_token"],
    ] {
        let credential = credential.as_str().context("a credential")?;
        let (status, me) = ann
            .call_with(credential, Method::GET, "/v1/me", None)
            .await?;
        assert_eq!(status, StatusCode::OK, "{me}");
        assert_eq!(me["acting_org"]["slug"], slug.as_str(), "{me}");
        assert_eq!(me["acting_org"]["role"], "owner");
    }

    // Scopes only narrow: a key limited to `read` gets `read` in the org, never `write`.
    let narrow = ann
        .call(
            Method::POST,
            "/v1/api-keys",
            Some(json!({"name": "narrow", "scopes": ["read"]})),
        )
        .await?;
    let narrow = narrow.1["api_key"].as_str().context("api_key")?.to_owned();
    let org_scope = format!("org:{slug}");
    let (status, narrowed) = exchange(
        &server,
        &[
            ("subject_token", &narrow),
            ("subject_token_type", API_KEY_TYPE),
            ("scope", &org_scope),
        ],
    )
    .await?;
    assert_eq!(status, StatusCode::OK, "{narrowed}");
    assert_eq!(narrowed["scope"], "read");
    let wider = format!("{org_scope} write");
    let (status, widened) = exchange(
        &server,
        &[
            ("subject_token", &narrow),
            ("subject_token_type", API_KEY_TYPE),
            ("scope", &wider),
        ],
    )
    .await?;
    assert_eq!(
        (status, &widened["error"]),
        (StatusCode::BAD_REQUEST, &json!("invalid_scope"))
    );

    // Refusals, each an RFC 6749 error: an org the subject is not in, no org named, a refresh
    // token or a made-up token as subject, a revoked key, a type that does not match.
    let bob = Caller::new(&server, "bob").await?;
    let bobs_org = unique_slug("bobs");
    bob.call(Method::POST, "/v1/orgs", Some(json!({"slug": bobs_org})))
        .await?;
    let elsewhere = format!("org:{bobs_org}");
    let revoked = ann
        .call(Method::POST, "/v1/api-keys", Some(json!({"name": "gone"})))
        .await?;
    let revoked_id = revoked.1["id"].as_str().context("id")?.to_owned();
    let revoked = revoked.1["api_key"].as_str().context("api_key")?.to_owned();
    ann.call(Method::DELETE, &format!("/v1/api-keys/{revoked_id}"), None)
        .await?;
    for (form, error) in [
        (
            vec![
                ("subject_token", ann.key.as_str()),
                ("subject_token_type", API_KEY_TYPE),
                ("scope", &elsewhere),
            ],
            "invalid_target",
        ),
        (
            vec![
                ("subject_token", ann.key.as_str()),
                ("subject_token_type", API_KEY_TYPE),
            ],
            "invalid_request",
        ),
        (
            vec![
                ("subject_token", "lkr_0123456789"),
                (
                    "subject_token_type",
                    "urn:ietf:params:oauth:token-type:refresh_token",
                ),
                ("scope", &org_scope),
            ],
            "invalid_request",
        ),
        (
            vec![
                ("subject_token", "lk_notakey"),
                ("subject_token_type", API_KEY_TYPE),
                ("scope", &org_scope),
            ],
            "invalid_grant",
        ),
        (
            vec![
                ("subject_token", revoked.as_str()),
                ("subject_token_type", API_KEY_TYPE),
                ("scope", &org_scope),
            ],
            "invalid_grant",
        ),
        (
            vec![
                ("subject_token", ann.key.as_str()),
                ("subject_token_type", "urn:ietf:params:oauth:token-type:jwt"),
                ("scope", &org_scope),
            ],
            "invalid_request",
        ),
        (
            vec![
                ("subject_token", ann.key.as_str()),
                ("subject_token_type", API_KEY_TYPE),
                ("scope", &org_scope),
                (
                    "requested_token_type",
                    "urn:ietf:params:oauth:token-type:saml2",
                ),
            ],
            "invalid_request",
        ),
    ] {
        let (status, answer) = exchange(&server, &form).await?;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{form:?}: {answer}");
        assert_eq!(answer["error"], error, "{form:?}: {answer}");
        assert!(
            answer["error_description"]
                .as_str()
                .is_some_and(|d| !d.is_empty())
        );
    }
    Ok(())
}

/// A login's access token exchanged into `org`: the org's access token and its refresh token.
pub(crate) async fn login_branch(
    server: &Server,
    access: &str,
    org: &str,
) -> Result<(String, String)> {
    let org_scope = format!("org:{org}");
    let (status, exchanged) = exchange(
        server,
        &[
            ("subject_token", access),
            ("subject_token_type", ACCESS_TYPE),
            ("scope", &org_scope),
        ],
    )
    .await?;
    assert_eq!(status, StatusCode::OK, "{exchanged}");
    assert_eq!(exchanged["issued_token_type"], ACCESS_TYPE);
    let field = |name: &str| {
        exchanged[name]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("{name} in {exchanged}"))
    };
    Ok((field("access_token")?, field("refresh_token")?))
}

#[tokio::test]
async fn an_org_login_refreshes_in_its_org_and_ends_with_the_login_or_the_membership() -> Result<()>
{
    use crate::{
        cli_login::refresh_with,
        gate_proxy::{GATE_SECRET, answering_upstream, gate, issuer},
        oauth::token_pair,
        revocation::{refused_after, revoke, through_gate},
    };
    let server = issuer().await?;
    let (_gate, gate_url) = gate(&server, &answering_upstream().await?, &[]).await?;
    let (ann, bob, slug) = bob_in_a_team(&server, "leavers").await?;
    let acting = |token: String| {
        let bob = &bob;
        async move {
            let (status, me) = bob.call_with(&token, Method::GET, "/v1/me", None).await?;
            anyhow::Ok((status, me["acting_org"]["slug"].as_str().map(str::to_owned)))
        }
    };

    // A login's token buys the org a refresh token too; refreshing stays in the org.
    let (first_login, first_refresh) = token_pair(&server, &bob.person).await?;
    // Only by the client it was issued to: another app cannot trade it for its own tokens.
    let org_scope = format!("org:{slug}");
    let by_another_app: Value = reqwest::Client::new()
        .post(server.url("/oauth/token"))
        .basic_auth("gate", Some(GATE_SECRET))
        .form(&[
            ("grant_type", EXCHANGE),
            ("subject_token", first_login.as_str()),
            ("subject_token_type", ACCESS_TYPE),
            ("scope", org_scope.as_str()),
        ])
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(by_another_app["error"], "invalid_grant", "{by_another_app}");
    let (org_access, org_refresh) = login_branch(&server, &first_login, &slug).await?;
    assert_eq!(
        acting(org_access.clone()).await?,
        (StatusCode::OK, Some(slug.clone()))
    );
    let (status, refreshed) = refresh_with(&server, &org_refresh).await?;
    assert_eq!(status, 200, "{refreshed}");
    let refreshed_access = refreshed["access_token"].as_str().context("access")?;
    assert_eq!(
        acting(refreshed_access.to_owned()).await?,
        (StatusCode::OK, Some(slug.clone()))
    );
    // Signing out of the login ends its org branch with it.
    revoke(&server, &first_refresh).await?;
    let next_org_refresh = refreshed["refresh_token"].as_str().context("refresh")?;
    let (status, answer) = refresh_with(&server, next_org_refresh).await?;
    assert_eq!((status, &answer["error"]), (400, &json!("invalid_grant")));
    assert_eq!(
        acting(refreshed_access.to_owned()).await?.0,
        StatusCode::UNAUTHORIZED
    );

    // A second login with an org branch, and an org token bought with an API key: both pass
    // a standalone gate, until Ann removes Bob.
    let (login, login_refresh) = token_pair(&server, &bob.person).await?;
    let (branch_access, branch_refresh) = login_branch(&server, &login, &slug).await?;
    let (status, by_key) = exchange(
        &server,
        &[
            ("subject_token", &bob.key),
            ("subject_token_type", API_KEY_TYPE),
            ("scope", &org_scope),
        ],
    )
    .await?;
    assert_eq!(status, StatusCode::OK, "{by_key}");
    assert!(
        by_key.get("refresh_token").is_none(),
        "a key is no login: {by_key}"
    );
    let key_access = by_key["access_token"]
        .as_str()
        .context("access")?
        .to_owned();
    let introspect_url = server.url("/oauth/introspect");
    let introspect = |token: String| {
        let url = introspect_url.clone();
        async move {
            let answer: Value = reqwest::Client::new()
                .post(url)
                .basic_auth("gate", Some(GATE_SECRET))
                .form(&[("token", token.as_str())])
                .send()
                .await?
                .json()
                .await?;
            anyhow::Ok(answer)
        }
    };
    let before = introspect(key_access.clone()).await?;
    assert_eq!(
        (&before["active"], &before["org_role"]),
        (&json!(true), &json!("member"))
    );
    for token in [&branch_access, &key_access, &login] {
        assert_eq!(through_gate(&gate_url, token).await?, 200);
    }

    let removed = std::time::Instant::now();
    ann.call(
        Method::DELETE,
        &format!("/v1/orgs/{slug}/members/{}", bob.user_id),
        None,
    )
    .await?;
    for token in [&branch_access, &key_access] {
        assert_eq!(introspect(token.clone()).await?["active"], false);
        assert_eq!(acting(token.clone()).await?.0, StatusCode::UNAUTHORIZED);
        let after = refused_after(&gate_url, token, removed).await?;
        assert!(after < std::time::Duration::from_secs(3), "{after:?}");
    }
    let (status, answer) = refresh_with(&server, &branch_refresh).await?;
    assert_eq!((status, &answer["error"]), (400, &json!("invalid_grant")));
    // Bob's login itself, outside the org, is untouched: its token and its refresh.
    assert_eq!(through_gate(&gate_url, &login).await?, 200);
    assert_eq!(bob.get("/v1/me").await?.0, StatusCode::OK);
    let (status, answer) = refresh_with(&server, &login_refresh).await?;
    assert_eq!(status, 200, "{answer}");

    // Deleting the org ends everyone's tokens for it, its owner's too, at the gate as well.
    let (status, owners) = exchange(
        &server,
        &[
            ("subject_token", &ann.key),
            ("subject_token_type", API_KEY_TYPE),
            ("scope", &org_scope),
        ],
    )
    .await?;
    assert_eq!(status, StatusCode::OK, "{owners}");
    let owners = owners["access_token"]
        .as_str()
        .context("access")?
        .to_owned();
    assert_eq!(through_gate(&gate_url, &owners).await?, 200);
    let deleted = std::time::Instant::now();
    assert_eq!(
        ann.call(Method::DELETE, &format!("/v1/orgs/{slug}"), None)
            .await?
            .0,
        StatusCode::NO_CONTENT
    );
    let after = refused_after(&gate_url, &owners, deleted).await?;
    assert!(after < std::time::Duration::from_secs(3), "{after:?}");
    assert_eq!(through_gate(&gate_url, &ann.key).await?, 200, "her own key");
    Ok(())
}

#[tokio::test]
async fn the_org_page_refuses_strangers_forged_forms_and_members_who_may_not() -> Result<()> {
    let server = Server::start(bin()).await?;
    let ann = Caller::new(&server, "ann").await?;
    let carol = Caller::new(&server, "carol").await?;
    let stranger = Caller::new(&server, "stranger").await?;
    let slug = unique_slug("page");
    ann.call(Method::POST, "/v1/orgs", Some(json!({"slug": slug})))
        .await?;
    ann.call(
        Method::POST,
        &format!("/v1/orgs/{slug}/invitations"),
        Some(json!({"email": carol.email})),
    )
    .await?;
    join(&carol, &invitation_link(&server, &carol.email)?).await?;
    let path = format!("/orgs/{slug}");

    let unseen = stranger.person.get(&path).await?;
    assert_eq!(unseen.status, StatusCode::NOT_FOUND, "{}", unseen.html);
    // Carol, a member, sees the members but no invite form, and cannot post one.
    let page = carol.person.get(&path).await?;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.html.contains(&ann.email) && !page.html.contains("id=\"invite\""));
    let csrf = page.csrf()?;
    let invite = format!("{path}/invite");
    let refused = carol
        .person
        .post_form(
            &invite,
            &[
                ("csrf", &csrf),
                ("email", "x@example.com"),
                ("role", "member"),
            ],
        )
        .await?;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.html);
    // Ann's own form, but with a forged token: refused before anything is looked at.
    let forged = ann
        .person
        .post_form(
            &invite,
            &[
                ("csrf", "forged"),
                ("email", "x@example.com"),
                ("role", "member"),
            ],
        )
        .await?;
    assert_eq!(forged.status, StatusCode::FORBIDDEN, "{}", forged.html);
    let (_, pending) = ann.get(&format!("/v1/orgs/{slug}/invitations")).await?;
    assert_eq!(pending["invitations"].as_array().map(Vec::len), Some(0));
    // Roles from the page: Carol may not change Ann's; Ann makes Carol an admin.
    let role_of = |who: &Caller| format!("{path}/members/{}/role", who.user_id);
    let refused = carol
        .person
        .post_form(&role_of(&ann), &[("csrf", &csrf), ("role", "member")])
        .await?;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.html);
    let ann_page = ann.person.get(&path).await?;
    assert!(
        ann_page
            .html
            .contains(&format!("set-role-{}", carol.user_id))
    );
    let promoted = ann
        .person
        .post_form(
            &role_of(&carol),
            &[("csrf", &ann_page.csrf()?), ("role", "admin")],
        )
        .await?;
    assert_eq!(promoted.status, StatusCode::OK, "{}", promoted.html);
    assert_eq!(
        carol.get(&format!("/v1/orgs/{slug}")).await?.1["role"],
        "admin"
    );
    // Carol leaves from the page.
    let left = carol
        .person
        .post_form(
            &format!("{path}/members/{}/remove", carol.user_id),
            &[("csrf", &csrf)],
        )
        .await?;
    assert!(left.url.ends_with("/account"), "{}", left.url);
    assert_eq!(carol.person.get(&path).await?.status, StatusCode::NOT_FOUND);
    Ok(())
}

/// Ann's team on `server` with Bob in it: Ann, Bob, and the team's slug.
async fn bob_in_a_team(server: &Server, tag: &str) -> Result<(Caller, Caller, String)> {
    let ann = Caller::new(server, "ann").await?;
    let bob = Caller::new(server, "bob").await?;
    let slug = unique_slug(tag);
    ann.call(Method::POST, "/v1/orgs", Some(json!({"slug": slug})))
        .await?;
    ann.call(
        Method::POST,
        &format!("/v1/orgs/{slug}/invitations"),
        Some(json!({"email": bob.email})),
    )
    .await?;
    join(&bob, &invitation_link(server, &bob.email)?).await?;
    Ok((ann, bob, slug))
}

#[tokio::test]
async fn a_login_without_a_terminal_by_someone_in_several_orgs_says_which_to_choose() -> Result<()>
{
    let server = Server::start(bin()).await?;
    let (_, bob, slug) = bob_in_a_team(&server, "pick").await?;
    let cli = latchkey_testkit::CliHome::new(bin(), &server.url)?;
    let login = cli.start_token_flow_login(&[]).await?;
    bob.person.approve(&login.url).await?;
    let (status, _, stderr) = login.finish().await?;
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("you belong to 2 orgs") && stderr.contains(&slug),
        "{stderr}"
    );
    assert!(stderr.contains("switch --org <org>"), "{stderr}");
    // The login is kept, acting for the personal org; the hint works.
    assert_ne!(acting_org(&cli, &server).await?, slug);
    let switched = cli.run(&["switch", "--org", &slug]).await?;
    assert!(switched.status.success());
    assert_eq!(acting_org(&cli, &server).await?, slug);
    Ok(())
}

#[tokio::test]
async fn at_a_terminal_the_login_asks_which_org_to_act_for() -> Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = Server::start(bin()).await?;
    let (_, bob, slug) = bob_in_a_team(&server, "picker").await?;
    let cli = latchkey_testkit::CliHome::new(bin(), &server.url)?;
    // `script` gives the login a terminal (a pty) whose input is this test's pipe.
    let mut session = cli
        .program(
            "script".as_ref(),
            &[
                "-qfec",
                "\"$LATCHKEY_BIN\" login --method token-flow --no-browser",
                "/dev/null",
            ],
        )
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let mut input = session.stdin.take().context("stdin")?;
    let mut output = session.stdout.take().context("stdout")?;
    let screen = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let shown = screen.clone();
    tokio::spawn(async move {
        let mut buffer = [0u8; 4096];
        while let Ok(n) = output.read(&mut buffer).await {
            if n == 0 {
                break;
            }
            if let Ok(mut screen) = shown.lock() {
                screen.push_str(&String::from_utf8_lossy(&buffer[..n]));
            }
        }
    });
    let wait_for = |what: &'static str| {
        let screen = screen.clone();
        async move {
            for _ in 0..300 {
                let seen = screen.lock().map(|s| s.clone()).unwrap_or_default();
                if seen.contains(what) {
                    return anyhow::Ok(seen);
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            let seen = screen.lock().map(|s| s.clone()).unwrap_or_default();
            anyhow::bail!("the terminal never showed {what:?}; it showed {seen:?}")
        }
    };
    let seen = wait_for("Check that the page shows the code").await?;
    let url = seen
        .split_whitespace()
        .find(|w| w.starts_with(&format!("{}/", server.url)))
        .context("the login URL")?;
    bob.person.approve(url).await?;
    let asked = wait_for("Org [1]: ").await?;
    assert!(asked.contains(&format!("2) {slug} (member)")), "{asked}");
    // A wrong answer is asked again; then the team, by its number.
    input.write_all(b"7\n").await?;
    wait_for("Answer a number from 1 to 2").await?;
    input.write_all(b"2\n").await?;
    let status = tokio::time::timeout(std::time::Duration::from_secs(30), session.wait()).await??;
    let seen = screen.lock().map(|s| s.clone()).unwrap_or_default();
    assert!(status.success(), "{seen}");
    assert_eq!(acting_org(&cli, &server).await?, slug);
    Ok(())
}

#[tokio::test]
async fn an_org_s_audit_log_is_read_by_its_admins_and_owners_only() -> Result<()> {
    let server = Server::start(bin()).await?;
    let (ann, bob, slug) = bob_in_a_team(&server, "audited").await?;
    let path = format!("/v1/audit?org={slug}");
    let (status, log) = ann.get(&path).await?;
    assert_eq!(status, StatusCode::OK, "{log}");
    let joined = log["events"]
        .as_array()
        .context("events")?
        .iter()
        .find(|e| e["type"] == "member_added")
        .context("bob's joining is in the org's log")?;
    assert_eq!(joined["user_id"], bob.user_id.as_str());
    assert!(
        joined["detail"]
            .as_str()
            .is_some_and(|d| d.contains(&bob.email))
    );

    refused(
        &bob.get(&path).await?,
        StatusCode::FORBIDDEN,
        "insufficient_role",
    );
    let stranger = Caller::new(&server, "stranger").await?;
    refused(
        &stranger.get(&path).await?,
        StatusCode::NOT_FOUND,
        "not_found",
    );

    let removed = ann
        .call(
            Method::DELETE,
            &format!("/v1/orgs/{slug}/members/{}", bob.user_id),
            None,
        )
        .await?;
    assert_eq!(removed.0, StatusCode::NO_CONTENT, "{}", removed.1);
    let (_, log) = ann.get(&format!("{path}&type=member_removed")).await?;
    let events = log["events"].as_array().context("events")?;
    assert_eq!(events.len(), 1, "{log}");
    assert_eq!(events[0]["user_id"], bob.user_id.as_str());
    // Bob's own log has his joining and his removal too: it happened to him.
    let (_, own) = bob
        .get("/v1/audit?type=member_added,member_removed")
        .await?;
    assert_eq!(own["events"].as_array().map(Vec::len), Some(2), "{own}");
    Ok(())
}

#[tokio::test]
async fn an_org_that_requires_a_second_factor_admits_only_members_who_have_one() -> Result<()> {
    let server = Server::start(bin()).await?;
    let (ann, bob, slug) = bob_in_a_team(&server, "strict").await?;
    let path = format!("/v1/orgs/{slug}");
    let require = |on: bool| json!({ "require_second_factor": on });

    // An owner without a second factor cannot require one (they would be locked out), nor
    // can an admin or member, nor anyone of a personal org.
    refused(
        &ann.call(Method::PATCH, &path, Some(require(true))).await?,
        StatusCode::FORBIDDEN,
        "second_factor_required",
    );
    crate::second_factor::enable_totp(&ann.person).await?;
    refused(
        &bob.call(Method::PATCH, &path, Some(require(true))).await?,
        StatusCode::FORBIDDEN,
        "insufficient_role",
    );
    let personal = ann.person.me().await?["org"]["slug"]
        .as_str()
        .context("slug")?
        .to_owned();
    refused(
        &ann.call(
            Method::PATCH,
            &format!("/v1/orgs/{personal}"),
            Some(require(true)),
        )
        .await?,
        StatusCode::FORBIDDEN,
        "personal_org",
    );
    let (status, body) = ann.call(Method::PATCH, &path, Some(require(true))).await?;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Bob, without one, can no longer act in the org: its API, keys for it, tokens for it.
    refused(
        &bob.get(&path).await?,
        StatusCode::FORBIDDEN,
        "second_factor_required",
    );
    refused(
        &bob.call(
            Method::POST,
            "/v1/api-keys",
            Some(json!({"name": "in strict", "org": slug})),
        )
        .await?,
        StatusCode::FORBIDDEN,
        "second_factor_required",
    );
    let exchanged = exchange(
        &server,
        &[
            ("subject_token", &bob.key),
            ("subject_token_type", API_KEY_TYPE),
            ("scope", &format!("org:{slug}")),
        ],
    )
    .await?;
    assert_eq!(exchanged.0, StatusCode::BAD_REQUEST, "{}", exchanged.1);
    assert_eq!(exchanged.1["error"], "access_denied", "{}", exchanged.1);
    // His own org is his to use; Ann acts in the org as before.
    assert_eq!(bob.get("/v1/orgs").await?.0, StatusCode::OK);
    assert_eq!(ann.get(&path).await?.0, StatusCode::OK);

    // Once Bob has a second factor, he is admitted again.
    crate::second_factor::enable_totp(&bob.person).await?;
    assert_eq!(bob.get(&path).await?.0, StatusCode::OK);
    let (_, log) = ann
        .get(&format!(
            "/v1/audit?org={slug}&type=org_second_factor_required"
        ))
        .await?;
    assert_eq!(log["events"].as_array().map(Vec::len), Some(1), "{log}");
    Ok(())
}
