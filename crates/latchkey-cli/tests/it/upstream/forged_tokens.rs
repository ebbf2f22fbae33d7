//! ID tokens forged by a provider (the testkit's OIDC stand-in) are refused with nothing
//! created; the provider's keys are fetched once, again when it rotates them, and never more
//! than every 10 s however many unknown keys tokens name.

use std::time::Duration;

use anyhow::Result;
use latchkey_testkit::{IdTokenForgery, OidcPerson, OidcStandIn, Person, Server, unique_email};
use reqwest::StatusCode;

use super::{github::users, secret_file, user_id};
use crate::bin;

const SECRET: &str = "stand-in-secret";

async fn with_stand_in() -> Result<(OidcStandIn, Server)> {
    let idp = OidcStandIn::start("latchkey", SECRET).await?;
    let config = format!(
        "[[identity_providers]]\nid = \"idp\"\nkind = \"oidc\"\ndisplay_name = \"Stand-in\"\n\
         issuer = \"{}\"\nclient_id = \"latchkey\"\nclient_secret_file = \"{}\"\n",
        idp.issuer,
        secret_file(SECRET)?.display()
    );
    let server = Server::start_with_config(bin(), &config, &[]).await?;
    Ok((idp, server))
}

fn person(tag: &str) -> OidcPerson {
    OidcPerson {
        sub: format!("sub-{tag}"),
        email: unique_email(tag),
        email_verified: true,
        hd: None,
    }
}

#[tokio::test]
async fn forged_id_tokens_are_refused_and_nothing_is_created() -> Result<()> {
    let (idp, server) = with_stand_in().await?;
    for (forgery, why) in [
        (IdTokenForgery::WrongAudience, "audience"),
        (IdTokenForgery::WrongIssuer, "issuer"),
        (IdTokenForgery::WrongNonce, "nonce"),
        (IdTokenForgery::Expired, "expired"),
        (IdTokenForgery::Unsigned, "signature"),
        (IdTokenForgery::OtherKey, "signature"),
    ] {
        idp.sign_in_as(person("forged"));
        idp.forge(forgery);
        let browser = Person::new(&server)?;
        let page = browser.get("/auth/login/idp").await?;
        assert_eq!(
            page.status,
            StatusCode::BAD_GATEWAY,
            "{forgery:?}: {}",
            page.html
        );
        assert!(
            page.html.contains("failed the checks"),
            "{forgery:?}: {}",
            page.html
        );
        assert!(
            page.html.to_lowercase().contains(why),
            "{forgery:?} says why: {}",
            page.html
        );
        assert!(browser.me().await.is_err(), "{forgery:?}: no session");
    }
    assert_eq!(users(&server).await?, 0, "nothing created");

    // The same provider, honest again: the checks were what refused.
    idp.forge(IdTokenForgery::None);
    let browser = Person::new(&server)?;
    browser.get("/auth/login/idp").await?;
    assert!(user_id(&browser).await.is_ok());
    Ok(())
}

#[tokio::test]
async fn keys_are_fetched_again_on_rotation_but_at_most_every_ten_seconds() -> Result<()> {
    let (idp, server) = with_stand_in().await?;
    let sign_in = |tag: &'static str| {
        let (idp, server) = (idp.clone(), &server);
        async move {
            idp.sign_in_as(person(tag));
            let browser = Person::new(server)?;
            let page = browser.get("/auth/login/idp").await?;
            anyhow::Ok((page, browser))
        }
    };
    // Two sign-ins: discovery and keys fetched once.
    for tag in ["first", "second"] {
        let (page, _) = sign_in(tag).await?;
        assert_eq!(page.status, StatusCode::OK, "{}", page.html);
    }
    assert_eq!(idp.jwks_fetches(), 1);

    // The provider rotates: a token from the new key makes latchkey fetch the keys again.
    idp.rotate_key()?;
    let (page, _) = sign_in("rotated").await?;
    assert_eq!(page.status, StatusCode::OK, "{}", page.html);
    assert_eq!(idp.jwks_fetches(), 2);

    // Rotated again within 10 s: the unknown key is not looked up again yet, so the token is
    // refused (a flood of unknown keys cannot make latchkey hammer the provider) ...
    idp.rotate_key()?;
    let (page, browser) = sign_in("soon").await?;
    assert_eq!(page.status, StatusCode::BAD_GATEWAY, "{}", page.html);
    assert!(browser.me().await.is_err());
    assert_eq!(idp.jwks_fetches(), 2);
    // ... and once 10 s have passed, it is.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let (page, _) = sign_in("later").await?;
    assert_eq!(page.status, StatusCode::OK, "{}", page.html);
    assert_eq!(idp.jwks_fetches(), 3);
    Ok(())
}

#[tokio::test]
async fn a_provider_that_does_not_answer_gets_a_page_that_says_so() -> Result<()> {
    // One that refuses connections, and one that accepts them and never answers (latchkey
    // gives up after 10 s).
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let silent_url = format!("http://{}", silent.local_addr()?);
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            open.push(stream);
        }
    });
    let mut config = String::new();
    for (id, issuer) in [
        ("dead", "http://127.0.0.1:9"),
        ("silent", silent_url.as_str()),
    ] {
        config.push_str(&format!(
            "[[identity_providers]]\nid = \"{id}\"\nkind = \"oidc\"\ndisplay_name = \"{id}\"\n\
             issuer = \"{issuer}\"\nclient_id = \"latchkey\"\nclient_secret_file = \"{}\"\n",
            secret_file(SECRET)?.display()
        ));
    }
    let server = Server::start_with_config(bin(), &config, &[]).await?;
    for id in ["dead", "silent"] {
        let page = Person::new(&server)?
            .get(&format!("/auth/login/{id}"))
            .await?;
        assert_eq!(page.status, StatusCode::BAD_GATEWAY, "{id}: {}", page.html);
        assert!(
            page.html.contains("could not be reached"),
            "{id}: {}",
            page.html
        );
    }
    assert_eq!(users(&server).await?, 0);
    held.abort();
    Ok(())
}
