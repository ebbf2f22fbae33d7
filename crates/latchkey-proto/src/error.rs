//! The error body every non-OAuth endpoint answers: `{"error": "<stable code>", "message": "…"}`.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// A stable, machine-readable code (`invalid_request`, `unauthorized`, `not_found`, …).
    pub error: String,
    /// A sentence for the person reading it.
    pub message: String,
}
