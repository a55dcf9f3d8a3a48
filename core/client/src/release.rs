//! The client side of a key release (docs/design.md §7): the release request a service
//! signs with its identity key and sends to the key service, and the opening of the
//! HPKE-sealed answer with its attested X25519 key. The key service itself (checking the
//! request, deriving and sealing the keys) is govern-api's.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use govern_core::event::{TenantId, Timestamp};
use govern_core::ids::LeafHash;
use hpke::{Deserializable as _, OpModeR};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use zeroize::Zeroizing;

/// The domain of a release request's signature and of the HPKE `info`.
pub const RELEASE_DOMAIN: &str = "govern/keys-release/v1";
/// The HPKE suite of a release.
pub const HPKE_SUITE: &str = "DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM";

/// The HPKE KEM of a release.
pub type Kem = hpke::kem::X25519HkdfSha256;
/// The HPKE KDF of a release.
pub type Kdf = hpke::kdf::HkdfSha256;
/// The HPKE AEAD of a release.
pub type Aead = hpke::aead::AesGcm256;

/// A release request or release that is not what it should be.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Malformed(pub String);

/// A request for a tenant's scope keys, signed by the requesting service's identity key over
/// `"govern/keys-release/v1" ‖ 0x00 ‖ JCS(the request without sig)`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ReleaseRequest {
    /// The requesting role.
    pub role: String,
    /// Its current `service.attested` leaf hash, hex.
    pub identity: String,
    /// The tenant.
    pub tenant: String,
    /// The scopes asked for.
    pub scopes: Vec<String>,
    /// When it was made (RFC 3339, milliseconds).
    pub time: String,
    /// Ed25519 signature, base64.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sig: String,
}

impl ReleaseRequest {
    /// The signed message, also the HPKE `info`: `RELEASE_DOMAIN ‖ 0x00 ‖ JCS(the request
    /// without sig)`.
    ///
    /// # Errors
    /// [`Malformed`] when it cannot be canonicalized.
    pub fn message(&self) -> Result<Vec<u8>, Malformed> {
        let mut unsigned = self.clone();
        unsigned.sig.clear();
        let jcs =
            govern_core::canonical::to_vec(&unsigned).map_err(|e| Malformed(e.to_string()))?;
        let mut m = Vec::with_capacity(RELEASE_DOMAIN.len() + 1 + jcs.len());
        m.extend_from_slice(RELEASE_DOMAIN.as_bytes());
        m.push(0);
        m.extend_from_slice(&jcs);
        Ok(m)
    }

    /// A request by the service of `role` holding the identity key `signing_key`, whose
    /// `service.attested` is `identity`, for `scopes` of `tenant`, made at `time`.
    ///
    /// # Errors
    /// [`Malformed`] when it cannot be canonicalized.
    pub fn new_signed(
        role: &str,
        signing_key: &ed25519_dalek::SigningKey,
        identity: LeafHash,
        tenant: &TenantId,
        scopes: &[&str],
        time: Timestamp,
    ) -> Result<Self, Malformed> {
        let mut req = Self {
            role: role.to_string(),
            identity: identity.to_string(),
            tenant: tenant.0.to_string(),
            scopes: scopes.iter().map(|s| (*s).to_string()).collect(),
            time: time.to_string(),
            sig: String::new(),
        };
        let sig = ed25519_dalek::Signer::sign(signing_key, &req.message()?);
        req.sig = B64.encode(sig.to_bytes());
        Ok(req)
    }
}

/// A release: the scope keys, HPKE-sealed to the requester's attested X25519 key with `info`
/// = the request's signed message, so a release answers one request only.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Release {
    /// The tenant.
    pub tenant: String,
    /// The role it went to.
    pub role: String,
    /// The HPKE suite.
    pub suite: String,
    /// The encapsulated key, base64.
    pub enc: String,
    /// The ciphertext of JCS `{"keys":[{"scope","version","key"}]}` (keys base64), base64.
    pub ct: String,
    /// The `keys.audit` entry that records it.
    pub audit: u64,
}

/// Scope keys by (scope, version), wiped on drop.
#[derive(Default)]
pub struct ScopeKeys(BTreeMap<(String, u32), Zeroizing<[u8; 32]>>);

impl std::fmt::Debug for ScopeKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.0.keys()).finish()
    }
}

impl ScopeKeys {
    /// Hold `key` as `scope`'s, version `version`.
    pub fn insert(&mut self, scope: String, version: u32, key: Zeroizing<[u8; 32]>) {
        self.0.insert((scope, version), key);
    }

    /// The key of `scope`, version `version`.
    #[must_use]
    pub fn get(&self, scope: &str, version: u32) -> Option<&[u8; 32]> {
        self.0.get(&(scope.to_string(), version)).map(|k| &**k)
    }

    /// Every key held, by (scope, version).
    pub fn iter(&self) -> impl Iterator<Item = (&(String, u32), &[u8; 32])> {
        self.0.iter().map(|(k, v)| (k, &**v))
    }

    /// Every (scope, version) held.
    pub fn versions(&self) -> impl Iterator<Item = &(String, u32)> {
        self.0.keys()
    }
}

impl Release {
    /// Open with the requester's X25519 secret.
    ///
    /// # Errors
    /// [`Malformed`] when it does not open or is not the expected JSON.
    pub fn open(
        &self,
        request: &ReleaseRequest,
        x25519: &x25519_dalek::StaticSecret,
    ) -> Result<ScopeKeys, Malformed> {
        let bad = |what: &str| Malformed(format!("release: {what}"));
        let sk = <Kem as hpke::Kem>::PrivateKey::from_bytes(x25519.as_bytes())
            .map_err(|_| bad("the X25519 secret"))?;
        let enc = B64
            .decode(&self.enc)
            .ok()
            .and_then(|b| <Kem as hpke::Kem>::EncappedKey::from_bytes(&b).ok())
            .ok_or_else(|| bad("enc"))?;
        let ct = B64.decode(&self.ct).map_err(|_| bad("ct is not base64"))?;
        let plain = Zeroizing::new(
            hpke::single_shot_open::<Aead, Kdf, Kem>(
                &OpModeR::Base,
                &sk,
                &enc,
                &request.message()?,
                &ct,
                b"",
            )
            .map_err(|_| bad("does not open with this key for this request"))?,
        );
        let v: Value = serde_json::from_slice(&plain).map_err(|_| bad("not JSON"))?;
        let mut out = ScopeKeys::default();
        for k in v
            .get("keys")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("no keys"))?
        {
            let scope = k
                .get("scope")
                .and_then(Value::as_str)
                .ok_or_else(|| bad("scope"))?;
            let version = k
                .get("version")
                .and_then(Value::as_u64)
                .and_then(|v| u32::try_from(v).ok())
                .ok_or_else(|| bad("version"))?;
            let key = Zeroizing::new(
                k.get("key")
                    .and_then(Value::as_str)
                    .and_then(|s| B64.decode(s).ok())
                    .ok_or_else(|| bad("key"))?,
            );
            let mut fixed = Zeroizing::new([0u8; 32]);
            if key.len() != 32 {
                return Err(bad("a key is not 32 bytes"));
            }
            fixed.copy_from_slice(&key);
            out.0.insert((scope.to_string(), version), fixed);
        }
        Ok(out)
    }
}
