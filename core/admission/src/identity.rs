//! Attested service identities, enforced at append (docs/design.md §5, §6): the append policy of a
//! node.
//!
//! The policy's state is a function of the log alone — the manifests published in it, the
//! `service.attested` and `service.quarantined` events — and every time it judges by is an
//! event's recorded `time`, never the node's clock, so a replay of the log reaches the same
//! verdicts. It checks, for every event:
//!
//! - **Genesis.** Entry 0 is `manifest.published` by the log's own key, with no
//!   `attestation`: the manifest's quorum signatures are its authority. Nothing else may
//!   come first.
//! - **Manifests.** A `manifest.published` is produced by the log's key (its `attestation`,
//!   if present, must be the log's current identity: the quorum, not the log's image, is a
//!   manifest's authority, so a log upgraded to a new image can publish the manifest that
//!   pins it). Its body verifies against the pinned manifest signers (a quorum of valid
//!   signatures), pins a root this log knows (a production build refuses the dev root), and
//!   has a higher serial than the manifest in force. Once
//!   appended it is the manifest in force; every live identity whose measurement it no longer
//!   pins is quarantined by the log.
//! - **Attestations.** `service.attested` carries `{"document": <base64 Nitro document>}` and
//!   no `attestation` field. The document verifies against the manifest's root at the
//!   event's time (debug enclaves only if the manifest allows); its measurement (PCR0) is
//!   not quarantined; its `user_data` names the producer's role and key, the manifest in
//!   force and an X25519 key; its `public_key` is an RSA-2048 key; its nonce is the root of
//!   one of the last [`govern_core::append::NONCE_WINDOW_CHECKPOINTS`] checkpoints; its PCRs match a
//!   measurement the manifest pins for the role; and the role has no other live identity
//!   (the same key re-attesting replaces its own). The log's identity must carry the
//!   log's checkpoint key.
//! - **Everything else** names in `attestation` the leaf hash of its producer role's current
//!   `service.attested`, is signed by that identity's key, and is appended while the
//!   identity is live (event time ≤ attested time + the role's `max_age_s`), pinned by the
//!   manifest in force, and its measurement not quarantined.
//! - Then the manifest's routing graph ([`crate::ManifestPolicy`]'s checks).
//!
//! **Quarantine.** A document whose chain and signature verify is genuine evidence of what
//! an enclave measured and which role and key it claimed. When such a document, presented by
//! the key it binds, shows a measurement the manifest does not pin for the claimed role, the
//! log refuses it and appends `service.quarantined` with the document as evidence; the same
//! happens for live identities when a new manifest stops pinning their measurement. From then
//! on that measurement is refused for every key. Documents that do not verify, or that are
//! presented by a key they do not bind (a replay), prove nothing about a measurement: they
//! are refused without quarantining anything, so no one can quarantine a good image by
//! sending a forged or copied document.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use govern_core::attestation::{DOCUMENT_BYTES_MAX, TrustAnchor, Verifier};
use govern_core::event::{
    Event, Kind, Producer, PublicKey, RequestId, Role, SignedEvent, TenantId, Timestamp,
};
use govern_core::ids::{Hash, LeafHash, LeafIndex, RootHash, TreeSize};
use govern_core::manifest::{
    MANIFEST_PUBLISHED_KIND, Manifest, ManifestSigners, SignedManifest, TrustedRoot,
};
use parking_lot::{Mutex, RwLock};
use rsa::pkcs8::DecodePublicKey as _;
use rsa::traits::PublicKeyParts as _;
use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};

use crate::actions::{ANCHOR_DISTANCE_MAX, check_tenant_event};
use crate::routing::check_routing;
use govern_core::append::{AppendError, AppendPolicy, IdentityError, LogView};
use govern_projections::services::{Services, pcr_strings};
use govern_projections::tenants::{Tenant, Tenants, is_tenant_kind};

pub use govern_projections::services::{ATTESTED_KIND, QUARANTINED_KIND};
/// The sequencer's role.
pub const LOG_ROLE: &str = "log";
/// A quarantine's reason: a genuine document showed a measurement the manifest in force does
/// not pin for its role (evidence: the document, the refused event, the key).
pub const REASON_NOT_PINNED: &str = "measurement-not-pinned";
/// A quarantine's reason: a new manifest stopped pinning a live identity's measurement
/// (evidence: the identity and the manifest; the identity is the event's parent).
pub const REASON_UNPINNED: &str = "measurement-unpinned";
/// The size of the RSA key a document's `public_key` must hold (docs/design.md §6: AWS KMS encrypts
/// to RSA inside an enclave).
pub const RSA_KEY_BITS: usize = 2048;

pub use govern_projections::services::{Identity, Quarantine};

/// The manifest in force.
#[derive(Clone, Debug)]
pub struct InForce {
    /// The manifest.
    pub manifest: Manifest,
    /// Its hash (what `user_data` binds).
    pub hash: [u8; 32],
    /// Its `manifest.published` entry.
    pub leaf: LeafHash,
    verifier: Verifier,
}

