//! Scopes as RFC 6749 §3.3 writes them: tokens of printable ASCII other than space, `"` and
//! `\`, joined by single spaces. API keys carry them to narrow what a key may do.

use thiserror::Error;

/// At most this many scopes on one credential, each at most this long.
const MAX_SCOPES: usize = 32;
const MAX_SCOPE_LEN: usize = 64;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ScopeError {
    #[error("give at least one scope, or none to allow everything the account may do")]
    Empty,
    #[error(
        "the scope {0:?} is not valid: use 1 to 64 printable ASCII characters, without spaces, quotes or backslashes"
    )]
    Invalid(String),
    #[error("at most 32 scopes may be given")]
    TooMany,
}

fn is_scope_token(scope: &str) -> bool {
    (1..=MAX_SCOPE_LEN).contains(&scope.len())
        && scope
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
}

/// The scope string for `scopes`: each checked, duplicates dropped, order kept.
pub fn join_scopes<S: AsRef<str>>(scopes: &[S]) -> Result<String, ScopeError> {
    if scopes.is_empty() {
        return Err(ScopeError::Empty);
    }
    let mut kept: Vec<&str> = Vec::new();
    for scope in scopes.iter().map(AsRef::as_ref) {
        if !is_scope_token(scope) {
            return Err(ScopeError::Invalid(scope.to_owned()));
        }
        if !kept.contains(&scope) {
            kept.push(scope);
        }
    }
    if kept.len() > MAX_SCOPES {
        return Err(ScopeError::TooMany);
    }
    Ok(kept.join(" "))
}

/// The scopes of a space-separated scope string.
pub fn scopes(scope: &str) -> impl Iterator<Item = &str> {
    scope.split(' ').filter(|s| !s.is_empty())
}

/// Whether a credential limited to `held` (`None`: unlimited) has `wanted`.
pub fn allows(held: Option<&str>, wanted: &str) -> bool {
    held.is_none_or(|held| scopes(held).any(|s| s == wanted))
}

/// Whether every scope of `narrower` (`None`: unlimited) is one `held` has.
pub fn within(narrower: Option<&str>, held: Option<&str>) -> bool {
    match (narrower, held) {
        (_, None) => true,
        (None, Some(_)) => false,
        (Some(narrower), Some(held)) => scopes(narrower).all(|s| allows(Some(held), s)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_tokens_follow_rfc_6749() {
        assert_eq!(
            join_scopes(&["read", "deploy:prod", "read"]),
            Ok("read deploy:prod".into())
        );
        for bad in [
            "",
            "two words",
            "quo\"te",
            "back\\slash",
            "tab\t",
            "é",
            &"x".repeat(65),
        ] {
            assert_eq!(
                join_scopes(&[bad]),
                Err(ScopeError::Invalid(bad.to_owned())),
                "{bad:?}"
            );
        }
        assert_eq!(join_scopes::<&str>(&[]), Err(ScopeError::Empty));
        let many: Vec<String> = (0..33).map(|i| format!("s{i}")).collect();
        assert_eq!(join_scopes(&many), Err(ScopeError::TooMany));
    }

    #[test]
    fn a_narrower_credential_holds_only_what_the_wider_one_does() {
        assert!(allows(None, "anything"));
        assert!(allows(Some("read write"), "write"));
        assert!(!allows(Some("read"), "rea"));
        assert!(within(Some("read"), Some("read write")));
        assert!(within(Some("read"), None));
        assert!(
            !within(None, Some("read")),
            "an unlimited key is wider than a limited one"
        );
        assert!(!within(Some("read admin"), Some("read")));
    }
}
