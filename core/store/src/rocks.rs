//! The production storage: RocksDB, with every acknowledged batch's WAL synced.

use std::path::Path;

use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamily, ColumnFamilyDescriptor, DB, DBCompressionType,
    Direction, IteratorMode, Options, ReadOptions, WriteOptions,
};

use crate::storage::{Batch, Pairs, Storage, StorageError};

/// The block cache of the default column family (entries, checkpoints), holding data, index
/// and filter blocks, so memory stays flat as the log grows.
pub const BLOCK_CACHE_BYTES: usize = 16 << 20;
/// The block cache of the tree-node column family: the larger one, since every proof reads
/// nodes at random while entries are read in whole tiles.
pub const NODE_BLOCK_CACHE_BYTES: usize = 64 << 20;
/// One memtable's size; at most [`WRITE_BUFFERS_MAX`] exist at once per column family.
pub const WRITE_BUFFER_BYTES: usize = 32 << 20;
/// Memtables kept before writes stall on a flush.
pub const WRITE_BUFFERS_MAX: i32 = 3;
/// Tree nodes (keys starting with `n`) live in a column family of their own: 32-byte values
/// read at random by every proof, stored uncompressed in small blocks so that a miss costs
/// one small read, not the decompression of a block shared with 1 KiB entries.
const NODES_CF: &str = "nodes";
const NODES_PREFIX: u8 = b'n';

/// RocksDB behind [`Storage`].
#[derive(Debug)]
pub struct RocksStorage {
    db: DB,
}

fn backend(e: rocksdb::Error) -> StorageError {
    StorageError::Backend(e.into_string())
}

fn table(cache_bytes: usize, block_bytes: usize) -> Result<BlockBasedOptions, StorageError> {
    let mut table = BlockBasedOptions::default();
    let cache = Cache::new_lru_cache(cache_bytes).map_err(backend)?;
    table.set_block_cache(&cache);
    table.set_block_size(block_bytes);
    table.set_cache_index_and_filter_blocks(true);
    table.set_pin_l0_filter_and_index_blocks_in_cache(true);
    table.set_bloom_filter(10.0, false);
    Ok(table)
}

impl RocksStorage {
    fn options() -> Result<(Options, Vec<ColumnFamilyDescriptor>), StorageError> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_block_based_table_factory(&table(BLOCK_CACHE_BYTES, 4 << 10)?);
        opts.set_write_buffer_size(WRITE_BUFFER_BYTES);
        opts.set_max_write_buffer_number(WRITE_BUFFERS_MAX);
        opts.set_max_background_jobs(2);
        opts.set_keep_log_file_num(4);
        let mut nodes = Options::default();
        nodes.set_block_based_table_factory(&table(NODE_BLOCK_CACHE_BYTES, 1 << 10)?);
        nodes.set_compression_type(DBCompressionType::None);
        nodes.set_write_buffer_size(WRITE_BUFFER_BYTES / 2);
        nodes.set_max_write_buffer_number(WRITE_BUFFERS_MAX);
        let cfs = vec![
            ColumnFamilyDescriptor::new(rocksdb::DEFAULT_COLUMN_FAMILY_NAME, opts.clone()),
            ColumnFamilyDescriptor::new(NODES_CF, nodes),
        ];
        Ok((opts, cfs))
    }

    /// Open (creating if needed) the store at `path`, taking RocksDB's lock on it.
    ///
    /// # Errors
    /// [`StorageError::Backend`] when RocksDB cannot open it (for example another process
    /// holds it).
    pub fn open(path: &Path) -> Result<Self, StorageError> {
        let (opts, cfs) = Self::options()?;
        DB::open_cf_descriptors(&opts, path, cfs)
            .map(|db| Self { db })
            .map_err(backend)
    }

    /// Open the store at `path` read-only, beside a node that may have it open.
    ///
    /// # Errors
    /// [`StorageError::Backend`] when RocksDB cannot open it.
    pub fn open_read_only(path: &Path) -> Result<Self, StorageError> {
        let (opts, cfs) = Self::options()?;
        DB::open_cf_descriptors_read_only(&opts, path, cfs, false)
            .map(|db| Self { db })
            .map_err(backend)
    }

    /// The column family a key lives in.
    fn cf(&self, key: &[u8]) -> Result<&ColumnFamily, StorageError> {
        let name = if key.first() == Some(&NODES_PREFIX) {
            NODES_CF
        } else {
            rocksdb::DEFAULT_COLUMN_FAMILY_NAME
        };
        self.db
            .cf_handle(name)
            .ok_or_else(|| StorageError::Backend(format!("column family {name} is missing")))
    }

    fn scan_cf(
        &self,
        cf: &ColumnFamily,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<Pairs, StorageError> {
        let mut ro = ReadOptions::default();
        ro.set_iterate_upper_bound(end.to_vec());
        let iter = self
            .db
            .iterator_cf_opt(cf, ro, IteratorMode::From(start, Direction::Forward));
        let mut out = Vec::new();
        for item in iter.take(limit) {
            let (k, v) = item.map_err(backend)?;
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }
}

impl Storage for RocksStorage {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        self.db.get_cf(self.cf(key)?, key).map_err(backend)
    }

    fn write(&self, batch: Batch, sync: bool) -> Result<(), StorageError> {
        let mut wb = rocksdb::WriteBatch::default();
        for (k, v) in &batch.puts {
            wb.put_cf(self.cf(k)?, k, v);
        }
        let mut wo = WriteOptions::default();
        wo.set_sync(sync);
        self.db.write_opt(wb, &wo).map_err(backend)
    }

    fn multi_get(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>, StorageError> {
        let with_cf = keys
            .iter()
            .map(|k| self.cf(k).map(|cf| (cf, k)))
            .collect::<Result<Vec<_>, _>>()?;
        self.db
            .multi_get_cf(with_cf)
            .into_iter()
            .map(|r| r.map_err(backend))
            .collect()
    }

    fn scan(&self, start: &[u8], end: &[u8], limit: usize) -> Result<Pairs, StorageError> {
        if start >= end {
            return Ok(Vec::new());
        }
        let (lo, hi): (&[u8], &[u8]) = (&[NODES_PREFIX], &[NODES_PREFIX + 1]);
        let nodes = self.cf(lo)?;
        let default = self.cf(b"")?;
        // The range's parts below, inside and above the nodes' key range, in key order.
        let mut out = Vec::new();
        let parts = [
            (default, start, end.min(lo)),
            (nodes, start.max(lo), end.min(hi)),
            (default, start.max(hi), end),
        ];
        for (cf, a, b) in parts {
            if a < b && out.len() < limit {
                out.extend(self.scan_cf(cf, a, b, limit - out.len())?);
            }
        }
        Ok(out)
    }
}