/// What the log says about manifests and identities.
#[derive(Clone, Debug, Default)]
struct Registry {
    manifest: Option<Arc<InForce>>,
    /// Identities, quarantines and the manifest, as the projection folds them.
    services: Services,
    /// Measurements a follow-up of this batch will quarantine.
    quarantining: BTreeSet<String>,
}

#[derive(Debug, Default)]
struct State {
    /// As of the last durable batch; shared with what readers see ([`Committed`]).
    committed: Arc<Registry>,
    working: Registry,
    /// The log's size after the batch being checked, and as of the last durable batch.
    working_size: u64,
    committed_size: u64,
    dirty: bool,
    followups: Vec<Event>,
    /// Tenants, users and credentials as of the batch being checked (user actions are
    /// judged by them). Unlike the registry they grow with the log, so they are not cloned
    /// per batch: the batch's tenant events are applied to the committed copy once durable.
    tenants: Tenants,
    /// Tenants as of the last durable batch.
    tenants_committed: Tenants,
    /// This batch's tenant events, for `tenants_committed`.
    tenant_batch: Vec<(SignedEvent, u64)>,
}

/// A service's status, as `GET /v1/services` reports it.
#[derive(Clone, Debug, Serialize)]
pub struct ServiceStatus {
    /// The identity.
    #[serde(flatten)]
    pub identity: Identity,
    /// When it stops being live unless it re-attests.
    pub expires: Timestamp,
    /// When it should re-attest (attested + the role's `reattest_s`).
    pub reattest_due: Timestamp,
    /// `live`, `expired` or `quarantined` (quarantined also covers a measurement the manifest
    /// in force no longer pins).
    pub status: &'static str,
}

/// Every identity and quarantine, at a moment.
#[derive(Clone, Debug, Serialize)]
pub struct ServicesView {
    /// The manifest in force: name, serial, hash; absent before genesis.
    pub manifest: Option<ManifestSummary>,
    /// One per role that ever attested.
    pub services: Vec<ServiceStatus>,
    /// Quarantined measurements (PCR0, hex).
    pub quarantined: BTreeMap<String, Quarantine>,
    /// The signers' aux info, by role: `joined` (generating it with the others) or `ready`.
    pub aux: BTreeMap<Role, govern_projections::services::AuxStatus>,
    /// The aux-info session all five signers are ready in; `None` while they prepare it.
    pub aux_ready: Option<String>,
}

/// Which manifest is in force.
#[derive(Clone, Debug, Serialize)]
pub struct ManifestSummary {
    /// Its name.
    pub name: String,
    /// Its serial (version).
    pub serial: u64,
    /// Its hash, hex.
    pub hash: String,
    /// Its `manifest.published` entry's leaf hash.
    pub leaf: LeafHash,
}

/// What the policy publishes after every durable batch: the state readers see. Readers
/// (the edge, the key service, `GET /v1/state`, `/v1/services`) take it with a brief read
/// lock on its pointer and never the sequencer's lock, so read traffic cannot slow appends.
#[derive(Clone, Debug)]
pub struct Committed {
    /// The log's size this is the state after.
    pub size: TreeSize,
    /// Tenants, users and credentials (each tenant shared until changed).
    pub tenants: Arc<Tenants>,
    registry: Arc<Registry>,
}

impl Default for Committed {
    fn default() -> Self {
        Self {
            size: TreeSize(0),
            tenants: Arc::default(),
            registry: Arc::default(),
        }
    }
}

impl Committed {
    /// The tenant `id`, shared.
    #[must_use]
    pub fn tenant(&self, id: &TenantId) -> Option<Arc<Tenant>> {
        self.tenants.shared(id)
    }

    /// The manifest in force.
    #[must_use]
    pub fn manifest(&self) -> Option<&Arc<InForce>> {
        self.registry.manifest.as_ref()
    }

    /// A role's identity.
    #[must_use]
    pub fn identity(&self, role: &Role) -> Option<&Identity> {
        self.registry.services.identities.get(role)
    }

    /// Every projection, as govern-projections' [`govern_projections::state::State`] (its
    /// root is the state root).
    #[must_use]
    pub fn state(&self) -> govern_projections::state::State {
        govern_projections::state::State {
            version: govern_projections::state::STATE_VERSION,
            tenants: (*self.tenants).clone(),
            services: self.registry.services.clone(),
        }
    }
}

/// What the roles beside the sequencer read of the policy (the edge, the key service, the
/// node's reads): the state as of the last durable batch, published as one shared pointer per
/// batch, and the producer checks for a request made outside the log. Never the sequencer's
/// lock, so read traffic cannot slow appends.
pub trait StateView: Send + Sync + std::fmt::Debug + 'static {
    /// The state as of the last durable batch.
    fn committed(&self) -> Arc<Committed>;

    /// The live identity of `role`, as the log sees it now (its last durable batch): the
    /// identity `attestation` names, holding `key`, not quarantined, pinned, and not expired
    /// at `time`. The checks every event's producer passes at append, for services that
    /// act outside the log on a role's behalf (the key service releasing scope keys).
    ///
    /// # Errors
    /// The [`IdentityError`] an event of that producer would get.
    fn live_identity(
        &self,
        role: &Role,
        attestation: LeafHash,
        key: &PublicKey,
        time: Timestamp,
    ) -> Result<Identity, IdentityError>;
}

