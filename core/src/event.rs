//! The signed event envelope (docs/design.md §4): what every service appends to the log.
//!
//! An event is a JSON object whose canonical bytes (RFC 8785) are the leaf data. The
//! producer signs `"govern/event/v1" || 0x00 || JCS(envelope without sig)` with Ed25519,
//! and verifiers use `verify_strict`, which refuses small-order keys and non-canonical
//! signatures, so one signature can't be malleated into another leaf.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::canonical;
use crate::ids::LeafHash;
use crate::merkle;

/// The largest event, in bytes of its canonical form. Tile entry bundles prefix each entry
/// with a big-endian `u16`, so nothing longer can be stored.
pub const EVENT_BYTES_MAX: usize = 65_535;
/// The signature domain: keeps an event signature from being valid as any other message.
pub const EVENT_SIGNATURE_DOMAIN: &[u8] = b"govern/event/v1";
/// The only envelope version.
pub const EVENT_VERSION: u32 = 1;
/// The longest kind name.
pub const KIND_BYTES_MAX: usize = 64;
/// The longest role name.
pub const ROLE_BYTES_MAX: usize = 32;
/// The most parents one event may name.
pub const PARENTS_MAX: usize = 64;

/// Why bytes are not an acceptable event. Every variant is the submitter's fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EventError {
    /// Longer than [`EVENT_BYTES_MAX`].
    #[error("event is {size} bytes; the limit is {max}")]
    TooLarge {
        /// Bytes submitted.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// Not a JSON object.
    #[error("event is not JSON: {0}")]
    NotJson(String),
    /// A floating-point number, which govern never uses.
    #[error("event holds a floating-point number at {path}; amounts are decimal strings")]
    Float {
        /// Where it is.
        path: String,
    },
    /// An integer outside ±(2^53 − 1) ([`canonical::SAFE_INTEGER_MAX`]): RFC 8785 writes
    /// numbers as doubles, so it could not be signed exactly.
    #[error(
        "event holds the integer {value} at {path}, outside ±(2^53 − 1); write it as a decimal string"
    )]
    IntegerOutOfRange {
        /// Where it is.
        path: String,
        /// The integer, as written.
        value: String,
    },
    /// JSON, but not an envelope: a field is missing, unknown or malformed.
    #[error("event envelope is malformed: {0}")]
    Envelope(String),
    /// Not the RFC 8785 form of itself.
    #[error("event bytes are not in RFC 8785 canonical form")]
    NotCanonical,
    /// `v` is not [`EVENT_VERSION`].
    #[error("event version {0} is not supported; expected {EVENT_VERSION}")]
    Version(u32),
    /// No `sig`.
    #[error("event is not signed")]
    Unsigned,
    /// `producer.key` is not an Ed25519 public key.
    #[error("producer key is not a valid Ed25519 public key")]
    BadKey,
    /// `sig` does not verify under `producer.key`.
    #[error("event signature does not verify under the producer's key")]
    BadSignature,
    /// Too many parents.
    #[error("event names {count} parents; the limit is {max}")]
    TooManyParents {
        /// Parents named.
        count: usize,
        /// The limit.
        max: usize,
    },
}

impl From<canonical::UnsafeNumber> for EventError {
    fn from(e: canonical::UnsafeNumber) -> Self {
        match e {
            canonical::UnsafeNumber::Float { path } => Self::Float { path },
            canonical::UnsafeNumber::IntegerOutOfRange { path, value } => {
                Self::IntegerOutOfRange { path, value }
            }
        }
    }
}

/// A tenant id (UUID). The nil UUID is the system tenant, used by events about the log
/// itself rather than any customer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TenantId(pub Uuid);

impl TenantId {
    /// The system tenant.
    pub const SYSTEM: TenantId = TenantId(Uuid::nil());
}

/// A request id (UUIDv7): every event of one request's receipt chain carries it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RequestId(pub Uuid);

impl RequestId {
    /// A fresh UUIDv7 from the system clock and the operating system's randomness (tests
    /// and tools; the node's roles use [`RequestId::v7`] with their injected clock and
    /// entropy).
    #[must_use]
    pub fn new_v7() -> Self {
        Self(Uuid::now_v7())
    }

