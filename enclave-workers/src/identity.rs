//! A service's attested identity (docs/design.md §6): its keys, the document that binds them, the
//! `service.attested` event that records it, and the events it signs afterwards.
//!
//! A service makes three keys: Ed25519 (it signs events with it), X25519 (sealed payloads
//! are encrypted to it) and RSA-2048 (AWS KMS releases keys only to an RSA key inside an
//! enclave). It asks its NSM for a document with `public_key` = the RSA key's
//! SubjectPublicKeyInfo DER, `user_data` = [`UserData`] (version, role, manifest hash,
//! Ed25519 key, X25519 key) and `nonce` = the root of a recent checkpoint, and appends
//! `service.attested` with the document. Every later event names that entry's leaf hash in
//! its `attestation` field. Re-attesting (on the manifest's `reattest_s` schedule) makes a
//! new document for the same keys and replaces the identity.
//!
//! The keys live in memory and die with the process, except where a role's Ed25519 key must
//! outlive it: the log's (its checkpoint key, which verifiers pin) and, in dev mode, the
//! edge's (so a restarted node is the same identity rather than a second one claiming a live
//! role).

use ed25519_dalek::SigningKey;
use govern_core::attestation::UserData;
use govern_core::event::{
    Event, EventError, Kind, Producer, PublicKey, RequestId, Role, SignedEvent, TenantId, Timestamp,
};
use govern_core::ids::{LeafHash, RootHash};
use rsa::RsaPrivateKey;
use rsa::pkcs8::EncodePublicKey as _;
use serde_json::{Map, Value};
use std::sync::RwLock;
use x25519_dalek::StaticSecret;

use crate::nsm::{AttestationRequest, Nsm, NsmError};

/// The kind of the event that records an identity.
pub use govern_core::kinds::SERVICE_ATTESTED as ATTESTED_KIND;
/// The RSA key size docs/design.md §6 fixes.
pub const RSA_BITS: usize = 2048;

/// Why an identity could not be made or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// The RSA key could not be made or encoded.
    #[error("RSA key: {0}")]
    Rsa(String),
    /// The NSM refused.
    #[error(transparent)]
    Nsm(#[from] NsmError),
    /// The event could not be built or signed.
    #[error(transparent)]
    Event(#[from] EventError),
    /// The identity has not been attested yet.
    #[error("role {0} has no attested identity yet")]
    NotAttested(Role),
}

/// A service's three keys.
pub struct ServiceKeys {
    role: Role,
    ed25519: SigningKey,
    x25519: StaticSecret,
    rsa: RsaPrivateKey,
    rsa_spki: Vec<u8>,
}

impl std::fmt::Debug for ServiceKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceKeys")
            .field("role", &self.role)
            .field("ed25519", &PublicKey::from(&self.ed25519.verifying_key()))
            .finish_non_exhaustive()
    }
}

impl ServiceKeys {
    /// Fresh keys for `role`.
    ///
    /// # Errors
    /// [`IdentityError::Rsa`] when the RSA key cannot be made.
    pub fn generate(role: Role) -> Result<Self, IdentityError> {
        Self::with_signing_key(role, SigningKey::generate(&mut rand_core::OsRng))
    }

    /// Keys for `role` around an existing Ed25519 key (the log's checkpoint key; dev mode's
    /// persistent edge key); the X25519 and RSA keys are fresh.
    ///
    /// # Errors
    /// [`IdentityError::Rsa`] when the RSA key cannot be made.
    pub fn with_signing_key(role: Role, ed25519: SigningKey) -> Result<Self, IdentityError> {
        Self::from_rng(role, ed25519, &mut rand_core::OsRng)
    }

    /// Keys for `role` around `ed25519`, the X25519 and RSA keys drawn from `rng` (a
    /// simulation's seeded generator; the node's is the operating system's).
    ///
    /// # Errors
    /// [`IdentityError::Rsa`] when the RSA key cannot be made.
    pub fn from_rng(
        role: Role,
        ed25519: SigningKey,
        rng: &mut impl rand_core::CryptoRngCore,
    ) -> Result<Self, IdentityError> {
        let rsa =
            RsaPrivateKey::new(rng, RSA_BITS).map_err(|e| IdentityError::Rsa(e.to_string()))?;
        let rsa_spki = rsa
            .to_public_key()
            .to_public_key_der()
            .map_err(|e| IdentityError::Rsa(e.to_string()))?
            .into_vec();
        Ok(Self {
            role,
            ed25519,
            x25519: StaticSecret::random_from_rng(rng),
            rsa,
            rsa_spki,
        })
    }

    /// The role.
    #[must_use]
    pub fn role(&self) -> &Role {
        &self.role
    }

    /// The Ed25519 signing key.
    #[must_use]
    pub fn signing_key(&self) -> &SigningKey {
        &self.ed25519
    }

    /// The producer these keys sign as.
    #[must_use]
    pub fn producer(&self) -> Producer {
        Producer::new(self.role.clone(), &self.ed25519.verifying_key())
    }