impl StateView for IdentityPolicy {
    fn committed(&self) -> Arc<Committed> {
        Arc::clone(&self.published.read())
    }

    fn live_identity(
        &self,
        role: &Role,
        attestation: LeafHash,
        key: &PublicKey,
        time: Timestamp,
    ) -> Result<Identity, IdentityError> {
        let committed = self.committed();
        self.check_identity(&committed.registry, role, Some(attestation), key, time)
            .cloned()
    }
}

/// What an event claims of its producer, as [`check_producer`] judges it.
#[derive(Clone, Copy, Debug)]
pub struct Claim<'a> {
    /// The producer's role.
    pub role: &'a Role,
    /// The `service.attested` the event names.
    pub attestation: Option<LeafHash>,
    /// The key that signed the event.
    pub key: &'a PublicKey,
    /// The event's recorded time.
    pub time: Timestamp,
}

/// The producer check every event that is not self-attesting passes at append
/// (docs/design.md §6): the `service.attested` it names is its role's current identity in
/// `services`, binds the producer's key, its measurement is neither quarantined (nor being
/// quarantined by this batch: `quarantining`) nor unpinned, and it is live at the event's
/// time (attested + the role's `max_age_s` under `manifest` − `time_skew_ms`). One copy:
/// the log runs it at append, the key service for a release, `govern verify request` on
/// each hop of a receipt chain, and the signers before they sign.
///
/// # Errors
/// The [`IdentityError`] the log refuses such an event with.
pub fn check_producer<'s>(
    services: &'s Services,
    manifest: Option<&Manifest>,
    quarantining: &BTreeSet<String>,
    producer: Claim<'_>,
    time_skew_ms: i64,
) -> Result<&'s Identity, IdentityError> {
    let role = producer.role;
    let named = producer
        .attestation
        .ok_or_else(|| IdentityError::MissingAttestation { role: role.clone() })?;
    let id = services
        .identities
        .get(role)
        .ok_or_else(|| IdentityError::NoIdentity { role: role.clone() })?;
    if id.leaf != named {
        return Err(IdentityError::StaleAttestation {
            role: role.clone(),
            named,
            current: id.leaf,
        });
    }
    if id.ed25519 != *producer.key {
        return Err(IdentityError::ProducerKeyMismatch {
            role: role.clone(),
            key: producer.key.to_base64(),
        });
    }
    if services.quarantined.contains_key(id.measurement())
        || quarantining.contains(id.measurement())
    {
        return Err(IdentityError::Quarantined {
            role: role.clone(),
            measurement: id.measurement().to_string(),
        });
    }
    if !id.pinned {
        return Err(IdentityError::NotPinned {
            role: role.clone(),
            measurement: id.measurement().to_string(),
        });
    }
    if let Some(m) = manifest {
        let expired = id.last_event(m, time_skew_ms);
        if producer.time > expired {
            return Err(IdentityError::IdentityExpired {
                role: role.clone(),
                attested: id.attested,
                expired,
                time: producer.time,
            });
        }
    }
    Ok(id)
}

/// The append policy of a node: identities, manifests, then the routing graph.
#[derive(Debug)]
pub struct IdentityPolicy {
    signers: ManifestSigners,
    allow_dev_root: bool,
    dev_root: Option<TrustAnchor>,
    log_key: PublicKey,
    time_skew_ms: i64,
    anchor_distance_max: u64,
    state: Mutex<State>,
    /// The state as of the last durable batch, for readers (see [`Committed`]).
    published: RwLock<Arc<Committed>>,
}

impl IdentityPolicy {
    /// A policy for a log whose checkpoint key is `log_key`, accepting manifests signed by a
    /// quorum of `signers`. `dev_root`: the dev CA root a manifest pinning the dev root must
    /// name (ignored unless `allow_dev_root`, which a production build passes false).
    #[must_use]
    pub fn new(
        signers: ManifestSigners,
        log_key: PublicKey,
        allow_dev_root: bool,
        dev_root: Option<TrustAnchor>,
    ) -> Self {
        Self {
            signers,
            allow_dev_root,
            dev_root,
            log_key,
            time_skew_ms: govern_core::append::TIME_SKEW_MS,
            anchor_distance_max: ANCHOR_DISTANCE_MAX,
            state: Mutex::new(State::default()),
            published: RwLock::new(Arc::new(Committed::default())),
        }
    }

    /// The time skew the log's config allows (an identity's last event time is its expiry
    /// less this; [`govern_core::append::TIME_SKEW_MS`] unless set).
    #[must_use]
    pub fn with_time_skew(mut self, time_skew_ms: i64) -> Self {
        self.time_skew_ms = time_skew_ms;
        self
    }

    /// How many entries past its anchor a user action may land
    /// ([`ANCHOR_DISTANCE_MAX`] unless set).
    #[must_use]
    pub fn with_anchor_distance(mut self, entries: u64) -> Self {
        self.anchor_distance_max = entries;
        self
    }

    /// A tenant as of the last durable batch, shared (never the sequencer's lock).
    #[must_use]
    pub fn tenant(&self, id: &TenantId) -> Option<Arc<Tenant>> {
        self.committed().tenant(id)
    }

