//! The sequencer and the reads.
//!
//! Appends queue (bounded: a full queue is [`AppendError::Pushback`]). One thread takes a
//! batch (bounded in count and wait), checks what needs the log's state and clock, assigns
//! indices, extends the tree's right edge, and writes the entries, every newly complete
//! tree node, and a checkpoint signed over the new size in one synced write. Only then is
//! each append answered. The thread holds the right edge (at most 64 hashes) and nothing
//! else, so memory does not grow with the log.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use govern_core::checkpoint::Checkpoint;
use govern_core::event::{
    SignedEvent, Timestamp, check_time,
};
use govern_core::ids::{Hash, LeafHash, LeafIndex, RootHash, TreeSize};
use govern_core::merkle::{self, Frontier, NodeSource, ProofError};
use govern_core::note::NoteSigner;
use govern_core::tiles::{TILE_HEIGHT, TILE_WIDTH, Tile};
use parking_lot::RwLock;
use tokio::sync::oneshot;

use crate::cache::NodeCache;
use crate::keys;
use crate::storage::{Batch, Storage};
use govern_core::append::{AppendError, AppendPolicy, Clock, LogView, NONCE_WINDOW_CHECKPOINTS, ParentInfo, StorageError};
use crate::strata;

/// The most events the sequencer writes in one batch (one WAL sync, one checkpoint).
pub const BATCH_EVENTS_MAX: usize = 1024;
/// How long the sequencer waits for more events once a batch has begun and the queue is
/// empty. Under load the queue refills during each sync, so batches fill without waiting.
pub const BATCH_WAIT_MS: u64 = 1;
/// The most appends waiting for the sequencer; one more is refused with pushback.
pub const QUEUE_EVENTS_MAX: usize = 16 * BATCH_EVENTS_MAX;
pub use govern_core::append::TIME_SKEW_MS;
/// What a client refused with pushback is told to wait.
pub const PUSHBACK_RETRY_AFTER_S: u64 = 1;

/// How often (in entries) the sequencer snapshots the append policy's state, so a restart
/// replays only the tracked entries after the snapshot. Writing one serializes the whole
/// state on the sequencer's thread (tens of milliseconds at 100k tenant events), so not
/// often. A snapshot only shortens a restart: it is used only if the size it names is the
/// log's, the log's root at that size is the one it names and its checksum holds (so a
/// damaged or foreign one falls back to a replay from zero), and `govern replay` never reads
/// it: a replay from zero must reach the state root a resumed node reports. It is not
/// re-derived at restart, so it defends against damage, not against whoever can write the
/// store (who could rewrite the node's view of the log in other ways; the log's checkpoints
/// and a replay catch that).
pub const SNAPSHOT_EVERY: u64 = 10_000;

use govern_core::kinds::is_tracked;

const _: () = assert!(QUEUE_EVENTS_MAX >= BATCH_EVENTS_MAX);
const _: () = assert!(BATCH_WAIT_MS < 1_000);

/// Bounds of the sequencer and the log's identity.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// The checkpoint origin line.
    pub origin: String,
    /// See [`BATCH_EVENTS_MAX`].
    pub batch_events_max: usize,
    /// See [`BATCH_WAIT_MS`].
    pub batch_wait_ms: u64,
    /// See [`QUEUE_EVENTS_MAX`].
    pub queue_events_max: usize,
    /// See [`TIME_SKEW_MS`].
    pub time_skew_ms: i64,
    /// How far past its anchor a user action may land, for the node's policy: see
    /// [`govern_core::append::ANCHOR_DISTANCE_MAX`].
    pub anchor_distance_max: u64,
    /// Snapshot the append policy's state every this many entries (0: never). See
    /// [`SNAPSHOT_EVERY`].
    pub snapshot_every: u64,
}

impl LogConfig {
    /// The named defaults, for `origin`.
    #[must_use]
    pub fn new(origin: impl Into<String>) -> Self {
        Self {
            origin: origin.into(),
            batch_events_max: BATCH_EVENTS_MAX,
            batch_wait_ms: BATCH_WAIT_MS,
            queue_events_max: QUEUE_EVENTS_MAX,
            time_skew_ms: TIME_SKEW_MS,
            anchor_distance_max: govern_core::append::ANCHOR_DISTANCE_MAX,
            snapshot_every: SNAPSHOT_EVERY,
        }
    }
}

/// The operating system's randomness, for the node's roles ([`govern_core::append::Entropy`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct OsEntropy;

impl govern_core::append::Entropy for OsEntropy {
    fn fill(&self, buf: &mut [u8]) {
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, buf);
    }
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// A signed checkpoint and what it says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// Tree size.
    pub size: TreeSize,
    /// Root hash at that size.
    pub root: RootHash,
    /// The C2SP signed note.
    pub note: String,
}

/// A durable append.
#[derive(Debug, Clone)]
pub struct Appended {
    /// Where it is.
    pub index: LeafIndex,
    /// Its leaf hash.
    pub leaf_hash: LeafHash,
    /// The checkpoint of the batch it was written in (its size is greater than `index`).
    pub checkpoint: Arc<Published>,
}

/// Why a read failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// The index or size is beyond the log (caller's fault).
    #[error("{what} {value} is beyond the log's size {size}")]
    Beyond {
        /// What was asked.
        what: &'static str,
        /// Its value.
        value: u64,
        /// The current size.
        size: u64,
    },
    /// The request does not make sense (caller's fault).
    #[error("{0}")]
    Invalid(String),
    /// The storage failed or holds something the log did not write.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl From<ProofError<StorageError>> for ReadError {
    fn from(e: ProofError<StorageError>) -> Self {
        match e {
            ProofError::Source(s) => ReadError::Storage(s),
            other => ReadError::Invalid(other.to_string()),
        }
    }
}

struct Shared<S> {
    storage: S,
    /// The size of the policy snapshot the log resumed from when it opened, if any.
    restored: RwLock<Option<TreeSize>>,
    cache: NodeCache,
    latest: RwLock<Arc<Published>>,
    /// Every new latest checkpoint, for those who wait on it (the witness submitter).
    published: tokio::sync::watch::Sender<Arc<Published>>,
    origin: String,
    /// Set once the log must not append any more ([`LogReader::fence`]).
    fenced: RwLock<Option<String>>,
}

impl<S> Shared<S> {
    fn new(storage: S, published: Published, origin: String) -> Self {
        let published = Arc::new(published);
        Self {
            fenced: RwLock::new(None),
            storage,
            restored: RwLock::new(None),
            cache: NodeCache::new(),
            latest: RwLock::new(Arc::clone(&published)),
            published: tokio::sync::watch::Sender::new(published),
            origin,
        }
    }

    fn set_latest(&self, published: Arc<Published>) {
        *self.latest.write() = Arc::clone(&published);
        self.published.send_replace(published);
    }
}

/// Reads of the log: entries, tiles, checkpoints and proofs. Cheap to clone.
pub struct LogReader<S> {
    shared: Arc<Shared<S>>,
}

impl<S> Clone for LogReader<S> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S> std::fmt::Debug for LogReader<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogReader")
            .field("origin", &self.shared.origin)
            .finish_non_exhaustive()
    }
}

/// Node hashes from storage, through the cache when there is one.
struct StoredNodes<'a, S>(&'a S, Option<&'a NodeCache>);

