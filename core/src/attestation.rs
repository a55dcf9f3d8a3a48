//! AWS Nitro Enclaves attestation documents (docs/design.md §6): verification against a pinned root,
//! and the binding of a service identity in `user_data`.
//!
//! A document is a COSE_Sign1 (RFC 9052) signed with ES384 over a CBOR map with the fields
//! `module_id, digest, timestamp, pcrs, certificate, cabundle, public_key, user_data,
//! nonce` (AWS, "Verifying the root of trust"). [`Verifier::verify`] accepts a document only
//! when all of these hold, checked in this order so that the first failure names the cause:
//!
//! 1. the envelope: at most [`DOCUMENT_BYTES_MAX`] bytes, one CBOR item and nothing after
//!    it, a COSE_Sign1 (untagged, as AWS sends it, or with tag 18) whose *protected* header
//!    names ES384 (any other algorithm is refused before any signature is looked at), no
//!    critical header parameter, an attached payload and a 96-byte signature;
//! 2. the payload: a CBOR map with exactly the fields above, each once, with the types and
//!    sizes of AWS's specification (`digest` is `"SHA384"`, PCRs are 48 bytes, `public_key`
//!    1–1024 bytes, `user_data` and `nonce` at most 512 bytes, certificates 1–1024 bytes, at
//!    most [`CABUNDLE_CERTS_MAX`] in `cabundle`), nothing after it;
//! 3. the ES384 signature over the COSE `Sig_structure`, by the leaf certificate's P-384
//!    key (the leaf is not trusted yet; step 4 decides whether it may sign);
//! 4. the chain, built from the caller's pinned root: `cabundle[0]` is *ignored* (it is
//!    whatever root the sender claims), so `cabundle[1]` must be signed by the pinned root,
//!    each next certificate by the one before, and the leaf by the last; each link's issuer
//!    name equals its issuer's subject; every certificate, the pinned root included, is
//!    valid at the caller's `now`; CA certificates have basicConstraints `cA` and keyUsage
//!    `keyCertSign`, their path length constraints hold, the leaf is not a CA and has
//!    `digitalSignature`; no certificate carries a critical extension other than those two;
//!    only ECDSA P-384 with SHA-384, which is all AWS uses (the fixture's five certificates
//!    are all P-384/SHA-384, so P-256 and P-521 are not accepted);
//! 5. the document's own timestamp lies within the leaf's validity;
//! 6. PCR0, PCR1 and PCR2 are present and not all zero (a debug enclave), unless the
//!    caller allows debug; every PCR the caller pins is present and equal.
//!
//! Nothing here does I/O and the clock is an argument, so the node, a worker and an
//! auditor reach the same verdict on the same input. Every refusal is its own
//! [`AttestationError`] variant; no input makes this module panic.
//!
//! # Crates, and why
//! - [`coset`] (Google; used by Android's RKP and AuthFS) parses COSE_Sign1 and builds the
//!   `Sig_structure` from the protected header's *original* bytes, so a re-encoded header
//!   cannot verify.
//! - [`ciborium`] (coset's own CBOR library) decodes the payload into values we walk
//!   ourselves: duplicate keys, unknown fields and trailing bytes are refused here, and its
//!   decoder never preallocates from a length the input claims.
//! - [`x509_cert`] 0.2 / `der` 0.7 (RustCrypto formats) decode certificates strictly as DER;
//!   [`p384`] 0.13 (RustCrypto, `ecdsa` feature) verifies every signature. Both are of the
//!   RustCrypto generation the workspace pins (sha2 0.10), so no second `elliptic-curve`
//!   or `digest` is linked, and no C library or OpenSSL is.
//!
//! AWS's own verifier crates were passed over: `aws-nitro-enclaves-cose` pulls OpenSSL and
//! checks no chain; `aws-nitro-enclaves-nsm-api` decodes but verifies nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use ciborium::value::Value;
use coset::{AsCborValue as _, CoseSign1, RegisteredLabelWithPrivate, iana};
use p384::ecdsa::signature::Verifier as _;
use p384::ecdsa::{Signature, VerifyingKey};
use sha2::{Digest as _, Sha256};
use x509_cert::Certificate;
use x509_cert::der::oid::ObjectIdentifier;
use x509_cert::der::oid::db::{rfc5280, rfc5912};
use x509_cert::der::{Decode as _, Encode as _};
use x509_cert::ext::pkix::{BasicConstraints, KeyUsage};

use crate::event::{ROLE_BYTES_MAX, Role, Timestamp};

/// AWS Nitro Enclaves Root-G1, DER, as AWS publishes it (and as the genuine fixture's
/// `cabundle[0]` carries it).
pub const AWS_NITRO_ROOT_G1_DER: &[u8] = include_bytes!("aws_nitro_root_g1.der");
/// SHA-256 of [`AWS_NITRO_ROOT_G1_DER`], the fingerprint AWS publishes (docs/design.md §6).
pub const AWS_NITRO_ROOT_G1_SHA256: &str =
    "641a0321a3e244efe456463195d606317ed7cdcc3c1756e09893f3c68f79bb5b";

/// The largest document accepted, in bytes (the genuine one is 4,625).
pub const DOCUMENT_BYTES_MAX: usize = 16 * 1024;
/// The largest certificate, in bytes (AWS: `cert = bytes .size (1..1024)`).
pub const CERTIFICATE_BYTES_MAX: usize = 1024;
/// The most certificates in `cabundle` (AWS's chains have four: root, regional, zonal,
/// instance).
pub const CABUNDLE_CERTS_MAX: usize = 8;
/// The longest `module_id`, in bytes (AWS sets no bound; theirs are about 40).
pub const MODULE_ID_BYTES_MAX: usize = 256;
/// The most PCRs a document may carry (AWS: indices 0–31).
pub const PCRS_MAX: usize = 32;
/// The length of every PCR: the digest is SHA-384.
pub const PCR_BYTES: usize = 48;
/// The longest `public_key` (AWS: 1–1024 bytes).
pub const PUBLIC_KEY_BYTES_MAX: usize = 1024;
/// The longest `user_data` (AWS: 0–512 bytes).
pub const USER_DATA_BYTES_MAX: usize = 512;
/// The longest `nonce` (AWS: 0–512 bytes).
pub const NONCE_BYTES_MAX: usize = 512;

/// An ES384 signature in COSE: r || s, 48 bytes each.
const ES384_SIGNATURE_BYTES: usize = 96;
/// CBOR tag of a tagged COSE_Sign1 (RFC 9052 §4.2).
const COSE_SIGN1_TAG: u64 = 18;
/// Bytes a CBOR map entry may spend on keys and headers beyond its value; generous.
const ENTRY_OVERHEAD_BYTES: usize = 16;

