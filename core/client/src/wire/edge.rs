//! The bodies of the edge's endpoints (tenants, registration, login, User Action Signing)
//! that carry no WebAuthn type: the node's handlers read and write them, clients send and
//! read them. (Registration's and login's finishing bodies carry webauthn-rs types and stay
//! the node's.)

use govern_core::action::{ChallengeObject, UserSignature};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// `POST /v1/tenants`.
#[derive(Debug, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    pub name: String,
    pub admin: String,
}

/// An invitation, as its creator receives it (the secret is shown once).
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InviteOut {
    /// The tenant.
    pub tenant: String,
    /// The request that made it.
    pub request: String,
    /// The entry that made it.
    pub index: u64,
    /// The one-time secret.
    pub invite: String,
    /// The page that redeems it.
    pub registration_url: String,
}

#[derive(Debug, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RegisterStart {
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = "uuid"))]
    pub tenant: Uuid,
    pub invite: String,
    /// The name to register under (1 to 100 bytes, no control characters): required for an
    /// invitation from `POST /v1/users`; the first admin's defaults to the operator's.
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct LoginStart {
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = "uuid"))]
    pub tenant: Uuid,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = "uuid"))]
    pub user: Uuid,
    #[serde(default)]
    pub credential: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SessionOut {
    pub session: String,
    pub expires: i64,
    pub tenant: String,
    pub user: String,
    pub credential: String,
    /// The registration's request (`user.registered`, `credential.registered`); absent
    /// after a login.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
}

#[derive(Debug, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ActionInit {
    pub kind: String,
    pub method: String,
    pub path: String,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub body: Value,
}

#[derive(Debug, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ActionSign {
    /// The challenge object `init` returned, unchanged.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub challenge: ChallengeObject,
    /// `{"type": "passkey", authenticator_data, client_data_json, signature}` or
    /// `{"type": "key", client_data, signature}`, base64url.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub signature: UserSignature,
}