impl<S: Storage> NodeSource for StoredNodes<'_, S> {
    type Error = StorageError;
    fn node(&self, level: u8, index: u64) -> Result<Hash, StorageError> {
        if let Some(hash) = self.1.and_then(|c| c.get(level, index)) {
            return Ok(hash);
        }
        let hash = self.read(level, index)?;
        if let Some(c) = self.1 {
            c.put(level, index, hash);
        }
        Ok(hash)
    }
}

impl<S: Storage> StoredNodes<'_, S> {
    fn read(&self, level: u8, index: u64) -> Result<Hash, StorageError> {
        node_hash(level, index, self.0.get(&keys::node(level, index))?)
    }
}

fn node_hash(level: u8, index: u64, value: Option<Vec<u8>>) -> Result<Hash, StorageError> {
    let bytes = value.ok_or_else(|| {
        StorageError::Corrupt(format!("tree node level {level} index {index} is missing"))
    })?;
    Hash::from_slice(&bytes).map_err(|_| {
        StorageError::Corrupt(format!(
            "tree node level {level} index {index} is not 32 bytes"
        ))
    })
}

/// A node source that answers zeros and remembers what was asked.
#[derive(Default)]
struct Recorder(std::cell::RefCell<Vec<(u8, u64)>>);

impl NodeSource for Recorder {
    type Error = StorageError;
    fn node(&self, level: u8, index: u64) -> Result<Hash, StorageError> {
        self.0.borrow_mut().push((level, index));
        Ok(Hash::default())
    }
}

/// The nodes a [`Recorder`] listed, with their hashes.
struct Fetched(Vec<(u8, u64, Hash)>);

impl NodeSource for Fetched {
    type Error = StorageError;
    fn node(&self, level: u8, index: u64) -> Result<Hash, StorageError> {
        self.0
            .iter()
            .find(|(l, i, _)| *l == level && *i == index)
            .map(|(_, _, h)| *h)
            .ok_or_else(|| StorageError::Backend(format!("proof plan missed node {level}/{index}")))
    }
}

impl<S> LogReader<S> {
    /// Refuse every append from now on ([`AppendError::Fenced`] with `reason`): a witness
    /// has cosigned a larger tree of this log than this copy holds. The first reason stays.
    pub fn fence(&self, reason: String) {
        let mut fenced = self.shared.fenced.write();
        if fenced.is_none() {
            tracing::error!(%reason, "the log refuses every append from now on");
            *fenced = Some(reason);
        }
    }

    /// Why the log refuses appends, if it does ([`LogReader::fence`]).
    #[must_use]
    pub fn fenced(&self) -> Option<String> {
        self.shared.fenced.read().clone()
    }
}

impl<S: Storage> LogReader<S> {
    /// Read a log's state without a sequencer (beside a running node, on a read-only
    /// store). The origin comes from the latest checkpoint.
    ///
    /// # Errors
    /// [`StorageError`] when the store is empty, unreadable, or its tree does not match its
    /// latest checkpoint.
    pub fn open(storage: S) -> Result<Self, StorageError> {
        let (frontier, note) = recover(&storage)?
            .ok_or_else(|| StorageError::Corrupt("the store holds no log".into()))?;
        let body = note_body(&note)?;
        let published = Published {
            size: frontier.size(),
            root: frontier.root(),
            note,
        };
        Ok(Self {
            shared: Arc::new(Shared::new(storage, published, body.origin)),
        })
    }

    /// The latest checkpoint.
    #[must_use]
    pub fn latest(&self) -> Arc<Published> {
        Arc::clone(&self.shared.latest.read())
    }

    /// A receiver that sees every new latest checkpoint (it starts at the current one).
    #[must_use]
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<Arc<Published>> {
        self.shared.published.subscribe()
    }

    /// Store `note`, the log's checkpoint of `size` with witness cosignatures added, in
    /// place of the checkpoint stored at that size, and remember `size` as the latest
    /// cosigned one when it is larger than the one before. The log's own signature stays the
    /// first line, so every reader of checkpoints (proofs, exports, replays) carries the
    /// cosignatures. Unsynced: it becomes durable with the log's next synced batch.
    ///
    /// # Errors
    /// [`ReadError::Invalid`] when no checkpoint of `size` was signed, or `note` is not that
    /// checkpoint; [`ReadError::Storage`].
    pub fn put_cosigned(&self, size: TreeSize, note: &str) -> Result<(), ReadError> {
        let stored = self.checkpoint_at(size)?.ok_or_else(|| {
            ReadError::Invalid(format!("no checkpoint was signed at size {size}"))
        })?;
        let parse = |n: &str| {
            govern_core::note::Note::parse(n.as_bytes())
                .map_err(|e| ReadError::Invalid(format!("checkpoint {size}: {e}")))
        };
        let (stored, cosigned) = (parse(&stored)?, parse(note)?);
        if stored.text != cosigned.text || !cosigned.signatures.starts_with(&stored.signatures) {
            return Err(ReadError::Invalid(format!(
                "the cosigned note is not the log's checkpoint of size {size} with lines added"
            )));
        }
        let mut batch = Batch::new();
        batch.put(keys::checkpoint(size.0).to_vec(), note.as_bytes().to_vec());
        if self.latest_cosigned_size()?.is_none_or(|s| s < size) {
            batch.put(keys::META_COSIGNED.to_vec(), size.0.to_be_bytes().to_vec());
        }
        self.shared.storage.write(batch, false)?;
        Ok(())
    }

    /// The size of the latest checkpoint stored with a witness quorum ([`LogReader::put_cosigned`]).
    ///
    /// # Errors
    /// [`ReadError::Storage`].
    pub fn latest_cosigned_size(&self) -> Result<Option<TreeSize>, ReadError> {
        let raw = self.shared.storage.get(keys::META_COSIGNED)?;
        Ok(raw.as_deref().and_then(keys::index_value).map(TreeSize))
    }

    /// The checkpoint origin.
    #[must_use]
    pub fn origin(&self) -> &str {
        &self.shared.origin
    }

    /// The size of the policy snapshot the log resumed from when it opened (`None`: it
    /// replayed every tracked entry).
    #[must_use]
    pub fn restored_snapshot(&self) -> Option<TreeSize> {
        *self.shared.restored.read()
    }

    /// Hand every stored entry of a tracked kind ([`is_tracked`]) up to the latest
    /// checkpoint to `fold`, in order, and return that checkpoint: how `govern status` and
    /// `GET /v1/state` fold the projections from a store without a node's policy.
    ///
    /// # Errors
    /// [`StorageError`] when storage fails or holds an entry that does not parse.
    pub fn fold_tracked(
        &self,
        fold: &mut dyn FnMut(SignedEvent, LeafIndex),
    ) -> Result<Arc<Published>, StorageError> {
        let latest = self.latest();
        for_each_tracked(&self.shared.storage, TreeSize(0), latest.size, fold)?;
        Ok(latest)
    }

