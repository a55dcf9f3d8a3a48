//! The key service (docs/design.md §7): role `keys`, hosted by the node in the embedded default,
//! with its own identity and manifest entry.
//!
//! - **The master**: 32 random bytes, sealed at rest. Dev: AES-256-GCM under a local
//!   key-encryption key file (`keys/dev-kek`, mode 0600), which anyone who can read the data
//!   dir can use: the node says so loudly at start. Production (feature `nitro-kms`): AWS KMS
//!   releases it only to the `keys` measurement, encrypted to the RSA key of its attestation
//!   ([`crate::kms`]).
//! - **Seeds**: one random 256-bit seed per tenant and key version, wrapped under the master
//!   (AES-256-GCM, key HKDF(master, "govern/seed-wrap/v1"), AAD = "govern/seed/v1" ‖
//!   tenant ‖ 0 ‖ version),
//!   kept in `keys/seeds/<tenant>.json`, never in the log. Version 1 is made at the first
//!   release of a tenant's keys; `rotate` adds the next; `shred` deletes the file, so
//!   nobody can derive the tenant's scope keys again.
//! - **Scope keys**: `govern_core::seal::scope_key(master, seed, tenant, scope, version)`.
//! - **Release**: a service asks with a request signed by its live identity's Ed25519 key
//!   ([`ReleaseRequest`]); it gets every version of the scope keys it asked for, HPKE-sealed
//!   (RFC 9180 base mode, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM) to the X25519
//!   key its attestation binds, and only for scopes its manifest entry lists. Refused for an
//!   identity that is not the role's current one, expired, quarantined or unpinned. Each
//!   release is a `keys.audit` event in the log before the keys leave.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use aes_gcm::aead::{Aead as _, KeyInit as _, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use axum::http::StatusCode;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::Signature;
use govern_admission::StateView;
use govern_core::event::{Kind, RequestId, Role, TenantId, Timestamp};
use govern_core::ids::LeafHash;
use govern_core::seal::scope_key;
use govern_projections::tenants::{KEYS_AUDIT, KEYS_ROTATED, KEYS_SHREDDED};
use govern_store::{Appender, Clock, Entropy, OsEntropy};
use hpke::{Deserializable as _, OpModeS, Serializable as _};
use rand_core::{OsRng, RngCore as _};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha2::Sha256;
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::boot::LocalService;
use crate::problem::Problem;

/// How far a release request's `time` may be from the key service's clock.
pub const RELEASE_SKEW_MS: i64 = 60_000;
/// The most release requests remembered within the time window (replay protection).
pub const RELEASES_SEEN_MAX: usize = 100_000;
/// The role name.
pub const KEYS_ROLE: &str = govern_core::manifest::KEYS_ROLE;
/// The warning a dev key service logs at start.
pub const DEV_KEK_WARNING: &str = "DEV MODE: the key service's master key is sealed under \
    keys/dev-kek, a key file in the data dir. Anyone who can read the data dir can open every \
    tenant's payloads. Production seals it with AWS KMS to the keys enclave's measurement \
    (feature nitro-kms).";

// The release's wire types, request signing and opening are the client's (govern-client).
pub use govern_client::release::{
    Aead, HPKE_SUITE, Kdf, Kem, RELEASE_DOMAIN, Release, ReleaseRequest, ScopeKeys,
};

/// Why the key service refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The request is malformed.
    #[error("{0}")]
    Malformed(String),
    /// The request's signature does not verify under the role's identity key, or its time
    /// is outside the allowed skew.
    #[error("release request not authenticated: {0}")]
    Unauthenticated(String),
    /// The requesting identity is not live (not the current one, expired, quarantined,
    /// unpinned).
    #[error("{0}")]
    Identity(govern_admission::IdentityError),
    /// The role's manifest entry does not list the scope.
    #[error("role {role} may not read scope {scope}: its manifest entry does not list it")]
    ScopeDenied {
        /// The role.
        role: String,
        /// The scope.
        scope: String,
    },
    /// The tenant does not exist.
    #[error("tenant {0} does not exist")]
    UnknownTenant(String),
    /// The tenant's keys were shredded.
    #[error("tenant {0}'s keys were shredded; nothing of it opens any more")]
    Shredded(String),
    /// The key store failed, or a seed is missing for a version the log has.
    #[error("key store: {0}")]
    Store(String),
    /// Too many releases within the time window.
    #[error("too many key releases in the last minute; try again")]
    Busy,
    /// The log refused or failed the audit event.
    #[error("{0}")]
    Append(#[from] govern_store::AppendError),
}

