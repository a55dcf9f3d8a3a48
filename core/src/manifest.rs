//! Manifests (docs/design.md §6): the signed, pinned description of every role — the measurements
//! it may run, the scopes it may read, the event kinds it may produce and consume, how often
//! it re-attests — and of every event kind: who produces it, who consumes it, which kinds
//! its parents may be, and its uniqueness key (docs/design.md §4). Together the roles' `produces` /
//! `consumes` lists and the kinds' `producers` / `consumers` are the *routing graph*.
//!
//! A manifest takes effect only when a quorum of pinned manifest-signer keys has signed it
//! ([`SignedManifest::verify`]); the log records each one, with its signatures, as a
//! `manifest.published` event ([`SignedManifest::published_body`]).
//!
//! # Format
//! JSON, unknown fields refused, every map key once, no `null` standing for an absent field
//! (a manifest must re-encode to exactly what was parsed, so the bytes a signer reviewed are
//! the bytes signed):
//!
//! ```json
//! {
//!   "version": 1,
//!   "serial": 7,
//!   "name": "govern-dev",
//!   "trusted_root": {"kind": "dev", "sha256": "<64 hex digits>"},
//!   "allow_debug": false,
//!   "roles": {
//!     "policy": {
//!       "measurements": [{"pcr0": "<96 hex digits>"}],
//!       "scopes": ["policies", "transfers"],
//!       "produces": ["policy.evaluated", "service.attested"],
//!       "consumes": ["manifest.published", "transfer.requested"],
//!       "reattest_s": 3600,
//!       "max_age_s": 7200
//!     },
//!     "keys": {
//!       "measurements": [{"pcr0": "<96 hex digits>"}],
//!       "scopes": [],
//!       "produces": ["keys.audit", "service.attested"],
//!       "consumes": ["manifest.published"],
//!       "reattest_s": 3600,
//!       "max_age_s": 7200,
//!       "kms": {
//!         "key_arn": "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
//!         "region": "eu-west-1"
//!       }
//!     }
//!   },
//!   "kinds": {
//!     "policy.evaluated": {
//!       "producers": ["policy"],
//!       "consumers": ["edge", "signer-1"],
//!       "parents": ["transfer.requested"],
//!       "same_request": true,
//!       "unique": ["request"]
//!     },
//!     "service.attested": {"producers": "*", "consumers": "*", "parents": [],
//!                          "same_request": false, "unique": []}
//!   }
//! }
//! ```
//!
//! - `trusted_root`: `{"kind":"aws-nitro-root-g1"}` (AWS Nitro Enclaves Root-G1, built in)
//!   or `{"kind":"dev","sha256":hex}` (SHA-256 of the data dir's dev CA root, DER). A
//!   production build refuses any manifest pinning the dev root (`allow_dev_root`).
//! - `measurements`: the accepted enclave images of the role; each pins PCR0 and optionally
//!   PCR1 and PCR2 (lower-case hex of 48 bytes). A document matches when it matches one
//!   entry. PCR0 all zero (a debug enclave) is refused unless `allow_debug`.
//! - `kms` (role `keys` only, optional; absent in dev and in templates): the AWS KMS key that
//!   seals the key service's master in an enclave build ([`KmsPin`]). `key_arn` is the key's
//!   own ARN, `arn:<aws|aws-cn|aws-us-gov>:kms:<region>:<12-digit account>:key/<key id>`
//!   (the key id a lower-case UUID, or `mrk-` and 32 lower-case hex digits for a multi-Region
//!   key), never an alias (an alias can be re-pointed by whoever administers the account);
//!   `region` is the ARN's region. Because the quorum signs it, neither the key nor the
//!   endpoint (`https://kms.<region>.amazonaws.com`, `.amazonaws.com.cn` in `aws-cn`) is the
//!   host's choice: an enclave build refuses to start its key service without this pin.
//! - `producers` / `consumers`: an array of roles, or `"*"`: every role of the manifest.
//!   `"*"` as producers is for kinds each service appends *about itself*
//!   (`service.attested`): the log checks that such an event concerns its producer's own
//!   identity; the manifest only says every role may append one.
//! - `parents`: the kinds an event's parents may have; empty means no parents at all.
//!   `same_request`: every parent has the event's tenant and request.
//! - `unique`: field paths into the event (`tenant`, `request`, `producer.role`,
//!   `producer.key`, `body.<field>[.<field>…]`) whose values form the uniqueness key: the
//!   log refuses a second event of the kind with the same key ([`Manifest::uniqueness_key`]).
//!   Empty: no key.
//! - Consistency ([`Manifest::validate`]): a kind names role R as a producer exactly when R
//!   lists the kind in `produces` (likewise consumers / `consumes`); every parent kind is
//!   declared, and every producer of a kind can see each of its parent kinds (consumes or
//!   produces it): a service can only answer what it has read.
//!
//! # Hash and signatures
//! `manifest hash = SHA-256(JCS(manifest))`, the value a service binds into its attestation
//! document's `user_data`. A signature is Ed25519 (`verify_strict`) over
//! `"govern/manifest/v1" || 0x00 || JCS(manifest)`.
//!
//! Templates (the files in `manifests/`) pass [`Manifest::validate`] with *unpinned*
//! values — no measurements yet, an empty dev root fingerprint — but not
//! [`Manifest::validate_pinned`], which every use of a manifest requires.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::marker::PhantomData;

use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};

use crate::attestation::{AWS_NITRO_ROOT_G1_SHA256, PCR_BYTES, TrustAnchor};
use crate::canonical;
use crate::event::{Event, EventSignature, Kind, PublicKey, Role};

/// The only manifest format version.
pub const MANIFEST_VERSION: u32 = 1;
/// The signature domain: keeps a manifest signature from being valid as any other message.
pub const MANIFEST_SIGNATURE_DOMAIN: &[u8] = b"govern/manifest/v1";
/// The kind of the event that records a manifest in the log.
pub const MANIFEST_PUBLISHED_KIND: &str = crate::kinds::MANIFEST_PUBLISHED;
/// The largest manifest, in bytes of its canonical form: with its signatures and the event
/// envelope it must fit one event ([`crate::event::EVENT_BYTES_MAX`]).
pub const MANIFEST_BYTES_MAX: usize = 48 * 1024;
/// The largest JSON text parsed as a manifest (pretty-printed files are larger than JCS).
pub const MANIFEST_TEXT_BYTES_MAX: usize = 256 * 1024;
/// The most signatures a signed manifest may carry.
pub const MANIFEST_SIGNATURES_MAX: usize = 32;
/// The largest integer a manifest may hold: JSON numbers are exact only up to 2^53 − 1
/// (RFC 8785 formats numbers as IEEE 754 doubles).
pub const MANIFEST_INTEGER_MAX: u64 = (1 << 53) - 1;
/// The longest manifest name.
pub const MANIFEST_NAME_BYTES_MAX: usize = 128;
/// The longest scope name.
pub const SCOPE_BYTES_MAX: usize = 32;
/// The most measurements one role may pin.
pub const MEASUREMENTS_MAX: usize = 16;
/// The most fields in one uniqueness key.
pub const UNIQUE_FIELDS_MAX: usize = 8;
/// The longest uniqueness key path.
pub const UNIQUE_PATH_BYTES_MAX: usize = 128;
/// The role of the key service: the only role whose entry may pin an AWS KMS key ([`KmsPin`]).
pub const KEYS_ROLE: &str = "keys";
/// The AWS partitions a pinned KMS key's ARN may name.
pub const AWS_PARTITIONS: [&str; 3] = ["aws", "aws-cn", "aws-us-gov"];
/// The longest AWS region name a KMS pin may name.
pub const AWS_REGION_BYTES_MAX: usize = 32;
/// The digits of an AWS account id.
pub const AWS_ACCOUNT_DIGITS: usize = 12;

