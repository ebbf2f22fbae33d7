//! Where the service may send a browser next: a path on its own origin, and nowhere else.
//!
//! Every `next`, `next_url` and return path goes through [`LocalPath::parse`]. Browsers resolve
//! a `Location` with the WHATWG URL parser, which drops tabs and newlines, reads `\` as `/` and
//! collapses `..`, so a string that merely starts with one `/` can still name another host
//! (`/\t/evil.example` is `//evil.example`). A path is accepted only if resolving it under
//! the same rules (the `url` crate implements them) stays on our origin, and is handed out in
//! the parser's own serialisation, which is valid in a header and resolves to itself.

use url::{Position, Url};

/// The longest path kept: a `next` is a page address, not a place to carry data.
const MAX_LEN: usize = 2048;

/// A same-origin absolute path (with query and fragment), safe to put in `Location`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalPath(String);

impl LocalPath {
    /// The path `raw` names on this site, or `None` when it could lead anywhere else or is
    /// not plainly a path: control characters, backslashes, a leading `//`, a scheme,
    /// userinfo or a host all refuse it.
    pub fn parse(raw: &str) -> Option<Self> {
        let plain = raw.len() <= MAX_LEN
            && raw.starts_with('/')
            && !raw.starts_with("//")
            && !raw.chars().any(|c| c.is_control() || c == '\\');
        if !plain {
            return None;
        }
        let base = Self::base();
        let resolved = base.join(raw).ok()?;
        let path = &resolved[Position::BeforePath..];
        // Dot segments can leave `//host` behind (`/..//evil.example`): the serialised path
        // must itself resolve back to the same URL on our origin.
        let again = base.join(path).ok()?;
        (same_origin(&base, &resolved) && again == resolved && path.starts_with('/'))
            .then(|| Self(path.to_owned()))
    }

    /// Parses an optional value, treating anything refused as absent.
    pub fn parse_opt(raw: Option<&str>) -> Option<Self> {
        raw.and_then(Self::parse)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Any origin serves: only the path part is kept, and it is compared to this origin.
    fn base() -> Url {
        #[allow(clippy::expect_used)] // a constant that parses
        Url::parse("https://issuer.invalid/").expect("constant base URL")
    }
}

impl std::fmt::Display for LocalPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn same_origin(a: &Url, b: &Url) -> bool {
    a.origin() == b.origin() && b.username().is_empty() && b.password().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(raw: &str) -> Option<String> {
        LocalPath::parse(raw).map(|p| p.0)
    }

    #[test]
    fn paths_on_this_site_are_kept() {
        for (raw, kept) in [
            ("/", "/"),
            ("/account", "/account"),
            (
                "/login/cli?token_flow_id=tf_1&code=ABCD",
                "/login/cli?token_flow_id=tf_1&code=ABCD",
            ),
            ("/a/./b/../c", "/a/c"),
            ("/%2F/evil.example", "/%2F/evil.example"),
            ("/%5Cevil.example", "/%5Cevil.example"),
            ("/search?q=a b", "/search?q=a%20b"),
            ("/caf\u{e9}", "/caf%C3%A9"),
            ("/x#frag", "/x#frag"),
        ] {
            assert_eq!(parsed(raw).as_deref(), Some(kept), "{raw:?}");
        }
    }

    #[test]
    fn known_open_redirect_bypasses_are_refused() {
        for raw in [
            "",
            "evil.example",
            "//evil.example",
            "///evil.example",
            "/\\evil.example",
            "\\/evil.example",
            "/\t/evil.example",
            "/\n/evil.example",
            "/\r/evil.example",
            "/\u{7f}/evil.example",
            "/\u{1}/evil.example",
            "/\u{85}/evil.example",
            "\t//evil.example",
            " //evil.example",
            "https://evil.example/",
            "https:evil.example",
            "http:/evil.example",
            "javascript:alert(1)",
            "/..//evil.example",
            "/.//evil.example",
            "/a/../..//evil.example",
            "//user:pass@evil.example",
            "//evil\u{3002}example",
            "//xn--e1afmkfd.example",
        ] {
            assert_eq!(parsed(raw), None, "{raw:?} accepted");
        }
        assert_eq!(parsed(&format!("/{}", "a".repeat(MAX_LEN))), None);
    }

    proptest::proptest! {
        /// Whatever is kept resolves, under the browser's rules, to itself on this origin.
        #[test]
        fn what_is_kept_stays_on_this_origin(raw in "[/\\\\.%2eEfF5cC:@a\t\n ?#]{0,16}") {
            if let Some(path) = LocalPath::parse(&raw) {
                let base = LocalPath::base();
                let resolved = base.join(path.as_str()).expect("joins");
                proptest::prop_assert_eq!(resolved.origin(), base.origin());
                proptest::prop_assert_eq!(&resolved[Position::BeforePath..], path.as_str());
            }
        }
    }
}