// Everything a well-formed document may hold fits the document limit, so the limit refuses
// only documents that no Nitro hypervisor would issue.
const _: () = assert!(
    (CABUNDLE_CERTS_MAX + 1) * (CERTIFICATE_BYTES_MAX + ENTRY_OVERHEAD_BYTES)
        + PCRS_MAX * (PCR_BYTES + ENTRY_OVERHEAD_BYTES)
        + PUBLIC_KEY_BYTES_MAX
        + USER_DATA_BYTES_MAX
        + NONCE_BYTES_MAX
        + MODULE_ID_BYTES_MAX
        + 16 * ENTRY_OVERHEAD_BYTES
        + ES384_SIGNATURE_BYTES
        <= DOCUMENT_BYTES_MAX
);

/// The payload's fields, in AWS's order.
const FIELDS: [&str; 9] = [
    "module_id",
    "digest",
    "timestamp",
    "pcrs",
    "certificate",
    "cabundle",
    "public_key",
    "user_data",
    "nonce",
];

/// Where a certificate sits in the chain being checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CertPosition {
    /// The root the caller pinned.
    PinnedRoot,
    /// `cabundle[i]` of the document.
    Bundle(usize),
    /// The document's `certificate`.
    Leaf,
}

impl fmt::Display for CertPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::PinnedRoot => f.write_str("pinned root"),
            Self::Bundle(i) => write!(f, "cabundle[{i}]"),
            Self::Leaf => f.write_str("leaf certificate"),
        }
    }
}