    /// Read a tenant as of the last durable batch (never the sequencer's lock).
    pub fn with_tenant<R>(&self, id: &TenantId, read: impl FnOnce(&Tenant) -> R) -> Option<R> {
        self.tenant(id).map(|t| read(&t))
    }

    /// The manifest in force (as of the last durable batch).
    #[must_use]
    pub fn manifest(&self) -> Option<Arc<InForce>> {
        self.committed().manifest().cloned()
    }

    /// A role's identity (as of the last durable batch).
    #[must_use]
    pub fn identity(&self, role: &Role) -> Option<Identity> {
        self.committed().identity(role).cloned()
    }

    /// Every projection as of the last durable batch, and the log's size it is the state
    /// after (one snapshot: the pair is consistent).
    #[must_use]
    pub fn state(&self) -> (TreeSize, govern_projections::state::State) {
        let committed = self.committed();
        (committed.size, committed.state())
    }

    /// Every identity with its status at `now`, and every quarantine.
    #[must_use]
    pub fn services(&self, now: Timestamp) -> ServicesView {
        let committed = self.committed();
        let reg = &committed.registry;
        let services = reg
            .services
            .identities
            .values()
            .map(|id| {
                let (expires, reattest_due) = match &reg.manifest {
                    Some(m) => (id.expires(&m.manifest), id.reattest_due(&m.manifest)),
                    None => (id.attested, id.attested),
                };
                let status =
                    if reg.services.quarantined.contains_key(id.measurement()) || !id.pinned {
                        "quarantined"
                    } else if now > expires {
                        "expired"
                    } else {
                        "live"
                    };
                ServiceStatus {
                    identity: id.clone(),
                    expires,
                    reattest_due,
                    status,
                }
            })
            .collect();
        ServicesView {
            manifest: reg.manifest.as_ref().map(|m| ManifestSummary {
                name: m.manifest.name.clone(),
                serial: m.manifest.serial,
                hash: hex::encode(m.hash),
                leaf: m.leaf,
            }),
            services,
            quarantined: reg.services.quarantined.clone(),
            aux: reg.services.aux.clone(),
            aux_ready: reg.services.aux_ready().map(str::to_string),
        }
    }

    fn anchor(&self, root: &TrustedRoot) -> Result<TrustAnchor, IdentityError> {
        let anchor = match root {
            TrustedRoot::AwsNitroRootG1 => TrustAnchor::aws_nitro_root_g1(),
            TrustedRoot::Dev { .. } => {
                if !self.allow_dev_root {
                    return Err(IdentityError::ManifestRefused {
                        reason: "this build refuses manifests that pin the dev root".into(),
                    });
                }
                self.dev_root
                    .clone()
                    .ok_or_else(|| IdentityError::ManifestRefused {
                        reason: "the manifest pins a dev root and this log holds none".into(),
                    })?
            }
        };
        if !root.pins(&anchor) {
            return Err(IdentityError::ManifestRefused {
                reason: format!(
                    "the manifest pins root {}, which is not this log's {} ({})",
                    root.sha256().map_or_else(|| "(none)".into(), hex::encode),
                    hex::encode(anchor.sha256()),
                    anchor.subject()
                ),
            });
        }
        Ok(anchor)
    }

    fn check_manifest(
        &self,
        reg: &Registry,
        event: &Event,
    ) -> Result<(SignedManifest, TrustAnchor), IdentityError> {
        let refused = |reason: String| IdentityError::ManifestRefused { reason };
        let signed =
            SignedManifest::from_published_body(&event.body).map_err(|e| refused(e.to_string()))?;
        signed
            .verify(&self.signers, self.allow_dev_root)
            .map_err(|e| refused(e.to_string()))?;
        if let Some(prev) = &reg.manifest {
            signed
                .manifest
                .verify_successor(&prev.manifest)
                .map_err(|e| refused(e.to_string()))?;
        }
        let anchor = self.anchor(&signed.manifest.trusted_root)?;
        Ok((signed, anchor))
    }