impl From<KeyError> for Problem {
    fn from(e: KeyError) -> Self {
        let (status, kind, title) = match &e {
            KeyError::Malformed(_) => (
                StatusCode::BAD_REQUEST,
                "invalid-body",
                "Request body refused",
            ),
            KeyError::Unauthenticated(_) => (
                StatusCode::UNAUTHORIZED,
                "release-unauthenticated",
                "Release request not signed by the role's identity",
            ),
            KeyError::Identity(i) => {
                let (kind, title) = i.problem();
                (StatusCode::FORBIDDEN, kind, title)
            }
            KeyError::ScopeDenied { .. } => {
                (StatusCode::FORBIDDEN, "scope-denied", "Scope not granted")
            }
            KeyError::UnknownTenant(_) => {
                (StatusCode::NOT_FOUND, "tenant-unknown", "No such tenant")
            }
            KeyError::Shredded(_) => (StatusCode::GONE, "tenant-shredded", "Tenant shredded"),
            KeyError::Store(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "key-store",
                "Key store unavailable",
            ),
            KeyError::Busy => {
                return Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "key-release-pushback",
                    "The key service is busy",
                    e.to_string(),
                )
                .retry_after(1);
            }
            KeyError::Append(a) => return Problem::from(a.clone()),
        };
        Problem::new(status, kind, title, e.to_string())
    }
}

fn store_err(what: &str, path: &Path) -> impl FnOnce(std::io::Error) -> KeyError {
    let path = path.display().to_string();
    let what = what.to_string();
    move |e| KeyError::Store(format!("{what} {path}: {e}"))
}

fn hkdf32(ikm: &[u8], info: &[u8]) -> Zeroizing<[u8; 32]> {
    let mut okm = Zeroizing::new([0u8; 32]);
    // 32 bytes is far below HKDF-SHA256's limit.
    let _ = hkdf::Hkdf::<Sha256>::new(None, ikm).expand(info, okm.as_mut());
    okm
}

fn aes_seal(
    key: &[u8; 32],
    aad: &[u8],
    plaintext: &[u8],
    entropy: &dyn Entropy,
) -> Result<Value, KeyError> {
    let mut nonce = [0u8; 12];
    entropy.fill(&mut nonce);
    let ct = Aes256Gcm::new(key.into())
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .map_err(|_| KeyError::Store("AES-GCM refused to seal".into()))?;
    Ok(json!({"nonce": B64.encode(nonce), "ct": B64.encode(ct)}))
}

fn aes_open(
    key: &[u8; 32],
    aad: &[u8],
    sealed: &Value,
    what: &str,
) -> Result<Zeroizing<[u8; 32]>, KeyError> {
    let field = |f: &str| {
        sealed
            .get(f)
            .and_then(Value::as_str)
            .and_then(|s| B64.decode(s).ok())
            .ok_or_else(|| KeyError::Store(format!("{what}: {f} is not base64")))
    };
    let nonce = field("nonce")?;
    if nonce.len() != 12 {
        return Err(KeyError::Store(format!(
            "{what}: the nonce is not 12 bytes"
        )));
    }
    let plain = Zeroizing::new(
        Aes256Gcm::new(key.into())
            .decrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &field("ct")?,
                    aad,
                },
            )
            .map_err(|_| KeyError::Store(format!("{what} does not open with this key")))?,
    );
    let mut out = Zeroizing::new([0u8; 32]);
    if plain.len() != 32 {
        return Err(KeyError::Store(format!("{what} is not 32 bytes")));
    }
    out.copy_from_slice(&plain);
    Ok(out)
}

