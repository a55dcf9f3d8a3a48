//! Attested identities as attacks (docs/design.md §5, §6): every refusal asserts its problem type,
//! on a node booted as `govern node` boots (dev manifest pinning this test executable,
//! documents from the simulated NSM, checked by the production verifier).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use govern_admission::StateView as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use govern_core::event::{
    Event, Kind, Producer, PublicKey, RequestId, Role, SignedEvent, TenantId, Timestamp,
};
use govern_core::ids::{Hash, RootHash};
use govern_core::manifest::{Measurement, SignedManifest};
use govern_store::Clock;
use govern_workers::identity::ServiceKeys;
use govern_workers::nsm::{Nsm as _, SimulatedNsm};
use serde_json::{Map, Value};
use support::{assert_problem, boot, dev_signer, publish};

fn role(name: &str) -> Role {
    Role::new(name).unwrap()
}

fn with_document(keys: &ServiceKeys, document: &[u8]) -> SignedEvent {
    keys.attested_event(document, vec![], Timestamp::now())
        .unwrap()
}

/// A sealed payload of a tenant: what a service's `reads.audit` may name (its tenant, a
/// request id for the event, the payload's index).
type Subject = (TenantId, RequestId, u64);

/// `n` wallet requests of a new tenant, each a sealed payload one `reads.audit` can name.
async fn subjects(node: &support::Booted, n: usize) -> std::vec::IntoIter<Subject> {
    use support::users::{admin, new_wallet};
    let mut ada = admin(node).await;
    let tenant = TenantId(uuid::Uuid::parse_str(&ada.tenant).unwrap());
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let wallet = new_wallet(node, &mut ada).await;
        let index = node
            .services
            .policy
            .with_tenant(&tenant, |t| t.wallets[&wallet].index)
            .unwrap();
        out.push((tenant, RequestId::new_v7(), index));
    }
    out.into_iter()
}

/// A `reads.audit` of `keys` under the identity `attested`, naming the payload `on`: an
/// event any attested service may append (the policy engine's results need a whole
/// request; `api/tests/policy_results.rs` has those).
fn event_of(
    keys: &ServiceKeys,
    attested: &SignedEvent,
    on: &Subject,
    time: Timestamp,
) -> SignedEvent {
    let mut body = Map::new();
    body.insert("scope".into(), "wallets".into());
    body.insert("entries".into(), serde_json::json!([on.2]));
    let mut event = Event::new(
        Kind::new("reads.audit").unwrap(),
        on.0,
        on.1,
        keys.producer(),
        time,
        body,
    );
    event.parents = vec![attested.leaf_hash()];
    event.attestation = Some(attested.leaf_hash());
    event.sign(keys.signing_key()).unwrap()
}

