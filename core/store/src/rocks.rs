//! The production storage: RocksDB, with every acknowledged batch's WAL synced.

use std::path::Path;

use rocksdb::{
    BlockBasedIndexType, BlockBasedOptions, Cache, ColumnFamily, ColumnFamilyDescriptor, DB,
    DBCompressionType, Direction, IteratorMode, Options, ReadOptions, WriteOptions,
};

use crate::storage::{Batch, Pairs, Storage, StorageError};

/// The block cache of the default column family (entries, checkpoints), holding data, index
/// and filter blocks, so memory stays flat as the log grows.
pub const BLOCK_CACHE_BYTES: usize = 16 << 20;
/// The block cache of the tree-node column family (tiles, the right edge, recent proofs).
pub const NODE_BLOCK_CACHE_BYTES: usize = 16 << 20;
/// The block cache of the stratum-blob column family: the largest, since random proofs read
/// one blob per eight tree levels (a million entries have 3,906 blobs of 16 KiB at level 0).
pub const STRATA_BLOCK_CACHE_BYTES: usize = 96 << 20;
/// One memtable's size; at most [`WRITE_BUFFERS_MAX`] exist at once per column family.
pub const WRITE_BUFFER_BYTES: usize = 32 << 20;
/// Memtables kept before writes stall on a flush.
pub const WRITE_BUFFERS_MAX: i32 = 3;
/// The memtable's whole-key Bloom filter, as a share of [`WRITE_BUFFER_BYTES`].
pub const MEMTABLE_BLOOM_RATIO: f64 = 0.02;
/// Tree nodes (keys starting with `n`) live in a column family of their own: 32-byte values
/// read at random by every proof, stored uncompressed in small blocks so that a miss costs
/// one small read, not the decompression of a block shared with 1 KiB entries.
const NODES_CF: &str = "nodes";
const NODES_PREFIX: u8 = b'n';
/// Stratum blobs (keys starting with `b`, see `strata.rs`): 16 KiB values, uncompressed.
const STRATA_CF: &str = "strata";
const STRATA_PREFIX: u8 = b'b';

/// RocksDB behind [`Storage`].
#[derive(Debug)]
pub struct RocksStorage {
    db: DB,
}

fn backend(e: rocksdb::Error) -> StorageError {
    StorageError::Backend(e.into_string())
}

fn locked(path: &Path, pid: Option<u32>) -> StorageError {
    StorageError::Locked {
        path: path.display().to_string(),
        pid,
    }
}

/// Whether another holder has the store's `LOCK` (RocksDB takes a POSIX record lock on it),
/// and which process when the system says: `Some(pid)` when locked. Read from
/// `/proc/locks` (Linux), which names each lock's process and the inode it is on: no
/// crate offers `F_GETLK` without `unsafe`, and this needs no lock attempt of its own.
fn lock_holder(path: &Path) -> Option<Option<u32>> {
    use std::os::unix::fs::MetadataExt as _;
    let meta = std::fs::metadata(path.join("LOCK")).ok()?;
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    let dev = meta.dev();
    let (major, minor) = (
        ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff),
        (dev & 0xff) | ((dev >> 12) & !0xff),
    );
    let id = format!("{major:02x}:{minor:02x}:{}", meta.ino());
    locks.lines().find_map(|line| {
        // `1: POSIX  ADVISORY  WRITE 1234 fd:01:5678 0 EOF`; a waiter's line has `->`.
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.get(1) == Some(&"->") || !fields.contains(&id.as_str()) {
            return None;
        }
        let at = fields.iter().position(|f| *f == id)?;
        Some(
            at.checked_sub(1)
                .and_then(|i| fields.get(i))
                .and_then(|p| p.parse::<u32>().ok()),
        )
    })
}

