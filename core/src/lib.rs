//! # govern-core
//!
//! Everything an auditor needs to check govern's log, and nothing that does I/O: sockets,
//! files and clocks are passed in, so the same code runs in the node, in a worker and in
//! the auditor's CLI.
//!
//! - [`ids`]: newtypes for indices, sizes, hashes and ids.
//! - [`kinds`]: the vocabulary: every event kind and the sets of kinds each part reads.
//! - [`canonical`]: RFC 8785 (JCS) canonical JSON.
//! - [`event`]: the signed event envelope.
//! - [`merkle`]: RFC 9162 tree hashing, inclusion and consistency proofs.
//! - [`note`] and [`checkpoint`]: C2SP `signed-note` and `tlog-checkpoint`.
//! - [`tiles`]: C2SP `tlog-tiles` coordinates and paths.
//! - [`attestation`]: AWS Nitro attestation documents against a pinned root, and the
//!   service-identity binding in their `user_data`.
//! - [`action`]: user action signatures (passkeys and API keys) verified offline.
//! - [`append`]: the append contract: `AppendPolicy`, `LogView`, `Clock` and the typed
//!   refusals (`AppendError`, `IdentityError`, `UserActionError`, `StorageError`).
//! - [`manifest`]: signed manifests: every role's measurements, scopes and routing, every
//!   event kind's producers, parents and uniqueness key.
#![forbid(unsafe_code)]

pub mod action;
pub mod append;
pub mod attestation;
pub mod canonical;
pub mod checkpoint;
pub mod event;
pub mod ids;
pub mod kinds;
pub mod manifest;
pub mod merkle;
pub mod note;
pub mod proof;
pub mod seal;
pub mod tiles;
pub mod witness;
