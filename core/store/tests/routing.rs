//! The routing graph of a manifest, enforced at append by [`ManifestPolicy`]: kinds and
//! roles, parents (existence, kind, tenant, request), uniqueness keys across batches and
//! within one, across a reopen, and no index keys left by a refused event.
//!
//! The manifest is `manifests/dev.json` (its routing graph is what matters here; the policy
//! does not need it pinned).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_debug_implementations
)]

use std::sync::Arc;

use ed25519_dalek::SigningKey;
use govern_admission::{ManifestPolicy, ProducerAllowList};
use govern_core::event::{
    Event, Kind, Producer, PublicKey, RequestId, Role, SignedEvent, TenantId, Timestamp,
};
use govern_core::ids::{LeafHash, LeafIndex};
use govern_core::manifest::Manifest;
use govern_core::note::NoteSigner;
use govern_store::{
    AppendError, Appended, Log, LogConfig, MemoryStorage, RocksStorage, Storage, SystemClock,
};
use uuid::Uuid;

const ORIGIN: &str = "govern.test/routing";

fn manifest() -> Manifest {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../manifests/dev.json");
    Manifest::from_json(&std::fs::read(path).unwrap()).unwrap()
}

struct World {
    edge: SigningKey,
    policy: SigningKey,
}

impl World {
    fn new() -> Self {
        Self {
            edge: SigningKey::from_bytes(&[7; 32]),
            policy: SigningKey::from_bytes(&[8; 32]),
        }
    }

    fn policy(&self) -> Arc<ManifestPolicy> {
        let mut allow = ProducerAllowList::default();
        allow.insert(role("edge"), PublicKey::from(&self.edge.verifying_key()));
        allow.insert(
            role("policy"),
            PublicKey::from(&self.policy.verifying_key()),
        );
        Arc::new(ManifestPolicy::new(manifest(), allow))
    }

    fn open<S: Storage>(&self, storage: S, batch_wait_ms: u64) -> Log<S> {
        let mut config = LogConfig::new(ORIGIN);
        config.batch_wait_ms = batch_wait_ms;
        Log::open(
            storage,
            NoteSigner::new(ORIGIN, SigningKey::from_bytes(&[1; 32])).unwrap(),
            config,
            self.policy(),
            Arc::new(SystemClock),
        )
        .unwrap()
    }

