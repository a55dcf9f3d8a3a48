//! Sealed payloads (docs/design.md §7), pure: scope keys from the master and a tenant's seed, and
//! an event's `sealed` member opened only by the holder of its scope key, and only in the
//! event it was sealed into.
//!
//! - Scope key = HKDF-SHA256(ikm = master, salt = tenant seed, info = `"govern/scope/v1" ‖
//!   tenant ‖ 0x00 ‖ scope ‖ 0x00 ‖ version`), the tenant as its hyphenated lower-case
//!   UUID and the version as decimal ASCII.
//! - Data key = HKDF-SHA256(ikm = scope key, salt = a fresh 32-byte salt per event, info =
//!   `"govern/event-key/v1"`).
//! - AES-256-GCM with a random 96-bit nonce; AAD = JCS of the envelope without `sealed.ct`
//!   and without `sig`, so a ciphertext moved into another event, request, tenant or scope
//!   does not open.
//! - `sealed` = `{"scope", "version", "salt", "nonce", "ct"}`, bytes standard base64.
//!
//! Which kinds are sealed, in which scope, and which of their fields stay clear is
//! [`SEALED_KINDS`]; a sealed user action carries `{"params", "salt"}` (docs/design.md §4), and
//! [`open_action`] opens one and checks it against the signed commitment and its clear
//! fields. The key service (govern-api's `keys`) holds the master and the seeds and releases
//! scope keys; this module is the format both sides share.

use crate::append::Entropy;
use aes_gcm::aead::{Aead as _, KeyInit as _, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Map, Value};
use sha2::Sha256;

use crate::action::{ChallengeObject, body_commitment};
use crate::canonical;
use crate::event::{Event, TenantId};
use crate::kinds;

/// HKDF info prefix of a scope key.
pub const SCOPE_INFO: &[u8] = b"govern/scope/v1";
/// HKDF info of an event's data key.
pub const EVENT_KEY_INFO: &[u8] = b"govern/event-key/v1";
/// The longest scope name.
pub const SCOPE_BYTES_MAX: usize = 64;

/// Why a payload could not be sealed or opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// The scope name is empty, too long, or holds a zero byte.
    #[error("scope {0:?} is not a scope name")]
    Scope(String),
    /// The event has no `sealed` member, or it is malformed.
    #[error("sealed: {0}")]
    Format(String),
    /// The key, the event or the ciphertext is not the one it was sealed with.
    #[error("the payload does not open with this key in this event")]
    Open,
    /// The envelope cannot be canonicalized.
    #[error("cannot canonicalize the envelope: {0}")]
    Canonical(String),
}

fn check_scope(scope: &str) -> Result<(), SealError> {
    if scope.is_empty() || scope.len() > SCOPE_BYTES_MAX || scope.bytes().any(|b| b == 0) {
        return Err(SealError::Scope(scope.into()));
    }
    Ok(())
}

fn hkdf(ikm: &[u8], salt: &[u8], info: &[&[u8]]) -> [u8; 32] {
    let mut okm = [0u8; 32];
    let hk = hkdf::Hkdf::<Sha256>::new(Some(salt), ikm);
    let info: Vec<u8> = info.concat();
    // 32 bytes is far below HKDF-SHA256's limit of 255 × 32.
    let _ = hk.expand(&info, &mut okm);
    okm
}

/// A tenant's scope key, version `version`.
///
/// # Errors
/// [`SealError::Scope`] for a scope name that is empty, too long or holds a zero byte.
pub fn scope_key(
    master: &[u8; 32],
    seed: &[u8; 32],
    tenant: &TenantId,
    scope: &str,
    version: u32,
) -> Result<[u8; 32], SealError> {
    check_scope(scope)?;
    let tenant = tenant.0.hyphenated().to_string();
    let version = version.to_string();
    Ok(hkdf(
        master,
        seed,
        &[
            SCOPE_INFO,
            tenant.as_bytes(),
            &[0],
            scope.as_bytes(),
            &[0],
            version.as_bytes(),
        ],
    ))
}

/// The AAD: JCS of the envelope without `sealed.ct` and `sig`.
fn aad(event: &Event) -> Result<Vec<u8>, SealError> {
    let mut e = event.clone();
    e.sig = None;
    if let Some(Value::Object(sealed)) = &mut e.sealed {
        sealed.remove("ct");
    }
    canonical::to_vec(&e).map_err(|err| SealError::Canonical(err.to_string()))
}

