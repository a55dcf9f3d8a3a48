//! # govern-workers
//!
//! The enclave workers, which accept no inbound connection and read the log as their only
//! input (docs/design.md §2).
//!
//! What is here now:
//! - [`nsm`]: the attestation providers behind one trait, [`nsm::Nsm`] — the simulated NSM
//!   for dev mode ([`nsm::SimulatedNsm`]: a dev CA in the data dir, a per-boot leaf,
//!   documents in Nitro's exact format, PCR0 = SHA-384(executable ‖ role)) and the real one
//!   behind feature `nitro` (`NitroNsm`, `/dev/nsm`). Documents from either are verified by
//!   `govern_core::attestation::Verifier`.
//!
//! - [`identity`]: a service's keys (Ed25519, X25519, RSA-2048), the document request that
//!   binds them, the `service.attested` event, and events signed under the identity.
//!
//! - [`durable`]: the one durable file write (temporary file, fsync, rename, fsync of the
//!   directory) the node's data dir files, the key service and the witness use.
//!
//! - [`runtime`]: what every worker does around its own logic, over outbound HTTP only:
//!   follow the log verified (log signature, witness quorum, consistency with its saved
//!   position), attest and re-attest, obtain scope keys by a signed release request, record
//!   its reads, append its results idempotently, with backoff and jitter while the node is
//!   away.
//!
//! - [`policy`]: the policy worker (`govern worker policy`), deciding transfers, policy
//!   changes and wallet requests by the tenants' policies with govern-projections' pure
//!   evaluation.
//!
//! - [`signer`]: the five threshold signers (`govern worker signer --index N`): aux info,
//!   key generation and 3-of-5 ECDSA signing with cggmp24, every protocol message carried by
//!   the log, each transfer's chain of custody re-checked before it is signed, the EIP-1559
//!   transaction built by each signer itself.
//!
//! It runs no server and opens no listening socket: the witness (`govern witness`) is the
//! govern-witness crate.
#![forbid(unsafe_code)]

pub mod durable;
pub mod identity;
pub mod nsm;
pub mod policy;
pub mod runtime;
pub mod signer;