    /// The checks of a `service.attested`; on a genuine but unpinned measurement, queues
    /// its quarantine.
    fn check_attested(
        &self,
        state: &mut State,
        signed: &SignedEvent,
        view: &dyn LogView,
    ) -> Result<(), IdentityError> {
        let event = signed.event();
        let role = &event.producer.role;
        if event.attestation.is_some() {
            return Err(IdentityError::UnexpectedAttestation);
        }
        if event.tenant != TenantId::SYSTEM {
            return Err(IdentityError::SystemTenant {
                kind: event.kind.clone(),
            });
        }
        let reg = &state.working;
        let in_force = reg
            .manifest
            .as_ref()
            .ok_or(IdentityError::NotGenesis {
                kind: event.kind.clone(),
            })?
            .clone();
        let bytes = document_bytes(&event.body)?;
        if event.body.len() != 1 {
            return Err(IdentityError::DocumentField {
                reason: "the body holds only \"document\"".into(),
            });
        }
        let doc = in_force.verifier.verify(&bytes, event.time).map_err(|e| {
            IdentityError::DocumentRefused {
                reason: e.to_string(),
            }
        })?;
        let pcrs = pcr_strings(&doc);
        let measurement = pcrs[0].clone();
        if reg.services.quarantined.contains_key(&measurement)
            || reg.quarantining.contains(&measurement)
        {
            return Err(IdentityError::MeasurementQuarantined { measurement });
        }
        // The bindings first: only a document presented by the key it binds, for the role
        // it binds, under the manifest in force and a fresh checkpoint, is the enclave's own
        // claim to run under this manifest now, and so evidence against its measurement. An
        // image that attests before the manifest pinning it is published binds another
        // manifest: it is refused, not quarantined.
        let bound = doc
            .user_data_binding()
            .map_err(|e| IdentityError::RoleBinding {
                role: role.clone(),
                reason: e.to_string(),
            })?;
        if &bound.role != role {
            return Err(IdentityError::RoleBinding {
                role: role.clone(),
                reason: format!("it binds role {}", bound.role),
            });
        }
        if bound.ed25519 != event.producer.key.0 {
            return Err(IdentityError::KeyBinding {
                what: format!("Ed25519 key {}", B64.encode(bound.ed25519)),
            });
        }
        if bound.manifest_hash != in_force.hash {
            return Err(IdentityError::ManifestBinding {
                bound: hex::encode(bound.manifest_hash),
                in_force: hex::encode(in_force.hash),
            });
        }
        let nonce = doc.nonce.as_deref().unwrap_or_default();
        let in_window = Hash::from_slice(nonce)
            .ok()
            .and_then(|h| view.recent_checkpoint(&RootHash(h)))
            .is_some();
        if !in_window {
            return Err(IdentityError::NonceOutsideWindow {
                nonce: hex::encode(nonce),
                window: govern_core::append::NONCE_WINDOW_CHECKPOINTS,
            });
        }
        if !in_force.manifest.measurement_pinned(role, &doc.pcrs) {
            self.queue_quarantine(
                state,
                event,
                &measurement,
                REASON_NOT_PINNED,
                Vec::new(),
                quarantine_evidence_document(&bytes, signed),
            );
            return Err(IdentityError::MeasurementNotPinned {
                role: role.clone(),
                measurement,
            });
        }
        // Identities only move forward: an old attestation (re-signed by the old key, or a
        // leftover of a restarted role) never replaces the role's current identity.
        if let Some(current) = reg.services.identities.get(role)
            && (doc.timestamp <= current.document_time || event.time < current.attested)
        {
            return Err(IdentityError::AttestationNotNewer {
                role: role.clone(),
                document_time: doc.timestamp,
                time: event.time,
                current_document_time: current.document_time,
                current_time: current.attested,
            });
        }
        rsa_2048(doc.public_key.as_deref())?;
        if role.as_str() == LOG_ROLE && event.producer.key != self.log_key {
            return Err(IdentityError::LogKey);
        }
        // One identity per role: an accepted attestation replaces the role's current one,
        // whatever its key (both are the same pinned image; the old key's events are refused
        // from now on as `attestation-stale`).
        Ok(())
    }

    /// The checks of a `service.quarantined`: produced by the log's key, in the system
    /// tenant, and its evidence shows what it claims, so an auditor replaying the log
    /// needs to trust no one's word for a quarantine.
    fn check_quarantined(&self, reg: &Registry, signed: &SignedEvent) -> Result<(), IdentityError> {
        let event = signed.event();
        if event.producer.role.as_str() != LOG_ROLE || event.producer.key != self.log_key {
            return Err(IdentityError::QuarantineRefused {
                reason: "only the log's key appends service.quarantined".into(),
            });
        }
        if event.tenant != TenantId::SYSTEM {
            return Err(IdentityError::SystemTenant {
                kind: event.kind.clone(),
            });
        }
        // The log's key is the authority (as for manifests); an attestation, if named, must
        // be the log's current identity, which may itself be the one being quarantined.
        if let Some(named) = event.attestation {
            let current = reg.services.identities.get(&log_role()).map(|id| id.leaf);
            if current != Some(named) {
                return Err(IdentityError::StaleAttestation {
                    role: log_role(),
                    named,
                    current: current.unwrap_or(named),
                });
            }
        }
        let refused = |reason: &str| IdentityError::QuarantineRefused {
            reason: reason.into(),
        };
        let text = |field: &str| {
            event
                .body
                .get(field)
                .and_then(Value::as_str)
                .ok_or_else(|| refused(&format!("no string \"{field}\"")))
        };
        let measurement = text("measurement")?;
        let role = Role::new(text("role")?).map_err(|e| refused(&e.to_string()))?;
        let reason = text("reason")?;
        let evidence = event
            .body
            .get("evidence")
            .and_then(Value::as_object)
            .ok_or_else(|| refused("no \"evidence\" object"))?;
        let in_force = reg
            .manifest
            .as_ref()
            .ok_or_else(|| refused("no manifest in force"))?;
        if reg.services.quarantined.contains_key(measurement) {
            return Err(refused("the measurement is already quarantined"));
        }
        match reason {
            REASON_NOT_PINNED => {
                let bytes = document_bytes(evidence)?;
                let doc = in_force
                    .verifier
                    .verify(&bytes, event.time)
                    .map_err(|e| refused(&format!("the evidence does not verify: {e}")))?;
                let bound = doc
                    .user_data_binding()
                    .map_err(|e| refused(&format!("the evidence binds no role: {e}")))?;
                let key = evidence.get("key").and_then(Value::as_str);
                if bound.role != role
                    || key.and_then(|k| PublicKey::try_from(k.to_string()).ok())
                        != Some(PublicKey(bound.ed25519))
                {
                    return Err(refused(
                        "the evidence does not bind the role and key the quarantine names",
                    ));
                }
                if pcr_strings(&doc)[0] != measurement {
                    return Err(refused("the evidence shows another measurement"));
                }
                if in_force.manifest.measurement_pinned(&role, &doc.pcrs) {
                    return Err(refused("the manifest in force pins that measurement"));
                }
            }
            REASON_UNPINNED => {
                let id = reg
                    .services
                    .identities
                    .get(&role)
                    .ok_or_else(|| refused("the role has no identity"))?;
                if event.parents != [id.leaf] || id.measurement() != measurement {
                    return Err(refused(
                        "the parent is not the role's identity with that measurement",
                    ));
                }
                if id.pinned {
                    return Err(refused("the manifest in force still pins that identity"));
                }
            }
            other => return Err(refused(&format!("unknown reason {other:?}"))),
        }
        Ok(())
    }

