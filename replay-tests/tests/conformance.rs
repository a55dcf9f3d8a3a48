//! The conformance suite against each store this repository has.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use govern_replay_tests::conformance::{goldens_replay, kv_contract};
use govern_store::{Batch, MemoryStorage, RocksStorage, Storage, StorageError};

fn rocks(dir: &tempfile::TempDir) -> impl Fn() -> RocksStorage + '_ {
    let n = std::sync::atomic::AtomicU64::new(0);
    move || {
        let i = n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        RocksStorage::open(&dir.path().join(format!("db{i}"))).unwrap()
    }
}

#[test]
fn memory_keeps_the_kv_contract() {
    kv_contract(MemoryStorage::new);
}

#[test]
fn rocks_keeps_the_kv_contract() {
    let dir = tempfile::tempdir().unwrap();
    kv_contract(rocks(&dir));
}

#[test]
fn goldens_replay_into_memory() {
    goldens_replay(MemoryStorage::new);
}

#[test]
fn goldens_replay_into_rocks() {
    let dir = tempfile::tempdir().unwrap();
    goldens_replay(rocks(&dir));
}

fn put(s: &impl Storage, pairs: &[(&[u8], &[u8])], sync: bool) {
    let mut b = Batch::new();
    for (k, v) in pairs {
        b.put(k.to_vec(), v.to_vec());
    }
    s.write(b, sync).unwrap();
}

fn pairs(rows: &[(&[u8], &[u8])]) -> Vec<(Vec<u8>, Vec<u8>)> {
    rows.iter().map(|(k, v)| (k.to_vec(), v.to_vec())).collect()
}

#[test]
fn rocks_keeps_synced_batches_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    {
        let s = govern_store::RocksStorage::open(&path).unwrap();
        put(&s, &[(b"a", b"1"), (b"b", b"2")], true);
        // A second handle on the same directory is refused (RocksDB's lock).
        assert!(govern_store::RocksStorage::open(&path).is_err());
    }
    let s = govern_store::RocksStorage::open(&path).unwrap();
    assert_eq!(
        s.scan(b"a", b"c", 10).unwrap(),
        pairs(&[(b"a", b"1"), (b"b", b"2")])
    );
}

#[test]
fn memory_write_on_a_dead_handle_applies_nothing() {
    let s = MemoryStorage::new();
    let booted = s.power_fail();
    let mut b = Batch::new();
    b.put(b"a".to_vec(), b"1".to_vec());
    b.put(b"b".to_vec(), b"2".to_vec());
    assert_eq!(s.write(b, true), Err(StorageError::Gone));
    assert_eq!(booted.scan(b"", b"\xff", 10).unwrap(), vec![]);
}