    /// Read `missing` nodes: those under complete stratum tiles from their blobs (one read
    /// per blob), the rest one key each, all in one multi-get. A blob that is absent (a log
    /// written before blobs existed) falls back to the node keys.
    fn fetch(
        &self,
        missing: &[(u8, u64)],
        out: &mut Vec<(u8, u64, Hash)>,
    ) -> Result<(), StorageError> {
        let size = self.latest().size.0;
        let mut blobs: Vec<(u8, u64)> = Vec::new();
        let mut singles: Vec<(u8, u64)> = Vec::new();
        for &(level, i) in missing {
            let (s, t, _) = strata::locate(level, i);
            if strata::complete(s, t, size) {
                if !blobs.contains(&(s, t)) {
                    blobs.push((s, t));
                }
            } else {
                singles.push((level, i));
            }
        }
        let mut wanted: Vec<Vec<u8>> = blobs
            .iter()
            .map(|&(s, t)| keys::stratum(s, t).to_vec())
            .collect();
        wanted.extend(singles.iter().map(|&(l, i)| keys::node(l, i).to_vec()));
        let mut values = self.shared.storage.multi_get(&wanted)?.into_iter();
        let blob_values: Vec<Option<Vec<u8>>> = values.by_ref().take(blobs.len()).collect();
        for (&(level, i), value) in singles.iter().zip(values) {
            let hash = node_hash(level, i, value)?;
            self.shared.cache.put(level, i, hash);
            out.push((level, i, hash));
        }
        for &(level, i) in missing {
            let (s, t, offset) = strata::locate(level, i);
            let Some(b) = blobs.iter().position(|&x| x == (s, t)) else {
                continue;
            };
            let hash = match &blob_values[b] {
                Some(blob) if blob.len() == strata::STRATUM_BYTES => {
                    Hash::from_slice(&blob[offset..offset + 32])
                        .map_err(|_| StorageError::Corrupt(format!("stratum {s} tile {t}")))?
                }
                Some(blob) => {
                    return Err(StorageError::Corrupt(format!(
                        "stratum {s} tile {t} is {} bytes, not {}",
                        blob.len(),
                        strata::STRATUM_BYTES
                    )));
                }
                None => self.nodes().node(level, i)?,
            };
            out.push((level, i, hash));
        }
        Ok(())
    }

    fn nodes(&self) -> StoredNodes<'_, S> {
        StoredNodes(&self.shared.storage, Some(&self.shared.cache))
    }

    fn within(&self, what: &'static str, value: u64, inclusive: bool) -> Result<(), ReadError> {
        let size = self.latest().size.0;
        let ok = if inclusive {
            value <= size
        } else {
            value < size
        };
        if ok {
            Ok(())
        } else {
            Err(ReadError::Beyond { what, value, size })
        }
    }

    /// The leaf data at `index`.
    ///
    /// # Errors
    /// [`ReadError::Beyond`] past the end; [`ReadError::Storage`] when storage fails.
    pub fn entry(&self, index: LeafIndex) -> Result<Vec<u8>, ReadError> {
        self.within("index", index.0, false)?;
        self.shared
            .storage
            .get(&keys::entry(index.0))?
            .ok_or_else(|| {
                ReadError::Storage(StorageError::Corrupt(format!("entry {index} is missing")))
            })
    }

    /// The index of the entry with leaf hash `leaf` (the latest, should one leaf have been
    /// appended twice), if the log holds it.
    ///
    /// # Errors
    /// [`ReadError::Storage`].
    pub fn index_of(&self, leaf: &LeafHash) -> Result<Option<LeafIndex>, ReadError> {
        let index = stored_index(
            &self.shared.storage,
            &keys::leaf(leaf.hash().as_bytes()),
            leaf,
        )?;
        // An index written by a batch whose checkpoint is not yet published is not served.
        Ok(index.filter(|i| i.0 < self.latest().size.0))
    }

    /// The contents of a C2SP tile or entry bundle, if the log holds all of it.
    ///
    /// # Errors
    /// [`ReadError::Beyond`] when the tree is not that large yet; [`ReadError::Storage`].
    pub fn tile(&self, tile: Tile) -> Result<Vec<u8>, ReadError> {
        let size = self.latest().size;
        if !tile.exists_at(size) {
            return Err(ReadError::Beyond {
                what: "tile",
                value: tile.index(),
                size: size.0,
            });
        }
        let start = tile.index() * TILE_WIDTH;
        let width = tile.width();
        let (from, to) = match tile {
            Tile::Hashes { level, .. } => {
                let l = level * TILE_HEIGHT;
                (
                    keys::node(l, start).to_vec(),
                    keys::node(l, start + width).to_vec(),
                )
            }
            Tile::Entries { .. } => (
                keys::entry(start).to_vec(),
                keys::entry(start + width).to_vec(),
            ),
        };
        let rows =
            self.shared
                .storage
                .scan(&from, &to, usize::try_from(width).unwrap_or(usize::MAX))?;
        if rows.len() as u64 != width {
            return Err(StorageError::Corrupt(format!(
                "{tile} has {} of {width} items",
                rows.len()
            ))
            .into());
        }
        for (i, (k, _)) in rows.iter().enumerate() {
            if keys::trailing_u64(k) != Some(start + i as u64) {
                return Err(StorageError::Corrupt(format!("{tile} has a gap at item {i}")).into());
            }
        }
        Ok(match tile {
            Tile::Hashes { .. } => rows.into_iter().flat_map(|(_, v)| v).collect(),
            Tile::Entries { .. } => {
                govern_core::tiles::encode_bundle(rows.iter().map(|(_, v)| v.as_slice()))
            }
        })
    }

    /// The inclusion proof of `index` in the tree of `size`.
    ///
    /// # Errors
    /// [`ReadError::Beyond`] when `size` is beyond the log; [`ReadError::Invalid`] when
    /// `index >= size`; [`ReadError::Storage`].
    pub fn inclusion_proof(
        &self,
        index: LeafIndex,
        size: TreeSize,
    ) -> Result<Vec<Hash>, ReadError> {
        self.within("size", size.0, true)?;
        // Which nodes the proof reads depends only on (index, size), not on their hashes: a
        // first pass with a recording source lists them, the cache answers what it can, and
        // storage answers the rest in one multi-get.
        let plan = Recorder::default();
        merkle::inclusion_proof(&plan, index, size)?;
        let wanted = plan.0.into_inner();
        let mut fetched = Vec::with_capacity(wanted.len());
        let mut missing = Vec::new();
        for &(level, i) in &wanted {
            match self.shared.cache.get(level, i) {
                Some(h) => fetched.push((level, i, h)),
                None => missing.push((level, i)),
            }
        }
        if !missing.is_empty() {
            self.fetch(&missing, &mut fetched)?;
        }
        Ok(merkle::inclusion_proof(&Fetched(fetched), index, size)?)
    }

    /// The consistency proof between the trees of sizes `from` and `to`.
    ///
    /// # Errors
    /// [`ReadError::Beyond`] when `to` is beyond the log; [`ReadError::Invalid`] unless
    /// `0 < from <= to`; [`ReadError::Storage`].
    pub fn consistency_proof(&self, from: TreeSize, to: TreeSize) -> Result<Vec<Hash>, ReadError> {
        self.within("size", to.0, true)?;
        Ok(merkle::consistency_proof(&self.nodes(), from, to)?)
    }

    /// The root of the tree of `size`, from stored hashes.
    ///
    /// # Errors
    /// [`ReadError::Beyond`]; [`ReadError::Storage`].
    pub fn root_at(&self, size: TreeSize) -> Result<RootHash, ReadError> {
        self.within("size", size.0, true)?;
        Ok(merkle::tree_root(&self.nodes(), size)?)
    }

    /// The checkpoint signed at exactly `size`, if a batch ended there.
    ///
    /// # Errors
    /// [`ReadError::Storage`].
    pub fn checkpoint_at(&self, size: TreeSize) -> Result<Option<String>, ReadError> {
        let raw = self.shared.storage.get(&keys::checkpoint(size.0))?;
        raw.map(|b| {
            String::from_utf8(b).map_err(|_| {
                StorageError::Corrupt(format!("checkpoint {size} is not UTF-8")).into()
            })
        })
        .transpose()
    }

    /// Signed checkpoints with sizes in `[from, to)`, at most `limit`, by size.
    ///
    /// # Errors
    /// [`ReadError::Storage`].
    pub fn checkpoints(
        &self,
        from: TreeSize,
        to: TreeSize,
        limit: usize,
    ) -> Result<Vec<(TreeSize, String)>, ReadError> {
        let rows =
            self.shared
                .storage
                .scan(&keys::checkpoint(from.0), &keys::checkpoint(to.0), limit)?;
        rows.into_iter()
            .map(|(k, v)| {
                let size = keys::trailing_u64(&k)
                    .ok_or_else(|| StorageError::Corrupt("checkpoint key".into()))?;
                let note = String::from_utf8(v).map_err(|_| {
                    StorageError::Corrupt(format!("checkpoint {size} is not UTF-8"))
                })?;
                Ok((TreeSize(size), note))
            })
            .collect()
    }
}