/// Why an attestation document was refused. Every variant is the document's fault, except
/// [`AttestationError::PinnedRoot`], which is the caller's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AttestationError {
    /// Longer than [`DOCUMENT_BYTES_MAX`].
    #[error("attestation document is {size} bytes; the limit is {max}")]
    TooLarge {
        /// Its size.
        size: usize,
        /// [`DOCUMENT_BYTES_MAX`].
        max: usize,
    },
    /// Not one well-formed CBOR item (truncated, garbage, nested too deep).
    #[error("attestation document is not CBOR: {reason}")]
    MalformedCbor {
        /// The decoder's complaint.
        reason: String,
    },
    /// Bytes follow the CBOR item.
    #[error("{extra} trailing bytes after the attestation {part}")]
    TrailingBytes {
        /// `document` or `payload`.
        part: &'static str,
        /// How many.
        extra: usize,
    },
    /// A CBOR tag other than COSE_Sign1's (18).
    #[error("attestation document has CBOR tag {tag}, expected none or 18 (COSE_Sign1)")]
    UnexpectedTag {
        /// The tag.
        tag: u64,
    },
    /// CBOR, but not a COSE_Sign1 structure.
    #[error("attestation document is not a COSE_Sign1: {reason}")]
    NotCoseSign1 {
        /// coset's complaint.
        reason: String,
    },
    /// The protected header names no algorithm.
    #[error("attestation document's protected header names no algorithm")]
    MissingAlgorithm,
    /// An algorithm other than ES384.
    #[error("attestation document is signed with {found}; only ES384 is accepted")]
    UnsupportedAlgorithm {
        /// The algorithm named.
        found: String,
    },
    /// The header marks parameters critical, which this verifier does not understand.
    #[error("attestation document has critical header parameters {labels}")]
    CriticalHeader {
        /// The labels, as debug text.
        labels: String,
    },
    /// The payload is detached (nil).
    #[error("attestation document has no payload")]
    DetachedPayload,
    /// The signature is not 96 bytes (ES384 r || s).
    #[error("attestation signature is {len} bytes, expected 96")]
    SignatureLength {
        /// Its length.
        len: usize,
    },
    /// The payload is not one well-formed CBOR item.
    #[error("attestation payload is not CBOR: {reason}")]
    MalformedPayload {
        /// The decoder's complaint.
        reason: String,
    },
    /// The payload is not a map.
    #[error("attestation payload is not a CBOR map")]
    PayloadNotMap,
    /// A key that is not one of the nine fields.
    #[error("attestation payload has an unknown field {field}")]
    UnknownField {
        /// The key, as debug text.
        field: String,
    },
    /// A field appears twice.
    #[error("attestation payload has field {field} twice")]
    DuplicateField {
        /// The field.
        field: &'static str,
    },
    /// A required field is absent.
    #[error("attestation payload has no {field}")]
    MissingField {
        /// The field.
        field: &'static str,
    },
    /// A field has the wrong CBOR type.
    #[error("attestation field {field} is not {expected}")]
    FieldType {
        /// The field.
        field: &'static str,
        /// The type expected.
        expected: &'static str,
    },
    /// A field is shorter or longer than allowed.
    #[error("attestation field {field} has length {len}; allowed {min}..={max}")]
    FieldSize {
        /// The field (`cabundle` counts certificates, `pcrs` entries, the others bytes).
        field: &'static str,
        /// Its length.
        len: usize,
        /// The least allowed.
        min: usize,
        /// The most allowed.
        max: usize,
    },
    /// `digest` is not `"SHA384"`.
    #[error("attestation digest is {found:?}, expected \"SHA384\"")]
    UnsupportedDigest {
        /// The digest named.
        found: String,
    },
    /// `timestamp` is zero, negative or past year 9999.
    #[error("attestation timestamp {found} is out of range")]
    TimestampOutOfRange {
        /// The value, as text.
        found: String,
    },
    /// A PCR index is not an integer in 0..=31.
    #[error("attestation PCR index {found} is not in 0..=31")]
    PcrIndex {
        /// The key, as text.
        found: String,
    },
    /// A PCR index appears twice.
    #[error("attestation PCR{index} appears twice")]
    DuplicatePcr {
        /// The index.
        index: u8,
    },
    /// A PCR is not 48 bytes.
    #[error("attestation PCR{index} is {len} bytes, expected 48 (SHA-384)")]
    PcrLength {
        /// The index.
        index: u8,
        /// Its length.
        len: usize,
    },
    /// The pinned root handed in is unusable (the caller's fault, not the document's).
    #[error("pinned root: {reason}")]
    PinnedRoot {
        /// What is wrong with it.
        reason: String,
    },
    /// A certificate is not DER X.509.
    #[error("{position}: not a DER X.509 certificate: {reason}")]
    CertificateDecode {
        /// Which certificate.
        position: CertPosition,
        /// The decoder's complaint.
        reason: String,
    },
    /// A certificate is not X.509 version 3.
    #[error("{position} ({subject}): not an X.509 v3 certificate")]
    CertificateVersion {
        /// Which certificate.
        position: CertPosition,
        /// Its subject.
        subject: String,
    },
    /// A certificate is signed with something other than ecdsa-with-SHA384, or its two
    /// algorithm fields differ.
    #[error("{position} ({subject}): signature algorithm {oid} is not ecdsa-with-SHA384")]
    CertificateAlgorithm {
        /// Which certificate.
        position: CertPosition,
        /// Its subject.
        subject: String,
        /// The algorithm, as a dotted OID.
        oid: String,
    },
    /// A certificate's key is not an ECDSA P-384 key.
    #[error("{position} ({subject}): public key is not ECDSA P-384: {reason}")]
    UnsupportedKey {
        /// Which certificate.
        position: CertPosition,
        /// Its subject.
        subject: String,
        /// Why.
        reason: String,
    },
    /// A certificate's issuer is not the subject of the certificate before it in the chain.
    #[error(
        "{position}: issuer {issuer} is not the subject {expected} of the certificate above it"
    )]
    IssuerMismatch {
        /// Which certificate.
        position: CertPosition,
        /// Its issuer.
        issuer: String,
        /// The subject of the certificate that must have issued it.
        expected: String,
    },
    /// A certificate's signature does not verify under its issuer's key.
    #[error("{position} ({subject}): signature does not verify under {issuer}'s key")]
    CertificateSignature {
        /// Which certificate.
        position: CertPosition,
        /// Its subject.
        subject: String,
        /// Its issuer's subject.
        issuer: String,
    },
    /// `now` is before a certificate's notBefore.
    #[error("{position} ({subject}) is not valid before {not_before}; now is {now}")]
    CertificateNotYetValid {
        /// Which certificate.
        position: CertPosition,
        /// Its subject.
        subject: String,
        /// Its notBefore.
        not_before: Timestamp,
        /// The time given.
        now: Timestamp,
    },
    /// `now` is after a certificate's notAfter.
    #[error("{position} ({subject}) expired at {not_after}; now is {now}")]
    CertificateExpired {
        /// Which certificate.
        position: CertPosition,
        /// Its subject.
        subject: String,
        /// Its notAfter.
        not_after: Timestamp,
        /// The time given.
        now: Timestamp,
    },
    /// An extension appears twice, or can't be decoded.
    #[error("{position} ({subject}): extension {oid}: {reason}")]
    BadExtension {
        /// Which certificate.
        position: CertPosition,
        /// Its subject.
        subject: String,
        /// The extension, as a dotted OID.
        oid: String,
        /// What is wrong.
        reason: String,
    },
    /// A critical extension other than basicConstraints and keyUsage.
    #[error("{position} ({subject}): unknown critical extension {oid}")]
    UnknownCriticalExtension {
        /// Which certificate.
        position: CertPosition,
        /// Its subject.
        subject: String,
        /// The extension, as a dotted OID.
        oid: String,
    },
    /// A certificate that issues others lacks basicConstraints `cA = true`.
    #[error("{position} ({subject}) issues certificates but is not a CA")]
    NotCa {
        /// Which certificate.
        position: CertPosition,
        /// Its subject.
        subject: String,
    },
    /// The leaf says it is a CA.
    #[error("leaf certificate ({subject}) is a CA")]
    LeafIsCa {
        /// Its subject.
        subject: String,
    },
    /// A CA's path length constraint is exceeded by the CAs below it.
    #[error("{position} ({subject}) allows {path_len} CAs below it; the chain has {below}")]
    PathLength {
        /// Which certificate.
        position: CertPosition,
        /// Its subject.
        subject: String,
        /// Its pathLenConstraint.
        path_len: u8,
        /// CA certificates below it in the chain.
        below: usize,
    },
    /// keyUsage is absent or lacks the bit this position needs.
    #[error("{position} ({subject}): keyUsage lacks {missing}")]
    KeyUsage {
        /// Which certificate.
        position: CertPosition,
        /// Its subject.
        subject: String,
        /// `keyCertSign` (CA) or `digitalSignature` (leaf).
        missing: &'static str,
    },
    /// The ES384 signature does not verify under the leaf's key.
    #[error("attestation signature does not verify under the leaf key ({subject})")]
    DocumentSignature {
        /// The leaf's subject.
        subject: String,
    },
    /// The document's timestamp lies outside its leaf's validity.
    #[error(
        "attestation timestamp {timestamp} is outside the leaf's validity {not_before} to {not_after}"
    )]
    TimestampOutsideLeaf {
        /// The document's timestamp.
        timestamp: Timestamp,
        /// The leaf's notBefore.
        not_before: Timestamp,
        /// The leaf's notAfter.
        not_after: Timestamp,
    },
    /// PCR0–PCR2 are all zero: a debug enclave, whose memory the host can read.
    #[error("attestation comes from a debug enclave (PCR0, PCR1 and PCR2 are all zero)")]
    DebugEnclave,
    /// A PCR the caller pins (or PCR0–2) is absent.
    #[error("attestation has no PCR{index}")]
    PcrMissing {
        /// The index.
        index: u8,
    },
    /// A PCR differs from the value the caller pins.
    #[error("attestation PCR{index} is {found}, expected {expected}")]
    PcrMismatch {
        /// The index.
        index: u8,
        /// The pinned value, hex.
        expected: String,
        /// The document's value, hex.
        found: String,
    },
}

/// The digest algorithm of the PCRs. Nitro uses SHA-384 only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PcrDigest {
    /// SHA-384.
    Sha384,
}

impl fmt::Display for PcrDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sha384 => f.write_str("SHA384"),
        }
    }
}

/// The fields of an attestation document. Returned by [`Verifier::verify`] once every check
/// passed, and by [`parse_unverified`] for display only.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct AttestationDocument {
    /// The enclave's id, as the hypervisor names it.
    pub module_id: String,
    /// When the document was made (milliseconds in the document).
    pub timestamp: Timestamp,
    /// The PCR digest algorithm.
    pub digest: PcrDigest,
    /// Platform configuration registers by index, each [`PCR_BYTES`] long.
    pub pcrs: BTreeMap<u8, Vec<u8>>,
    /// `public_key` as the enclave asked for it (docs/design.md §6: the service's RSA-2048 key).
    pub public_key: Option<Vec<u8>>,
    /// `user_data` (docs/design.md §6: a [`UserData`] binding).
    pub user_data: Option<Vec<u8>>,
    /// `nonce` (docs/design.md §6: a recent checkpoint root).
    pub nonce: Option<Vec<u8>>,
    /// The leaf certificate, DER: the key that signed the document.
    pub certificate: Vec<u8>,
}