    /// A UUIDv7 for `now`, its other bits from `entropy`.
    #[must_use]
    pub fn v7(now: Timestamp, entropy: &dyn crate::append::Entropy) -> Self {
        let mut random = [0u8; 10];
        entropy.fill(&mut random);
        let ms = u64::try_from(now.unix_ms()).unwrap_or(0);
        Self(uuid::Builder::from_unix_timestamp_millis(ms, &random).into_uuid())
    }
}

macro_rules! name_newtype {
    ($(#[$doc:meta])* $name:ident, $max:expr, $valid:expr) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Parse and check the name.
            ///
            /// # Errors
            /// [`EventError::Envelope`] when it is empty, too long, or has other characters.
            pub fn new(name: impl Into<String>) -> Result<Self, EventError> {
                let name = name.into();
                let valid: fn(&str) -> bool = $valid;
                if name.is_empty() || name.len() > $max || !valid(&name) {
                    return Err(EventError::Envelope(format!(
                        concat!("invalid ", stringify!($name), " {:?}"),
                        name
                    )));
                }
                Ok(Self(name))
            }
            /// The name.
            #[must_use]
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = EventError;
            fn try_from(s: String) -> Result<Self, EventError> {
                Self::new(s)
            }
        }

        impl From<$name> for String {
            fn from(n: $name) -> String {
                n.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

name_newtype!(
    /// An event kind: dot-separated lower-case words, like `transfer.requested`.
    Kind,
    KIND_BYTES_MAX,
    |s| s.split('.').count() >= 2
        && s.split('.').all(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
);
name_newtype!(
    /// A role in the fixed topology: `log`, `edge`, `keys`, `policy`, `signer-3`, ...
    Role,
    ROLE_BYTES_MAX,
    |s| s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
);

/// An Ed25519 public key; in JSON, standard base64 of its 32 bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PublicKey(pub [u8; 32]);

impl PublicKey {
    /// The key to verify with.
    ///
    /// # Errors
    /// [`EventError::BadKey`] when the bytes are not a point on the curve.
    pub fn verifying_key(&self) -> Result<VerifyingKey, EventError> {
        VerifyingKey::from_bytes(&self.0).map_err(|_| EventError::BadKey)
    }
    /// Standard base64.
    #[must_use]
    pub fn to_base64(&self) -> String {
        B64.encode(self.0)
    }
}

impl From<&VerifyingKey> for PublicKey {
    fn from(k: &VerifyingKey) -> Self {
        Self(k.to_bytes())
    }
}

impl TryFrom<String> for PublicKey {
    type Error = EventError;
    fn try_from(s: String) -> Result<Self, EventError> {
        let bytes = B64
            .decode(&s)
            .map_err(|_| EventError::Envelope("producer key is not standard base64".into()))?;
        <[u8; 32]>::try_from(bytes.as_slice())
            .map(Self)
            .map_err(|_| EventError::Envelope("producer key is not 32 bytes".into()))
    }
}

impl From<PublicKey> for String {
    fn from(k: PublicKey) -> String {
        k.to_base64()
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.to_base64())
    }
}

/// An Ed25519 signature; in JSON, standard base64 of its 64 bytes.
#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EventSignature(pub [u8; 64]);

impl TryFrom<String> for EventSignature {
    type Error = EventError;
    fn try_from(s: String) -> Result<Self, EventError> {
        let bytes = B64
            .decode(&s)
            .map_err(|_| EventError::Envelope("sig is not standard base64".into()))?;
        <[u8; 64]>::try_from(bytes.as_slice())
            .map(Self)
            .map_err(|_| EventError::Envelope("sig is not 64 bytes".into()))
    }
}

impl From<EventSignature> for String {
    fn from(s: EventSignature) -> String {
        B64.encode(s.0)
    }
}

impl fmt::Debug for EventSignature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EventSignature({})", B64.encode(self.0))
    }
}

/// A time in the log: milliseconds since the Unix epoch; in JSON an RFC 3339 UTC string with
/// exactly three fractional digits (`2026-11-25T10:00:00.000Z`), so it has one spelling.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Timestamp(i64);

const TIME_FORMAT: &[time::format_description::FormatItem<'static>] = time::macros::format_description!(
    "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
);

impl Timestamp {
    /// From milliseconds since the Unix epoch; `None` outside years 0000–9999.
    #[must_use]
    pub fn from_unix_ms(ms: i64) -> Option<Self> {
        let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()?;
        (0..=9999).contains(&t.year()).then_some(Self(ms))
    }
    /// Milliseconds since the Unix epoch.
    #[must_use]
    pub fn unix_ms(self) -> i64 {
        self.0
    }
    /// The current time of the system clock (callers outside `core` pass clocks in; this is
    /// for them).
    #[must_use]
    pub fn now() -> Self {
        let ns = time::OffsetDateTime::now_utc().unix_timestamp_nanos();
        // Millisecond precision always fits i64 for any representable date.
        Self(i64::try_from(ns / 1_000_000).unwrap_or(i64::MAX))
    }
}

impl TryFrom<String> for Timestamp {
    type Error = EventError;
    fn try_from(s: String) -> Result<Self, EventError> {
        let bad =
            || EventError::Envelope(format!("time {s:?} is not RFC 3339 UTC with milliseconds"));
        let t = time::PrimitiveDateTime::parse(&s, TIME_FORMAT).map_err(|_| bad())?;
        let ms = t.assume_utc().unix_timestamp_nanos() / 1_000_000;
        i64::try_from(ms)
            .ok()
            .and_then(Self::from_unix_ms)
            .ok_or_else(bad)
    }
}

impl From<Timestamp> for String {
    fn from(t: Timestamp) -> String {
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(t.0) * 1_000_000)
            .ok()
            .and_then(|dt| dt.format(TIME_FORMAT).ok())
            // Timestamps are only built through from_unix_ms, which keeps them in range.
            .unwrap_or_default()
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from(*self))
    }
}