// Signatures and the envelope fit beside the largest manifest in one event.
const _: () = assert!(
    MANIFEST_BYTES_MAX + MANIFEST_SIGNATURES_MAX * 160 + 4096 <= crate::event::EVENT_BYTES_MAX
);

/// Why a manifest is not well-formed. Each variant names where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ValidationError {
    /// `version` is not [`MANIFEST_VERSION`].
    #[error("manifest version {found} is not supported; expected {MANIFEST_VERSION}")]
    Version {
        /// The version found.
        found: u32,
    },
    /// An integer above [`MANIFEST_INTEGER_MAX`].
    #[error("{field} is {value}; manifest integers are at most 2^53-1")]
    IntegerTooLarge {
        /// Which field (`serial`, `roles.edge.max_age_s`, ...).
        field: String,
        /// Its value.
        value: u64,
    },
    /// `name` is empty, longer than [`MANIFEST_NAME_BYTES_MAX`], or has control characters.
    #[error("manifest name {name:?} is not 1..={MANIFEST_NAME_BYTES_MAX} printable bytes")]
    Name {
        /// The name.
        name: String,
    },
    /// The dev root fingerprint is neither empty (unpinned) nor 64 lower-case hex digits.
    #[error("trusted_root.sha256 {found:?} is not 64 lower-case hex digits")]
    RootFingerprint {
        /// The value found.
        found: String,
    },
    /// The manifest declares no role.
    #[error("manifest declares no role")]
    NoRoles,
    /// The manifest declares no kind.
    #[error("manifest declares no event kind")]
    NoKinds,
    /// A role produces and consumes nothing.
    #[error("role {role} produces and consumes nothing")]
    EmptyRole {
        /// The role.
        role: Role,
    },
    /// `reattest_s` is zero or not below `max_age_s`.
    #[error(
        "role {role}: reattest_s ({reattest_s}) must be positive and below max_age_s ({max_age_s})"
    )]
    Timing {
        /// The role.
        role: Role,
        /// Its re-attestation period.
        reattest_s: u64,
        /// Its identity lifetime.
        max_age_s: u64,
    },
    /// More than [`MEASUREMENTS_MAX`] measurements.
    #[error("role {role} pins {count} measurements; the limit is {MEASUREMENTS_MAX}")]
    TooManyMeasurements {
        /// The role.
        role: Role,
        /// How many.
        count: usize,
    },
    /// A measurement still holds a template placeholder instead of a PCR value.
    #[error(
        "role {role}: measurement {index} PCR{pcr} is the placeholder {value:?}; \
         put the PCR of the signed enclave image there"
    )]
    MeasurementPlaceholder {
        /// The role.
        role: Role,
        /// Which measurement of the role (from 0).
        index: usize,
        /// Which PCR.
        pcr: u8,
        /// The placeholder.
        value: String,
    },
    /// A PCR value is not 48 bytes of lower-case hex.
    #[error("role {role}: measurement {index} PCR{pcr} {value:?} is not {} lower-case hex digits", PCR_BYTES * 2)]
    Measurement {
        /// The role.
        role: Role,
        /// Which measurement of the role (from 0).
        index: usize,
        /// Which PCR.
        pcr: u8,
        /// The value.
        value: String,
    },
    /// A measurement pins an all-zero PCR0 (a debug enclave) and `allow_debug` is false.
    #[error(
        "role {role}: measurement {index} pins an all-zero PCR0 (a debug enclave) but allow_debug is false"
    )]
    DebugMeasurement {
        /// The role.
        role: Role,
        /// Which measurement of the role (from 0).
        index: usize,
    },
    /// A scope name is not 1..=[`SCOPE_BYTES_MAX`] bytes of `[a-z0-9_-]`.
    #[error("role {role}: scope {scope:?} is not 1..={SCOPE_BYTES_MAX} bytes of [a-z0-9_-]")]
    Scope {
        /// The role.
        role: Role,
        /// The scope.
        scope: String,
    },
    /// A list names the same thing twice.
    #[error("{owner}: {list} names {entry} twice")]
    Duplicate {
        /// The role or kind holding the list.
        owner: String,
        /// Which list (`measurements`, `scopes`, `produces`, ...).
        list: &'static str,
        /// The repeated entry.
        entry: String,
    },
    /// A role's `produces` or `consumes` names a kind the manifest does not declare.
    #[error("role {role}: {list} names {kind}, which the manifest does not declare")]
    UndeclaredKind {
        /// The role.
        role: Role,
        /// `produces` or `consumes`.
        list: &'static str,
        /// The kind.
        kind: Kind,
    },
    /// A kind's `producers` or `consumers` names a role the manifest does not declare.
    #[error("kind {kind}: {list} names role {role}, which the manifest does not declare")]
    UndeclaredRole {
        /// The kind.
        kind: Kind,
        /// `producers` or `consumers`.
        list: &'static str,
        /// The role.
        role: Role,
    },
    /// A kind has no producer.
    #[error("kind {kind} has no producer")]
    NoProducer {
        /// The kind.
        kind: Kind,
    },
    /// The two halves of the routing graph disagree: a kind names a role as producer
    /// (consumer) but the role does not list the kind in `produces` (`consumes`), or the
    /// other way round.
    #[error(
        "routing graph: kind {kind} {} role {role} among its {list}, but role {role} {} it",
        if *.kind_says { "names" } else { "does not name" },
        if *.kind_says { "does not list" } else { "lists" }
    )]
    Routing {
        /// The kind.
        kind: Kind,
        /// The role.
        role: Role,
        /// `producers` or `consumers`.
        list: &'static str,
        /// True when the kind names the role and the role does not list the kind; false
        /// for the reverse.
        kind_says: bool,
    },
    /// A parent kind is not declared.
    #[error("kind {kind}: parent kind {parent} is not declared")]
    UndeclaredParent {
        /// The kind.
        kind: Kind,
        /// The parent kind.
        parent: Kind,
    },
    /// A producer of a kind can neither consume nor produce one of its parent kinds, so it
    /// could never have read the parent it names.
    #[error(
        "routing graph: role {role} produces {kind}, whose parents may be {parent}, \
         but neither consumes nor produces {parent}"
    )]
    ParentUnreadable {
        /// The kind.
        kind: Kind,
        /// The parent kind.
        parent: Kind,
        /// The producer that cannot read it.
        role: Role,
    },
    /// A uniqueness path is not one of the forms allowed.
    #[error(
        "kind {kind}: uniqueness path {path:?} is not tenant, request, producer.role, \
         producer.key or body.<field>[.<field>...]"
    )]
    UniquePath {
        /// The kind.
        kind: Kind,
        /// The path.
        path: String,
    },
    /// More than [`UNIQUE_FIELDS_MAX`] uniqueness paths.
    #[error("kind {kind}: {count} uniqueness paths; the limit is {UNIQUE_FIELDS_MAX}")]
    TooManyUniquePaths {
        /// The kind.
        kind: Kind,
        /// How many.
        count: usize,
    },
    /// Canonical form longer than [`MANIFEST_BYTES_MAX`].
    #[error("manifest is {size} bytes in canonical form; the limit is {MANIFEST_BYTES_MAX}")]
    TooLarge {
        /// Its canonical size.
        size: usize,
    },
    /// A role other than [`KEYS_ROLE`] pins an AWS KMS key.
    #[error("role {role} pins an AWS KMS key (kms); only role {KEYS_ROLE}, the key service, may")]
    KmsRole {
        /// The role.
        role: Role,
    },
    /// Role `keys`' AWS KMS pin is not well-formed.
    #[error("role {role}: kms: {error}")]
    Kms {
        /// The role.
        role: Role,
        /// What is wrong with the pin.
        error: KmsPinError,
    },
    /// (Pinned manifests only.) A role pins no measurement, so no service could ever hold it.
    #[error(
        "role {role} pins no measurement (run `govern manifest pin` in dev, or fill in the PCR0 of its enclave image)"
    )]
    Unpinned {
        /// The role.
        role: Role,
    },
    /// (Pinned manifests only.) The dev root's fingerprint is still empty.
    #[error(
        "trusted_root is the dev root but its sha256 is empty (`govern node` creates the dev CA, then `govern manifest pin` pins it)"
    )]
    DevRootUnpinned,
}

