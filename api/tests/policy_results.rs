//! The policy worker's results as the log judges them: only the live `policy` identity may
//! append them, they name the request's own events, are sealed as their kind says, and a
//! request is evaluated and decided once. Each attack is built like the honest event that
//! the log accepts in the same test, so each refusal is the check's.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use axum::http::StatusCode;
use govern_core::event::{Event, Kind, RequestId, SignedEvent, TenantId, Timestamp};
use govern_core::ids::LeafHash;
use govern_workers::identity::ServiceKeys;
use serde_json::{Map, Value, json};
use support::users::*;
use support::{Booted, assert_problem, boot};

struct Setup {
    node: Booted,
    tenant: TenantId,
    request: RequestId,
    transfer: LeafHash,
    policy: ServiceKeys,
    policy_leaf: LeafHash,
    key: [u8; 32],
    ada: User,
}

async fn setup() -> Setup {
    let node = boot().await;
    let mut ada = admin(&node).await;
    let wallet = new_wallet(&node, &mut ada).await;
    let r = act(
        &node,
        &mut ada,
        "transfer.requested",
        &format!("/v1/wallets/{wallet}/transfers"),
        &transfer(),
    )
    .await;
    assert_eq!(r.0, StatusCode::CREATED, "{}", r.1);
    let request = RequestId(uuid::Uuid::parse_str(r.1["request"].as_str().unwrap()).unwrap());
    let transfer = LeafHash::try_from(r.1["leaf"].as_str().unwrap().to_string()).unwrap();
    let tenant = TenantId(uuid::Uuid::parse_str(&ada.tenant).unwrap());
    let (policy, attested) = node.attested("policy");
    let key = node.release(&policy, &attested, &tenant, "policies").await;
    Setup {
        node,
        tenant,
        request,
        transfer,
        policy,
        policy_leaf: attested.leaf_hash(),
        key,
        ada,
    }
}

/// An event of `kind` by `keys` naming `attestation`, optionally sealed in `policies`.
#[allow(clippy::too_many_arguments)]
fn result(
    keys: &ServiceKeys,
    attestation: LeafHash,
    kind: &str,
    tenant: TenantId,
    request: RequestId,
    parents: Vec<LeafHash>,
    body: Value,
    sealed: Option<&[u8; 32]>,
) -> SignedEvent {
    let Value::Object(body) = body else { panic!() };
    let mut event = Event::new(
        Kind::new(kind).unwrap(),
        tenant,
        request,
        keys.producer(),
        Timestamp::now(),
        body,
    );
    event.parents = parents;
    event.attestation = Some(attestation);
    if let Some(key) = sealed {
        govern_core::seal::seal(
            &mut event,
            key,
            "policies",
            1,
            br#"{"reasons":{}}"#,
            &govern_store::OsEntropy,
        )
        .unwrap();
    }
    event.sign(keys.signing_key()).unwrap()
}

