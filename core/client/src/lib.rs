//! # govern-client
//!
//! A client of a govern node, for anyone who talks to one over HTTP: the CLI, workers,
//! auditors' tools. It owns
//!
//! - [`wire`]: the JSON bodies of the node's endpoints, which the node's handlers serve and
//!   clients read, one definition for both;
//! - [`http`]: the size-capped HTTP client ([`Client`]) and its errors in words
//!   ([`ClientError`]), RFC 9457 problems included;
//! - [`witness`]: which witness policy a checkpoint is checked under (the one announced, held
//!   to the one remembered);
//! - [`action`]: the client side of User Action Signing: the challenge object asked for and
//!   checked against the action (salted body commitment included), signed with an API key
//!   or handed to a passkey, exchanged for a `userAction` token;
//! - [`release`]: the client side of a key release: the signed request a service sends the
//!   key service, and the opening of its HPKE-sealed answer;
//! - [`follower`]: a verified follower of a log ([`Follower`]), which hands a fold every entry
//!   in order, only under a checkpoint whose signature, cosignatures, tree and consistency
//!   with the position it remembers it has checked (docs/design.md §5).
//!
//! - [`scenario`] (feature `scenario`): the driver of `govern scenario`, which drives a node
//!   as its operator and users to make the golden exports; passkeys are the caller's.
//!
//! It must never depend on a server or on storage: no axum, no RocksDB (govern-store), no
//! webauthn-rs, and utoipa only behind the feature `openapi`, which only the node enables.
//! `cargo tree -p govern-client -e normal` shows what it links.
#![forbid(unsafe_code)]

pub mod action;
pub mod follower;
pub mod http;
pub mod release;
#[cfg(feature = "scenario")]
pub mod scenario;
pub mod wire;
pub mod witness;

pub use follower::{FollowError, Follower, Position, Update};
pub use http::{Client, ClientError, RESPONSE_BYTES_MAX, Serves, base_url};
