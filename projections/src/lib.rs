//! # govern-projections
//!
//! Pure folds `apply(state, event)` from the log into state (docs/design.md §9): tenants, their
//! users, invitations, credentials, wallets, requests and key status ([`tenants`]); the
//! service inventory ([`services`]); and the two together with their state root
//! ([`state`]). The policy engine's evaluations and decisions ([`policy`]) are a fold of the
//! same kind, over the log and the payloads its reader could open. The node's append policy keeps its state in these very types and judges
//! by them; the node's read endpoints, replays and auditors read the same.
#![forbid(unsafe_code)]

pub mod policy;
pub mod services;
pub mod state;
pub mod tenants;
