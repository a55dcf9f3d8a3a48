//! The conformance suite against each store this repository has.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use govern_replay_tests::conformance::{goldens_replay, kv_contract};
use govern_replay_tests::postgres::TestPostgres;
use govern_store::{Batch, MemoryStorage, RocksStorage, Storage, StorageError};
use govern_store_postgres::PgStorage;

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

/// PostgreSQL: a throwaway server (Debian's binaries), a fresh database per store.
fn postgres(server: &TestPostgres) -> impl Fn() -> PgStorage + '_ {
    move || PgStorage::connect(&server.database().unwrap()).unwrap()
}

#[test]
fn postgres_keeps_the_kv_contract() {
    let server = TestPostgres::start().unwrap();
    kv_contract(postgres(&server));
}

#[test]
fn goldens_replay_into_postgres() {
    let server = TestPostgres::start().unwrap();
    goldens_replay(postgres(&server));
}

/// A synced batch is there after the store is dropped and the database reopened; the schema
/// is migrated once and recorded; a database whose schema is newer than this build's is
/// refused.
#[test]
fn postgres_keeps_synced_batches_and_its_schema_version() {
    let server = TestPostgres::start().unwrap();
    let url = server.database().unwrap();
    {
        let s = PgStorage::connect(&url).unwrap();
        put(&s, &[(b"e1", b"one"), (b"e2", b"two")], true);
        put(&s, &[(b"e1", b"uno")], true);
    }
    let s = PgStorage::connect(&url).unwrap();
    assert_eq!(s.get(b"e1").unwrap().as_deref(), Some(&b"uno"[..]));
    assert_eq!(
        s.scan(b"e", b"f", 10).unwrap(),
        pairs(&[(b"e1", b"uno"), (b"e2", b"two")])
    );
    drop(s);
    let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let versions: Vec<i32> = c
        .query("SELECT version FROM govern_schema ORDER BY version", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(versions, [1, 2, 3, 4]);
    // The views name what the log's keys hold: an entry at index 5, a checkpoint of size 6.
    {
        let s = PgStorage::connect(&url).unwrap();
        let mut entry = vec![b'e'];
        entry.extend_from_slice(&5u64.to_be_bytes());
        let mut cp = vec![b'c'];
        cp.extend_from_slice(&6u64.to_be_bytes());
        put(&s, &[(&entry, b"{}"), (&cp, b"note\n")], true);
    }
    let rows: Vec<(i64, Vec<u8>)> = c
        .query(
            "SELECT index, leaf_data FROM govern_entries WHERE index = 5",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(rows, [(5, b"{}".to_vec())]);
    let note: String = c
        .query_one("SELECT note FROM govern_checkpoints WHERE size = 6", &[])
        .unwrap()
        .get(0);
    assert_eq!(note, "note\n");
    c.execute("INSERT INTO govern_schema (version) VALUES (99)", &[])
        .unwrap();
    let refused = PgStorage::connect(&url).unwrap_err().to_string();
    assert!(
        refused.contains("version 99, newer than this build's 4"),
        "{refused}"
    );
}

/// One writer at a time: a store opened to write takes the log over, and from then on the
/// writer it deposed writes nothing (its batch fails whole, naming both epochs); a reader
/// writes nothing at all.
#[test]
fn a_deposed_postgres_writer_writes_nothing() {
    let server = TestPostgres::start().unwrap();
    let url = server.database().unwrap();
    let a = PgStorage::connect(&url).unwrap();
    put(&a, &[(b"k1", b"a")], true);
    let b = PgStorage::connect(&url).unwrap();
    assert_eq!(b.epoch(), a.epoch().map(|e| e + 1));
    let mut late = Batch::new();
    late.put(b"k1".to_vec(), b"stale".to_vec());
    late.put(b"k2".to_vec(), b"stale".to_vec());
    let refused = a.write(late, true).unwrap_err();
    assert!(
        matches!(&refused, StorageError::Deposed(why) if why.contains(&format!("epoch {}", b.epoch().unwrap()))),
        "{refused}"
    );
    assert_eq!(b.get(b"k1").unwrap().as_deref(), Some(&b"a"[..]));
    assert_eq!(b.get(b"k2").unwrap(), None);
    put(&b, &[(b"k2", b"b")], true);
    let reader = PgStorage::connect_reader(&url).unwrap();
    assert_eq!(reader.epoch(), None);
    assert_eq!(
        reader.scan(b"k", b"l", 10).unwrap(),
        pairs(&[(b"k1", b"a"), (b"k2", b"b")])
    );
    let mut nope = Batch::new();
    nope.put(b"k3".to_vec(), b"r".to_vec());
    assert!(reader.write(nope, true).is_err());
    // Taking the log over did not disturb the writer that took it.
    put(&b, &[(b"k3", b"b")], true);
    assert_eq!(b.get(b"k3").unwrap().as_deref(), Some(&b"b"[..]));
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

/// The sequencer's lease: one holder at a time, renewed by its holder, taken by another only
/// once released or expired (by the database's clock), each change of holder a new term.
#[test]
fn the_postgres_lease_has_one_holder_until_it_expires() {
    use govern_store_postgres::{Lease, PgLease};
    use std::time::Duration;
    let server = TestPostgres::start().unwrap();
    let url = server.database().unwrap();
    let lease = PgLease::connect(&url).unwrap();
    assert_eq!(
        lease.current().unwrap(),
        None,
        "a new database has no holder"
    );
    let long = Duration::from_secs(60);
    let first = lease.claim("a", "http://a", long).unwrap().unwrap();
    assert_eq!(lease.claim("b", "http://b", long).unwrap(), None);
    assert_eq!(
        lease.claim("a", "http://a", long).unwrap(),
        Some(first),
        "a renewal keeps the term"
    );
    assert_eq!(
        lease.current().unwrap(),
        Some(Lease {
            holder: "a".into(),
            url: "http://a".into(),
            term: first
        })
    );
    lease.release("b").unwrap();
    assert_eq!(
        lease.claim("b", "http://b", long).unwrap(),
        None,
        "only its holder releases it"
    );
    lease.release("a").unwrap();
    assert_eq!(lease.current().unwrap(), None);
    let second = lease
        .claim("b", "http://b", Duration::from_secs(2))
        .unwrap()
        .unwrap();
    assert_eq!(second, first + 1);
    assert_eq!(lease.claim("a", "http://a", long).unwrap(), None);
    // Past its time the lease is free, though its holder never gave it up.
    std::thread::sleep(Duration::from_millis(2_500));
    assert_eq!(lease.current().unwrap(), None);
    assert_eq!(
        lease.claim("a", "http://a", long).unwrap(),
        Some(second + 1)
    );
    assert_eq!(lease.claim("b", "http://b", long).unwrap(), None);
}

/// The edge's passkeys in PostgreSQL: a credential is claimed once, saved and removed by the
/// writer only; once another writer took the log over, the deposed one changes nothing.
#[test]
fn postgres_passkeys_are_claimed_once_and_written_by_the_writer_only() {
    use govern_store_postgres::PgPasskeys;
    let server = TestPostgres::start().unwrap();
    let url = server.database().unwrap();
    let writer = PgStorage::connect(&url).unwrap();
    let store = PgPasskeys::connect(&url, writer.epoch().unwrap()).unwrap();
    assert_eq!(store.load("t", "c").unwrap(), None);
    assert!(store.claim("t", "c", b"one").unwrap());
    assert!(!store.claim("t", "c", b"two").unwrap(), "claimed once");
    assert!(
        store.claim("u", "c", b"other tenant").unwrap(),
        "per tenant"
    );
    assert_eq!(store.load("t", "c").unwrap().as_deref(), Some(&b"one"[..]));
    store.save("t", "c", b"counter 2").unwrap();
    assert_eq!(
        store.load("t", "c").unwrap().as_deref(),
        Some(&b"counter 2"[..])
    );
    store.remove("u", "c").unwrap();
    assert_eq!(store.load("u", "c").unwrap(), None);
    let next = PgStorage::connect(&url).unwrap();
    for refused in [
        store.save("t", "c", b"late").map(|_| ()),
        store.claim("t", "d", b"late").map(|_| ()),
        store.remove("t", "c"),
    ] {
        assert!(
            matches!(refused, Err(StorageError::Deposed(_))),
            "{refused:?}"
        );
    }
    assert_eq!(
        store.load("t", "c").unwrap().as_deref(),
        Some(&b"counter 2"[..])
    );
    assert_eq!(store.load("t", "d").unwrap(), None);
    let taken = PgPasskeys::connect(&url, next.epoch().unwrap()).unwrap();
    taken.save("t", "c", b"counter 3").unwrap();
    assert_eq!(
        store.load("t", "c").unwrap().as_deref(),
        Some(&b"counter 3"[..])
    );
}