/// Seal `plaintext` into `event.sealed` under `scope_key` (of `scope`, version `version`),
/// with a fresh salt and nonce. Sign the event afterwards: the signature covers the sealed
/// member.
///
/// # Errors
/// [`SealError::Scope`]; [`SealError::Canonical`].
pub fn seal(
    event: &mut Event,
    scope_key: &[u8; 32],
    scope: &str,
    version: u32,
    plaintext: &[u8],
    entropy: &dyn Entropy,
) -> Result<(), SealError> {
    check_scope(scope)?;
    let mut salt = [0u8; 32];
    entropy.fill(&mut salt);
    let mut nonce = [0u8; 12];
    entropy.fill(&mut nonce);
    let mut sealed = Map::new();
    sealed.insert("scope".into(), scope.into());
    sealed.insert("version".into(), version.into());
    sealed.insert("salt".into(), B64.encode(salt).into());
    sealed.insert("nonce".into(), B64.encode(nonce).into());
    event.sealed = Some(Value::Object(sealed));
    let aad = aad(event)?;
    let key = hkdf(scope_key, &salt, &[EVENT_KEY_INFO]);
    let ct = Aes256Gcm::new(&key.into())
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad: &aad,
            },
        )
        .map_err(|_| SealError::Open)?;
    if let Some(Value::Object(sealed)) = &mut event.sealed {
        sealed.insert("ct".into(), B64.encode(ct).into());
    }
    Ok(())
}

/// What an event's `sealed` member says: scope and version.
///
/// # Errors
/// [`SealError::Format`].
pub fn sealed_scope(event: &Event) -> Result<(String, u32), SealError> {
    let sealed = sealed_member(event)?;
    let scope = sealed
        .get("scope")
        .and_then(Value::as_str)
        .ok_or_else(|| SealError::Format("no scope".into()))?;
    let version = sealed
        .get("version")
        .and_then(Value::as_u64)
        .and_then(|v| u32::try_from(v).ok())
        .ok_or_else(|| SealError::Format("no version".into()))?;
    Ok((scope.to_string(), version))
}

fn sealed_member(event: &Event) -> Result<&Map<String, Value>, SealError> {
    event
        .sealed
        .as_ref()
        .and_then(Value::as_object)
        .ok_or_else(|| SealError::Format("the event has no sealed payload".into()))
}

/// Open `event.sealed` with `scope_key`.
///
/// # Errors
/// [`SealError::Format`] for a malformed member; [`SealError::Open`] when the key or the
/// event is not the one it was sealed with, or a byte changed.
pub fn open(event: &Event, scope_key: &[u8; 32]) -> Result<Vec<u8>, SealError> {
    let sealed = sealed_member(event)?;
    let bytes = |field: &str, len: Option<usize>| -> Result<Vec<u8>, SealError> {
        let b = sealed
            .get(field)
            .and_then(Value::as_str)
            .and_then(|s| B64.decode(s).ok())
            .ok_or_else(|| SealError::Format(format!("{field} is not base64")))?;
        if len.is_some_and(|l| l != b.len()) {
            return Err(SealError::Format(format!("{field} has the wrong length")));
        }
        Ok(b)
    };
    let salt = bytes("salt", Some(32))?;
    let nonce = bytes("nonce", Some(12))?;
    let ct = bytes("ct", None)?;
    let aad = aad(event)?;
    let key = hkdf(scope_key, &salt, &[EVENT_KEY_INFO]);
    Aes256Gcm::new(&key.into())
        .decrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: &ct,
                aad: &aad,
            },
        )
        .map_err(|_| SealError::Open)
}

/// A kind whose payload is sealed: its scope, and the fields that stay clear (in
/// `body.clear`) because the log authorizes on them. A clear field is never a copy of a
/// sealed parameter the log could not check: it is a trailing segment of the signed path
/// (`path` in the user's challenge object), so the log checks it against the user's own
/// signature ([`clear_from_path`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealedKind {
    /// The event kind.
    pub kind: &'static str,
    /// The scope its payload is sealed in.
    pub scope: &'static str,
    /// The fields that stay clear, taken in order from the last segments of the signed path.
    pub clear: &'static [&'static str],
    /// Whether it is a user action (payload `{"params", "salt"}`); otherwise the payload is
    /// the sealed members of the body itself.
    pub action: bool,
    /// The body members that are sealed and so must never appear in clear.
    pub members: &'static [&'static str],
}

/// Every sealed kind. User actions whose parameters are all authorization data (an
/// invitation's role, a role change, a key added, a revocation) stay clear, and the log
/// checks their commitment; a user's name is sealed in their registration.
pub const SEALED_KINDS: [SealedKind; 7] = [
    SealedKind {
        kind: kinds::USER_REGISTERED,
        scope: "users",
        clear: &[],
        action: false,
        members: &["name"],
    },
    SealedKind {
        kind: kinds::WALLET_REQUESTED,
        scope: "wallets",
        clear: &[],
        action: true,
        members: &["params", "salt"],
    },
    SealedKind {
        kind: kinds::TRANSFER_REQUESTED,
        scope: "transfers",
        clear: &[],
        action: true,
        members: &["params", "salt"],
    },
    SealedKind {
        kind: kinds::POLICY_CHANGED,
        scope: "policies",
        clear: &[],
        action: true,
        members: &["params", "salt"],
    },
    SealedKind {
        kind: kinds::APPROVAL_DECIDED,
        scope: "approvals",
        clear: &["decision"],
        action: true,
        members: &["params", "salt"],
    },
    SealedKind {
        kind: kinds::POLICY_EVALUATED,
        scope: "policies",
        clear: &[],
        action: false,
        members: &["reasons"],
    },
    // The signed transaction: its hash and the checkpoint it was verified under stay clear.
    SealedKind {
        kind: kinds::TRANSFER_SIGNED,
        scope: "transfers",
        clear: &[],
        action: false,
        members: &["raw"],
    },
];

