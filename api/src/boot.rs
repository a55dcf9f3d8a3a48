//! Starting a node: the log under the identity policy, the first events of a fresh log, and
//! the in-process services' identities (`log`, `edge` and `keys`) with their re-attestation
//! schedule, and the key service's master. docs/formats.md ("Genesis") describes the events this writes.
//!
//! 1. A fresh log's entry 0 is `manifest.published` of the data dir's signed manifest, by
//!    the log's checkpoint key with no `attestation` (the manifest's quorum signatures are
//!    its authority). On a log whose manifest in force is older (a lower serial) than the
//!    data dir's, the data dir's is published the same way; a newer one in the log stays.
//! 2. The log attests: its checkpoint key as the Ed25519 key of role `log`, fresh X25519 and
//!    RSA-2048 keys, a document whose nonce is the latest checkpoint's root.
//! 3. The edge attests the same way with its own key, then the key service (role `keys`),
//!    whose master key is then opened ([`crate::keys::open_master`]).
//! 4. Each re-attests every `reattest_s` of its role (the manifest in force), retrying
//!    every [`REATTEST_RETRY_S`] seconds after a failure.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use govern_admission::IdentityPolicy;
use govern_core::event::{Event, Kind, Producer, PublicKey, RequestId, Role, TenantId, Timestamp};
use govern_core::ids::LeafHash;
use govern_core::manifest::{MANIFEST_PUBLISHED_KIND, SignedManifest};
use govern_store::{AppendError, Clock, Log, LogConfig, RocksStorage, Storage, SystemClock};
use govern_workers::identity::{ServiceIdentity, ServiceKeys};
use govern_workers::nsm::{Nsm, SimulatedNsm};

use crate::datadir::{DataDir, DataDirError};

/// Seconds between attempts when a re-attestation fails.
pub const REATTEST_RETRY_S: u64 = 10;

/// A service running in this process: its identity and its NSM.
#[derive(Debug)]
pub struct LocalService {
    /// Keys and current attestation.
    pub identity: ServiceIdentity,
    nsm: Box<dyn Nsm>,
}

impl LocalService {
    /// A service of `identity`, attesting through `nsm`.
    #[must_use]
    pub fn new(identity: ServiceIdentity, nsm: Box<dyn Nsm>) -> Self {
        Self { identity, nsm }
    }
}

/// A started node's log and services.
#[derive(Debug)]
pub struct Services<S: Storage = RocksStorage> {
    /// The log.
    pub log: Arc<Log<S>>,
    /// The append policy (what `GET /v1/services` reports).
    pub policy: Arc<IdentityPolicy>,
    /// The log's own identity (role `log`, its checkpoint key).
    pub log_service: Arc<LocalService>,
    /// The edge's identity.
    pub edge: Arc<LocalService>,
    /// The key service (role `keys`).
    pub keys: Arc<crate::keys::KeyService>,
}

/// How the node gets attestation documents.
#[derive(Debug, Clone)]
pub enum Attestor {
    /// The simulated NSM of dev mode: the data dir's dev CA, measuring `executable`.
    Simulated {
        /// The executable measured into PCR0 (the running one).
        executable: PathBuf,
    },
    /// The Nitro Secure Module of the enclave this runs in (`/dev/nsm`).
    #[cfg(feature = "nitro")]
    Nitro,
}

impl Attestor {
    fn nsm(&self, dir: &DataDir, role: &Role) -> Result<Box<dyn Nsm>, DataDirError> {
        match self {
            Self::Simulated { executable } => Ok(Box::new(
                SimulatedNsm::open(&dir.dev_ca_path(), executable, role.clone())
                    .map_err(|e| DataDirError::Boot(format!("simulated NSM for {role}: {e}")))?,
            )),
            #[cfg(feature = "nitro")]
            Self::Nitro => Ok(Box::new(
                govern_workers::nsm::NitroNsm::open()
                    .map_err(|e| DataDirError::Boot(format!("Nitro NSM for {role}: {e}")))?,
            )),
        }
    }
}

fn role(name: &str) -> Result<Role, DataDirError> {
    Role::new(name).map_err(|e| DataDirError::Boot(e.to_string()))
}

fn boot_err(what: &str) -> impl FnOnce(AppendError) -> DataDirError + '_ {
    move |e| DataDirError::Boot(format!("{what}: {e}"))
}

