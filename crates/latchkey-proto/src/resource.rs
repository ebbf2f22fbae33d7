//! Resource indicators (RFC 8707): the URI of the API or MCP server a token is for, in one
//! canonical form, so that the `aud` the issuer writes and the resource a gate advertises
//! compare equal however a client spelled them.
//!
//! As RFC 8707, RFC 9728 and the MCP authorization spec describe it: an absolute `http(s)` URI
//! with a host and no fragment or userinfo; scheme and host lower-case; the scheme's default
//! port dropped; an empty path and `/` the same (written without the slash). Any other path,
//! and the query, are kept as they are: `/mcp` and `/mcp/` are different resources.

use url::Url;

/// The canonical form of `raw`, or `None` when it cannot name a resource.
pub fn canonical_resource(raw: &str) -> Option<String> {
    let url = Url::parse(raw).ok()?;
    let acceptable = matches!(url.scheme(), "http" | "https")
        && url.host().is_some()
        && url.fragment().is_none()
        && url.username().is_empty()
        && url.password().is_none();
    if !acceptable {
        return None;
    }
    // The `url` crate already lower-cases the scheme and host, drops the default port and
    // writes an empty path as `/`.
    let text = url.as_str();
    Some(match (url.path(), url.query()) {
        ("/", None) => text.trim_end_matches('/').to_owned(),
        _ => text.to_owned(),
    })
}

/// Whether two resource URIs name the same resource (exact equality for anything that is
/// not a resource URI, such as an issuer written as a plain string).
pub fn same_resource(a: &str, b: &str) -> bool {
    match (canonical_resource(a), canonical_resource(b)) {
        (Some(a), Some(b)) => a == b,
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_of_one_resource_are_one_resource() {
        for (raw, canonical) in [
            ("http://127.0.0.1:8081", "http://127.0.0.1:8081"),
            ("http://127.0.0.1:8081/", "http://127.0.0.1:8081"),
            ("HTTPS://API.Example.COM:443/", "https://api.example.com"),
            ("https://api.example.com/mcp", "https://api.example.com/mcp"),
            (
                "https://api.example.com/mcp/",
                "https://api.example.com/mcp/",
            ),
            (
                "http://localhost:80/v1?tenant=a",
                "http://localhost/v1?tenant=a",
            ),
            ("http://[::1]:8081/", "http://[::1]:8081"),
        ] {
            assert_eq!(canonical_resource(raw).as_deref(), Some(canonical), "{raw}");
        }
        assert!(same_resource(
            "http://127.0.0.1:8081/",
            "http://127.0.0.1:8081"
        ));
        assert!(!same_resource(
            "https://api.example.com/mcp",
            "https://api.example.com"
        ));
        assert!(!same_resource(
            "https://api.example.com",
            "http://api.example.com"
        ));
        assert!(!same_resource("https://a.example", "https://b.example"));
    }

    #[test]
    fn what_cannot_name_a_resource_is_refused() {
        for raw in [
            "",
            "api.example.com",
            "/relative",
            "https://api.example.com/#frag",
            "ftp://files.example.com",
            "https://user:pass@api.example.com",
            "urn:example:resource",
        ] {
            assert_eq!(canonical_resource(raw), None, "{raw:?}");
        }
    }
}