/// Why a [`KmsPin`] is not a pin of one AWS KMS key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KmsPinError {
    /// A field still holds a template placeholder.
    #[error("{field} is the placeholder {value:?}; put the KMS key's ARN and its region there")]
    Placeholder {
        /// `key_arn` or `region`.
        field: &'static str,
        /// The placeholder.
        value: String,
    },
    /// `key_arn` names an alias, not a key.
    #[error(
        "key_arn {found:?} names an alias, which whoever administers the account can point at \
         another key: pin the key's own ARN (arn:aws:kms:<region>:<account>:key/<key id>)"
    )]
    Alias {
        /// The value found.
        found: String,
    },
    /// `key_arn` is not a KMS key ARN of the accepted form.
    #[error(
        "key_arn {found:?} is not an AWS KMS key ARN: arn:<aws|aws-cn|aws-us-gov>:kms:<region>:\
         <12-digit account>:key/<lower-case UUID, or mrk- and 32 lower-case hex digits>"
    )]
    KeyArn {
        /// The value found.
        found: String,
    },
    /// `region` is not the ARN's region.
    #[error("region {region:?} is not the key ARN's region {arn_region:?}")]
    Region {
        /// The pin's `region`.
        region: String,
        /// The region in `key_arn`.
        arn_region: String,
    },
}

/// Why a manifest, its signatures or a query about it is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// Longer than [`MANIFEST_TEXT_BYTES_MAX`].
    #[error("manifest text is {size} bytes; the limit is {MANIFEST_TEXT_BYTES_MAX}")]
    TooLarge {
        /// Its size.
        size: usize,
    },
    /// Not JSON of the manifest's shape.
    #[error("manifest JSON: {reason}")]
    Json {
        /// The parser's complaint.
        reason: String,
    },
    /// JSON that does not re-encode to itself (a `null` standing for an absent field), so
    /// what a reviewer read might not be what is signed.
    #[error("manifest JSON does not re-encode to itself (an optional field written as null?)")]
    NotRoundTrip,
    /// The manifest is not well-formed.
    #[error("manifest is invalid: {0}")]
    Invalid(#[from] ValidationError),
    /// The pinned signer set is unusable.
    #[error("manifest signers: {reason}")]
    Signers {
        /// What is wrong.
        reason: String,
    },
    /// More than [`MANIFEST_SIGNATURES_MAX`] signatures.
    #[error("manifest carries {count} signatures; the limit is {MANIFEST_SIGNATURES_MAX}")]
    TooManySignatures {
        /// How many.
        count: usize,
    },
    /// A pinned signer's signature does not verify: the manifest was changed after signing,
    /// or the signature is forged.
    #[error("the signature by pinned manifest signer {key} does not verify over this manifest")]
    BadSignature {
        /// The signer's key, base64.
        key: String,
    },
    /// Fewer valid signatures by distinct pinned keys than the threshold.
    #[error(
        "manifest is under-signed: {valid} valid signature(s) by distinct pinned signers, {threshold} required"
    )]
    UnderSigned {
        /// Valid signatures by distinct pinned keys.
        valid: usize,
        /// The threshold.
        threshold: usize,
    },
    /// The manifest pins the dev root and this build refuses it.
    #[error("manifest pins the dev root, which this (production) build refuses")]
    DevRootRefused,
    /// A successor whose serial does not exceed its predecessor's.
    #[error(
        "manifest serial {serial} does not exceed the serial {previous} of the manifest in force"
    )]
    NotSuccessor {
        /// The new serial.
        serial: u64,
        /// The serial in force.
        previous: u64,
    },
    /// A query about a kind the manifest does not declare.
    #[error("event kind {kind} is not declared in the manifest")]
    UnknownKind {
        /// The kind.
        kind: Kind,
    },
    /// An event lacks a field of its kind's uniqueness key.
    #[error("event of kind {kind} has no {path}, which its uniqueness key needs")]
    UniqueFieldMissing {
        /// The kind.
        kind: Kind,
        /// The path.
        path: String,
    },
    /// A `manifest.published` body is malformed.
    #[error("manifest.published body: {reason}")]
    PublishedBody {
        /// What is wrong.
        reason: String,
    },
    /// A `manifest.published` body's `hash` is not its manifest's.
    #[error("manifest.published body claims hash {claimed}, but its manifest hashes to {computed}")]
    HashMismatch {
        /// The body's `hash`.
        claimed: String,
        /// The hash of its manifest.
        computed: String,
    },
    /// Canonical encoding failed (no manifest built from JSON can cause this).
    #[error("cannot canonicalize the manifest: {reason}")]
    Canonical {
        /// The encoder's complaint.
        reason: String,
    },
}

/// The root certificate attestation documents must chain to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", deny_unknown_fields)]
pub enum TrustedRoot {
    /// AWS Nitro Enclaves Root-G1 (built in).
    #[serde(rename = "aws-nitro-root-g1")]
    AwsNitroRootG1,
    /// The dev CA root of a data dir, by the SHA-256 of its DER; empty in templates.
    #[serde(rename = "dev")]
    Dev {
        /// Lower-case hex SHA-256 of the root's DER, or empty (unpinned).
        sha256: String,
    },
}

impl TrustedRoot {
    /// Whether this is the dev root.
    #[must_use]
    pub fn is_dev(&self) -> bool {
        matches!(self, Self::Dev { .. })
    }

    /// The pinned root's SHA-256; `None` for an unpinned or malformed dev fingerprint.
    #[must_use]
    pub fn sha256(&self) -> Option<[u8; 32]> {
        let text = match self {
            Self::AwsNitroRootG1 => AWS_NITRO_ROOT_G1_SHA256,
            Self::Dev { sha256 } => sha256,
        };
        if !is_lower_hex(text, 32) {
            return None;
        }
        hex::decode(text).ok()?.try_into().ok()
    }

    /// Whether `anchor` is the root this pins.
    #[must_use]
    pub fn pins(&self, anchor: &TrustAnchor) -> bool {
        self.sha256() == Some(anchor.sha256())
    }
}

/// A set of roles: `"*"` (every role of the manifest) or an explicit array.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RoleSet {
    /// Every role the manifest declares.
    Any,
    /// These roles.
    Only(Vec<Role>),
}

impl RoleSet {
    /// Whether `role` is in the set (for [`RoleSet::Any`], any role at all: callers check
    /// that the role is declared).
    #[must_use]
    pub fn contains(&self, role: &Role) -> bool {
        match self {
            Self::Any => true,
            Self::Only(roles) => roles.contains(role),
        }
    }
}

impl fmt::Display for RoleSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("*"),
            Self::Only(roles) => {
                let names: Vec<&str> = roles.iter().map(Role::as_str).collect();
                f.write_str(&names.join(","))
            }
        }
    }
}

