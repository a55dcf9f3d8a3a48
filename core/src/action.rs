//! User action signatures (docs/design.md §4), verified offline: with the event and the credential
//! recorded in the log, and nothing else.
//!
//! The client computes the challenge from the action itself: SHA-256 of the JCS of a
//! [`ChallengeObject`] — domain `govern/action/v1`, tenant, user, credential, kind, request,
//! rp_id, method, path, the body's salted commitment, the server's nonce and a recent
//! checkpoint (the anchor). The object is stored in the event's body, so anyone holding the
//! log recomputes the challenge. A login uses the domain `govern/login/v1`, so no login
//! challenge can equal an action's.
//!
//! Two kinds of credential sign it:
//! - **passkeys**: a WebAuthn assertion — `authenticatorData`, `clientDataJSON` and a
//!   signature over `authenticatorData ‖ SHA-256(clientDataJSON)`, ES256 (P-256, DER) or
//!   EdDSA (Ed25519). `clientDataJSON` must say `webauthn.get`, carry the challenge
//!   (base64url, no padding) and come from an origin on the object's `rp_id` (https, or
//!   http on `localhost`), not cross-origin; `authenticatorData` must carry
//!   SHA-256(rp_id) and the user-present and user-verified flags;
//! - **keys** of API clients: Ed25519 or P-256 (ECDSA over SHA-256) signing a clientData-like
//!   JSON `{"type":"key.get","challenge","origin"}` with the same challenge and origin rules.
//!
//! What needs state is the caller's: that the nonce is never used twice in the tenant, that
//! the event lands within the named distance of its anchor, and that a passkey's signature
//! counter never goes back ([`Verified::counter`] is returned for that).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};

use crate::canonical;
use crate::kinds;

/// The challenge object's domain for actions.
pub const ACTION_DOMAIN: &str = "govern/action/v1";
/// The challenge object's domain for logins.
pub const LOGIN_DOMAIN: &str = "govern/login/v1";
/// `clientDataJSON.type` of a WebAuthn assertion.
pub const WEBAUTHN_GET: &str = "webauthn.get";
/// `type` of an API key's client data.
pub const KEY_GET: &str = "key.get";
/// The longest `clientDataJSON` or key client data accepted.
pub const CLIENT_DATA_BYTES_MAX: usize = 4096;
/// The longest `authenticatorData` accepted (extensions included).
pub const AUTHENTICATOR_DATA_BYTES_MAX: usize = 1024;
/// The longest signature accepted (DER P-256 is at most 72 bytes).
pub const SIGNATURE_BYTES_MAX: usize = 128;

const FLAG_USER_PRESENT: u8 = 0x01;
const FLAG_USER_VERIFIED: u8 = 0x04;

/// The checkpoint an action is anchored to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Anchor {
    /// Tree size.
    pub size: u64,
    /// Root hash, lower-case hex.
    pub root: String,
}

/// What the user signs (docs/design.md §4): its JCS's SHA-256 is the challenge.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChallengeObject {
    /// [`ACTION_DOMAIN`] or [`LOGIN_DOMAIN`].
    pub domain: String,
    /// Tenant id.
    pub tenant: String,
    /// User id.
    pub user: String,
    /// Credential id (base64url).
    pub credential: String,
    /// The event kind the action appends.
    pub kind: String,
    /// The request id.
    pub request: String,
    /// The WebAuthn relying party id.
    pub rp_id: String,
    /// HTTP method of the action's request.
    pub method: String,
    /// HTTP path of the action's request.
    pub path: String,
    /// Hex SHA-256(salt ‖ JCS(body)), see [`body_commitment`].
    pub body_commitment: String,
    /// The server's nonce.
    pub nonce: String,
    /// A recent checkpoint.
    pub anchor: Anchor,
}

impl ChallengeObject {
    /// SHA-256 of the object's JCS.
    ///
    /// # Errors
    /// [`ActionError::Canonical`] (not reachable for an object of strings and an integer).
    pub fn challenge(&self) -> Result<[u8; 32], ActionError> {
        let jcs = canonical::to_vec(self).map_err(|e| ActionError::Canonical(e.to_string()))?;
        Ok(Sha256::digest(jcs).into())
    }
}