impl DataDir {
    /// Open the log under the identity policy, write the genesis or a newer manifest, and
    /// attest the log and the edge.
    ///
    /// # Errors
    /// [`DataDirError`] when the manifest, the store or an attestation fails.
    pub async fn boot(
        &self,
        config: LogConfig,
        allow_dev_root: bool,
        attestor: &Attestor,
    ) -> Result<Services, DataDirError> {
        self.boot_with_clock(config, allow_dev_root, attestor, Arc::new(SystemClock))
            .await
    }

    /// [`DataDir::boot`] with the log's clock given (tests of time: expiry, skew).
    ///
    /// # Errors
    /// As [`DataDir::boot`].
    pub async fn boot_with_clock(
        &self,
        config: LogConfig,
        allow_dev_root: bool,
        attestor: &Attestor,
        clock: Arc<dyn Clock>,
    ) -> Result<Services, DataDirError> {
        // The manifest is checked before the store is opened: a node refused for its
        // manifest writes nothing.
        let signed = self.signed_manifest(allow_dev_root)?;
        let storage = RocksStorage::open(&self.db_path())?;
        self.boot_signed(&signed, storage, config, allow_dev_root, attestor, clock)
            .await
    }

    /// [`DataDir::boot_with_clock`] with the log on `storage` instead of the data dir's
    /// RocksDB (the API's tests run the node on `MemoryStorage`; the keys, passkeys, dev CA
    /// and manifest stay in the data dir).
    ///
    /// # Errors
    /// As [`DataDir::boot`].
    pub async fn boot_on<S: Storage>(
        &self,
        storage: S,
        config: LogConfig,
        allow_dev_root: bool,
        attestor: &Attestor,
        clock: Arc<dyn Clock>,
    ) -> Result<Services<S>, DataDirError> {
        let signed = self.signed_manifest(allow_dev_root)?;
        self.boot_signed(&signed, storage, config, allow_dev_root, attestor, clock)
            .await
    }

    /// Boot on `storage` with the data dir's manifest `signed`, read and checked already.
    async fn boot_signed<S: Storage>(
        &self,
        signed: &SignedManifest,
        storage: S,
        config: LogConfig,
        allow_dev_root: bool,
        attestor: &Attestor,
        clock: Arc<dyn Clock>,
    ) -> Result<Services<S>, DataDirError> {
        let (log, policy) =
            self.open_identity_log_on(storage, config, allow_dev_root, Arc::clone(&clock))?;
        let log = Arc::new(log);
        publish_if_newer(&log, &policy, self, signed).await?;

        // RSA-2048 key generation takes a fraction of a second each: both at once.
        let log_role = role(govern_admission::LOG_ROLE)?;
        let edge_role = role("edge")?;
        let keygen = |role: Role, key: Option<SigningKey>| {
            tokio::task::spawn_blocking(move || match key {
                Some(key) => ServiceKeys::with_signing_key(role, key),
                None => ServiceKeys::generate(role),
            })
        };
        // The edge's Ed25519 key: in dev, the data dir's `edge.key`, so tools and tests
        // outside this process can sign as the edge; in an enclave, made fresh at every
        // boot and never leaving it (its attestation replaces the previous one).
        let edge_key = match attestor {
            Attestor::Simulated { .. } => Some(self.edge_key()?),
            #[cfg(feature = "nitro")]
            Attestor::Nitro => None,
        };
        let edge_keys = keygen(edge_role, edge_key);
        let log_keys = keygen(log_role, Some(self.log_signing_key()));
        let keys_keys = keygen(role(crate::keys::KEYS_ROLE)?, None);
        // Each service attests once its keys are made: the log first, its own key.
        let log_service = start_service(self, attestor, &log, &policy, log_keys).await?;
        let edge = start_service(self, attestor, &log, &policy, edge_keys).await?;
        let keys_service = start_service(self, attestor, &log, &policy, keys_keys).await?;
        let keys_dir = self.keys_path();
        let master = match master_seal(attestor, &policy)? {
            crate::keys::MasterSeal::DevKek => {
                let dir = keys_dir.clone();
                let master = tokio::task::spawn_blocking(move || crate::keys::open_master(&dir))
                    .await
                    .map_err(|e| DataDirError::Boot(format!("key service: {e}")))?
                    .map_err(|e| DataDirError::Boot(format!("key service: {e}")))?;
                tracing::warn!("{}", crate::keys::DEV_KEK_WARNING);
                master
            }
            #[cfg(feature = "nitro-kms")]
            crate::keys::MasterSeal::Kms(config) => {
                let document = attestation_document(&log, &keys_service)?;
                std::fs::create_dir_all(keys_dir.join("seeds"))
                    .map_err(|e| DataDirError::Boot(format!("key service: {e}")))?;
                crate::kms::open_master(
                    &keys_dir,
                    &config,
                    &crate::kms::Recipient {
                        document: &document,
                        rsa: keys_service.identity.keys().rsa(),
                    },
                )
                .await
                .map_err(|e| DataDirError::Boot(format!("key service: {e}")))?
            }
        };
        let keys = crate::keys::KeyService::new(
            keys_dir,
            master,
            keys_service,
            Arc::clone(&log) as Arc<dyn govern_store::Appender>,
            Arc::clone(&policy) as Arc<dyn govern_admission::StateView>,
            clock,
        )
        .map_err(|e| DataDirError::Boot(format!("key service: {e}")))?;
        Ok(Services {
            log,
            policy,
            log_service,
            edge,
            keys: Arc::new(keys),
        })
    }
}

