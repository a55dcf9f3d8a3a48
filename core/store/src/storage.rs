//! The small trait the log is stored behind, and its two implementations' contract.
//!
//! Correctness rules every implementation must keep (the conformance suite in
//! `replay-tests/` runs against each):
//! - `write` applies the whole batch or none of it, and later reads see it at once.
//! - A `write` with `sync = true` returns only once the batch survives a power failure.
//!   A batch written without sync may be lost on power failure, and then so may every
//!   batch written after it; a synced batch is never lost.
//! - `scan` returns keys in byte order, within `[start, end)`, at most `limit` of them.

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::Mutex;

pub use govern_core::append::StorageError;

/// Key-value pairs in key order, as [`Storage::scan`] returns them.
pub type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// Puts to apply atomically.
#[derive(Debug, Default, Clone)]
pub struct Batch {
    pub(crate) puts: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Batch {
    /// An empty batch.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }
    /// Add a put.
    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.puts.push((key, value));
    }
    /// Number of puts.
    #[must_use]
    pub fn len(&self) -> usize {
        self.puts.len()
    }
    /// Whether it has no puts.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.puts.is_empty()
    }
    /// The puts, in the order they were made (a later put of a key wins): what a store
    /// outside this crate writes.
    #[must_use]
    pub fn puts(&self) -> &[(Vec<u8>, Vec<u8>)] {
        &self.puts
    }
}

/// Key-value storage with atomic, optionally synced, batches.
pub trait Storage: Send + Sync + 'static {
    /// The value at `key`.
    ///
    /// # Errors
    /// [`StorageError`] when the store fails.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError>;
    /// Apply `batch` atomically; with `sync`, durably before returning.
    ///
    /// # Errors
    /// [`StorageError`] when the store fails; then nothing of the batch is applied.
    fn write(&self, batch: Batch, sync: bool) -> Result<(), StorageError>;
    /// Up to `limit` pairs with `start <= key < end`, in key order.
    ///
    /// # Errors
    /// [`StorageError`] when the store fails.
    fn scan(&self, start: &[u8], end: &[u8], limit: usize) -> Result<Pairs, StorageError>;
    /// The values at `keys`, in order; a store may answer them together, faster than one
    /// [`Storage::get`] each.
    ///
    /// # Errors
    /// [`StorageError`] when the store fails.
    fn multi_get(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>, StorageError> {
        keys.iter().map(|k| self.get(k)).collect()
    }
    /// Apply `batch` atomically for bulk loading (a replay into a fresh store): a store may
    /// skip its write-ahead log, so nothing of it need survive a crash until
    /// [`Storage::persist`] returns.
    ///
    /// # Errors
    /// [`StorageError`] when the store fails.
    fn write_bulk(&self, batch: Batch) -> Result<(), StorageError> {
        self.write(batch, false)
    }
    /// Make everything written so far durable, including [`Storage::write_bulk`]s.
    ///
    /// # Errors
    /// [`StorageError`] when the store fails.
    fn persist(&self) -> Result<(), StorageError> {
        self.write(Batch::new(), true)
    }
}

/// In-memory storage that models a power failure: reads see every write (like the OS page
/// cache), but [`MemoryStorage::power_fail`] keeps only what was written with `sync`, and
/// every handle from before the failure stops working, as the process it belonged to would.
///
/// It exists to test where durability is decided: killing a process keeps the page cache,
/// so only this can show that an acknowledged append never depended on an unsynced write.
#[derive(Debug, Clone, Default)]
pub struct MemoryStorage {
    shared: Arc<Mutex<MemoryState>>,
    epoch: u64,
}

#[derive(Debug, Default)]
struct MemoryState {
    durable: BTreeMap<Vec<u8>, Vec<u8>>,
    visible: BTreeMap<Vec<u8>, Vec<u8>>,
    epoch: u64,
    unsynced_batches: u64,
}

impl MemoryStorage {
    /// Empty storage.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Lose every write not yet synced; handles from before stop working. Returns a handle
    /// for the next "boot".
    #[must_use]
    pub fn power_fail(&self) -> MemoryStorage {
        let mut s = self.shared.lock();
        s.visible = s.durable.clone();
        s.epoch += 1;
        s.unsynced_batches = 0;
        MemoryStorage {
            shared: Arc::clone(&self.shared),
            epoch: s.epoch,
        }
    }

    /// Batches written without sync since the last sync (or power failure).
    #[must_use]
    pub fn unsynced_batches(&self) -> u64 {
        self.shared.lock().unsynced_batches
    }

    /// Overwrite a value as a disk fault would, bypassing the log (tests of corruption).
    pub fn corrupt(&self, key: &[u8], value: Vec<u8>) {
        let mut s = self.shared.lock();
        s.visible.insert(key.to_vec(), value.clone());
        s.durable.insert(key.to_vec(), value);
    }

    fn live(&self, s: &MemoryState) -> Result<(), StorageError> {
        if s.epoch == self.epoch {
            Ok(())
        } else {
            Err(StorageError::Gone)
        }
    }
}

impl Storage for MemoryStorage {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        let s = self.shared.lock();
        self.live(&s)?;
        Ok(s.visible.get(key).cloned())
    }

    fn write(&self, batch: Batch, sync: bool) -> Result<(), StorageError> {
        let mut s = self.shared.lock();
        self.live(&s)?;
        for (k, v) in batch.puts {
            s.visible.insert(k, v);
        }
        if sync {
            // A sync makes everything written so far durable, as an fsync of the WAL does.
            s.durable = s.visible.clone();
            s.unsynced_batches = 0;
        } else {
            s.unsynced_batches += 1;
        }
        Ok(())
    }

    fn scan(&self, start: &[u8], end: &[u8], limit: usize) -> Result<Pairs, StorageError> {
        let s = self.shared.lock();
        self.live(&s)?;
        if start >= end {
            return Ok(Vec::new());
        }
        Ok(s.visible
            .range(start.to_vec()..end.to_vec())
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }
}
