//! Users of a booted node as a client sees them: tenants made by the operator, passkeys from
//! webauthn-authenticator-rs's software authenticator, API keys, and User Action Signing
//! (init, sign, token, perform).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use axum::http::StatusCode;
use base64::Engine as _;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD as B64URL};
use govern_core::action::{ChallengeObject, UserSignature};
use serde_json::{Value, json};
use webauthn_authenticator_rs::prelude::WebauthnAuthenticator;
use webauthn_authenticator_rs::softpasskey::SoftPasskey;
use webauthn_rs::prelude::{CreationChallengeResponse, RequestChallengeResponse, Url};

use super::{Booted, ORIGIN};

pub type Reply = (StatusCode, Value, Vec<u8>);

pub fn b64(v: &Value) -> Vec<u8> {
    let s = v.as_str().expect("a base64url string");
    B64URL
        .decode(s.trim_end_matches('='))
        .or_else(|_| URL_SAFE.decode(s))
        .expect("base64url")
}

pub fn origin() -> Url {
    Url::parse(ORIGIN).unwrap()
}

/// A user with a signed-in session and an authenticator.
pub struct User {
    pub tenant: String,
    pub id: String,
    pub credential: String,
    pub session: String,
    pub signer: Signer,
}

pub enum Signer {
    Passkey(SoftPasskey),
    Key(ed25519_dalek::SigningKey),
}

impl User {
    pub fn bearer(&self) -> String {
        format!("Bearer {}", self.session)
    }
}

pub async fn json_call(
    node: &Booted,
    method: &str,
    uri: &str,
    auth: Option<&str>,
    body: &Value,
) -> Reply {
    let mut headers = Vec::new();
    if let Some(a) = auth {
        headers.push(("authorization", a));
    }
    node.call(
        method,
        uri,
        &headers,
        Some(serde_json::to_vec(body).unwrap()),
    )
    .await
}

/// `POST /v1/tenants` as the operator: (tenant id, invitation secret).
pub async fn create_tenant(node: &Booted, name: &str) -> (String, String) {
    let token = format!("Bearer {}", node.dir.operator_token().unwrap());
    let r = json_call(
        node,
        "POST",
        "/v1/tenants",
        Some(&token),
        &json!({"name": name, "admin": "Ada"}),
    )
    .await;
    assert_eq!(r.0, StatusCode::CREATED, "{}", r.1);
    (
        r.1["tenant"].as_str().unwrap().to_string(),
        r.1["invite"].as_str().unwrap().to_string(),
    )
}

/// Redeem `invite` with a new software passkey.
pub async fn register(node: &Booted, tenant: &str, invite: &str) -> User {
    register_named(node, tenant, invite, "User").await
}

/// Redeem `invite` under `name` with a new software passkey.
pub async fn register_named(node: &Booted, tenant: &str, invite: &str, name: &str) -> User {
    let start = json_call(
        node,
        "POST",
        "/v1/auth/register/start",
        None,
        &json!({"tenant": tenant, "invite": invite, "name": name}),
    )
    .await;
    assert_eq!(start.0, StatusCode::OK, "{}", start.1);
    let ccr: CreationChallengeResponse =
        serde_json::from_value(start.1["options"].clone()).unwrap();
    let mut authenticator = SoftPasskey::new(true);
    let credential = authenticator
        .do_registration(origin(), ccr)
        .expect("the passkey registers");
    let finish = json_call(
        node,
        "POST",
        "/v1/auth/register/finish",
        None,
        &json!({"registration": start.1["registration"], "credential": credential}),
    )
    .await;
    assert_eq!(finish.0, StatusCode::CREATED, "{}", finish.1);
    User {
        tenant: tenant.to_string(),
        id: finish.1["user"].as_str().unwrap().to_string(),
        credential: finish.1["credential"].as_str().unwrap().to_string(),
        session: finish.1["session"].as_str().unwrap().to_string(),
        signer: Signer::Passkey(authenticator),
    }
}

/// Sign `challenge` (32 bytes) as `user`'s authenticator would, for `origin`.
pub fn sign(user: &mut User, challenge: &[u8], origin: &Url) -> UserSignature {
    let credential = user.credential.clone();
    match &mut user.signer {
        Signer::Passkey(authenticator) => {
            let rcr: RequestChallengeResponse = serde_json::from_value(json!({
                "publicKey": {
                    "challenge": B64URL.encode(challenge),
                    "timeout": 60000,
                    "rpId": "localhost",
                    "allowCredentials": [{"type": "public-key", "id": credential}],
                    "userVerification": "required"
                }
            }))
            .unwrap();
            let a = authenticator
                .do_authentication(origin.clone(), rcr)
                .expect("the passkey signs");
            // The client library's reading of a passkey's answer.
            govern_client::action::passkey_signature(&serde_json::to_value(&a).unwrap())
        }
        // The client library's API-key signer.
        Signer::Key(key) => govern_client::action::ApiKey::Ed25519(key.clone())
            .sign(challenge, &origin.origin().ascii_serialization()),
    }
}