/// Hex SHA-256(salt ‖ JCS(body)): the clear commitment to an action's body.
///
/// # Errors
/// [`ActionError::Number`] when `body` holds a float or an integer outside ±(2^53 − 1)
/// ([`canonical::first_unsafe_number`]): JCS writes numbers as doubles, so two bodies that
/// differ there would share a commitment; [`ActionError::Canonical`] when it cannot be
/// serialized.
pub fn body_commitment(salt: &[u8; 32], body: &Value) -> Result<String, ActionError> {
    if let Some(unsafe_number) = canonical::first_unsafe_number(body) {
        return Err(ActionError::Number(unsafe_number));
    }
    let jcs = canonical::to_vec(body).map_err(|e| ActionError::Canonical(e.to_string()))?;
    let mut h = Sha256::new();
    h.update(salt);
    h.update(&jcs);
    Ok(hex::encode(h.finalize()))
}

/// A credential's public key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CredentialKey {
    /// P-256: ES256 for passkeys, ECDSA over SHA-256 for keys.
    P256(p256::ecdsa::VerifyingKey),
    /// Ed25519: EdDSA.
    Ed25519(ed25519_dalek::VerifyingKey),
}

/// The longest COSE_Key accepted.
pub const COSE_KEY_BYTES_MAX: usize = 256;

/// In JSON: base64url (no padding) of the key's COSE_Key ([`CredentialKey::to_cose`]).
impl Serialize for CredentialKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&B64URL.encode(self.to_cose()))
    }
}

impl<'de> Deserialize<'de> for CredentialKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let cose = B64URL.decode(text).map_err(serde::de::Error::custom)?;
        Self::from_cose(&cose).map_err(serde::de::Error::custom)
    }
}

impl CredentialKey {
    /// The key in a COSE_Key (RFC 9052 §7, as WebAuthn's attested credential data carries
    /// it): EC2 on P-256 (`alg` ES256 if present) or OKP on Ed25519 (`alg` EdDSA if present).
    ///
    /// # Errors
    /// [`ActionError::CoseKey`] naming what is not accepted.
    pub fn from_cose(bytes: &[u8]) -> Result<Self, ActionError> {
        use coset::{CborSerializable as _, KeyType, Label, iana};
        let err = |why: &str| ActionError::CoseKey(why.into());
        if bytes.len() > COSE_KEY_BYTES_MAX {
            return Err(err("longer than a public key"));
        }
        let key =
            coset::CoseKey::from_slice(bytes).map_err(|e| ActionError::CoseKey(e.to_string()))?;
        let param = |label: i64| {
            key.params
                .iter()
                .find(|(l, _)| *l == Label::Int(label))
                .map(|(_, v)| v)
        };
        let int = |label: i64| {
            param(label)
                .and_then(|v| v.as_integer())
                .and_then(|i| i64::try_from(i).ok())
        };
        let bytes_of = |label: i64| param(label).and_then(|v| v.as_bytes()).cloned();
        let alg = key.alg.as_ref();
        match key.kty {
            KeyType::Assigned(iana::KeyType::EC2) => {
                if alg.is_some_and(|a| *a != coset::Algorithm::Assigned(iana::Algorithm::ES256)) {
                    return Err(err("an EC2 key's alg must be ES256"));
                }
                if int(-1) != Some(iana::EllipticCurve::P_256 as i64) {
                    return Err(err("an EC2 key must be on P-256"));
                }
                let (x, y) = (
                    bytes_of(-2).ok_or_else(|| err("no x"))?,
                    bytes_of(-3).ok_or_else(|| err("no y"))?,
                );
                if x.len() != 32 || y.len() != 32 {
                    return Err(err("x and y must be 32 bytes"));
                }
                let mut sec1 = vec![0x04];
                sec1.extend_from_slice(&x);
                sec1.extend_from_slice(&y);
                p256::ecdsa::VerifyingKey::from_sec1_bytes(&sec1)
                    .map(Self::P256)
                    .map_err(|_| err("not a point on P-256"))
            }
            KeyType::Assigned(iana::KeyType::OKP) => {
                if alg.is_some_and(|a| *a != coset::Algorithm::Assigned(iana::Algorithm::EdDSA)) {
                    return Err(err("an OKP key's alg must be EdDSA"));
                }
                if int(-1) != Some(iana::EllipticCurve::Ed25519 as i64) {
                    return Err(err("an OKP key must be on Ed25519"));
                }
                let x: [u8; 32] = bytes_of(-2)
                    .and_then(|x| x.try_into().ok())
                    .ok_or_else(|| err("x must be 32 bytes"))?;
                ed25519_dalek::VerifyingKey::from_bytes(&x)
                    .map(Self::Ed25519)
                    .map_err(|_| err("not an Ed25519 key"))
            }
            _ => Err(err("only EC2 (P-256) and OKP (Ed25519) keys are accepted")),
        }
    }

