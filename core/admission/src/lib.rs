//! # govern-admission
//!
//! What may enter the log, decided from the log alone (docs/design.md §4–§6): one copy of
//! the rules, run by the node's sequencer at append, by `govern replay`, by
//! `govern verify request` and by the workers that re-check a request's chain before acting
//! on it.
//!
//! - [`IdentityPolicy`] (`identity`): the node's [`AppendPolicy`]: genesis, manifests and
//!   their quorum, attested identities, liveness and quarantine, then the routing graph, then
//!   for tenant kinds the user-action checks. [`ServicesView`] and
//!   [`IdentityPolicy::live_identity`] answer "is this producer live, pinned and not
//!   quarantined" for a release request or a hop of a receipt chain.
//! - `routing`: the manifest's routing graph ([`ManifestPolicy`] over a
//!   [`ProducerAllowList`], for tests and the benchmark's baseline).
//! - [`actions`]: user actions against the tenants fold: signature, credential, role,
//!   anchor, nonce, counter, the signed path binding the object, the sealing rules.
//!
//! It is pure: no clock (every time it judges by is an event's recorded `time`), no I/O
//! (the log is a [`LogView`] handed in), no keys. It depends on govern-core (the contract:
//! `govern_core::append`) and govern-projections (the folds it judges against), never on
//! the store, a server or RocksDB.
#![forbid(unsafe_code)]

pub mod actions;
mod allow;
pub mod custody;
mod identity;
mod routing;

pub use allow::ProducerAllowList;
pub use govern_core::append::{
    AppendError, AppendPolicy, IdentityError, LogView, ParentInfo, UserActionError,
};
pub use identity::{
    ATTESTED_KIND, Claim, Committed, Identity, IdentityPolicy, InForce, LOG_ROLE, ManifestSummary,
    QUARANTINED_KIND, Quarantine, RSA_KEY_BITS, ServiceStatus, ServicesView, StateView,
    attested_body, check_producer,
};
pub use routing::ManifestPolicy;
