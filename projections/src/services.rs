//! The service inventory, folded from the log (docs/design.md §6): the manifest in force, every
//! role's latest attested identity, and every quarantined measurement.
//!
//! [`Services::apply`] is the one fold of `manifest.published`, `service.attested` and
//! `service.quarantined`. The node's append policy (govern-store's `IdentityPolicy`) keeps
//! its view of identities with it and judges producers by that view; `GET /v1/services`,
//! replays and state roots read the same. Like every projection it trusts the events it is
//! given to have passed the append policy (the documents here are parsed, not verified:
//! the policy verified them before they were accepted), and ignores what it cannot read.

use std::collections::BTreeMap;

use govern_core::attestation::{AttestationDocument, parse_unverified};
use govern_core::event::{PublicKey, Role, SignedEvent, Timestamp};
use govern_core::ids::{LeafHash, LeafIndex};
use govern_core::manifest::{MANIFEST_PUBLISHED_KIND, Manifest, RoleSpec, SignedManifest};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use govern_core::kinds::{
    AUX_JOIN, AUX_READY, SERVICE_ATTESTED as ATTESTED_KIND, SERVICE_KINDS,
    SERVICE_QUARANTINED as QUARANTINED_KIND,
};

/// A role's identity, from its latest accepted `service.attested`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// The role.
    pub role: Role,
    /// Ed25519 event-signing key, base64.
    pub ed25519: PublicKey,
    /// X25519 key, hex.
    #[serde(with = "hex_32")]
    pub x25519: [u8; 32],
    /// SHA-256 of the RSA-2048 key's SubjectPublicKeyInfo DER, hex.
    #[serde(with = "hex_32")]
    pub rsa_spki_sha256: [u8; 32],
    /// PCR0, PCR1, PCR2, hex.
    pub pcrs: [String; 3],
    /// The document's module id.
    pub module_id: String,
    /// The document's timestamp.
    pub document_time: Timestamp,
    /// The `service.attested` event's time: liveness counts from here.
    pub attested: Timestamp,
    /// Its leaf hash (what later events name in `attestation`).
    pub leaf: LeafHash,
    /// Its index.
    pub index: LeafIndex,
    /// The serial of the manifest it was attested under.
    pub manifest_serial: u64,
    /// Whether the manifest in force pins its measurement for its role.
    pub pinned: bool,
}

mod hex_32 {
    use serde::{Deserialize as _, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let text = String::deserialize(d)?;
        let bytes = hex::decode(text).map_err(serde::de::Error::custom)?;
        bytes
            .try_into()
            .map_err(|_| serde::de::Error::custom("not 32 bytes"))
    }
}

impl Identity {
    /// PCR0, the measurement quarantine is keyed by.
    #[must_use]
    pub fn measurement(&self) -> &str {
        &self.pcrs[0]
    }

    /// When it stops being live under `manifest` (attested + the role's `max_age_s`).
    #[must_use]
    pub fn expires(&self, manifest: &Manifest) -> Timestamp {
        self.after(manifest, |r| r.max_age_s)
    }

    /// The latest event time it may sign under `manifest`: its expiry less the log's time
    /// skew, because the log accepts event times up to the skew in the past (an event
    /// stamped just before expiry could otherwise arrive a skew after it).
    #[must_use]
    pub fn last_event(&self, manifest: &Manifest, time_skew_ms: i64) -> Timestamp {
        let expires = self.expires(manifest);
        Timestamp::from_unix_ms(expires.unix_ms().saturating_sub(time_skew_ms.max(0)))
            .unwrap_or(self.attested)
    }

    /// When it should re-attest under `manifest` (attested + the role's `reattest_s`).
    #[must_use]
    pub fn reattest_due(&self, manifest: &Manifest) -> Timestamp {
        self.after(manifest, |r| r.reattest_s)
    }