    /// The key as a COSE_Key ([`CredentialKey::from_cose`] reads it back): EC2 P-256 with
    /// `alg` ES256, or OKP Ed25519 with `alg` EdDSA. API clients register their keys so.
    #[must_use]
    pub fn to_cose(&self) -> Vec<u8> {
        use coset::{CborSerializable as _, CoseKeyBuilder, iana};
        let key = match self {
            Self::P256(k) => {
                let point = k.to_encoded_point(false);
                let (x, y) = (
                    point.x().map(|x| x.to_vec()).unwrap_or_default(),
                    point.y().map(|y| y.to_vec()).unwrap_or_default(),
                );
                CoseKeyBuilder::new_ec2_pub_key(iana::EllipticCurve::P_256, x, y)
                    .algorithm(iana::Algorithm::ES256)
                    .build()
            }
            Self::Ed25519(k) => CoseKeyBuilder::new_okp_key()
                .param(
                    iana::OkpKeyParameter::Crv as i64,
                    coset::cbor::Value::from(iana::EllipticCurve::Ed25519 as i64),
                )
                .param(
                    iana::OkpKeyParameter::X as i64,
                    coset::cbor::Value::Bytes(k.to_bytes().to_vec()),
                )
                .algorithm(iana::Algorithm::EdDSA)
                .build(),
        };
        key.to_vec().unwrap_or_default()
    }
}

/// The credential a WebAuthn registration creates, from its `attestationObject` (a CBOR map
/// whose `authData` carries the attested credential data: rpIdHash, flags, counter, AAGUID,
/// the credential id and its COSE_Key). Checks `authData`'s rpIdHash against `rp_id` and
/// that user presence and an attested credential are flagged. The attestation statement is
/// not judged here (passkeys are accepted with `none` attestation).
///
/// # Errors
/// [`ActionError::AttestationObject`] naming what is malformed; [`ActionError::RpIdHash`];
/// [`ActionError::Flags`]; [`ActionError::CoseKey`].
pub fn registered_credential(
    attestation_object: &[u8],
    rp_id: &str,
) -> Result<(Vec<u8>, CredentialKey), ActionError> {
    use ciborium::value::Value as Cbor;
    let err = |why: &str| ActionError::AttestationObject(why.into());
    if attestation_object.len() > ATTESTATION_OBJECT_BYTES_MAX {
        return Err(err("too large"));
    }
    let mut reader = attestation_object;
    let value: Cbor = ciborium::de::from_reader(&mut reader)
        .map_err(|e| ActionError::AttestationObject(e.to_string()))?;
    if !reader.is_empty() {
        return Err(err("bytes after the CBOR map"));
    }
    let map = value.as_map().ok_or_else(|| err("not a CBOR map"))?;
    let auth = map
        .iter()
        .find(|(k, _)| k.as_text() == Some("authData"))
        .and_then(|(_, v)| v.as_bytes())
        .ok_or_else(|| err("no authData"))?;
    // rpIdHash 32, flags 1, counter 4, AAGUID 16, credential id length 2.
    if auth.len() < 55 {
        return Err(err("authData too short for attested credential data"));
    }
    if auth[..32] != Sha256::digest(rp_id.as_bytes())[..] {
        return Err(ActionError::RpIdHash {
            rp_id: rp_id.into(),
        });
    }
    let flags = auth[32];
    const ATTESTED: u8 = 0x40;
    if flags & FLAG_USER_PRESENT == 0 || flags & ATTESTED == 0 {
        return Err(ActionError::Flags { flags });
    }
    let id_len = usize::from(u16::from_be_bytes([auth[53], auth[54]]));
    let id = auth
        .get(55..55 + id_len)
        .ok_or_else(|| err("credential id truncated"))?;
    let mut rest = &auth[55 + id_len..];
    let before = rest.len();
    let _: Cbor =
        ciborium::de::from_reader(&mut rest).map_err(|e| ActionError::CoseKey(e.to_string()))?;
    let key_bytes = &auth[55 + id_len..55 + id_len + (before - rest.len())];
    Ok((id.to_vec(), CredentialKey::from_cose(key_bytes)?))
}

