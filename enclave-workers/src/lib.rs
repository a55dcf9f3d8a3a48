//! # govern-workers
//!
//! Will own the enclave workers, which accept no inbound connection and read the log as
//! their only input: the poll loop, the attestation providers (a simulated NSM for dev
//! mode, the real NSM behind feature `nitro`), the policy worker, the five threshold
//! signers and the witness.
//!
//! Nothing is here yet: the foundation issue builds the log these workers will poll.
#![forbid(unsafe_code)]
