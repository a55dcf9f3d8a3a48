//! A hostile edge re-issuing what a user signed: the signed path names the object the event
//! must follow, and the log (not only the edge's HTTP checks) refuses any other parent set.
//! Every attack event here is built and signed by the edge's own identity and appended to
//! the log directly, as a compromised edge would; the same construction with the honest
//! parent is accepted, so each refusal is the binding's.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use axum::http::StatusCode;
use govern_core::action::ChallengeObject;
use govern_core::event::{Kind, RequestId, TenantId};
use govern_core::ids::LeafHash;
use serde_json::{Map, Value, json};
use support::users::*;
use support::{Booted, assert_problem, boot};

fn tenant_id(text: &str) -> TenantId {
    TenantId(uuid::Uuid::parse_str(text).unwrap())
}

/// The scope key `scope` (version 1) of `tenant`, as a reader holding it would: released to
/// the policy service (a hostile edge holds its own scope keys the same way).
async fn scope_key(node: &Booted, tenant: &TenantId, scope: &str) -> [u8; 32] {
    let (keys, attested) = node.attested("policy");
    node.release(&keys, &attested, tenant, scope).await
}

/// What the edge holds once a user signed `path`: the challenge object (possibly altered by
/// the edge before the user signed it, through `alter`), the user's signature over it, and
/// the commitment's salt.
async fn signed_action(
    node: &Booted,
    user: &mut User,
    kind: &str,
    path: &str,
    params: &Value,
    alter: impl FnOnce(&mut ChallengeObject),
) -> (ChallengeObject, Value, [u8; 32]) {
    let r = json_call(
        node,
        "POST",
        "/v1/auth/action/init",
        Some(&user.bearer()),
        &json!({"kind": kind, "method": "POST", "path": path, "body": params}),
    )
    .await;
    assert_eq!(r.0, StatusCode::OK, "{}", r.1);
    let mut object: ChallengeObject = serde_json::from_value(r.1["challenge"].clone()).unwrap();
    alter(&mut object);
    let salt: [u8; 32] = hex::decode(r.1["salt"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let signature = sign_object(user, &object, &origin());
    (object, serde_json::to_value(signature).unwrap(), salt)
}

/// The event a (hostile) edge appends for a signed sealed action: sealed as the edge does,
/// signed by the edge's identity, following `parents` (an approval's body also names its
/// user).
fn sealed_event(
    node: &Booted,
    kind: &str,
    (object, signature, salt): &(ChallengeObject, Value, [u8; 32]),
    params: &Value,
    parents: Vec<LeafHash>,
    key: &[u8; 32],
) -> govern_core::event::SignedEvent {
    let sealed = govern_core::seal::sealed_kind(kind).unwrap();
    let mut body = Map::new();
    if kind == "approval.decided" {
        body.insert("user".into(), object.user.clone().into());
    }
    body.insert("action".into(), serde_json::to_value(object).unwrap());
    body.insert("signature".into(), signature.clone());
    body.insert(
        "clear".into(),
        Value::Object(govern_core::seal::clear_from_path(sealed, &object.path).unwrap()),
    );
    let tenant = tenant_id(&object.tenant);
    let request = RequestId(uuid::Uuid::parse_str(&object.request).unwrap());
    let template = node
        .services
        .edge
        .identity
        .sign(
            Kind::new(kind).unwrap(),
            tenant,
            request,
            parents,
            body,
            govern_core::event::Timestamp::now(),
        )
        .unwrap();
    let mut event = template.event().clone();
    let plain = govern_core::seal::action_plaintext(params.as_object().unwrap(), salt).unwrap();
    govern_core::seal::seal(
        &mut event,
        key,
        sealed.scope,
        1,
        &plain,
        &govern_store::OsEntropy,
    )
    .unwrap();
    event.sig = None;
    event
        .sign(node.services.edge.identity.keys().signing_key())
        .unwrap()
}

fn wallet_leaf(node: &Booted, tenant: &TenantId, wallet: &str) -> LeafHash {
    node.services
        .policy
        .with_tenant(tenant, |t| t.wallets[wallet].leaf)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_transfer_is_refused_under_another_wallet_or_under_none() {
    let node = boot().await;
    let mut ada = admin(&node).await;
    let tenant = tenant_id(&ada.tenant);
    let mine = new_wallet(&node, &mut ada).await;
    let other = new_wallet(&node, &mut ada).await;
    let key = scope_key(&node, &tenant, "transfers").await;
    let path = format!("/v1/wallets/{mine}/transfers");
    let signed = signed_action(
        &node,
        &mut ada,
        "transfer.requested",
        &path,
        &transfer(),
        |_| {},
    )
    .await;

    // Under another wallet of the same tenant: the user named `mine` in the signed path.
    let moved = sealed_event(
        &node,
        "transfer.requested",
        &signed,
        &transfer(),
        vec![wallet_leaf(&node, &tenant, &other)],
        &key,
    );
    let size = node.size();
    let r = node.post(&moved).await;
    assert_problem(&r, 403, "user-action-parent");
    assert!(
        r.1["detail"].as_str().unwrap().contains(&mine),
        "the refusal names the signed wallet: {}",
        r.1
    );
    // Under no parent at all.
    let orphan = sealed_event(
        &node,
        "transfer.requested",
        &signed,
        &transfer(),
        vec![],
        &key,
    );
    assert_problem(&node.post(&orphan).await, 403, "parent-required");
    // Under the signed wallet and another one besides.
    let both = sealed_event(
        &node,
        "transfer.requested",
        &signed,
        &transfer(),
        vec![
            wallet_leaf(&node, &tenant, &mine),
            wallet_leaf(&node, &tenant, &other),
        ],
        &key,
    );
    assert_problem(&node.post(&both).await, 403, "user-action-parent");
    assert_eq!(node.size(), size, "nothing was appended");

    // Written straight into a store (past the log's checks), the re-parented transfer is
    // what a signer's chain of custody refuses: the signers fold the log with the same
    // rules (govern-admission's custody) and quarantine a broken chain.
    let custody = |last: &govern_core::event::SignedEvent| {
        let mut c = govern_admission::custody::Custody::new();
        for i in 0..size {
            c.apply(i, &node.entry(i), None);
        }
        c.apply(size, last, None);
        c
    };
    let request = moved.event().request;
    let c = custody(&moved);
    let hop = c.broken(&tenant, &request).expect("the chain is broken");
    assert_eq!(hop.index, size);
    assert_eq!(
        hop.verdict.as_ref().unwrap_err().code(),
        "user-action-parent",
        "{:?}",
        hop.verdict
    );
    let c = custody(&both);
    assert!(c.broken(&tenant, &request).is_some());
    // The same transfer under the signed wallet, but with the user's signature taken out
    // (the edge re-signs it): a transfer nobody signed is no transfer.
    let honest_parent = sealed_event(
        &node,
        "transfer.requested",
        &signed,
        &transfer(),
        vec![wallet_leaf(&node, &tenant, &mine)],
        &key,
    );
    assert!(custody(&honest_parent).broken(&tenant, &request).is_none());
    let mut unsigned = honest_parent.event().clone();
    unsigned.body.remove("signature");
    unsigned.sig = None;
    let unsigned = unsigned
        .sign(node.services.edge.identity.keys().signing_key())
        .unwrap();
    let c = custody(&unsigned);
    let hop = c.broken(&tenant, &request).expect("the chain is broken");
    assert_eq!(
        hop.verdict.as_ref().unwrap_err().code(),
        "user-action-missing"
    );

    // The same construction under the wallet the user signed is appended: the refusals
    // above are the binding's, not the construction's.
    let honest = sealed_event(
        &node,
        "transfer.requested",
        &signed,
        &transfer(),
        vec![wallet_leaf(&node, &tenant, &mine)],
        &key,
    );
    let r = node.post(&honest).await;
    assert_eq!(r.0, StatusCode::OK, "{}", r.1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_is_refused_under_another_request_than_its_signed_path_names() {
    let node = boot().await;
    let mut ada = admin(&node).await;
    let tenant = tenant_id(&ada.tenant);
    let wallet = new_wallet(&node, &mut ada).await;
    let path = format!("/v1/wallets/{wallet}/transfers");
    let mut transfers = Vec::new();
    for _ in 0..2 {
        let r = act(&node, &mut ada, "transfer.requested", &path, &transfer()).await;
        assert_eq!(r.0, StatusCode::CREATED, "{}", r.1);
        transfers.push(r.1["request"].as_str().unwrap().to_string());
    }
    let (small, large) = (&transfers[0], &transfers[1]);
    let key = scope_key(&node, &tenant, "approvals").await;
    let first_event = |request: &str| {
        node.services
            .policy
            .with_tenant(&tenant, |t| t.requests[request].events[0].leaf)
            .unwrap()
    };
    // The edge shows Ada the approval of the small transfer (the path she reads) inside a
    // challenge object whose request is the large one; she signs; it appends the approval
    // to the large transfer. The request binding and the routing graph both hold (event,
    // object and parent all name the large request): only the path says otherwise.
    let params = json!({});
    let swapped = signed_action(
        &node,
        &mut ada,
        "approval.decided",
        &format!("/v1/requests/{small}/approvals/approve"),
        &params,
        |o| o.request.clone_from(large),
    )
    .await;
    let attack = sealed_event(
        &node,
        "approval.decided",
        &swapped,
        &params,
        vec![first_event(large)],
        &key,
    );
    let r = node.post(&attack).await;
    assert_problem(&r, 403, "user-action-parent");
    assert!(
        r.1["detail"].as_str().unwrap().contains(small.as_str()),
        "{}",
        r.1
    );

    // An honest approval of the small transfer, built the same way, is appended.
    let honest = signed_action(
        &node,
        &mut ada,
        "approval.decided",
        &format!("/v1/requests/{small}/approvals/approve"),
        &params,
        |_| {},
    )
    .await;
    let e = sealed_event(
        &node,
        "approval.decided",
        &honest,
        &params,
        vec![first_event(small)],
        &key,
    );
    let r = node.post(&e).await;
    assert_eq!(r.0, StatusCode::OK, "{}", r.1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_change_is_refused_under_another_users_registration() {
    let node = boot().await;
    let mut ada = admin(&node).await;
    let tenant = tenant_id(&ada.tenant);
    // A second user, Bob, a member.
    let r = act(
        &node,
        &mut ada,
        "user.invited",
        "/v1/users",
        &json!({"role": "member"}),
    )
    .await;
    assert_eq!(r.0, StatusCode::CREATED, "{}", r.1);
    let bob = register(&node, &ada.tenant, r.1["invite"].as_str().unwrap()).await;
    // Ada makes Bob an admin; the edge appends it under Ada's own registration.
    let params = json!({"user": bob.id, "role": "admin"});
    let r = act(
        &node,
        &mut ada,
        "user.role_changed",
        "/v1/users/role",
        &params,
    )
    .await;
    assert_eq!(r.0, StatusCode::CREATED, "{}", r.1);
    let appended = node.entry(r.1["index"].as_u64().unwrap());
    let (ada_leaf, bob_leaf) = node
        .services
        .policy
        .with_tenant(&tenant, |t| (t.users[&ada.id].leaf, t.users[&bob.id].leaf))
        .unwrap();
    assert_eq!(appended.event().parents, vec![bob_leaf]);
    let mut moved = appended.event().clone();
    moved.parents = vec![ada_leaf];
    moved.sig = None;
    let moved = moved
        .sign(node.services.edge.identity.keys().signing_key())
        .unwrap();
    // Checked before the nonce (which the appended one has spent).
    let r = node.post(&moved).await;
    assert_problem(&r, 403, "user-action-parent");
    assert!(r.1["detail"].as_str().unwrap().contains(&bob.id), "{}", r.1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_path_of_another_kinds_endpoint_is_refused() {
    let node = boot().await;
    let mut ada = admin(&node).await;
    let tenant = tenant_id(&ada.tenant);
    let wallet = new_wallet(&node, &mut ada).await;
    let key = scope_key(&node, &tenant, "transfers").await;
    // The edge has Ada sign a transfer whose object names the wallets endpoint (what she
    // reads is "request a wallet"), and appends it as a transfer from the wallet.
    let path = format!("/v1/wallets/{wallet}/transfers");
    let signed = signed_action(
        &node,
        &mut ada,
        "transfer.requested",
        &path,
        &transfer(),
        |o| o.path = "/v1/wallets".into(),
    )
    .await;
    let e = sealed_event(
        &node,
        "transfer.requested",
        &signed,
        &transfer(),
        vec![wallet_leaf(&node, &tenant, &wallet)],
        &key,
    );
    let r = node.post(&e).await;
    assert_problem(&r, 403, "user-action-binding");
    assert!(r.1["detail"].as_str().unwrap().contains("route"), "{}", r.1);
    assert!(
        r.1["detail"].as_str().unwrap().contains("wallet.requested"),
        "{}",
        r.1
    );
}