    /// The attestation time plus the seconds `period` reads from the role's spec (0 for a
    /// role the manifest does not declare).
    fn after(&self, manifest: &Manifest, period: impl Fn(&RoleSpec) -> u64) -> Timestamp {
        let ms = manifest.role(&self.role).map_or(0, |r| {
            i64::try_from(period(r))
                .unwrap_or(i64::MAX / 2)
                .saturating_mul(1000)
        });
        Timestamp::from_unix_ms(self.attested.unix_ms().saturating_add(ms)).unwrap_or(self.attested)
    }
}

/// A quarantined measurement.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quarantine {
    /// The role it claimed.
    pub role: Role,
    /// Why.
    pub reason: String,
    /// The `service.quarantined` entry.
    pub index: LeafIndex,
    /// Its time.
    pub time: Timestamp,
}

/// The manifest in force and where the log published it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestRecord {
    /// The manifest.
    pub manifest: Manifest,
    /// Its hash (what attestation documents' `user_data` binds), hex.
    pub hash: String,
    /// Its `manifest.published` entry.
    pub leaf: LeafHash,
    /// That entry's index.
    pub index: LeafIndex,
}

/// The service inventory: the manifest in force, identities, quarantines.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Services {
    /// The manifest in force (absent before genesis).
    pub manifest: Option<ManifestRecord>,
    /// Each role's latest identity.
    pub identities: BTreeMap<Role, Identity>,
    /// Quarantined measurements (PCR0, hex).
    pub quarantined: BTreeMap<String, Quarantine>,
    /// The signers' aux-info preparation, by signer role (docs/formats.md, "The signers").
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub aux: BTreeMap<Role, AuxStatus>,
}

/// Where a signer's aux info stands, as its `aux.join` and `aux.ready` events say.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuxStatus {
    /// `joined` (its primes are ready and it joined the protocol) or `ready` (it holds its
    /// aux info for `session`).
    pub stage: String,
    /// The aux-info session (execution id, hex; `fixture-…` for test-only aux info).
    pub session: String,
    /// Whether it came from the test-only fixture.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub fixture: bool,
    /// When (log time).
    pub time: Timestamp,
    /// The event.
    pub index: LeafIndex,
}

/// PCR0, PCR1 and PCR2 of a document, hex (empty when absent).
#[must_use]
pub fn pcr_strings(doc: &AttestationDocument) -> [String; 3] {
    [0u8, 1, 2].map(|i| doc.pcrs.get(&i).map(hex::encode).unwrap_or_default())
}

/// PCRs as [`Manifest::measurement_pinned`] reads them.
#[must_use]
pub fn pcr_map(pcrs: &[String; 3]) -> BTreeMap<u8, Vec<u8>> {
    (0u8..)
        .zip(pcrs.iter())
        .filter_map(|(i, v)| hex::decode(v).ok().map(|b| (i, b)))
        .collect()
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes).into()
}

/// The document bytes of a `service.attested` body (`document`, standard base64).
#[must_use]
pub fn attested_document(body: &serde_json::Map<String, Value>) -> Option<Vec<u8>> {
    use base64::Engine as _;
    let text = body.get("document")?.as_str()?;
    base64::engine::general_purpose::STANDARD.decode(text).ok()
}

impl Services {
    /// Whether this fold reads `kind`.
    #[must_use]
    pub fn reads(kind: &str) -> bool {
        SERVICE_KINDS.contains(&kind) || kind == AUX_JOIN || kind == AUX_READY
    }

    /// The aux-info session all five signers are ready in, if any.
    #[must_use]
    pub fn aux_ready(&self) -> Option<&str> {
        let first = self.aux.values().next()?;
        (self.aux.len() == 5
            && self
                .aux
                .values()
                .all(|a| a.stage == "ready" && a.session == first.session))
        .then_some(first.session.as_str())
    }

