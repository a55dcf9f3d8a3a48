//! Stratum blobs: proofs read through them equal proofs from an in-memory tree, at sizes
//! that complete level-0 tiles and the first level-8 tile (65,536 leaves), with the node
//! cache warm and after a reopen with it cold.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use ed25519_dalek::SigningKey;
use govern_admission::ProducerAllowList;
use govern_core::event::{Event, Kind, Producer, PublicKey, RequestId, Role, TenantId, Timestamp};
use govern_core::ids::{LeafIndex, TreeSize};
use govern_core::merkle::{self, MemoryTree};
use govern_core::note::NoteSigner;
use govern_store::{
    LogConfig, LogReader, MemoryStorage, RocksStorage, STRATUM_BYTES, Storage, SystemClock,
};
use rand::{Rng, SeedableRng, rngs::StdRng};

const ORIGIN: &str = "strata.test/log";

fn append_many<S: Storage + Clone>(storage: S, count: u64) -> MemoryTree {
    let key = SigningKey::from_bytes(&[9; 32]);
    let role = Role::new("edge").unwrap();
    let mut allow = ProducerAllowList::default();
    allow.insert(role.clone(), PublicKey::from(&key.verifying_key()));
    let signer = NoteSigner::new(ORIGIN, SigningKey::from_bytes(&[1; 32])).unwrap();
    let log = govern_store::Log::open(
        storage,
        signer,
        LogConfig::new(ORIGIN),
        Arc::new(allow),
        Arc::new(SystemClock),
    )
    .unwrap();
    let mut tree = MemoryTree::new();
    let mut waiting = Vec::new();
    for n in 0..count {
        let mut body = serde_json::Map::new();
        body.insert("n".into(), n.into());
        let ev = Event {
            v: 1,
            kind: Kind::new("test.strata").unwrap(),
            tenant: TenantId::SYSTEM,
            request: RequestId::new_v7(),
            parents: vec![],
            producer: Producer {
                role: role.clone(),
                key: PublicKey::from(&key.verifying_key()),
            },
            attestation: None,
            time: Timestamp::now(),
            body,
            sealed: None,
            sig: None,
        }
        .sign(&key)
        .unwrap();
        tree.push(ev.leaf_hash());
        waiting.push((n, log.submit(ev).unwrap()));
        if waiting.len() == 4096 {
            for (n, rx) in waiting.drain(..) {
                assert_eq!(rx.blocking_recv().unwrap().unwrap().index, LeafIndex(n));
            }
        }
    }
    for (n, rx) in waiting {
        assert_eq!(rx.blocking_recv().unwrap().unwrap().index, LeafIndex(n));
    }
    tree
}

fn check_proofs<S: Storage>(reader: &LogReader<S>, tree: &MemoryTree, rng: &mut StdRng) {
    let size = reader.latest().size;
    assert_eq!(size, tree.size());
    let mut indices: Vec<u64> = (0..400).map(|_| rng.gen_range(0..size.0)).collect();
    indices.extend([0, 255, 256, 65_535.min(size.0 - 1), size.0 - 1]);
    for i in indices {
        let got = reader.inclusion_proof(LeafIndex(i), size).unwrap();
        let want = merkle::inclusion_proof(tree, LeafIndex(i), size).unwrap();
        assert_eq!(got, want, "proof of {i} at {size}");
    }
    // At an older size too: blobs are read whatever size the proof is for.
    let old = TreeSize(size.0 * 2 / 3);
    for i in [0, 300, old.0 - 1] {
        let got = reader.inclusion_proof(LeafIndex(i), old).unwrap();
        assert_eq!(
            got,
            merkle::inclusion_proof(tree, LeafIndex(i), old).unwrap(),
            "proof of {i} at {old}"
        );
    }
}

fn blobs<S: Storage>(storage: &S) -> Vec<(Vec<u8>, Vec<u8>)> {
    storage.scan(b"b", b"c", usize::MAX).unwrap()
}

#[test]
fn proofs_through_blobs_equal_the_memory_tree_past_the_first_level_8_tile() {
    let storage = MemoryStorage::new();
    let count = 65_536 + 700;
    let tree = append_many(storage.clone(), count);
    // 258 level-0 tiles are complete (256 under the first level-8 tile, 2 after), plus the
    // stratum-1 blob of the first level-8 tile.
    let stored = blobs(&storage);
    assert_eq!(stored.len(), 258 + 1);
    assert!(stored.iter().all(|(_, v)| v.len() == STRATUM_BYTES));
    let reader = LogReader::open(storage.clone()).unwrap();
    check_proofs(&reader, &tree, &mut StdRng::seed_from_u64(7));
}

#[test]
fn a_corrupt_blob_is_reported_not_served() {
    let storage = MemoryStorage::new();
    let tree = append_many(storage.clone(), 600);
    let (key, _) = blobs(&storage).into_iter().next().unwrap();
    storage.corrupt(&key, vec![0; 100]);
    let reader = LogReader::open(storage.clone()).unwrap();
    let err = reader
        .inclusion_proof(LeafIndex(5), tree.size())
        .unwrap_err();
    assert!(err.to_string().contains("stratum 0 tile 0"), "{err}");
}

#[test]
fn rocksdb_serves_blob_proofs_after_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let tree = {
        let storage = Arc::new(RocksStorage::open(&path).unwrap());
        append_many(SharedRocks(storage), 2_000)
    };
    let storage = RocksStorage::open(&path).unwrap();
    assert_eq!(blobs(&storage).len(), 7);
    let reader = LogReader::open(storage).unwrap();
    check_proofs(&reader, &tree, &mut StdRng::seed_from_u64(8));
}

/// RocksStorage is not Clone; share one between the log and the test.
#[derive(Clone)]
struct SharedRocks(Arc<RocksStorage>);

impl Storage for SharedRocks {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, govern_store::StorageError> {
        self.0.get(key)
    }
    fn write(
        &self,
        batch: govern_store::Batch,
        sync: bool,
    ) -> Result<(), govern_store::StorageError> {
        self.0.write(batch, sync)
    }
    fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<govern_store::Pairs, govern_store::StorageError> {
        self.0.scan(start, end, limit)
    }
    fn multi_get(
        &self,
        keys: &[Vec<u8>],
    ) -> Result<Vec<Option<Vec<u8>>>, govern_store::StorageError> {
        self.0.multi_get(keys)
    }
}