    /// The X25519 secret.
    #[must_use]
    pub fn x25519(&self) -> &StaticSecret {
        &self.x25519
    }

    /// The RSA private key.
    #[must_use]
    pub fn rsa(&self) -> &RsaPrivateKey {
        &self.rsa
    }

    /// The RSA public key, SubjectPublicKeyInfo DER (the document's `public_key`).
    #[must_use]
    pub fn rsa_spki(&self) -> &[u8] {
        &self.rsa_spki
    }

    /// The `user_data` binding these keys under the manifest with hash `manifest_hash`.
    #[must_use]
    pub fn user_data(&self, manifest_hash: [u8; 32]) -> UserData {
        UserData {
            role: self.role.clone(),
            manifest_hash,
            ed25519: self.ed25519.verifying_key().to_bytes(),
            x25519: x25519_dalek::PublicKey::from(&self.x25519).to_bytes(),
        }
    }

    /// The document request binding these keys, the manifest and the checkpoint root
    /// `nonce`.
    #[must_use]
    pub fn attestation_request(
        &self,
        manifest_hash: [u8; 32],
        nonce: RootHash,
    ) -> AttestationRequest {
        AttestationRequest::new(
            self.rsa_spki.clone(),
            self.user_data(manifest_hash).encode(),
            nonce.hash().as_bytes().to_vec(),
        )
    }

    /// A signed `service.attested` carrying `document` (no `attestation` field: it is the
    /// attestation), at `time`, following `parents` (the manifest in force, the previous
    /// identity).
    ///
    /// # Errors
    /// [`IdentityError::Event`] when the event cannot be signed (too large).
    pub fn attested_event(
        &self,
        document: &[u8],
        parents: Vec<LeafHash>,
        time: Timestamp,
    ) -> Result<SignedEvent, IdentityError> {
        self.attested_event_for(document, parents, time, RequestId::new_v7())
    }

    /// [`ServiceKeys::attested_event`] with its request id given (a simulation draws it
    /// from its seeded generator).
    ///
    /// # Errors
    /// [`IdentityError::Event`] when the event cannot be signed (too large).
    pub fn attested_event_for(
        &self,
        document: &[u8],
        parents: Vec<LeafHash>,
        time: Timestamp,
        request: RequestId,
    ) -> Result<SignedEvent, IdentityError> {
        use base64::Engine as _;
        let mut body = Map::new();
        body.insert(
            "document".into(),
            base64::engine::general_purpose::STANDARD
                .encode(document)
                .into(),
        );
        let mut event = Event::new(
            Kind::new(ATTESTED_KIND)?,
            TenantId::SYSTEM,
            request,
            self.producer(),
            time,
            body,
        );
        event.parents = parents;
        Ok(event.sign(&self.ed25519)?)
    }

    /// Ask `nsm` for a document and sign the `service.attested` that records it.
    ///
    /// # Errors
    /// [`IdentityError::Nsm`] when the NSM refuses; [`IdentityError::Event`].
    pub fn attest(
        &self,
        nsm: &dyn Nsm,
        manifest_hash: [u8; 32],
        nonce: RootHash,
        parents: Vec<LeafHash>,
    ) -> Result<SignedEvent, IdentityError> {
        let document = nsm.attest(self.attestation_request(manifest_hash, nonce))?;
        self.attested_event(&document, parents, Timestamp::now())
    }
}

/// A service's keys and its current `service.attested` entry.
#[derive(Debug)]
pub struct ServiceIdentity {
    keys: ServiceKeys,
    current: RwLock<Option<LeafHash>>,
}

impl ServiceIdentity {
    /// An identity of `keys`, not attested yet.
    #[must_use]
    pub fn new(keys: ServiceKeys) -> Self {
        Self {
            keys,
            current: RwLock::new(None),
        }
    }

    /// The keys.
    #[must_use]
    pub fn keys(&self) -> &ServiceKeys {
        &self.keys
    }

    /// The leaf hash of the current `service.attested`, once appended.
    #[must_use]
    pub fn current(&self) -> Option<LeafHash> {
        *self
            .current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Record that the `service.attested` with leaf hash `leaf` is durable in the log.
    pub fn set_current(&self, leaf: LeafHash) {
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(leaf);
    }

    /// Sign an event of this identity at `time` (the role's clock): `attestation` is the
    /// current identity's leaf hash.
    ///
    /// # Errors
    /// [`IdentityError::NotAttested`] before the first attestation is durable;
    /// [`IdentityError::Event`].
    pub fn sign(
        &self,
        kind: Kind,
        tenant: TenantId,
        request: RequestId,
        parents: Vec<LeafHash>,
        body: Map<String, Value>,
        time: Timestamp,
    ) -> Result<SignedEvent, IdentityError> {
        let attestation = self
            .current()
            .ok_or_else(|| IdentityError::NotAttested(self.keys.role.clone()))?;
        let mut event = Event::new(kind, tenant, request, self.keys.producer(), time, body);
        event.parents = parents;
        event.attestation = Some(attestation);
        Ok(event.sign(&self.keys.ed25519)?)
    }
}