/// The index stored under `key` (a [`keys::leaf`] or [`keys::unique`] key).
fn stored_index<S: Storage>(
    storage: &S,
    key: &[u8],
    what: &dyn std::fmt::Display,
) -> Result<Option<LeafIndex>, StorageError> {
    storage
        .get(key)?
        .map(|v| {
            keys::index_value(&v).map(LeafIndex).ok_or_else(|| {
                StorageError::Corrupt(format!("the index entry of {what} is not 8 bytes"))
            })
        })
        .transpose()
}

/// The stored event with leaf hash `leaf`, found through the leaf-hash index.
fn stored_parent<S: Storage>(
    storage: &S,
    leaf: &LeafHash,
) -> Result<Option<ParentInfo>, StorageError> {
    let Some(index) = stored_index(storage, &keys::leaf(leaf.hash().as_bytes()), leaf)? else {
        return Ok(None);
    };
    let bytes = storage.get(&keys::entry(index.0))?.ok_or_else(|| {
        StorageError::Corrupt(format!(
            "leaf {leaf} is indexed at entry {index}, which is missing"
        ))
    })?;
    let event = SignedEvent::from_bytes(&bytes)
        .map_err(|e| StorageError::Corrupt(format!("entry {index} does not parse: {e}")))?;
    if event.leaf_hash() != *leaf {
        return Err(StorageError::Corrupt(format!(
            "leaf {leaf} is indexed at entry {index}, which holds leaf {}",
            event.leaf_hash()
        )));
    }
    let e = event.event();
    Ok(Some(ParentInfo {
        index,
        kind: e.kind.clone(),
        tenant: e.tenant,
        request: e.request,
    }))
}

/// The sequencer's [`LogView`]: storage, then what the current batch accepted so far.
struct BatchView<'a, S> {
    storage: &'a S,
    leaves: &'a HashMap<LeafHash, ParentInfo>,
    unique: &'a HashMap<String, LeafIndex>,
    next: u64,
    window: &'a VecDeque<(TreeSize, RootHash)>,
}

impl<S: Storage> LogView for BatchView<'_, S> {
    fn parent(&self, leaf: &LeafHash) -> Result<Option<ParentInfo>, StorageError> {
        if let Some(p) = self.leaves.get(leaf) {
            return Ok(Some(p.clone()));
        }
        stored_parent(self.storage, leaf)
    }

    fn unique_taken(&self, key: &str) -> Result<Option<LeafIndex>, StorageError> {
        if let Some(i) = self.unique.get(key) {
            return Ok(Some(*i));
        }
        stored_index(self.storage, &keys::unique(key), &key)
    }

    fn next_index(&self) -> LeafIndex {
        LeafIndex(self.next)
    }

    fn recent_checkpoint(&self, root: &RootHash) -> Option<TreeSize> {
        self.window
            .iter()
            .rev()
            .find(|(_, r)| r == root)
            .map(|(size, _)| *size)
    }
}

/// What a batch has accepted so far and will write: the sequencer's, and a replay's
/// ([`crate::replay`]), so both check and store an entry the same way.
pub(crate) struct Staged {
    /// The writes of the batch so far.
    pub(crate) write: Batch,
    /// Every tree node the batch completed.
    pub(crate) written: Vec<(u8, u64, Hash)>,
    leaves: HashMap<LeafHash, ParentInfo>,
    unique: HashMap<String, LeafIndex>,
    completed: Vec<(u8, u64, Hash)>,
}

impl Staged {
    pub(crate) fn new() -> Self {
        Self {
            write: Batch::new(),
            written: Vec::new(),
            leaves: HashMap::new(),
            unique: HashMap::new(),
            completed: Vec::new(),
        }
    }

    /// Check `event` as the entry at `next`: the policy, then its uniqueness claims against
    /// storage and the batch. Its claims on success.
    pub(crate) fn check<S: Storage>(
        &self,
        storage: &S,
        policy: &dyn AppendPolicy,
        event: &SignedEvent,
        next: u64,
        window: &VecDeque<(TreeSize, RootHash)>,
    ) -> Result<Vec<String>, AppendError> {
        let view = BatchView {
            storage,
            leaves: &self.leaves,
            unique: &self.unique,
            next,
            window,
        };
        let claims = policy.check(event, &view)?;
        for k in &claims {
            if let Some(index) = view.unique_taken(k)? {
                return Err(AppendError::Duplicate {
                    key: k.clone(),
                    index,
                });
            }
        }
        Ok(claims)
    }

    /// Whether the log (storage, or this batch) holds `event` already: one event is one
    /// entry, so a re-posted `service.attested` cannot revive an identity and a re-posted
    /// audit cannot count twice. (The sequencer checks storage on the submitter's thread
    /// instead, and the batch and its recent entries here: [`Recent`].)
    ///
    /// # Errors
    /// [`AppendError::AlreadyHeld`] naming where it is; [`AppendError::Storage`].
    pub(crate) fn check_new<S: Storage>(
        &self,
        storage: &S,
        event: &SignedEvent,
    ) -> Result<(), AppendError> {
        let leaf = event.leaf_hash();
        let held = match self.in_batch(&leaf) {
            Some(index) => Some(index),
            None => stored_index(storage, &keys::leaf(leaf.hash().as_bytes()), &leaf)?,
        };
        match held {
            Some(index) => Err(AppendError::AlreadyHeld { index }),
            None => Ok(()),
        }
    }

    /// Where this batch put the entry with leaf hash `leaf`, if it did.
    fn in_batch(&self, leaf: &LeafHash) -> Option<LeafIndex> {
        self.leaves.get(leaf).map(|p| p.index)
    }