/// The longest `attestationObject` accepted.
pub const ATTESTATION_OBJECT_BYTES_MAX: usize = 16 * 1024;

/// A passkey or an API key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CredentialType {
    /// A WebAuthn passkey.
    Passkey,
    /// An API client's key.
    Key,
}

/// A credential as the log records it (in JSON, as projections and their snapshots store it:
/// the key is its COSE_Key, base64url).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credential {
    /// Its id (base64url).
    pub id: String,
    /// Passkey or key.
    pub kind: CredentialType,
    /// Its public key.
    pub key: CredentialKey,
    /// Its tenant.
    pub tenant: String,
    /// Its user.
    pub user: String,
}

/// The user's signature as an action event's body carries it (bytes base64url).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum UserSignature {
    /// A WebAuthn assertion.
    Passkey {
        /// `authenticatorData`.
        authenticator_data: String,
        /// `clientDataJSON`.
        client_data_json: String,
        /// The signature.
        signature: String,
    },
    /// An API key's signature over its client data.
    Key {
        /// The client data JSON.
        client_data: String,
        /// The signature.
        signature: String,
    },
}

/// A verified user action.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    /// The challenge.
    pub challenge: [u8; 32],
    /// A passkey's signature counter (0 for keys, and for authenticators that keep none).
    pub counter: u32,
}

/// Why a user action does not verify. Every variant is the action's fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ActionError {
    /// Canonicalization failed.
    #[error("cannot canonicalize: {0}")]
    Canonical(String),
    /// The signed method and path are not the endpoint of the event's kind.
    #[error("signed route: {0}")]
    Route(String),
    /// A committed body holds a number RFC 8785 cannot write exactly.
    #[error("{0}")]
    Number(canonical::UnsafeNumber),
    /// The object's domain is not the one expected (a login challenge offered as an
    /// action, or the reverse).
    #[error("challenge domain is {found:?}, not {expected:?}")]
    Domain {
        /// The domain found.
        found: String,
        /// The domain expected.
        expected: &'static str,
    },
    /// The object names another credential, user or tenant than the credential's.
    #[error("the action names {what} {named:?}, but the credential's is {actual:?}")]
    NotTheCredential {
        /// `credential`, `user` or `tenant`.
        what: &'static str,
        /// In the object.
        named: String,
        /// The credential's.
        actual: String,
    },
    /// A passkey signature from a key credential or the reverse.
    #[error("a {signature} signature cannot come from a {credential} credential")]
    WrongCredentialType {
        /// The signature's type.
        signature: &'static str,
        /// The credential's type.
        credential: &'static str,
    },
    /// A field is not base64url or too long.
    #[error("{field} is not base64url of at most {max} bytes")]
    Encoding {
        /// The field.
        field: &'static str,
        /// Its limit.
        max: usize,
    },
    /// The client data is not the JSON object expected.
    #[error("client data: {0}")]
    ClientData(String),
    /// The client data's type is wrong.
    #[error("client data type is {found:?}, expected {expected:?}")]
    ClientDataType {
        /// Found.
        found: String,
        /// Expected.
        expected: &'static str,
    },
    /// The client data's challenge is not this action's.
    #[error("the signed challenge is not this action's")]
    ChallengeMismatch,
    /// The origin is not on the relying party id.
    #[error("origin {origin:?} is not on rp_id {rp_id:?}")]
    Origin {
        /// The origin signed.
        origin: String,
        /// The object's rp_id.
        rp_id: String,
    },
    /// `authenticatorData` is shorter than 37 bytes.
    #[error("authenticatorData is {len} bytes; at least 37 are needed")]
    AuthenticatorDataShort {
        /// Its length.
        len: usize,
    },
    /// `authenticatorData`'s rpIdHash is not SHA-256(rp_id).
    #[error("authenticatorData is for another relying party than {rp_id:?}")]
    RpIdHash {
        /// The object's rp_id.
        rp_id: String,
    },
    /// User presence or verification is not flagged.
    #[error("authenticatorData flags {flags:#04x} lack user presence and verification")]
    Flags {
        /// The flags byte.
        flags: u8,
    },
    /// The signature does not verify.
    #[error("the signature does not verify under the credential's key")]
    BadSignature,
    /// A registration's `attestationObject` is malformed.
    #[error("attestationObject: {0}")]
    AttestationObject(String),
    /// A credential's COSE_Key is malformed or of an algorithm not accepted.
    #[error("COSE key: {0}")]
    CoseKey(String),
    /// The event's body lacks `action` or `signature`, or they do not parse.
    #[error("the event's body: {0}")]
    Body(String),
}