impl AttestationDocument {
    /// The [`UserData`] binding in `user_data`.
    ///
    /// # Errors
    /// [`UserDataError::Missing`] when the document has no `user_data`; otherwise as
    /// [`UserData::decode`].
    pub fn user_data_binding(&self) -> Result<UserData, UserDataError> {
        UserData::decode(self.user_data.as_deref().ok_or(UserDataError::Missing)?)
    }
}

/// A root certificate the caller trusts: chains must end in it. Checked once when made: a
/// v3 P-384 CA certificate in DER.
#[derive(Clone)]
pub struct TrustAnchor {
    der: Vec<u8>,
    cert: ParsedCert,
}

impl fmt::Debug for TrustAnchor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "TrustAnchor({}, sha256 {})",
            self.cert.subject,
            hex::encode(self.sha256())
        )
    }
}

impl TrustAnchor {
    /// AWS Nitro Enclaves Root-G1, built in.
    #[must_use]
    pub fn aws_nitro_root_g1() -> Self {
        // The built-in bytes are AWS's root, which a unit test parses; a failure here would
        // be a corrupted build, not an input.
        Self::from_der(AWS_NITRO_ROOT_G1_DER).expect("the built-in AWS root parses")
    }

    /// A root from its DER encoding.
    ///
    /// # Errors
    /// [`AttestationError::PinnedRoot`] when the bytes are not a DER X.509 v3 certificate
    /// with an ECDSA P-384 key, basicConstraints `cA` and keyUsage `keyCertSign`.
    pub fn from_der(der: &[u8]) -> Result<Self, AttestationError> {
        let pinned = |e: AttestationError| AttestationError::PinnedRoot {
            reason: e.to_string(),
        };
        // Parsing at this position also checks the CA constraints.
        let cert = ParsedCert::parse(der, CertPosition::PinnedRoot).map_err(pinned)?;
        Ok(Self {
            der: der.to_vec(),
            cert,
        })
    }

    /// Its DER encoding.
    #[must_use]
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// SHA-256 of its DER encoding, the fingerprint roots are published by.
    #[must_use]
    pub fn sha256(&self) -> [u8; 32] {
        Sha256::digest(&self.der).into()
    }

    /// Its subject, RFC 4514.
    #[must_use]
    pub fn subject(&self) -> &str {
        &self.cert.subject
    }
}

/// Verifies attestation documents against a pinned root and pinned PCRs.
#[derive(Clone, Debug)]
pub struct Verifier {
    root: TrustAnchor,
    expected_pcrs: BTreeMap<u8, Vec<u8>>,
    allow_debug: bool,
}

impl Verifier {
    /// A verifier that trusts `root` only, pins no PCR and refuses debug enclaves.
    #[must_use]
    pub fn new(root: TrustAnchor) -> Self {
        Self {
            root,
            expected_pcrs: BTreeMap::new(),
            allow_debug: false,
        }
    }

    /// Require PCR `index` to be present and equal to `value`.
    #[must_use]
    pub fn expect_pcr(mut self, index: u8, value: impl Into<Vec<u8>>) -> Self {
        self.expected_pcrs.insert(index, value.into());
        self
    }

    /// Accept documents whose PCR0–PCR2 are all zero: debug enclaves, whose memory and
    /// console the host can read. Only for a manifest that says so.
    #[must_use]
    pub fn dangerous_allow_debug(mut self, allow: bool) -> Self {
        self.allow_debug = allow;
        self
    }

    /// The pinned root.
    #[must_use]
    pub fn root(&self) -> &TrustAnchor {
        &self.root
    }

    /// Verify `document` as of `now`; see the module documentation for every check.
    ///
    /// # Errors
    /// The first check that fails, as its own [`AttestationError`] variant.
    pub fn verify(
        &self,
        document: &[u8],
        now: Timestamp,
    ) -> Result<AttestationDocument, AttestationError> {
        let (cose, payload) = parse_envelope(document)?;
        let fields = parse_payload(&payload)?;
        let leaf = ParsedCert::parse(&fields.certificate, CertPosition::Leaf)?;

        // The Sig_structure covers the protected header's original bytes and the payload.
        let signature = Signature::from_slice(&cose.signature).map_err(|_| {
            AttestationError::DocumentSignature {
                subject: leaf.subject.clone(),
            }
        })?;
        leaf.key
            .verify(&cose.tbs_data(b""), &signature)
            .map_err(|_| AttestationError::DocumentSignature {
                subject: leaf.subject.clone(),
            })?;

        self.check_chain(&fields.cabundle, &leaf, now)?;

        if fields.timestamp < leaf.not_before || fields.timestamp > leaf.not_after {
            return Err(AttestationError::TimestampOutsideLeaf {
                timestamp: fields.timestamp,
                not_before: leaf.not_before,
                not_after: leaf.not_after,
            });
        }

        let mut measured = [false; 3];
        for (index, nonzero) in (0u8..).zip(measured.iter_mut()) {
            let pcr = fields
                .pcrs
                .get(&index)
                .ok_or(AttestationError::PcrMissing { index })?;
            *nonzero = pcr.iter().any(|&b| b != 0);
        }
        if !self.allow_debug && !measured.contains(&true) {
            return Err(AttestationError::DebugEnclave);
        }
        for (&index, expected) in &self.expected_pcrs {
            let found = fields
                .pcrs
                .get(&index)
                .ok_or(AttestationError::PcrMissing { index })?;
            if found != expected {
                return Err(AttestationError::PcrMismatch {
                    index,
                    expected: hex::encode(expected),
                    found: hex::encode(found),
                });
            }
        }
        Ok(fields.into_document())
    }

    /// The chain: pinned root → `cabundle[1..]` → leaf. `cabundle[0]` is the sender's claim
    /// of a root and is never used.
    fn check_chain(
        &self,
        cabundle: &[Vec<u8>],
        leaf: &ParsedCert,
        now: Timestamp,
    ) -> Result<(), AttestationError> {
        let root = &self.root.cert;
        root.check_time(now)?;
        let mut chain: Vec<&ParsedCert> = Vec::with_capacity(cabundle.len() + 1);
        chain.push(root);
        let intermediates = cabundle
            .iter()
            .enumerate()
            .skip(1)
            .map(|(i, der)| ParsedCert::parse(der, CertPosition::Bundle(i)))
            .collect::<Result<Vec<_>, _>>()?;
        chain.extend(intermediates.iter());
        chain.push(leaf);

        let last = chain.len() - 1;
        for (below_index, pair) in chain.windows(2).enumerate() {
            let (issuer, cert) = (pair[0], pair[1]);
            let index = below_index + 1;
            cert.check_signed_by(issuer)?;
            cert.check_time(now)?;
            let path_len = cert.check_extensions(index < last)?;
            if let Some(path_len) = path_len {
                // CAs strictly between this one and the leaf.
                let below = last - index - 1;
                if below > usize::from(path_len) {
                    return Err(AttestationError::PathLength {
                        position: cert.position,
                        subject: cert.subject.clone(),
                        path_len,
                        below,
                    });
                }
            }
        }
        // The pinned root's own constraint: every certificate but the root and the leaf is
        // a CA below it.
        if let Some(path_len) = root.path_len {
            let below = last - 1;
            if below > usize::from(path_len) {
                return Err(AttestationError::PathLength {
                    position: root.position,
                    subject: root.subject.clone(),
                    path_len,
                    below,
                });
            }
        }
        Ok(())
    }
}