/// Every scope a manifest may name for tenant data, in order.
pub const SCOPES: [&str; 5] = ["approvals", "policies", "transfers", "users", "wallets"];

/// The sealing of `kind`, if it is sealed.
#[must_use]
pub fn sealed_kind(kind: &str) -> Option<&'static SealedKind> {
    SEALED_KINDS.iter().find(|k| k.kind == kind)
}

/// The plaintext of a sealed user action: JCS of `{"params", "salt"}` (salt hex).
///
/// # Errors
/// [`SealError::Canonical`].
pub fn action_plaintext(
    params: &Map<String, Value>,
    salt: &[u8; 32],
) -> Result<Vec<u8>, SealError> {
    let mut m = Map::new();
    m.insert("params".into(), Value::Object(params.clone()));
    m.insert("salt".into(), hex::encode(salt).into());
    canonical::to_vec(&Value::Object(m)).map_err(|e| SealError::Canonical(e.to_string()))
}

/// The clear fields of a sealed action (`body.clear`): the last `kind.clear.len()` segments
/// of the signed `path`, in order (`/v1/requests/{id}/approvals/{decision}` gives
/// `{"decision"}`). `None` when the path is too short.
#[must_use]
pub fn clear_from_path(kind: &SealedKind, path: &str) -> Option<Map<String, Value>> {
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    let n = kind.clear.len();
    let tail = segments.get(segments.len().checked_sub(n)?..)?;
    if tail.iter().any(|s| s.is_empty()) {
        return None;
    }
    Some(
        kind.clear
            .iter()
            .zip(tail)
            .map(|(f, v)| ((*f).to_string(), Value::from(*v)))
            .collect(),
    )
}

/// Why an opened action does not stand.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OpenActionError {
    /// The payload did not open, or is malformed.
    #[error(transparent)]
    Seal(#[from] SealError),
    /// The kind is not a sealed action.
    #[error("{0} is not a sealed user action")]
    NotSealed(String),
    /// The opened parameters and salt are not what the user signed.
    #[error("the sealed params and salt do not match the signed body_commitment")]
    Commitment,
    /// `body.clear` is not what the signed path says.
    #[error("the clear fields are not those of the signed path")]
    ClearMismatch,
    /// The signed method and path are not the endpoint of the event's kind.
    #[error("{0}")]
    Route(crate::action::ActionError),
}

/// Open a sealed user action with its scope key, and check it: the salt and parameters are
/// those the user's `body_commitment` names, and `body.clear` is what the signed path
/// says. Returns the parameters.
///
/// # Errors
/// [`OpenActionError`].
pub fn open_action(
    event: &Event,
    scope_key: &[u8; 32],
) -> Result<Map<String, Value>, OpenActionError> {
    let kind = sealed_kind(event.kind.as_str())
        .filter(|k| k.action)
        .ok_or_else(|| OpenActionError::NotSealed(event.kind.to_string()))?;
    let plain = open(event, scope_key)?;
    let value: Value = serde_json::from_slice(&plain)
        .map_err(|e| SealError::Format(format!("the payload is not JSON: {e}")))?;
    let params = value
        .get("params")
        .and_then(Value::as_object)
        .ok_or_else(|| SealError::Format("the payload has no params".into()))?;
    let salt: [u8; 32] = value
        .get("salt")
        .and_then(Value::as_str)
        .and_then(|s| hex::decode(s).ok())
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| SealError::Format("the payload's salt is not 32 bytes, hex".into()))?;
    let object: ChallengeObject = event
        .body
        .get("action")
        .cloned()
        .and_then(|a| serde_json::from_value(a).ok())
        .ok_or_else(|| SealError::Format("the event has no action".into()))?;
    // The path is the kind's endpoint; which object it names, the log has checked against
    // the event's parents (govern-store's `actions::required_parent`).
    crate::action::route_for_kind(&object, event.kind.as_str()).map_err(OpenActionError::Route)?;
    let commitment = body_commitment(&salt, &Value::Object(params.clone()))
        .map_err(|e| SealError::Canonical(e.to_string()))?;
    if commitment != object.body_commitment {
        return Err(OpenActionError::Commitment);
    }
    let clear = event.body.get("clear").and_then(Value::as_object);
    if clear != clear_from_path(kind, &object.path).as_ref() {
        return Err(OpenActionError::ClearMismatch);
    }
    Ok(params.clone())
}