    /// An event of `kind` by `who` ("edge" or "policy").
    fn event(
        &self,
        who: &str,
        kind: &str,
        tenant: TenantId,
        request: RequestId,
        parents: &[LeafHash],
    ) -> SignedEvent {
        let key = if who == "edge" {
            &self.edge
        } else {
            &self.policy
        };
        Event {
            v: 1,
            kind: Kind::new(kind).unwrap(),
            tenant,
            request,
            parents: parents.to_vec(),
            producer: Producer {
                role: role(who),
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
}

fn role(name: &str) -> Role {
    Role::new(name).unwrap()
}

fn kind(name: &str) -> Kind {
    Kind::new(name).unwrap()
}

fn tenant() -> TenantId {
    TenantId(Uuid::now_v7())
}

fn append<S: Storage>(log: &Log<S>, e: &SignedEvent) -> Result<Appended, AppendError> {
    log.append_blocking(e.clone())
}

/// A tenant, a wallet request naming it, and the policy's evaluation naming the request.
struct Chain {
    tenant: TenantId,
    created: SignedEvent,
    wallet: SignedEvent,
    request: RequestId,
}

fn chain<S: Storage>(w: &World, log: &Log<S>) -> Chain {
    let t = tenant();
    let created = w.event("edge", "tenant.created", t, RequestId::new_v7(), &[]);
    append(log, &created).unwrap();
    let request = RequestId::new_v7();
    let wallet = w.event(
        "edge",
        "wallet.requested",
        t,
        request,
        &[created.leaf_hash()],
    );
    append(log, &wallet).unwrap();
    Chain {
        tenant: t,
        created,
        wallet,
        request,
    }
}

#[test]
fn a_valid_parent_chain_is_accepted() {
    let w = World::new();
    let log = w.open(MemoryStorage::new(), 1);
    let c = chain(&w, &log);
    let evaluated = w.event(
        "policy",
        "policy.evaluated",
        c.tenant,
        c.request,
        &[c.wallet.leaf_hash()],
    );
    let a = append(&log, &evaluated).unwrap();
    assert_eq!(a.index, LeafIndex(2));
    assert_eq!(
        log.index_of(&c.created.leaf_hash()).unwrap(),
        Some(LeafIndex(0))
    );
    assert_eq!(
        log.index_of(&evaluated.leaf_hash()).unwrap(),
        Some(LeafIndex(2))
    );
    // A parent of the system tenant may be named from any tenant.
    let system = w.event(
        "edge",
        "tenant.created",
        TenantId::SYSTEM,
        RequestId::new_v7(),
        &[],
    );
    append(&log, &system).unwrap();
    let wallet = w.event(
        "edge",
        "wallet.requested",
        c.tenant,
        RequestId::new_v7(),
        &[system.leaf_hash()],
    );
    assert_eq!(append(&log, &wallet).unwrap().index, LeafIndex(4));
}

#[test]
fn a_kind_not_allowed_for_the_role_is_refused() {
    let w = World::new();
    let log = w.open(MemoryStorage::new(), 1);
    let e = w.event(
        "policy",
        "tenant.created",
        tenant(),
        RequestId::new_v7(),
        &[],
    );
    assert_eq!(
        append(&log, &e).unwrap_err(),
        AppendError::KindNotAllowed {
            role: role("policy"),
            kind: kind("tenant.created"),
        }
    );
}

#[test]
fn an_undeclared_kind_is_refused() {
    let w = World::new();
    let log = w.open(MemoryStorage::new(), 1);
    let e = w.event(
        "edge",
        "test.undeclared",
        tenant(),
        RequestId::new_v7(),
        &[],
    );
    assert_eq!(
        append(&log, &e).unwrap_err(),
        AppendError::UnknownKind {
            kind: kind("test.undeclared"),
        }
    );
}

#[test]
fn a_producer_not_allowed_is_refused_first() {
    let w = World::new();
    let log = w.open(MemoryStorage::new(), 1);
    let stranger = SigningKey::from_bytes(&[9; 32]);
    let e = Event {
        v: 1,
        kind: kind("tenant.created"),
        tenant: tenant(),
        request: RequestId::new_v7(),
        parents: vec![],
        producer: Producer::new(role("edge"), &stranger.verifying_key()),
        attestation: None,
        time: Timestamp::now(),
        body: serde_json::Map::new(),
        sealed: None,
        sig: None,
    }
    .sign(&stranger)
    .unwrap();
    assert!(matches!(
        append(&log, &e).unwrap_err(),
        AppendError::UnknownProducer { .. }
    ));
}

#[test]
fn a_missing_parent_is_refused() {
    let w = World::new();
    let log = w.open(MemoryStorage::new(), 1);
    let ghost = w
        .event("edge", "tenant.created", tenant(), RequestId::new_v7(), &[])
        .leaf_hash();
    let e = w.event(
        "edge",
        "wallet.requested",
        tenant(),
        RequestId::new_v7(),
        &[ghost],
    );
    assert_eq!(
        append(&log, &e).unwrap_err(),
        AppendError::ParentMissing { parent: ghost }
    );
}

#[test]
fn a_parent_of_a_disallowed_kind_is_refused() {
    let w = World::new();
    let log = w.open(MemoryStorage::new(), 1);
    let c = chain(&w, &log);
    // policy.evaluated follows a request, not a tenant's creation.
    let e = w.event(
        "policy",
        "policy.evaluated",
        c.tenant,
        c.request,
        &[c.created.leaf_hash()],
    );
    assert_eq!(
        append(&log, &e).unwrap_err(),
        AppendError::ParentKindNotAllowed {
            kind: kind("policy.evaluated"),
            parent_kind: kind("tenant.created"),
        }
    );
}

#[test]
fn a_parent_of_another_tenant_is_refused() {
    let w = World::new();
    let log = w.open(MemoryStorage::new(), 1);
    let c = chain(&w, &log);
    let other = tenant();
    let e = w.event(
        "edge",
        "wallet.requested",
        other,
        RequestId::new_v7(),
        &[c.created.leaf_hash()],
    );
    assert_eq!(
        append(&log, &e).unwrap_err(),
        AppendError::ParentOtherTenant {
            parent: c.created.leaf_hash(),
            tenant: other,
            parent_tenant: c.tenant,
        }
    );
}

#[test]
fn a_parent_of_another_request_is_refused_where_the_kind_says_same_request() {
    let w = World::new();
    let log = w.open(MemoryStorage::new(), 1);
    let c = chain(&w, &log);
    let mine = RequestId::new_v7();
    let e = w.event(
        "policy",
        "policy.evaluated",
        c.tenant,
        mine,
        &[c.wallet.leaf_hash()],
    );
    assert_eq!(
        append(&log, &e).unwrap_err(),
        AppendError::ParentOtherRequest {
            kind: kind("policy.evaluated"),
            parent: c.wallet.leaf_hash(),
            request: mine,
            parent_request: c.request,
        }
    );
}

#[test]
fn a_duplicate_uniqueness_key_is_refused_across_batches() {
    let w = World::new();
    let log = w.open(MemoryStorage::new(), 1);
    let c = chain(&w, &log);
    // tenant.created is unique per tenant: a second one (another request) is refused.
    let again = w.event("edge", "tenant.created", c.tenant, RequestId::new_v7(), &[]);
    let key = manifest().uniqueness_key(again.event()).unwrap().unwrap();
    assert_eq!(key, format!("tenant.created:[\"{}\"]", c.tenant.0));
    assert_eq!(
        append(&log, &again).unwrap_err(),
        AppendError::Duplicate {
            key,
            index: LeafIndex(0),
        }
    );
}

#[test]
fn a_duplicate_uniqueness_key_is_refused_within_one_batch_and_a_parent_in_the_batch_counts() {
    let w = World::new();
    // A long batch wait: everything submitted at once shares one batch.
    let log = w.open(MemoryStorage::new(), 300);
    let t = tenant();
    let first = w.event("edge", "tenant.created", t, RequestId::new_v7(), &[]);
    let second = w.event("edge", "tenant.created", t, RequestId::new_v7(), &[]);
    let child = w.event(
        "edge",
        "wallet.requested",
        t,
        RequestId::new_v7(),
        &[first.leaf_hash()],
    );
    let rx1 = log.submit(first.clone()).unwrap();
    let rx2 = log.submit(second).unwrap();
    let rx3 = log.submit(child).unwrap();
    let a1 = rx1.blocking_recv().unwrap().unwrap();
    let r2 = rx2.blocking_recv().unwrap();
    let a3 = rx3.blocking_recv().unwrap().unwrap();
    assert_eq!(a1.index, LeafIndex(0));
    assert_eq!(a3.index, LeafIndex(1));
    assert_eq!(a1.checkpoint.size, a3.checkpoint.size, "one batch");
    let key = manifest().uniqueness_key(first.event()).unwrap().unwrap();
    assert_eq!(
        r2.unwrap_err(),
        AppendError::Duplicate {
            key,
            index: LeafIndex(0),
        }
    );
    assert_eq!(log.latest().size.0, 2);
}

#[test]
fn the_uniqueness_and_leaf_indexes_survive_a_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let w = World::new();
    let (t, created) = {
        let log = w.open(RocksStorage::open(tmp.path()).unwrap(), 1);
        let t = tenant();
        let created = w.event("edge", "tenant.created", t, RequestId::new_v7(), &[]);
        append(&log, &created).unwrap();
        (t, created)
    };
    let log = w.open(RocksStorage::open(tmp.path()).unwrap(), 1);
    let again = w.event("edge", "tenant.created", t, RequestId::new_v7(), &[]);
    assert_eq!(
        append(&log, &again).unwrap_err(),
        AppendError::Duplicate {
            key: manifest().uniqueness_key(again.event()).unwrap().unwrap(),
            index: LeafIndex(0),
        }
    );
    assert_eq!(
        log.index_of(&created.leaf_hash()).unwrap(),
        Some(LeafIndex(0))
    );
    let child = w.event(
        "edge",
        "wallet.requested",
        t,
        RequestId::new_v7(),
        &[created.leaf_hash()],
    );
    assert_eq!(append(&log, &child).unwrap().index, LeafIndex(1));
}

/// Every key of `storage` starting with `prefix`.
fn keys_with(storage: &MemoryStorage, prefix: u8) -> usize {
    storage
        .scan(&[prefix], &[prefix + 1], usize::MAX)
        .unwrap()
        .len()
}

#[test]
fn a_refused_event_leaves_no_index_keys() {
    let w = World::new();
    let storage = MemoryStorage::new();
    let log = w.open(storage.clone(), 1);
    let c = chain(&w, &log);
    // Two accepted events: two leaf keys, two uniqueness keys (tenant; request).
    assert_eq!(keys_with(&storage, b'h'), 2);
    assert_eq!(keys_with(&storage, b'u'), 2);
    let refused = [
        w.event("edge", "tenant.created", c.tenant, RequestId::new_v7(), &[]),
        w.event(
            "edge",
            "test.undeclared",
            c.tenant,
            RequestId::new_v7(),
            &[],
        ),
        w.event(
            "policy",
            "policy.evaluated",
            c.tenant,
            RequestId::new_v7(),
            &[c.wallet.leaf_hash()],
        ),
    ];
    for e in &refused {
        append(&log, e).unwrap_err();
        assert_eq!(log.index_of(&e.leaf_hash()).unwrap(), None);
    }
    assert_eq!(keys_with(&storage, b'h'), 2);
    assert_eq!(keys_with(&storage, b'u'), 2);
    assert_eq!(log.latest().size.0, 2);
}

#[test]
fn a_kind_that_follows_others_names_a_parent() {
    let w = World::new();
    let log = w.open(MemoryStorage::new(), 1);
    let t = tenant();
    append(
        &log,
        &w.event("edge", "tenant.created", t, RequestId::new_v7(), &[]),
    )
    .unwrap();
    // wallet.requested follows tenant.created in the routing graph: with no parent it
    // would float free of the tenant it claims.
    let orphan = w.event("edge", "wallet.requested", t, RequestId::new_v7(), &[]);
    assert_eq!(
        append(&log, &orphan).unwrap_err(),
        AppendError::ParentRequired {
            kind: kind("wallet.requested")
        }
    );
    assert_eq!(log.latest().size.0, 1);
}

/// The events of `events`, submitted together so they land in one batch, and their answers.
fn in_one_batch<S: Storage>(
    log: &Log<S>,
    events: &[SignedEvent],
) -> Vec<Result<Appended, AppendError>> {
    let receivers: Vec<_> = events
        .iter()
        .map(|e| log.submit(e.clone()).unwrap())
        .collect();
    receivers
        .into_iter()
        .map(|rx| rx.blocking_recv().unwrap())
        .collect()
}

#[test]
fn an_event_the_log_holds_is_answered_with_its_receipt_and_never_appended_twice() {
    let tmp = tempfile::tempdir().unwrap();
    let w = World::new();
    let t = tenant();
    let created = w.event("edge", "tenant.created", t, RequestId::new_v7(), &[]);
    {
        let log = w.open(RocksStorage::open(tmp.path()).unwrap(), 1);
        let first = append(&log, &created).unwrap();
        assert_eq!(first.index, LeafIndex(0));
        // Sent again in a later batch: the original entry, under the latest checkpoint.
        let again = append(&log, &created).unwrap();
        assert_eq!(again.index, LeafIndex(0));
        assert_eq!(again.leaf_hash, created.leaf_hash());
        assert_eq!(log.latest().size.0, 1, "nothing was appended");
        assert_eq!(again.checkpoint.size.0, 1);
    }
    // After a reopen too, from the stored leaf-hash index.
    let log = w.open(RocksStorage::open(tmp.path()).unwrap(), 50);
    assert_eq!(append(&log, &created).unwrap().index, LeafIndex(0));
    // Twice in one batch: one entry, and both answers name it once the batch is durable.
    let wallet = w.event(
        "edge",
        "wallet.requested",
        t,
        RequestId::new_v7(),
        &[created.leaf_hash()],
    );
    let answers = in_one_batch(&log, &[wallet.clone(), wallet.clone(), created.clone()]);
    let indices: Vec<u64> = answers.into_iter().map(|a| a.unwrap().index.0).collect();
    assert_eq!(indices, vec![1, 1, 0]);
    assert_eq!(log.latest().size.0, 2);
}

#[test]
fn a_replay_refuses_a_log_holding_one_event_twice() {
    use govern_core::checkpoint::Checkpoint;
    use govern_core::ids::TreeSize;
    use govern_core::merkle::Frontier;
    let w = World::new();
    let signer = NoteSigner::new(ORIGIN, SigningKey::from_bytes(&[1; 32])).unwrap();
    let note = |events: &[&SignedEvent]| {
        let mut f = Frontier::new();
        let mut done = Vec::new();
        for e in events {
            f.push(e.leaf_hash(), &mut done);
        }
        Checkpoint {
            origin: ORIGIN.into(),
            size: TreeSize(events.len() as u64),
            root: f.root(),
            extensions: Vec::new(),
        }
        .sign(&signer)
        .unwrap()
    };
    let created = w.event("edge", "tenant.created", tenant(), RequestId::new_v7(), &[]);
    let open = || {
        govern_store::Replay::new(
            MemoryStorage::new(),
            ORIGIN,
            signer.verifier(),
            w.policy(),
            60_000,
            note(&[]).as_bytes(),
        )
        .unwrap()
    };
    // Twice in one batch, and once in each of two batches (a log that appended a re-sent
    // event instead of answering its receipt): both refused at the second copy.
    let mut replay = open();
    let err = replay
        .batch(
            &[created.clone(), created.clone()],
            note(&[&created, &created]).as_bytes(),
        )
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("holds this event already, at entry 0"),
        "{err}"
    );
    let mut replay = open();
    replay
        .batch(std::slice::from_ref(&created), note(&[&created]).as_bytes())
        .unwrap();
    let err = replay
        .batch(
            std::slice::from_ref(&created),
            note(&[&created, &created]).as_bytes(),
        )
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("holds this event already, at entry 0"),
        "{err}"
    );
}