    /// Queue a `service.quarantined` by the log, naming the log's identity when it has one
    /// (the log's key is the authority either way: the log may be quarantining its own
    /// measurement, or not be attested yet).
    fn queue_quarantine(
        &self,
        state: &mut State,
        trigger: &Event,
        measurement: &str,
        reason: &str,
        parents: Vec<LeafHash>,
        evidence: Map<String, Value>,
    ) {
        let claimed_role = match reason {
            REASON_UNPINNED => state
                .working
                .services
                .identities
                .values()
                .find(|id| parents.contains(&id.leaf))
                .map_or_else(|| trigger.producer.role.clone(), |id| id.role.clone()),
            _ => trigger.producer.role.clone(),
        };
        let mut body = Map::new();
        body.insert("measurement".into(), measurement.into());
        body.insert("role".into(), claimed_role.as_str().into());
        body.insert("reason".into(), reason.into());
        body.insert("evidence".into(), Value::Object(evidence));
        let Ok(kind) = Kind::new(QUARANTINED_KIND) else {
            return;
        };
        // The request id is derived from what the quarantine is about, not drawn: the policy
        // is a function of the log alone, so two runs over the same log append the same
        // follow-up, byte for byte.
        let request = {
            let mut h = Sha256::new();
            h.update(b"govern/quarantine/v1\0");
            h.update(measurement.as_bytes());
            h.update(b"\0");
            h.update(trigger.request.0.as_bytes());
            h.update(trigger.producer.key.0);
            h.update(trigger.time.unix_ms().to_be_bytes());
            let d = h.finalize();
            // A UUIDv7 like every request id: the trigger's time, then 74 bits of the digest.
            let mut b = [0u8; 10];
            b.copy_from_slice(&d[..10]);
            let ms = u64::try_from(trigger.time.unix_ms()).unwrap_or(0);
            RequestId(uuid::Builder::from_unix_timestamp_millis(ms, &b).into_uuid())
        };
        let mut event = Event::new(
            kind,
            TenantId::SYSTEM,
            request,
            Producer {
                role: log_role(),
                key: self.log_key,
            },
            trigger.time,
            body,
        );
        event.parents = parents;
        event.attestation = state
            .working
            .services
            .identities
            .get(&log_role())
            .map(|id| id.leaf);
        state.working.quarantining.insert(measurement.to_string());
        state.followups.push(event);
    }

    /// The checks of every other event's producer identity.
    fn check_producer(&self, reg: &Registry, event: &Event) -> Result<(), IdentityError> {
        self.check_identity(
            reg,
            &event.producer.role,
            event.attestation,
            &event.producer.key,
            event.time,
        )
        .map(|_| ())
    }