fn status_of(view: &Value, role: &str) -> String {
    view["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["role"] == role)
        .map(|s| s["status"].as_str().unwrap().to_string())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_attests_and_appends_under_its_identity() {
    let node = boot().await;
    let mut on = subjects(&node, 3).await;
    let (keys, attested) = node.attested("policy");
    let ok = node.post(&attested).await;
    assert_eq!(ok.0.as_u16(), 200, "{}", ok.1);
    let ok = node
        .post(&event_of(
            &keys,
            &attested,
            &on.next().unwrap(),
            Timestamp::now(),
        ))
        .await;
    assert_eq!(ok.0.as_u16(), 200, "{}", ok.1);

    let (status, view) = node.get("/v1/services").await;
    assert_eq!(status.as_u16(), 200);
    assert_eq!(
        view["manifest"]["serial"],
        node.pinned.signed.manifest.serial
    );
    for r in ["log", "edge", "policy"] {
        assert_eq!(status_of(&view, r), "live", "{r}: {view}");
    }
    let policy = view["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["role"] == "policy")
        .unwrap();
    assert_eq!(policy["ed25519"], keys.producer().key.to_base64());
    assert_eq!(policy["leaf"], attested.leaf_hash().to_hex());
    assert_eq!(
        policy["x25519"],
        hex::encode(x25519_dalek::PublicKey::from(keys.x25519()).as_bytes())
    );
    let pcr0 = govern_workers::nsm::dev_measurement(&node.exe, &role("policy")).unwrap();
    assert_eq!(policy["pcrs"][0], hex::encode(pcr0));
    // The log's identity carries its checkpoint key.
    let log = view["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["role"] == "log")
        .unwrap();
    assert_eq!(
        log["ed25519"],
        PublicKey::from(&node.dir.log_signing_key().verifying_key()).to_base64()
    );

    // The same key re-attesting replaces its identity; the old attestation is stale.
    let again = node.attest_with(
        &keys,
        &node.nsm("policy", &node.exe),
        vec![attested.leaf_hash()],
    );
    let ok = node.post(&again).await;
    assert_eq!(ok.0.as_u16(), 200, "{}", ok.1);
    assert_problem(
        &node
            .post(&event_of(
                &keys,
                &attested,
                &on.next().unwrap(),
                Timestamp::now(),
            ))
            .await,
        403,
        "attestation-stale",
    );
    let ok = node
        .post(&event_of(
            &keys,
            &again,
            &on.next().unwrap(),
            Timestamp::now(),
        ))
        .await;
    assert_eq!(ok.0.as_u16(), 200, "{}", ok.1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_without_a_live_identity_are_refused() {
    let node = boot().await;
    let keys = ServiceKeys::generate(role("policy")).unwrap();
    let mut event = Event::new(
        Kind::new("policy.evaluated").unwrap(),
        TenantId::SYSTEM,
        RequestId::new_v7(),
        keys.producer(),
        Timestamp::now(),
        Map::new(),
    );
    let bare = event.clone().sign(keys.signing_key()).unwrap();
    assert_problem(&node.post(&bare).await, 403, "attestation-missing");
    event.attestation = node.services.edge.identity.current();
    let borrowed = event.sign(keys.signing_key()).unwrap();
    assert_problem(&node.post(&borrowed).await, 403, "no-identity");
    // Someone else's key under the edge's attestation.
    let edge_like = ServiceKeys::generate(role("edge")).unwrap();
    let mut event = Event::new(
        Kind::new("demo.hello").unwrap(),
        TenantId::SYSTEM,
        RequestId::new_v7(),
        edge_like.producer(),
        Timestamp::now(),
        Map::new(),
    );
    event.attestation = node.services.edge.identity.current();
    assert_problem(
        &node
            .post(&event.sign(edge_like.signing_key()).unwrap())
            .await,
        403,
        "producer-key-mismatch",
    );
    // service.attested must not name an attestation.
    let (keys, attested) = node.attested("policy");
    let mut e = attested.event().clone();
    e.sig = None;
    e.attestation = node.services.edge.identity.current();
    assert_problem(
        &node.post(&e.sign(keys.signing_key()).unwrap()).await,
        403,
        "attestation-unexpected",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_modified_binary_is_refused_and_its_measurement_quarantined() {
    let node = boot().await;
    // A real changed executable: this test binary with one more byte.
    let modified = node.tmp.path().join("modified-exe");
    let mut bytes = std::fs::read(&node.exe).unwrap();
    bytes.push(0);
    std::fs::write(&modified, bytes).unwrap();
    let nsm = node.nsm("policy", &modified);
    let keys = ServiceKeys::generate(role("policy")).unwrap();
    let event = node.attest_with(&keys, &nsm, node.manifest_parent());
    let before = node.size();
    let refused = node.post(&event).await;
    assert_problem(&refused, 403, "measurement-not-pinned");
    assert!(
        refused.1["detail"]
            .as_str()
            .unwrap()
            .contains("the log quarantines it"),
        "{}",
        refused.1
    );
    // The refused event is not in the log; the log's quarantine is, with the evidence.
    assert_eq!(node.size(), before + 1);
    let quarantine = node.entry(before);
    let q = quarantine.event();
    assert_eq!(q.kind.as_str(), "service.quarantined");
    assert_eq!(q.producer.role.as_str(), "log");
    let measurement =
        hex::encode(govern_workers::nsm::dev_measurement(&modified, &role("policy")).unwrap());
    assert_eq!(q.body["measurement"], measurement);
    assert_eq!(q.body["reason"], "measurement-not-pinned");
    assert_eq!(
        q.body["evidence"]["document"],
        event.event().body["document"]
    );
    assert_eq!(q.body["evidence"]["event"], event.leaf_hash().to_hex());

    let (_, view) = node.get("/v1/services").await;
    assert_eq!(
        view["quarantined"][&measurement]["role"], "policy",
        "{view}"
    );

    // That measurement is refused for every key from now on.
    let other = ServiceKeys::generate(role("policy")).unwrap();
    let again = node.attest_with(&other, &nsm, node.manifest_parent());
    assert_problem(&node.post(&again).await, 403, "measurement-quarantined");
    // The genuine binary still attests.
    let (_, genuine) = node.attested("policy");
    let ok = node.post(&genuine).await;
    assert_eq!(ok.0.as_u16(), 200, "{}", ok.1);

    // A quarantine is checked against its evidence, even from the log's key: the genuine
    // binary's measurement, "evidenced" by its own (pinned) document, is refused.
    let log_key = node.dir.log_signing_key();
    let genuine_measurement =
        hex::encode(govern_workers::nsm::dev_measurement(&node.exe, &role("policy")).unwrap());
    let mut forged = q.clone();
    forged.sig = None;
    forged.request = RequestId::new_v7();
    forged.body["measurement"] = genuine_measurement.clone().into();
    forged.body["evidence"]["document"] = genuine.event().body["document"].clone();
    let r = node.post(&forged.clone().sign(&log_key).unwrap()).await;
    assert_problem(&r, 403, "quarantine-refused");
    // Nor may the evidence of one measurement quarantine another.
    forged.body["evidence"]["document"] = event.event().body["document"].clone();
    let r = node.post(&forged.clone().sign(&log_key).unwrap()).await;
    assert_problem(&r, 403, "quarantine-refused");
    assert!(
        r.1["detail"]
            .as_str()
            .unwrap()
            .contains("another measurement"),
        "{}",
        r.1
    );
    // And nobody but the log appends one.
    let edge_key = node.dir.edge_key().unwrap();
    let mut by_edge = forged.clone();
    by_edge.producer = Producer::new(role("edge"), &edge_key.verifying_key());
    assert_problem(
        &node.post(&by_edge.sign(&edge_key).unwrap()).await,
        403,
        "quarantine-refused",
    );
    let (_, view) = node.get("/v1/services").await;
    assert!(
        view["quarantined"].get(&genuine_measurement).is_none(),
        "{view}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_attesting_before_its_manifest_is_refused_not_quarantined() {
    let node = boot().await;
    // A new build, deployed before the manifest that pins it: it binds the manifest it
    // expects (not the one in force), so its document proves nothing against the manifest
    // in force and quarantines nothing.
    let modified = node.tmp.path().join("next-exe");
    let mut bytes = std::fs::read(&node.exe).unwrap();
    bytes.extend_from_slice(b"next");
    std::fs::write(&modified, bytes).unwrap();
    let nsm = node.nsm("policy", &modified);
    let keys = ServiceKeys::generate(role("policy")).unwrap();
    let early = keys
        .attest(
            &nsm,
            [0x42; 32],
            node.services.log.latest().root,
            node.manifest_parent(),
        )
        .unwrap();
    let before = node.size();
    assert_problem(
        &node.post(&early).await,
        403,
        "attestation-manifest-binding",
    );
    assert_eq!(node.size(), before);

    // Once the manifest pinning it is in force, it attests.
    let measurement = govern_workers::nsm::dev_measurement(&modified, &role("policy")).unwrap();
    let mut next = node.pinned.signed.manifest.clone();
    next.serial += 1;
    next.roles
        .get_mut(&role("policy"))
        .unwrap()
        .measurements
        .push(Measurement {
            pcr0: hex::encode(measurement),
            pcr1: None,
            pcr2: None,
        });
    let mut signed = SignedManifest::new(next);
    signed.sign(dev_signer(&node, 1).signing_key()).unwrap();
    signed.sign(dev_signer(&node, 2).signing_key()).unwrap();
    let ok = node
        .post(&publish(&node, &signed, &node.dir.log_signing_key()))
        .await;
    assert_eq!(ok.0.as_u16(), 200, "{}", ok.1);
    let attested = node.attest_with(&keys, &nsm, node.manifest_parent());
    let ok = node.post(&attested).await;
    assert_eq!(ok.0.as_u16(), 200, "{}", ok.1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_copied_and_stale_documents_are_refused_without_quarantine() {
    let node = boot().await;
    let hash = node.manifest_hash();
    let root = node.services.log.latest().root;
    let nsm = node.nsm("policy", &node.exe);
    let keys = ServiceKeys::generate(role("policy")).unwrap();
    let before = node.size();

    // A chain to another root (another dev CA, same subject names).
    let elsewhere = tempfile::tempdir().unwrap();
    let foreign = SimulatedNsm::open(elsewhere.path(), &node.exe, role("policy")).unwrap();
    let r = node
        .post(
            &keys
                .attest(&foreign, hash, root, node.manifest_parent())
                .unwrap(),
        )
        .await;
    assert_problem(&r, 403, "attestation-refused");

    // An expired leaf: a document made four hours ago by a leaf valid for three.
    let four_hours_ago =
        Timestamp::from_unix_ms(Timestamp::now().unix_ms() - 4 * 3_600_000).unwrap();
    let old = nsm
        .attest_at(keys.attestation_request(hash, root), four_hours_ago)
        .unwrap();
    let r = node.post(&with_document(&keys, &old)).await;
    assert_problem(&r, 403, "attestation-refused");
    assert!(
        r.1["detail"].as_str().unwrap().contains("expired")
            || r.1["detail"].as_str().unwrap().contains("valid"),
        "{}",
        r.1
    );

    // A nonce that is no checkpoint's root.
    let r = node
        .post(
            &keys
                .attest(&nsm, hash, RootHash(Hash([7; 32])), node.manifest_parent())
                .unwrap(),
        )
        .await;
    assert_problem(&r, 403, "attestation-nonce");

    // Another manifest's hash.
    let r = node
        .post(
            &keys
                .attest(&nsm, [9; 32], root, node.manifest_parent())
                .unwrap(),
        )
        .await;
    assert_problem(&r, 403, "attestation-manifest-binding");

    // A genuine document copied by another key.
    let genuine = nsm.attest(keys.attestation_request(hash, root)).unwrap();
    let thief = ServiceKeys::generate(role("policy")).unwrap();
    assert_problem(
        &node.post(&with_document(&thief, &genuine)).await,
        403,
        "attestation-key-binding",
    );
    // ... or presented for another role.
    let other_role =
        ServiceKeys::with_signing_key(role("keys"), keys.signing_key().clone()).unwrap();
    assert_problem(
        &node.post(&with_document(&other_role, &genuine)).await,
        403,
        "attestation-role-binding",
    );

    // Garbage and truncated CBOR, a wrong COSE algorithm.
    assert_problem(
        &node.post(&with_document(&keys, b"\xa1garbage")).await,
        403,
        "attestation-refused",
    );
    assert_problem(
        &node
            .post(&with_document(&keys, &genuine[..genuine.len() / 2]))
            .await,
        403,
        "attestation-refused",
    );
    let mut es512 = genuine.clone();
    let at = es512
        .windows(5)
        .position(|w| w == [0x44, 0xa1, 0x01, 0x38, 0x22])
        .expect("the ES384 protected header");
    es512[at + 4] = 0x23;
    let r = node.post(&with_document(&keys, &es512)).await;
    assert_problem(&r, 403, "attestation-refused");
    assert!(r.1["detail"].as_str().unwrap().contains("ES384"), "{}", r.1);

    // A body without a document.
    let mut e = with_document(&keys, &genuine).event().clone();
    e.sig = None;
    e.body = Map::new();
    assert_problem(
        &node.post(&e.sign(keys.signing_key()).unwrap()).await,
        400,
        "attestation-field",
    );

    // None of these quarantined anything or wrote anything.
    assert_eq!(node.size(), before);
    let (_, view) = node.get("/v1/services").await;
    assert_eq!(view["quarantined"], serde_json::json!({}));
    // The genuine document from its own key still attests (following the manifest).
    let ok = node
        .post(
            &keys
                .attested_event(&genuine, node.manifest_parent(), Timestamp::now())
                .unwrap(),
        )
        .await;
    assert_eq!(ok.0.as_u16(), 200, "{}", ok.1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_attestation_replaces_the_roles_identity() {
    let node = boot().await;
    let mut on = subjects(&node, 4).await;
    let (first, first_attested) = node.attested("policy");
    assert_eq!(node.post(&first_attested).await.0.as_u16(), 200);
    let ok = node
        .post(&event_of(
            &first,
            &first_attested,
            &on.next().unwrap(),
            Timestamp::now(),
        ))
        .await;
    assert_eq!(ok.0.as_u16(), 200, "{}", ok.1);
    // Another instance of the pinned image attests: one identity per role, so it replaces
    // the first, whose key may append nothing more.
    let (second, second_attested) = node.attested("policy");
    assert_eq!(node.post(&second_attested).await.0.as_u16(), 200);
    assert_problem(
        &node
            .post(&event_of(
                &first,
                &first_attested,
                &on.next().unwrap(),
                Timestamp::now(),
            ))
            .await,
        403,
        "attestation-stale",
    );
    // Naming the new identity does not help the old key.
    assert_problem(
        &node
            .post(&event_of(
                &first,
                &second_attested,
                &on.next().unwrap(),
                Timestamp::now(),
            ))
            .await,
        403,
        "producer-key-mismatch",
    );
    let ok = node
        .post(&event_of(
            &second,
            &second_attested,
            &on.next().unwrap(),
            Timestamp::now(),
        ))
        .await;
    assert_eq!(ok.0.as_u16(), 200, "{}", ok.1);
    // Nobody may attest as the log with a key other than its checkpoint key.
    let (_, log_rival) = node.attested("log");
    assert_problem(&node.post(&log_rival).await, 403, "log-key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_attested_is_a_system_event_with_only_a_document() {
    let node = boot().await;
    let (keys, attested) = node.attested("policy");
    let mut extra = attested.event().clone();
    extra.sig = None;
    extra.body.insert("role".into(), "signer-1".into());
    assert_problem(
        &node.post(&extra.sign(keys.signing_key()).unwrap()).await,
        400,
        "attestation-field",
    );
    let mut tenanted = attested.event().clone();
    tenanted.sig = None;
    tenanted.tenant = TenantId(RequestId::new_v7().0);
    assert_problem(
        &node.post(&tenanted.sign(keys.signing_key()).unwrap()).await,
        400,
        "system-tenant",
    );
    assert_eq!(node.post(&attested).await.0.as_u16(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_under_signed_and_foreign_manifests_are_refused() {
    let node = boot().await;
    let log_key = node.dir.log_signing_key();
    let mut next = node.pinned.signed.manifest.clone();
    next.serial += 1;
    let unsigned = SignedManifest::new(next.clone());
    assert_problem(
        &node.post(&publish(&node, &unsigned, &log_key)).await,
        403,
        "manifest-refused",
    );
    let mut under = SignedManifest::new(next.clone());
    under.sign(dev_signer(&node, 1).signing_key()).unwrap();
    let r = node.post(&publish(&node, &under, &log_key)).await;
    assert_problem(&r, 403, "manifest-refused");
    assert!(r.1["detail"].as_str().unwrap().contains("1"), "{}", r.1);
    // Well signed, but by a key other than the log's.
    let mut signed = under.clone();
    signed.sign(dev_signer(&node, 2).signing_key()).unwrap();
    let edge_key = node.services.edge.identity.keys().signing_key().clone();
    let mut e = publish(&node, &signed, &log_key).event().clone();
    e.sig = None;
    e.producer = Producer::new(role("log"), &edge_key.verifying_key());
    assert_problem(
        &node.post(&e.sign(&edge_key).unwrap()).await,
        403,
        "manifest-producer",
    );
    // A replay of the manifest in force (not a successor).
    assert_problem(
        &node
            .post(&publish(&node, &node.pinned.signed, &log_key))
            .await,
        403,
        "manifest-refused",
    );
    // The quorum-signed successor takes effect.
    let ok = node.post(&publish(&node, &signed, &log_key)).await;
    assert_eq!(ok.0.as_u16(), 200, "{}", ok.1);
    assert_eq!(
        node.services.policy.manifest().unwrap().manifest.serial,
        next.serial
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_that_stops_pinning_a_live_identity_quarantines_it() {
    let node = boot().await;
    let mut on = subjects(&node, 1).await;
    let (keys, attested) = node.attested("policy");
    assert_eq!(node.post(&attested).await.0.as_u16(), 200);
    let measurement =
        hex::encode(govern_workers::nsm::dev_measurement(&node.exe, &role("policy")).unwrap());

    let mut next = node.pinned.signed.manifest.clone();
    next.serial += 1;
    next.roles.get_mut(&role("policy")).unwrap().measurements = vec![Measurement {
        pcr0: "11".repeat(48),
        pcr1: None,
        pcr2: None,
    }];
    let mut signed = SignedManifest::new(next);
    signed.sign(dev_signer(&node, 1).signing_key()).unwrap();
    signed.sign(dev_signer(&node, 3).signing_key()).unwrap();
    let before = node.size();
    let ok = node
        .post(&publish(&node, &signed, &node.dir.log_signing_key()))
        .await;
    assert_eq!(ok.0.as_u16(), 200, "{}", ok.1);
    // The manifest, then the log's quarantine of the identity it no longer pins.
    assert_eq!(node.size(), before + 2);
    let q = node.entry(before + 1);
    assert_eq!(q.event().kind.as_str(), "service.quarantined");
    assert_eq!(q.event().body["reason"], "measurement-unpinned");
    assert_eq!(q.event().body["measurement"], measurement);
    assert_eq!(q.event().parents, vec![attested.leaf_hash()]);

    let (_, view) = node.get("/v1/services").await;
    assert_eq!(status_of(&view, "policy"), "quarantined", "{view}");
    assert_eq!(status_of(&view, "edge"), "live", "{view}");

    // Appends from the quarantined measurement are refused, and it cannot attest again.
    assert_problem(
        &node
            .post(&event_of(
                &keys,
                &attested,
                &on.next().unwrap(),
                Timestamp::now(),
            ))
            .await,
        403,
        "identity-quarantined",
    );
    let (_, again) = node.attested("policy");
    assert_problem(&node.post(&again).await, 403, "measurement-quarantined");

    // A later manifest that pins the measurement again lifts the quarantine: the quorum
    // decided again.
    let mut restored = node.pinned.signed.manifest.clone();
    restored.serial += 2;
    let mut signed = SignedManifest::new(restored);
    signed.sign(dev_signer(&node, 2).signing_key()).unwrap();
    signed.sign(dev_signer(&node, 3).signing_key()).unwrap();
    let ok = node
        .post(&publish(&node, &signed, &node.dir.log_signing_key()))
        .await;
    assert_eq!(ok.0.as_u16(), 200, "{}", ok.1);
    let (_, view) = node.get("/v1/services").await;
    assert!(view["quarantined"].get(&measurement).is_none(), "{view}");
    let (_, back) = node.attested("policy");
    let ok = node.post(&back).await;
    assert_eq!(ok.0.as_u16(), 200, "{}", ok.1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_that_stops_pinning_the_log_itself_still_quarantines() {
    // A rebuilt node: the new manifest pins new images for every role, so the running log
    // and edge are no longer pinned. The log's own quarantines must still land.
    let node = boot().await;
    let mut next = node.pinned.signed.manifest.clone();
    next.serial += 1;
    for spec in next.roles.values_mut() {
        spec.measurements = vec![Measurement {
            pcr0: "22".repeat(48),
            pcr1: None,
            pcr2: None,
        }];
    }
    let mut signed = SignedManifest::new(next);
    signed.sign(dev_signer(&node, 1).signing_key()).unwrap();
    signed.sign(dev_signer(&node, 2).signing_key()).unwrap();
    let before = node.size();
    let ok = node
        .post(&publish(&node, &signed, &node.dir.log_signing_key()))
        .await;
    assert_eq!(ok.0.as_u16(), 200, "{}", ok.1);
    // The manifest, then one quarantine per live role (log, edge and keys share this
    // executable but not a measurement: PCR0 covers the role).
    assert_eq!(node.size(), before + 4);
    let roles: Vec<String> = (before + 1..before + 4)
        .map(|i| {
            let q = node.entry(i);
            assert_eq!(q.event().kind.as_str(), "service.quarantined");
            q.event().body["role"].as_str().unwrap().to_string()
        })
        .collect();
    assert!(
        roles.contains(&"log".to_string()) && roles.contains(&"edge".to_string()),
        "{roles:?}"
    );
    let (_, view) = node.get("/v1/services").await;
    assert_eq!(status_of(&view, "log"), "quarantined", "{view}");
    assert_eq!(status_of(&view, "edge"), "quarantined", "{view}");
}

/// A clock the test moves.
#[derive(Debug, Default)]
struct Shifted(AtomicI64);

impl Clock for Shifted {
    fn now(&self) -> Timestamp {
        Timestamp::from_unix_ms(Timestamp::now().unix_ms() + self.0.load(Ordering::SeqCst)).unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_identity_may_not_append_and_frees_its_role() {
    let clock = Arc::new(Shifted::default());
    let node = support::boot_clocked(|c| c, |e| e, Arc::clone(&clock) as Arc<dyn Clock>).await;
    let mut on = subjects(&node, 4).await;
    let max_age_ms =
        i64::try_from(node.pinned.signed.manifest.roles[&role("policy")].max_age_s).unwrap() * 1000;
    let services = &node.services;
    let nsm = node.nsm("policy", &node.exe);
    let hash = services.policy.manifest().unwrap().hash;
    let keys = ServiceKeys::generate(role("policy")).unwrap();
    let attested = keys
        .attest(
            &nsm,
            hash,
            services.log.latest().root,
            node.manifest_parent(),
        )
        .unwrap();
    services.log.append(attested.clone()).await.unwrap();

    // Thirty seconds before max_age_s, by the log's clock and the event's time: within the
    // log's time skew of expiry, so a backdated event could arrive after it. Refused; a
    // minute and a half before is fine.
    let ok_ms = Timestamp::now().unix_ms() + max_age_ms - 90_000;
    clock.0.store(max_age_ms - 90_000, Ordering::SeqCst);
    services
        .log
        .append(event_of(
            &keys,
            &attested,
            &on.next().unwrap(),
            Timestamp::from_unix_ms(ok_ms).unwrap(),
        ))
        .await
        .unwrap();
    let close_ms = Timestamp::now().unix_ms() + max_age_ms - 30_000;
    clock.0.store(max_age_ms - 30_000, Ordering::SeqCst);
    let close = Timestamp::from_unix_ms(close_ms).unwrap();
    let err = services
        .log
        .append(event_of(&keys, &attested, &on.next().unwrap(), close))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("time skew"), "{err}");

    // One second past max_age_s, by the log's clock and the event's time.
    let later_ms = Timestamp::now().unix_ms() + max_age_ms + 1_000;
    clock.0.store(max_age_ms + 1_000, Ordering::SeqCst);
    let later = Timestamp::from_unix_ms(later_ms).unwrap();
    let err = services
        .log
        .append(event_of(&keys, &attested, &on.next().unwrap(), later))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            govern_store::AppendError::Identity(
                govern_admission::IdentityError::IdentityExpired { .. }
            )
        ),
        "{err}"
    );
    let view = services.policy.services(later);
    let policy = view
        .services
        .iter()
        .find(|s| s.identity.role == role("policy"))
        .unwrap();
    assert_eq!(policy.status, "expired");

    // The role is free again: a new key attests (its document made at the later time).
    let successor = ServiceKeys::generate(role("policy")).unwrap();
    let document = nsm
        .attest_at(
            successor.attestation_request(hash, services.log.latest().root),
            later,
        )
        .unwrap();
    let event = successor
        .attested_event(&document, node.manifest_parent(), later)
        .unwrap();
    services.log.append(event.clone()).await.unwrap();
    services
        .log
        .append(event_of(&successor, &event, &on.next().unwrap(), later))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identities_survive_a_restart() {
    let node = boot().await;
    let mut on = subjects(&node, 2).await;
    let (keys, attested) = node.attested("policy");
    node.services.log.append(attested.clone()).await.unwrap();
    let before = node.size();
    let (services, dir, _tmp, _storage) = node.restart().await;
    let exe = support::exe();
    // The reopened log still knows the policy's identity (and the log, the edge and the key
    // service re-attested: three entries more).
    assert_eq!(services.log.latest().size.0, before + 3);
    services
        .log
        .append(event_of(
            &keys,
            &attested,
            &on.next().unwrap(),
            Timestamp::now(),
        ))
        .await
        .unwrap();
    // The identity's replacement after the restart leaves the old key stale.
    let nsm = SimulatedNsm::open(&dir.dev_ca_path(), &exe, role("policy")).unwrap();
    let successor = ServiceKeys::generate(role("policy"))
        .unwrap()
        .attest(
            &nsm,
            services.policy.manifest().unwrap().hash,
            services.log.latest().root,
            vec![services.policy.manifest().unwrap().leaf],
        )
        .unwrap();
    services.log.append(successor).await.unwrap();
    let err = services
        .log
        .append(event_of(
            &keys,
            &attested,
            &on.next().unwrap(),
            Timestamp::now(),
        ))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            govern_store::AppendError::Identity(
                govern_admission::IdentityError::StaleAttestation { .. }
            )
        ),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_attestation_brought_back_never_revives_a_dead_identity() {
    let node = boot().await;
    let policy = role("policy");
    // The policy service starts, then restarts with fresh keys: the second is its identity.
    let (old_keys, old) = node.attested("policy");
    let first = node.post(&old).await;
    assert_eq!(first.0.as_u16(), 200, "{}", first.1);
    let (new_keys, new) = node.attested("policy");
    let ok = node.post(&new).await;
    assert_eq!(ok.0.as_u16(), 200, "{}", ok.1);
    let live = |leaf, keys: &ServiceKeys| {
        node.services
            .policy
            .live_identity(&policy, leaf, &keys.producer().key, Timestamp::now())
    };
    assert!(live(new.leaf_hash(), &new_keys).is_ok());

    // Anyone who read the log posts the old service.attested again, within the time skew:
    // the log holds it, answers its original receipt, and appends nothing.
    let size = node.size();
    let again = node.post(&old).await;
    assert_eq!(again.0.as_u16(), 200, "{}", again.1);
    assert_eq!(again.1["index"], first.1["index"]);
    assert_eq!(again.1["leaf_hash"], first.1["leaf_hash"]);
    assert_eq!(node.size(), size, "nothing was appended");
    // The restarted service stays the role's live identity; the old one stays dead.
    assert!(live(new.leaf_hash(), &new_keys).is_ok());
    assert!(matches!(
        live(old.leaf_hash(), &old_keys),
        Err(govern_admission::IdentityError::StaleAttestation { .. })
    ));

    // The old process (its key) signs its old document again in a new event: the document
    // is older than the current identity's, so it is refused.
    let document = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        old.event().body["document"].as_str().unwrap(),
    )
    .unwrap();
    let revived = old_keys
        .attested_event(&document, node.manifest_parent(), Timestamp::now())
        .unwrap();
    assert_problem(&node.post(&revived).await, 403, "attestation-not-newer");
    assert_eq!(node.size(), size);
    assert!(live(new.leaf_hash(), &new_keys).is_ok());
}