fn decode(field: &'static str, text: &str, max: usize) -> Result<Vec<u8>, ActionError> {
    let err = || ActionError::Encoding { field, max };
    if text.len() > max.div_ceil(3) * 4 {
        return Err(err());
    }
    let bytes = B64URL.decode(text).map_err(|_| err())?;
    if bytes.len() > max {
        return Err(err());
    }
    Ok(bytes)
}

/// Whether `origin` is on `rp_id`: `https://<rp_id or a subdomain>[:port]`, or
/// `http://localhost[:port]` when `rp_id` is `localhost`.
fn origin_on(origin: &str, rp_id: &str) -> bool {
    // An empty path ("…/") is the same origin; some authenticators serialize it so.
    let origin = origin.strip_suffix('/').unwrap_or(origin);
    let (scheme, rest) = match origin.split_once("://") {
        Some(p) => p,
        None => return false,
    };
    if rest.contains(['/', '?', '#', '@']) {
        return false;
    }
    let host = match rest.rsplit_once(':') {
        Some((h, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => h,
        Some(_) => return false,
        None => rest,
    };
    let on = host == rp_id || host.ends_with(&format!(".{rp_id}"));
    match scheme {
        "https" => on && !rp_id.is_empty(),
        "http" => rp_id == "localhost" && host == "localhost",
        _ => false,
    }
}

/// The client data's `type`, `challenge` and `origin`, checked.
fn check_client_data(
    bytes: &[u8],
    expected_type: &'static str,
    challenge: &[u8; 32],
    rp_id: &str,
) -> Result<(), ActionError> {
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| ActionError::ClientData(e.to_string()))?;
    let obj = value
        .as_object()
        .ok_or_else(|| ActionError::ClientData("not a JSON object".into()))?;
    let text = |name: &str| {
        obj.get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| ActionError::ClientData(format!("no string {name:?}")))
    };
    let found = text("type")?;
    if found != expected_type {
        return Err(ActionError::ClientDataType {
            found: found.into(),
            expected: expected_type,
        });
    }
    if text("challenge")? != B64URL.encode(challenge) {
        return Err(ActionError::ChallengeMismatch);
    }
    let origin = text("origin")?;
    if !origin_on(origin, rp_id) || obj.get("crossOrigin") == Some(&Value::Bool(true)) {
        return Err(ActionError::Origin {
            origin: origin.into(),
            rp_id: rp_id.into(),
        });
    }
    Ok(())
}

