//! The production storage: RocksDB, with every acknowledged batch's WAL synced.

use std::path::Path;

use rocksdb::{BlockBasedOptions, Cache, DB, Direction, IteratorMode, Options, ReadOptions, WriteOptions};

use crate::storage::{Batch, Storage, StorageError};

/// RocksDB's block cache, shared by data, index and filter blocks, so memory stays flat as
/// the log grows (index and filter blocks otherwise live outside any bound).
pub const BLOCK_CACHE_BYTES: usize = 64 << 20;
/// One memtable's size; at most [`WRITE_BUFFERS_MAX`] exist at once.
pub const WRITE_BUFFER_BYTES: usize = 32 << 20;
/// Memtables kept before writes stall on a flush.
pub const WRITE_BUFFERS_MAX: i32 = 3;

/// RocksDB behind [`Storage`].
#[derive(Debug)]
pub struct RocksStorage {
    db: DB,
}

fn backend(e: rocksdb::Error) -> StorageError {
    StorageError::Backend(e.into_string())
}

impl RocksStorage {
    fn options() -> Result<Options, StorageError> {
        let mut table = BlockBasedOptions::default();
        let cache = Cache::new_lru_cache(BLOCK_CACHE_BYTES).map_err(backend)?;
        table.set_block_cache(&cache);
        table.set_cache_index_and_filter_blocks(true);
        table.set_pin_l0_filter_and_index_blocks_in_cache(true);
        table.set_bloom_filter(10.0, false);
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.set_block_based_table_factory(&table);
        opts.set_write_buffer_size(WRITE_BUFFER_BYTES);
        opts.set_max_write_buffer_number(WRITE_BUFFERS_MAX);
        opts.set_max_background_jobs(2);
        opts.set_keep_log_file_num(4);
        Ok(opts)
    }

    /// Open (creating if needed) the store at `path`, taking RocksDB's lock on it.
    ///
    /// # Errors
    /// [`StorageError::Backend`] when RocksDB cannot open it (for example another process
    /// holds it).
    pub fn open(path: &Path) -> Result<Self, StorageError> {
        DB::open(&Self::options()?, path).map(|db| Self { db }).map_err(backend)
    }

    /// Open the store at `path` read-only, beside a node that may have it open.
    ///
    /// # Errors
    /// [`StorageError::Backend`] when RocksDB cannot open it.
    pub fn open_read_only(path: &Path) -> Result<Self, StorageError> {
        DB::open_for_read_only(&Self::options()?, path, false).map(|db| Self { db }).map_err(backend)
    }
}

impl Storage for RocksStorage {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        self.db.get(key).map_err(backend)
    }

    fn write(&self, batch: Batch, sync: bool) -> Result<(), StorageError> {
        let mut wb = rocksdb::WriteBatch::default();
        for (k, v) in &batch.puts {
            wb.put(k, v);
        }
        let mut wo = WriteOptions::default();
        wo.set_sync(sync);
        self.db.write_opt(wb, &wo).map_err(backend)
    }

    fn multi_get(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>, StorageError> {
        self.db.multi_get(keys).into_iter().map(|r| r.map_err(backend)).collect()
    }

    fn scan(&self, start: &[u8], end: &[u8], limit: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StorageError> {
        let mut ro = ReadOptions::default();
        ro.set_iterate_upper_bound(end.to_vec());
        let iter = self.db.iterator_opt(IteratorMode::From(start, Direction::Forward), ro);
        let mut out = Vec::new();
        for item in iter.take(limit) {
            let (k, v) = item.map_err(backend)?;
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }
}