    /// Stage a checked `event` as the next entry of `frontier`: the entry, its leaf-hash and
    /// uniqueness index, its tracked mark, the tree nodes it completes; and tell `policy`.
    pub(crate) fn accept(
        &mut self,
        frontier: &mut Frontier,
        policy: &dyn AppendPolicy,
        event: &SignedEvent,
        claimed: Vec<String>,
    ) -> LeafIndex {
        let index = frontier.size().0;
        let leaf_hash = event.leaf_hash();
        self.completed.clear();
        frontier.push(leaf_hash, &mut self.completed);
        self.write
            .put(keys::entry(index).to_vec(), event.bytes().to_vec());
        let index_bytes = index.to_be_bytes().to_vec();
        self.write.put(
            keys::leaf(leaf_hash.hash().as_bytes()).to_vec(),
            index_bytes.clone(),
        );
        for k in claimed {
            self.write
                .put(keys::unique(&k).to_vec(), index_bytes.clone());
            self.unique.insert(k, LeafIndex(index));
        }
        let e = event.event();
        if is_tracked(e.kind.as_str()) {
            self.write.put(keys::tracked(index).to_vec(), Vec::new());
        }
        policy.accepted(event, LeafIndex(index));
        self.leaves.insert(
            leaf_hash,
            ParentInfo {
                index: LeafIndex(index),
                kind: e.kind.clone(),
                tenant: e.tenant,
                request: e.request,
            },
        );
        for (level, i, hash) in &self.completed {
            self.write
                .put(keys::node(*level, *i).to_vec(), hash.as_bytes().to_vec());
        }
        self.written.extend_from_slice(&self.completed);
        LeafIndex(index)
    }
}

/// A completed node at level `8·(s+1)` completes the stratum-`s` tile below it: write its
/// blob in the same batch.
pub(crate) fn add_strata<S: Storage>(
    storage: &S,
    write: &mut Batch,
    written: &[(u8, u64, Hash)],
) -> Result<(), StorageError> {
    let tops: Vec<(u8, u64)> = written
        .iter()
        .filter(|(level, _, _)| *level > 0 && level % TILE_HEIGHT == 0)
        .map(|(level, index, _)| (level / TILE_HEIGHT - 1, *index))
        .collect();
    if tops.is_empty() {
        return Ok(());
    }
    let fresh: HashMap<(u8, u64), Hash> = written.iter().map(|(l, i, h)| ((*l, *i), *h)).collect();
    for (stratum, tile) in tops {
        let blob = strata::assemble(storage, stratum, tile, &fresh)?;
        write.put(keys::stratum(stratum, tile).to_vec(), blob);
    }
    Ok(())
}

/// The leaf hashes of the log's latest entries, for the sequencer's check that an event is
/// new without a storage read on its own thread. [`Log::submit`] looks the event up in storage
/// first, on the submitter's thread, and answers at once an event whose entry is published;
/// what it cannot have seen is an entry written after that look-up and before the sequencer
/// takes the event: at most the batch then being written, the events queued ahead of it and
/// the log's follow-ups to both. `Recent` remembers at least that many entries.
struct Recent {
    order: VecDeque<LeafHash>,
    index: HashMap<LeafHash, LeafIndex>,
    keep: usize,
}

impl Recent {
    fn new(config: &LogConfig) -> Self {
        // Entries written between a submitter's look-up and its event's turn: the batch in
        // flight and every queued event ahead, each with at most one follow-up.
        let keep = 2 * (config.queue_events_max + config.batch_events_max.max(1));
        Self {
            order: VecDeque::with_capacity(keep),
            index: HashMap::with_capacity(keep),
            keep,
        }
    }

    fn get(&self, leaf: &LeafHash) -> Option<LeafIndex> {
        self.index.get(leaf).copied()
    }

    fn insert(&mut self, leaf: LeafHash, at: LeafIndex) {
        if self.order.len() >= self.keep
            && let Some(old) = self.order.pop_front()
        {
            self.index.remove(&old);
        }
        self.order.push_back(leaf);
        self.index.insert(leaf, at);
    }
}

struct Pending {
    event: SignedEvent,
    /// `None` for the log's own follow-up events.
    reply: Option<oneshot::Sender<Result<Appended, AppendError>>>,
}

impl Pending {
    fn answer(self, result: Result<Appended, AppendError>) {
        match self.reply {
            Some(reply) => {
                let _ = reply.send(result);
            }
            None => match result {
                Ok(a) => {
                    tracing::info!(index = %a.index, kind = %self.event.event().kind, "the log appended its own event")
                }
                Err(e) => {
                    tracing::error!(error = %e, kind = %self.event.event().kind, "the log's own event was not appended")
                }
            },
        }
    }
}

/// The log: a sequencer thread and the reads. Dropping it finishes the queued batches and
/// stops the thread.
pub struct Log<S: Storage> {
    reader: LogReader<S>,
    queue: Option<SyncSender<Pending>>,
    thread: Option<JoinHandle<()>>,
}

impl<S: Storage> std::fmt::Debug for Log<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log")
            .field("reader", &self.reader)
            .finish_non_exhaustive()
    }
}

impl<S: Storage> std::ops::Deref for Log<S> {
    type Target = LogReader<S>;
    fn deref(&self) -> &LogReader<S> {
        &self.reader
    }
}

