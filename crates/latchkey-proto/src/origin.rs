//! Web origins (RFC 6454) as CORS allow-lists name them: `scheme://host[:port]`, nothing more.

use url::Url;

/// `raw` as the origin a browser sends (`https://app.example.com`, default port dropped), if it
/// is exactly an http(s) origin: no path other than `/`, no query, fragment or credentials.
/// `*` and `null` are not origins.
pub fn web_origin(raw: &str) -> Option<String> {
    let url = Url::parse(raw.trim()).ok()?;
    let bare = matches!(url.scheme(), "http" | "https")
        && url.host().is_some()
        && url.username().is_empty()
        && url.password().is_none()
        && url.path() == "/"
        && url.query().is_none()
        && url.fragment().is_none()
        // The URL parser drops tabs and newlines; an origin a browser sends has none.
        && !raw.contains(['\t', '\n', '\r']);
    bare.then(|| url.origin().ascii_serialization())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_bare_http_origins_are_origins() {
        assert_eq!(
            web_origin("https://App.Example.com:443").as_deref(),
            Some("https://app.example.com")
        );
        assert_eq!(
            web_origin("http://localhost:5173/").as_deref(),
            Some("http://localhost:5173")
        );
        for bad in [
            "*",
            "null",
            "app.example.com",
            "https://app.example.com/path",
            "https://app.example.com?q",
            "https://user@app.example.com",
            "ftp://app.example.com",
            "https://app.exa\tmple.com",
        ] {
            assert_eq!(web_origin(bad), None, "{bad:?}");
        }
    }
}