/// A new master beside existing seeds would make every tenant's data unreadable: a lost
/// `master.json` is an error for the operator to resolve (restore it from backup), never a
/// fresh start.
pub(crate) fn refuse_new_master_beside_seeds(dir: &Path) -> Result<(), KeyError> {
    let seeds = dir.join("seeds");
    let any = match std::fs::read_dir(&seeds) {
        Ok(entries) => entries
            .into_iter()
            .any(|e| e.is_ok_and(|e| e.path().extension().is_some_and(|x| x == "json"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => return Err(store_err("cannot list", &seeds)(e)),
    };
    if any {
        return Err(KeyError::Store(format!(
            "{} is missing but {} holds tenant seeds: a new master would make every tenant's data unreadable; restore master.json",
            dir.join("master.json").display(),
            seeds.display()
        )));
    }
    Ok(())
}

/// Write `bytes` to `path` durably: a temporary file, fsync, rename, fsync of the directory.
pub(crate) fn write_durable(path: &Path, bytes: &[u8]) -> Result<(), KeyError> {
    govern_workers::durable::write(path, bytes).map_err(|e| KeyError::Store(e.to_string()))
}

fn sync_dir(path: &Path) -> Result<(), KeyError> {
    govern_workers::durable::sync_dir(path).map_err(|e| KeyError::Store(e.to_string()))
}

/// How the master is sealed at rest.
#[derive(Debug, Clone)]
pub enum MasterSeal {
    /// Dev: under `keys/dev-kek` in the data dir.
    DevKek,
    /// AWS KMS, released only to the `keys` measurement.
    #[cfg(feature = "nitro-kms")]
    Kms(crate::kms::KmsConfig),
}

/// The master key under the dev key-encryption key, opened (made on first use). (With
/// AWS KMS it is [`crate::kms::open_master`], which needs the key service's attestation.)
///
/// # Errors
/// [`KeyError::Store`] when the files cannot be read or written, or do not open.
pub fn open_master(dir: &Path) -> Result<Zeroizing<[u8; 32]>, KeyError> {
    std::fs::create_dir_all(dir.join("seeds")).map_err(store_err("cannot create", dir))?;
    open_master_dev(dir)
}

const MASTER_AAD: &[u8] = b"govern/master/v1";

fn open_master_dev(dir: &Path) -> Result<Zeroizing<[u8; 32]>, KeyError> {
    let kek_path = dir.join("dev-kek");
    let master_path = dir.join("master.json");
    let kek: Zeroizing<[u8; 32]> = match std::fs::read_to_string(&kek_path) {
        Ok(text) => {
            let bytes = Zeroizing::new(
                hex::decode(text.trim())
                    .map_err(|_| KeyError::Store(format!("{} is not hex", kek_path.display())))?,
            );
            let mut k = Zeroizing::new([0u8; 32]);
            if bytes.len() != 32 {
                return Err(KeyError::Store(format!(
                    "{} is not 32 bytes",
                    kek_path.display()
                )));
            }
            k.copy_from_slice(&bytes);
            k
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if master_path.exists() {
                return Err(KeyError::Store(format!(
                    "{} exists but its key-encryption key {} is gone: the master cannot be opened",
                    master_path.display(),
                    kek_path.display()
                )));
            }
            refuse_new_master_beside_seeds(dir)?;
            let mut k = Zeroizing::new([0u8; 32]);
            OsRng.fill_bytes(k.as_mut());
            write_durable(
                &kek_path,
                Zeroizing::new(format!("{}\n", hex::encode(k.as_ref()))).as_bytes(),
            )?;
            k
        }
        Err(e) => return Err(store_err("cannot read", &kek_path)(e)),
    };
    match std::fs::read(&master_path) {
        Ok(bytes) => {
            let v: Value = serde_json::from_slice(&bytes)
                .map_err(|e| KeyError::Store(format!("{}: {e}", master_path.display())))?;
            if v.get("alg").and_then(Value::as_str) != Some("dev-kek/A256GCM") {
                return Err(KeyError::Store(format!(
                    "{} is not sealed under the dev key-encryption key",
                    master_path.display()
                )));
            }
            aes_open(&kek, MASTER_AAD, &v, "the master key")
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            refuse_new_master_beside_seeds(dir)?;
            let mut master = Zeroizing::new([0u8; 32]);
            OsRng.fill_bytes(master.as_mut());
            let mut sealed = aes_seal(&kek, MASTER_AAD, master.as_ref(), &OsEntropy)?;
            sealed["v"] = 1.into();
            sealed["alg"] = "dev-kek/A256GCM".into();
            write_durable(&master_path, sealed.to_string().as_bytes())?;
            Ok(master)
        }
        Err(e) => Err(store_err("cannot read", &master_path)(e)),
    }
}

impl From<govern_client::release::Malformed> for KeyError {
    fn from(e: govern_client::release::Malformed) -> Self {
        KeyError::Malformed(e.0)
    }
}

/// A release request by `service` (attested) for `scopes` of `tenant`, made at `time` (the
/// role's clock).
///
/// # Errors
/// [`KeyError::Malformed`] before the service's first attestation is durable.
pub fn request_release(
    service: &LocalService,
    tenant: &TenantId,
    scopes: &[&str],
    time: Timestamp,
) -> Result<ReleaseRequest, KeyError> {
    let keys = service.identity.keys();
    let identity = service
        .identity
        .current()
        .ok_or_else(|| KeyError::Malformed(format!("{} is not attested yet", keys.role())))?;
    request_release_by(keys, identity, tenant, scopes, time)
}

/// A release request by the service holding `keys`, whose `service.attested` is `identity`,
/// for `scopes` of `tenant`, made at `time` (a service outside this process).
///
/// # Errors
/// [`KeyError::Malformed`] when it cannot be canonicalized.
pub fn request_release_by(
    keys: &govern_workers::identity::ServiceKeys,
    identity: LeafHash,
    tenant: &TenantId,
    scopes: &[&str],
    time: Timestamp,
) -> Result<ReleaseRequest, KeyError> {
    Ok(ReleaseRequest::new_signed(
        &keys.role().to_string(),
        keys.signing_key(),
        identity,
        tenant,
        scopes,
        time,
    )?)
}

/// Every version (1 to `current`) of `scopes`' keys of `tenant`, read straight from a dev
/// data dir's key store (`<data-dir>/keys`: the master under the local key-encryption key,
/// the tenant's wrapped seeds). For an auditor who holds that key material, as anyone with
/// a dev data dir does (`govern verify request --keys-from`); it creates nothing and asks no
/// service. A production key store has no key-encryption key file: its master opens only in
/// the key service's enclave.
///
/// # Errors
/// [`KeyError::Store`] when the store is not a dev one, or the tenant has no seed of a
/// version (shredded, or another data dir's tenant).
pub fn dev_scope_keys(
    dir: &Path,
    tenant: &TenantId,
    scopes: &[&str],
    current: u32,
) -> Result<ScopeKeys, KeyError> {
    if !dir.join("master.json").exists() || !dir.join("dev-kek").exists() {
        return Err(KeyError::Store(format!(
            "{} holds no dev master (master.json and dev-kek): not a dev key store",
            dir.display()
        )));
    }
    let master = open_master_dev(dir)?;
    let wrap = hkdf32(master.as_ref(), b"govern/seed-wrap/v1");
    let path = dir.join("seeds").join(format!("{}.json", tenant.0));
    let bytes = std::fs::read(&path).map_err(store_err("cannot read", &path))?;
    let file: SeedFile = serde_json::from_slice(&bytes)
        .map_err(|e| KeyError::Store(format!("{}: {e}", path.display())))?;
    let mut out = ScopeKeys::default();
    for version in 1..=current {
        let wrapped = file.versions.get(&version.to_string()).ok_or_else(|| {
            KeyError::Store(format!(
                "tenant {}: no seed for key version {version}",
                tenant.0
            ))
        })?;
        let seed = aes_open(
            &wrap,
            &KeyService::seed_aad(tenant, version),
            wrapped,
            "a seed",
        )?;
        for scope in scopes {
            let key = scope_key(&master, &seed, tenant, scope, version)
                .map_err(|e| KeyError::Malformed(e.to_string()))?;
            out.insert((*scope).to_string(), version, Zeroizing::new(key));
        }
    }
    Ok(out)
}

/// A tenant's seeds file: every version's wrapped seed.
#[derive(Debug, Default, Serialize, Deserialize)]
struct SeedFile {
    v: u32,
    tenant: String,
    /// Version (decimal) → `{nonce, ct, created}`.
    versions: BTreeMap<String, Value>,
}

/// An [`Entropy`] as the `rand_core` generator HPKE takes. The node's entropy is the
/// operating system's; a simulation's is a seeded CSPRNG, reproducible on purpose.
struct EntropyRng<'a>(&'a dyn Entropy);

impl rand_core::RngCore for EntropyRng<'_> {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        self.0.fill(&mut b);
        u32::from_le_bytes(b)
    }

    fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.0.fill(&mut b);
        u64::from_le_bytes(b)
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        self.0.fill(dest);
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.0.fill(dest);
        Ok(())
    }
}

