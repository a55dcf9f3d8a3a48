//! A data dir with a pinned manifest: the node enforces its routing graph at append (each
//! refusal with its problem type), and refuses to start on a manifest that does not verify.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::SigningKey;
use govern_api::{AppState, DataDir, DataDirError, router};
use govern_core::event::{
    Event, Kind, Producer, PublicKey, RequestId, Role, SignedEvent, TenantId, Timestamp,
};
use govern_core::manifest::{Manifest, ManifestError, SignedManifest};
use govern_store::LogConfig;
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use tower::ServiceExt as _;

/// `manifests/dev.json` with its measurements and dev root pinned (made-up values: nothing
/// here attests), signed by `signer`; written with a signers file pinning `signer`.
fn pin_manifest(dir: &Path, signer: &SigningKey) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../manifests/dev.json");
    let mut m: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    m["trusted_root"]["sha256"] = json!("ab".repeat(32));
    for (_, role) in m["roles"].as_object_mut().unwrap() {
        role["measurements"] = json!([{ "pcr0": "11".repeat(48) }]);
    }
    let manifest = Manifest::from_json(&serde_json::to_vec(&m).unwrap()).unwrap();
    let mut signed = SignedManifest::new(manifest);
    signed.sign(signer).unwrap();
    std::fs::write(
        dir.join("manifest.json"),
        serde_json::to_vec_pretty(&signed).unwrap(),
    )
    .unwrap();
    std::fs::write(
        dir.join("manifest-signers.toml"),
        format!(
            "threshold = 1\nkeys = [\"{}\"]\n",
            B64.encode(signer.verifying_key().as_bytes())
        ),
    )
    .unwrap();
}

fn edge_event(key: &SigningKey, kind: &str, tenant: TenantId) -> SignedEvent {
    Event {
        v: 1,
        kind: Kind::new(kind).unwrap(),
        tenant,
        request: RequestId::new_v7(),
        parents: vec![],
        producer: Producer {
            role: Role::new("edge").unwrap(),
            key: PublicKey::from(&key.verifying_key()),
        },
        attestation: None,
        time: Timestamp::now(),
        body: serde_json::Map::new(),
        sealed: None,
        sig: None,
    }
    .sign(key)
    .unwrap()
}

async fn post(app: &Router, event: &SignedEvent) -> (StatusCode, Value) {
    let req = Request::builder()
        .method(Method::POST)
        .uri("/v1/entries")
        .body(Body::from(event.bytes().to_vec()))
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap())
}

#[track_caller]
fn assert_problem(got: &(StatusCode, Value), status: u16, kind: &str) {
    assert_eq!(got.0.as_u16(), status, "{}", got.1);
    assert_eq!(
        got.1["type"],
        format!("urn:govern:problem:{kind}"),
        "{}",
        got.1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_manifest_is_enforced_at_append() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = DataDir::open(tmp.path(), None).unwrap();
    pin_manifest(tmp.path(), &SigningKey::from_bytes(&[42; 32]));
    let log = Arc::new(dir.open_log(LogConfig::new(dir.origin()), true).unwrap());
    let app = router(AppState::new(Arc::clone(&log), &dir.verifier_key()));
    let edge = dir.edge_key().unwrap();
    let tenant = TenantId(uuid::Uuid::now_v7());

    // The edge may create a tenant, once.
    let created = edge_event(&edge, "tenant.created", tenant);
    let ok = post(&app, &created).await;
    assert_eq!(ok.0, StatusCode::OK, "{}", ok.1);
    assert_problem(
        &post(&app, &edge_event(&edge, "tenant.created", tenant)).await,
        409,
        "duplicate",
    );
    // The edge may not approve a transfer: that is the policy's.
    assert_problem(
        &post(&app, &edge_event(&edge, "transfer.approved", tenant)).await,
        403,
        "kind-not-allowed",
    );
    // The demo kind is not in the manifest.
    assert_problem(
        &post(
            &app,
            &edge_event(&edge, "test.undeclared", TenantId::SYSTEM),
        )
        .await,
        400,
        "unknown-kind",
    );
    assert_eq!(log.latest().size.0, 1);
}

#[test]
fn a_tampered_manifest_stops_the_node_from_starting() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = DataDir::open(tmp.path(), None).unwrap();
    let signer = SigningKey::from_bytes(&[42; 32]);
    pin_manifest(tmp.path(), &signer);
    // Let the edge produce what only the policy may: the signature no longer verifies.
    let path = tmp.path().join("manifest.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let tampered = text.replacen(
        "\"tenant.created\",",
        "\"tenant.created\", \"transfer.approved\",",
        1,
    );
    assert_ne!(tampered, text);
    std::fs::write(&path, tampered).unwrap();
    let err = dir
        .open_log(LogConfig::new(dir.origin()), true)
        .unwrap_err();
    match err {
        DataDirError::Manifest {
            path: p,
            source: ManifestError::BadSignature { key },
        } => {
            assert_eq!(p, path);
            assert_eq!(key, B64.encode(signer.verifying_key().as_bytes()));
        }
        other => panic!("expected a bad signature, got {other}"),
    }
}

#[test]
fn a_production_node_refuses_a_manifest_pinning_the_dev_root() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = DataDir::open(tmp.path(), None).unwrap();
    pin_manifest(tmp.path(), &SigningKey::from_bytes(&[42; 32]));
    let err = dir
        .open_log(LogConfig::new(dir.origin()), false)
        .unwrap_err();
    assert!(
        matches!(
            err,
            DataDirError::Manifest {
                source: ManifestError::DevRootRefused,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn without_a_manifest_the_allow_list_alone_applies() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = DataDir::open(tmp.path(), None).unwrap();
    assert!(dir.manifest(true).unwrap().is_none());
    let log = dir.open_log(LogConfig::new(dir.origin()), true).unwrap();
    let edge = dir.edge_key().unwrap();
    log.append_blocking(edge_event(&edge, "test.undeclared", TenantId::SYSTEM))
        .unwrap();
}
