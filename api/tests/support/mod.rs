//! A node booted as `govern node` boots it, in process: a dev manifest pinning this test
//! executable, the identity policy, the genesis manifest, and attested `log` and `edge`
//! identities from the simulated NSM.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod users;

use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use govern_api::devpin::{Pinned, pin_dev_manifest};
use govern_api::{AppState, Attestor, DataDir, Services, router};
use govern_core::event::{
    Event, Kind, Producer, RequestId, Role, SignedEvent, TenantId, Timestamp,
};
use govern_core::ids::LeafHash;
use govern_core::manifest::SignedManifest;
use govern_core::note::NoteSigner;
use govern_store::{LogConfig, MemoryStorage};
use govern_workers::identity::ServiceKeys;
use govern_workers::nsm::SimulatedNsm;
use http_body_util::BodyExt as _;
use serde_json::{Map, Value};
use tower::ServiceExt as _;

/// Field order is drop order: the services (and their log) close before the directory goes.
pub struct Booted {
    pub app: Router,
    /// The log's store: in memory (these tests are of the node, not of RocksDB, which the
    /// store's own tests and the conformance suite hold to the same contract). A restart
    /// is a power failure of it: what the log synced survives, as on disk.
    pub storage: MemoryStorage,
    pub services: Services<MemoryStorage>,
    pub dir: DataDir,
    pub pinned: Pinned,
    pub exe: PathBuf,
    pub tmp: tempfile::TempDir,
}

pub fn exe() -> PathBuf {
    std::env::current_exe().unwrap()
}

/// The web origin and relying party id of the booted node's edge.
pub const ORIGIN: &str = "http://localhost:7600";
pub const RP_ID: &str = "localhost";

pub async fn boot() -> Booted {
    boot_with(|c| c).await
}

/// [`boot`] with the edge's settings changed by `edge`.
pub async fn boot_edge(
    edge: impl FnOnce(govern_api::edge::EdgeConfig) -> govern_api::edge::EdgeConfig,
) -> Booted {
    boot_full(|c| c, edge).await
}

/// [`boot`] with the log's configuration changed by `config`.
pub async fn boot_with(config: impl FnOnce(LogConfig) -> LogConfig) -> Booted {
    boot_full(config, |e| e).await
}

async fn boot_full(
    config: impl FnOnce(LogConfig) -> LogConfig,
    edge_config: impl FnOnce(govern_api::edge::EdgeConfig) -> govern_api::edge::EdgeConfig,
) -> Booted {
    boot_clocked(config, edge_config, Arc::new(govern_store::SystemClock)).await
}

/// [`boot`] with the log's configuration, the edge's and the log's clock given.
pub async fn boot_clocked(
    config: impl FnOnce(LogConfig) -> LogConfig,
    edge_config: impl FnOnce(govern_api::edge::EdgeConfig) -> govern_api::edge::EdgeConfig,
    clock: Arc<dyn govern_store::Clock>,
) -> Booted {
    let tmp = tempfile::tempdir().unwrap();
    let exe = exe();
    let pinned = pin_dev_manifest(tmp.path(), None, &exe).unwrap();
    let dir = DataDir::open(tmp.path(), None).unwrap();
    let storage = MemoryStorage::new();
    let services = dir
        .boot_on(
            storage.clone(),
            config(LogConfig::new(dir.origin())),
            true,
            &Attestor::Simulated {
                executable: exe.clone(),
            },
            clock,
        )
        .await
        .unwrap();
    let edge = govern_api::edge::Edge::new(
        edge_config(govern_api::edge::EdgeConfig::new(RP_ID, ORIGIN).unwrap()),
        Arc::clone(&services.log) as _,
        Arc::clone(&services.policy) as _,
        Arc::clone(&services.edge),
        Arc::clone(&services.keys) as _,
        dir.operator_token().unwrap(),
        dir.passkeys_path(),
    )
    .unwrap();
    let app = router(
        AppState::new(Arc::clone(&services.log), &dir.verifier_key())
            .with_identities(Arc::clone(&services.policy))
            .with_keys(Arc::clone(&services.keys))
            .with_edge(Arc::new(edge)),
    );
    Booted {
        app,
        storage,
        services,
        dir,
        pinned,
        exe,
        tmp,
    }
}

impl Booted {
    /// Stop this node's services and boot them again on the same data dir, as a restart
    /// does: the new services, and the data dir and temporary directory they live in.
    pub async fn restart(
        self,
    ) -> (
        Services<MemoryStorage>,
        DataDir,
        tempfile::TempDir,
        MemoryStorage,
    ) {
        let Booted {
            app,
            storage,
            services,
            dir,
            exe,
            tmp,
            ..
        } = self;
        drop(app);
        drop(services);
        let storage = storage.power_fail();
        let services = dir
            .boot_on(
                storage.clone(),
                LogConfig::new(dir.origin()),
                true,
                &Attestor::Simulated { executable: exe },
                Arc::new(govern_store::SystemClock),
            )
            .await
            .unwrap();
        (services, dir, tmp, storage)
    }

    /// An event of the edge's identity.
    pub fn edge_event(&self, kind: &str, tenant: TenantId, parents: Vec<LeafHash>) -> SignedEvent {
        self.services
            .edge
            .identity
            .sign(
                Kind::new(kind).unwrap(),
                tenant,
                RequestId::new_v7(),
                parents,
                Map::new(),
                govern_core::event::Timestamp::now(),
            )
            .unwrap()
    }