/// The fields of `document` after checking its format only: no signature, chain, time or
/// PCR is checked. For display (the CLI prints them beside a refusal); never for a decision.
///
/// # Errors
/// The format errors of [`Verifier::verify`] (envelope, payload, field types and sizes).
pub fn parse_unverified(document: &[u8]) -> Result<AttestationDocument, AttestationError> {
    let (_, payload) = parse_envelope(document)?;
    parse_payload(&payload).map(Fields::into_document)
}

/// Decode exactly one CBOR item from `bytes`.
fn decode_exact(bytes: &[u8], part: &'static str) -> Result<Value, AttestationError> {
    let mut rest = bytes;
    let value: Value = ciborium::de::from_reader(&mut rest).map_err(|e| {
        let reason = e.to_string();
        match part {
            "payload" => AttestationError::MalformedPayload { reason },
            _ => AttestationError::MalformedCbor { reason },
        }
    })?;
    if !rest.is_empty() {
        return Err(AttestationError::TrailingBytes {
            part,
            extra: rest.len(),
        });
    }
    Ok(value)
}

/// The COSE_Sign1 and its payload, with the algorithm and shape checked.
fn parse_envelope(document: &[u8]) -> Result<(CoseSign1, Vec<u8>), AttestationError> {
    if document.len() > DOCUMENT_BYTES_MAX {
        return Err(AttestationError::TooLarge {
            size: document.len(),
            max: DOCUMENT_BYTES_MAX,
        });
    }
    let value = match decode_exact(document, "document")? {
        Value::Tag(COSE_SIGN1_TAG, inner) => *inner,
        Value::Tag(tag, _) => return Err(AttestationError::UnexpectedTag { tag }),
        v => v,
    };
    let cose = CoseSign1::from_cbor_value(value).map_err(|e| AttestationError::NotCoseSign1 {
        reason: e.to_string(),
    })?;
    // Only the protected header counts: an unprotected `alg` could be changed by anyone.
    match &cose.protected.header.alg {
        None => return Err(AttestationError::MissingAlgorithm),
        Some(RegisteredLabelWithPrivate::Assigned(iana::Algorithm::ES384)) => {}
        Some(RegisteredLabelWithPrivate::Assigned(other)) => {
            return Err(AttestationError::UnsupportedAlgorithm {
                found: format!("{other:?}"),
            });
        }
        Some(RegisteredLabelWithPrivate::PrivateUse(n)) => {
            return Err(AttestationError::UnsupportedAlgorithm {
                found: format!("private algorithm {n}"),
            });
        }
        Some(RegisteredLabelWithPrivate::Text(t)) => {
            return Err(AttestationError::UnsupportedAlgorithm {
                found: format!("{t:?}"),
            });
        }
    }
    if !cose.protected.header.crit.is_empty() || !cose.unprotected.crit.is_empty() {
        let mut labels = cose.protected.header.crit.clone();
        labels.extend(cose.unprotected.crit.iter().cloned());
        return Err(AttestationError::CriticalHeader {
            labels: format!("{labels:?}"),
        });
    }
    let payload = cose
        .payload
        .clone()
        .ok_or(AttestationError::DetachedPayload)?;
    if cose.signature.len() != ES384_SIGNATURE_BYTES {
        return Err(AttestationError::SignatureLength {
            len: cose.signature.len(),
        });
    }
    Ok((cose, payload))
}

/// The payload, typed and size-checked.
#[derive(Debug)]
struct Fields {
    module_id: String,
    timestamp: Timestamp,
    pcrs: BTreeMap<u8, Vec<u8>>,
    certificate: Vec<u8>,
    cabundle: Vec<Vec<u8>>,
    public_key: Option<Vec<u8>>,
    user_data: Option<Vec<u8>>,
    nonce: Option<Vec<u8>>,
}

impl Fields {
    fn into_document(self) -> AttestationDocument {
        AttestationDocument {
            module_id: self.module_id,
            timestamp: self.timestamp,
            digest: PcrDigest::Sha384,
            pcrs: self.pcrs,
            public_key: self.public_key,
            user_data: self.user_data,
            nonce: self.nonce,
            certificate: self.certificate,
        }
    }
}

fn sized(
    field: &'static str,
    bytes: Vec<u8>,
    min: usize,
    max: usize,
) -> Result<Vec<u8>, AttestationError> {
    if bytes.len() < min || bytes.len() > max {
        return Err(AttestationError::FieldSize {
            field,
            len: bytes.len(),
            min,
            max,
        });
    }
    Ok(bytes)
}

fn bytes_of(field: &'static str, value: Value) -> Result<Vec<u8>, AttestationError> {
    match value {
        Value::Bytes(b) => Ok(b),
        _ => Err(AttestationError::FieldType {
            field,
            expected: "a byte string",
        }),
    }
}

/// An optional byte field: absent or nil means none.
fn optional_bytes(
    field: &'static str,
    value: Value,
    min: usize,
    max: usize,
) -> Result<Option<Vec<u8>>, AttestationError> {
    match value {
        Value::Null => Ok(None),
        Value::Bytes(b) => sized(field, b, min, max).map(Some),
        _ => Err(AttestationError::FieldType {
            field,
            expected: "a byte string or nil",
        }),
    }
}