fn verify_signature(key: &CredentialKey, message: &[u8], sig: &[u8]) -> Result<(), ActionError> {
    match key {
        CredentialKey::P256(k) => {
            use p256::ecdsa::signature::Verifier as _;
            let sig = if sig.len() == 64 {
                p256::ecdsa::Signature::from_slice(sig)
            } else {
                p256::ecdsa::Signature::from_der(sig)
            }
            .map_err(|_| ActionError::BadSignature)?;
            k.verify(message, &sig)
                .map_err(|_| ActionError::BadSignature)
        }
        CredentialKey::Ed25519(k) => {
            let sig =
                ed25519_dalek::Signature::from_slice(sig).map_err(|_| ActionError::BadSignature)?;
            k.verify_strict(message, &sig)
                .map_err(|_| ActionError::BadSignature)
        }
    }
}

/// Verify `signature` over `object` by `credential`, with no other state (see the module
/// documentation for every check).
///
/// # Errors
/// The first check that fails.
pub fn verify_user_action(
    object: &ChallengeObject,
    signature: &UserSignature,
    credential: &Credential,
) -> Result<Verified, ActionError> {
    verify_in_domain(object, signature, credential, ACTION_DOMAIN)
}

/// [`verify_user_action`] for a login (domain [`LOGIN_DOMAIN`]): how an API client's key
/// logs in. No login can pass as an action, nor an action as a login.
///
/// # Errors
/// As [`verify_user_action`].
pub fn verify_login(
    object: &ChallengeObject,
    signature: &UserSignature,
    credential: &Credential,
) -> Result<Verified, ActionError> {
    verify_in_domain(object, signature, credential, LOGIN_DOMAIN)
}

fn verify_in_domain(
    object: &ChallengeObject,
    signature: &UserSignature,
    credential: &Credential,
    domain: &'static str,
) -> Result<Verified, ActionError> {
    if object.domain != domain {
        return Err(ActionError::Domain {
            found: object.domain.clone(),
            expected: domain,
        });
    }
    for (what, named, actual) in [
        ("credential", &object.credential, &credential.id),
        ("user", &object.user, &credential.user),
        ("tenant", &object.tenant, &credential.tenant),
    ] {
        if named != actual {
            return Err(ActionError::NotTheCredential {
                what,
                named: named.clone(),
                actual: actual.clone(),
            });
        }
    }
    let challenge = object.challenge()?;
    match (signature, credential.kind) {
        (
            UserSignature::Passkey {
                authenticator_data,
                client_data_json,
                signature,
            },
            CredentialType::Passkey,
        ) => {
            let auth = decode(
                "authenticator_data",
                authenticator_data,
                AUTHENTICATOR_DATA_BYTES_MAX,
            )?;
            let client = decode("client_data_json", client_data_json, CLIENT_DATA_BYTES_MAX)?;
            let sig = decode("signature", signature, SIGNATURE_BYTES_MAX)?;
            check_client_data(&client, WEBAUTHN_GET, &challenge, &object.rp_id)?;
            if auth.len() < 37 {
                return Err(ActionError::AuthenticatorDataShort { len: auth.len() });
            }
            if auth[..32] != Sha256::digest(object.rp_id.as_bytes())[..] {
                return Err(ActionError::RpIdHash {
                    rp_id: object.rp_id.clone(),
                });
            }
            let flags = auth[32];
            if flags & FLAG_USER_PRESENT == 0 || flags & FLAG_USER_VERIFIED == 0 {
                return Err(ActionError::Flags { flags });
            }
            let counter = u32::from_be_bytes([auth[33], auth[34], auth[35], auth[36]]);
            let mut message = auth;
            message.extend_from_slice(&Sha256::digest(&client));
            verify_signature(&credential.key, &message, &sig)?;
            Ok(Verified { challenge, counter })
        }
        (
            UserSignature::Key {
                client_data,
                signature,
            },
            CredentialType::Key,
        ) => {
            let client = decode("client_data", client_data, CLIENT_DATA_BYTES_MAX)?;
            let sig = decode("signature", signature, SIGNATURE_BYTES_MAX)?;
            check_client_data(&client, KEY_GET, &challenge, &object.rp_id)?;
            verify_signature(&credential.key, &client, &sig)?;
            Ok(Verified {
                challenge,
                counter: 0,
            })
        }
        (UserSignature::Passkey { .. }, CredentialType::Key) => {
            Err(ActionError::WrongCredentialType {
                signature: "passkey",
                credential: "key",
            })
        }
        (UserSignature::Key { .. }, CredentialType::Passkey) => {
            Err(ActionError::WrongCredentialType {
                signature: "key",
                credential: "passkey",
            })
        }
    }
}