    fn check_identity<'r>(
        &self,
        reg: &'r Registry,
        role: &Role,
        attestation: Option<LeafHash>,
        key: &PublicKey,
        time: Timestamp,
    ) -> Result<&'r Identity, IdentityError> {
        check_producer(
            &reg.services,
            reg.manifest.as_ref().map(|m| &m.manifest),
            &reg.quarantining,
            Claim {
                role,
                attestation,
                key,
                time,
            },
            self.time_skew_ms,
        )
    }

    /// Record an accepted event in `state.working`: the service inventory's fold
    /// ([`Services::apply`]), the attestation verifier of a new manifest, and the quarantines
    /// the log owes for identities a new manifest stopped pinning.
    fn apply(&self, state: &mut State, signed: &SignedEvent, index: LeafIndex) {
        let event = signed.event();
        let kind = event.kind.as_str();
        if is_tenant_kind(kind) {
            state.tenants.apply(signed, index.0);
            state.tenant_batch.push((signed.clone(), index.0));
            return;
        }
        if !Services::reads(kind) {
            return;
        }
        state.dirty = true;
        let drifted = state.working.services.apply(signed, index);
        match kind {
            MANIFEST_PUBLISHED_KIND => {
                let parsed = SignedManifest::from_published_body(&event.body)
                    .map_err(|e| e.to_string())
                    .and_then(|m| {
                        let anchor = self
                            .anchor(&m.manifest.trusted_root)
                            .map_err(|e| e.to_string())?;
                        let hash = m.manifest.manifest_hash().map_err(|e| e.to_string())?;
                        Ok((m.manifest, anchor, hash))
                    });
                let (manifest, anchor, hash) = match parsed {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::error!(%index, error = %e, "a stored manifest does not parse; ignored");
                        return;
                    }
                };
                let verifier = Verifier::new(anchor).dangerous_allow_debug(manifest.allow_debug);
                let serial = manifest.serial;
                state.working.manifest = Some(Arc::new(InForce {
                    manifest,
                    hash,
                    leaf: signed.leaf_hash(),
                    verifier,
                }));
                // Identities the new manifest no longer pins are quarantined by the log.
                for id in drifted {
                    if state
                        .working
                        .services
                        .quarantined
                        .contains_key(id.measurement())
                        || state.working.quarantining.contains(id.measurement())
                    {
                        continue;
                    }
                    let mut evidence = Map::new();
                    evidence.insert("identity".into(), id.leaf.to_hex().into());
                    evidence.insert("manifest".into(), signed.leaf_hash().to_hex().into());
                    evidence.insert("manifest_serial".into(), serial.into());
                    self.queue_quarantine(
                        state,
                        event,
                        id.measurement(),
                        REASON_UNPINNED,
                        vec![id.leaf],
                        evidence,
                    );
                }
            }
            QUARANTINED_KIND => {
                if let Some(measurement) = event.body.get("measurement").and_then(Value::as_str) {
                    state.working.quarantining.remove(measurement);
                }
            }
            _ => {}
        }
    }
}

impl AppendPolicy for IdentityPolicy {
    fn check(&self, signed: &SignedEvent, view: &dyn LogView) -> Result<Vec<String>, AppendError> {
        let event = signed.event();
        let mut state = self.state.lock();
        if view.next_index().0 == 0 {
            // Genesis: the manifest, by the log's key, on its own authority.
            if event.kind.as_str() != MANIFEST_PUBLISHED_KIND {
                return Err(IdentityError::NotGenesis {
                    kind: event.kind.clone(),
                }
                .into());
            }
            if event.producer.role.as_str() != LOG_ROLE
                || event.producer.key != self.log_key
                || event.attestation.is_some()
            {
                return Err(IdentityError::ManifestProducer.into());
            }
            let (signed_manifest, _) = self.check_manifest(&state.working, event)?;
            return check_routing(&signed_manifest.manifest, signed, view);
        }
        let Some(in_force) = state.working.manifest.clone() else {
            return Err(IdentityError::NotGenesis {
                kind: event.kind.clone(),
            }
            .into());
        };
        if event.kind.as_str() == ATTESTED_KIND {
            self.check_attested(&mut state, signed, view)?;
        } else if event.kind.as_str() == MANIFEST_PUBLISHED_KIND {
            // A manifest's authority is its signers' quorum, and the log's key publishes it
            // whether or not the log's current image is attested: a new image can attest
            // only once the manifest pinning it is in force.
            if event.producer.role.as_str() != LOG_ROLE || event.producer.key != self.log_key {
                return Err(IdentityError::ManifestProducer.into());
            }
            if event.attestation.is_some() {
                self.check_producer(&state.working, event)?;
            }
            self.check_manifest(&state.working, event)?;
        } else if event.kind.as_str() == QUARANTINED_KIND {
            self.check_quarantined(&state.working, signed)?;
        } else {
            self.check_producer(&state.working, event)?;
            if is_tenant_kind(event.kind.as_str()) {
                // The routing graph first (who may produce it, what it may follow), then
                // the user's signature and what it may do.
                let routed = check_routing(&in_force.manifest, signed, view)?;
                let mut claims =
                    check_tenant_event(&state.tenants, event, view, self.anchor_distance_max)?;
                claims.extend(routed);
                return Ok(claims);
            }
        }
        check_routing(&in_force.manifest, signed, view)
    }

    fn accepted(&self, event: &SignedEvent, index: LeafIndex) {
        let mut state = self.state.lock();
        state.working_size = state.working_size.max(index.0 + 1);
        self.apply(&mut state, event, index);
    }

    fn resumed(&self, size: TreeSize) {
        let mut state = self.state.lock();
        state.working_size = size.0;
        state.committed_size = size.0;
        self.publish(&state, true);
    }

    fn followups(&self) -> Vec<Event> {
        std::mem::take(&mut self.state.lock().followups)
    }

    fn snapshot(&self) -> Option<Vec<u8>> {
        let (_, state) = self.state();
        match serde_json::to_vec(&state) {
            Ok(bytes) => Some(bytes),
            Err(e) => {
                tracing::warn!(error = %e, "cannot serialize the policy state");
                None
            }
        }
    }