fn parse_payload(payload: &[u8]) -> Result<Fields, AttestationError> {
    let Value::Map(entries) = decode_exact(payload, "payload")? else {
        return Err(AttestationError::PayloadNotMap);
    };
    let mut seen = BTreeSet::new();
    let (mut module_id, mut digest, mut timestamp, mut pcrs, mut certificate, mut cabundle) =
        (None, None, None, None, None, None);
    let (mut public_key, mut user_data, mut nonce) = (None, None, None);
    for (key, value) in entries {
        let field = match &key {
            Value::Text(name) => FIELDS.iter().copied().find(|f| f == name),
            _ => None,
        }
        .ok_or_else(|| AttestationError::UnknownField {
            field: format!("{key:?}"),
        })?;
        if !seen.insert(field) {
            return Err(AttestationError::DuplicateField { field });
        }
        match field {
            "module_id" => {
                let Value::Text(id) = value else {
                    return Err(AttestationError::FieldType {
                        field,
                        expected: "text",
                    });
                };
                if id.is_empty() || id.len() > MODULE_ID_BYTES_MAX {
                    return Err(AttestationError::FieldSize {
                        field,
                        len: id.len(),
                        min: 1,
                        max: MODULE_ID_BYTES_MAX,
                    });
                }
                module_id = Some(id);
            }
            "digest" => {
                let Value::Text(d) = value else {
                    return Err(AttestationError::FieldType {
                        field,
                        expected: "text",
                    });
                };
                if d != "SHA384" {
                    return Err(AttestationError::UnsupportedDigest { found: d });
                }
                digest = Some(PcrDigest::Sha384);
            }
            "timestamp" => {
                let bad = || AttestationError::TimestampOutOfRange {
                    found: format!("{value:?}"),
                };
                let Value::Integer(i) = &value else {
                    return Err(AttestationError::FieldType {
                        field,
                        expected: "an unsigned integer",
                    });
                };
                let ms = i64::try_from(*i).map_err(|_| bad())?;
                if ms <= 0 {
                    return Err(bad());
                }
                timestamp = Some(Timestamp::from_unix_ms(ms).ok_or_else(bad)?);
            }
            "pcrs" => pcrs = Some(parse_pcrs(value)?),
            "certificate" => {
                certificate = Some(sized(
                    field,
                    bytes_of(field, value)?,
                    1,
                    CERTIFICATE_BYTES_MAX,
                )?);
            }
            "cabundle" => {
                let Value::Array(items) = value else {
                    return Err(AttestationError::FieldType {
                        field,
                        expected: "an array",
                    });
                };
                if items.is_empty() || items.len() > CABUNDLE_CERTS_MAX {
                    return Err(AttestationError::FieldSize {
                        field,
                        len: items.len(),
                        min: 1,
                        max: CABUNDLE_CERTS_MAX,
                    });
                }
                cabundle = Some(
                    items
                        .into_iter()
                        .map(|v| sized(field, bytes_of(field, v)?, 1, CERTIFICATE_BYTES_MAX))
                        .collect::<Result<Vec<_>, _>>()?,
                );
            }
            "public_key" => public_key = optional_bytes(field, value, 1, PUBLIC_KEY_BYTES_MAX)?,
            "user_data" => user_data = optional_bytes(field, value, 0, USER_DATA_BYTES_MAX)?,
            "nonce" => nonce = optional_bytes(field, value, 0, NONCE_BYTES_MAX)?,
            // `field` is one of FIELDS, all handled above.
            _ => {
                return Err(AttestationError::UnknownField {
                    field: field.to_owned(),
                });
            }
        }
    }
    let missing = |field| AttestationError::MissingField { field };
    digest.ok_or_else(|| missing("digest"))?;
    Ok(Fields {
        module_id: module_id.ok_or_else(|| missing("module_id"))?,
        timestamp: timestamp.ok_or_else(|| missing("timestamp"))?,
        pcrs: pcrs.ok_or_else(|| missing("pcrs"))?,
        certificate: certificate.ok_or_else(|| missing("certificate"))?,
        cabundle: cabundle.ok_or_else(|| missing("cabundle"))?,
        public_key,
        user_data,
        nonce,
    })
}

fn parse_pcrs(value: Value) -> Result<BTreeMap<u8, Vec<u8>>, AttestationError> {
    let Value::Map(entries) = value else {
        return Err(AttestationError::FieldType {
            field: "pcrs",
            expected: "a map",
        });
    };
    if entries.is_empty() || entries.len() > PCRS_MAX {
        return Err(AttestationError::FieldSize {
            field: "pcrs",
            len: entries.len(),
            min: 1,
            max: PCRS_MAX,
        });
    }
    let mut pcrs = BTreeMap::new();
    for (key, value) in entries {
        let index = match &key {
            Value::Integer(i) => u8::try_from(*i).ok().filter(|&n| usize::from(n) < PCRS_MAX),
            _ => None,
        }
        .ok_or_else(|| AttestationError::PcrIndex {
            found: format!("{key:?}"),
        })?;
        let Value::Bytes(pcr) = value else {
            return Err(AttestationError::FieldType {
                field: "pcrs",
                expected: "a map of byte strings",
            });
        };
        if pcr.len() != PCR_BYTES {
            return Err(AttestationError::PcrLength {
                index,
                len: pcr.len(),
            });
        }
        if pcrs.insert(index, pcr).is_some() {
            return Err(AttestationError::DuplicatePcr { index });
        }
    }
    Ok(pcrs)
}

/// A certificate decoded, with what the chain checks need.
#[derive(Clone)]
struct ParsedCert {
    position: CertPosition,
    cert: Certificate,
    /// The to-be-signed part, DER, exactly as received (decoding refuses non-DER, and a
    /// re-encoding check confirms it).
    tbs: Vec<u8>,
    subject: String,
    key: VerifyingKey,
    not_before: Timestamp,
    not_after: Timestamp,
    /// basicConstraints pathLenConstraint, kept for the pinned root only: the chain reads
    /// every other CA's as it checks that CA.
    path_len: Option<u8>,
}

fn cert_time(
    t: x509_cert::time::Time,
    position: CertPosition,
) -> Result<Timestamp, AttestationError> {
    i64::try_from(t.to_unix_duration().as_millis())
        .ok()
        .and_then(Timestamp::from_unix_ms)
        .ok_or_else(|| AttestationError::CertificateDecode {
            position,
            reason: "time out of range".into(),
        })
}

