//! # govern-api
//!
//! The node: the log's HTTP endpoints (append, entries, proofs, C2SP checkpoint and tiles)
//! over axum, the data directory they run on, the edge API ([`edge`]), the key service
//! ([`keys`]) and OpenAPI ([`openapi`]).
//!
//! Every error leaves through one mapping, [`problem::Problem`], as RFC 9457
//! `application/problem+json` with a stable `type` per kind.
#![forbid(unsafe_code)]

pub mod boot;
pub mod datadir;
pub mod devpin;
pub mod edge;
pub mod keys;
#[cfg(feature = "nitro-kms")]
pub mod kms;
pub mod openapi;
pub mod preflight;
pub mod problem;
pub mod requests;
pub mod routes;
pub mod tenant_keys;
pub mod ui;
pub mod witnessing;

pub use boot::{Attestor, LocalService, Services, attest};
pub use datadir::{DataDir, DataDirError, NodeHandle, RouterSwitch};
pub use routes::{AppState, Standby, router};