/// Who appended an event: always a service, named by role and signing key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Producer {
    /// The producer's role.
    pub role: Role,
    /// The producer's Ed25519 key: `sig` verifies under it.
    pub key: PublicKey,
}

impl Producer {
    /// `role`, signing with the secret half of `key`.
    #[must_use]
    pub fn new(role: Role, key: &VerifyingKey) -> Self {
        Self {
            role,
            key: PublicKey::from(key),
        }
    }
}

/// The envelope of docs/design.md §4. Field order here is irrelevant: the bytes are always JCS.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    /// Envelope version, [`EVENT_VERSION`].
    pub v: u32,
    /// What the event says.
    pub kind: Kind,
    /// Whose data it is.
    pub tenant: TenantId,
    /// The request whose receipt chain it belongs to.
    pub request: RequestId,
    /// Leaf hashes of the events it answers.
    pub parents: Vec<LeafHash>,
    /// Who signed it.
    pub producer: Producer,
    /// Leaf hash of the producer's current `service.attested` (absent only in that event).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attestation: Option<LeafHash>,
    /// When the producer made it; the sequencer refuses times beyond its skew.
    pub time: Timestamp,
    /// Clear fields: routing data, commitments, user signatures.
    pub body: Map<String, Value>,
    /// The encrypted payload (docs/design.md §7).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed: Option<Value>,
    /// The producer's signature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sig: Option<EventSignature>,
}

impl Event {
    /// An unsigned event of `kind` in `tenant` and `request`, produced by `producer` at
    /// `time`, with `body` as its clear fields and no parents, attestation or sealed payload.
    #[must_use]
    pub fn new(
        kind: Kind,
        tenant: TenantId,
        request: RequestId,
        producer: Producer,
        time: Timestamp,
        body: Map<String, Value>,
    ) -> Self {
        Self {
            v: EVENT_VERSION,
            kind,
            tenant,
            request,
            parents: Vec::new(),
            producer,
            attestation: None,
            time,
            body,
            sealed: None,
            sig: None,
        }
    }

    /// The bytes the producer signs: the domain, a zero byte, and JCS of the envelope
    /// without `sig`.
    ///
    /// # Errors
    /// [`EventError::Envelope`] when the envelope cannot be serialized;
    /// [`EventError::Float`] or [`EventError::IntegerOutOfRange`] for a number RFC 8785
    /// cannot write exactly ([`canonical::first_unsafe_number`]), which the log would refuse.
    pub fn signing_bytes(&self) -> Result<Vec<u8>, EventError> {
        let mut unsigned =
            serde_json::to_value(self).map_err(|e| EventError::Envelope(e.to_string()))?;
        if let Value::Object(members) = &mut unsigned {
            members.remove("sig");
        }
        if let Some(unsafe_number) = canonical::first_unsafe_number(&unsigned) {
            return Err(unsafe_number.into());
        }
        let jcs = canonical::to_vec(&unsigned).map_err(|e| EventError::Envelope(e.to_string()))?;
        let mut out = Vec::with_capacity(EVENT_SIGNATURE_DOMAIN.len() + 1 + jcs.len());
        out.extend_from_slice(EVENT_SIGNATURE_DOMAIN);
        out.push(0);
        out.extend_from_slice(&jcs);
        Ok(out)
    }