    fn restore(&self, snapshot: &[u8]) -> Result<(), String> {
        let restored: govern_projections::state::State = serde_json::from_slice(snapshot)
            .map_err(|e| format!("the snapshot does not parse: {e}"))?;
        if restored.version != govern_projections::state::STATE_VERSION {
            return Err(format!(
                "the snapshot is of state version {}, this build's is {}",
                restored.version,
                govern_projections::state::STATE_VERSION
            ));
        }
        // The manifest in force needs its verifier, which is this policy's (its roots).
        let manifest = match &restored.services.manifest {
            None => None,
            Some(m) => {
                let anchor = self
                    .anchor(&m.manifest.trusted_root)
                    .map_err(|e| e.to_string())?;
                let hash = m.manifest.manifest_hash().map_err(|e| e.to_string())?;
                Some(Arc::new(InForce {
                    manifest: m.manifest.clone(),
                    hash,
                    leaf: m.leaf,
                    verifier: Verifier::new(anchor).dangerous_allow_debug(m.manifest.allow_debug),
                }))
            }
        };
        let registry = Registry {
            manifest,
            services: restored.services,
            quarantining: BTreeSet::new(),
        };
        let mut state = self.state.lock();
        state.committed = Arc::new(registry.clone());
        state.working = registry;
        state.tenants = restored.tenants.clone();
        state.tenants_committed = restored.tenants;
        state.tenant_batch.clear();
        state.dirty = false;
        self.publish(&state, true);
        Ok(())
    }

    fn finish(&self, durable: bool) {
        let mut state = self.state.lock();
        state.followups.clear();
        state.working.quarantining.clear();
        let batch = std::mem::take(&mut state.tenant_batch);
        if durable {
            state.committed_size = state.working_size;
        } else {
            state.working_size = state.committed_size;
        }
        if durable {
            for (event, index) in &batch {
                state.tenants_committed.apply(event, *index);
            }
        } else if !batch.is_empty() {
            // Rare (the store failed): start again from the durable state.
            state.tenants = state.tenants_committed.clone();
        }
        if std::mem::take(&mut state.dirty) {
            if durable {
                state.committed = Arc::new(state.working.clone());
            } else {
                state.working = Registry::clone(&state.committed);
            }
        }
        if durable {
            self.publish(&state, !batch.is_empty());
        }
    }
}

impl IdentityPolicy {
    /// Publish the durable state to readers. The registry is shared as it is; cloning the
    /// tenants costs a pointer per tenant, so they are shared with the previous publication
    /// when the batch changed none.
    fn publish(&self, state: &State, tenants_changed: bool) {
        let mut published = self.published.write();
        let tenants = if tenants_changed {
            Arc::new(state.tenants_committed.clone())
        } else {
            Arc::clone(&published.tenants)
        };
        *published = Arc::new(Committed {
            size: TreeSize(state.committed_size),
            tenants,
            registry: Arc::clone(&state.committed),
        });
    }
}

fn log_role() -> Role {
    // "log" is a valid role name (lower-case letters).
    Role::new(LOG_ROLE).unwrap_or_else(|_| unreachable!("\"log\" is a role name"))
}

/// The document of a `service.attested` body.
fn document_bytes(body: &Map<String, Value>) -> Result<Vec<u8>, IdentityError> {
    let field = |reason: &str| IdentityError::DocumentField {
        reason: reason.into(),
    };
    let text = body
        .get("document")
        .ok_or_else(|| field("no \"document\" field"))?
        .as_str()
        .ok_or_else(|| field("\"document\" is not a string"))?;
    // Base64 of DOCUMENT_BYTES_MAX bytes is at most 4/3 as long.
    if text.len() > DOCUMENT_BYTES_MAX.div_ceil(3) * 4 {
        return Err(field("\"document\" is longer than a document may be"));
    }
    B64.decode(text)
        .map_err(|_| field("\"document\" is not base64"))
}

/// The body of a `service.attested`: the document, base64.
#[must_use]
pub fn attested_body(document: &[u8]) -> Map<String, Value> {
    let mut body = Map::new();
    body.insert("document".into(), B64.encode(document).into());
    body
}

fn quarantine_evidence_document(document: &[u8], refused: &SignedEvent) -> Map<String, Value> {
    let mut evidence = Map::new();
    evidence.insert("document".into(), B64.encode(document).into());
    evidence.insert("event".into(), refused.leaf_hash().to_hex().into());
    evidence.insert(
        "key".into(),
        refused.event().producer.key.to_base64().into(),
    );
    evidence
}

/// `public_key` must be an RSA key of [`RSA_KEY_BITS`] as SubjectPublicKeyInfo DER.
fn rsa_2048(der: Option<&[u8]>) -> Result<(), IdentityError> {
    let der = der.ok_or_else(|| IdentityError::KeyBinding {
        what: "no public_key (an RSA-2048 key is required)".into(),
    })?;
    let key =
        rsa::RsaPublicKey::from_public_key_der(der).map_err(|_| IdentityError::KeyBinding {
            what: "a public_key that is not an RSA SubjectPublicKeyInfo".into(),
        })?;
    if key.size() * 8 != RSA_KEY_BITS {
        return Err(IdentityError::KeyBinding {
            what: format!("an RSA key of {} bits, not {RSA_KEY_BITS}", key.size() * 8),
        });
    }
    Ok(())
}