impl Serialize for RoleSet {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Any => s.serialize_str("*"),
            Self::Only(roles) => roles.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for RoleSet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RoleSet;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("\"*\" or an array of roles")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<RoleSet, E> {
                if s == "*" {
                    Ok(RoleSet::Any)
                } else {
                    Err(E::invalid_value(de::Unexpected::Str(s), &self))
                }
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RoleSet, A::Error> {
                let mut roles = Vec::new();
                while let Some(role) = seq.next_element::<Role>()? {
                    roles.push(role);
                }
                Ok(RoleSet::Only(roles))
            }
        }
        d.deserialize_any(V)
    }
}

/// One accepted enclave image: PCR0, and optionally PCR1 and PCR2, lower-case hex.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Measurement {
    /// PCR0: the enclave image.
    pub pcr0: String,
    /// PCR1: the kernel and boot ramdisk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pcr1: Option<String>,
    /// PCR2: the application.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pcr2: Option<String>,
}

impl Measurement {
    /// The pinned PCRs by index, as bytes. `None` when a value is not well-formed.
    #[must_use]
    pub fn pcrs(&self) -> Option<BTreeMap<u8, Vec<u8>>> {
        let mut out = BTreeMap::new();
        for (index, value) in self.entries() {
            if !is_lower_hex(value, PCR_BYTES) {
                return None;
            }
            out.insert(index, hex::decode(value).ok()?);
        }
        Some(out)
    }

    /// Whether a document's PCRs match: every PCR this pins is present and equal.
    #[must_use]
    pub fn matches(&self, pcrs: &BTreeMap<u8, Vec<u8>>) -> bool {
        self.entries().all(|(index, value)| {
            is_lower_hex(value, PCR_BYTES)
                && pcrs.get(&index).is_some_and(|found| hex_eq(value, found))
        })
    }

    fn entries(&self) -> impl Iterator<Item = (u8, &str)> {
        [
            Some((0, self.pcr0.as_str())),
            self.pcr1.as_deref().map(|v| (1, v)),
            self.pcr2.as_deref().map(|v| (2, v)),
        ]
        .into_iter()
        .flatten()
    }
}

/// What the manifest says about one role.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleSpec {
    /// The enclave images that may hold the role (any one of them).
    pub measurements: Vec<Measurement>,
    /// The tenant-data scopes whose keys the role may receive.
    pub scopes: Vec<String>,
    /// The kinds it may append.
    pub produces: Vec<Kind>,
    /// The kinds it reads from the log.
    pub consumes: Vec<Kind>,
    /// How often it re-attests, in seconds.
    pub reattest_s: u64,
    /// How long an identity stays live after its `service.attested`, in seconds.
    pub max_age_s: u64,
    /// (Role `keys` only.) The AWS KMS key that seals the key service's master in an enclave
    /// build. Absent (not `null`) when none is pinned, so manifests without it keep their
    /// bytes and hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms: Option<KmsPin>,
}

/// The AWS KMS key the quorum pins for the key service's master (role `keys`' `kms`): an
/// enclave build sends `GenerateDataKey` and `Decrypt` for this key only, to this region's
/// endpoint only, and accepts only answers that name this key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KmsPin {
    /// The key's own ARN, `arn:<partition>:kms:<region>:<account>:key/<key id>`; never an
    /// alias.
    pub key_arn: String,
    /// The key's region: the ARN's, where the key service sends its requests.
    pub region: String,
}

/// The parts of a pinned KMS key's ARN ([`KmsPin::key`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KmsKeyArn<'a> {
    /// One of [`AWS_PARTITIONS`].
    pub partition: &'a str,
    /// The key's region (`eu-west-1`).
    pub region: &'a str,
    /// The 12-digit account that owns the key.
    pub account: &'a str,
    /// The key id: a lower-case UUID, or `mrk-` and 32 lower-case hex digits.
    pub key_id: &'a str,
}

impl KmsPin {
    /// The pinned key's ARN, parsed, once the pin is checked: no placeholder, a well-formed
    /// key ARN (not an alias) of an accepted partition, and `region` the ARN's region.
    ///
    /// # Errors
    /// The [`KmsPinError`] naming what is wrong.
    pub fn key(&self) -> Result<KmsKeyArn<'_>, KmsPinError> {
        for (field, value) in [("key_arn", &self.key_arn), ("region", &self.region)] {
            if value.is_empty() || value.starts_with('<') {
                return Err(KmsPinError::Placeholder {
                    field,
                    value: value.clone(),
                });
            }
        }
        let arn = parse_kms_key_arn(&self.key_arn)?;
        if arn.region != self.region {
            return Err(KmsPinError::Region {
                region: self.region.clone(),
                arn_region: arn.region.to_string(),
            });
        }
        Ok(arn)
    }
}

/// `text` as a KMS key ARN (see [`KmsPin::key_arn`]).
fn parse_kms_key_arn(text: &str) -> Result<KmsKeyArn<'_>, KmsPinError> {
    if text.starts_with("alias/") || text.contains(":alias/") {
        return Err(KmsPinError::Alias {
            found: text.to_string(),
        });
    }
    let bad = || KmsPinError::KeyArn {
        found: text.to_string(),
    };
    let mut parts = text.splitn(6, ':');
    let mut next = || parts.next().ok_or_else(bad);
    let (arn, partition, service, region, account, resource) =
        (next()?, next()?, next()?, next()?, next()?, next()?);
    let key_id = resource.strip_prefix("key/").ok_or_else(bad)?;
    let well_formed = arn == "arn"
        && AWS_PARTITIONS.contains(&partition)
        && service == "kms"
        && is_aws_region(region)
        && account.len() == AWS_ACCOUNT_DIGITS
        && account.bytes().all(|b| b.is_ascii_digit())
        && is_kms_key_id(key_id);
    if !well_formed {
        return Err(bad());
    }
    Ok(KmsKeyArn {
        partition,
        region,
        account,
        key_id,
    })
}

/// An AWS region name: lower-case words and a number, joined by `-` (`eu-west-1`,
/// `us-gov-west-1`), at most [`AWS_REGION_BYTES_MAX`] bytes.
fn is_aws_region(text: &str) -> bool {
    let words: Vec<&str> = text.split('-').collect();
    text.len() <= AWS_REGION_BYTES_MAX
        && words.len() >= 3
        && words.iter().enumerate().all(|(i, w)| {
            !w.is_empty()
                && if i + 1 == words.len() {
                    w.bytes().all(|b| b.is_ascii_digit())
                } else {
                    w.bytes().all(|b| b.is_ascii_lowercase())
                }
        })
}

/// A KMS key id as KMS writes it: a lower-case UUID, or `mrk-` and 32 lower-case hex digits
/// (a multi-Region key).
fn is_kms_key_id(text: &str) -> bool {
    let hex = |s: &str, digits: usize| is_lower_hex(s, digits / 2);
    if let Some(mrk) = text.strip_prefix("mrk-") {
        return hex(mrk, 32);
    }
    let groups: Vec<&str> = text.split('-').collect();
    groups.len() == 5 && groups.iter().zip([8, 4, 4, 4, 12]).all(|(g, n)| hex(g, n))
}

/// What the manifest says about one event kind.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KindSpec {
    /// The roles that may append it (`"*"`: every role, about itself).
    pub producers: RoleSet,
    /// The roles that read it (`"*"`: every role).
    pub consumers: RoleSet,
    /// The kinds its parents may have; empty: it has no parents.
    pub parents: Vec<Kind>,
    /// Its parents must have its tenant and request.
    pub same_request: bool,
    /// Field paths of its uniqueness key; empty: none.
    pub unique: Vec<String>,
}