    /// Sign with `key` (which must be `producer.key`'s secret) and return the leaf.
    ///
    /// # Errors
    /// [`EventError::BadKey`] when `key` is not the producer's key; [`EventError::TooLarge`]
    /// when the signed event exceeds [`EVENT_BYTES_MAX`].
    pub fn sign(mut self, key: &SigningKey) -> Result<SignedEvent, EventError> {
        if PublicKey::from(&key.verifying_key()) != self.producer.key {
            return Err(EventError::BadKey);
        }
        let sig = key.sign(&self.signing_bytes()?);
        self.sig = Some(EventSignature(sig.to_bytes()));
        let bytes = canonical::to_vec(&self).map_err(|e| EventError::Envelope(e.to_string()))?;
        if bytes.len() > EVENT_BYTES_MAX {
            return Err(EventError::TooLarge {
                size: bytes.len(),
                max: EVENT_BYTES_MAX,
            });
        }
        let leaf_hash = merkle::hash_leaf(&bytes);
        Ok(SignedEvent {
            event: self,
            bytes,
            leaf_hash,
        })
    }
}

/// Decompressed Ed25519 public keys by their bytes. Decompressing a key costs about a sixth
/// of a verification, and a log sees few distinct producers. Bounded: at
/// [`KEY_CACHE_ENTRIES_MAX`] it starts again empty.
#[derive(Debug, Default)]
pub struct KeyCache {
    keys: Option<std::sync::Mutex<std::collections::HashMap<[u8; 32], VerifyingKey>>>,
}

/// The most keys a [`KeyCache`] holds.
pub const KEY_CACHE_ENTRIES_MAX: usize = 4096;

impl KeyCache {
    /// A cache.
    #[must_use]
    pub fn new() -> Self {
        Self {
            keys: Some(std::sync::Mutex::default()),
        }
    }

    /// No caching: every call decompresses.
    #[must_use]
    pub fn disabled() -> Self {
        Self { keys: None }
    }

    /// The verifying key for `key`.
    ///
    /// # Errors
    /// [`EventError::BadKey`] when the bytes are not a point on the curve.
    pub fn get(&self, key: &PublicKey) -> Result<VerifyingKey, EventError> {
        let Some(keys) = &self.keys else {
            return key.verifying_key();
        };
        if let Some(k) = keys.lock().ok().and_then(|m| m.get(&key.0).copied()) {
            return Ok(k);
        }
        let vk = key.verifying_key()?;
        if let Ok(mut m) = keys.lock() {
            if m.len() >= KEY_CACHE_ENTRIES_MAX {
                m.clear();
            }
            m.insert(key.0, vk);
        }
        Ok(vk)
    }
}

/// An event whose bytes are canonical and whose signature verifies: the only way to get one
/// is [`SignedEvent::from_bytes`] or [`Event::sign`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedEvent {
    event: Event,
    bytes: Vec<u8>,
    leaf_hash: LeafHash,
}