    /// Fold an accepted event in. For a `manifest.published`, the identities it stopped
    /// pinning (the log quarantines them next); otherwise empty.
    pub fn apply(&mut self, signed: &SignedEvent, index: LeafIndex) -> Vec<Identity> {
        let event = signed.event();
        match event.kind.as_str() {
            AUX_JOIN | AUX_READY => {
                let session = event.body.get("session").and_then(Value::as_str);
                let signer = event.producer.role.as_str().starts_with("signer-");
                if let (Some(session), true) = (session, signer) {
                    let ready = event.kind.as_str() == AUX_READY;
                    let current = self.aux.get(&event.producer.role);
                    // A join of another session replaces a readiness; a join never replaces
                    // the readiness of its own session.
                    if ready || current.is_none_or(|c| c.session != session) {
                        self.aux.insert(
                            event.producer.role.clone(),
                            AuxStatus {
                                stage: if ready { "ready" } else { "joined" }.into(),
                                session: session.to_string(),
                                fixture: event.body.get("fixture") == Some(&Value::Bool(true)),
                                time: event.time,
                                index,
                            },
                        );
                    }
                }
                Vec::new()
            }
            MANIFEST_PUBLISHED_KIND => {
                let Ok(signed_manifest) = SignedManifest::from_published_body(&event.body) else {
                    return Vec::new();
                };
                let manifest = signed_manifest.manifest;
                let Ok(hash) = manifest.manifest_hash() else {
                    return Vec::new();
                };
                // A manifest that pins a quarantined measurement for the role it was
                // quarantined under lifts the quarantine: the signers' quorum, which decides
                // what runs, decided again.
                self.quarantined.retain(|measurement, q| {
                    let pcr0 = hex::decode(measurement).unwrap_or_default();
                    !manifest.measurement_pcr0_pinned(&q.role, &pcr0)
                });
                let mut drifted = Vec::new();
                for id in self.identities.values_mut() {
                    let pinned = manifest.measurement_pinned(&id.role, &pcr_map(&id.pcrs));
                    if id.pinned && !pinned {
                        drifted.push(id.clone());
                    }
                    id.pinned = pinned;
                }
                self.manifest = Some(ManifestRecord {
                    manifest,
                    hash: hex::encode(hash),
                    leaf: signed.leaf_hash(),
                    index,
                });
                drifted
            }
            ATTESTED_KIND => {
                let Some(bytes) = attested_document(&event.body) else {
                    return Vec::new();
                };
                let Ok(doc) = parse_unverified(&bytes) else {
                    return Vec::new();
                };
                let Ok(bound) = doc.user_data_binding() else {
                    return Vec::new();
                };
                let (manifest_serial, pinned) = match &self.manifest {
                    Some(m) => (
                        m.manifest.serial,
                        m.manifest.measurement_pinned(&bound.role, &doc.pcrs),
                    ),
                    None => (0, false),
                };
                let identity = Identity {
                    role: bound.role.clone(),
                    ed25519: event.producer.key,
                    x25519: bound.x25519,
                    rsa_spki_sha256: sha256(doc.public_key.as_deref().unwrap_or_default()),
                    pcrs: pcr_strings(&doc),
                    module_id: doc.module_id.clone(),
                    document_time: doc.timestamp,
                    attested: event.time,
                    leaf: signed.leaf_hash(),
                    index,
                    manifest_serial,
                    pinned,
                };
                self.identities.insert(bound.role, identity);
                Vec::new()
            }
            QUARANTINED_KIND => {
                let text = |f: &str| event.body.get(f).and_then(Value::as_str);
                let (Some(measurement), Some(role)) = (
                    text("measurement"),
                    text("role").and_then(|r| Role::new(r).ok()),
                ) else {
                    return Vec::new();
                };
                self.quarantined.insert(
                    measurement.to_string(),
                    Quarantine {
                        role,
                        reason: text("reason").unwrap_or_default().to_string(),
                        index,
                        time: event.time,
                    },
                );
                Vec::new()
            }
            _ => Vec::new(),
        }
    }
}
