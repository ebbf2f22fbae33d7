//! Client ID Metadata Documents (MCP authorization, 2025-11-25): a `client_id` that is an HTTPS
//! URL names a JSON document, served there, that describes the client. The service fetches it
//! through a [`ClientMetadataFetcher`] (the HTTP layer's, with SSRF guards) and checks it here:
//! its `client_id` must be the URL itself, its redirect URIs are the only ones allowed.

use std::net::IpAddr;

use async_trait::async_trait;
use serde::Deserialize;
use thiserror::Error;
use url::{Host, Url};

use latchkey_proto::redirect_uri;

use crate::store::OAuthClientRecord;

/// Documents larger than this are refused unread.
pub const MAX_DOCUMENT_BYTES: usize = 5 * 1024;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ClientMetadataError {
    #[error("the client_id URL {0} is not acceptable: {1}")]
    Url(String, &'static str),
    #[error("the client's metadata document could not be fetched: {0}")]
    Fetch(String),
    #[error("the client's metadata document is not valid: {0}")]
    Document(String),
}

/// Fetches a metadata document; implementations refuse private addresses, redirects, slow
/// servers and bodies over [`MAX_DOCUMENT_BYTES`].
#[async_trait]
pub trait ClientMetadataFetcher: Send + Sync {
    async fn fetch(&self, url: &Url) -> Result<Vec<u8>, ClientMetadataError>;
}

/// Whether a client id is a URL, and so names a metadata document rather than a registration.
pub fn is_metadata_url(client_id: &str) -> bool {
    client_id.starts_with("https://") || client_id.starts_with("http://")
}

/// Checks the shape of a client id URL: https, a host, a path, no userinfo, fragment or dot
/// segments. `insecure_loopback` also admits `http://` on a loopback address (development and
/// tests only).
pub fn check_client_id_url(
    client_id: &str,
    insecure_loopback: bool,
) -> Result<Url, ClientMetadataError> {
    let refuse = |why| ClientMetadataError::Url(client_id.chars().take(200).collect(), why);
    let url = Url::parse(client_id).map_err(|_| refuse("not a URL"))?;
    let loopback = match url.host() {
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        Some(Host::Domain(_)) => false,
        None => return Err(refuse("no host")),
    };
    match url.scheme() {
        "https" => {}
        "http" if insecure_loopback && loopback => {}
        _ => return Err(refuse("it must use https")),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(refuse("it must not carry a user name or password"));
    }
    if url.fragment().is_some() || client_id.contains('#') {
        return Err(refuse("it must not have a fragment"));
    }
    if url.path() == "/" || client_id.contains("/./") || client_id.contains("/../") {
        return Err(refuse("it must have a path, without dot segments"));
    }
    Ok(url)
}

/// Whether `ip` is an address on the public internet: fetching anything else would let a
/// client id reach into the server's own network (SSRF).
pub fn is_public_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0)
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public_ip(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || first == 0x2001 && v6.segments()[1] == 0x0db8)
        }
    }
}

#[derive(Debug, Deserialize)]
struct Document {
    client_id: String,
    client_name: Option<String>,
    #[serde(default)]
    redirect_uris: Vec<String>,
    token_endpoint_auth_method: Option<String>,
}

/// The client a fetched document describes, as a registration would have recorded it.
pub fn client_from_document(
    url: &Url,
    body: &[u8],
    now: time::OffsetDateTime,
) -> Result<OAuthClientRecord, ClientMetadataError> {
    let invalid = |why: String| ClientMetadataError::Document(why);
    let document: Document = serde_json::from_slice(body)
        .map_err(|e| invalid(format!("not the expected JSON ({e})")))?;
    if document.client_id != url.as_str() {
        return Err(invalid(format!(
            "its client_id {:?} is not the URL it was fetched from",
            document.client_id.chars().take(200).collect::<String>()
        )));
    }
    match document.token_endpoint_auth_method.as_deref() {
        None | Some("none") => {}
        Some(other) => {
            return Err(invalid(format!(
                "token_endpoint_auth_method {other} is not supported; use none"
            )));
        }
    }
    if document.redirect_uris.is_empty() {
        return Err(invalid("it lists no redirect_uris".into()));
    }
    for uri in &document.redirect_uris {
        redirect_uri::check_registration(uri, false)
            .map_err(|e| invalid(format!("redirect URI {uri}: {e}")))?;
    }
    let host = url.host_str().unwrap_or_default();
    let name = document
        .client_name
        .map(|n| n.trim().chars().take(100).collect::<String>())
        .filter(|n| !n.is_empty() && !n.chars().any(char::is_control))
        .unwrap_or_else(|| host.to_owned());
    Ok(OAuthClientRecord {
        registration_token: None,
        id: url.as_str().to_owned(),
        name,
        secret_hash: None,
        redirect_uris: document.redirect_uris,
        created_at: now,
        post_logout_redirect_uris: Vec::new(),
        id_token_alg: None,
        access_token_alg: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_id_urls_must_be_https_with_a_path() {
        assert!(check_client_id_url("https://app.example.com/oauth/client.json", false).is_ok());
        for bad in [
            "http://app.example.com/client.json",
            "https://app.example.com/",
            "https://user@app.example.com/c.json",
            "https://app.example.com/c.json#x",
            "https://app.example.com/a/../c.json",
            "ftp://app.example.com/c.json",
        ] {
            assert!(check_client_id_url(bad, false).is_err(), "{bad}");
        }
        assert!(check_client_id_url("http://127.0.0.1:9/c.json", false).is_err());
        assert!(check_client_id_url("http://127.0.0.1:9/c.json", true).is_ok());
        assert!(check_client_id_url("http://example.com/c.json", true).is_err());
    }

    #[test]
    fn only_public_addresses_may_be_fetched() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
            "224.0.0.1",
        ] {
            let ip: IpAddr = private.parse().expect("ip");
            assert!(!is_public_ip(ip), "{private}");
        }
        for public in ["93.184.216.34", "2606:4700::1111", "1.1.1.1"] {
            let ip: IpAddr = public.parse().expect("ip");
            assert!(is_public_ip(ip), "{public}");
        }
    }

    #[test]
    fn documents_must_name_themselves_and_their_redirects() {
        let url = Url::parse("https://app.example.com/client.json").expect("url");
        let now = time::OffsetDateTime::UNIX_EPOCH;
        let doc = |json: &str| client_from_document(&url, json.as_bytes(), now);
        let ok = doc(
            r#"{"client_id":"https://app.example.com/client.json","client_name":"App",
            "redirect_uris":["http://127.0.0.1/callback","https://app.example.com/cb"]}"#,
        )
        .expect("valid");
        assert_eq!((ok.name.as_str(), ok.secret_hash), ("App", None));
        let unnamed = doc(r#"{"client_id":"https://app.example.com/client.json",
            "redirect_uris":["http://127.0.0.1/callback"]}"#)
        .expect("valid");
        assert_eq!(unnamed.name, "app.example.com");
        for bad in [
            r#"{"client_id":"https://evil.example/client.json","redirect_uris":["http://127.0.0.1/cb"]}"#,
            r#"{"client_id":"https://app.example.com/client.json","redirect_uris":[]}"#,
            r#"{"client_id":"https://app.example.com/client.json","redirect_uris":["http://evil.example/cb"]}"#,
            r#"{"client_id":"https://app.example.com/client.json","redirect_uris":["http://127.0.0.1/cb"],"token_endpoint_auth_method":"client_secret_basic"}"#,
            "not json",
        ] {
            assert!(doc(bad).is_err(), "{bad}");
        }
    }
}