impl rand_core::CryptoRng for EntropyRng<'_> {}

/// How a role obtains its scope keys: the signed release request (docs/design.md §7). The
/// key service answers it in process (`govern node`); a worker, or an edge in an enclave of
/// its own, sends the same request over HTTP (`POST /v1/keys/release`).
pub trait KeyRelease: Send + Sync + 'static {
    /// Check `req`, record a `keys.audit`, and answer the keys sealed to the requester.
    ///
    /// # Errors
    /// [`KeyError`].
    fn release<'a>(
        &'a self,
        req: &'a ReleaseRequest,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<Release, KeyError>> + Send + 'a>>;
}

impl KeyRelease for KeyService {
    fn release<'a>(
        &'a self,
        req: &'a ReleaseRequest,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<Release, KeyError>> + Send + 'a>> {
        Box::pin(KeyService::release(self, req))
    }
}

/// The key service.
pub struct KeyService {
    dir: PathBuf,
    master: Zeroizing<[u8; 32]>,
    /// Its identity (role `keys`).
    pub service: Arc<LocalService>,
    log: Arc<dyn Appender>,
    policy: Arc<dyn StateView>,
    /// The log's clock: a release is judged at the time the log would judge an event.
    clock: Arc<dyn Clock>,
    /// Where seeds, nonces and HPKE's ephemeral keys come from.
    entropy: Arc<dyn Entropy>,
    /// Serializes seed files, rotations and shreddings.
    lock: tokio::sync::Mutex<()>,
    /// The signatures of the requests answered within the time window (by the time they
    /// expire), so a captured request cannot be replayed into a flood of `keys.audit`.
    seen: parking_lot::Mutex<HashMap<String, i64>>,
}

