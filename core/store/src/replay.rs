//! Replaying a log into fresh storage (docs/design.md §9): `govern replay`.
//!
//! A replay takes the log's entries batch by batch, each batch being the entries between two
//! consecutive signed checkpoints, and puts every entry through the same checks the
//! sequencer ran when it was appended: the append policy (identities at each event's
//! recorded time, manifests, the routing graph, user signatures and their anchor distance,
//! tenant rules) and the uniqueness keys, with the nonce window rebuilt from the same
//! checkpoints. It stores them as the sequencer stores them ([`crate::log::Staged`]) and
//! then stores the source's checkpoint verbatim, once it has checked that the checkpoint is
//! signed by the log's key and names exactly the tree the entries make. The result is a
//! store a [`crate::LogReader`] serves and whose policy state is the source's.
//!
//! Two checks a replay does differently from the sequencer:
//! - **Time.** The sequencer compared each event's time with its clock, which no one can
//!   replay. A replay judges everything by the events' recorded times (as the policy
//!   always does) and checks only that an event is not older than the previous batch's
//!   newest event by more than twice the skew, which any log whose clock did not jump back
//!   satisfies.
//! - **The log's own follow-ups.** Where the policy says the log owed an event (a
//!   quarantine after a manifest stopped pinning a measurement), the replay checks that the
//!   very next entry is that event, so a log cannot skip the hop.
//!
//! The first failure stops the replay, naming the index (or the checkpoint's size).

use std::collections::VecDeque;
use std::sync::Arc;

use govern_core::checkpoint::Checkpoint;
use govern_core::event::{Event, SignedEvent, Timestamp};
use govern_core::ids::{RootHash, TreeSize};
use govern_core::merkle::Frontier;
use govern_core::note::NoteVerifier;

use crate::keys;
use crate::log::{Staged, add_strata};
use crate::storage::{Storage, StorageError};
use govern_core::append::{AppendPolicy, NONCE_WINDOW_CHECKPOINTS};

/// Why a replay stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayError {
    /// An entry fails a check.
    #[error("entry {index}: {reason}")]
    Entry {
        /// Its index.
        index: u64,
        /// Why.
        reason: String,
    },
    /// A checkpoint does not verify or does not describe the entries.
    #[error("checkpoint of size {size}: {reason}")]
    Checkpoint {
        /// Its size.
        size: u64,
        /// Why.
        reason: String,
    },
    /// Two checkpoints signed by the log's key name different trees at one size.
    #[error("fork: two checkpoints of size {size} signed by the log's key name roots {a} and {b}")]
    Fork {
        /// The size.
        size: u64,
        /// One root.
        a: RootHash,
        /// The other.
        b: RootHash,
    },
    /// The fresh storage is not empty, or failed.
    #[error("replay store: {0}")]
    Storage(String),
}

impl From<StorageError> for ReplayError {
    fn from(e: StorageError) -> Self {
        Self::Storage(e.to_string())
    }
}

/// A replay in progress into `storage`.
pub struct Replay<S: Storage> {
    storage: S,
    policy: Arc<dyn AppendPolicy>,
    origin: String,
    verifier: NoteVerifier,
    frontier: Frontier,
    window: VecDeque<(TreeSize, RootHash)>,
    time_skew_ms: i64,
    /// The newest event time of the batches so far.
    newest: Option<Timestamp>,
    /// What the batches since the last write staged (written every [`REPLAY_WRITE_ENTRIES`]
    /// entries and at the end: one RocksDB write per few thousand entries, not per batch).
    staged: Staged,
    unwritten: u64,
    /// A batch failed: the replay is over.
    failed: bool,
}

/// How many entries a replay stages before it writes them.
pub const REPLAY_WRITE_ENTRIES: u64 = 4096;

impl<S: Storage> std::fmt::Debug for Replay<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replay")
            .field("origin", &self.origin)
            .field("size", &self.frontier.size())
            .finish_non_exhaustive()
    }
}

