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
use govern_core::event::{SignedEvent, Timestamp, check_time};
use govern_core::ids::{Hash, LeafHash, LeafIndex, RootHash, TreeSize};
use govern_core::merkle::{self, Frontier, NodeSource, ProofError};
use govern_core::note::NoteSigner;
use govern_core::tiles::{TILE_HEIGHT, TILE_WIDTH, Tile};
use parking_lot::RwLock;
use tokio::sync::oneshot;

use crate::cache::NodeCache;
use crate::keys;
use crate::storage::{Batch, Storage};
use crate::strata;
use govern_core::append::{
    AppendError, AppendPolicy, Clock, LogView, NONCE_WINDOW_CHECKPOINTS, ParentInfo, StorageError,
};

mod follower;
mod limits;
mod reader;
mod recovery;
mod sequencer;
mod snapshot;
mod staged;

pub use follower::Follower;
use govern_core::kinds::is_tracked;
pub use limits::*;
pub use reader::*;
use recovery::*;
use sequencer::*;
use snapshot::*;
pub(crate) use staged::*;

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
        if let Some(reason) = self.reader.deposed() {
            return Err(AppendError::Storage(StorageError::Deposed(reason)));
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
pub trait Appender: Send + Sync + std::fmt::Debug + 'static {
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

    /// A receiver that sees every new latest checkpoint (it starts at the current one).
    fn subscribe(&self) -> tokio::sync::watch::Receiver<Arc<Published>>;

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

    fn subscribe(&self) -> tokio::sync::watch::Receiver<Arc<Published>> {
        LogReader::subscribe(self)
    }

    fn entry(&self, index: LeafIndex) -> Result<Vec<u8>, ReadError> {
        LogReader::entry(self, index)
    }
}

/// What a node's HTTP surface reads and writes of the log, whatever stores it: the
/// [`Appender`] and the public reads (tiles, proofs, roots, the tracked entries the state is
/// folded from). `govern-api` holds one of these, so its routes run over RocksDB or the
/// in-memory store alike.
pub trait NodeLog: Appender {
    /// The checkpoint origin line.
    fn origin(&self) -> &str;

    /// See [`LogReader::fold_tracked`].
    ///
    /// # Errors
    /// [`StorageError`].
    fn fold_tracked(
        &self,
        fold: &mut dyn FnMut(SignedEvent, LeafIndex),
    ) -> Result<Arc<Published>, StorageError>;

    /// See [`LogReader::root_at`].
    ///
    /// # Errors
    /// [`ReadError`].
    fn root_at(&self, size: TreeSize) -> Result<RootHash, ReadError>;

    /// See [`LogReader::index_of`].
    ///
    /// # Errors
    /// [`ReadError`].
    fn index_of(&self, leaf: &LeafHash) -> Result<Option<LeafIndex>, ReadError>;

    /// See [`LogReader::inclusion_proof`].
    ///
    /// # Errors
    /// [`ReadError`].
    fn inclusion_proof(&self, index: LeafIndex, size: TreeSize) -> Result<Vec<Hash>, ReadError>;

    /// See [`LogReader::consistency_proof`].
    ///
    /// # Errors
    /// [`ReadError`].
    fn consistency_proof(&self, from: TreeSize, to: TreeSize) -> Result<Vec<Hash>, ReadError>;

    /// See [`LogReader::tile`].
    ///
    /// # Errors
    /// [`ReadError`].
    fn tile(&self, tile: Tile) -> Result<Vec<u8>, ReadError>;

    /// See [`LogReader::checkpoints`].
    ///
    /// # Errors
    /// [`ReadError`].
    fn checkpoints(
        &self,
        from: TreeSize,
        to: TreeSize,
        limit: usize,
    ) -> Result<Vec<(TreeSize, String)>, ReadError>;
}

impl<S: Storage> NodeLog for Log<S> {
    fn origin(&self) -> &str {
        LogReader::origin(self)
    }

    fn fold_tracked(
        &self,
        fold: &mut dyn FnMut(SignedEvent, LeafIndex),
    ) -> Result<Arc<Published>, StorageError> {
        LogReader::fold_tracked(self, fold)
    }

    fn root_at(&self, size: TreeSize) -> Result<RootHash, ReadError> {
        LogReader::root_at(self, size)
    }

    fn index_of(&self, leaf: &LeafHash) -> Result<Option<LeafIndex>, ReadError> {
        LogReader::index_of(self, leaf)
    }

    fn inclusion_proof(&self, index: LeafIndex, size: TreeSize) -> Result<Vec<Hash>, ReadError> {
        LogReader::inclusion_proof(self, index, size)
    }

    fn consistency_proof(&self, from: TreeSize, to: TreeSize) -> Result<Vec<Hash>, ReadError> {
        LogReader::consistency_proof(self, from, to)
    }

    fn tile(&self, tile: Tile) -> Result<Vec<u8>, ReadError> {
        LogReader::tile(self, tile)
    }

    fn checkpoints(
        &self,
        from: TreeSize,
        to: TreeSize,
        limit: usize,
    ) -> Result<Vec<(TreeSize, String)>, ReadError> {
        LogReader::checkpoints(self, from, to, limit)
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
