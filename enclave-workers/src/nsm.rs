//! Attestation providers: where a service gets the AWS Nitro attestation document that
//! binds its keys to its measurements (docs/design.md §6).
//!
//! [`Nsm`] is the one interface: ask for a document carrying a `public_key`, `user_data` and
//! `nonce` ([`AttestationRequest`]), or read the PCRs the document will carry. Two
//! providers implement it:
//!
//! - [`NitroNsm`] (feature `nitro`): the real Nitro Secure Module, through `/dev/nsm` with
//!   AWS's `aws-nitro-enclaves-nsm-api`. The hypervisor measures the enclave image and signs
//!   with a certificate chaining to AWS Nitro Enclaves Root-G1. Works only inside an
//!   enclave.
//! - [`SimulatedNsm`] (dev mode): issues documents in exactly Nitro's format from a dev CA
//!   kept in a directory (the node's `<data-dir>/dev-ca/`), so the same verifier
//!   ([`govern_core::attestation::Verifier`]) checks both, pinned to a different root.
//!
//! # The simulated NSM's documents
//! Byte for byte the shape Nitro sends: an untagged COSE_Sign1 `[h'A10138 22', {}, payload,
//! signature]` — protected header `{1: -35}` (ES384), empty unprotected header — whose
//! payload is a CBOR map with the nine fields in AWS's order: `module_id` (text,
//! `dev-<role>-enc<16 hex>`, new per leaf), `digest` (`"SHA384"`), `timestamp` (unsigned,
//! Unix milliseconds), `pcrs` (map of PCR 0–15 to 48-byte strings), `certificate` (the
//! leaf, DER), `cabundle` (`[root, intermediate]`, DER, root first as Nitro does),
//! `public_key`, `user_data`, `nonce` (byte strings, or nil when not asked for). The
//! signature is ECDSA P-384 over SHA-384, as the 96 bytes r ‖ s COSE requires, by the
//! leaf's key.
//!
//! # The dev CA
//! Kept in one directory, created with mode 0700 when absent:
//!
//! | file | what | made |
//! |---|---|---|
//! | `root.der` | root certificate: P-384, self-signed, CA, keyCertSign, 30 years | once; never replaced |
//! | `root.key` | its private key, PKCS#8 DER, mode 0600 | once |
//! | `intermediate.der` | CA with pathLen 0, keyCertSign, 10 years, issued by the root | once; reissued when missing, unreadable, not matching its key, or within a year of expiry |
//! | `intermediate.key` | its private key, PKCS#8 DER, mode 0600 | with the certificate |
//! | `ca.lock` | a lock file: processes starting together create one CA, not several | once |
//!
//! The leaf (not a CA, digitalSignature, valid [`DEV_LEAF_VALIDITY`] = 3 h like Nitro's) and
//! its key are made in memory when a [`SimulatedNsm`] is opened — once per boot — and never
//! written anywhere. A document is always signed by a leaf that stays valid at least
//! [`DEV_LEAF_MIN_REMAINING`] after it: a process that lives longer gets a fresh leaf, as
//! Nitro rotates its own. `root.der` is what a dev manifest pins
//! ([`govern_core::attestation::TrustAnchor::from_der`]); [`dev_root_der`] makes the CA if
//! needed and returns it without attesting. A private key file readable by anyone but its
//! owner is refused, as ssh refuses one.
//!
//! # Dev PCRs
//! All 48 bytes (SHA-384), deterministic, and bound to the role, so each role has its own
//! measurements as each production role has its own image:
//!
//! | PCR | Nitro measures | dev value |
//! |---|---|---|
//! | 0 | the enclave image | SHA-384(executable file bytes ‖ role), [`dev_measurement`] |
//! | 1 | the kernel and bootstrap | SHA-384(`"govern-dev-kernel"` ‖ role) |
//! | 2 | the application | SHA-384(`"govern-dev-application"` ‖ role) |
//! | 3 | the parent instance's IAM role | zero: there is no parent instance |
//! | 4 | the parent instance's id | zero, likewise |
//! | 5–7, 9–15 | nothing (zero on Nitro too) | zero |
//! | 8 | the image's signing certificate | zero: dev images are not signed |
//!
//! "Role" is the role name's bytes, with no separator. The executable is the file the
//! process runs (`std::env::current_exe()`), read once when the [`SimulatedNsm`] is opened,
//! so a rebuilt or altered binary gets a different PCR0 and a manifest pinning the old one
//! refuses it. PCR1 and PCR2 are constants of the role and only keep the debug-enclave
//! check (PCR0–2 all zero) meaningful. [`dev_pcrs`] returns the whole set.
//!
//! # What dev mode does not protect
//! The dev CA's keys sit in the data directory: anyone who can read it can sign any
//! document with any PCRs. Dev documents show that an honest process runs the binary the
//! manifest pins; they prove nothing against whoever controls the machine. That is why a
//! production build refuses any manifest that pins a dev root.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use govern_core::attestation::{
    AttestationError, NONCE_BYTES_MAX, PUBLIC_KEY_BYTES_MAX, USER_DATA_BYTES_MAX,
};

#[cfg(feature = "nitro")]
mod nitro;
mod simulated;

