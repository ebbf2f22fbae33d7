//! The error body every non-OAuth endpoint answers: `{"error": "<stable code>", "message": "…"}`,
//! and an error's causes on one line for logs and CLIs.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// A stable, machine-readable code (`invalid_request`, `unauthorized`, `not_found`, …).
    pub error: String,
    /// A sentence for the person reading it.
    pub message: String,
    /// With `subscription_required`: where the caller's org subscribes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscribe_url: Option<String>,
}

/// "outer: inner: innermost", for log lines and the CLI. A cause whose text its outer error
/// already ends with (sqlx prints its source in its own message) is not repeated.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let cause = e.to_string();
        if !text.ends_with(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
        source = e.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("could not open the database")]
    struct Outer(#[source] Middle);

    #[derive(Debug, thiserror::Error)]
    #[error("error communicating with database: {0}")]
    struct Middle(#[source] std::io::Error);

    #[test]
    fn a_cause_already_printed_by_its_outer_error_is_not_repeated() {
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert_eq!(
            error_chain(&Outer(Middle(refused))),
            "could not open the database: error communicating with database: refused"
        );
    }
}