/// `POST /v1/auth/action/init`: the challenge object.
pub async fn init(
    node: &Booted,
    user: &User,
    kind: &str,
    path: &str,
    body: &Value,
) -> ChallengeObject {
    let r = json_call(
        node,
        "POST",
        "/v1/auth/action/init",
        Some(&user.bearer()),
        &json!({"kind": kind, "method": "POST", "path": path, "body": body}),
    )
    .await;
    assert_eq!(r.0, StatusCode::OK, "{}", r.1);
    serde_json::from_value(r.1["challenge"].clone()).unwrap()
}

/// The client's side: check the object is for this action, recompute the challenge (the
/// node's `challenge_b64url` is not trusted), sign it.
pub fn sign_object(user: &mut User, object: &ChallengeObject, origin: &Url) -> UserSignature {
    let challenge = object.challenge().unwrap();
    sign(user, &challenge, origin)
}

pub async fn token_for(
    node: &Booted,
    user: &User,
    object: &ChallengeObject,
    signature: &UserSignature,
) -> Reply {
    json_call(
        node,
        "POST",
        "/v1/auth/action",
        Some(&user.bearer()),
        &json!({"challenge": object, "signature": signature}),
    )
    .await
}

/// Init, sign and exchange for a token: the userAction for exactly this request.
pub async fn user_action(
    node: &Booted,
    user: &mut User,
    kind: &str,
    path: &str,
    body: &Value,
) -> String {
    let object = init(node, user, kind, path, body).await;
    let signature = sign_object(user, &object, &origin());
    let r = token_for(node, user, &object, &signature).await;
    assert_eq!(r.0, StatusCode::OK, "{}", r.1);
    r.1["userAction"].as_str().unwrap().to_string()
}

pub async fn perform(node: &Booted, token: Option<&str>, path: &str, body: &Value) -> Reply {
    let mut headers = Vec::new();
    if let Some(t) = token {
        headers.push(("x-govern-user-action", t));
    }
    node.call(
        "POST",
        path,
        &headers,
        Some(serde_json::to_vec(body).unwrap()),
    )
    .await
}

/// Sign and perform an action; its reply.
pub async fn act(node: &Booted, user: &mut User, kind: &str, path: &str, body: &Value) -> Reply {
    let token = user_action(node, user, kind, path, body).await;
    perform(node, Some(&token), path, body).await
}

pub fn transfer() -> Value {
    json!({
        "kind": "Native",
        "to": "0x00000000000000000000000000000000000000aa",
        "amount": "1000000000000000000",
        "chain_id": "1",
        "nonce": "0",
        "max_fee_per_gas": "30000000000",
        "max_priority_fee_per_gas": "1000000000",
        "gas_limit": "21000"
    })
}

pub async fn new_wallet(node: &Booted, user: &mut User) -> String {
    let r = act(
        node,
        user,
        "wallet.requested",
        "/v1/wallets",
        &json!({"name": "treasury"}),
    )
    .await;
    assert_eq!(r.0, StatusCode::CREATED, "{}", r.1);
    r.1["request"].as_str().unwrap().to_string()
}

pub async fn admin(node: &Booted) -> User {
    let (tenant, invite) = create_tenant(node, "acme").await;
    register(node, &tenant, &invite).await
}

/// The event an edge appends for a user action in clear (`{action, signature, salt,
/// params}`), built and signed by the edge's own identity as a hostile edge would, following
/// `parents`: for tests that post it to the log directly, past the edge's HTTP checks.
pub fn clear_action_event(
    node: &Booted,
    object: &ChallengeObject,
    signature: &UserSignature,
    salt: &Value,
    params: Value,
    parents: Vec<govern_core::ids::LeafHash>,
) -> govern_core::event::SignedEvent {
    let mut body = serde_json::Map::new();
    body.insert("action".into(), serde_json::to_value(object).unwrap());
    body.insert("signature".into(), serde_json::to_value(signature).unwrap());
    body.insert("salt".into(), salt.clone());
    body.insert("params".into(), params);
    node.services
        .edge
        .identity
        .sign(
            govern_core::event::Kind::new(&object.kind).unwrap(),
            govern_core::event::TenantId(uuid::Uuid::parse_str(&object.tenant).unwrap()),
            govern_core::event::RequestId(uuid::Uuid::parse_str(&object.request).unwrap()),
            parents,
            body,
            govern_core::event::Timestamp::now(),
        )
        .unwrap()
}
