//! A write that reports failure may still have landed (a WAL record written before a failed
//! fsync is replayed on reopen). The sequencer must then continue after what storage holds,
//! never reuse the positions on the assumption that nothing landed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use ed25519_dalek::SigningKey;
use govern_admission::ProducerAllowList;
use govern_core::event::{Event, Kind, Producer, PublicKey, RequestId, Role, TenantId, Timestamp};
use govern_core::ids::LeafIndex;
use govern_core::merkle::{self, MemoryTree, NodeSource};
use govern_core::note::NoteSigner;
use govern_store::{
    AppendError, Batch, Log, LogConfig, MemoryStorage, Pairs, Storage, StorageError, SystemClock,
};

/// Applies every write, but reports the next one as failed when armed.
#[derive(Clone)]
struct LandsThenFails(MemoryStorage, Arc<AtomicBool>);

impl Storage for LandsThenFails {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        self.0.get(key)
    }
    fn write(&self, batch: Batch, sync: bool) -> Result<(), StorageError> {
        self.0.write(batch, sync)?;
        if self.1.swap(false, Ordering::SeqCst) {
            return Err(StorageError::Backend(
                "fsync failed after the record was written".into(),
            ));
        }
        Ok(())
    }
    fn scan(&self, start: &[u8], end: &[u8], limit: usize) -> Result<Pairs, StorageError> {
        self.0.scan(start, end, limit)
    }
}

#[test]
fn a_failed_write_that_landed_is_not_overwritten() {
    let key = SigningKey::from_bytes(&[5; 32]);
    let role = Role::new("edge").unwrap();
    let mut allow = ProducerAllowList::default();
    allow.insert(role.clone(), PublicKey::from(&key.verifying_key()));
    let arm = Arc::new(AtomicBool::new(false));
    let storage = LandsThenFails(MemoryStorage::new(), Arc::clone(&arm));
    let signer = NoteSigner::new("failed.test/log", SigningKey::from_bytes(&[6; 32])).unwrap();
    let log = Log::open(
        storage.clone(),
        signer,
        LogConfig::new("failed.test/log"),
        Arc::new(allow),
        Arc::new(SystemClock),
    )
    .unwrap();
    let event = |n: u64| {
        let mut body = serde_json::Map::new();
        body.insert("n".into(), n.into());
        let producer = Producer::new(role.clone(), &key.verifying_key());
        Event::new(
            Kind::new("test.failed").unwrap(),
            TenantId::SYSTEM,
            RequestId::new_v7(),
            producer,
            Timestamp::now(),
            body,
        )
        .sign(&key)
        .unwrap()
    };
    let mut tree = MemoryTree::new();
    for n in 0..3 {
        let ev = event(n);
        tree.push(ev.leaf_hash());
        assert_eq!(log.append_blocking(ev).unwrap().index, LeafIndex(n));
    }
    // This append is refused to its client, but its batch is in storage.
    arm.store(true, Ordering::SeqCst);
    let landed = event(3);
    tree.push(landed.leaf_hash());
    assert!(matches!(
        log.append_blocking(landed),
        Err(AppendError::Storage(_))
    ));
    // The next one goes after it, not over it.
    let next = event(4);
    tree.push(next.leaf_hash());
    let appended = log.append_blocking(next).unwrap();
    assert_eq!(appended.index, LeafIndex(4));
    assert_eq!(appended.checkpoint.root, tree.root());
    assert_eq!(log.root_at(tree.size()).unwrap(), tree.root());
    // Every stored entry is the one the tree says.
    for i in 0..5 {
        let stored = merkle::hash_leaf(&log.entry(LeafIndex(i)).unwrap());
        assert_eq!(stored.hash(), tree.node(0, i).unwrap(), "entry {i}");
    }
    let proof = log.inclusion_proof(LeafIndex(3), tree.size()).unwrap();
    assert_eq!(
        proof,
        merkle::inclusion_proof(&tree, LeafIndex(3), tree.size()).unwrap()
    );
}