impl SignedEvent {
    /// Parse leaf data and check everything that needs no state: size, JSON, no floats, the
    /// envelope's fields, canonical form, version, and the Ed25519 signature (strict).
    ///
    /// # Errors
    /// The first [`EventError`] found, in the order above.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, EventError> {
        Self::from_bytes_with(bytes, &KeyCache::disabled())
    }

    /// [`SignedEvent::from_bytes`], taking producer keys already decompressed from `keys`
    /// (a node sees the same few producer keys over and over).
    ///
    /// # Errors
    /// As [`SignedEvent::from_bytes`].
    pub fn from_bytes_with(bytes: &[u8], keys: &KeyCache) -> Result<Self, EventError> {
        if bytes.len() > EVENT_BYTES_MAX {
            return Err(EventError::TooLarge {
                size: bytes.len(),
                max: EVENT_BYTES_MAX,
            });
        }
        let value: Value =
            serde_json::from_slice(bytes).map_err(|e| EventError::NotJson(e.to_string()))?;
        if !value.is_object() {
            return Err(EventError::NotJson("not an object".into()));
        }
        // `null` is not a spelling of an absent optional member: it would give one envelope
        // two leaf encodings.
        for member in ["attestation", "sealed", "sig"] {
            if value.get(member).is_some_and(Value::is_null) {
                return Err(EventError::Envelope(format!(
                    "{member} is null; omit it instead"
                )));
            }
        }
        if let Some(unsafe_number) = canonical::first_unsafe_number(&value) {
            return Err(unsafe_number.into());
        }
        let canonical_bytes =
            canonical::to_vec(&value).map_err(|e| EventError::Envelope(e.to_string()))?;
        let event: Event =
            serde_json::from_value(value).map_err(|e| EventError::Envelope(e.to_string()))?;
        if canonical_bytes != bytes {
            return Err(EventError::NotCanonical);
        }
        if event.v != EVENT_VERSION {
            return Err(EventError::Version(event.v));
        }
        if event.parents.len() > PARENTS_MAX {
            return Err(EventError::TooManyParents {
                count: event.parents.len(),
                max: PARENTS_MAX,
            });
        }
        let sig = event.sig.ok_or(EventError::Unsigned)?;
        let key = keys.get(&event.producer.key)?;
        let message = signing_bytes_of_canonical(bytes, &sig)?;
        key.verify_strict(&message, &ed25519_dalek::Signature::from_bytes(&sig.0))
            .map_err(|_| EventError::BadSignature)?;
        Ok(Self {
            leaf_hash: merkle::hash_leaf(bytes),
            event,
            bytes: bytes.to_vec(),
        })
    }

    /// The envelope.
    #[must_use]
    pub fn event(&self) -> &Event {
        &self.event
    }
    /// The leaf data: canonical bytes including `sig`.
    #[must_use]
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
    /// SHA-256(0x00 || leaf data).
    #[must_use]
    pub fn leaf_hash(&self) -> LeafHash {
        self.leaf_hash
    }
    /// The leaf data, consuming the event.
    #[must_use]
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

/// The signed message of an event already known to be canonical, without serializing it
/// again: JCS writes members independently, in key order, so JCS of the envelope without
/// `sig` is the canonical bytes with the member `,"sig":"…"` cut out. That member is never
/// first (`body`, `kind` sort before it), and the members after it (`tenant`, `time`, `v`)
/// hold no objects, so its last occurrence is the top-level one (inside JSON strings a quote
/// is always escaped, so the pattern cannot hide in one).
fn signing_bytes_of_canonical(bytes: &[u8], sig: &EventSignature) -> Result<Vec<u8>, EventError> {
    let member = format!(",\"sig\":\"{}\"", B64.encode(sig.0));
    let at = bytes
        .windows(member.len())
        .rposition(|w| w == member.as_bytes())
        .ok_or_else(|| EventError::Envelope("sig member not found".into()))?;
    let mut out = Vec::with_capacity(EVENT_SIGNATURE_DOMAIN.len() + 1 + bytes.len() - member.len());
    out.extend_from_slice(EVENT_SIGNATURE_DOMAIN);
    out.push(0);
    out.extend_from_slice(&bytes[..at]);
    out.extend_from_slice(&bytes[at + member.len()..]);
    Ok(out)
}

/// Why an event's time is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("event time {event} is {diff_ms} ms from the log's clock {now}; the limit is {skew_ms} ms")]
pub struct SkewError {
    /// The event's time.
    pub event: Timestamp,
    /// The log's clock.
    pub now: Timestamp,
    /// How far apart, in milliseconds.
    pub diff_ms: i64,
    /// The allowed skew.
    pub skew_ms: i64,
}

