//! Tenants, passkeys, API keys and User Action Signing, end to end on a booted node, with
//! webauthn-authenticator-rs's software passkey as the user's authenticator; and every
//! attack of the credentials issue, each with its exact problem type.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use govern_api::edge::{Edge, EdgeConfig};
use govern_api::{AppState, NodeHandle};
use govern_core::action::{ChallengeObject, CredentialKey, UserSignature};
use govern_core::event::{Kind, RequestId, TenantId};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use support::users::*;
use support::{Booted, ORIGIN, RP_ID, assert_problem, boot, boot_with};
use tower::ServiceExt as _;
use webauthn_authenticator_rs::prelude::WebauthnAuthenticator;
use webauthn_authenticator_rs::softpasskey::SoftPasskey;
use webauthn_rs::prelude::{CreationChallengeResponse, RequestChallengeResponse, Url};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_admin_registers_logs_in_and_signs_a_transfer() {
    let node = boot().await;
    let (tenant, invite) = create_tenant(&node, "acme").await;
    let mut ada = register(&node, &tenant, &invite).await;

    // The log shows the trust on first use: tenant.created, user.registered naming the
    // invitation's hash, credential.registered with the COSE key and attestationObject.
    let size = node.size();
    let user_registered = node.entry(size - 2);
    assert_eq!(user_registered.event().kind.as_str(), "user.registered");
    let cred = node.entry(size - 1);
    assert_eq!(cred.event().kind.as_str(), "credential.registered");
    assert_eq!(cred.event().body["credential"], ada.credential);
    assert!(cred.event().body["public_key"].is_string());
    // The invitation is single-use.
    let again = json_call(
        &node,
        "POST",
        "/v1/auth/register/start",
        None,
        &json!({"tenant": tenant, "invite": invite}),
    )
    .await;
    assert_problem(&(again.0, again.1.clone()), 403, "invite-used");

    // Login with webauthn-rs: a fresh session.
    let start = json_call(
        &node,
        "POST",
        "/v1/auth/login/start",
        None,
        &json!({"tenant": tenant, "user": ada.id}),
    )
    .await;
    assert_eq!(start.0, StatusCode::OK, "{}", start.1);
    let rcr: RequestChallengeResponse = serde_json::from_value(start.1["options"].clone()).unwrap();
    let Signer::Passkey(authenticator) = &mut ada.signer else {
        unreachable!()
    };
    let assertion = authenticator.do_authentication(origin(), rcr).unwrap();
    let fin = json_call(
        &node,
        "POST",
        "/v1/auth/login/finish",
        None,
        &json!({"login": start.1["login"], "assertion": assertion}),
    )
    .await;
    assert_eq!(fin.0, StatusCode::OK, "{}", fin.1);
    ada.session = fin.1["session"].as_str().unwrap().to_string();

    // A wallet, then a transfer from it, each signed by the passkey.
    let wallet = new_wallet(&node, &mut ada).await;
    let path = format!("/v1/wallets/{wallet}/transfers");
    let r = act(&node, &mut ada, "transfer.requested", &path, &transfer()).await;
    assert_eq!(r.0, StatusCode::CREATED, "{}", r.1);
    let request = r.1["request"].as_str().unwrap().to_string();
    let index = r.1["index"].as_u64().unwrap();

    // The event carries the challenge object and the user's signature, which the offline
    // verifier accepts with the credential recorded in the log.
    let event = node.entry(index);
    let credential = node
        .services
        .policy
        .with_tenant(&event.event().tenant, |t| {
            t.credentials[&ada.credential].credential.clone()
        })
        .unwrap();
    govern_core::action::verify_user_action_body(&event.event().body, &credential).unwrap();
    // Its parameters are sealed in scope `transfers`: not in the entry, and read back only
    // through a scoped read, which opens them and checks them against the signed commitment.
    assert!(event.event().body.get("params").is_none());
    assert_eq!(event.event().sealed.as_ref().unwrap()["scope"], "transfers");
    let read = node
        .call(
            "GET",
            &format!("/v1/tenants/{tenant}/payloads/transfers"),
            &[("authorization", &ada.bearer())],
            None,
        )
        .await;
    assert_eq!(read.0, StatusCode::OK, "{}", read.1);
    assert_eq!(read.1["items"][0]["index"], index);
    assert_eq!(read.1["items"][0]["payload"], transfer());

    // An approval of that request, then its status and receipt chain.
    let approvals = format!("/v1/requests/{request}/approvals/approve");
    let r = act(&node, &mut ada, "approval.decided", &approvals, &json!({})).await;
    assert_eq!(r.0, StatusCode::CREATED, "{}", r.1);
    let status = node
        .call(
            "GET",
            &format!("/v1/requests/{request}"),
            &[("authorization", &ada.bearer())],
            None,
        )
        .await;
    assert_eq!(status.0, StatusCode::OK, "{}", status.1);
    // The approval is an input to the policy worker's decision, which is not running here:
    // the request stays `requested` (the worker's tests decide it).
    assert_eq!(status.1["status"], "requested");
    let kinds: Vec<&str> = status.1["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["transfer.requested", "approval.decided"]);
    assert_eq!(status.1["events"][0]["index"], index);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_without_or_beside_their_user_action_are_refused() {
    let node = boot().await;
    let mut ada = admin(&node).await;
    let body = json!({"name": "ops"});
    // No user action at all.
    let r = perform(&node, None, "/v1/wallets", &body).await;
    assert_problem(&(r.0, r.1.clone()), 401, "user-action-required");

    // A token signed over another body.
    let token = user_action(&node, &mut ada, "wallet.requested", "/v1/wallets", &body).await;
    let r = perform(&node, Some(&token), "/v1/wallets", &json!({"name": "OPS"})).await;
    assert_problem(&(r.0, r.1.clone()), 403, "user-action-mismatch");
    assert!(r.1["detail"].as_str().unwrap().contains("body"), "{}", r.1);
    // ... and once used (even refused), the token is gone.
    let r = perform(&node, Some(&token), "/v1/wallets", &body).await;
    assert_problem(&(r.0, r.1.clone()), 403, "user-action-token");

    // Over another path (another wallet's transfers).
    let wallet = new_wallet(&node, &mut ada).await;
    let other = new_wallet(&node, &mut ada).await;
    let path = format!("/v1/wallets/{wallet}/transfers");
    let token = user_action(&node, &mut ada, "transfer.requested", &path, &transfer()).await;
    let r = perform(
        &node,
        Some(&token),
        &format!("/v1/wallets/{other}/transfers"),
        &transfer(),
    )
    .await;
    assert_problem(&(r.0, r.1.clone()), 403, "user-action-mismatch");
    assert!(r.1["detail"].as_str().unwrap().contains("path"), "{}", r.1);

    // Of another kind (a wallet action presented to the policies endpoint).
    let token = user_action(&node, &mut ada, "wallet.requested", "/v1/wallets", &body).await;
    let r = perform(&node, Some(&token), "/v1/policies", &body).await;
    assert_problem(&(r.0, r.1.clone()), 403, "user-action-mismatch");
    assert!(r.1["detail"].as_str().unwrap().contains("kind"), "{}", r.1);
    // A kind that is not the endpoint's is refused when the action starts.
    let r = json_call(
        &node,
        "POST",
        "/v1/auth/action/init",
        Some(&ada.bearer()),
        &json!({"kind": "policy.changed", "method": "POST", "path": "/v1/wallets", "body": body}),
    )
    .await;
    assert_problem(&(r.0, r.1.clone()), 400, "action-route");
    // With another method: no sensitive endpoint takes it, and the token is not spent.
    let token = user_action(&node, &mut ada, "wallet.requested", "/v1/wallets", &body).await;
    let r = node
        .call(
            "PUT",
            "/v1/wallets",
            &[("x-govern-user-action", &token)],
            Some(serde_json::to_vec(&body).unwrap()),
        )
        .await;
    assert_problem(&(r.0, r.1.clone()), 405, "method-not-allowed");
    let r = perform(&node, Some(&token), "/v1/wallets", &body).await;
    assert_eq!(r.0, StatusCode::CREATED, "{}", r.1);
    // A token used once is refused the second time.
    let r = perform(&node, Some(&token), "/v1/wallets", &body).await;
    assert_problem(&(r.0, r.1.clone()), 403, "user-action-token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nonces_are_single_use_at_the_edge_and_in_the_log() {
    let node = boot().await;
    let mut ada = admin(&node).await;
    let body = json!({"name": "ops"});
    let object = init(&node, &ada, "wallet.requested", "/v1/wallets", &body).await;
    let signature = sign_object(&mut ada, &object, &origin());
    let first = token_for(&node, &ada, &object, &signature).await;
    assert_eq!(first.0, StatusCode::OK, "{}", first.1);
    // The same signed challenge again: its nonce is spent.
    let again = token_for(&node, &ada, &object, &signature).await;
    assert_problem(&(again.0, again.1.clone()), 403, "action-unknown");
    let r = perform(&node, first.1["userAction"].as_str(), "/v1/wallets", &body).await;
    assert_eq!(r.0, StatusCode::CREATED, "{}", r.1);

    // The log refuses a second event with that nonce, whoever builds it: the edge's own
    // identity re-signs the same user action under a new request.
    let appended = node.entry(r.1["index"].as_u64().unwrap());
    let mut replay = appended.event().clone();
    replay.sig = None;
    replay.request = RequestId::new_v7();
    let replay = node
        .services
        .edge
        .identity
        .sign(
            Kind::new("wallet.requested").unwrap(),
            replay.tenant,
            replay.request,
            replay.parents.clone(),
            replay.body.clone(),
            govern_core::event::Timestamp::now(),
        )
        .unwrap();
    let r = node.post(&replay).await;
    // The request id is part of the signed object, so a new request breaks the binding...
    assert_problem(&r, 403, "user-action-binding");
    // ... and the very same request is a duplicate of the nonce (checked first).
    let same = node
        .services
        .edge
        .identity
        .sign(
            Kind::new("wallet.requested").unwrap(),
            appended.event().tenant,
            appended.event().request,
            appended.event().parents.clone(),
            appended.event().body.clone(),
            govern_core::event::Timestamp::now(),
        )
        .unwrap();
    assert_problem(&node.post(&same).await, 409, "user-action-nonce");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_anchor_too_far_back_is_refused_by_the_log() {
    let node = boot_with(|mut c| {
        c.anchor_distance_max = 3;
        c
    })
    .await;
    let mut ada = admin(&node).await;
    let body = json!({"name": "ops"});
    let token = user_action(&node, &mut ada, "wallet.requested", "/v1/wallets", &body).await;
    for _ in 0..4 {
        let e = node.edge_event("demo.hello", TenantId::SYSTEM, vec![]);
        node.services.log.append(e).await.unwrap();
    }
    let r = perform(&node, Some(&token), "/v1/wallets", &body).await;
    assert_problem(&(r.0, r.1.clone()), 403, "user-action-anchor");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_origins_rp_ids_and_login_assertions_are_refused() {
    let node = boot().await;
    let mut ada = admin(&node).await;
    let body = json!({"name": "ops"});

    // Another origin on the same rp_id (another port): the edge's configured origin only.
    let object = init(&node, &ada, "wallet.requested", "/v1/wallets", &body).await;
    let signature = sign_object(
        &mut ada,
        &object,
        &Url::parse("http://localhost:9999").unwrap(),
    );
    let r = token_for(&node, &ada, &object, &signature).await;
    assert_problem(&(r.0, r.1.clone()), 403, "origin-refused");

    // An origin not on the rp_id at all: the verifier refuses it.
    let object = init(&node, &ada, "wallet.requested", "/v1/wallets", &body).await;
    let mut signature = sign_object(&mut ada, &object, &origin());
    if let UserSignature::Passkey {
        client_data_json, ..
    } = &mut signature
    {
        let mut cd: Value =
            serde_json::from_slice(&B64URL.decode(&*client_data_json).unwrap()).unwrap();
        cd["origin"] = "https://localhost.evil.example".into();
        *client_data_json = B64URL.encode(serde_json::to_vec(&cd).unwrap());
    }
    let r = token_for(&node, &ada, &object, &signature).await;
    assert_problem(&(r.0, r.1.clone()), 403, "user-signature");
    assert!(
        r.1["detail"].as_str().unwrap().contains("origin"),
        "{}",
        r.1
    );

    // Another rp_id in authenticatorData.
    let object = init(&node, &ada, "wallet.requested", "/v1/wallets", &body).await;
    let mut signature = sign_object(&mut ada, &object, &origin());
    if let UserSignature::Passkey {
        authenticator_data, ..
    } = &mut signature
    {
        let mut auth = B64URL.decode(&*authenticator_data).unwrap();
        auth[..32].copy_from_slice(&<sha2::Sha256 as sha2::Digest>::digest(b"evil.example"));
        *authenticator_data = B64URL.encode(auth);
    }
    let r = token_for(&node, &ada, &object, &signature).await;
    assert_problem(&(r.0, r.1.clone()), 403, "user-signature");
    assert!(
        r.1["detail"].as_str().unwrap().contains("relying party"),
        "{}",
        r.1
    );

    // A login assertion (webauthn-rs's random challenge) offered as the action's signature.
    let start = json_call(
        &node,
        "POST",
        "/v1/auth/login/start",
        None,
        &json!({"tenant": ada.tenant, "user": ada.id}),
    )
    .await;
    let rcr: RequestChallengeResponse = serde_json::from_value(start.1["options"].clone()).unwrap();
    let Signer::Passkey(authenticator) = &mut ada.signer else {
        unreachable!()
    };
    let a = serde_json::to_value(authenticator.do_authentication(origin(), rcr).unwrap()).unwrap();
    let login_signature = UserSignature::Passkey {
        authenticator_data: B64URL.encode(b64(&a["response"]["authenticatorData"])),
        client_data_json: B64URL.encode(b64(&a["response"]["clientDataJSON"])),
        signature: B64URL.encode(b64(&a["response"]["signature"])),
    };
    let object = init(&node, &ada, "wallet.requested", "/v1/wallets", &body).await;
    let r = token_for(&node, &ada, &object, &login_signature).await;
    assert_problem(&(r.0, r.1.clone()), 403, "user-signature");
    assert!(
        r.1["detail"].as_str().unwrap().contains("challenge"),
        "{}",
        r.1
    );

    // Malformed base64 and JSON.
    let object = init(&node, &ada, "wallet.requested", "/v1/wallets", &body).await;
    let bad = UserSignature::Passkey {
        authenticator_data: "***".into(),
        client_data_json: "***".into(),
        signature: "***".into(),
    };
    let r = token_for(&node, &ada, &object, &bad).await;
    assert_problem(&(r.0, r.1.clone()), 403, "user-signature");
    let r = node
        .call(
            "POST",
            "/v1/auth/action",
            &[("authorization", &ada.bearer())],
            Some(b"{\"challenge\": ".to_vec()),
        )
        .await;
    assert_problem(&(r.0, r.1.clone()), 400, "invalid-body");
    // A registration whose attestationObject is not CBOR.
    let (tenant, invite) = create_tenant(&node, "beta").await;
    let start = json_call(
        &node,
        "POST",
        "/v1/auth/register/start",
        None,
        &json!({"tenant": tenant, "invite": invite}),
    )
    .await;
    let ccr: CreationChallengeResponse =
        serde_json::from_value(start.1["options"].clone()).unwrap();
    let mut fresh = SoftPasskey::new(true);
    let mut credential =
        serde_json::to_value(fresh.do_registration(origin(), ccr).unwrap()).unwrap();
    credential["response"]["attestationObject"] = B64URL.encode(b"\xff\x00 not cbor").into();
    let r = json_call(
        &node,
        "POST",
        "/v1/auth/register/finish",
        None,
        &json!({"registration": start.1["registration"], "credential": credential}),
    )
    .await;
    assert_problem(&(r.0, r.1.clone()), 403, "registration-refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_keys_roles_and_revocation() {
    let node = boot().await;
    let mut ada = admin(&node).await;

    // Ada invites Bob as a member; Bob registers.
    let r = act(
        &node,
        &mut ada,
        "user.invited",
        "/v1/users",
        &json!({"role": "member"}),
    )
    .await;
    assert_eq!(r.0, StatusCode::CREATED, "{}", r.1);
    let mut bob = register(&node, &ada.tenant, r.1["invite"].as_str().unwrap()).await;

    // A member may not change policies.
    let object = init(
        &node,
        &bob,
        "policy.changed",
        "/v1/policies",
        &valid_policy(),
    )
    .await;
    let signature = sign_object(&mut bob, &object, &origin());
    let token = token_for(&node, &bob, &object, &signature).await;
    let r = perform(
        &node,
        token.1["userAction"].as_str(),
        "/v1/policies",
        &valid_policy(),
    )
    .await;
    assert_problem(&(r.0, r.1.clone()), 403, "user-not-authorized");

    // Another user's credential: Ada's passkey signs Bob's action (it names Bob's
    // credential), which does not verify under Bob's key.
    let object = init(
        &node,
        &bob,
        "wallet.requested",
        "/v1/wallets",
        &json!({"name": "b"}),
    )
    .await;
    let signature = sign_object(&mut ada, &object, &origin());
    let r = token_for(&node, &bob, &object, &signature).await;
    assert_problem(&(r.0, r.1.clone()), 403, "user-signature");

    // Not even an admin adds a key for another user (one person could then sign as two).
    let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let params = govern_api::edge::key_credential_params(
        &bob.id,
        &CredentialKey::Ed25519(key.verifying_key()),
    );
    let r = act(
        &node,
        &mut ada,
        "credential.registered",
        "/v1/credentials",
        &params,
    )
    .await;
    assert_problem(&(r.0, r.1.clone()), 403, "user-not-authorized");
    // Bob adds an API key for himself (an action his passkey signs); he logs in with it.
    let r = act(
        &node,
        &mut bob,
        "credential.registered",
        "/v1/credentials",
        &params,
    )
    .await;
    assert_eq!(r.0, StatusCode::CREATED, "{}", r.1);
    let key_id = r.1["credential"].as_str().unwrap().to_string();
    // An action adds API keys only: a "passkey" without its registration ceremony is refused.
    let other = ed25519_dalek::SigningKey::from_bytes(&[8; 32]);
    let mut as_passkey = govern_api::edge::key_credential_params(
        &bob.id,
        &CredentialKey::Ed25519(other.verifying_key()),
    );
    as_passkey["type"] = "passkey".into();
    let r = act(
        &node,
        &mut bob,
        "credential.registered",
        "/v1/credentials",
        &as_passkey,
    )
    .await;
    assert_problem(&(r.0, r.1.clone()), 400, "user-action-malformed");
    let start = json_call(
        &node,
        "POST",
        "/v1/auth/login/start",
        None,
        &json!({"tenant": bob.tenant, "user": bob.id, "credential": key_id}),
    )
    .await;
    assert_eq!(start.0, StatusCode::OK, "{}", start.1);
    let login: ChallengeObject = serde_json::from_value(start.1["challenge"].clone()).unwrap();
    let mut bob_key = User {
        tenant: bob.tenant.clone(),
        id: bob.id.clone(),
        credential: key_id.clone(),
        session: String::new(),
        signer: Signer::Key(key.clone()),
    };
    // The login object is no action: offered as one it fails on its domain (checked below).
    let login_signature = sign_object(&mut bob_key, &login, &origin());
    let fin = json_call(
        &node,
        "POST",
        "/v1/auth/login/finish",
        None,
        &json!({"login": start.1["login"], "signature": login_signature}),
    )
    .await;
    assert_eq!(fin.0, StatusCode::OK, "{}", fin.1);
    bob_key.session = fin.1["session"].as_str().unwrap().to_string();
    let wallet = new_wallet(&node, &mut bob_key).await;
    let event = node.entry(node.size() - 1);
    assert_eq!(event.event().body["signature"]["type"], "key");
    let _ = wallet;

    // Ada revokes the key: its session ends, it cannot log in again, and an action it
    // signed before the revocation is refused by the log.
    let params_late = json!({"name": "late"});
    let init_late = json_call(
        &node,
        "POST",
        "/v1/auth/action/init",
        Some(&bob_key.bearer()),
        &json!({"kind": "wallet.requested", "method": "POST", "path": "/v1/wallets", "body": params_late}),
    )
    .await;
    let object: ChallengeObject = serde_json::from_value(init_late.1["challenge"].clone()).unwrap();
    let late_signature = sign_object(&mut bob_key, &object, &origin());
    let r = act(
        &node,
        &mut ada,
        "credential.revoked",
        "/v1/credentials/revoke",
        &json!({"credential": key_id}),
    )
    .await;
    assert_eq!(r.0, StatusCode::CREATED, "{}", r.1);
    let r = token_for(&node, &bob_key, &object, &late_signature).await;
    assert_problem(&(r.0, r.1.clone()), 401, "unauthenticated");
    assert!(
        r.1["detail"].as_str().unwrap().contains("revoked"),
        "{}",
        r.1
    );
    let tenant_id = TenantId(uuid::Uuid::parse_str(&bob.tenant).unwrap());
    let tenant_leaf = node
        .services
        .policy
        .with_tenant(&tenant_id, |t| t.leaf)
        .unwrap();
    let late = clear_action_event(
        &node,
        &object,
        &late_signature,
        &init_late.1["salt"],
        params_late,
        vec![tenant_leaf],
    );
    assert_problem(&node.post(&late).await, 403, "credential-revoked");
    let start = json_call(
        &node,
        "POST",
        "/v1/auth/login/start",
        None,
        &json!({"tenant": bob.tenant, "user": bob.id, "credential": key_id}),
    )
    .await;
    assert_problem(&(start.0, start.1.clone()), 403, "login-refused");

    // Ada makes Bob an admin; now he may change the policy.
    let r = act(
        &node,
        &mut ada,
        "user.role_changed",
        "/v1/users/role",
        &json!({"user": bob.id, "role": "admin"}),
    )
    .await;
    assert_eq!(r.0, StatusCode::CREATED, "{}", r.1);
    let r = act(
        &node,
        &mut bob,
        "policy.changed",
        "/v1/policies",
        &valid_policy(),
    )
    .await;
    assert_eq!(r.0, StatusCode::CREATED, "{}", r.1);

    // The key's login object offered as an action: refused on its domain by the log.
    let mut forged = node.entry(node.size() - 1).event().body.clone();
    forged.insert("action".into(), serde_json::to_value(&login).unwrap());
    forged.insert(
        "signature".into(),
        serde_json::to_value(&login_signature).unwrap(),
    );
    let e = node
        .services
        .edge
        .identity
        .sign(
            Kind::new("policy.changed").unwrap(),
            TenantId(uuid::Uuid::parse_str(&bob.tenant).unwrap()),
            RequestId::new_v7(),
            node.entry(node.size() - 1).event().parents.clone(),
            forged,
            govern_core::event::Timestamp::now(),
        )
        .unwrap();
    assert_problem(&node.post(&e).await, 403, "user-action-binding");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_edge_cannot_add_a_credential_without_an_admins_signature() {
    let node = boot().await;
    let ada = admin(&node).await;
    // The edge's own identity appends a credential for Ada, with no user action.
    let key = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
    let cose = CredentialKey::Ed25519(key.verifying_key()).to_cose();
    let tenant_id = TenantId(uuid::Uuid::parse_str(&ada.tenant).unwrap());
    let (user_leaf, tenant_leaf) = node
        .services
        .policy
        .with_tenant(&tenant_id, |t| (t.users[&ada.id].leaf, t.leaf))
        .unwrap();
    let mut body = serde_json::Map::new();
    body.insert("user".into(), ada.id.clone().into());
    body.insert(
        "credential".into(),
        govern_projections::tenants::key_credential_id(&cose).into(),
    );
    body.insert("type".into(), "key".into());
    body.insert("public_key".into(), B64URL.encode(&cose).into());
    let e = node
        .services
        .edge
        .identity
        .sign(
            Kind::new("credential.registered").unwrap(),
            tenant_id,
            RequestId::new_v7(),
            vec![user_leaf],
            body,
            govern_core::event::Timestamp::now(),
        )
        .unwrap();
    assert_problem(&node.post(&e).await, 403, "user-action-missing");
    // Nor any other action kind without a signature.
    let e = node
        .services
        .edge
        .identity
        .sign(
            Kind::new("wallet.requested").unwrap(),
            tenant_id,
            RequestId::new_v7(),
            vec![tenant_leaf],
            serde_json::Map::new(),
            govern_core::event::Timestamp::now(),
        )
        .unwrap();
    assert_problem(&node.post(&e).await, 403, "user-action-missing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_tenants_ids_answer_exactly_as_missing_ones() {
    let node = boot().await;
    let mut ada = admin(&node).await;
    let (other_tenant, other_invite) = create_tenant(&node, "globex").await;
    let mut eve = register(&node, &other_tenant, &other_invite).await;
    let wallet = new_wallet(&node, &mut ada).await;
    let missing = uuid::Uuid::now_v7().to_string();

    for what in ["wallets", "requests"] {
        let theirs = node
            .call(
                "GET",
                &format!("/v1/{what}/{wallet}"),
                &[("authorization", &eve.bearer())],
                None,
            )
            .await;
        let none = node
            .call(
                "GET",
                &format!("/v1/{what}/{missing}"),
                &[("authorization", &eve.bearer())],
                None,
            )
            .await;
        assert_eq!(theirs.0, StatusCode::NOT_FOUND);
        assert_eq!(theirs.2, none.2, "{} vs {}", theirs.1, none.1);
        // The owner sees it.
        let own = node
            .call(
                "GET",
                &format!("/v1/{what}/{wallet}"),
                &[("authorization", &ada.bearer())],
                None,
            )
            .await;
        assert_eq!(own.0, StatusCode::OK, "{}", own.1);
    }
    // Eve cannot move Ada's wallet: 404, byte-identical to a missing wallet.
    let path = format!("/v1/wallets/{wallet}/transfers");
    let r = act(&node, &mut eve, "transfer.requested", &path, &transfer()).await;
    let missing_path = format!("/v1/wallets/{missing}/transfers");
    let m = act(
        &node,
        &mut eve,
        "transfer.requested",
        &missing_path,
        &transfer(),
    )
    .await;
    assert_eq!(r.0, StatusCode::NOT_FOUND, "{}", r.1);
    assert_eq!(r.2, m.2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passkey_counter_that_goes_back_is_refused() {
    let node = boot().await;
    let mut ada = admin(&node).await;
    let body = json!({"name": "ops"});
    // Two signatures in order: counters n and n+1.
    let first = init(&node, &ada, "wallet.requested", "/v1/wallets", &body).await;
    let first_sig = sign_object(&mut ada, &first, &origin());
    let second = init(&node, &ada, "wallet.requested", "/v1/wallets", &body).await;
    let second_sig = sign_object(&mut ada, &second, &origin());
    // The later one lands first; then the earlier one's counter is behind.
    let t = token_for(&node, &ada, &second, &second_sig).await;
    let r = perform(&node, t.1["userAction"].as_str(), "/v1/wallets", &body).await;
    assert_eq!(r.0, StatusCode::CREATED, "{}", r.1);
    let r = token_for(&node, &ada, &first, &first_sig).await;
    assert_problem(&(r.0, r.1.clone()), 403, "passkey-counter");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_and_spent_nonces_survive_a_restart() {
    let node = boot().await;
    let mut ada = admin(&node).await;
    let wallet = new_wallet(&node, &mut ada).await;
    let appended = node.entry(node.size() - 1);
    let tenant_id = TenantId(uuid::Uuid::parse_str(&ada.tenant).unwrap());
    let before = node
        .services
        .policy
        .with_tenant(&tenant_id, |t| t.clone())
        .unwrap();
    let (services, _dir, tmp, _storage) = node.restart().await;
    // The fold rebuilt from the log's tracked entries is the same.
    let after = services
        .policy
        .with_tenant(&tenant_id, |t| t.clone())
        .unwrap();
    assert_eq!(after, before);
    assert!(after.wallets.contains_key(&wallet));
    // The wallet's user action, appended again, is a spent nonce.
    let again = services
        .edge
        .identity
        .sign(
            Kind::new("wallet.requested").unwrap(),
            appended.event().tenant,
            appended.event().request,
            appended.event().parents.clone(),
            appended.event().body.clone(),
            govern_core::event::Timestamp::now(),
        )
        .unwrap();
    let err = services.log.append(again).await.unwrap_err();
    assert!(err.to_string().contains("nonce"), "{err}");
    drop(services);
    drop(tmp);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_actions_and_sessions_expire() {
    let node = support::boot_edge(|mut c| {
        c.action_token_ttl_s = 1;
        c.ceremony_ttl_s = 2;
        c.session_ttl_s = 8;
        c
    })
    .await;
    let mut ada = admin(&node).await;
    // A fresh session, timed from here.
    let start = json_call(
        &node,
        "POST",
        "/v1/auth/login/start",
        None,
        &json!({"tenant": ada.tenant, "user": ada.id}),
    )
    .await;
    let rcr: RequestChallengeResponse = serde_json::from_value(start.1["options"].clone()).unwrap();
    let Signer::Passkey(authenticator) = &mut ada.signer else {
        unreachable!()
    };
    let assertion = authenticator.do_authentication(origin(), rcr).unwrap();
    let fin = json_call(
        &node,
        "POST",
        "/v1/auth/login/finish",
        None,
        &json!({"login": start.1["login"], "assertion": assertion}),
    )
    .await;
    assert_eq!(fin.0, StatusCode::OK, "{}", fin.1);
    ada.session = fin.1["session"].as_str().unwrap().to_string();
    let signed_in = std::time::Instant::now();

    let body = json!({"name": "ops"});
    // A token unused past its lifetime.
    let token = user_action(&node, &mut ada, "wallet.requested", "/v1/wallets", &body).await;
    // An initiated action signed too late.
    let late = init(&node, &ada, "wallet.requested", "/v1/wallets", &body).await;
    tokio::time::sleep(std::time::Duration::from_millis(2_500)).await;
    let r = perform(&node, Some(&token), "/v1/wallets", &body).await;
    assert_problem(&(r.0, r.1.clone()), 403, "user-action-token");
    let signature = sign_object(&mut ada, &late, &origin());
    let r = token_for(&node, &ada, &late, &signature).await;
    assert_problem(&(r.0, r.1.clone()), 403, "action-unknown");
    // The session still works until its own lifetime ends, then not.
    let object = init(&node, &ada, "wallet.requested", "/v1/wallets", &body).await;
    assert_eq!(object.kind, "wallet.requested");
    tokio::time::sleep(std::time::Duration::from_millis(8_500).saturating_sub(signed_in.elapsed()))
        .await;
    let r = json_call(
        &node,
        "POST",
        "/v1/auth/action/init",
        Some(&ada.bearer()),
        &json!({"kind": "wallet.requested", "method": "POST", "path": "/v1/wallets", "body": body}),
    )
    .await;
    assert_problem(&(r.0, r.1.clone()), 401, "unauthenticated");
}

/// A hand-made authenticator with `none` attestation that claims any credential id: what a
/// hostile client can send (nothing signs a `none` registration's authData).
struct Forger {
    key: p256::ecdsa::SigningKey,
    id: Vec<u8>,
}

impl Forger {
    fn client_data(kind: &str, challenge: &str) -> Vec<u8> {
        serde_json::to_vec(
            &json!({"type": kind, "challenge": challenge, "origin": ORIGIN, "crossOrigin": false}),
        )
        .unwrap()
    }

    fn registration(&self, options: &Value) -> Value {
        use sha2::Digest as _;
        let challenge = options["publicKey"]["challenge"].as_str().unwrap();
        let client = Self::client_data("webauthn.create", challenge);
        let mut auth = sha2::Sha256::digest(b"localhost").to_vec();
        auth.push(0x45); // UP, UV, AT
        auth.extend_from_slice(&0u32.to_be_bytes());
        auth.extend_from_slice(&[0; 16]);
        auth.extend_from_slice(&u16::try_from(self.id.len()).unwrap().to_be_bytes());
        auth.extend_from_slice(&self.id);
        auth.extend_from_slice(&CredentialKey::P256(*self.key.verifying_key()).to_cose());
        // {"fmt": "none", "attStmt": {}, "authData": auth}
        let mut att = vec![0xa3, 0x63];
        att.extend_from_slice(b"fmt");
        att.push(0x64);
        att.extend_from_slice(b"none");
        att.push(0x67);
        att.extend_from_slice(b"attStmt");
        att.push(0xa0);
        att.push(0x68);
        att.extend_from_slice(b"authData");
        att.push(0x59);
        att.extend_from_slice(&u16::try_from(auth.len()).unwrap().to_be_bytes());
        att.extend_from_slice(&auth);
        json!({
            "id": B64URL.encode(&self.id), "rawId": B64URL.encode(&self.id), "type": "public-key",
            "response": {"attestationObject": B64URL.encode(att), "clientDataJSON": B64URL.encode(client)},
            "extensions": {}
        })
    }

    fn assertion(&self, options: &Value) -> Value {
        use sha2::Digest as _;
        let challenge = options["publicKey"]["challenge"].as_str().unwrap();
        let client = Self::client_data("webauthn.get", challenge);
        let mut auth = sha2::Sha256::digest(b"localhost").to_vec();
        auth.push(0x05);
        auth.extend_from_slice(&9u32.to_be_bytes());
        let mut message = auth.clone();
        message.extend_from_slice(&sha2::Sha256::digest(&client));
        let sig: p256::ecdsa::Signature = p256::ecdsa::signature::Signer::sign(&self.key, &message);
        json!({
            "id": B64URL.encode(&self.id), "rawId": B64URL.encode(&self.id), "type": "public-key",
            "response": {
                "authenticatorData": B64URL.encode(auth),
                "clientDataJSON": B64URL.encode(client),
                "signature": B64URL.encode(sig.to_der().as_bytes()),
                "userHandle": null
            },
            "extensions": {}
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passkey_registered_in_another_tenant_under_a_victims_id_cannot_log_in_as_the_victim() {
    let node = boot().await;
    let victim = admin(&node).await;
    let forger = Forger {
        key: p256::ecdsa::SigningKey::from_bytes(&[3u8; 32].into()).unwrap(),
        id: B64URL.decode(&victim.credential).unwrap(),
    };

    // The attacker, admin of another tenant, registers their own key under the victim's
    // credential id: ids are per tenant, so that is allowed there.
    let (tenant, invite) = create_tenant(&node, "mallory").await;
    let start = json_call(
        &node,
        "POST",
        "/v1/auth/register/start",
        None,
        &json!({"tenant": tenant, "invite": invite}),
    )
    .await;
    let r = json_call(&node, "POST", "/v1/auth/register/finish", None, &json!({"registration": start.1["registration"], "credential": forger.registration(&start.1["options"])})).await;
    assert_eq!(r.0, StatusCode::CREATED, "{}", r.1);
    // The forger logs into its own tenant with it.
    let start = json_call(
        &node,
        "POST",
        "/v1/auth/login/start",
        None,
        &json!({"tenant": tenant, "user": r.1["user"]}),
    )
    .await;
    let fin = json_call(
        &node,
        "POST",
        "/v1/auth/login/finish",
        None,
        &json!({"login": start.1["login"], "assertion": forger.assertion(&start.1["options"])}),
    )
    .await;
    assert_eq!(fin.0, StatusCode::OK, "{}", fin.1);

    // Logging in as the victim with that key under the victim's id fails: the victim's
    // tenant keeps its own passkey state, which the attacker's registration did not touch.
    let start = json_call(
        &node,
        "POST",
        "/v1/auth/login/start",
        None,
        &json!({"tenant": victim.tenant, "user": victim.id}),
    )
    .await;
    assert_eq!(start.0, StatusCode::OK, "{}", start.1);
    let fin = json_call(
        &node,
        "POST",
        "/v1/auth/login/finish",
        None,
        &json!({"login": start.1["login"], "assertion": forger.assertion(&start.1["options"])}),
    )
    .await;
    assert_problem(&(fin.0, fin.1.clone()), 403, "login-refused");
    // And the same trick inside the victim's own tenant is refused at registration.
    let r = act_invite(&node, victim).await;
    let start = json_call(
        &node,
        "POST",
        "/v1/auth/register/start",
        None,
        &json!({"tenant": r.0, "invite": r.1, "name": "Mal"}),
    )
    .await;
    let r = json_call(&node, "POST", "/v1/auth/register/finish", None, &json!({"registration": start.1["registration"], "credential": forger.registration(&start.1["options"])})).await;
    assert_problem(&(r.0, r.1.clone()), 403, "registration-refused");
}

/// The victim invites a member: (tenant, invitation secret).
async fn act_invite(node: &Booted, mut admin: User) -> (String, String) {
    let r = act(
        node,
        &mut admin,
        "user.invited",
        "/v1/users",
        &json!({"role": "member"}),
    )
    .await;
    assert_eq!(r.0, StatusCode::CREATED, "{}", r.1);
    (
        admin.tenant.clone(),
        r.1["invite"].as_str().unwrap().to_string(),
    )
}

/// A request from peer address `from`, as a server with connect info hands it to the router.
async fn call_from(node: &Booted, from: SocketAddr, uri: &str, body: &Value) -> Reply {
    let mut req = Request::builder()
        .method("POST")
        .uri(uri)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(body).unwrap()))
        .unwrap();
    req.extensions_mut().insert(ConnectInfo(from));
    let resp = node.app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let retry = resp.headers().get("retry-after").cloned();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    let mut value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    if let (Some(r), Value::Object(o)) = (retry, &mut value) {
        o.insert("retry-after".into(), r.to_str().unwrap().into());
    }
    (status, value, bytes)
}

/// `user`'s passkey login from `from`: start, assert, finish; the finish's reply.
async fn passkey_login_from(node: &Booted, user: &mut User, from: SocketAddr) -> Reply {
    let start = call_from(
        node,
        from,
        "/v1/auth/login/start",
        &json!({"tenant": user.tenant, "user": user.id}),
    )
    .await;
    assert_eq!(start.0, StatusCode::OK, "{}", start.1);
    passkey_finish_from(node, user, from, &start.1).await
}

/// Finish the login ceremony `start` answered with `user`'s passkey.
async fn passkey_finish_from(
    node: &Booted,
    user: &mut User,
    from: SocketAddr,
    start: &Value,
) -> Reply {
    let rcr: RequestChallengeResponse = serde_json::from_value(start["options"].clone()).unwrap();
    let Signer::Passkey(authenticator) = &mut user.signer else {
        unreachable!()
    };
    let assertion = authenticator.do_authentication(origin(), rcr).unwrap();
    call_from(
        node,
        from,
        "/v1/auth/login/finish",
        &json!({"login": start["login"], "assertion": assertion}),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attacker_looping_login_start_for_a_victim_cannot_stop_the_victims_login() {
    use govern_api::edge::LOGINS_PER_SOURCE_MAX;
    let node = boot().await;
    let mut victim = admin(&node).await;
    let victim_at: SocketAddr = "192.0.2.7:50000".parse().unwrap();
    // The victim starts a login; user ids are public in the log.
    let start = call_from(
        &node,
        victim_at,
        "/v1/auth/login/start",
        &json!({"tenant": victim.tenant, "user": victim.id}),
    )
    .await;
    assert_eq!(start.0, StatusCode::OK, "{}", start.1);

    // The attacker loops login/start for the victim from one IPv6 /56, changing its address
    // (even its /64) and port at every call: one source, bounded; nothing is evicted.
    let mut refused = 0;
    for i in 0..(LOGINS_PER_SOURCE_MAX + 8) {
        let from: SocketAddr = format!("[2001:db8:aa:bb{i:02x}::{i:x}]:{}", 40000 + i)
            .parse()
            .unwrap();
        let r = call_from(
            &node,
            from,
            "/v1/auth/login/start",
            &json!({"tenant": victim.tenant, "user": victim.id}),
        )
        .await;
        if i < LOGINS_PER_SOURCE_MAX {
            assert_eq!(r.0, StatusCode::OK, "start {i}: {}", r.1);
        } else {
            assert_problem(&(r.0, r.1.clone()), 429, "too-many-logins");
            assert!(r.1["retry-after"].as_str().is_some(), "{}", r.1);
            refused += 1;
        }
    }
    assert_eq!(refused, 8);

    // The victim completes the login they started, and can start and finish another.
    let fin = passkey_finish_from(&node, &mut victim, victim_at, &start.1).await;
    assert_eq!(fin.0, StatusCode::OK, "{}", fin.1);
    let fin = passkey_login_from(&node, &mut victim, victim_at).await;
    assert_eq!(fin.0, StatusCode::OK, "{}", fin.1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_member_scripting_logins_cannot_make_others_logins_fail() {
    use govern_api::edge::LOGINS_PER_SOURCE_MAX;
    let node = boot().await;
    let mut ada = admin(&node).await;
    let tenant = ada.tenant.clone();
    let mut bob = invite_member(&node, &mut ada).await;
    let bob_at: SocketAddr = "198.51.100.20:1".parse().unwrap();
    let ada_at: SocketAddr = "[::ffff:203.0.113.5]:443".parse().unwrap();

    // Bob scripts login/start for himself (and for Ada) until his address is refused.
    let mut first = None;
    for i in 0..LOGINS_PER_SOURCE_MAX {
        let whom = if i % 2 == 0 { &bob.id } else { &ada.id };
        let r = call_from(
            &node,
            bob_at,
            "/v1/auth/login/start",
            &json!({"tenant": tenant, "user": whom}),
        )
        .await;
        assert_eq!(r.0, StatusCode::OK, "start {i}: {}", r.1);
        first.get_or_insert(r.1);
    }
    let r = call_from(
        &node,
        bob_at,
        "/v1/auth/login/start",
        &json!({"tenant": tenant, "user": bob.id}),
    )
    .await;
    assert_problem(&(r.0, r.1.clone()), 429, "too-many-logins");

    // Ada, from her own address, logs in as usual; Bob's first ceremony was not evicted
    // either, and finishing it frees a place at his address.
    let fin = passkey_login_from(&node, &mut ada, ada_at).await;
    assert_eq!(fin.0, StatusCode::OK, "{}", fin.1);
    let fin = passkey_finish_from(&node, &mut bob, bob_at, &first.unwrap()).await;
    assert_eq!(fin.0, StatusCode::OK, "{}", fin.1);
    let r = call_from(
        &node,
        bob_at,
        "/v1/auth/login/start",
        &json!({"tenant": tenant, "user": bob.id}),
    )
    .await;
    assert_eq!(r.0, StatusCode::OK, "{}", r.1);
}

/// `admin` invites a member, who registers: the member.
async fn invite_member(node: &Booted, admin: &mut User) -> User {
    let r = act(
        node,
        admin,
        "user.invited",
        "/v1/users",
        &json!({"role": "member"}),
    )
    .await;
    assert_eq!(r.0, StatusCode::CREATED, "{}", r.1);
    register_named(node, &admin.tenant, r.1["invite"].as_str().unwrap(), "Bob").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_served_node_bounds_login_ceremonies_by_the_peers_address() {
    use govern_api::edge::LOGINS_PER_SOURCE_MAX;
    let node = boot().await;
    let ada = admin(&node).await;
    // The node as `govern node` serves it: over TCP, with the peer's address.
    let edge = Edge::new(
        EdgeConfig::new(RP_ID, ORIGIN).unwrap(),
        Arc::clone(&node.services.log) as _,
        Arc::clone(&node.services.policy) as _,
        Arc::clone(&node.services.edge),
        Arc::clone(&node.services.keys) as _,
        node.dir.operator_token().unwrap(),
        node.dir.passkeys_path(),
    )
    .unwrap();
    let state = AppState::new(Arc::clone(&node.services.log), &node.dir.verifier_key())
        .with_identities(Arc::clone(&node.services.policy))
        .with_keys(Arc::clone(&node.services.keys))
        .with_edge(Arc::new(edge));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let served = NodeHandle::spawn(state, listener).unwrap();
    let url = format!("http://{}/v1/auth/login/start", served.addr);
    let client_at = |ip: [u8; 4]| {
        reqwest::Client::builder()
            .no_proxy()
            .local_address(IpAddr::from(ip))
            .build()
            .unwrap()
    };
    let body = json!({"tenant": ada.tenant, "user": ada.id});
    let here = client_at([127, 0, 0, 1]);
    for i in 0..LOGINS_PER_SOURCE_MAX {
        let r = here.post(&url).json(&body).send().await.unwrap();
        assert_eq!(r.status(), 200, "start {i}");
    }
    let r = here.post(&url).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    let problem: Value = r.json().await.unwrap();
    assert_eq!(
        problem["type"], "urn:govern:problem:too-many-logins",
        "{problem}"
    );
    // Another address is another source.
    let r = client_at([127, 0, 0, 2])
        .post(&url)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    served.shutdown().await;
}

#[test]
fn a_source_is_an_ipv4_address_or_an_ipv6_prefix() {
    use govern_api::edge::Source;
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    assert_eq!(Source::of(ip("192.0.2.1")), Source::Ip(ip("192.0.2.1")));
    assert_ne!(Source::of(ip("192.0.2.1")), Source::of(ip("192.0.2.2")));
    assert_eq!(
        Source::of(ip("::ffff:192.0.2.1")),
        Source::Ip(ip("192.0.2.1"))
    );
    assert_eq!(
        Source::of(ip("2001:db8:aa:bbcc:1:2:3:4")),
        Source::Ip(ip("2001:db8:aa:bb00::"))
    );
    assert_ne!(
        Source::of(ip("2001:db8:aa:bc00::1")),
        Source::of(ip("2001:db8:aa:bb00::1"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_capped_per_user_ending_the_users_oldest() {
    use govern_api::edge::SESSIONS_PER_USER_MAX;
    let node = boot().await;
    let mut ada = admin(&node).await;
    let mut bob = invite_member(&node, &mut ada).await;
    let at: SocketAddr = "192.0.2.30:1".parse().unwrap();
    // Bob's first session (his registration's) holds a token he has not used yet.
    let oldest = bob.bearer();
    let body = json!({"name": "ops"});
    let token = user_action(&node, &mut bob, "wallet.requested", "/v1/wallets", &body).await;
    // Bob scripts logins: one session each.
    let mut sessions = Vec::new();
    for _ in 0..SESSIONS_PER_USER_MAX {
        let fin = passkey_login_from(&node, &mut bob, at).await;
        assert_eq!(fin.0, StatusCode::OK, "{}", fin.1);
        sessions.push(format!("Bearer {}", fin.1["session"].as_str().unwrap()));
    }
    let me = |auth: String| {
        let node = &node;
        async move {
            let r = node
                .call("GET", "/v1/me", &[("authorization", &auth)], None)
                .await;
            (r.0, r.1)
        }
    };
    // His oldest session ended, and the token it made with it; the rest, and Ada's, live.
    assert_problem(&me(oldest).await, 401, "unauthenticated");
    let r = perform(&node, Some(&token), "/v1/wallets", &body).await;
    assert_problem(&(r.0, r.1.clone()), 403, "user-action-token");
    for s in &sessions {
        assert_eq!(me(s.clone()).await.0, StatusCode::OK);
    }
    assert_eq!(me(ada.bearer()).await.0, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_are_capped_per_user_at_the_edge_and_in_the_log() {
    use govern_admission::actions::KEYS_PER_USER_MAX;
    let node = boot().await;
    let mut ada = admin(&node).await;
    let user = ada.id.clone();
    let key = |i: u8| {
        let k = ed25519_dalek::SigningKey::from_bytes(&[i; 32]);
        govern_api::edge::key_credential_params(&user, &CredentialKey::Ed25519(k.verifying_key()))
    };
    let mut ids = Vec::new();
    for i in 0..KEYS_PER_USER_MAX {
        let params = key(u8::try_from(i + 1).unwrap());
        let r = act(
            &node,
            &mut ada,
            "credential.registered",
            "/v1/credentials",
            &params,
        )
        .await;
        assert_eq!(r.0, StatusCode::CREATED, "key {i}: {}", r.1);
        ids.push(r.1["credential"].as_str().unwrap().to_string());
    }
    // One more: the edge refuses it, and appends nothing.
    let size = node.size();
    let r = act(
        &node,
        &mut ada,
        "credential.registered",
        "/v1/credentials",
        &key(100),
    )
    .await;
    assert_problem(&(r.0, r.1.clone()), 403, "credential-limit");
    assert_eq!(node.size(), size);

    // A hostile edge appends it anyway, with Ada's genuine signature: the log refuses it.
    let params = key(101);
    let init = json_call(
        &node,
        "POST",
        "/v1/auth/action/init",
        Some(&ada.bearer()),
        &json!({"kind": "credential.registered", "method": "POST", "path": "/v1/credentials", "body": params}),
    )
    .await;
    assert_eq!(init.0, StatusCode::OK, "{}", init.1);
    let object: ChallengeObject = serde_json::from_value(init.1["challenge"].clone()).unwrap();
    let signature = sign_object(&mut ada, &object, &origin());
    let tenant_id = TenantId(uuid::Uuid::parse_str(&ada.tenant).unwrap());
    let user_leaf = node
        .services
        .policy
        .with_tenant(&tenant_id, |t| t.users[&ada.id].leaf)
        .unwrap();
    let forced = clear_action_event(
        &node,
        &object,
        &signature,
        &init.1["salt"],
        params,
        vec![user_leaf],
    );
    assert_problem(&node.post(&forced).await, 403, "credential-limit");
    assert_eq!(node.size(), size);

    // Revoking a key frees its place.
    let r = act(
        &node,
        &mut ada,
        "credential.revoked",
        "/v1/credentials/revoke",
        &json!({"credential": ids[0]}),
    )
    .await;
    assert_eq!(r.0, StatusCode::CREATED, "{}", r.1);
    let r = act(
        &node,
        &mut ada,
        "credential.registered",
        "/v1/credentials",
        &key(102),
    )
    .await;
    assert_eq!(r.0, StatusCode::CREATED, "{}", r.1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_credential_id_too_long_for_a_file_name_is_refused_before_anything_is_appended() {
    use govern_api::edge::PASSKEY_ID_CHARS_MAX;
    let node = boot().await;
    let (tenant, invite) = create_tenant(&node, "acme").await;
    // 200 bytes: a valid WebAuthn credential id (at most 1,023), 267 base64url characters.
    let forger = Forger {
        key: p256::ecdsa::SigningKey::from_bytes(&[4u8; 32].into()).unwrap(),
        id: vec![0x5a; 200],
    };
    assert!(B64URL.encode(&forger.id).len() > PASSKEY_ID_CHARS_MAX);
    let start = json_call(
        &node,
        "POST",
        "/v1/auth/register/start",
        None,
        &json!({"tenant": tenant, "invite": invite}),
    )
    .await;
    assert_eq!(start.0, StatusCode::OK, "{}", start.1);
    let size = node.size();
    let r = json_call(
        &node,
        "POST",
        "/v1/auth/register/finish",
        None,
        &json!({"registration": start.1["registration"], "credential": forger.registration(&start.1["options"])}),
    )
    .await;
    assert_problem(&(r.0, r.1.clone()), 400, "passkey-id-too-long");
    assert_eq!(node.size(), size, "nothing of the registration is appended");
    // The invitation is unused: an ordinary passkey registers with it.
    let _ = register(&node, &tenant, &invite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passkey_whose_state_cannot_be_saved_is_not_registered() {
    let node = boot().await;
    let (tenant, invite) = create_tenant(&node, "acme").await;
    // The tenant's passkey directory cannot be made: a file stands in its place.
    let blocker = node.dir.passkeys_path().join(&tenant);
    std::fs::write(&blocker, b"not a directory").unwrap();
    let start = json_call(
        &node,
        "POST",
        "/v1/auth/register/start",
        None,
        &json!({"tenant": tenant, "invite": invite}),
    )
    .await;
    assert_eq!(start.0, StatusCode::OK, "{}", start.1);
    let ccr: CreationChallengeResponse =
        serde_json::from_value(start.1["options"].clone()).unwrap();
    let credential = SoftPasskey::new(true)
        .do_registration(origin(), ccr)
        .unwrap();
    let size = node.size();
    let r = json_call(
        &node,
        "POST",
        "/v1/auth/register/finish",
        None,
        &json!({"registration": start.1["registration"], "credential": credential}),
    )
    .await;
    assert_problem(&(r.0, r.1.clone()), 503, "storage-unavailable");
    assert_eq!(
        node.size(),
        size,
        "no registration the log shows lacks its passkey"
    );

    // Once the store works, the same invitation registers, and the passkey logs in.
    std::fs::remove_file(&blocker).unwrap();
    let mut ada = register(&node, &tenant, &invite).await;
    let fin = passkey_login_from(&node, &mut ada, "192.0.2.40:1".parse().unwrap()).await;
    assert_eq!(fin.0, StatusCode::OK, "{}", fin.1);
}

/// RFC 8785 writes numbers as IEEE doubles, so a body holding 2^53 + 1 commits exactly as one
/// holding 2^53: a user who signed one would have signed the other. The edge refuses an
/// integer outside ±(2^53 − 1) in an action's body when the action starts and when it is
/// performed (amounts are decimal strings); ±(2^53 − 1) are signed and appended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn action_bodies_with_integers_beyond_two_to_the_53_are_refused() {
    let node = boot().await;
    let mut ada = admin(&node).await;
    let policy = |max: &str| -> Value {
        serde_json::from_str(&format!(r#"{{"policy":{{"quorum":{max}}}}}"#)).unwrap()
    };
    let refused = |max: &str| {
        format!(
            "the integer {max} at $.policy.quorum is outside ±(2^53 − 1), which RFC 8785 cannot write exactly; write it as a decimal string"
        )
    };
    for max in [
        "9007199254740993",
        "9007199254740992",
        "-9007199254740992",
        "-9007199254740993",
    ] {
        let r = json_call(
            &node,
            "POST",
            "/v1/auth/action/init",
            Some(&ada.bearer()),
            &json!({"kind": "policy.changed", "method": "POST", "path": "/v1/policies", "body": policy(max)}),
        )
        .await;
        assert_problem(&(r.0, r.1.clone()), 400, "invalid-body");
        assert_eq!(r.1["detail"], refused(max), "{}", r.1);
    }
    // Signed for 2^53 − 1, performed with 2^53 + 1: refused for the number itself.
    let token = user_action(
        &node,
        &mut ada,
        "policy.changed",
        "/v1/policies",
        &policy("9007199254740991"),
    )
    .await;
    let r = perform(
        &node,
        Some(&token),
        "/v1/policies",
        &policy("9007199254740993"),
    )
    .await;
    assert_problem(&(r.0, r.1.clone()), 400, "invalid-body");
    assert_eq!(r.1["detail"], refused("9007199254740993"), "{}", r.1);
    // ±(2^53 − 1) are signed, pass the number check and reach the policy parser, which
    // refuses this body for what it is (a policy has no `quorum` of its own).
    for max in ["9007199254740991", "-9007199254740991"] {
        let token = user_action(
            &node,
            &mut ada,
            "policy.changed",
            "/v1/policies",
            &policy(max),
        )
        .await;
        let r = perform(&node, Some(&token), "/v1/policies", &policy(max)).await;
        assert_problem(&(r.0, r.1.clone()), 400, "invalid-body");
        let detail = r.1["detail"].as_str().unwrap();
        assert!(
            detail.starts_with("not a policy change: "),
            "{max}: {detail}"
        );
    }
}

/// A policy that matches every transfer and does nothing.
fn valid_policy() -> Value {
    json!({"policy": {"id": "audit-all", "activity": "transfers",
        "rule": {"kind": "always"}, "action": {"kind": "none"}}})
}

/// `GET /v1/requests{query}` with `Authorization: <auth>`.
async fn list_requests(node: &Booted, auth: Option<&str>, query: &str) -> Reply {
    let headers: Vec<(&str, &str)> = auth.map(|a| ("authorization", a)).into_iter().collect();
    node.call("GET", &format!("/v1/requests{query}"), &headers, None)
        .await
}

/// The tenant's requests as the log itself shows them: the request of every user
/// registration and action of the tenant, in order of its first entry.
fn requests_in_the_log(node: &Booted, tenant: &str) -> Vec<(String, u64)> {
    let mut seen: Vec<(String, u64)> = Vec::new();
    for index in 0..node.size() {
        let entry = node.entry(index);
        let e = entry.event();
        let kind = e.kind.as_str();
        let users = kind == govern_projections::tenants::USER_REGISTERED
            || govern_projections::tenants::ACTION_KINDS.contains(&kind);
        let id = e.request.0.to_string();
        if e.tenant.0.to_string() == tenant && users && !seen.iter().any(|(r, _)| *r == id) {
            seen.push((id, index));
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_requests_are_listed_to_its_users_and_the_operator_page_by_page() {
    let node = boot().await;
    let mut ada = admin(&node).await;
    // Another tenant's requests never show.
    let (other, other_invite) = create_tenant(&node, "globex").await;
    let mut eve = register(&node, &other, &other_invite).await;
    new_wallet(&node, &mut eve).await;
    let mut wallets = Vec::new();
    for _ in 0..3 {
        wallets.push(new_wallet(&node, &mut ada).await);
    }
    let path = format!("/v1/wallets/{}/transfers", wallets[0]);
    let r = act(&node, &mut ada, "transfer.requested", &path, &transfer()).await;
    assert_eq!(r.0, StatusCode::CREATED, "{}", r.1);
    let transfer_id = r.1["request"].as_str().unwrap().to_string();
    let approvals = format!("/v1/requests/{transfer_id}/approvals/approve");
    let r = act(&node, &mut ada, "approval.decided", &approvals, &json!({})).await;
    assert_eq!(r.0, StatusCode::CREATED, "{}", r.1);

    // A session lists its own tenant: every request, in log order of its first event, with
    // the time recorded in that entry.
    let expected = requests_in_the_log(&node, &ada.tenant);
    assert_eq!(
        expected.len(),
        5,
        "a registration, three wallets, a transfer"
    );
    let mine = list_requests(&node, Some(&ada.bearer()), "").await;
    assert_eq!(mine.0, StatusCode::OK, "{}", mine.1);
    assert_eq!(mine.1["tenant"], ada.tenant);
    assert_eq!(mine.1["next"], Value::Null);
    let items = mine.1["requests"].as_array().unwrap();
    let got: Vec<(String, u64)> = items
        .iter()
        .map(|i| {
            (
                i["id"].as_str().unwrap().into(),
                i["index"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(got, expected);
    for item in items {
        let first = node.entry(item["index"].as_u64().unwrap());
        assert_eq!(item["time"], first.event().time.to_string());
        assert_eq!(item["kind"], first.event().kind.as_str());
    }
    assert_eq!(items[0]["kind"], "user.registered");
    assert_eq!(
        items[0]["events"], 2,
        "user.registered and credential.registered"
    );
    let t = &items[4];
    assert_eq!(
        (&t["id"], &t["kind"], &t["status"], &t["events"]),
        (
            &json!(transfer_id),
            &json!("transfer.requested"),
            // Approved by a user, but only the policy worker (not running here) decides.
            &json!("requested"),
            &json!(2)
        )
    );
    assert_eq!(items[1]["status"], "requested");
    // Naming its own tenant is the same answer.
    let named = list_requests(
        &node,
        Some(&ada.bearer()),
        &format!("?tenant={}", ada.tenant),
    )
    .await;
    assert_eq!(named.2, mine.2);
    // The operator names the tenant and sees the same.
    let operator = format!("Bearer {}", node.dir.operator_token().unwrap());
    let theirs = list_requests(&node, Some(&operator), &format!("?tenant={}", ada.tenant)).await;
    assert_eq!(theirs.0, StatusCode::OK, "{}", theirs.1);
    assert_eq!(theirs.2, mine.2);

    // Page by page: a request that arrives between two pages comes last, and no request is
    // lost or listed twice.
    let mut listed: Vec<(String, u64)> = Vec::new();
    let mut after: Option<u64> = None;
    let mut pages = 0;
    loop {
        let query = match after {
            Some(a) => format!("?limit=2&after={a}"),
            None => "?limit=2".to_string(),
        };
        let page = list_requests(&node, Some(&ada.bearer()), &query).await;
        assert_eq!(page.0, StatusCode::OK, "{}", page.1);
        let items = page.1["requests"].as_array().unwrap();
        assert!(items.len() <= 2);
        listed.extend(items.iter().map(|i| {
            (
                i["id"].as_str().unwrap().into(),
                i["index"].as_u64().unwrap(),
            )
        }));
        pages += 1;
        if pages == 1 {
            new_wallet(&node, &mut ada).await;
        }
        match page.1["next"].as_u64() {
            Some(next) => {
                assert_eq!(Some(next), listed.last().map(|(_, i)| *i));
                after = Some(next);
            }
            None => break,
        }
    }
    let now = requests_in_the_log(&node, &ada.tenant);
    assert_eq!(now.len(), 6);
    assert_eq!(listed, now);
    assert_eq!(
        pages, 3,
        "2 + 2 + 2 requests, the last page saying there is no next"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_of_another_tenant_without_a_token_or_with_bad_paging_are_refused() {
    let node = boot().await;
    let ada = admin(&node).await;
    let (other, other_invite) = create_tenant(&node, "globex").await;
    let eve = register(&node, &other, &other_invite).await;
    let operator = format!("Bearer {}", node.dir.operator_token().unwrap());
    let acme = format!("?tenant={}", ada.tenant);

    // A user of another tenant: refused, whether the tenant exists or not.
    let r = list_requests(&node, Some(&eve.bearer()), &acme).await;
    assert_problem(&(r.0, r.1.clone()), 403, "other-tenant");
    assert_eq!(
        r.1["detail"],
        "a session lists only its own tenant's requests"
    );
    let missing = format!("?tenant={}", uuid::Uuid::now_v7());
    let r = list_requests(&node, Some(&eve.bearer()), &missing).await;
    assert_problem(&(r.0, r.1.clone()), 403, "other-tenant");

    // No token, or one that is neither the operator's nor a session.
    let r = list_requests(&node, None, &acme).await;
    assert_problem(&(r.0, r.1.clone()), 401, "unauthenticated");
    assert_eq!(
        r.1["detail"],
        "send Authorization: Bearer <session>; the operator sends the data dir's operator.token instead"
    );
    let r = list_requests(&node, Some("Bearer not-the-operators"), &acme).await;
    assert_problem(&(r.0, r.1.clone()), 401, "unauthenticated");
    assert_eq!(
        r.1["detail"],
        "the session is unknown or expired; sign in again; the operator sends the data dir's operator.token instead"
    );

    // The operator must name the tenant, an existing one, by its id.
    let r = list_requests(&node, Some(&operator), "").await;
    assert_problem(&(r.0, r.1.clone()), 400, "tenant-required");
    let r = list_requests(&node, Some(&operator), &missing).await;
    assert_problem(&(r.0, r.1.clone()), 404, "not-found");
    let r = list_requests(&node, Some(&operator), "?tenant=acme").await;
    assert_problem(&(r.0, r.1.clone()), 400, "bad-query");
    assert_eq!(r.1["detail"], "tenant \"acme\" is not a tenant id (a UUID)");

    // Paging out of range or unreadable.
    for (query, detail) in [
        ("&limit=0", Some("limit is 1 to 100")),
        ("&limit=101", Some("limit is 1 to 100")),
        ("&limit=-1", None),
        ("&after=first", None),
    ] {
        let r = list_requests(&node, Some(&operator), &format!("{acme}{query}")).await;
        assert_problem(&(r.0, r.1.clone()), 400, "bad-query");
        if let Some(detail) = detail {
            assert_eq!(r.1["detail"], detail, "{query}");
        }
    }
    let r = list_requests(&node, Some(&operator), &format!("{acme}&limit=100")).await;
    assert_eq!(r.0, StatusCode::OK, "{}", r.1);
}

/// What the dashboard reads besides the earlier endpoints: a credential by id (its
/// registration and latest action, for any user of its tenant, a missing one for any other),
/// an entry by leaf hash, and the key status per hour; and the dashboard's own files, served
/// from the binary under a same-origin Content Security Policy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboards_reads_answer_for_the_tenant_only() {
    let node = boot().await;
    let mut ada = admin(&node).await;
    let (other_tenant, other_invite) = create_tenant(&node, "globex").await;
    let eve = register(&node, &other_tenant, &other_invite).await;
    let r = act(
        &node,
        &mut ada,
        "wallet.requested",
        "/v1/wallets",
        &json!({"name": "treasury"}),
    )
    .await;
    assert_eq!(r.0, StatusCode::CREATED, "{}", r.1);
    let wallet_index = r.1["index"].as_u64().unwrap();
    let wallet_leaf = r.1["leaf"].as_str().unwrap().to_string();

    // The credential: its registration, and the wallet request as its latest action.
    let path = format!("/v1/credentials/{}", ada.credential);
    let own = node
        .call("GET", &path, &[("authorization", &ada.bearer())], None)
        .await;
    assert_eq!(own.0, StatusCode::OK, "{}", own.1);
    assert_eq!(own.1["user"], ada.id.as_str());
    assert_eq!(own.1["type"], "passkey");
    assert_eq!(own.1["last_action"], wallet_index);
    assert!(own.1["revoked"].is_null());
    let registered = own.1["registered"].as_u64().unwrap();
    let reg = node.entry(registered);
    assert_eq!(reg.event().kind.as_str(), "credential.registered");
    assert_eq!(reg.event().body["credential"], ada.credential.as_str());
    assert_eq!(own.1["leaf"], reg.leaf_hash().to_hex());
    // /v1/me says the same.
    let me = node
        .call("GET", "/v1/me", &[("authorization", &ada.bearer())], None)
        .await;
    assert_eq!(me.1["credentials"][0]["last_action"], wallet_index);
    assert_eq!(me.1["credentials"][0]["leaf"], own.1["leaf"]);
    // Another tenant's user: byte for byte a missing credential; nobody signed in: 401.
    let theirs = node
        .call("GET", &path, &[("authorization", &eve.bearer())], None)
        .await;
    let none = node
        .call(
            "GET",
            "/v1/credentials/AAAAAAAAAAAAAAAAAAAAAA",
            &[("authorization", &eve.bearer())],
            None,
        )
        .await;
    assert_problem(&(theirs.0, theirs.1.clone()), 404, "not-found");
    assert_eq!(theirs.2, none.2);
    let anon = node.call("GET", &path, &[], None).await;
    assert_problem(&(anon.0, anon.1), 401, "unauthenticated");

    // An entry by its leaf hash (either case); a malformed hash 400, an unknown one 404.
    let at = node
        .call("GET", &format!("/v1/leaves/{wallet_leaf}"), &[], None)
        .await;
    assert_eq!(at.0, StatusCode::OK, "{}", at.1);
    assert_eq!(at.1["index"], wallet_index);
    let upper = node
        .call(
            "GET",
            &format!("/v1/leaves/{}", wallet_leaf.to_uppercase()),
            &[],
            None,
        )
        .await;
    assert_eq!(upper.1["index"], wallet_index);
    let bad = node.call("GET", "/v1/leaves/not-a-hash", &[], None).await;
    assert_problem(&(bad.0, bad.1), 400, "bad-path");
    let unknown = node
        .call("GET", &format!("/v1/leaves/{}", "ab".repeat(32)), &[], None)
        .await;
    assert_problem(&(unknown.0, unknown.1), 404, "not-found");

    // Key status per hour: the hours add up to the totals, per role and scope.
    let k = node
        .call(
            "GET",
            &format!("/v1/tenants/{}/keys", ada.tenant),
            &[("authorization", &ada.bearer())],
            None,
        )
        .await;
    assert_eq!(k.0, StatusCode::OK, "{}", k.1);
    let hourly = k.1["hourly"].as_object().unwrap();
    assert!(!hourly.is_empty(), "{}", k.1);
    for what in ["releases", "decryptions"] {
        for (role, total) in k.1[what].as_object().unwrap() {
            for (scope, n) in total["scopes"].as_object().unwrap() {
                let sum: u64 = hourly
                    .values()
                    .filter_map(|h| h[what][role][scope].as_u64())
                    .sum();
                assert_eq!(Some(sum), n.as_u64(), "{what} {role} {scope}: {}", k.1);
            }
        }
        for hour in hourly.keys() {
            assert_eq!(hour.len(), 13, "YYYY-MM-DDTHH: {hour}");
        }
    }

    // The dashboard: from the binary, same origin only.
    let req = Request::builder().uri("/").body(Body::empty()).unwrap();
    let resp = node.app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let csp = resp.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.starts_with("default-src 'self'"), "{csp}");
    assert!(!csp.contains("http"), "{csp}");
    let page = resp.into_body().collect().await.unwrap().to_bytes();
    let page = String::from_utf8(page.to_vec()).unwrap();
    assert!(page.contains("src=\"/ui/app.js\""));
    for file in [
        "index.html",
        "app.js",
        "api.js",
        "verify.js",
        "style.css",
        "register.html",
        "register.js",
    ] {
        let req = Request::builder()
            .uri(format!("/ui/{file}"))
            .body(Body::empty())
            .unwrap();
        let resp = node.app.clone().oneshot(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{file}");
        assert_eq!(
            resp.headers()["content-security-policy"].to_str().unwrap(),
            csp,
            "{file}"
        );
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        // Nothing is loaded from elsewhere: no scheme-qualified URL (the one in the scripts
        // is SVG's namespace) and no protocol-relative one.
        let elsewhere = text
            .match_indices("://")
            .filter(|(i, _)| !text[i.saturating_sub(4)..].starts_with("http://www.w3.org/2000/svg"))
            .count();
        assert_eq!(elsewhere, 0, "{file} names another origin");
        for relative in ["\"//", "'//", "(//", "`//"] {
            assert!(!text.contains(relative), "{file} holds {relative}");
        }
    }
    let missing = node.call("GET", "/ui/nope.js", &[], None).await;
    assert_problem(&(missing.0, missing.1), 404, "not-found");
}
