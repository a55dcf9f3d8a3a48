//! OpenAPI 3.1 of the node, generated from the handlers' own annotations (utoipa) and
//! served at `/openapi.json`.

use std::sync::OnceLock;

use utoipa::Modify;
use utoipa::OpenApi as _;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "govern",
        description = "A governance engine for digital-asset custody: every request, from the user's passkey to the threshold signature, leaves a signed receipt in an append-only log. Errors are RFC 9457 problem+json.",
        license(name = "Apache-2.0")
    ),
    paths(
        crate::routes::healthz,
        crate::routes::log_info,
        crate::routes::state_info,
        crate::routes::append,
        crate::routes::entry,
        crate::routes::leaf,
        crate::routes::services,
        crate::routes::inclusion,
        crate::routes::consistency,
        crate::routes::checkpoint,
        crate::routes::checkpoints,
        crate::routes::tile,
        crate::edge::create_tenant,
        crate::edge::register_start,
        crate::edge::register_finish,
        crate::edge::login_start,
        crate::edge::login_finish,
        crate::edge::action_init,
        crate::edge::action_sign,
        crate::edge::me,
        crate::requests::list_requests,
        crate::edge::request_status,
        crate::edge::wallet,
        crate::edge::credential,
        crate::ui::index,
        crate::ui::asset,
        crate::edge::invite_user,
        crate::edge::change_role,
        crate::edge::add_credential,
        crate::edge::revoke_credential,
        crate::edge::request_wallet,
        crate::edge::request_transfer,
        crate::edge::change_policy,
        crate::edge::decide_approval,
        crate::tenant_keys::payloads,
        crate::tenant_keys::key_status,
        crate::tenant_keys::rotate,
        crate::tenant_keys::shred,
        crate::tenant_keys::release,
    ),
    modifiers(&Security),
    tags(
        (name = "log", description = "The append-only log: entries, proofs, checkpoints, tiles"),
        (name = "edge", description = "Tenants, passkeys and API keys, sessions, User Action Signing"),
        (name = "actions", description = "Sensitive requests: each needs a userAction token signed over exactly it"),
        (name = "keys", description = "Tenant keys: scoped reads of sealed payloads, key status, rotation, shredding, releases to attested services"),
        (name = "dashboard", description = "The dashboard: HTML, CSS and JavaScript compiled into the node"),
    )
)]
struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let bearer =
            || SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build());
        components.add_security_scheme("session", bearer());
        components.add_security_scheme("operator", bearer());
        components.add_security_scheme(
            "userAction",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-Govern-User-Action"))),
        );
    }
}

/// The document, as JSON bytes (made once).
#[must_use]
pub fn json() -> &'static [u8] {
    static SPEC: OnceLock<Vec<u8>> = OnceLock::new();
    SPEC.get_or_init(|| {
        ApiDoc::openapi()
            .to_pretty_json()
            .unwrap_or_default()
            .into_bytes()
    })
}
