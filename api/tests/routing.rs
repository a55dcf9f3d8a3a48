//! The routing graph of the manifest in force, at append, on a node booted as `govern node`
//! boots; and the manifest checks that stop a node from starting.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use govern_api::{Attestor, DataDir, DataDirError};
use govern_core::event::TenantId;
use govern_core::manifest::ManifestError;
use govern_store::LogConfig;
use support::{assert_problem, boot};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_manifest_is_enforced_at_append() {
    let node = boot().await;
    // Genesis manifest, the identities of the log, the edge and the key service.
    assert_eq!(node.size(), 4);
    let tenant = TenantId(uuid::Uuid::now_v7());

    // The edge may create a tenant, once.
    let created = tenant_created(&node, tenant);
    let ok = node.post(&created).await;
    assert_eq!(ok.0.as_u16(), 200, "{}", ok.1);
    assert_problem(
        &node.post(&tenant_created(&node, tenant)).await,
        409,
        "duplicate",
    );
    // The edge may not approve a transfer: that is the policy's.
    assert_problem(
        &node
            .post(&node.edge_event("transfer.approved", tenant, vec![]))
            .await,
        403,
        "kind-not-allowed",
    );
    // A kind the manifest does not declare.
    assert_problem(
        &node
            .post(&node.edge_event("test.undeclared", TenantId::SYSTEM, vec![]))
            .await,
        400,
        "unknown-kind",
    );
    // A parent of a kind `wallet.requested` may not follow (a tenant.created may; the
    // edge's own service.attested may not).
    let attested = node.services.edge.identity.current().unwrap();
    assert_problem(
        &node
            .post(&node.edge_event("wallet.requested", tenant, vec![attested]))
            .await,
        403,
        "parent-kind-not-allowed",
    );
    // A parent of another tenant.
    let other = TenantId(uuid::Uuid::now_v7());
    assert_problem(
        &node
            .post(&node.edge_event("wallet.requested", other, vec![created.leaf_hash()]))
            .await,
        403,
        "parent-other-tenant",
    );
    // Routed well, but no user signed it: the tenant checks come after the graph's.
    assert_problem(
        &node
            .post(&node.edge_event("wallet.requested", tenant, vec![created.leaf_hash()]))
            .await,
        403,
        "user-action-missing",
    );
    assert_eq!(node.size(), 5);
}

fn tenant_created(node: &support::Booted, tenant: TenantId) -> govern_core::event::SignedEvent {
    let body = serde_json::json!({
        "name": "acme", "admin": "Ada", "rp_id": "localhost", "origin": "http://localhost:7600",
        "invite": "ab".repeat(32),
    });
    node.services
        .edge
        .identity
        .sign(
            govern_core::event::Kind::new("tenant.created").unwrap(),
            tenant,
            govern_core::event::RequestId::new_v7(),
            vec![],
            body.as_object().unwrap().clone(),
            govern_core::event::Timestamp::now(),
        )
        .unwrap()
}

async fn boot_dir(dir: &DataDir, allow_dev_root: bool) -> Result<(), DataDirError> {
    dir.boot(
        LogConfig::new(dir.origin()),
        allow_dev_root,
        &Attestor::Simulated {
            executable: support::exe(),
        },
    )
    .await
    .map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_manifest_stops_the_node_from_starting() {
    let tmp = tempfile::tempdir().unwrap();
    govern_api::devpin::pin_dev_manifest(tmp.path(), None, &support::exe()).unwrap();
    let dir = DataDir::open(tmp.path(), None).unwrap();
    // Let the edge produce what only the policy may: the signatures no longer verify.
    let path = tmp.path().join("manifest.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let tampered = text.replacen(
        "\"tenant.created\",",
        "\"tenant.created\", \"transfer.approved\",",
        1,
    );
    assert_ne!(tampered, text);
    std::fs::write(&path, tampered).unwrap();
    match boot_dir(&dir, true).await.unwrap_err() {
        DataDirError::Manifest {
            path: p,
            source: ManifestError::BadSignature { .. },
        } => assert_eq!(p, path),
        other => panic!("expected a bad signature, got {other}"),
    }
    // Nothing was written.
    assert!(!tmp.path().join("db").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_production_node_refuses_a_manifest_pinning_the_dev_root() {
    let tmp = tempfile::tempdir().unwrap();
    govern_api::devpin::pin_dev_manifest(tmp.path(), None, &support::exe()).unwrap();
    let dir = DataDir::open(tmp.path(), None).unwrap();
    let err = boot_dir(&dir, false).await.unwrap_err();
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_manifest_the_node_does_not_start() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = DataDir::open(tmp.path(), None).unwrap();
    let err = boot_dir(&dir, true).await.unwrap_err();
    assert!(matches!(err, DataDirError::NoManifest { .. }), "{err}");
}