/// The manifest: every role and every event kind. See the module documentation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Format version, [`MANIFEST_VERSION`].
    pub version: u32,
    /// Strictly increasing between the manifests a deployment publishes.
    pub serial: u64,
    /// The deployment's name.
    pub name: String,
    /// The root attestation documents must chain to.
    pub trusted_root: TrustedRoot,
    /// Accept debug enclaves (PCR0–PCR2 all zero), whose memory the host can read.
    pub allow_debug: bool,
    /// Every role.
    #[serde(deserialize_with = "unique_map")]
    pub roles: BTreeMap<Role, RoleSpec>,
    /// Every event kind.
    #[serde(deserialize_with = "unique_map")]
    pub kinds: BTreeMap<Kind, KindSpec>,
}

impl Manifest {
    /// Parse JSON text (a bare manifest), refusing anything that does not re-encode to
    /// itself. Does not validate.
    ///
    /// # Errors
    /// [`ManifestError::TooLarge`], [`ManifestError::Json`] or [`ManifestError::NotRoundTrip`].
    pub fn from_json(text: &[u8]) -> Result<Self, ManifestError> {
        parse_exact(text)
    }

    /// The canonical (RFC 8785) bytes.
    ///
    /// # Errors
    /// [`ManifestError::Canonical`], which no manifest parsed from JSON causes.
    pub fn canonical_bytes(&self) -> Result<Vec<u8>, ManifestError> {
        canonical::to_vec(self).map_err(|e| ManifestError::Canonical {
            reason: e.to_string(),
        })
    }

    /// `SHA-256(JCS(manifest))`: what a service binds into its attestation `user_data`.
    ///
    /// # Errors
    /// As [`Manifest::canonical_bytes`].
    pub fn manifest_hash(&self) -> Result<[u8; 32], ManifestError> {
        Ok(Sha256::digest(self.canonical_bytes()?).into())
    }

    /// The bytes each signer signs: `"govern/manifest/v1" || 0x00 || JCS(manifest)`.
    ///
    /// # Errors
    /// As [`Manifest::canonical_bytes`].
    pub fn signing_bytes(&self) -> Result<Vec<u8>, ManifestError> {
        let jcs = self.canonical_bytes()?;
        let mut out = Vec::with_capacity(MANIFEST_SIGNATURE_DOMAIN.len() + 1 + jcs.len());
        out.extend_from_slice(MANIFEST_SIGNATURE_DOMAIN);
        out.push(0);
        out.extend_from_slice(&jcs);
        Ok(out)
    }

    /// Check that the manifest is well-formed and its routing graph consistent (see the
    /// module documentation). Templates pass with unpinned values; see
    /// [`Manifest::validate_pinned`].
    ///
    /// # Errors
    /// The first [`ValidationError`] found.
    pub fn validate(&self) -> Result<(), ValidationError> {
        if self.version != MANIFEST_VERSION {
            return Err(ValidationError::Version {
                found: self.version,
            });
        }
        check_integer("serial", self.serial)?;
        if self.name.is_empty()
            || self.name.len() > MANIFEST_NAME_BYTES_MAX
            || self.name.chars().any(char::is_control)
        {
            return Err(ValidationError::Name {
                name: self.name.clone(),
            });
        }
        if let TrustedRoot::Dev { sha256 } = &self.trusted_root
            && !sha256.is_empty()
            && !is_lower_hex(sha256, 32)
        {
            return Err(ValidationError::RootFingerprint {
                found: sha256.clone(),
            });
        }
        if self.roles.is_empty() {
            return Err(ValidationError::NoRoles);
        }
        if self.kinds.is_empty() {
            return Err(ValidationError::NoKinds);
        }
        for (role, spec) in &self.roles {
            self.validate_role(role, spec)?;
        }
        for (kind, spec) in &self.kinds {
            self.validate_kind(kind, spec)?;
        }
        // Canonical encoding of a manifest cannot fail (string keys, no floats); if it ever
        // did, the manifest could not be hashed or signed, so refuse it as oversized.
        let size = self
            .canonical_bytes()
            .map_err(|_| ValidationError::TooLarge { size: usize::MAX })?
            .len();
        if size > MANIFEST_BYTES_MAX {
            return Err(ValidationError::TooLarge { size });
        }
        Ok(())
    }

    /// [`Manifest::validate`], and everything a manifest in use needs beyond a template:
    /// every role pins at least one measurement and the dev root (if that is the root) has
    /// its fingerprint.
    ///
    /// # Errors
    /// The first [`ValidationError`] found.
    pub fn validate_pinned(&self) -> Result<(), ValidationError> {
        self.validate()?;
        if let TrustedRoot::Dev { sha256 } = &self.trusted_root
            && sha256.is_empty()
        {
            return Err(ValidationError::DevRootUnpinned);
        }
        if let Some((role, _)) = self.roles.iter().find(|(_, s)| s.measurements.is_empty()) {
            return Err(ValidationError::Unpinned { role: role.clone() });
        }
        Ok(())
    }

    fn validate_role(&self, role: &Role, spec: &RoleSpec) -> Result<(), ValidationError> {
        check_integer(&format!("roles.{role}.reattest_s"), spec.reattest_s)?;
        check_integer(&format!("roles.{role}.max_age_s"), spec.max_age_s)?;
        if spec.reattest_s == 0 || spec.reattest_s >= spec.max_age_s {
            return Err(ValidationError::Timing {
                role: role.clone(),
                reattest_s: spec.reattest_s,
                max_age_s: spec.max_age_s,
            });
        }
        if spec.produces.is_empty() && spec.consumes.is_empty() {
            return Err(ValidationError::EmptyRole { role: role.clone() });
        }
        if spec.measurements.len() > MEASUREMENTS_MAX {
            return Err(ValidationError::TooManyMeasurements {
                role: role.clone(),
                count: spec.measurements.len(),
            });
        }
        let owner = format!("role {role}");
        for (index, m) in spec.measurements.iter().enumerate() {
            for (pcr, value) in m.entries() {
                if value.is_empty() || value.starts_with('<') {
                    return Err(ValidationError::MeasurementPlaceholder {
                        role: role.clone(),
                        index,
                        pcr,
                        value: value.to_string(),
                    });
                }
                if !is_lower_hex(value, PCR_BYTES) {
                    return Err(ValidationError::Measurement {
                        role: role.clone(),
                        index,
                        pcr,
                        value: value.to_string(),
                    });
                }
            }
            if !self.allow_debug && m.pcr0.bytes().all(|b| b == b'0') {
                return Err(ValidationError::DebugMeasurement {
                    role: role.clone(),
                    index,
                });
            }
        }
        no_duplicates(
            &owner,
            "measurements",
            spec.measurements.iter().map(|m| &m.pcr0),
        )?;
        if let Some(pin) = &spec.kms {
            if role.as_str() != KEYS_ROLE {
                return Err(ValidationError::KmsRole { role: role.clone() });
            }
            pin.key().map_err(|error| ValidationError::Kms {
                role: role.clone(),
                error,
            })?;
        }
        for scope in &spec.scopes {
            if scope.is_empty()
                || scope.len() > SCOPE_BYTES_MAX
                || !scope
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
            {
                return Err(ValidationError::Scope {
                    role: role.clone(),
                    scope: scope.clone(),
                });
            }
        }
        no_duplicates(&owner, "scopes", spec.scopes.iter())?;
        for (list, kinds) in [("produces", &spec.produces), ("consumes", &spec.consumes)] {
            no_duplicates(&owner, list, kinds.iter())?;
            for kind in kinds {
                let Some(kspec) = self.kinds.get(kind) else {
                    return Err(ValidationError::UndeclaredKind {
                        role: role.clone(),
                        list,
                        kind: kind.clone(),
                    });
                };
                let named = if list == "produces" {
                    &kspec.producers
                } else {
                    &kspec.consumers
                };
                if !named.contains(role) {
                    return Err(ValidationError::Routing {
                        kind: kind.clone(),
                        role: role.clone(),
                        list: if list == "produces" {
                            "producers"
                        } else {
                            "consumers"
                        },
                        kind_says: false,
                    });
                }
            }
        }
        Ok(())
    }

