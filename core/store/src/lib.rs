//! # govern-store
//!
//! The log on disk: a group-commit sequencer that validates, sequences and writes batches of
//! events with their tree hashes and a signed checkpoint in one synced write, and the reads
//! that serve entries, C2SP tiles, checkpoints and proofs from O(log n) stored hashes.
//!
//! Storage sits behind the small [`Storage`] trait: [`RocksStorage`] in production and
//! [`MemoryStorage`], a double that loses unsynced writes on a simulated power failure.
//! Nothing here is needed to *verify* the log: that is `govern-core`, which never links
//! RocksDB. The store judges nothing itself: it asks an [`AppendPolicy`] (the contract in
//! `govern_core::append`; the node's is govern-admission's `IdentityPolicy`) and stores
//! bytes, tree nodes, checkpoints and indexes. It depends on govern-core only.
#![forbid(unsafe_code)]

mod cache;
mod keys;
mod log;
pub mod replay;
mod rocks;
mod storage;
mod strata;

pub use cache::NODE_CACHE_SLOTS;
pub use govern_core::append::{
    AppendError, AppendPolicy, Clock, Entropy, LogView, NONCE_WINDOW_CHECKPOINTS, ParentInfo,
    StorageError,
};
pub use log::{
    Appended, Appender, BATCH_EVENTS_MAX, BATCH_WAIT_MS, Follower, Log, LogConfig, LogReader,
    NodeLog, OsEntropy, Published, QUEUE_EVENTS_MAX, ReadError, SNAPSHOT_EVERY, SystemClock,
    TIME_SKEW_MS,
};
pub use replay::{Replay, ReplayError};
pub use rocks::RocksStorage;
pub use storage::{Batch, MemoryStorage, Pairs, Storage};
pub use strata::{STRATUM_BYTES, STRATUM_HASHES};