/// The attestation document of `service`'s current identity, from its `service.attested`.
#[cfg(feature = "nitro-kms")]
fn attestation_document<S: Storage>(
    log: &Log<S>,
    service: &LocalService,
) -> Result<Vec<u8>, DataDirError> {
    use base64::Engine as _;
    let err = |e: String| DataDirError::Boot(format!("key service attestation: {e}"));
    let leaf = service
        .identity
        .current()
        .ok_or_else(|| err("not attested".into()))?;
    let index = log
        .index_of(&leaf)
        .map_err(|e| err(e.to_string()))?
        .ok_or_else(|| err("its service.attested is not in the log".into()))?;
    let entry = log.entry(index).map_err(|e| err(e.to_string()))?;
    let event =
        govern_core::event::SignedEvent::from_bytes(&entry).map_err(|e| err(e.to_string()))?;
    event
        .event()
        .body
        .get("document")
        .and_then(serde_json::Value::as_str)
        .and_then(|d| base64::engine::general_purpose::STANDARD.decode(d).ok())
        .ok_or_else(|| err("its service.attested has no document".into()))
}

/// How the key service's master is sealed: under the dev key file with the simulated NSM;
/// with AWS KMS in an enclave (feature `nitro-kms`), under the key the manifest in force
/// pins for role `keys` (none pinned: the key service does not start).
#[cfg_attr(not(feature = "nitro-kms"), allow(unused_variables))]
fn master_seal(
    attestor: &Attestor,
    policy: &IdentityPolicy,
) -> Result<crate::keys::MasterSeal, DataDirError> {
    match attestor {
        Attestor::Simulated { .. } => Ok(crate::keys::MasterSeal::DevKek),
        #[cfg(feature = "nitro")]
        Attestor::Nitro => {
            #[cfg(feature = "nitro-kms")]
            {
                let in_force = policy.manifest().ok_or_else(|| {
                    DataDirError::Boot("key service: no manifest in force".into())
                })?;
                crate::kms::KmsConfig::from_env(&in_force.manifest)
                    .map(crate::keys::MasterSeal::Kms)
                    .map_err(|e| DataDirError::Boot(format!("key service: {e}")))
            }
            #[cfg(not(feature = "nitro-kms"))]
            Err(DataDirError::Boot(
                "an enclave's key service seals its master with AWS KMS: build with feature \
                 nitro-kms"
                    .into(),
            ))
        }
    }
}

/// A service in this process: its keys (being made by `keys`), its NSM, its attestation.
async fn start_service<S: Storage>(
    dir: &DataDir,
    attestor: &Attestor,
    log: &Log<S>,
    policy: &IdentityPolicy,
    keys: tokio::task::JoinHandle<Result<ServiceKeys, govern_workers::identity::IdentityError>>,
) -> Result<Arc<LocalService>, DataDirError> {
    let keys_err = |e: String| DataDirError::Boot(format!("service keys: {e}"));
    let keys = keys
        .await
        .map_err(|e| keys_err(e.to_string()))?
        .map_err(|e| keys_err(e.to_string()))?;
    let nsm = attestor.nsm(dir, keys.role())?;
    let service = Arc::new(LocalService {
        identity: ServiceIdentity::new(keys),
        nsm,
    });
    attest(log, policy, &service).await?;
    Ok(service)
}

