//! End-to-end tests: the real `latchkey` binary, serving on an ephemeral port with its own
//! SQLite data directory (or, under `LATCHKEY_TEST_DATABASE_URL`, its own PostgreSQL
//! database), and the CLI run as a person would.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::disallowed_methods)]

mod account_attacks;
mod attacks;
mod billing;
mod browser;
mod cli_login;
mod client_metadata;
mod console;
mod cors;
mod csrf;
mod device;
mod discovery;
mod embedding;
mod federation;
mod gate_attacks;
mod gate_http2;
mod gate_layer;
mod gate_proxy;
mod hosts;
mod jwt_attacks;
mod key_at_rest;
mod keychain;
mod keys;
mod mcp;
mod oauth;
mod oauth_admin;
mod oidc_libraries;
mod open_redirect;
mod openapi;
mod openid;
mod orgs;
mod output;
mod proxy;
mod registration;
mod replicas;
mod resource_audience;
mod restart;
mod revocation;
mod second_factor;
mod secrets_in_logs;
mod token_flow_login;
mod upstream;

use std::path::Path;

pub fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_latchkey"))
}

pub const PASSWORD: &str = "correct horse battery";