/// Parse and check a signed checkpoint of the log.
///
/// # Errors
/// [`ReplayError::Checkpoint`] naming `size` when it does not verify.
pub fn open_checkpoint(
    note: &[u8],
    origin: &str,
    verifier: &NoteVerifier,
    size: u64,
) -> Result<Checkpoint, ReplayError> {
    Checkpoint::open(note, origin, verifier)
        .map(|(cp, _)| cp)
        .map_err(|e| ReplayError::Checkpoint {
            size,
            reason: e.to_string(),
        })
}

impl<S: Storage> Replay<S> {
    /// Begin a replay of the log `origin`, whose checkpoints `verifier` checks, into empty
    /// `storage`, under `policy` (the node's policy, built with the log's key and the
    /// manifest signers the replayer pins). `genesis`: the log's checkpoint of size 0.
    ///
    /// # Errors
    /// [`ReplayError::Storage`] when `storage` holds a log already;
    /// [`ReplayError::Checkpoint`] when `genesis` is not the log's empty tree.
    pub fn new(
        storage: S,
        origin: impl Into<String>,
        verifier: NoteVerifier,
        policy: Arc<dyn AppendPolicy>,
        time_skew_ms: i64,
        genesis: &[u8],
    ) -> Result<Self, ReplayError> {
        if storage.get(keys::META_SIZE)?.is_some() {
            return Err(ReplayError::Storage(
                "the store already holds a log: replay into a fresh data dir".into(),
            ));
        }
        let origin = origin.into();
        let cp = open_checkpoint(genesis, &origin, &verifier, 0)?;
        let frontier = Frontier::new();
        if cp.size.0 != 0 || cp.root != frontier.root() {
            return Err(ReplayError::Checkpoint {
                size: cp.size.0,
                reason: "the first checkpoint is not the empty tree".into(),
            });
        }
        let mut batch = crate::storage::Batch::new();
        batch.put(keys::checkpoint(0).to_vec(), genesis.to_vec());
        batch.put(keys::META_SIZE.to_vec(), 0u64.to_be_bytes().to_vec());
        storage.write_bulk(batch)?;
        let mut window = VecDeque::new();
        window.push_back((TreeSize(0), frontier.root()));
        Ok(Self {
            storage,
            policy,
            origin,
            verifier,
            frontier,
            window,
            time_skew_ms,
            newest: None,
            staged: Staged::new(),
            unwritten: 0,
            failed: false,
        })
    }

    /// The size replayed so far.
    #[must_use]
    pub fn size(&self) -> TreeSize {
        self.frontier.size()
    }

    /// The root of the tree replayed so far.
    #[must_use]
    pub fn root(&self) -> RootHash {
        self.frontier.root()
    }

    /// Replay one batch: `events` (already parsed, so their signatures verified) are the
    /// entries from [`Replay::size`] on, and `note` the checkpoint the log signed after
    /// them.
    ///
    /// # Errors
    /// The first [`ReplayError`]. The replay is over then: the store holds a prefix of the
    /// log (up to the last write), and later batches are refused.
    pub fn batch(&mut self, events: &[SignedEvent], note: &[u8]) -> Result<(), ReplayError> {
        if self.failed {
            return Err(ReplayError::Storage(
                "an earlier batch failed; the replay is over".into(),
            ));
        }
        match self.stage(events, note) {
            Ok(()) => {
                self.policy.finish(true);
                if self.window.len() >= NONCE_WINDOW_CHECKPOINTS {
                    self.window.pop_front();
                }
                self.window
                    .push_back((self.frontier.size(), self.frontier.root()));
                if let Some(t) = events.iter().map(|e| e.event().time).max() {
                    self.newest = Some(self.newest.map_or(t, |n| n.max(t)));
                }
                self.unwritten += events.len() as u64;
                if self.unwritten >= REPLAY_WRITE_ENTRIES {
                    self.write_staged(false)?;
                }
                Ok(())
            }
            Err(e) => {
                // What the batches since the last write staged is not written: the store
                // holds a prefix of the log, and the replay is over.
                self.failed = true;
                self.policy.finish(false);
                Err(e)
            }
        }
    }