#[cfg(feature = "nitro")]
pub use nitro::NitroNsm;
pub use simulated::{
    DEV_INTERMEDIATE_VALIDITY, DEV_LEAF_MIN_REMAINING, DEV_LEAF_VALIDITY, DEV_ROOT_VALIDITY,
    SimulatedNsm, dev_measurement, dev_measurements, dev_pcrs, dev_root_der,
};

/// The PCRs a document carries and [`Nsm::describe_pcrs`] returns: 0 to 15, as Nitro's
/// documents do.
pub const DOCUMENT_PCRS: u8 = 16;

/// What to bind into a document. Each field is optional, as in Nitro's API; an absent one
/// is nil in the document. Sizes are AWS's: `public_key` 1–1024 bytes, `user_data` and
/// `nonce` at most 512 each.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AttestationRequest {
    /// docs/design.md §6: the service's RSA-2048 public key (DER), which AWS KMS encrypts to.
    pub public_key: Option<Vec<u8>>,
    /// docs/design.md §6: a [`govern_core::attestation::UserData`] binding, encoded.
    pub user_data: Option<Vec<u8>>,
    /// docs/design.md §6: the root of a recent checkpoint.
    pub nonce: Option<Vec<u8>>,
}

impl AttestationRequest {
    /// A request binding all three, as a service's identity does.
    #[must_use]
    pub fn new(public_key: Vec<u8>, user_data: Vec<u8>, nonce: Vec<u8>) -> Self {
        Self {
            public_key: Some(public_key),
            user_data: Some(user_data),
            nonce: Some(nonce),
        }
    }

    /// Check the sizes the verifier (and the NSM) accept.
    ///
    /// # Errors
    /// [`NsmError::RequestField`] naming the first field out of bounds.
    pub fn check(&self) -> Result<(), NsmError> {
        let fields = [
            ("public_key", &self.public_key, 1, PUBLIC_KEY_BYTES_MAX),
            ("user_data", &self.user_data, 0, USER_DATA_BYTES_MAX),
            ("nonce", &self.nonce, 0, NONCE_BYTES_MAX),
        ];
        for (field, value, min, max) in fields {
            if let Some(value) = value
                && (value.len() < min || value.len() > max)
            {
                return Err(NsmError::RequestField {
                    field,
                    len: value.len(),
                    min,
                    max,
                });
            }
        }
        Ok(())
    }
}

/// A source of attestation documents: the Nitro Secure Module, or its dev simulation.
pub trait Nsm: Send + Sync + fmt::Debug {
    /// A fresh document binding `request`: COSE_Sign1 bytes, as the NSM returns them.
    ///
    /// # Errors
    /// [`NsmError::RequestField`] for a field out of bounds; otherwise the provider's
    /// failure (the device refused, or the dev CA could not sign).
    fn attest(&self, request: AttestationRequest) -> Result<Vec<u8>, NsmError>;

    /// PCR 0 to [`DOCUMENT_PCRS`]` - 1`, as the documents carry them.
    ///
    /// # Errors
    /// The device's refusal ([`NitroNsm`]); the simulation does not fail.
    fn describe_pcrs(&self) -> Result<BTreeMap<u8, Vec<u8>>, NsmError>;
}

/// Why an attestation provider could not produce a document.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NsmError {
    /// The caller's request has a field the NSM and the verifier refuse.
    #[error("attestation request {field} is {len} bytes; allowed {min}..={max}")]
    RequestField {
        /// `public_key`, `user_data` or `nonce`.
        field: &'static str,
        /// Its length.
        len: usize,
        /// The least allowed.
        min: usize,
        /// The most allowed.
        max: usize,
    },
    /// Reading or writing the dev CA or the executable failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A dev CA private key file is readable by others than its owner.
    #[error("{}: private key has mode {mode:o}; it must be 600 (owner only)", path.display())]
    KeyPermissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The dev CA on disk is unusable (a root without its key, a key that is not its
    /// certificate's, an expired root). It is never replaced silently: manifests pin it.
    #[error("dev CA {}: {reason}", dir.display())]
    DevCa {
        /// The CA directory.
        dir: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A certificate could not be built.
    #[error("building the dev {what} certificate: {reason}")]
    Certificate {
        /// `root`, `intermediate` or `leaf`.
        what: &'static str,
        /// The builder's complaint.
        reason: String,
    },
    /// The document could not be encoded.
    #[error("encoding the attestation document: {reason}")]
    Encoding {
        /// The encoder's complaint.
        reason: String,
    },
    /// The simulated NSM's first document did not pass the verifier: a bug, or a dev CA
    /// that is not what it claims.
    #[error("dev CA {}: a fresh document does not verify: {source}", dir.display())]
    SelfCheck {
        /// The CA directory.
        dir: PathBuf,
        /// The verifier's refusal.
        #[source]
        source: AttestationError,
    },
    /// The NSM device could not be opened (not inside a Nitro enclave?).
    #[error("NSM device {device}: {reason}")]
    Device {
        /// The device path.
        device: &'static str,
        /// What went wrong.
        reason: String,
    },
    /// The NSM refused a request.
    #[error("NSM refused {request}: {code}")]
    Refused {
        /// The request.
        request: &'static str,
        /// The NSM's error code.
        code: String,
    },
    /// The NSM answered with a response of another kind.
    #[error("NSM answered {request} with an unexpected response")]
    UnexpectedResponse {
        /// The request.
        request: &'static str,
    },
}
