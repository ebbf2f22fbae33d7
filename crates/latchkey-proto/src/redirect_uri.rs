//! Redirect URI rules for OAuth clients: an exact match, except the port of a loopback redirect
//! (RFC 8252 §7.3), since a CLI listens on whatever port is free. `127.0.0.1`, `[::1]` and
//! `localhost` are different hosts here: a swap between them is refused.

use thiserror::Error;
use url::{Host, Url};

#[derive(Debug, Error, PartialEq, Eq)]
pub enum RedirectUriError {
    #[error("redirect_uri is not an absolute URL")]
    Malformed,
    #[error("redirect_uri must not have a fragment")]
    Fragment,
    #[error("redirect_uri must not carry a user name or password")]
    Userinfo,
    #[error("redirect_uri is not registered for this client")]
    NotRegistered,
    #[error(
        "a public client may only redirect to http://127.0.0.1, http://[::1] or http://localhost"
    )]
    NotLoopback,
    #[error("redirect_uri must use https (or http on a loopback address)")]
    NotHttps,
}

/// Whether a URL is a loopback redirect (`http` to 127.0.0.1, [::1] or localhost).
pub fn is_loopback(url: &Url) -> bool {
    url.scheme() == "http"
        && match url.host() {
            Some(Host::Ipv4(ip)) => ip.is_loopback(),
            Some(Host::Ipv6(ip)) => ip.is_loopback(),
            Some(Host::Domain(d)) => d == "localhost",
            None => false,
        }
}

fn parse(uri: &str) -> Result<Url, RedirectUriError> {
    let url = Url::parse(uri).map_err(|_| RedirectUriError::Malformed)?;
    if url.cannot_be_a_base() || url.host().is_none() {
        return Err(RedirectUriError::Malformed);
    }
    if url.fragment().is_some() || uri.contains('#') {
        return Err(RedirectUriError::Fragment);
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(RedirectUriError::Userinfo);
    }
    Ok(url)
}

/// Checks a redirect URI a client wants to register. Public clients (no secret) are CLIs and
/// native apps: loopback only. Confidential clients: https, or http on loopback for development.
pub fn check_registration(uri: &str, public_client: bool) -> Result<Url, RedirectUriError> {
    let url = parse(uri)?;
    match (public_client, is_loopback(&url), url.scheme()) {
        (_, true, _) => Ok(url),
        (true, false, _) => Err(RedirectUriError::NotLoopback),
        (false, false, "https") => Ok(url),
        (false, false, _) => Err(RedirectUriError::NotHttps),
    }
}

/// The registered URI that `presented` matches, as a URL to redirect to.
pub fn match_registered<'a>(
    registered: impl IntoIterator<Item = &'a str>,
    presented: &str,
) -> Result<Url, RedirectUriError> {
    let url = parse(presented)?;
    let matches = |candidate: &str| {
        if candidate == presented {
            return true;
        }
        let Ok(candidate) = Url::parse(candidate) else {
            return false;
        };
        // Any port, everything else identical: scheme, host spelling, path and query.
        is_loopback(&candidate)
            && url.scheme() == candidate.scheme()
            && url.host() == candidate.host()
            && url.path() == candidate.path()
            && url.query() == candidate.query()
    };
    if registered.into_iter().any(matches) {
        Ok(url)
    } else {
        Err(RedirectUriError::NotRegistered)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLI: &[&str] = &["http://127.0.0.1/callback"];

    fn check(presented: &str) -> Result<Url, RedirectUriError> {
        match_registered(CLI.iter().copied(), presented)
    }

    #[test]
    fn a_loopback_redirect_matches_on_any_port() {
        assert!(check("http://127.0.0.1:54321/callback").is_ok());
        assert!(check("http://127.0.0.1/callback").is_ok());
        let v6 = ["http://[::1]/callback"];
        assert!(match_registered(v6.iter().copied(), "http://[::1]:8000/callback").is_ok());
    }

    #[test]
    fn anything_else_that_differs_is_refused() {
        use RedirectUriError::*;
        for (presented, expected) in [
            ("http://evil.example/callback", NotRegistered),
            ("http://127.0.0.1:1234/other", NotRegistered),
            ("http://127.0.0.1:1234/callback?x=1", NotRegistered),
            ("https://127.0.0.1:1234/callback", NotRegistered),
            ("http://localhost:1234/callback", NotRegistered),
            ("http://[::1]:1234/callback", NotRegistered),
            ("http://127.0.0.2:1234/callback", NotRegistered),
            ("http://user@127.0.0.1:1234/callback", Userinfo),
            ("http://127.0.0.1:1234/callback#x", Fragment),
            ("http://127.0.0.1:1234/callback#", Fragment),
            ("/callback", Malformed),
            ("javascript:alert(1)", Malformed),
        ] {
            assert_eq!(check(presented).err(), Some(expected), "{presented}");
        }
    }

    #[test]
    fn localhost_matches_only_when_registered_as_localhost() {
        let registered = ["http://localhost/cb"];
        assert!(match_registered(registered.iter().copied(), "http://localhost:9/cb").is_ok());
        assert_eq!(
            match_registered(registered.iter().copied(), "http://127.0.0.1:9/cb").err(),
            Some(RedirectUriError::NotRegistered)
        );
    }

    #[test]
    fn non_loopback_redirects_match_exactly() {
        let registered = ["https://app.example.com/cb"];
        assert!(match_registered(registered.iter().copied(), "https://app.example.com/cb").is_ok());
        assert!(
            match_registered(registered.iter().copied(), "https://app.example.com:444/cb").is_err()
        );
    }

    #[test]
    fn registration_rules_depend_on_the_client_kind() {
        assert!(check_registration("http://127.0.0.1/callback", true).is_ok());
        assert_eq!(
            check_registration("https://app.example.com/cb", true).err(),
            Some(RedirectUriError::NotLoopback)
        );
        assert!(check_registration("https://app.example.com/cb", false).is_ok());
        assert_eq!(
            check_registration("http://app.example.com/cb", false).err(),
            Some(RedirectUriError::NotHttps)
        );
    }
}