/// Whether `event` is within `skew_ms` of `now`, either way.
///
/// # Errors
/// [`SkewError`] when it is not.
pub fn check_time(event: Timestamp, now: Timestamp, skew_ms: i64) -> Result<(), SkewError> {
    let diff_ms = event.0.saturating_sub(now.0).saturating_abs();
    if diff_ms > skew_ms {
        return Err(SkewError {
            event,
            now,
            diff_ms,
            skew_ms,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[7u8; 32])
    }

    fn sample() -> Event {
        let k = key();
        Event {
            v: 1,
            kind: Kind::new("demo.hello").expect("valid"),
            tenant: TenantId::SYSTEM,
            request: RequestId(Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0001)),
            parents: vec![],
            producer: Producer {
                role: Role::new("edge").expect("valid"),
                key: PublicKey::from(&k.verifying_key()),
            },
            attestation: None,
            time: Timestamp::from_unix_ms(1_764_000_000_123).expect("in range"),
            body: serde_json::from_str(r#"{"message":"hello","amount":"100"}"#).expect("json"),
            sealed: None,
            sig: None,
        }
    }

    #[test]
    fn signed_event_round_trips_and_verifies() {
        let signed = sample().sign(&key()).expect("signs");
        let parsed = SignedEvent::from_bytes(signed.bytes()).expect("verifies");
        assert_eq!(parsed, signed);
        let text = std::str::from_utf8(signed.bytes()).expect("utf-8");
        assert!(
            text.starts_with(r#"{"body":{"amount":"100","message":"hello"},"kind":"demo.hello""#),
            "{text}"
        );
        assert!(
            text.contains(r#""time":"2025-11-24T16:00:00.123Z""#),
            "{text}"
        );
    }

    #[test]
    fn signed_message_shortcut_equals_the_full_computation() {
        let k = key();
        // A decoy: the body holds an object with a `sig` member of the same value.
        let first = sample().sign(&k).expect("signs");
        let sig_b64 = String::from(first.event().sig.expect("signed"));
        let mut ev = sample();
        ev.body
            .insert("nested".into(), serde_json::json!({"a": 1, "sig": sig_b64}));
        for ev in [sample(), ev] {
            let signed = ev.sign(&k).expect("signs");
            let sig = signed.event().sig.expect("signed");
            assert_eq!(
                signing_bytes_of_canonical(signed.bytes(), &sig).expect("found"),
                signed.event().signing_bytes().expect("serializes")
            );
            assert!(SignedEvent::from_bytes(signed.bytes()).is_ok());
        }
    }

    #[test]
    fn every_single_byte_change_is_refused() {
        let signed = sample().sign(&key()).expect("signs");
        for i in 0..signed.bytes().len() {
            let mut bytes = signed.bytes().to_vec();
            bytes[i] ^= 0x01;
            assert!(
                SignedEvent::from_bytes(&bytes).is_err(),
                "flip at byte {i} accepted"
            );
        }
    }

    #[test]
    fn refusals_are_typed() {
        let signed = sample().sign(&key()).expect("signs");
        let text = std::str::from_utf8(signed.bytes())
            .expect("utf-8")
            .to_string();
        // Not canonical: a space after the first brace.
        let spaced = text.replacen('{', "{ ", 1);
        assert_eq!(
            SignedEvent::from_bytes(spaced.as_bytes()),
            Err(EventError::NotCanonical)
        );
        // A float.
        let float = text.replacen(r#""v":1"#, r#""v":1.5"#, 1);
        assert!(matches!(
            SignedEvent::from_bytes(float.as_bytes()),
            Err(EventError::Float { .. })
        ));
        // Unknown field.
        let extra = text.replacen(r#""v":1"#, r#""v":1,"zz":1"#, 1);
        assert!(matches!(
            SignedEvent::from_bytes(extra.as_bytes()),
            Err(EventError::Envelope(_))
        ));
        // An optional member spelled null.
        let null_sealed = text.replacen(r#""request""#, r#""sealed":null,"request""#, 1);
        assert!(
            matches!(SignedEvent::from_bytes(null_sealed.as_bytes()), Err(EventError::Envelope(m)) if m.contains("sealed"))
        );
        // Unsigned.
        let unsigned = canonical::to_vec(&sample()).expect("jcs");
        assert_eq!(
            SignedEvent::from_bytes(&unsigned),
            Err(EventError::Unsigned)
        );
        // Too large.
        assert!(matches!(
            SignedEvent::from_bytes(&vec![b' '; EVENT_BYTES_MAX + 1]),
            Err(EventError::TooLarge { .. })
        ));
        // Wrong version, re-signed so only the version is wrong.
        let mut v2 = sample();
        v2.v = 2;
        let v2 = v2.sign(&key()).expect("signs");
        assert_eq!(
            SignedEvent::from_bytes(v2.bytes()),
            Err(EventError::Version(2))
        );
        // Signed by another key than producer.key.
        assert_eq!(
            sample().sign(&SigningKey::from_bytes(&[8u8; 32])).err(),
            Some(EventError::BadKey)
        );
        // Garbage.
        assert!(matches!(
            SignedEvent::from_bytes(b"\xff\x00"),
            Err(EventError::NotJson(_))
        ));
        assert!(matches!(
            SignedEvent::from_bytes(b"[1]"),
            Err(EventError::NotJson(_))
        ));
    }

    #[test]
    fn a_signature_of_another_domain_is_refused() {
        let k = key();
        let mut ev = sample();
        let jcs = canonical::to_vec(&ev).expect("jcs");
        ev.sig = Some(EventSignature(k.sign(&jcs).to_bytes()));
        let bytes = canonical::to_vec(&ev).expect("jcs");
        assert_eq!(
            SignedEvent::from_bytes(&bytes),
            Err(EventError::BadSignature)
        );
    }

    #[test]
    fn times_have_one_spelling() {
        for bad in [
            "2025-11-24T16:00:00Z",
            "2025-11-24T16:00:00.12Z",
            "2025-11-24T16:00:00.123+00:00",
            "2025-11-24 16:00:00.123Z",
        ] {
            assert!(Timestamp::try_from(bad.to_string()).is_err(), "{bad}");
        }
        let t = Timestamp::try_from("2025-11-24T16:00:00.123Z".to_string()).expect("valid");
        assert_eq!(t.unix_ms(), 1_764_000_000_123);
        assert_eq!(String::from(t), "2025-11-24T16:00:00.123Z");
    }

    #[test]
    fn skew_is_checked_both_ways() {
        let now = Timestamp::from_unix_ms(1_000_000).expect("in range");
        let at = |ms| Timestamp::from_unix_ms(ms).expect("in range");
        assert!(check_time(at(1_000_000 + 5_000), now, 5_000).is_ok());
        assert!(check_time(at(1_000_000 - 5_000), now, 5_000).is_ok());
        assert_eq!(
            check_time(at(1_000_000 + 5_001), now, 5_000).map_err(|e| e.diff_ms),
            Err(5_001)
        );
        assert_eq!(
            check_time(at(1_000_000 - 5_001), now, 5_000).map_err(|e| e.diff_ms),
            Err(5_001)
        );
    }

    #[test]
    fn names_are_checked() {
        assert!(Kind::new("transfer.requested").is_ok());
        assert!(Kind::new("transfer").is_err());
        assert!(Kind::new("Transfer.requested").is_err());
        assert!(Kind::new("a..b").is_err());
        assert!(Role::new("signer-3").is_ok());
        assert!(Role::new("Signer").is_err());
        assert!(Role::new("").is_err());
    }

    /// An integer RFC 8785 cannot write exactly is refused when signing (2^53 + 1 would be
    /// signed as 2^53) and when parsing, even in an envelope whose signature verifies.
    #[test]
    fn integers_beyond_two_to_the_53_are_never_signed_nor_accepted() {
        let k = key();
        // The integer, its text, and the text RFC 8785 writes for it.
        for (n, text, written) in [
            (
                serde_json::json!(9_007_199_254_740_993_u64),
                "9007199254740993",
                "9007199254740992",
            ),
            (
                serde_json::json!(9_007_199_254_740_992_u64),
                "9007199254740992",
                "9007199254740992",
            ),
            (
                serde_json::json!(-9_007_199_254_740_992_i64),
                "-9007199254740992",
                "-9007199254740992",
            ),
        ] {
            let mut ev = sample();
            ev.body.insert("n".into(), n.clone());
            let want = EventError::IntegerOutOfRange {
                path: "$.body.n".into(),
                value: text.into(),
            };
            assert_eq!(ev.clone().sign(&k).err(), Some(want));
            // Signed by hand over the JCS bytes, it still does not parse.
            let mut value = serde_json::to_value(&ev).expect("json");
            let mut message = EVENT_SIGNATURE_DOMAIN.to_vec();
            message.push(0);
            message.extend(canonical::to_vec(&value).expect("jcs"));
            value["sig"] = B64.encode(k.sign(&message).to_bytes()).into();
            let bytes = canonical::to_vec(&value).expect("jcs");
            assert_eq!(
                SignedEvent::from_bytes(&bytes).err(),
                Some(EventError::IntegerOutOfRange {
                    path: "$.body.n".into(),
                    value: written.into(),
                })
            );
        }
        for n in [9_007_199_254_740_991_i64, -9_007_199_254_740_991] {
            let mut ev = sample();
            ev.body.insert("n".into(), n.into());
            let signed = ev.sign(&k).expect("signs");
            assert_eq!(SignedEvent::from_bytes(signed.bytes()), Ok(signed));
        }
    }
}