    fn validate_kind(&self, kind: &Kind, spec: &KindSpec) -> Result<(), ValidationError> {
        let owner = format!("kind {kind}");
        for (list, set) in [
            ("producers", &spec.producers),
            ("consumers", &spec.consumers),
        ] {
            let roles: Vec<&Role> = match set {
                RoleSet::Any => self.roles.keys().collect(),
                RoleSet::Only(roles) => {
                    no_duplicates(&owner, list, roles.iter())?;
                    roles.iter().collect()
                }
            };
            if list == "producers" && roles.is_empty() {
                return Err(ValidationError::NoProducer { kind: kind.clone() });
            }
            for role in roles {
                let Some(rspec) = self.roles.get(role) else {
                    return Err(ValidationError::UndeclaredRole {
                        kind: kind.clone(),
                        list,
                        role: role.clone(),
                    });
                };
                let listed = if list == "producers" {
                    &rspec.produces
                } else {
                    &rspec.consumes
                };
                if !listed.contains(kind) {
                    return Err(ValidationError::Routing {
                        kind: kind.clone(),
                        role: role.clone(),
                        list,
                        kind_says: true,
                    });
                }
            }
        }
        no_duplicates(&owner, "parents", spec.parents.iter())?;
        for parent in &spec.parents {
            if !self.kinds.contains_key(parent) {
                return Err(ValidationError::UndeclaredParent {
                    kind: kind.clone(),
                    parent: parent.clone(),
                });
            }
            for (role, rspec) in &self.roles {
                if spec.producers.contains(role)
                    && !rspec.consumes.contains(parent)
                    && !rspec.produces.contains(parent)
                {
                    return Err(ValidationError::ParentUnreadable {
                        kind: kind.clone(),
                        parent: parent.clone(),
                        role: role.clone(),
                    });
                }
            }
        }
        if spec.unique.len() > UNIQUE_FIELDS_MAX {
            return Err(ValidationError::TooManyUniquePaths {
                kind: kind.clone(),
                count: spec.unique.len(),
            });
        }
        no_duplicates(&owner, "unique", spec.unique.iter())?;
        for path in &spec.unique {
            if !valid_unique_path(path) {
                return Err(ValidationError::UniquePath {
                    kind: kind.clone(),
                    path: path.clone(),
                });
            }
        }
        Ok(())
    }

    /// The role's entry.
    #[must_use]
    pub fn role(&self, role: &Role) -> Option<&RoleSpec> {
        self.roles.get(role)
    }

    /// The kind's entry.
    #[must_use]
    pub fn kind(&self, kind: &Kind) -> Option<&KindSpec> {
        self.kinds.get(kind)
    }

    /// Whether `role` may append events of `kind`: the role is declared and lists the kind
    /// in `produces`, and the kind names the role among its producers.
    #[must_use]
    pub fn role_may_produce(&self, role: &Role, kind: &Kind) -> bool {
        self.roles
            .get(role)
            .is_some_and(|r| r.produces.contains(kind))
            && self
                .kinds
                .get(kind)
                .is_some_and(|k| k.producers.contains(role))
    }

    /// Whether `role` reads events of `kind` (both halves of the routing graph agree).
    #[must_use]
    pub fn role_may_consume(&self, role: &Role, kind: &Kind) -> bool {
        self.roles
            .get(role)
            .is_some_and(|r| r.consumes.contains(kind))
            && self
                .kinds
                .get(kind)
                .is_some_and(|k| k.consumers.contains(role))
    }

    /// Whether an event of `kind` may name a parent of `parent_kind`.
    #[must_use]
    pub fn allowed_parent(&self, kind: &Kind, parent_kind: &Kind) -> bool {
        self.kinds
            .get(kind)
            .is_some_and(|k| k.parents.contains(parent_kind))
    }

    /// The event's uniqueness key: its kind, `:`, and JCS of the array of the values at its
    /// kind's `unique` paths, in order. `None` when the kind has no key. A `null` value
    /// counts as missing.
    ///
    /// ```text
    /// approval.decided:["0190…-request-uuid","user-7"]
    /// ```
    ///
    /// # Errors
    /// [`ManifestError::UnknownKind`] for an undeclared kind;
    /// [`ManifestError::UniqueFieldMissing`] when the event lacks a field of the key.
    pub fn uniqueness_key(&self, event: &Event) -> Result<Option<String>, ManifestError> {
        let spec = self
            .kinds
            .get(&event.kind)
            .ok_or_else(|| ManifestError::UnknownKind {
                kind: event.kind.clone(),
            })?;
        if spec.unique.is_empty() {
            return Ok(None);
        }
        let missing = |path: &str| ManifestError::UniqueFieldMissing {
            kind: event.kind.clone(),
            path: path.to_string(),
        };
        let mut values = Vec::with_capacity(spec.unique.len());
        for path in &spec.unique {
            let value = match path.split_once('.') {
                None if path == "tenant" => Value::String(event.tenant.0.to_string()),
                None if path == "request" => Value::String(event.request.0.to_string()),
                Some(("producer", "role")) => Value::String(event.producer.role.to_string()),
                Some(("producer", "key")) => Value::String(event.producer.key.to_base64()),
                Some(("body", rest)) => {
                    let mut fields = rest.split('.');
                    let first = fields.next().ok_or_else(|| missing(path))?;
                    let mut at = event.body.get(first).ok_or_else(|| missing(path))?;
                    for field in fields {
                        at = at.get(field).ok_or_else(|| missing(path))?;
                    }
                    if at.is_null() {
                        return Err(missing(path));
                    }
                    at.clone()
                }
                _ => return Err(missing(path)),
            };
            values.push(value);
        }
        let jcs =
            canonical::to_vec(&Value::Array(values)).map_err(|e| ManifestError::Canonical {
                reason: e.to_string(),
            })?;
        // JCS output is UTF-8.
        let jcs = String::from_utf8_lossy(&jcs);
        Ok(Some(format!("{}:{jcs}", event.kind)))
    }

    /// Whether a document's PCRs match one of the measurements `role` pins. False for an
    /// undeclared role or one that pins nothing.
    #[must_use]
    pub fn measurement_pinned(&self, role: &Role, pcrs: &BTreeMap<u8, Vec<u8>>) -> bool {
        self.roles
            .get(role)
            .is_some_and(|r| r.measurements.iter().any(|m| m.matches(pcrs)))
    }

    /// Whether some measurement pinned for `role` has this PCR0 (what quarantine is keyed by).
    #[must_use]
    pub fn measurement_pcr0_pinned(&self, role: &Role, pcr0: &[u8]) -> bool {
        self.roles.get(role).is_some_and(|r| {
            r.measurements
                .iter()
                .any(|m| is_lower_hex(&m.pcr0, PCR_BYTES) && hex_eq(&m.pcr0, pcr0))
        })
    }