impl ParsedCert {
    fn parse(der: &[u8], position: CertPosition) -> Result<Self, AttestationError> {
        let decode = |reason: String| AttestationError::CertificateDecode { position, reason };
        let cert = Certificate::from_der(der).map_err(|e| decode(e.to_string()))?;
        // The signature covers the bytes received; verifying over a re-encoding would be
        // verifying something else if the two ever differed.
        if cert.to_der().map_err(|e| decode(e.to_string()))? != der {
            return Err(decode("not in canonical DER".into()));
        }
        let tbs = cert
            .tbs_certificate
            .to_der()
            .map_err(|e| decode(e.to_string()))?;
        let subject = cert.tbs_certificate.subject.to_string();
        if cert.tbs_certificate.version != x509_cert::certificate::Version::V3 {
            return Err(AttestationError::CertificateVersion { position, subject });
        }
        let spki = &cert.tbs_certificate.subject_public_key_info;
        let unsupported = |reason: &str| AttestationError::UnsupportedKey {
            position,
            subject: subject.clone(),
            reason: reason.to_owned(),
        };
        if spki.algorithm.oid != rfc5912::ID_EC_PUBLIC_KEY {
            return Err(unsupported("not an elliptic-curve key"));
        }
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.decode_as::<ObjectIdentifier>().ok());
        if curve != Some(rfc5912::SECP_384_R_1) {
            return Err(unsupported("curve is not P-384"));
        }
        let point = spki
            .subject_public_key
            .as_bytes()
            .ok_or_else(|| unsupported("key bits are not whole bytes"))?;
        let key = VerifyingKey::from_sec1_bytes(point)
            .map_err(|_| unsupported("not a point on P-384"))?;
        let validity = cert.tbs_certificate.validity;
        let not_before = cert_time(validity.not_before, position)?;
        let not_after = cert_time(validity.not_after, position)?;
        let mut parsed = Self {
            position,
            cert,
            tbs,
            subject,
            key,
            not_before,
            not_after,
            path_len: None,
        };
        if position == CertPosition::PinnedRoot {
            parsed.path_len = parsed.check_extensions(true)?;
        }
        Ok(parsed)
    }

    fn check_time(&self, now: Timestamp) -> Result<(), AttestationError> {
        if now < self.not_before {
            return Err(AttestationError::CertificateNotYetValid {
                position: self.position,
                subject: self.subject.clone(),
                not_before: self.not_before,
                now,
            });
        }
        if now > self.not_after {
            return Err(AttestationError::CertificateExpired {
                position: self.position,
                subject: self.subject.clone(),
                not_after: self.not_after,
                now,
            });
        }
        Ok(())
    }

    /// Names chain, the algorithm is ecdsa-with-SHA384 and `issuer`'s key signed this.
    fn check_signed_by(&self, issuer: &ParsedCert) -> Result<(), AttestationError> {
        if self.cert.tbs_certificate.issuer != issuer.cert.tbs_certificate.subject {
            return Err(AttestationError::IssuerMismatch {
                position: self.position,
                issuer: self.cert.tbs_certificate.issuer.to_string(),
                expected: issuer.subject.clone(),
            });
        }
        let alg = &self.cert.signature_algorithm;
        if alg.oid != rfc5912::ECDSA_WITH_SHA_384
            || alg.parameters.is_some()
            || *alg != self.cert.tbs_certificate.signature
        {
            return Err(AttestationError::CertificateAlgorithm {
                position: self.position,
                subject: self.subject.clone(),
                oid: alg.oid.to_string(),
            });
        }
        let bad = || AttestationError::CertificateSignature {
            position: self.position,
            subject: self.subject.clone(),
            issuer: issuer.subject.clone(),
        };
        let signature = self.cert.signature.as_bytes().ok_or_else(bad)?;
        let signature = Signature::from_der(signature).map_err(|_| bad())?;
        issuer.key.verify(&self.tbs, &signature).map_err(|_| bad())
    }

    /// basicConstraints and keyUsage for a CA (`ca`) or the leaf; no unknown critical
    /// extension; no extension twice. Returns a CA's pathLenConstraint.
    fn check_extensions(&self, ca: bool) -> Result<Option<u8>, AttestationError> {
        let (position, subject) = (self.position, &self.subject);
        let extensions = self
            .cert
            .tbs_certificate
            .extensions
            .as_deref()
            .unwrap_or(&[]);
        let bad = |oid: ObjectIdentifier, reason: &str| AttestationError::BadExtension {
            position,
            subject: subject.clone(),
            oid: oid.to_string(),
            reason: reason.to_owned(),
        };
        let mut oids = BTreeSet::new();
        let (mut basic, mut usage) = (None, None);
        for ext in extensions {
            if !oids.insert(ext.extn_id) {
                return Err(bad(ext.extn_id, "appears twice"));
            }
            let value = ext.extn_value.as_bytes();
            if ext.extn_id == rfc5280::ID_CE_BASIC_CONSTRAINTS {
                basic = Some(
                    BasicConstraints::from_der(value)
                        .map_err(|e| bad(ext.extn_id, &e.to_string()))?,
                );
            } else if ext.extn_id == rfc5280::ID_CE_KEY_USAGE {
                usage =
                    Some(KeyUsage::from_der(value).map_err(|e| bad(ext.extn_id, &e.to_string()))?);
            } else if ext.critical {
                return Err(AttestationError::UnknownCriticalExtension {
                    position,
                    subject: subject.clone(),
                    oid: ext.extn_id.to_string(),
                });
            }
        }
        let is_ca = basic.as_ref().is_some_and(|b| b.ca);
        if ca {
            if !is_ca {
                return Err(AttestationError::NotCa {
                    position,
                    subject: subject.clone(),
                });
            }
            if !usage.is_some_and(|u| u.key_cert_sign()) {
                return Err(AttestationError::KeyUsage {
                    position,
                    subject: subject.clone(),
                    missing: "keyCertSign",
                });
            }
            Ok(basic.and_then(|b| b.path_len_constraint))
        } else {
            if is_ca {
                return Err(AttestationError::LeafIsCa {
                    subject: subject.clone(),
                });
            }
            if !usage.is_some_and(|u| u.digital_signature()) {
                return Err(AttestationError::KeyUsage {
                    position,
                    subject: subject.clone(),
                    missing: "digitalSignature",
                });
            }
            Ok(None)
        }
    }
}

/// The version byte of the [`UserData`] layout.
pub const USER_DATA_VERSION: u8 = 0x01;
/// The length of an encoded [`UserData`] with the longest role.
pub const USER_DATA_ENCODED_MAX: usize = 2 + ROLE_BYTES_MAX + 3 * 32;
const _: () = assert!(USER_DATA_ENCODED_MAX <= USER_DATA_BYTES_MAX);
const _: () = assert!(ROLE_BYTES_MAX <= u8::MAX as usize);

/// What a service binds into its document's `user_data` (docs/design.md §6): its role, the
/// manifest it runs under and its Ed25519 and X25519 keys. Layout, fixed:
///
/// ```text
/// 0x01 || len(role) (1 byte, 1..=32) || role || manifest hash (32) || Ed25519 (32) || X25519 (32)
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserData {
    /// The role the service claims.
    pub role: Role,
    /// SHA-256 of the manifest in force when the document was made.
    pub manifest_hash: [u8; 32],
    /// The service's Ed25519 signing key.
    pub ed25519: [u8; 32],
    /// The service's X25519 encryption key.
    pub x25519: [u8; 32],
}

