//! # govern-archive
//!
//! The export format and what reads it, in one library for the CLI (`govern export`,
//! `govern replay`) and the golden replays (govern-replay-tests):
//!
//! - [`layout`]: the export directory, a static C2SP `tlog-tiles` directory with the log's
//!   checkpoints, manifests and the trust a replay needs, file by file.
//! - [`write`]: [`write::ExportWriter`], which makes one (in `DIR.partial`, renamed to `DIR`
//!   once complete) from whatever source hands it the tiles and checkpoints.
//! - [`trust`]: the trust a replay starts from (the log's verifier key, the manifest signers,
//!   a dev log's CA root, a witness policy), from the caller's pins or the export's own files.
//! - [`read`]: reading and checking an export: its checkpoints (verified, no fork, no
//!   truncation), its entry bundles (parsed and their producer signatures verified by one
//!   worker per core), its hash tiles and manifest files against the replayed entries.
//! - [`replay`]: the replay driver: an export's entries into fresh storage (any
//!   `govern_store::Storage`) through the node's append policy, batch by batch at its signed
//!   checkpoints (govern-store's `Replay`), to the tree and state roots it reaches.
//!
//! No HTTP and no server: exporting from a running node fetches with the CLI's client and
//! hands the bytes to the writer.
#![forbid(unsafe_code)]

pub mod layout;
pub mod read;
pub mod replay;
pub mod trust;
pub mod write;

/// An error of this crate's drivers: a [`read::Failure`], a `govern_store::ReplayError` or a
/// message, boxed.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// What a replay tells whoever runs it, as it goes.
pub trait Observer {
    /// A line for the operator: which trust was taken from the export, which checkpoint
    /// the replay agrees with.
    fn note(&mut self, line: &str);
    /// The replay of `total` entries begins.
    fn start(&mut self, total: u64);
    /// `done` entries are replayed.
    fn at(&mut self, done: u64);
    /// Every entry is replayed.
    fn done(&mut self);
}

/// An [`Observer`] that says nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct Silent;

impl Observer for Silent {
    fn note(&mut self, _line: &str) {}
    fn start(&mut self, _total: u64) {}
    fn at(&mut self, _done: u64) {}
    fn done(&mut self) {}
}