fn evaluated(s: &Setup, keys: &ServiceKeys, attestation: LeafHash) -> SignedEvent {
    result(
        keys,
        attestation,
        "policy.evaluated",
        s.tenant,
        s.request,
        vec![s.transfer],
        json!({"subject": s.transfer.to_hex(), "outcome": "allow"}),
        Some(&s.key),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_live_policy_identity_appends_results_and_each_once() {
    let s = setup().await;
    let node = &s.node;

    // Not the policy worker's key: a fresh key naming the policy identity's attestation.
    let forger = ServiceKeys::generate(govern_core::event::Role::new("policy").unwrap()).unwrap();
    let r = node.post(&evaluated(&s, &forger, s.policy_leaf)).await;
    assert_problem(&r, 403, "producer-key-mismatch");

    // Another role's live identity: the edge may not produce policy.evaluated.
    let (signer, signer_attested) = node.attested("signer-1");
    assert_eq!(node.post(&signer_attested).await.0, StatusCode::OK);
    let r = node
        .post(&evaluated(&s, &signer, signer_attested.leaf_hash()))
        .await;
    assert_problem(&r, 403, "kind-not-allowed");

    // Unsealed reasons.
    let r = node
        .post(&result(
            &s.policy,
            s.policy_leaf,
            "policy.evaluated",
            s.tenant,
            s.request,
            vec![s.transfer],
            json!({"subject": s.transfer.to_hex(), "outcome": "allow", "reasons": {}}),
            None,
        ))
        .await;
    assert_problem(&r, 400, "payload-sealing");

    // A subject that is not its parent.
    let r = node
        .post(&result(
            &s.policy,
            s.policy_leaf,
            "policy.evaluated",
            s.tenant,
            s.request,
            vec![s.transfer],
            json!({"subject": "07".repeat(32), "outcome": "allow"}),
            Some(&s.key),
        ))
        .await;
    assert_problem(&r, 400, "user-action-malformed");
    assert!(
        r.1["detail"].as_str().unwrap().contains("\"subject\""),
        "{}",
        r.1
    );

    // A decision before any evaluation.
    let r = node
        .post(&result(
            &s.policy,
            s.policy_leaf,
            "transfer.approved",
            s.tenant,
            s.request,
            vec![s.transfer],
            json!({"evaluation": s.transfer.to_hex(), "reason": "allowed", "approvals": []}),
            None,
        ))
        .await;
    assert_problem(&r, 403, "parent-kind-not-allowed");

    // The honest evaluation is accepted; a second one is a taken uniqueness key.
    let honest = evaluated(&s, &s.policy, s.policy_leaf);
    let r = node.post(&honest).await;
    assert_eq!(r.0, StatusCode::OK, "{}", r.1);
    let again = evaluated(&s, &s.policy, s.policy_leaf);
    let r = node.post(&again).await;
    assert_problem(&r, 409, "duplicate");

    // A decision of another activity's kind, and one naming a non-approval as an approval.
    let evaluation = honest.leaf_hash();
    let r = node
        .post(&result(
            &s.policy,
            s.policy_leaf,
            "policy.activated",
            s.tenant,
            s.request,
            vec![evaluation],
            json!({"evaluation": evaluation.to_hex(), "reason": "allowed", "approvals": []}),
            None,
        ))
        .await;
    assert_problem(&r, 400, "user-action-malformed");
    assert!(
        r.1["detail"]
            .as_str()
            .unwrap()
            .contains("decided by transfer.approved or transfer.rejected"),
        "{}",
        r.1
    );
    let r = node
        .post(&result(
            &s.policy,
            s.policy_leaf,
            "transfer.approved",
            s.tenant,
            s.request,
            vec![evaluation, s.transfer],
            json!({"evaluation": evaluation.to_hex(), "reason": "approved", "approvals": [s.transfer.to_hex()]}),
            None,
        ))
        .await;
    assert_problem(&r, 403, "parent-kind-not-allowed");
    let r = node
        .post(&result(
            &s.policy,
            s.policy_leaf,
            "transfer.approved",
            s.tenant,
            s.request,
            vec![evaluation],
            json!({"evaluation": evaluation.to_hex(), "reason": "approved", "approvals": [s.transfer.to_hex()]}),
            None,
        ))
        .await;
    assert_problem(&r, 400, "user-action-malformed");
    assert!(
        r.1["detail"].as_str().unwrap().contains("\"approvals\""),
        "{}",
        r.1
    );

    // The honest decision, once.
    let decide = || {
        result(
            &s.policy,
            s.policy_leaf,
            "transfer.approved",
            s.tenant,
            s.request,
            vec![evaluation],
            json!({"evaluation": evaluation.to_hex(), "reason": "allowed", "approvals": []}),
            None,
        )
    };
    let r = node.post(&decide()).await;
    assert_eq!(r.0, StatusCode::OK, "{}", r.1);
    let r = node.post(&decide()).await;
    assert_problem(&r, 409, "duplicate");
    let r = node
        .post(&result(
            &s.policy,
            s.policy_leaf,
            "transfer.rejected",
            s.tenant,
            s.request,
            vec![evaluation],
            json!({"evaluation": evaluation.to_hex(), "reason": "blocked", "approvals": []}),
            None,
        ))
        .await;
    assert_problem(&r, 400, "user-action-malformed");
    assert!(
        r.1["detail"].as_str().unwrap().contains("decided already"),
        "{}",
        r.1
    );

    // The request's status is the worker's decision.
    let status = node
        .call(
            "GET",
            &format!("/v1/requests/{}", s.request.0),
            &[("authorization", &s.ada.bearer())],
            None,
        )
        .await;
    assert_eq!(status.1["status"], "approved", "{}", status.1);
    let _ = Map::<String, Value>::new();
}
