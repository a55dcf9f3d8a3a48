//! # govern-projections
//!
//! Will own the pure folds `apply(state, event) -> state` from the log into tenant state
//! (users, credentials, wallets, policies, approval groups, requests and their status
//! history) and the service inventory, the state root over what can be derived without
//! tenant keys, and snapshots that make restarts fast but are never trusted over the log.
//!
//! Nothing is here yet: the foundation issue builds the log these folds will read.
#![forbid(unsafe_code)]