impl<S: Storage> Log<S> {
    /// Open the log in `storage`, recovering its state, and start the sequencer. A new log
    /// gets a signed checkpoint of size 0 so `/checkpoint` always answers.
    ///
    /// # Errors
    /// [`StorageError`] when storage fails, or holds a state whose tree does not match its
    /// latest checkpoint.
    pub fn open(
        storage: S,
        signer: NoteSigner,
        config: LogConfig,
        policy: Arc<dyn AppendPolicy>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StorageError> {
        let (frontier, note) = match recover(&storage)? {
            Some(found) => found,
            None => {
                let note =
                    sign_checkpoint(&signer, &config.origin, TreeSize(0), merkle::empty_root())?;
                let mut batch = Batch::new();
                batch.put(keys::checkpoint(0).to_vec(), note.clone().into_bytes());
                batch.put(keys::META_SIZE.to_vec(), 0u64.to_be_bytes().to_vec());
                storage.write(batch, true)?;
                (Frontier::new(), note)
            }
        };
        let stored_origin = note_body(&note)?.origin;
        if stored_origin != config.origin {
            return Err(StorageError::NotThisLog(format!(
                "the stored log's origin is {stored_origin:?}, not {:?}",
                config.origin
            )));
        }
        // A store whose checkpoints another key signed (a replayed data dir, or the wrong
        // key file) is not this log: signing on under this key would fork it.
        if Checkpoint::open(note.as_bytes(), &stored_origin, &signer.verifier()).is_err() {
            return Err(StorageError::NotThisLog(format!(
                "the stored log's latest checkpoint is not signed by this log key ({}): install the log's own key",
                signer.verifier()
            )));
        }
        let (size, root) = (frontier.size().0, frontier.root());
        let shared = Arc::new(Shared::new(
            storage,
            Published {
                size: TreeSize(size),
                root,
                note,
            },
            config.origin.clone(),
        ));
        let window = recent_checkpoints(&shared.storage, TreeSize(size))?;
        let restored = restore_snapshot(&shared, policy.as_ref(), TreeSize(size));
        *shared.restored.write() = restored;
        replay_tracked(
            &shared.storage,
            policy.as_ref(),
            restored.unwrap_or(TreeSize(0)),
            TreeSize(size),
        )?;
        let (tx, rx) = sync_channel(config.queue_events_max);
        let seq = Sequencer {
            shared: Arc::clone(&shared),
            frontier,
            signer,
            recent: Recent::new(&config),
            config,
            policy,
            clock,
            window,
        };
        let thread = std::thread::Builder::new()
            .name("sequencer".into())
            .spawn(move || seq.run(rx))
            .map_err(|e| StorageError::Backend(format!("cannot start the sequencer: {e}")))?;
        Ok(Self {
            reader: LogReader { shared },
            queue: Some(tx),
            thread: Some(thread),
        })
    }

    /// A reader sharing this log's state.
    #[must_use]
    pub fn reader(&self) -> LogReader<S> {
        self.reader.clone()
    }

    /// Queue an event; the receiver resolves once its batch is durable.
    ///
    /// # Errors
    /// [`AppendError::Pushback`] when the queue is full; [`AppendError::Closed`].
    pub fn submit(
        &self,
        event: SignedEvent,
    ) -> Result<oneshot::Receiver<Result<Appended, AppendError>>, AppendError> {
        let queue = self.queue.as_ref().ok_or(AppendError::Closed)?;
        if let Some(reason) = self.reader.fenced() {
            return Err(AppendError::Fenced { reason });
        }
        let (reply, rx) = oneshot::channel();
        // An event the log holds already (published) is answered here, on the submitter's
        // thread, with its original entry: the sequencer then needs no storage read to know
        // an event is new, only the entries written since ([`Recent`]).
        let leaf_hash = event.leaf_hash();
        let held = self.reader.index_of(&leaf_hash).map_err(|e| match e {
            ReadError::Storage(s) => AppendError::Storage(s),
            other => AppendError::Storage(StorageError::Corrupt(other.to_string())),
        })?;
        if let Some(index) = held {
            let _ = reply.send(Ok(Appended {
                index,
                leaf_hash,
                checkpoint: self.reader.latest(),
            }));
            return Ok(rx);
        }
        match queue.try_send(Pending {
            event,
            reply: Some(reply),
        }) {
            Ok(()) => Ok(rx),
            Err(TrySendError::Full(_)) => Err(AppendError::Pushback {
                retry_after_s: PUSHBACK_RETRY_AFTER_S,
            }),
            Err(TrySendError::Disconnected(_)) => Err(AppendError::Closed),
        }
    }

    /// Append and wait (async) until durable.
    ///
    /// # Errors
    /// Any [`AppendError`].
    pub async fn append(&self, event: SignedEvent) -> Result<Appended, AppendError> {
        self.submit(event)?.await.map_err(|_| AppendError::Closed)?
    }

    /// Append and block the thread until durable.
    ///
    /// # Errors
    /// Any [`AppendError`].
    pub fn append_blocking(&self, event: SignedEvent) -> Result<Appended, AppendError> {
        self.submit(event)?
            .blocking_recv()
            .map_err(|_| AppendError::Closed)?
    }
}

/// What a role that writes to the log sees of it (the edge, the key service): append an
/// event and wait until it is durable, the latest checkpoint, and an entry read back. A
/// narrow interface, so a role can run beside the sequencer (in process, as `govern node`
/// does) or, later, in an enclave of its own behind the same calls over HTTP.
pub trait Appender: Send + Sync + 'static {
    /// Append `event`; answered once durable.
    ///
    /// # Errors
    /// Any [`AppendError`].
    fn append(
        &self,
        event: SignedEvent,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<Appended, AppendError>> + Send + '_>>;

    /// The latest signed checkpoint.
    fn latest(&self) -> Arc<Published>;

    /// The leaf data at `index`.
    ///
    /// # Errors
    /// [`ReadError::Beyond`] past the end; [`ReadError::Storage`] when storage fails.
    fn entry(&self, index: LeafIndex) -> Result<Vec<u8>, ReadError>;
}

impl<S: Storage> Appender for Log<S> {
    fn append(
        &self,
        event: SignedEvent,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<Appended, AppendError>> + Send + '_>> {
        Box::pin(Log::append(self, event))
    }

    fn latest(&self) -> Arc<Published> {
        LogReader::latest(self)
    }

