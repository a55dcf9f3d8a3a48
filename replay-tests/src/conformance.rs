//! The storage conformance suite: the contract of [`govern_store::Storage`] (see
//! `core/store/src/storage.rs`) that every store must keep, as functions a store's tests
//! call with a fresh instance ([`kv_contract`]), and the golden logs replayed into it
//! ([`crate::replay_golden`]), after which it must serve every tile of each export byte for
//! byte and reach the recorded roots. `tests/conformance.rs` runs it against
//! [`govern_store::MemoryStorage`] and [`govern_store::RocksStorage`]; a new store adds one
//! line there.
#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

use govern_store::{Batch, Storage};

/// Every key-value rule, each on a fresh store from `fresh`.
pub fn kv_contract<S: Storage>(fresh: impl Fn() -> S) {
    missing_key_is_none(&fresh());
    batch_is_visible_at_once_after_write(&fresh());
    scan_is_in_byte_order_within_bounds_and_limit(&fresh());
    overwrite_is_seen(&fresh());
}

/// Every golden replays into a fresh store from `fresh` and reaches its recorded size, tree
/// root and state root.
pub fn goldens_replay<S: Storage>(fresh: impl Fn() -> S) {
    let goldens = crate::goldens();
    assert!(!goldens.is_empty(), "no goldens found");
    for golden in goldens {
        let reached = crate::replay_golden(&golden, fresh())
            .unwrap_or_else(|e| panic!("golden {}: {e}", golden.name));
        let r = &golden.recorded;
        assert_eq!(
            Some(reached.size),
            r["size"].as_u64(),
            "golden {}: size",
            golden.name
        );
        assert_eq!(
            Some(reached.root.as_str()),
            r["root"].as_str(),
            "golden {}: root",
            golden.name
        );
        assert_eq!(
            Some(reached.state_root.as_str()),
            r["state_root"].as_str(),
            "golden {}: state root",
            golden.name
        );
    }
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

pub fn missing_key_is_none(s: &impl Storage) {
    assert_eq!(s.get(b"nothing").unwrap(), None);
    put(s, &[(b"k", b"v")], true);
    assert_eq!(s.get(b"k").unwrap(), Some(b"v".to_vec()));
    assert_eq!(s.get(b"k\0").unwrap(), None);
    assert_eq!(s.get(b"").unwrap(), None);
}

pub fn batch_is_visible_at_once_after_write(s: &impl Storage) {
    for sync in [true, false] {
        let tag = if sync { b's' } else { b'u' };
        let mut b = Batch::new();
        for i in 0u64..100 {
            let mut k = vec![tag];
            k.extend_from_slice(&i.to_be_bytes());
            b.put(k, i.to_le_bytes().to_vec());
        }
        assert_eq!(b.len(), 100);
        s.write(b, sync).unwrap();
        for i in 0u64..100 {
            let mut k = vec![tag];
            k.extend_from_slice(&i.to_be_bytes());
            assert_eq!(
                s.get(&k).unwrap(),
                Some(i.to_le_bytes().to_vec()),
                "sync {sync}, key {i}"
            );
        }
        let rows = s.scan(&[tag], &[tag + 1], usize::MAX).unwrap();
        assert_eq!(rows.len(), 100, "sync {sync}");
    }
    // An empty batch is fine and changes nothing.
    s.write(Batch::new(), true).unwrap();
    assert_eq!(s.scan(b"s", b"t", usize::MAX).unwrap().len(), 100);
}

pub fn scan_is_in_byte_order_within_bounds_and_limit(s: &impl Storage) {
    // Written out of order, in two batches, with bytes above 0x7f (unsigned order).
    put(
        s,
        &[(b"n\xff", b"5"), (b"n\x01\x00", b"2"), (b"n", b"0")],
        true,
    );
    put(
        s,
        &[
            (b"n\x80", b"4"),
            (b"n\x01", b"1"),
            (b"n\x02", b"3"),
            (b"m\xff", b"x"),
            (b"o", b"y"),
        ],
        false,
    );
    let all = pairs(&[
        (b"n", b"0"),
        (b"n\x01", b"1"),
        (b"n\x01\x00", b"2"),
        (b"n\x02", b"3"),
        (b"n\x80", b"4"),
        (b"n\xff", b"5"),
    ]);
    assert_eq!(s.scan(b"n", b"o", usize::MAX).unwrap(), all);
    // start is inclusive, end exclusive.
    assert_eq!(
        s.scan(b"n\x01", b"n\x02", usize::MAX).unwrap(),
        all[1..3].to_vec()
    );
    assert_eq!(
        s.scan(b"n\x01\x00", b"n\x80", usize::MAX).unwrap(),
        all[2..4].to_vec()
    );
    // A start between keys begins at the next key.
    assert_eq!(
        s.scan(b"n\x00", b"n\x02", usize::MAX).unwrap(),
        all[1..3].to_vec()
    );
    // The limit keeps the first ones.
    assert_eq!(s.scan(b"n", b"o", 2).unwrap(), all[..2].to_vec());
    assert_eq!(s.scan(b"n", b"o", 6).unwrap(), all);
    assert_eq!(s.scan(b"n", b"o", 0).unwrap(), vec![]);
    // Empty and inverted ranges.
    assert_eq!(s.scan(b"n\x01", b"n\x01", usize::MAX).unwrap(), vec![]);
    assert_eq!(s.scan(b"n\x03", b"n\x7f", usize::MAX).unwrap(), vec![]);
    assert_eq!(s.scan(b"n\x80", b"n\x01", usize::MAX).unwrap(), vec![]);
    // Neighbours outside the range stay outside.
    assert_eq!(s.scan(b"m", b"p", usize::MAX).unwrap().len(), 8);
}

pub fn overwrite_is_seen(s: &impl Storage) {
    put(s, &[(b"w", b"old")], true);
    put(s, &[(b"w", b"new")], true);
    assert_eq!(s.get(b"w").unwrap(), Some(b"new".to_vec()));
    assert_eq!(s.scan(b"w", b"x", 10).unwrap(), pairs(&[(b"w", b"new")]));
}
