//! # govern-store
//!
//! The log on disk: a group-commit sequencer that validates, sequences and writes batches of
//! events with their tree hashes and a signed checkpoint in one synced write, and the reads
//! that serve entries, C2SP tiles, checkpoints and proofs from O(log n) stored hashes.
//!
//! Storage sits behind the small [`Storage`] trait: [`RocksStorage`] in production and
//! [`MemoryStorage`], a double that loses unsynced writes on a simulated power failure.
//! Nothing here is needed to *verify* the log: that is `govern-core`, which never links
//! RocksDB.
#![forbid(unsafe_code)]

pub mod actions;
mod allow;
mod cache;
mod identity;
mod keys;
mod log;
pub mod replay;
mod rocks;
mod routing;
mod storage;
mod strata;

pub use allow::ProducerAllowList;
pub use cache::NODE_CACHE_SLOTS;
pub use identity::{
    ATTESTED_KIND, Committed, Identity, IdentityError, IdentityPolicy, InForce, LOG_ROLE,
    ManifestSummary, QUARANTINED_KIND, Quarantine, RSA_KEY_BITS, ServiceStatus, ServicesView,
    attested_body,
};
pub use log::{
    AppendError, AppendPolicy, Appended, BATCH_EVENTS_MAX, BATCH_WAIT_MS, Clock, IDENTITY_KINDS,
    Log, LogConfig, LogReader, LogView, NONCE_WINDOW_CHECKPOINTS, ParentInfo, Published,
    QUEUE_EVENTS_MAX, ReadError, SNAPSHOT_EVERY, SystemClock, TIME_SKEW_MS, is_tracked,
};
pub use replay::{Replay, ReplayError};
pub use rocks::RocksStorage;
pub use routing::ManifestPolicy;
pub use storage::{Batch, MemoryStorage, Pairs, Storage, StorageError};
pub use strata::{STRATUM_BYTES, STRATUM_HASHES};