    /// Check that `self` may succeed `prev`: its serial is greater.
    ///
    /// # Errors
    /// [`ManifestError::NotSuccessor`].
    pub fn verify_successor(&self, prev: &Manifest) -> Result<(), ManifestError> {
        if self.serial <= prev.serial {
            return Err(ManifestError::NotSuccessor {
                serial: self.serial,
                previous: prev.serial,
            });
        }
        Ok(())
    }
}

/// One signer's signature over a manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestSignature {
    /// The signer's Ed25519 key, standard base64.
    pub key: PublicKey,
    /// Ed25519 over [`Manifest::signing_bytes`], standard base64.
    pub sig: EventSignature,
}

/// The pinned manifest signers: a manifest takes effect when `threshold` distinct keys of
/// `keys` have signed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestSigners {
    /// The pinned keys.
    pub keys: Vec<VerifyingKey>,
    /// How many distinct keys must sign.
    pub threshold: usize,
}

impl ManifestSigners {
    fn check(&self) -> Result<(), ManifestError> {
        let distinct: BTreeSet<[u8; 32]> = self.keys.iter().map(VerifyingKey::to_bytes).collect();
        if self.threshold == 0 || self.threshold > distinct.len() {
            return Err(ManifestError::Signers {
                reason: format!(
                    "threshold {} is not in 1..={} (the distinct pinned keys)",
                    self.threshold,
                    distinct.len()
                ),
            });
        }
        if let Some(weak) = self.keys.iter().find(|k| k.is_weak()) {
            return Err(ManifestError::Signers {
                reason: format!(
                    "pinned key {} is weak (of small order)",
                    PublicKey::from(weak).to_base64()
                ),
            });
        }
        Ok(())
    }
}

/// The manifest signers file (`manifest-signers.toml` in a data dir, `trust/` in an export):
/// `threshold = N` and `keys = ["<base64 Ed25519 key>", …]`. Its readers parse the TOML;
/// [`ManifestSigners::from_file`] reads the keys.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignersFile {
    /// How many distinct keys must sign.
    pub threshold: usize,
    /// The keys, standard base64.
    pub keys: Vec<String>,
}

impl ManifestSigners {
    /// The signers a [`SignersFile`] names (not yet checked: [`ManifestSigners`]' threshold
    /// and keys are checked where a manifest is).
    ///
    /// # Errors
    /// A message naming the first key that is not base64 of an Ed25519 key.
    pub fn from_file(file: &SignersFile) -> Result<Self, String> {
        use base64::Engine as _;
        let keys = file
            .keys
            .iter()
            .enumerate()
            .map(|(i, k)| {
                let bytes: [u8; 32] = base64::engine::general_purpose::STANDARD
                    .decode(k.trim())
                    .ok()
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| format!("keys[{i}] is not base64 of 32 bytes"))?;
                VerifyingKey::from_bytes(&bytes)
                    .map_err(|_| format!("keys[{i}] is not an Ed25519 key"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            keys,
            threshold: file.threshold,
        })
    }
}

/// A manifest and its signers' signatures: the form kept in files and in
/// `manifest.published`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedManifest {
    /// The manifest.
    pub manifest: Manifest,
    /// The signatures, in the order they were added.
    pub signatures: Vec<ManifestSignature>,
}

impl SignedManifest {
    /// An unsigned manifest.
    #[must_use]
    pub fn new(manifest: Manifest) -> Self {
        Self {
            manifest,
            signatures: Vec::new(),
        }
    }

    /// Parse JSON text: a signed manifest (`{"manifest":…,"signatures":[…]}`) or a bare
    /// manifest (taken as unsigned), refusing anything that does not re-encode to itself.
    /// Does not verify.
    ///
    /// # Errors
    /// [`ManifestError::TooLarge`], [`ManifestError::Json`] or [`ManifestError::NotRoundTrip`].
    pub fn from_json(text: &[u8]) -> Result<Self, ManifestError> {
        check_text_size(text)?;
        let value: Value = serde_json::from_slice(text).map_err(json_error)?;
        if value.get("manifest").is_some() {
            parse_exact(text)
        } else {
            parse_exact(text).map(Self::new)
        }
    }

    /// Add (or replace) `key`'s signature.
    ///
    /// # Errors
    /// As [`Manifest::canonical_bytes`]; [`ManifestError::TooManySignatures`] when full.
    pub fn sign(&mut self, key: &SigningKey) -> Result<(), ManifestError> {
        let sig = ManifestSignature {
            key: PublicKey::from(&key.verifying_key()),
            sig: EventSignature(key.sign(&self.manifest.signing_bytes()?).to_bytes()),
        };
        if let Some(existing) = self.signatures.iter_mut().find(|s| s.key == sig.key) {
            *existing = sig;
            return Ok(());
        }
        if self.signatures.len() >= MANIFEST_SIGNATURES_MAX {
            return Err(ManifestError::TooManySignatures {
                count: self.signatures.len() + 1,
            });
        }
        self.signatures.push(sig);
        Ok(())
    }

    /// The manifest, if it may take effect: at least `signers.threshold` valid signatures by
    /// distinct pinned keys (a key signing twice counts once; signatures by keys not pinned
    /// are ignored; a pinned key's signature that does not verify refuses the manifest),
    /// the dev root only when `allow_dev_root` (a production build passes false), and
    /// [`Manifest::validate_pinned`].
    ///
    /// # Errors
    /// [`ManifestError::Signers`], [`ManifestError::TooManySignatures`],
    /// [`ManifestError::BadSignature`], [`ManifestError::UnderSigned`],
    /// [`ManifestError::DevRootRefused`] or [`ManifestError::Invalid`], checked in that order.
    pub fn verify(
        &self,
        signers: &ManifestSigners,
        allow_dev_root: bool,
    ) -> Result<&Manifest, ManifestError> {
        signers.check()?;
        if self.signatures.len() > MANIFEST_SIGNATURES_MAX {
            return Err(ManifestError::TooManySignatures {
                count: self.signatures.len(),
            });
        }
        let message = self.manifest.signing_bytes()?;
        let mut valid = BTreeSet::new();
        for s in &self.signatures {
            let Some(key) = signers.keys.iter().find(|k| k.as_bytes() == &s.key.0) else {
                continue;
            };
            key.verify_strict(&message, &Signature::from_bytes(&s.sig.0))
                .map_err(|_| ManifestError::BadSignature {
                    key: s.key.to_base64(),
                })?;
            valid.insert(s.key.0);
        }
        if valid.len() < signers.threshold {
            return Err(ManifestError::UnderSigned {
                valid: valid.len(),
                threshold: signers.threshold,
            });
        }
        if self.manifest.trusted_root.is_dev() && !allow_dev_root {
            return Err(ManifestError::DevRootRefused);
        }
        self.manifest.validate_pinned()?;
        Ok(&self.manifest)
    }

    /// The body of the `manifest.published` event recording this manifest:
    /// `{"manifest": <manifest>, "signatures": [...], "hash": <hex manifest hash>}`.
    ///
    /// # Errors
    /// As [`Manifest::canonical_bytes`].
    pub fn published_body(&self) -> Result<Map<String, Value>, ManifestError> {
        let to_value = |v: Result<Value, serde_json::Error>| {
            v.map_err(|e| ManifestError::Canonical {
                reason: e.to_string(),
            })
        };
        let mut body = Map::new();
        body.insert(
            "manifest".into(),
            to_value(serde_json::to_value(&self.manifest))?,
        );
        body.insert(
            "signatures".into(),
            to_value(serde_json::to_value(&self.signatures))?,
        );
        body.insert(
            "hash".into(),
            Value::String(hex::encode(self.manifest.manifest_hash()?)),
        );
        Ok(body)
    }

