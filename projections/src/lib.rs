//! # govern-projections
//!
//! Pure folds `apply(state, event)` from the log into state. So far: tenants, their users,
//! invitations, credentials and wallets ([`tenants`]), which the node's append policy judges
//! user actions by and the edge reads. Requests' status history, policies, the service
//! inventory, state roots and snapshots come with the projections issue.
#![forbid(unsafe_code)]

pub mod tenants;