    fn entry(&self, index: LeafIndex) -> Result<Vec<u8>, ReadError> {
        LogReader::entry(self, index)
    }
}

impl<S: Storage> Drop for Log<S> {
    fn drop(&mut self) {
        self.queue.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn sign_checkpoint(
    signer: &NoteSigner,
    origin: &str,
    size: TreeSize,
    root: RootHash,
) -> Result<String, StorageError> {
    let cp = Checkpoint {
        origin: origin.to_string(),
        size,
        root,
        extensions: Vec::new(),
    };
    cp.sign(signer)
        .map_err(|e| StorageError::Backend(format!("cannot sign checkpoint: {e}")))
}

/// The body of a checkpoint this log stored.
fn note_body(note: &str) -> Result<Checkpoint, StorageError> {
    let body = note.split("\n\n").next().unwrap_or("");
    Checkpoint::parse_body(&format!("{body}\n"))
        .map_err(|e| StorageError::Corrupt(format!("stored checkpoint: {e}")))
}

/// The right edge and latest checkpoint of a stored log, `None` if the store is empty.
/// The checkpoint must describe the stored tree: the chain is asserted on read too.
fn recover<S: Storage>(storage: &S) -> Result<Option<(Frontier, String)>, StorageError> {
    let Some(raw) = storage.get(keys::META_SIZE)? else {
        return Ok(None);
    };
    let size = keys::trailing_u64(&raw)
        .filter(|_| raw.len() == 8)
        .ok_or_else(|| StorageError::Corrupt("size is not 8 bytes".into()))?;
    let frontier = Frontier::from_source(&StoredNodes(storage, None), TreeSize(size)).map_err(
        |e| match e {
            ProofError::Source(s) => s,
            other => StorageError::Corrupt(other.to_string()),
        },
    )?;
    let note = storage
        .get(&keys::checkpoint(size))?
        .ok_or_else(|| StorageError::Corrupt(format!("no checkpoint at the stored size {size}")))?;
    let note = String::from_utf8(note)
        .map_err(|_| StorageError::Corrupt("checkpoint is not UTF-8".into()))?;
    let body = note_body(&note)?;
    let root = frontier.root();
    if body.size.0 != size || body.root != root {
        return Err(StorageError::Corrupt(format!(
            "checkpoint says size {} root {} but the stored tree has size {size} root {root}",
            body.size, body.root
        )));
    }
    Ok(Some((frontier, note)))
}

/// The last [`NONCE_WINDOW_CHECKPOINTS`] checkpoints (size, root) of a stored log of `size`,
/// oldest first. Checkpoints are keyed by size, so the scan walks back from `size` over a
/// span that doubles until it holds enough of them (or reaches size 0).
fn recent_checkpoints<S: Storage>(
    storage: &S,
    size: TreeSize,
) -> Result<VecDeque<(TreeSize, RootHash)>, StorageError> {
    let want = NONCE_WINDOW_CHECKPOINTS;
    let mut span = want as u64;
    loop {
        let from = size.0.saturating_sub(span);
        let end = keys::checkpoint(size.0.saturating_add(1));
        let found = storage.scan(&keys::checkpoint(from), &end, usize::MAX)?;
        if found.len() >= want || from == 0 {
            let skip = found.len().saturating_sub(want);
            return found
                .into_iter()
                .skip(skip)
                .map(|(_, note)| {
                    let note = String::from_utf8(note)
                        .map_err(|_| StorageError::Corrupt("checkpoint is not UTF-8".into()))?;
                    let body = note_body(&note)?;
                    Ok((body.size, body.root))
                })
                .collect();
        }
        span = span.saturating_mul(4);
    }
}

/// Hand the stored entries of the tracked kinds ([`is_tracked`]) to `policy`, in log order, so a policy
/// with state (manifests, identities) resumes where it stopped.
fn replay_tracked<S: Storage>(
    storage: &S,
    policy: &dyn AppendPolicy,
    from: TreeSize,
    size: TreeSize,
) -> Result<(), StorageError> {
    for_each_tracked(storage, from, size, &mut |event, index| {
        policy.accepted(&event, index)
    })?;
    policy.finish(true);
    policy.resumed(size);
    Ok(())
}

/// Every stored entry of a tracked kind from `start` to below `size`, in log order.
fn for_each_tracked<S: Storage>(
    storage: &S,
    start: TreeSize,
    size: TreeSize,
    f: &mut dyn FnMut(SignedEvent, LeafIndex),
) -> Result<(), StorageError> {
    const PAGE: usize = 256;
    let end = keys::tracked(size.0);
    let mut from = keys::tracked(start.0);
    loop {
        let page = storage.scan(&from, &end, PAGE)?;
        for (key, _) in &page {
            let index = keys::trailing_u64(key)
                .ok_or_else(|| StorageError::Corrupt("tracked key is not 9 bytes".into()))?;
            let bytes = storage.get(&keys::entry(index))?.ok_or_else(|| {
                StorageError::Corrupt(format!("tracked entry {index} is missing"))
            })?;
            let event = SignedEvent::from_bytes(&bytes)
                .map_err(|e| StorageError::Corrupt(format!("entry {index} does not parse: {e}")))?;
            f(event, LeafIndex(index));
        }
        match page.last() {
            Some((key, _)) if page.len() == PAGE => {
                let next = keys::trailing_u64(key)
                    .unwrap_or(u64::MAX)
                    .saturating_add(1);
                from = keys::tracked(next);
            }
            _ => break,
        }
    }
    Ok(())
}

const SNAPSHOT_MAGIC: &[u8] = b"govern-snapshot/v1\n";

/// A stored snapshot: magic ‖ size (u64 BE) ‖ tree root ‖ SHA-256(state) ‖ state.
fn snapshot_value(size: TreeSize, root: RootHash, state: &[u8]) -> Vec<u8> {
    use sha2::Digest as _;
    let mut v = Vec::with_capacity(SNAPSHOT_MAGIC.len() + 72 + state.len());
    v.extend_from_slice(SNAPSHOT_MAGIC);
    v.extend_from_slice(&size.0.to_be_bytes());
    v.extend_from_slice(root.hash().as_bytes());
    v.extend_from_slice(&sha2::Sha256::digest(state));
    v.extend_from_slice(state);
    v
}

/// Hand the stored snapshot to `policy` if it names a size of this log with this log's root
/// at that size and its checksum holds; the size to replay tracked entries from. `None`
/// (replay from zero) when there is none or any check fails.
fn restore_snapshot<S: Storage>(
    shared: &Arc<Shared<S>>,
    policy: &dyn AppendPolicy,
    size: TreeSize,
) -> Option<TreeSize> {
    use sha2::Digest as _;
    let value = match shared.storage.get(keys::META_SNAPSHOT) {
        Ok(Some(v)) => v,
        Ok(None) => return None,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the policy snapshot; replaying from zero");
            return None;
        }
    };
    let refuse = |why: &str| {
        tracing::warn!(why, "the policy snapshot is not used; replaying from zero");
        None
    };
    let Some(rest) = value.strip_prefix(SNAPSHOT_MAGIC) else {
        return refuse("unknown format");
    };
    if rest.len() < 72 {
        return refuse("truncated");
    }
    let (head, state) = rest.split_at(72);
    let at = TreeSize(u64::from_be_bytes(head[..8].try_into().unwrap_or_default()));
    if at > size {
        return refuse("it is of a size beyond the log");
    }
    let reader = LogReader {
        shared: Arc::clone(shared),
    };
    match reader.root_at(at) {
        Ok(r) if r.hash().as_bytes() == &head[8..40] => {}
        _ => return refuse("the log's root at its size is not the one it names"),
    }
    if sha2::Sha256::digest(state).as_slice() != &head[40..72] {
        return refuse("its checksum does not hold");
    }
    match policy.restore(state) {
        Ok(()) => {
            tracing::info!(size = %at, "policy state restored from its snapshot");
            Some(at)
        }
        Err(e) => refuse(&e),
    }
}

struct Sequencer<S> {
    shared: Arc<Shared<S>>,
    frontier: Frontier,
    signer: NoteSigner,
    config: LogConfig,
    policy: Arc<dyn AppendPolicy>,
    clock: Arc<dyn Clock>,
    /// The last [`NONCE_WINDOW_CHECKPOINTS`] checkpoints, oldest first.
    window: VecDeque<(TreeSize, RootHash)>,
    /// The latest entries' leaf hashes.
    recent: Recent,
}

impl<S: Storage> Sequencer<S> {
    fn run(mut self, rx: Receiver<Pending>) {
        let max = self.config.batch_events_max.max(1);
        let wait = Duration::from_millis(self.config.batch_wait_ms);
        let mut batch: Vec<Pending> = Vec::with_capacity(max);
        while let Ok(first) = rx.recv() {
            batch.push(first);
            let deadline = Instant::now() + wait;
            while batch.len() < max {
                match rx.try_recv() {
                    Ok(p) => batch.push(p),
                    Err(_) => {
                        let left = deadline.saturating_duration_since(Instant::now());
                        if left.is_zero() {
                            break;
                        }
                        match rx.recv_timeout(left) {
                            Ok(p) => batch.push(p),
                            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {
                                break;
                            }
                        }
                    }
                }
            }
            self.commit(&mut batch);
        }
    }

    /// Sign the policy's follow-up events with the log's key and put them first in line.
    fn queue_followups(&self, queue: &mut VecDeque<Pending>) {
        let followups = self.policy.followups();
        for event in followups.into_iter().rev() {
            match event.sign(self.signer.signing_key()) {
                Ok(event) => queue.push_front(Pending { event, reply: None }),
                Err(e) => tracing::error!(error = %e, "cannot sign the log's own event"),
            }
        }
    }

    /// When this batch crossed a multiple of `snapshot_every`, store the policy's state as
    /// the snapshot (unsynced: a lost snapshot costs a longer restart, nothing else).
    fn maybe_snapshot(&self, size: TreeSize, root: RootHash, before: TreeSize) {
        let every = self.config.snapshot_every;
        if every == 0 || size.0 / every == before.0 / every {
            return;
        }
        let Some(state) = self.policy.snapshot() else {
            return;
        };
        let mut batch = Batch::new();
        batch.put(
            keys::META_SNAPSHOT.to_vec(),
            snapshot_value(size, root, &state),
        );
        if let Err(e) = self.shared.storage.write(batch, false) {
            tracing::warn!(error = %e, "cannot store the policy snapshot");
        }
    }