impl std::fmt::Debug for KeyService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyService")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// What the log says of a tenant's keys.
struct TenantKeys {
    current: u32,
    shredded: bool,
    created_leaf: LeafHash,
    last_version_leaf: Option<LeafHash>,
}

impl KeyService {
    /// The key service over `dir` (`<data-dir>/keys`) with its opened master, its attested
    /// identity, and the log. Deletes the seeds of any tenant the log says is shredded (a
    /// crash between `keys.shredded` and the deletion).
    ///
    /// # Errors
    /// [`KeyError::Store`].
    pub fn new(
        dir: PathBuf,
        master: Zeroizing<[u8; 32]>,
        service: Arc<LocalService>,
        log: Arc<dyn Appender>,
        policy: Arc<dyn StateView>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, KeyError> {
        let ks = Self {
            dir,
            master,
            service,
            log,
            policy,
            clock,
            entropy: Arc::new(OsEntropy),
            lock: tokio::sync::Mutex::new(()),
            seen: parking_lot::Mutex::new(HashMap::new()),
        };
        let seeds = ks.dir.join("seeds");
        for entry in std::fs::read_dir(&seeds).map_err(store_err("cannot list", &seeds))? {
            let path = entry.map_err(store_err("cannot list", &seeds))?.path();
            let Some(tenant) = path
                .file_stem()
                .and_then(|s| s.to_str())
                .and_then(|s| Uuid::parse_str(s).ok())
                .map(TenantId)
            else {
                continue;
            };
            if ks.tenant_keys(&tenant).is_ok_and(|t| t.shredded) {
                tracing::warn!(tenant = %tenant.0, "deleting the seeds of a shredded tenant");
                shred_file(&path)?;
            }
        }
        Ok(ks)
    }

    fn seeds_path(&self, tenant: &TenantId) -> PathBuf {
        self.dir.join("seeds").join(format!("{}.json", tenant.0))
    }

    fn wrap_key(&self) -> Zeroizing<[u8; 32]> {
        hkdf32(self.master.as_ref(), b"govern/seed-wrap/v1")
    }

    /// Draw seeds, nonces and HPKE's ephemeral keys from `entropy` (the operating system's
    /// unless set).
    #[must_use]
    pub fn with_entropy(mut self, entropy: Arc<dyn Entropy>) -> Self {
        self.entropy = entropy;
        self
    }

    fn seed_aad(tenant: &TenantId, version: u32) -> Vec<u8> {
        format!("govern/seed/v1{}\0{version}", tenant.0).into_bytes()
    }

    fn tenant_keys(&self, tenant: &TenantId) -> Result<TenantKeys, KeyError> {
        self.policy
            .committed()
            .tenant(tenant)
            .map(|t| TenantKeys {
                current: t.keys.current(),
                shredded: t.keys.shredded.is_some(),
                created_leaf: t.leaf,
                last_version_leaf: t
                    .keys
                    .versions
                    .iter()
                    .rev()
                    .find(|v| v.version > 1)
                    .map(|v| v.leaf),
            })
            .ok_or_else(|| KeyError::UnknownTenant(tenant.0.to_string()))
    }

    fn read_seeds(&self, tenant: &TenantId) -> Result<SeedFile, KeyError> {
        let path = self.seeds_path(tenant);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| KeyError::Store(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(SeedFile {
                v: 1,
                tenant: tenant.0.to_string(),
                versions: BTreeMap::new(),
            }),
            Err(e) => Err(store_err("cannot read", &path)(e)),
        }
    }

    /// Add a fresh seed for `version` to the file, durably.
    fn add_seed(
        &self,
        tenant: &TenantId,
        file: &mut SeedFile,
        version: u32,
    ) -> Result<(), KeyError> {
        let mut seed = Zeroizing::new([0u8; 32]);
        self.entropy.fill(seed.as_mut());
        let mut wrapped = aes_seal(
            &self.wrap_key(),
            &Self::seed_aad(tenant, version),
            seed.as_ref(),
            &*self.entropy,
        )?;
        wrapped["created"] = self.clock.now().to_string().into();
        file.versions.insert(version.to_string(), wrapped);
        let bytes = serde_json::to_vec(file).map_err(|e| KeyError::Store(e.to_string()))?;
        write_durable(&self.seeds_path(tenant), &bytes)
    }

    /// The seeds of versions 1..=`current`, making version 1's on first use.
    fn seeds(&self, tenant: &TenantId, current: u32) -> Result<Vec<Zeroizing<[u8; 32]>>, KeyError> {
        let mut file = self.read_seeds(tenant)?;
        if file.versions.is_empty() && current == 1 {
            self.add_seed(tenant, &mut file, 1)?;
        }
        (1..=current)
            .map(|v| {
                let wrapped = file.versions.get(&v.to_string()).ok_or_else(|| {
                    KeyError::Store(format!("tenant {}: no seed for key version {v}", tenant.0))
                })?;
                aes_open(
                    &self.wrap_key(),
                    &Self::seed_aad(tenant, v),
                    wrapped,
                    "a seed",
                )
            })
            .collect()
    }

    /// Every version of `scopes`' keys of `tenant`, for a service of this process or a
    /// benchmark: the derivation a release carries.
    fn derive(
        &self,
        tenant: &TenantId,
        scopes: &[String],
        seeds: &[Zeroizing<[u8; 32]>],
    ) -> Result<ScopeKeys, KeyError> {
        let mut out = ScopeKeys::default();
        for scope in scopes {
            for (i, seed) in seeds.iter().enumerate() {
                let version = u32::try_from(i + 1).unwrap_or(u32::MAX);
                let key = scope_key(&self.master, seed, tenant, scope, version)
                    .map_err(|e| KeyError::Malformed(e.to_string()))?;
                out.insert(scope.clone(), version, Zeroizing::new(key));
            }
        }
        Ok(out)
    }

    /// Release `req`'s scope keys: check it, record a `keys.audit`, and answer them sealed to
    /// the requester's attested X25519 key.
    ///
    /// # Errors
    /// [`KeyError`].
    pub async fn release(&self, req: &ReleaseRequest) -> Result<Release, KeyError> {
        let role = Role::new(&req.role).map_err(|e| KeyError::Malformed(format!("role: {e}")))?;
        let leaf = LeafHash::try_from(req.identity.clone())
            .map_err(|_| KeyError::Malformed("identity: a leaf hash, hex".into()))?;
        let tenant = TenantId(
            Uuid::parse_str(&req.tenant)
                .map_err(|_| KeyError::Malformed("tenant: a UUID".into()))?,
        );
        if req.scopes.is_empty() || req.scopes.len() > govern_core::seal::SCOPES.len() {
            return Err(KeyError::Malformed(format!(
                "scopes: 1 to {} scope names",
                govern_core::seal::SCOPES.len()
            )));
        }
        let mut scopes = req.scopes.clone();
        scopes.sort();
        scopes.dedup();
        let time = Timestamp::try_from(req.time.clone())
            .map_err(|_| KeyError::Malformed("time: RFC 3339 with milliseconds".into()))?;
        let now = self.clock.now();
        if (time.unix_ms() - now.unix_ms()).abs() > RELEASE_SKEW_MS {
            return Err(KeyError::Unauthenticated(format!(
                "time {time} is more than {RELEASE_SKEW_MS} ms from the key service's {now}"
            )));
        }
        let sig = B64
            .decode(&req.sig)
            .ok()
            .and_then(|b| Signature::from_slice(&b).ok())
            .ok_or_else(|| KeyError::Unauthenticated("sig: an Ed25519 signature, base64".into()))?;
        // The role's identity as the log holds it now: the one named, live, not quarantined.
        let committed = self.policy.committed();
        let current = committed.identity(&role).ok_or_else(|| {
            KeyError::Identity(govern_admission::IdentityError::NoIdentity { role: role.clone() })
        })?;
        let identity = self
            .policy
            .live_identity(&role, leaf, &current.ed25519, now)
            .map_err(KeyError::Identity)?;
        let key = identity
            .ed25519
            .verifying_key()
            .map_err(|_| KeyError::Unauthenticated("the identity's key does not decode".into()))?;
        // The signed message is also the HPKE info: one canonicalization for both.
        let message = req.message()?;
        key.verify_strict(&message, &sig).map_err(|_| {
            KeyError::Unauthenticated(
                "the signature does not verify under the role's identity key".into(),
            )
        })?;
        let manifest = committed
            .manifest()
            .cloned()
            .ok_or_else(|| KeyError::Store("no manifest in force".into()))?;
        let allowed = manifest
            .manifest
            .role(&role)
            .map(|r| r.scopes.clone())
            .unwrap_or_default();
        if let Some(scope) = scopes.iter().find(|s| !allowed.contains(s)) {
            return Err(KeyError::ScopeDenied {
                role: role.to_string(),
                scope: scope.clone(),
            });
        }
        let (keys, versions) = {
            let _guard = self.lock.lock().await;
            let t = self.tenant_keys(&tenant)?;
            if t.shredded {
                return Err(KeyError::Shredded(tenant.0.to_string()));
            }
            let seeds = self.seeds(&tenant, t.current)?;
            (
                self.derive(&tenant, &scopes, &seeds)?,
                (1..=t.current).collect::<Vec<u32>>(),
            )
        };
        // Remembered only once everything else passed, so each remembered request is a
        // release with its durable keys.audit, by a role with those scopes.
        {
            let mut seen = self.seen.lock();
            seen.retain(|_, expires| *expires > now.unix_ms());
            if seen.len() >= RELEASES_SEEN_MAX {
                return Err(KeyError::Busy);
            }
            if seen
                .insert(req.sig.clone(), time.unix_ms() + RELEASE_SKEW_MS)
                .is_some()
            {
                return Err(KeyError::Unauthenticated(
                    "this request was answered already (a replay)".into(),
                ));
            }
        }
        let mut list = Vec::new();
        for ((scope, version), key) in keys.iter() {
            list.push(json!({"scope": scope, "version": version, "key": B64.encode(key.as_ref())}));
        }
        let plain = Zeroizing::new(
            govern_core::canonical::to_vec(&json!({"keys": list}))
                .map_err(|e| KeyError::Malformed(e.to_string()))?,
        );
        drop(list);
        let pk = <Kem as hpke::Kem>::PublicKey::from_bytes(&identity.x25519)
            .map_err(|_| KeyError::Malformed("the identity's X25519 key does not decode".into()))?;
        let (enc, ct) = hpke::single_shot_seal::<Aead, Kdf, Kem, _>(
            &OpModeS::Base,
            &pk,
            &message,
            &plain,
            b"",
            &mut EntropyRng(&*self.entropy),
        )
        .map_err(|e| KeyError::Malformed(format!("HPKE: {e}")))?;
        // The release is in the log before the keys leave.
        let mut body = Map::new();
        body.insert("role".into(), role.to_string().into());
        body.insert("identity".into(), identity.leaf.to_string().into());
        body.insert("scopes".into(), json!(scopes));
        body.insert("versions".into(), json!(versions));
        body.insert("x25519".into(), hex::encode(identity.x25519).into());
        let audit = self
            .append(KEYS_AUDIT, tenant, vec![identity.leaf], body)
            .await?;
        Ok(Release {
            tenant: tenant.0.to_string(),
            role: role.to_string(),
            suite: HPKE_SUITE.into(),
            enc: B64.encode(enc.to_bytes()),
            ct: B64.encode(ct),
            audit,
        })
    }

    async fn append(
        &self,
        kind: &str,
        tenant: TenantId,
        parents: Vec<LeafHash>,
        body: Map<String, Value>,
    ) -> Result<u64, KeyError> {
        let kind = Kind::new(kind).map_err(|e| KeyError::Malformed(e.to_string()))?;
        let now = self.clock.now();
        let event = self
            .service
            .identity
            .sign(
                kind,
                tenant,
                RequestId::v7(now, &*self.entropy),
                parents,
                body,
                now,
            )
            .map_err(|e| KeyError::Malformed(e.to_string()))?;
        Ok(self.log.append(event).await?.index.0)
    }

    /// Add the next version of `tenant`'s keys: a fresh seed, stored durably, then
    /// `keys.rotated`. Returns the version and its entry. Data sealed under earlier versions
    /// still opens.
    ///
    /// # Errors
    /// [`KeyError`].
    pub async fn rotate(&self, tenant: &TenantId) -> Result<(u32, u64), KeyError> {
        let _guard = self.lock.lock().await;
        let t = self.tenant_keys(tenant)?;
        if t.shredded {
            return Err(KeyError::Shredded(tenant.0.to_string()));
        }
        // The versions so far must all be there before one is added.
        let _ = self.seeds(tenant, t.current)?;
        let next = t.current + 1;
        let mut file = self.read_seeds(tenant)?;
        // A seed of `next` left by a crash before its event was never used: replace it.
        self.add_seed(tenant, &mut file, next)?;
        let mut body = Map::new();
        body.insert("version".into(), next.into());
        let parent = t.last_version_leaf.unwrap_or(t.created_leaf);
        let index = self
            .append(KEYS_ROTATED, *tenant, vec![parent], body)
            .await?;
        tracing::info!(tenant = %tenant.0, version = next, index, "tenant keys rotated");
        Ok((next, index))
    }

    /// Shred `tenant`: `keys.shredded` in the log, then its seeds deleted, so no scope key of
    /// it can be derived again. Returns the entry.
    ///
    /// # Errors
    /// [`KeyError`].
    pub async fn shred(&self, tenant: &TenantId) -> Result<u64, KeyError> {
        let _guard = self.lock.lock().await;
        let t = self.tenant_keys(tenant)?;
        if t.shredded {
            return Err(KeyError::Shredded(tenant.0.to_string()));
        }
        // The log first: from here on it refuses the tenant's events and the key service its
        // releases; then the seeds go (a crash in between is finished by the next start).
        let index = self
            .append(KEYS_SHREDDED, *tenant, vec![t.created_leaf], Map::new())
            .await?;
        let path = self.seeds_path(tenant);
        if path.exists() {
            shred_file(&path)?;
        }
        tracing::warn!(tenant = %tenant.0, index, "tenant shredded: its seeds are deleted");
        Ok(index)
    }

    /// Whether `tenant` has a seeds file (for tests of shredding).
    #[must_use]
    pub fn has_seeds(&self, tenant: &TenantId) -> bool {
        self.seeds_path(tenant).exists()
    }
}

/// Overwrite a seeds file with zeros, sync, delete it, and sync its directory.
fn shred_file(path: &Path) -> Result<(), KeyError> {
    use std::io::Write as _;
    let len = std::fs::metadata(path)
        .map_err(store_err("cannot stat", path))?
        .len();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(store_err("cannot open", path))?;
    f.write_all(&vec![0u8; usize::try_from(len).unwrap_or(0)])
        .and_then(|()| f.sync_all())
        .map_err(store_err("cannot overwrite", path))?;
    drop(f);
    std::fs::remove_file(path).map_err(store_err("cannot delete", path))?;
    sync_dir(path)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_dev_master_survives_restarts_and_is_never_silently_replaced() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("keys");
        let first = open_master(&dir).unwrap();
        assert_eq!(*open_master(&dir).unwrap(), *first);
        // Nothing of it in clear on disk.
        let master_file = std::fs::read_to_string(dir.join("master.json")).unwrap();
        assert!(!master_file.contains(&hex::encode(*first)));
        assert!(!master_file.contains(&B64.encode(*first)));
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir.join("dev-kek"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        // A tenant's seeds exist: losing master.json is an error, not a new master.
        std::fs::write(dir.join("seeds").join("t.json"), b"{}").unwrap();
        std::fs::rename(dir.join("master.json"), dir.join("master.bak")).unwrap();
        assert!(
            matches!(open_master(&dir), Err(KeyError::Store(m)) if m.contains("restore master.json"))
        );
        std::fs::rename(dir.join("master.bak"), dir.join("master.json")).unwrap();
        // Nor is losing the key-encryption key.
        std::fs::remove_file(dir.join("dev-kek")).unwrap();
        assert!(
            matches!(open_master(&dir), Err(KeyError::Store(m)) if m.contains("cannot be opened"))
        );
    }
}