fn table(cache_bytes: usize, block_bytes: usize) -> Result<BlockBasedOptions, StorageError> {
    let mut table = BlockBasedOptions::default();
    let cache = Cache::new_lru_cache(cache_bytes).map_err(backend)?;
    table.set_block_cache(&cache);
    table.set_block_size(block_bytes);
    table.set_cache_index_and_filter_blocks(true);
    table.set_pin_l0_filter_and_index_blocks_in_cache(true);
    table.set_bloom_filter(10.0, false);
    // Partitioned indexes and filters: one index block per SST file grows with the file
    // (hundreds of KiB for a large one), larger than a cache shard, so it would be read,
    // decompressed and dropped on every lookup. Partitions are cached like data blocks; only
    // the small top level stays pinned.
    table.set_index_type(BlockBasedIndexType::TwoLevelIndexSearch);
    table.set_partition_filters(true);
    table.set_metadata_block_size(4096);
    table.set_pin_top_level_index_and_filter(true);
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
        // Every append looks its leaf hash up (is this event new?), and almost every answer
        // is "no": a whole-key Bloom filter on the memtable answers that without searching
        // it (MEMTABLE_BLOOM_RATIO of the write buffer, about 0.6 MiB each).
        opts.set_memtable_prefix_bloom_ratio(MEMTABLE_BLOOM_RATIO);
        opts.set_memtable_whole_key_filtering(true);
        opts.set_max_background_jobs(2);
        opts.set_keep_log_file_num(4);
        let mut nodes = Options::default();
        nodes.set_block_based_table_factory(&table(NODE_BLOCK_CACHE_BYTES, 1 << 10)?);
        nodes.set_compression_type(DBCompressionType::None);
        nodes.set_write_buffer_size(WRITE_BUFFER_BYTES / 2);
        nodes.set_max_write_buffer_number(WRITE_BUFFERS_MAX);
        let mut strata = Options::default();
        strata.set_block_based_table_factory(&table(STRATA_BLOCK_CACHE_BYTES, 16 << 10)?);
        strata.set_compression_type(DBCompressionType::None);
        strata.set_write_buffer_size(WRITE_BUFFER_BYTES / 4);
        strata.set_max_write_buffer_number(WRITE_BUFFERS_MAX);
        let cfs = vec![
            ColumnFamilyDescriptor::new(rocksdb::DEFAULT_COLUMN_FAMILY_NAME, opts.clone()),
            ColumnFamilyDescriptor::new(NODES_CF, nodes),
            ColumnFamilyDescriptor::new(STRATA_CF, strata),
        ];
        Ok((opts, cfs))
    }

    /// Open (creating if needed) the store at `path`, taking RocksDB's lock on it.
    ///
    /// # Errors
    /// [`StorageError::Backend`] when RocksDB cannot open it (for example another process
    /// holds it).
    pub fn open(path: &Path) -> Result<Self, StorageError> {
        if let Some(pid) = lock_holder(path) {
            return Err(locked(path, pid));
        }
        let (opts, cfs) = Self::options()?;
        DB::open_cf_descriptors(&opts, path, cfs)
            .map(|db| Self { db })
            .map_err(|e| {
                // Taken between the look above and the open: say so in words too.
                lock_holder(path).map_or_else(|| backend(e), |pid| locked(path, pid))
            })
    }

    /// Whether another holder has the store at `path` open for writing: `Some(pid)` when
    /// so (the holder's process id, when the system says). Takes no lock itself.
    #[must_use]
    pub fn in_use(path: &Path) -> Option<Option<u32>> {
        lock_holder(path)
    }

    /// Open the store at `path` read-only, beside a node that may have it open.
    ///
    /// # Errors
    /// [`StorageError::Backend`] when RocksDB cannot open it.
    pub fn open_read_only(path: &Path) -> Result<Self, StorageError> {
        // RocksDB would create the directory (and fail on its missing CURRENT): a reader
        // never creates anything.
        if !path.join("CURRENT").is_file() {
            return Err(StorageError::Missing {
                path: path.display().to_string(),
            });
        }
        let (mut opts, cfs) = Self::options()?;
        opts.create_if_missing(false);
        opts.create_missing_column_families(false);
        DB::open_cf_descriptors_read_only(&opts, path, cfs, false)
            .map(|db| Self { db })
            .map_err(backend)
    }

    /// The column family a key lives in.
    fn cf(&self, key: &[u8]) -> Result<&ColumnFamily, StorageError> {
        let name = match key.first() {
            Some(&NODES_PREFIX) => NODES_CF,
            Some(&STRATA_PREFIX) => STRATA_CF,
            _ => rocksdb::DEFAULT_COLUMN_FAMILY_NAME,
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

    fn write_bulk(&self, mut batch: Batch) -> Result<(), StorageError> {
        // In key order, the memtable's skip list reuses each insert's position for the next
        // (a stable sort: a later put of the same key still lands last).
        batch.puts.sort_by(|a, b| a.0.cmp(&b.0));
        let mut wb = rocksdb::WriteBatch::default();
        for (k, v) in &batch.puts {
            wb.put_cf(self.cf(k)?, k, v);
        }
        let mut wo = WriteOptions::default();
        wo.disable_wal(true);
        self.db.write_opt(wb, &wo).map_err(backend)
    }

    fn persist(&self) -> Result<(), StorageError> {
        // Bulk writes skipped the WAL: flush every column family's memtables to synced SST
        // files, then sync the WAL for everything else.
        for name in [rocksdb::DEFAULT_COLUMN_FAMILY_NAME, NODES_CF, STRATA_CF] {
            let cf = self
                .db
                .cf_handle(name)
                .ok_or_else(|| StorageError::Backend(format!("column family {name} is missing")))?;
            self.db.flush_cf(cf).map_err(backend)?;
        }
        self.db.flush_wal(true).map_err(backend)
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
        // The key space in order: default, strata (`b…`), default, nodes (`n…`), default.
        let cuts: [&[u8]; 4] = [
            &[STRATA_PREFIX],
            &[STRATA_PREFIX + 1],
            &[NODES_PREFIX],
            &[NODES_PREFIX + 1],
        ];
        let default = self.cf(b"")?;
        let families = [
            default,
            self.cf(cuts[0])?,
            default,
            self.cf(cuts[2])?,
            default,
        ];
        let mut out = Vec::new();
        for (n, cf) in families.into_iter().enumerate() {
            let lo = if n == 0 {
                start
            } else {
                start.max(cuts[n - 1])
            };
            let hi = if n == cuts.len() {
                end
            } else {
                end.min(cuts[n])
            };
            if lo < hi && out.len() < limit {
                out.extend(self.scan_cf(cf, lo, hi, limit - out.len())?);
            }
        }
        Ok(out)
    }
}
