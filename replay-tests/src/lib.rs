//! # govern-replay-tests
//!
//! Will own the golden exported logs that CI replays for ever against their recorded tree
//! size and state root, the seeded scenario generator that produces them, and the storage
//! conformance suite that every implementation of the store's storage trait must pass.
//!
//! The conformance suite starts in `govern-store`'s own tests; it moves here with the
//! exports and replay of the projections issue.
#![forbid(unsafe_code)]
