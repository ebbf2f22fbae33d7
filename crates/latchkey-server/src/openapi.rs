//! The OpenAPI 3.1 document of the JSON API, generated (utoipa) from the handlers'
//! annotations and the wire types' schemas; served at `/openapi.json` and checked in as
//! `openapi.json` at the repository's root, which a test keeps equal to what is served.
//! The HTML pages (sign-in, consent, device, logout) are not part of it.

use utoipa::{
    Modify, OpenApi,
    openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme},
};

use crate::{extract::Json, routes};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "latchkey",
        description = "Accounts, API keys, the token-flow CLI login, and an OAuth 2.1 / OpenID \
                       Connect authorization server. Errors are `{error, message}` on `/v1/*` and \
                       `/auth/client`, and RFC 6749 `{error, error_description}` on `/oauth/*`.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        routes::token_flow::create,
        routes::token_flow::wait,
        routes::api_keys::me,
        routes::billing::stripe_webhook,
        routes::api_keys::list,
        routes::api_keys::create,
        routes::api_keys::revoke,
        routes::console::list,
        routes::console::end,
        routes::console::audit,
        crate::pages::profile::export,
        routes::orgs::list,
        routes::orgs::create,
        routes::orgs::get,
        routes::orgs::rename,
        routes::orgs::delete,
        routes::orgs::members,
        routes::orgs::change_role,
        routes::orgs::remove_member,
        routes::orgs::invitations,
        routes::orgs::invite,
        routes::orgs::revoke_invitation,
        routes::machine::exchange,
        routes::gate::usage,
        routes::oauth::token,
        routes::oauth::introspect,
        routes::oauth::revoke,
        routes::oauth::revocations,
        routes::oauth::device_authorization,
        routes::oauth::register,
        routes::oauth::read_registration,
        routes::oauth::update_registration,
        routes::oauth::delete_registration,
        routes::openid::userinfo,
        routes::openid::userinfo_by_post,
        routes::discovery::metadata,
        routes::discovery::openid_configuration,
        routes::discovery::jwks,
        routes::health::healthz,
        routes::health::readyz,
    ),
    modifiers(&SecuritySchemes),
)]
pub struct ApiDoc;

/// How callers authenticate, by the names the paths use.
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let bearer = |description: &str| {
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(description))
                    .build(),
            )
        };
        components.add_security_scheme(
            "bearer",
            bearer("An API key or an OAuth access token (JWT)"),
        );
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))),
        );
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                "lk_session",
                "The browser session (`__Host-lk_session` over https); writes must come from \
                 this site",
            ))),
        );
        components.add_security_scheme(
            "client",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Basic)
                    .description(Some(
                        "OAuth client credentials (client_secret_basic; client_secret_post \
                         puts them in the form instead)",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "registration",
            bearer("The RFC 7592 registration access token given at registration"),
        );
    }
}

/// `GET /openapi.json`.
pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