    /// Parse a `manifest.published` body back, checking its `hash`. Does not verify the
    /// signatures: call [`SignedManifest::verify`].
    ///
    /// # Errors
    /// [`ManifestError::PublishedBody`] when a field is missing or extra,
    /// [`ManifestError::Json`] / [`ManifestError::NotRoundTrip`] for the manifest or the
    /// signatures, [`ManifestError::HashMismatch`] when `hash` is not the manifest's.
    pub fn from_published_body(body: &Map<String, Value>) -> Result<Self, ManifestError> {
        if let Some(extra) = body
            .keys()
            .find(|k| !matches!(k.as_str(), "manifest" | "signatures" | "hash"))
        {
            return Err(ManifestError::PublishedBody {
                reason: format!("unknown field {extra:?}"),
            });
        }
        let field = |name: &str| {
            body.get(name).ok_or_else(|| ManifestError::PublishedBody {
                reason: format!("no {name:?} field"),
            })
        };
        let claimed = field("hash")?
            .as_str()
            .ok_or_else(|| ManifestError::PublishedBody {
                reason: "\"hash\" is not a string".into(),
            })?
            .to_string();
        let mut wrapped = Map::new();
        wrapped.insert("manifest".into(), field("manifest")?.clone());
        wrapped.insert("signatures".into(), field("signatures")?.clone());
        let signed: Self = parse_value_exact(Value::Object(wrapped))?;
        let computed = hex::encode(signed.manifest.manifest_hash()?);
        if claimed != computed {
            return Err(ManifestError::HashMismatch { claimed, computed });
        }
        Ok(signed)
    }
}

fn json_error(e: serde_json::Error) -> ManifestError {
    ManifestError::Json {
        reason: e.to_string(),
    }
}

fn check_text_size(text: &[u8]) -> Result<(), ManifestError> {
    if text.len() > MANIFEST_TEXT_BYTES_MAX {
        return Err(ManifestError::TooLarge { size: text.len() });
    }
    Ok(())
}

/// Parse `text` as `T`, refusing duplicate map keys (which a parse into `Value` would hide)
/// and anything that does not re-encode to the same JSON value.
fn parse_exact<T: Serialize + for<'de> Deserialize<'de>>(text: &[u8]) -> Result<T, ManifestError> {
    check_text_size(text)?;
    let parsed: T = serde_json::from_slice(text).map_err(json_error)?;
    let value: Value = serde_json::from_slice(text).map_err(json_error)?;
    check_round_trip(&parsed, &value)?;
    Ok(parsed)
}

/// Parse `value` as `T` and refuse it unless `T` serializes back to the same value.
fn parse_value_exact<T: Serialize + for<'de> Deserialize<'de>>(
    value: Value,
) -> Result<T, ManifestError> {
    let parsed: T = T::deserialize(&value).map_err(json_error)?;
    check_round_trip(&parsed, &value)?;
    Ok(parsed)
}

fn check_round_trip<T: Serialize>(parsed: &T, value: &Value) -> Result<(), ManifestError> {
    let again = serde_json::to_value(parsed).map_err(json_error)?;
    if &again != value {
        return Err(ManifestError::NotRoundTrip);
    }
    Ok(())
}

fn check_integer(field: &str, value: u64) -> Result<(), ValidationError> {
    if value > MANIFEST_INTEGER_MAX {
        return Err(ValidationError::IntegerTooLarge {
            field: field.to_string(),
            value,
        });
    }
    Ok(())
}

fn no_duplicates<'a, T: fmt::Display + Ord + 'a>(
    owner: &str,
    list: &'static str,
    items: impl Iterator<Item = &'a T>,
) -> Result<(), ValidationError> {
    let mut seen = BTreeSet::new();
    for item in items {
        if !seen.insert(item) {
            return Err(ValidationError::Duplicate {
                owner: owner.to_string(),
                list,
                entry: item.to_string(),
            });
        }
    }
    Ok(())
}

fn is_lower_hex(text: &str, bytes: usize) -> bool {
    text.len() == bytes * 2 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// `hex` (lower-case, checked) spells `bytes`.
fn hex_eq(hex_text: &str, bytes: &[u8]) -> bool {
    hex_text.len() == bytes.len() * 2 && hex::decode(hex_text).is_ok_and(|d| d == bytes)
}

fn valid_unique_path(path: &str) -> bool {
    let field_ok = |f: &str| {
        !f.is_empty()
            && f.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    };
    if path.len() > UNIQUE_PATH_BYTES_MAX {
        return false;
    }
    match path.split_once('.') {
        None => matches!(path, "tenant" | "request"),
        Some(("producer", rest)) => matches!(rest, "role" | "key"),
        Some(("body", rest)) => rest.split('.').all(field_ok),
        Some(_) => false,
    }
}

/// A map whose keys must each appear once: serde's default keeps the last of duplicate keys
/// silently, and another parser might keep the first.
fn unique_map<'de, D, K, V>(d: D) -> Result<BTreeMap<K, V>, D::Error>
where
    D: Deserializer<'de>,
    K: Deserialize<'de> + Ord + fmt::Display,
    V: Deserialize<'de>,
{
    struct MapVisitor<K, V>(PhantomData<(K, V)>);
    impl<'de, K, V> Visitor<'de> for MapVisitor<K, V>
    where
        K: Deserialize<'de> + Ord + fmt::Display,
        V: Deserialize<'de>,
    {
        type Value = BTreeMap<K, V>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some(key) = map.next_key::<K>()? {
                if out.contains_key(&key) {
                    return Err(de::Error::custom(format!("duplicate key {key}")));
                }
                let value = map.next_value::<V>()?;
                out.insert(key, value);
            }
            Ok(out)
        }
    }
    d.deserialize_map(MapVisitor(PhantomData))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_paths() {
        for ok in [
            "tenant",
            "request",
            "producer.role",
            "producer.key",
            "body.user",
            "body.a.b_c",
        ] {
            assert!(valid_unique_path(ok), "{ok}");
        }
        for bad in [
            "",
            "time",
            "producer",
            "producer.x",
            "body",
            "body.",
            "body..a",
            "sig",
            "kind.x",
        ] {
            assert!(!valid_unique_path(bad), "{bad}");
        }
    }

    #[test]
    fn trusted_root_forms() {
        let aws: TrustedRoot =
            serde_json::from_str(r#"{"kind":"aws-nitro-root-g1"}"#).expect("parses");
        assert_eq!(aws, TrustedRoot::AwsNitroRootG1);
        assert!(aws.pins(&TrustAnchor::aws_nitro_root_g1()));
        assert!(
            serde_json::from_str::<TrustedRoot>(r#"{"kind":"dev","sha256":"","x":1}"#).is_err()
        );
        assert!(serde_json::from_str::<TrustedRoot>(r#"{"kind":"other"}"#).is_err());
        let dev = TrustedRoot::Dev {
            sha256: String::new(),
        };
        assert_eq!(dev.sha256(), None);
        assert!(!dev.pins(&TrustAnchor::aws_nitro_root_g1()));
    }

    #[test]
    fn role_sets() {
        assert_eq!(
            serde_json::from_str::<RoleSet>(r#""*""#).expect("parses"),
            RoleSet::Any
        );
        assert!(serde_json::from_str::<RoleSet>(r#""edge""#).is_err());
        assert!(serde_json::from_str::<RoleSet>(r#"["Edge"]"#).is_err());
        let set: RoleSet = serde_json::from_str(r#"["edge","log"]"#).expect("parses");
        assert_eq!(
            serde_json::to_string(&set).expect("json"),
            r#"["edge","log"]"#
        );
    }
}
