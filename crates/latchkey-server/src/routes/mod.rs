//! The JSON API, one file per area.

pub mod api_keys;
pub mod health;
pub mod token_flow;
