//! The JSON API, one file per area.

pub mod api_keys;
pub mod billing;
pub mod console;
pub mod discovery;
pub mod gate;
pub mod health;
pub mod machine;
pub mod oauth;
pub mod openid;
pub mod orgs;
pub mod token_flow;