    fn remember_checkpoint(&mut self, size: TreeSize, root: RootHash) {
        if self.window.len() >= NONCE_WINDOW_CHECKPOINTS {
            self.window.pop_front();
        }
        self.window.push_back((size, root));
    }

    fn commit(&mut self, pending: &mut Vec<Pending>) {
        // A fence set while these waited in the queue: none of them is written.
        if let Some(reason) = self.shared.fenced.read().clone() {
            for p in pending.drain(..) {
                p.answer(Err(AppendError::Fenced {
                    reason: reason.clone(),
                }));
            }
            return;
        }
        let now = self.clock.now();
        let before = self.frontier.clone();
        let mut staged = Staged::new();
        let mut accepted: Vec<(Pending, LeafIndex)> = Vec::with_capacity(pending.len());
        let mut queue: VecDeque<Pending> = pending.drain(..).collect();
        let mut refused: Vec<(Pending, AppendError)> = Vec::new();
        // Events the log held already, answered with their original entry once this batch
        // is durable (an entry of this batch is not acknowledged before that).
        let mut held: Vec<(Pending, LeafIndex)> = Vec::new();
        while let Some(p) = queue.pop_front() {
            // A re-sent event gets its original receipt, whatever its time: a client that
            // lost an answer may retry, and nothing is appended twice.
            let leaf = p.event.leaf_hash();
            let checked = match staged.in_batch(&leaf).or_else(|| self.recent.get(&leaf)) {
                Some(index) => Err(AppendError::AlreadyHeld { index }),
                None => Ok(()),
            }
            .and_then(|()| {
                check_time(p.event.event().time, now, self.config.time_skew_ms)
                    .map_err(AppendError::from)
            })
            .and_then(|()| {
                staged.check(
                    &self.shared.storage,
                    self.policy.as_ref(),
                    &p.event,
                    self.frontier.size().0,
                    &self.window,
                )
            });
            let claimed = match checked {
                Ok(claimed) => claimed,
                Err(AppendError::AlreadyHeld { index }) => {
                    held.push((p, index));
                    continue;
                }
                Err(e) => {
                    // Answered once the batch is written: a refusal that made the log append
                    // something (a quarantine) is answered after that is durable.
                    refused.push((p, e));
                    self.queue_followups(&mut queue);
                    continue;
                }
            };
            debug_assert_eq!(
                self.frontier.size().0,
                before.size().0 + accepted.len() as u64
            );
            let index = staged.accept(&mut self.frontier, self.policy.as_ref(), &p.event, claimed);
            accepted.push((p, index));
            self.queue_followups(&mut queue);
        }
        if accepted.is_empty() {
            self.policy.finish(true);
            answer_held(held, &self.shared.latest.read());
            answer_refused(refused);
            return;
        }
        let size = self.frontier.size();
        let root = self.frontier.root();
        if let Err(e) = add_strata(&self.shared.storage, &mut staged.write, &staged.written) {
            tracing::error!(error = %e, "cannot assemble a stratum blob; the batch is refused");
            self.frontier = before;
            self.policy.finish(false);
            for (p, _) in accepted {
                p.answer(Err(AppendError::Storage(e.clone())));
            }
            answer_held_unless_beyond(held, &self.shared.latest.read(), &e);
            answer_refused(refused);
            return;
        }
        let result =
            sign_checkpoint(&self.signer, &self.config.origin, size, root).and_then(|note| {
                let mut write = std::mem::take(&mut staged.write);
                write.put(keys::checkpoint(size.0).to_vec(), note.clone().into_bytes());
                write.put(keys::META_SIZE.to_vec(), size.0.to_be_bytes().to_vec());
                self.shared.storage.write(write, true)?;
                Ok(note)
            });
        match result {
            Ok(note) => {
                // Durable now: the new nodes may enter the cache, where every receipt's
                // proof will look for them.
                for (level, index, hash) in &staged.written {
                    self.shared.cache.put(*level, *index, *hash);
                }
                let published = Arc::new(Published { size, root, note });
                self.shared.set_latest(Arc::clone(&published));
                self.policy.finish(true);
                self.maybe_snapshot(size, root, before.size());
                self.remember_checkpoint(size, root);
                for (p, index) in accepted {
                    let leaf_hash = p.event.leaf_hash();
                    self.recent.insert(leaf_hash, index);
                    p.answer(Ok(Appended {
                        index,
                        leaf_hash,
                        checkpoint: Arc::clone(&published),
                    }));
                }
                answer_held(held, &published);
            }
            Err(e) => {
                tracing::error!(error = %e, "batch write failed; nothing in it is acknowledged");
                self.policy.finish(false);
                // A failed write may still have landed (a WAL record written before a failed
                // fsync is replayed on reopen), so the next batch must continue from what
                // storage holds, never from the assumption that nothing landed.
                let before_size = before.size();
                self.frontier = before;
                if let Ok(Some((frontier, note))) = recover(&self.shared.storage)
                    && frontier.size() > self.frontier.size()
                {
                    tracing::warn!(size = %frontier.size(), "the failed batch is in storage after all; continuing after it");
                    let published = Published {
                        size: frontier.size(),
                        root: frontier.root(),
                        note,
                    };
                    self.shared.set_latest(Arc::new(published));
                    self.frontier = frontier;
                    // What landed must reach the policy too: rebuild it from storage.
                    // The policy holds the state as of `before` (the batch was forgotten):
                    // what follows it must reach the policy.
                    if let Err(e) = replay_tracked(
                        &self.shared.storage,
                        self.policy.as_ref(),
                        before_size,
                        self.frontier.size(),
                    ) {
                        tracing::error!(error = %e, "cannot rebuild the append policy's state");
                    }
                    if let Ok(window) =
                        recent_checkpoints(&self.shared.storage, self.frontier.size())
                    {
                        self.window = window;
                    }
                }
                let landed = self.frontier.size();
                for (p, index) in accepted {
                    if index.0 < landed.0 {
                        // It is in storage after all: never appended again.
                        self.recent.insert(p.event.leaf_hash(), index);
                    }
                    p.answer(Err(AppendError::Storage(e.clone())));
                }
                answer_held_unless_beyond(held, &self.shared.latest.read(), &e);
            }
        }
        answer_refused(refused);
    }
}

/// Answer events the log held already with their entry under `checkpoint`.
fn answer_held(held: Vec<(Pending, LeafIndex)>, checkpoint: &Arc<Published>) {
    for (p, index) in held {
        let leaf_hash = p.event.leaf_hash();
        p.answer(Ok(Appended {
            index,
            leaf_hash,
            checkpoint: Arc::clone(checkpoint),
        }));
    }
}

/// After a failed write: events held by earlier batches still get their receipt; those
/// that were first sent in the failed batch get its error.
fn answer_held_unless_beyond(
    held: Vec<(Pending, LeafIndex)>,
    checkpoint: &Arc<Published>,
    error: &StorageError,
) {
    let (durable, lost): (Vec<_>, Vec<_>) = held
        .into_iter()
        .partition(|(_, index)| index.0 < checkpoint.size.0);
    answer_held(durable, checkpoint);
    for (p, _) in lost {
        p.answer(Err(AppendError::Storage(error.clone())));
    }
}

fn answer_refused(refused: Vec<(Pending, AppendError)>) {
    for (p, e) in refused {
        p.answer(Err(e));
    }
}
