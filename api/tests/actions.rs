//! Tenants, passkeys, API keys and User Action Signing, end to end on a booted node, with
//! webauthn-authenticator-rs's software passkey as the user's authenticator; and every
//! attack of the credentials issue, each with its exact problem type.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use axum::http::StatusCode;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use govern_core::action::{ChallengeObject, CredentialKey, UserSignature};
use govern_core::event::{Kind, RequestId, TenantId};
use serde_json::{Value, json};
use support::users::*;
use support::{Booted, ORIGIN, assert_problem, boot, boot_with};
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
    assert_eq!(status.1["status"], "approved");
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
        &json!({"policy": {"quorum": 2}}),
    )
    .await;
    let signature = sign_object(&mut bob, &object, &origin());
    let token = token_for(&node, &bob, &object, &signature).await;
    let r = perform(
        &node,
        token.1["userAction"].as_str(),
        "/v1/policies",
        &json!({"policy": {"quorum": 2}}),
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
    let mut body = serde_json::Map::new();
    body.insert("action".into(), serde_json::to_value(&object).unwrap());
    body.insert(
        "signature".into(),
        serde_json::to_value(&late_signature).unwrap(),
    );
    body.insert("salt".into(), init_late.1["salt"].clone());
    body.insert("params".into(), params_late);
    let late = node
        .services
        .edge
        .identity
        .sign(
            Kind::new("wallet.requested").unwrap(),
            tenant_id,
            RequestId(uuid::Uuid::parse_str(&object.request).unwrap()),
            vec![tenant_leaf],
            body,
        )
        .unwrap();
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
        &json!({"policy": {"quorum": 2}}),
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
    let (services, _dir, tmp) = node.restart().await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_ceremonies_are_capped_per_user() {
    let node = boot().await;
    let ada = admin(&node).await;
    let mut logins = Vec::new();
    for _ in 0..(govern_api::edge::LOGINS_PER_USER_MAX + 2) {
        let start = json_call(
            &node,
            "POST",
            "/v1/auth/login/start",
            None,
            &json!({"tenant": ada.tenant, "user": ada.id}),
        )
        .await;
        assert_eq!(start.0, StatusCode::OK, "{}", start.1);
        logins.push(start.1["login"].as_str().unwrap().to_string());
    }
    // The oldest went: finishing it is an unknown ceremony (whatever the assertion).
    let fin = json_call(&node, "POST", "/v1/auth/login/finish", None, &json!({"login": logins[0], "signature": {"type": "key", "client_data": "", "signature": ""}})).await;
    assert_problem(&(fin.0, fin.1.clone()), 403, "ceremony-unknown");
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
    for max in ["9007199254740991", "-9007199254740991"] {
        let r = act(
            &node,
            &mut ada,
            "policy.changed",
            "/v1/policies",
            &policy(max),
        )
        .await;
        assert_eq!(r.0, StatusCode::CREATED, "{max}: {}", r.1);
    }
}