/// Publish `signed` when the log has no manifest or an older one.
async fn publish_if_newer<S: Storage>(
    log: &Log<S>,
    policy: &IdentityPolicy,
    dir: &DataDir,
    signed: &SignedManifest,
) -> Result<(), DataDirError> {
    if let Some(in_force) = policy.manifest()
        && signed.manifest.serial <= in_force.manifest.serial
    {
        if signed.manifest.serial < in_force.manifest.serial {
            tracing::warn!(
                data_dir = signed.manifest.serial,
                log = in_force.manifest.serial,
                "the data dir's manifest is older than the log's; the log's stays in force"
            );
        }
        return Ok(());
    }
    let body = signed
        .published_body()
        .map_err(|e| DataDirError::Boot(e.to_string()))?;
    let key = dir.log_signing_key();
    let kind = Kind::new(MANIFEST_PUBLISHED_KIND).map_err(|e| DataDirError::Boot(e.to_string()))?;
    let mut event = Event::new(
        kind,
        TenantId::SYSTEM,
        RequestId::new_v7(),
        Producer {
            role: role(govern_admission::LOG_ROLE)?,
            key: PublicKey::from(&key.verifying_key()),
        },
        Timestamp::now(),
        body,
    );
    if let Some(in_force) = policy.manifest() {
        event.parents = vec![in_force.leaf];
    }
    let event = event
        .sign(&key)
        .map_err(|e| DataDirError::Boot(e.to_string()))?;
    let appended = log
        .append(event)
        .await
        .map_err(boot_err("publishing the manifest"))?;
    tracing::info!(
        serial = signed.manifest.serial,
        index = %appended.index,
        "manifest published"
    );
    Ok(())
}

/// Attest `service` now: a document bound to the manifest in force and the latest
/// checkpoint, appended as `service.attested`.
///
/// # Errors
/// [`DataDirError::Boot`] when the NSM or the append refuses.
pub async fn attest<S: Storage>(
    log: &Log<S>,
    policy: &IdentityPolicy,
    service: &LocalService,
) -> Result<LeafHash, DataDirError> {
    let in_force = policy
        .manifest()
        .ok_or_else(|| DataDirError::Boot("no manifest in force".into()))?;
    let keys = service.identity.keys();
    let mut parents = vec![in_force.leaf];
    if let Some(previous) = policy.identity(keys.role())
        && previous.ed25519 == PublicKey::from(&keys.signing_key().verifying_key())
    {
        parents.push(previous.leaf);
    }
    let nonce = log.latest().root;
    let event = keys
        .attest(service.nsm.as_ref(), in_force.hash, nonce, parents)
        .map_err(|e| DataDirError::Boot(format!("attesting {}: {e}", keys.role())))?;
    let leaf = event.leaf_hash();
    let appended = log
        .append(event)
        .await
        .map_err(|e| DataDirError::Boot(format!("attesting {}: {e}", keys.role())))?;
    service.identity.set_current(leaf);
    tracing::info!(role = %keys.role(), index = %appended.index, "attested");
    Ok(leaf)
}

impl<S: Storage> Services<S> {
    /// Re-attest the log, the edge and the key service on their roles' schedules, until the
    /// process ends.
    pub fn spawn_reattestation(&self) {
        for service in [&self.log_service, &self.edge, &self.keys.service] {
            let (log, policy, service) = (
                Arc::clone(&self.log),
                Arc::clone(&self.policy),
                Arc::clone(service),
            );
            tokio::spawn(async move {
                loop {
                    let period = policy
                        .manifest()
                        .and_then(|m| {
                            m.manifest
                                .role(service.identity.keys().role())
                                .map(|r| r.reattest_s)
                        })
                        .unwrap_or(REATTEST_RETRY_S)
                        .max(1);
                    tokio::time::sleep(Duration::from_secs(period)).await;
                    while let Err(e) = attest(&log, &policy, &service).await {
                        tracing::error!(error = %e, "re-attestation failed; retrying");
                        tokio::time::sleep(Duration::from_secs(REATTEST_RETRY_S)).await;
                    }
                }
            });
        }
    }
}