    /// A simulated NSM for `role` measuring `exe`, from this data dir's dev CA.
    pub fn nsm(&self, role: &str, exe: &std::path::Path) -> SimulatedNsm {
        SimulatedNsm::open(&self.dir.dev_ca_path(), exe, Role::new(role).unwrap()).unwrap()
    }

    /// The manifest in force's hash and leaf.
    pub fn manifest_hash(&self) -> [u8; 32] {
        self.services.policy.manifest().unwrap().hash
    }

    /// A `service.attested` for fresh keys of `role`, from the genuine NSM of this executable,
    /// following the manifest in force.
    pub fn attested(&self, role: &str) -> (ServiceKeys, SignedEvent) {
        let keys = ServiceKeys::generate(Role::new(role).unwrap()).unwrap();
        let event = self.attest_with(&keys, &self.nsm(role, &self.exe), self.manifest_parent());
        (keys, event)
    }

    /// The key of `scope` (version 1) of `tenant`, released by the key service to the
    /// identity `keys` attested in `attested` (posted here first).
    pub async fn release(
        &self,
        keys: &ServiceKeys,
        attested: &SignedEvent,
        tenant: &govern_core::event::TenantId,
        scope: &str,
    ) -> [u8; 32] {
        let ok = self.post(attested).await;
        assert_eq!(ok.0, StatusCode::OK, "{}", ok.1);
        let req = govern_api::keys::request_release_by(
            keys,
            attested.leaf_hash(),
            tenant,
            &[scope],
            govern_core::event::Timestamp::now(),
        )
        .unwrap();
        let r = self
            .call(
                "POST",
                "/v1/keys/release",
                &[],
                Some(serde_json::to_vec(&req).unwrap()),
            )
            .await;
        assert_eq!(r.0, StatusCode::OK, "{}", r.1);
        let release: govern_api::keys::Release = serde_json::from_value(r.1).unwrap();
        *release
            .open(&req, keys.x25519())
            .unwrap()
            .get(scope, 1)
            .unwrap()
    }

    /// The manifest in force's `manifest.published`, as a parent.
    pub fn manifest_parent(&self) -> Vec<LeafHash> {
        vec![self.services.policy.manifest().unwrap().leaf]
    }

    /// A `service.attested` of `keys` from `nsm`, bound to the manifest in force and the
    /// latest checkpoint, following `parents`.
    pub fn attest_with(
        &self,
        keys: &ServiceKeys,
        nsm: &SimulatedNsm,
        parents: Vec<LeafHash>,
    ) -> SignedEvent {
        keys.attest(
            nsm,
            self.manifest_hash(),
            self.services.log.latest().root,
            parents,
        )
        .unwrap()
    }

    /// The entry at `index`, parsed.
    pub fn entry(&self, index: u64) -> SignedEvent {
        let bytes = self
            .services
            .log
            .entry(govern_core::ids::LeafIndex(index))
            .unwrap();
        SignedEvent::from_bytes(&bytes).unwrap()
    }

    pub async fn post(&self, event: &SignedEvent) -> (StatusCode, Value) {
        post(&self.app, event.bytes().to_vec()).await
    }

    pub async fn get(&self, uri: &str) -> (StatusCode, Value) {
        let req = Request::builder().uri(uri).body(Body::empty()).unwrap();
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&body).unwrap())
    }

    pub fn size(&self) -> u64 {
        self.services.log.latest().size.0
    }

    /// Any request: `headers` as (name, value); the body's raw bytes come back too.
    pub async fn call(
        &self,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> (StatusCode, Value, Vec<u8>) {
        let mut req = Request::builder()
            .method(Method::from_bytes(method.as_bytes()).unwrap())
            .uri(uri);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        let req = req.body(Body::from(body.unwrap_or_default())).unwrap();
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec();
        let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, value, bytes)
    }
}

pub async fn post(app: &Router, body: Vec<u8>) -> (StatusCode, Value) {
    let req = Request::builder()
        .method(Method::POST)
        .uri("/v1/entries")
        .body(Body::from(body))
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap())
}

#[track_caller]
pub fn assert_problem(got: &(StatusCode, Value), status: u16, kind: &str) {
    assert_eq!(
        got.1["type"],
        format!("urn:govern:problem:{kind}"),
        "{}",
        got.1
    );
    assert_eq!(got.0.as_u16(), status, "{}", got.1);
}

/// The data dir's dev manifest signers.
pub fn dev_signer(node: &Booted, i: usize) -> NoteSigner {
    let text = std::fs::read_to_string(
        node.tmp
            .path()
            .join(format!("manifest-signers/dev-{i}.key")),
    )
    .unwrap();
    NoteSigner::from_private_key(text.trim()).unwrap()
}

/// A `manifest.published` of `signed`, by the log's key, following the manifest in force.
pub fn publish(
    node: &Booted,
    signed: &SignedManifest,
    key: &ed25519_dalek::SigningKey,
) -> SignedEvent {
    let mut event = Event::new(
        Kind::new("manifest.published").unwrap(),
        TenantId::SYSTEM,
        RequestId::new_v7(),
        Producer::new(Role::new("log").unwrap(), &key.verifying_key()),
        Timestamp::now(),
        signed.published_body().unwrap(),
    );
    event.parents = vec![node.services.policy.manifest().unwrap().leaf];
    event.sign(key).unwrap()
}