/// Why bytes are not a [`UserData`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UserDataError {
    /// The document has no `user_data`.
    #[error("attestation document has no user_data")]
    Missing,
    /// Longer than [`USER_DATA_ENCODED_MAX`].
    #[error("user_data is {len} bytes; the layout holds at most {max}")]
    TooLong {
        /// Its length.
        len: usize,
        /// [`USER_DATA_ENCODED_MAX`].
        max: usize,
    },
    /// The version byte is not [`USER_DATA_VERSION`] (or there is none).
    #[error("user_data version is {found:?}, expected 1")]
    Version {
        /// The first byte, if any.
        found: Option<u8>,
    },
    /// The role length byte is 0 or above [`ROLE_BYTES_MAX`].
    #[error("user_data role length {len} is not in 1..={max}")]
    RoleLength {
        /// The length byte.
        len: usize,
        /// [`ROLE_BYTES_MAX`].
        max: usize,
    },
    /// The role is not a valid role name.
    #[error("user_data role {role:?} is not a role name")]
    Role {
        /// The role bytes, lossily as text.
        role: String,
    },
    /// The bytes end before the layout does.
    #[error("user_data is {len} bytes; its role length needs {needed}")]
    Truncated {
        /// Its length.
        len: usize,
        /// The length the layout needs.
        needed: usize,
    },
    /// Bytes follow the layout.
    #[error("user_data has {extra} bytes after the layout")]
    TrailingBytes {
        /// How many.
        extra: usize,
    },
}

impl UserData {
    /// The fixed layout.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let role = self.role.as_str().as_bytes();
        let mut out = Vec::with_capacity(2 + role.len() + 96);
        out.push(USER_DATA_VERSION);
        // A Role is at most ROLE_BYTES_MAX (32) bytes, asserted above to fit a byte.
        out.push(u8::try_from(role.len()).unwrap_or(u8::MAX));
        out.extend_from_slice(role);
        out.extend_from_slice(&self.manifest_hash);
        out.extend_from_slice(&self.ed25519);
        out.extend_from_slice(&self.x25519);
        out
    }

    /// Parse the fixed layout, refusing anything [`UserData::encode`] would not produce.
    ///
    /// # Errors
    /// A [`UserDataError`] naming the first thing wrong.
    pub fn decode(bytes: &[u8]) -> Result<Self, UserDataError> {
        if bytes.len() > USER_DATA_ENCODED_MAX {
            return Err(UserDataError::TooLong {
                len: bytes.len(),
                max: USER_DATA_ENCODED_MAX,
            });
        }
        let (&version, rest) = bytes
            .split_first()
            .ok_or(UserDataError::Version { found: None })?;
        if version != USER_DATA_VERSION {
            return Err(UserDataError::Version {
                found: Some(version),
            });
        }
        let needed_for = |role_len: usize| 2 + role_len + 96;
        let (&role_len, rest) = rest.split_first().ok_or(UserDataError::Truncated {
            len: bytes.len(),
            needed: needed_for(1),
        })?;
        let role_len = usize::from(role_len);
        if role_len == 0 || role_len > ROLE_BYTES_MAX {
            return Err(UserDataError::RoleLength {
                len: role_len,
                max: ROLE_BYTES_MAX,
            });
        }
        let needed = needed_for(role_len);
        if bytes.len() < needed {
            return Err(UserDataError::Truncated {
                len: bytes.len(),
                needed,
            });
        }
        if bytes.len() > needed {
            return Err(UserDataError::TrailingBytes {
                extra: bytes.len() - needed,
            });
        }
        let (role, rest) = rest
            .split_at_checked(role_len)
            .ok_or(UserDataError::Truncated {
                len: bytes.len(),
                needed,
            })?;
        let role_text = String::from_utf8(role.to_vec()).map_err(|_| UserDataError::Role {
            role: String::from_utf8_lossy(role).into_owned(),
        })?;
        let role =
            Role::new(role_text.clone()).map_err(|_| UserDataError::Role { role: role_text })?;
        let key = |i: usize| -> Result<[u8; 32], UserDataError> {
            rest.get(i * 32..(i + 1) * 32)
                .and_then(|s| <[u8; 32]>::try_from(s).ok())
                .ok_or(UserDataError::Truncated {
                    len: bytes.len(),
                    needed,
                })
        };
        Ok(Self {
            role,
            manifest_hash: key(0)?,
            ed25519: key(1)?,
            x25519: key(2)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_root_is_aws_root_g1() {
        let root = TrustAnchor::aws_nitro_root_g1();
        assert_eq!(hex::encode(root.sha256()), AWS_NITRO_ROOT_G1_SHA256);
        assert_eq!(root.subject(), "CN=aws.nitro-enclaves,OU=AWS,O=Amazon,C=US");
    }

    #[test]
    fn user_data_round_trips_and_refuses_every_other_shape() {
        let u = UserData {
            role: Role::new("signer-3").expect("valid"),
            manifest_hash: [1; 32],
            ed25519: [2; 32],
            x25519: [3; 32],
        };
        let bytes = u.encode();
        assert_eq!(bytes.len(), 2 + 8 + 96);
        assert_eq!(&bytes[..2], &[1, 8]);
        assert_eq!(UserData::decode(&bytes), Ok(u.clone()));

        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(
            UserData::decode(&longer),
            Err(UserDataError::TrailingBytes { extra: 1 })
        );
        assert_eq!(
            UserData::decode(&bytes[..bytes.len() - 1]),
            Err(UserDataError::Truncated {
                len: bytes.len() - 1,
                needed: bytes.len()
            })
        );
        assert_eq!(
            UserData::decode(&[]),
            Err(UserDataError::Version { found: None })
        );
        assert_eq!(
            UserData::decode(&[2]),
            Err(UserDataError::Version { found: Some(2) })
        );
        assert_eq!(
            UserData::decode(&[1]),
            Err(UserDataError::Truncated { len: 1, needed: 99 })
        );
        assert_eq!(
            UserData::decode(&[1, 0]),
            Err(UserDataError::RoleLength { len: 0, max: 32 })
        );
        assert_eq!(
            UserData::decode(&[1, 33]),
            Err(UserDataError::RoleLength { len: 33, max: 32 })
        );
        let mut upper = bytes.clone();
        upper[2] = b'S';
        assert!(matches!(
            UserData::decode(&upper),
            Err(UserDataError::Role { .. })
        ));
        assert!(matches!(
            UserData::decode(&[0; 513]),
            Err(UserDataError::TooLong { len: 513, .. })
        ));
        for cut in 0..bytes.len() {
            assert!(UserData::decode(&bytes[..cut]).is_err());
        }
    }
}