    /// Write what is staged: the entries, their indices and tree nodes, the stratum blobs
    /// they completed, every checkpoint, and the size.
    fn write_staged(&mut self, sync: bool) -> Result<(), ReplayError> {
        let mut staged = std::mem::replace(&mut self.staged, Staged::new());
        add_strata(&self.storage, &mut staged.write, &staged.written)?;
        let mut write = std::mem::take(&mut staged.write);
        write.put(
            keys::META_SIZE.to_vec(),
            self.frontier.size().0.to_be_bytes().to_vec(),
        );
        self.storage.write_bulk(write)?;
        if sync {
            self.storage.persist()?;
        }
        self.unwritten = 0;
        Ok(())
    }

    fn stage(&mut self, events: &[SignedEvent], note: &[u8]) -> Result<(), ReplayError> {
        let staged = &mut self.staged;
        let mut owed: VecDeque<(u64, Event)> = VecDeque::new();
        for signed in events {
            let index = self.frontier.size().0;
            let fail = |reason: String| ReplayError::Entry { index, reason };
            let event = signed.event();
            if let Some((after, due)) = owed.pop_front()
                && !same_followup(&due, event)
            {
                return Err(fail(format!(
                    "after entry {after} the log owed its own {} for {}, and entry {index} is a {} instead",
                    due.kind,
                    due.body
                        .get("measurement")
                        .and_then(serde_json::Value::as_str)
                        .unwrap_or("?"),
                    event.kind
                )));
            }
            if let Some(newest) = self.newest {
                let floor = newest
                    .unix_ms()
                    .saturating_sub(2 * self.time_skew_ms.max(0));
                if event.time.unix_ms() < floor {
                    return Err(fail(format!(
                        "its time {} is more than twice the log's skew before an earlier batch's {newest}",
                        event.time
                    )));
                }
            }
            // One event is one entry: a log holding one twice was not made by this policy.
            staged
                .check_new(&self.storage, signed)
                .map_err(|e| fail(e.to_string()))?;
            let claims = staged
                .check(
                    &self.storage,
                    self.policy.as_ref(),
                    signed,
                    index,
                    &self.window,
                )
                .map_err(|e| fail(e.to_string()))?;
            staged.accept(&mut self.frontier, self.policy.as_ref(), signed, claims);
            owed.extend(self.policy.followups().into_iter().map(|e| (index, e)));
        }
        if let Some((after, due)) = owed.pop_front() {
            return Err(ReplayError::Entry {
                index: after,
                reason: format!(
                    "the log owed its own {} after this entry and its batch ended without it",
                    due.kind
                ),
            });
        }
        let size = self.frontier.size();
        let cp = open_checkpoint(note, &self.origin, &self.verifier, size.0)?;
        if cp.size != size {
            return Err(ReplayError::Checkpoint {
                size: cp.size.0,
                reason: format!("expected the checkpoint after entry {}", size.0 - 1),
            });
        }
        if cp.root != self.frontier.root() {
            return Err(ReplayError::Checkpoint {
                size: size.0,
                reason: format!(
                    "it says root {} but the entries hash to {}",
                    cp.root,
                    self.frontier.root()
                ),
            });
        }
        staged
            .write
            .put(keys::checkpoint(size.0).to_vec(), note.to_vec());
        Ok(())
    }

    /// Make everything durable and hand the store back.
    ///
    /// # Errors
    /// [`ReplayError::Storage`] when the final synced write fails.
    pub fn finish(mut self) -> Result<S, ReplayError> {
        if self.failed {
            return Err(ReplayError::Storage(
                "a batch failed; the replay is over".into(),
            ));
        }
        self.write_staged(true)?;
        self.policy.resumed(self.frontier.size());
        Ok(self.storage)
    }
}

/// Whether `event` is the follow-up `due` the policy asked the log for: same kind, the
/// log's role, the same measurement.
fn same_followup(due: &Event, event: &Event) -> bool {
    due.kind == event.kind
        && due.producer.role == event.producer.role
        && due.body.get("measurement") == event.body.get("measurement")
}