/// The challenge object and the user's signature an action event's body carries under
/// `action` and `signature`.
///
/// # Errors
/// [`ActionError::Body`] when either is missing or does not parse.
pub fn action_of(
    body: &Map<String, Value>,
) -> Result<(ChallengeObject, UserSignature), ActionError> {
    let field = |name: &str| {
        body.get(name)
            .cloned()
            .ok_or_else(|| ActionError::Body(format!("no {name:?}")))
    };
    let object = serde_json::from_value(field("action")?)
        .map_err(|e| ActionError::Body(format!("action: {e}")))?;
    let signature = serde_json::from_value(field("signature")?)
        .map_err(|e| ActionError::Body(format!("signature: {e}")))?;
    Ok((object, signature))
}

/// [`verify_user_action`] for an event's body (`action` and `signature`).
///
/// # Errors
/// As [`action_of`] and [`verify_user_action`].
pub fn verify_user_action_body(
    body: &Map<String, Value>,
    credential: &Credential,
) -> Result<Verified, ActionError> {
    let (object, signature) = action_of(body)?;
    verify_user_action(&object, &signature, credential)
}

/// The target a signed action's path names: the object its event must follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathTarget<'a> {
    /// The path names no object (`/v1/users`, `/v1/wallets`, …): the event's parent comes
    /// from its kind and parameters.
    None,
    /// `/v1/wallets/{id}/transfers`: the wallet (its `wallet.requested` request id).
    Wallet(&'a str),
    /// `/v1/requests/{id}/approvals/{decision}`: the request (its first event's request id).
    Request(&'a str),
}

/// The action a method and path are (the edge's sensitive endpoints): its event kind and the
/// object the path names. `None` for any other route. One table for the edge, which routes
/// by it, and for everyone who checks a signed action (the log, `open_action`'s callers,
/// `govern verify request`), who check the signed path is its kind's and derive the event's
/// required parent from its target.
#[must_use]
pub fn route_of<'a>(method: &str, path: &'a str) -> Option<(&'static str, PathTarget<'a>)> {
    if method != "POST" {
        return None;
    }
    let parts: Vec<&'a str> = path.strip_prefix('/')?.split('/').collect();
    Some(match parts.as_slice() {
        ["v1", "users"] => (kinds::USER_INVITED, PathTarget::None),
        ["v1", "users", "role"] => (kinds::USER_ROLE_CHANGED, PathTarget::None),
        ["v1", "credentials"] => (kinds::CREDENTIAL_REGISTERED, PathTarget::None),
        ["v1", "credentials", "revoke"] => (kinds::CREDENTIAL_REVOKED, PathTarget::None),
        ["v1", "wallets"] => (kinds::WALLET_REQUESTED, PathTarget::None),
        ["v1", "wallets", w, "transfers"] if !w.is_empty() => {
            (kinds::TRANSFER_REQUESTED, PathTarget::Wallet(w))
        }
        ["v1", "policies"] => (kinds::POLICY_CHANGED, PathTarget::None),
        ["v1", "requests", r, "approvals", "approve" | "deny"] if !r.is_empty() => {
            (kinds::APPROVAL_DECIDED, PathTarget::Request(r))
        }
        _ => return None,
    })
}

/// Check that `object`'s method and path are an action endpoint of `kind`, and return the
/// object its path names.
///
/// # Errors
/// [`ActionError::Route`] otherwise.
pub fn route_for_kind<'a>(
    object: &'a ChallengeObject,
    kind: &str,
) -> Result<PathTarget<'a>, ActionError> {
    match route_of(&object.method, &object.path) {
        Some((k, target)) if k == kind => Ok(target),
        Some((k, _)) => Err(ActionError::Route(format!(
            "{} {} is the endpoint of {k}, not of {kind}",
            object.method, object.path
        ))),
        None => Err(ActionError::Route(format!(
            "{} {} is not an action endpoint",
            object.method, object.path
        ))),
    }
}
