//! A fixed-size cache of tree node hashes in front of storage.
//!
//! Tree nodes never change once written, so a cached hash can't go stale; the only rule is
//! that a node enters the cache after the write that made it durable, never before (a batch
//! whose write fails is sequenced again with other hashes at the same positions). The cache
//! is direct-mapped and its size fixed, so memory stays flat however long the log grows.

use govern_core::ids::Hash;
use parking_lot::Mutex;

/// Slots in the node cache (each about 48 bytes: 3 MiB in all).
pub const NODE_CACHE_SLOTS: usize = 1 << 16;
/// Independent locks over the slots, so readers on several cores rarely meet.
const SHARDS: usize = 64;

const _: () = assert!(NODE_CACHE_SLOTS.is_multiple_of(SHARDS));

#[derive(Clone, Copy)]
struct Slot {
    level: u8,
    index: u64,
    hash: Hash,
}

pub(crate) struct NodeCache {
    shards: Vec<Mutex<Vec<Option<Slot>>>>,
}

impl NodeCache {
    pub(crate) fn new() -> Self {
        Self {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(vec![None; NODE_CACHE_SLOTS / SHARDS]))
                .collect(),
        }
    }

    fn place(level: u8, index: u64) -> (usize, usize) {
        // A cheap mix so that neighbouring indices at one level spread over shards.
        let h = (index ^ (u64::from(level) << 56)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let slot = usize::try_from(h >> 32).unwrap_or(0) % NODE_CACHE_SLOTS;
        (slot % SHARDS, slot / SHARDS)
    }

    pub(crate) fn get(&self, level: u8, index: u64) -> Option<Hash> {
        let (shard, i) = Self::place(level, index);
        let guard = self.shards[shard].lock();
        guard[i]
            .filter(|s| s.level == level && s.index == index)
            .map(|s| s.hash)
    }

    pub(crate) fn put(&self, level: u8, index: u64, hash: Hash) {
        let (shard, i) = Self::place(level, index);
        self.shards[shard].lock()[i] = Some(Slot { level, index, hash });
    }
}
