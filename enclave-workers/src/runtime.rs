//! What every enclave worker does around its own logic (docs/design.md §2, §6, §7), over
//! outbound HTTP only:
//!
//! - **follow** the log with the client library's verified [`Follower`] (the log's signature,
//!   the witness quorum, consistency with the position it saved), folding the service
//!   inventory on the way, and long-poll for the next checkpoint (`GET
//!   /checkpoint?after=N&wait_ms=M`);
//! - **attest**: its own Ed25519, X25519 and RSA keys bound in a document from its NSM, to
//!   the manifest in force and the latest verified root, appended as `service.attested`, and
//!   again every `reattest_s` of its role;
//! - **release** a tenant's scope keys with the signed release request
//!   (`POST /v1/keys/release`), HPKE-sealed to its attested X25519 key;
//! - **append** its results, idempotently: an answer that the result's uniqueness key is
//!   already taken (`duplicate`) or that the very event is held (`already-held`) is a
//!   success. A node that is down, overloaded (503) or failing (5xx) is waited for with
//!   exponential backoff and full jitter, never taken as an answer.
//!
//! Its only persisted state is its position (`position.json` in its state directory): on a
//! restart it reads the log again from the first entry, held to that position, so a node
//! that rolls back or forks is caught, and rebuilds its state from the log alone.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use govern_client::follower::{FollowError, Follower, Position};
use govern_client::http::{Client, ClientError};
use govern_client::release::{Release, ReleaseRequest, ScopeKeys};
use govern_client::wire::Receipt;
use govern_core::append::Entropy;
use govern_core::event::{Kind, RequestId, Role, SignedEvent, TenantId, Timestamp};
use govern_core::ids::{LeafHash, LeafIndex, RootHash};
use govern_core::kinds::READS_AUDIT;
use govern_core::note::NoteVerifier;
use govern_core::witness::WitnessPolicy;
use govern_projections::services::Services;
use rand_core::RngCore as _;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::identity::{IdentityError, ServiceIdentity, ServiceKeys};
use crate::nsm::Nsm;

/// The first wait after a transient failure; it doubles up to [`BACKOFF_MAX_MS`].
pub const BACKOFF_BASE_MS: u64 = 100;
/// The longest wait between two attempts.
pub const BACKOFF_MAX_MS: u64 = 10_000;
/// How long one long poll of `/checkpoint` waits at most (the node caps it at 30 s).
pub const POLL_WAIT_MS: u64 = 25_000;
/// The most entries one `reads.audit` names (the log's `READS_AUDIT_ENTRIES_MAX`).
pub const READS_AUDIT_ENTRIES_MAX: usize = 256;
/// The position file in a worker's state directory.
pub const POSITION_FILE: &str = "position.json";

/// Why a worker stopped.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The log is not what its checkpoints and witnesses say: a fork, a rollback, a tampered
    /// entry or tile, a checkpoint that does not verify. The worker stops: nothing it would
    /// decide on such a log could be trusted.
    #[error("the log does not verify: {0}")]
    Log(#[from] FollowError),
    /// The node refused a request for a reason that waiting does not cure.
    #[error("{0}")]
    Refused(Box<ClientError>),
    /// The log has no manifest yet, or none names this worker's role.
    #[error("{0}")]
    Manifest(String),
    /// The NSM or the identity keys failed.
    #[error("identity: {0}")]
    Identity(#[from] IdentityError),
    /// A release that does not open, or lacks a key the log says exists.
    #[error("key release for tenant {}: {reason}", tenant.0)]
    Release {
        /// The tenant.
        tenant: TenantId,
        /// Why.
        reason: String,
    },
    /// The state directory cannot be read or written.
    #[error("state directory {path}: {reason}")]
    State {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// An event could not be built (too large, not canonical).
    #[error("event: {0}")]
    Event(String),
}

/// How a worker reaches the log, and who it is.
#[derive(Debug)]
pub struct WorkerConfig {
    /// The node's base URL.
    pub url: String,
    /// The worker's role (a key of the manifest's `roles`).
    pub role: Role,
    /// The log's C2SP verifier key, pinned.
    pub log_key: String,
    /// The witness policy every checkpoint it acts under must meet (`None`: the log's
    /// signature alone, which a split view defeats; the CLI says so).
    pub witnesses: Option<WitnessPolicy>,
    /// Where its position is kept.
    pub state_dir: PathBuf,
    /// The scopes it asks the key service for.
    pub scopes: Vec<String>,
}

/// The saved position, as JSON.
#[derive(Debug, Serialize, Deserialize)]
struct SavedPosition {
    size: u64,
    root: String,
    checkpoint: String,
}

/// The operating system's randomness, as the sealing code takes it.
#[derive(Debug, Clone, Copy, Default)]
pub struct OsEntropy;

impl Entropy for OsEntropy {
    fn fill(&self, buf: &mut [u8]) {
        rand_core::OsRng.fill_bytes(buf);
    }
}

/// Exponential backoff with full jitter: each wait is uniform in `[0, cap]`, the cap
/// doubling from [`BACKOFF_BASE_MS`] to [`BACKOFF_MAX_MS`].
#[derive(Debug)]
pub struct Backoff {
    cap_ms: u64,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            cap_ms: BACKOFF_BASE_MS,
        }
    }
}

impl Backoff {
    /// The next wait.
    pub fn next_wait(&mut self) -> Duration {
        let wait = rand_core::OsRng.next_u64() % (self.cap_ms + 1);
        self.cap_ms = (self.cap_ms * 2).min(BACKOFF_MAX_MS);
        Duration::from_millis(wait)
    }

    /// Sleep the next wait.
    pub async fn wait(&mut self) {
        tokio::time::sleep(self.next_wait()).await;
    }
}

/// Whether waiting may cure `e`: the node is down, unreachable, slow, overloaded (503 or
/// 429) or failing (5xx). A 4xx refusal is an answer.
#[must_use]
pub fn transient(e: &ClientError) -> bool {
    match e {
        ClientError::Refused { .. }
        | ClientError::Unreachable { .. }
        | ClientError::Unresolved { .. }
        | ClientError::ConnectTimeout { .. }
        | ClientError::Timeout { .. }
        | ClientError::Transport { .. } => true,
        _ => e.status().is_some_and(|s| s == 429 || s >= 500),
    }
}

/// The last segment of a problem's type URI (`urn:govern:problem:duplicate` gives
/// `duplicate`), if `e` is a problem answer.
#[must_use]
pub fn problem_kind(e: &ClientError) -> Option<&str> {
    match e {
        ClientError::Problem { kind, .. } => Some(kind.rsplit([':', '/']).next().unwrap_or(kind)),
        _ => None,
    }
}

fn transient_follow(e: &FollowError) -> bool {
    matches!(e, FollowError::Client(c) if transient(c))
}

/// What an append came to.
#[derive(Debug)]
pub enum Appended {
    /// Appended now.
    New(Receipt),
    /// The log holds this result already (its uniqueness key is taken, or the very event is
    /// there): a worker that restarted, or an append answered after a lost connection.
    Already,
}

/// A worker's connection to the log: its follower, identity, service inventory and
/// released keys.
#[derive(Debug)]
pub struct Runtime {
    client: Client,
    follower: Follower,
    identity: std::sync::Arc<ServiceIdentity>,
    nsm: Box<dyn Nsm>,
    services: Services,
    keys: BTreeMap<TenantId, ScopeKeys>,
    scopes: Vec<String>,
    state_dir: PathBuf,
    attested_at: Option<Instant>,
    size: u64,
    root: Option<RootHash>,
}

impl Runtime {
    /// A worker of `config`, attesting through `nsm`, with fresh keys. It reads the saved
    /// position, if any, and will hold the log to it.
    ///
    /// # Errors
    /// [`WorkerError`] when the URL, the key or the state directory is not usable.
    pub fn new(config: WorkerConfig, nsm: Box<dyn Nsm>) -> Result<Self, WorkerError> {
        let client = Client::for_log(&config.url).map_err(|e| WorkerError::Refused(Box::new(e)))?;
        let verifier = NoteVerifier::parse(&config.log_key)
            .map_err(|e| WorkerError::Manifest(format!("the log's verifier key: {e}")))?;
        let mut follower = Follower::new(client.clone(), verifier);
        if let Some(policy) = config.witnesses {
            follower = follower.witnessed(policy, "the worker's witness policy");
        }
        std::fs::create_dir_all(&config.state_dir).map_err(|e| WorkerError::State {
            path: config.state_dir.clone(),
            reason: e.to_string(),
        })?;
        let saved = read_position(&config.state_dir.join(POSITION_FILE))?;
        if let Some(position) = saved {
            tracing::info!(
                size = position.size,
                "holding the log to the saved position"
            );
            follower = follower.anchored(position);
        }
        let keys = ServiceKeys::generate(config.role)?;
        Ok(Self {
            client,
            follower,
            identity: std::sync::Arc::new(ServiceIdentity::new(keys)),
            nsm,
            services: Services::default(),
            keys: BTreeMap::new(),
            scopes: config.scopes,
            state_dir: config.state_dir,
            attested_at: None,
            size: 0,
            root: None,
        })
    }

    /// The worker's identity.
    #[must_use]
    pub fn identity(&self) -> &ServiceIdentity {
        &self.identity
    }

    /// The worker's identity, shared (for signing events off the runtime's task).
    #[must_use]
    pub fn identity_handle(&self) -> std::sync::Arc<ServiceIdentity> {
        self.identity.clone()
    }

    /// The service inventory folded so far.
    #[must_use]
    pub fn services(&self) -> &Services {
        &self.services
    }

    /// The size of the last verified checkpoint.
    #[must_use]
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The root of the last verified checkpoint.
    #[must_use]
    pub fn root(&self) -> Option<RootHash> {
        self.root
    }

    /// The HTTP client.
    #[must_use]
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Follow the log to its latest (witnessed) checkpoint: every new entry that `wanted`
    /// accepts, in order, after folding the service kinds in. The position is saved
    /// before returning. Transient failures are waited out.
    ///
    /// # Errors
    /// [`WorkerError::Log`] when the log does not verify; [`WorkerError::State`].
    pub async fn follow(
        &mut self,
        wanted: impl Fn(&str) -> bool,
    ) -> Result<Vec<(u64, SignedEvent)>, WorkerError> {
        let mut backoff = Backoff::default();
        loop {
            let mut batch = Vec::new();
            let mut services = self.services.clone();
            let result = self
                .follower
                .follow(|index: LeafIndex, signed: &SignedEvent| {
                    let kind = signed.event().kind.as_str();
                    if Services::reads(kind) {
                        services.apply(signed, index);
                    }
                    if wanted(kind) {
                        batch.push((index.0, signed.clone()));
                    }
                    Ok::<(), std::convert::Infallible>(())
                })
                .await;
            match result {
                Ok(update) => {
                    self.services = services;
                    self.size = update.latest.checkpoint.size.0;
                    self.root = Some(update.latest.checkpoint.root);
                    if let Some(p) = self.follower.position() {
                        write_position(&self.state_dir.join(POSITION_FILE), p)?;
                    }
                    self.follower.continue_after_position();
                    return Ok(batch);
                }
                Err(e) if transient_follow(&e) => {
                    tracing::warn!(error = %e, "the node is not answering; waiting");
                    backoff.wait().await;
                }
                Err(FollowError::Client(c))
                    if c.status() == Some(404) || problem_kind(&c) == Some("not-witnessed") =>
                {
                    tracing::warn!(error = %c, "no checkpoint to follow yet; waiting");
                    backoff.wait().await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Wait until the node serves a checkpoint larger than the last verified one, or
    /// `wait` passes (the node's long poll; a failure is waited out briefly).
    pub async fn wait_for_growth(&self, wait: Duration) {
        let ms = u64::try_from(wait.as_millis())
            .unwrap_or(POLL_WAIT_MS)
            .min(POLL_WAIT_MS);
        let path = format!("/checkpoint?after={}&wait_ms={ms}", self.size);
        if let Err(e) = self.client.get_required(&path).await {
            tracing::debug!(error = %e, "long poll failed");
            tokio::time::sleep(Duration::from_millis(BACKOFF_BASE_MS).min(wait)).await;
        }
    }

    /// Whether the role's re-attestation is due (or it never attested).
    #[must_use]
    pub fn attestation_due(&self) -> bool {
        let Some(at) = self.attested_at else {
            return true;
        };
        let period = self
            .services
            .manifest
            .as_ref()
            .and_then(|m| m.manifest.role(self.identity.keys().role()))
            .map_or(3600, |r| r.reattest_s)
            .max(1);
        at.elapsed() >= Duration::from_secs(period)
    }

    /// Attest again before the next round (the log refused this identity).
    pub fn force_reattest(&mut self) {
        self.attested_at = None;
    }

    /// Attest now: a document bound to the manifest in force and the latest verified root,
    /// appended as `service.attested` (following the previous identity of these keys).
    ///
    /// # Errors
    /// [`WorkerError::Manifest`] before the log has a manifest naming this role;
    /// [`WorkerError::Identity`]; [`WorkerError::Refused`].
    pub async fn attest(&mut self) -> Result<LeafHash, WorkerError> {
        let keys = self.identity.keys();
        let role = keys.role().clone();
        let in_force = self
            .services
            .manifest
            .as_ref()
            .ok_or_else(|| WorkerError::Manifest("the log has no manifest yet".into()))?;
        if in_force.manifest.role(&role).is_none() {
            return Err(WorkerError::Manifest(format!(
                "the manifest in force (serial {}) has no role {role}",
                in_force.manifest.serial
            )));
        }
        let hash: [u8; 32] = hex::decode(&in_force.hash)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| WorkerError::Manifest("the manifest's hash is not 32 bytes".into()))?;
        let mut parents = vec![in_force.leaf];
        let own = govern_core::event::PublicKey::from(&keys.signing_key().verifying_key());
        if let Some(previous) = self.services.identities.get(&role)
            && previous.ed25519 == own
        {
            parents.push(previous.leaf);
        }
        let nonce = self
            .root
            .ok_or_else(|| WorkerError::Manifest("no checkpoint verified yet".into()))?;
        let event = keys.attest(self.nsm.as_ref(), hash, nonce, parents)?;
        let leaf = event.leaf_hash();
        match self.append(&event).await? {
            Appended::New(r) => tracing::info!(%role, index = r.index, "attested"),
            Appended::Already => tracing::info!(%role, "attested (already in the log)"),
        }
        self.identity.set_current(leaf);
        self.attested_at = Some(Instant::now());
        Ok(leaf)
    }

    /// Append `event`, waiting out a node that is down or overloaded. A taken uniqueness
    /// key or an event the log holds already is [`Appended::Already`].
    ///
    /// # Errors
    /// [`WorkerError::Refused`] with the node's refusal.
    pub async fn append(&self, event: &SignedEvent) -> Result<Appended, WorkerError> {
        append_to(&self.client, event).await
    }

    /// Sign an event of this worker's identity at `time`, sealing `sealed` (the plaintext,
    /// with its scope) before signing.
    ///
    /// # Errors
    /// [`WorkerError::Event`]; [`WorkerError::Release`] when the scope's key is missing.
    #[allow(clippy::too_many_arguments)]
    pub async fn sign(
        &mut self,
        kind: &str,
        tenant: TenantId,
        request: RequestId,
        parents: Vec<LeafHash>,
        body: Map<String, Value>,
        sealed: Option<(&str, Vec<u8>)>,
        time: Timestamp,
    ) -> Result<SignedEvent, WorkerError> {
        let attestation = self
            .identity
            .current()
            .ok_or_else(|| WorkerError::Event("not attested yet".into()))?;
        let kind = Kind::new(kind).map_err(|e| WorkerError::Event(e.to_string()))?;
        let mut event = govern_core::event::Event::new(
            kind,
            tenant,
            request,
            self.identity.keys().producer(),
            time,
            body,
        );
        event.parents = parents;
        event.attestation = Some(attestation);
        if let Some((scope, plaintext)) = sealed {
            let (version, key) = self.newest_key(tenant, scope).await?;
            govern_core::seal::seal(&mut event, &key, scope, version, &plaintext, &OsEntropy)
                .map_err(|e| WorkerError::Event(e.to_string()))?;
        }
        event
            .sign(self.identity.keys().signing_key())
            .map_err(|e| WorkerError::Event(e.to_string()))
    }

    /// The key of `scope`, version `version`, of `tenant`: from the keys released before,
    /// else from a new release (which also brings any newer version).
    ///
    /// # Errors
    /// [`WorkerError::Release`] when the key service refuses or the version is not released.
    pub async fn scope_key(
        &mut self,
        tenant: TenantId,
        scope: &str,
        version: u32,
    ) -> Result<[u8; 32], WorkerError> {
        if let Some(k) = self.keys.get(&tenant).and_then(|k| k.get(scope, version)) {
            return Ok(*k);
        }
        self.release(tenant).await?;
        self.keys
            .get(&tenant)
            .and_then(|k| k.get(scope, version))
            .copied()
            .ok_or_else(|| WorkerError::Release {
                tenant,
                reason: format!("scope {scope} version {version} was not released"),
            })
    }

    /// The newest released version of `scope` for `tenant` and its key (releasing first if
    /// none is held).
    ///
    /// # Errors
    /// [`WorkerError::Release`].
    pub async fn newest_key(
        &mut self,
        tenant: TenantId,
        scope: &str,
    ) -> Result<(u32, [u8; 32]), WorkerError> {
        if !self.keys.contains_key(&tenant) {
            self.release(tenant).await?;
        }
        self.keys
            .get(&tenant)
            .and_then(|k| {
                k.iter()
                    .filter(|((s, _), _)| s == scope)
                    .max_by_key(|((_, v), _)| *v)
                    .map(|((_, v), key)| (*v, *key))
            })
            .ok_or_else(|| WorkerError::Release {
                tenant,
                reason: format!("no key of scope {scope} was released"),
            })
    }

    /// Forget `tenant`'s keys (its seeds were shredded).
    pub fn forget(&mut self, tenant: &TenantId) {
        self.keys.remove(tenant);
    }

    /// Ask the key service for this worker's scopes of `tenant`.
    async fn release(&mut self, tenant: TenantId) -> Result<(), WorkerError> {
        let identity = self
            .identity
            .current()
            .ok_or_else(|| WorkerError::Event("not attested yet".into()))?;
        let keys = self.identity.keys();
        let scopes: Vec<&str> = self.scopes.iter().map(String::as_str).collect();
        let mut backoff = Backoff::default();
        let release = loop {
            let request = ReleaseRequest::new_signed(
                &keys.role().to_string(),
                keys.signing_key(),
                identity,
                &tenant,
                &scopes,
                Timestamp::now(),
            )
            .map_err(|e| WorkerError::Event(e.0))?;
            let body =
                serde_json::to_value(&request).map_err(|e| WorkerError::Event(e.to_string()))?;
            match self
                .client
                .request_json(reqwest::Method::POST, "/v1/keys/release", &[], Some(&body))
                .await
            {
                Ok(answer) => {
                    let release: Release =
                        serde_json::from_value(answer).map_err(|e| WorkerError::Release {
                            tenant,
                            reason: format!("not a release: {e}"),
                        })?;
                    break release.open(&request, keys.x25519()).map_err(|e| {
                        WorkerError::Release {
                            tenant,
                            reason: e.0,
                        }
                    })?;
                }
                Err(e) if transient(&e) => {
                    tracing::warn!(error = %e, "key release not answered; retrying");
                    backoff.wait().await;
                }
                Err(e) => return Err(WorkerError::Refused(Box::new(e))),
            }
        };
        tracing::info!(tenant = %tenant.0, scopes = ?scopes, "scope keys released");
        self.keys.insert(tenant, release);
        Ok(())
    }

    /// The `reads.audit` events that record this worker's opening of the sealed payloads at
    /// `entries` of `tenant` in `scope` (one per [`READS_AUDIT_ENTRIES_MAX`] entries).
    ///
    /// # Errors
    /// [`WorkerError::Event`] before the first attestation.
    pub async fn reads_events(
        &mut self,
        tenant: TenantId,
        scope: &str,
        entries: &[u64],
    ) -> Result<Vec<SignedEvent>, WorkerError> {
        let identity = self
            .identity
            .current()
            .ok_or_else(|| WorkerError::Event("not attested yet".into()))?;
        let mut out = Vec::new();
        for chunk in entries.chunks(READS_AUDIT_ENTRIES_MAX) {
            let Value::Object(body) = json!({"scope": scope, "entries": chunk}) else {
                continue;
            };
            out.push(
                self.sign(
                    READS_AUDIT,
                    tenant,
                    RequestId::new_v7(),
                    vec![identity],
                    body,
                    None,
                    Timestamp::now(),
                )
                .await?,
            );
        }
        Ok(out)
    }
}

/// Append `event` through `client` as [`Runtime::append`] does (for a task that holds only
/// the client).
///
/// # Errors
/// [`WorkerError::Refused`] with the node's refusal.
pub async fn append_to(client: &Client, event: &SignedEvent) -> Result<Appended, WorkerError> {
    let mut backoff = Backoff::default();
    loop {
        match client.append(event.bytes()).await {
            Ok(r) => return Ok(Appended::New(r)),
            Err(e) if matches!(problem_kind(&e), Some("duplicate" | "already-held")) => {
                return Ok(Appended::Already);
            }
            Err(e) if transient(&e) => {
                tracing::warn!(error = %e, kind = %event.event().kind, "append not answered; retrying");
                backoff.wait().await;
            }
            Err(e) => return Err(WorkerError::Refused(Box::new(e))),
        }
    }
}

fn read_position(path: &std::path::Path) -> Result<Option<Position>, WorkerError> {
    let err = |reason: String| WorkerError::State {
        path: path.to_path_buf(),
        reason,
    };
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(err(e.to_string())),
    };
    let saved: SavedPosition =
        serde_json::from_slice(&text).map_err(|e| err(format!("not a position: {e}")))?;
    let root = RootHash::try_from(saved.root.clone()).map_err(|e| err(format!("root: {e}")))?;
    Ok(Some(Position {
        size: saved.size,
        root,
        checkpoint: saved.checkpoint,
    }))
}

fn write_position(path: &std::path::Path, p: &Position) -> Result<(), WorkerError> {
    let saved = SavedPosition {
        size: p.size,
        root: p.root.to_string(),
        checkpoint: p.checkpoint.clone(),
    };
    let bytes = serde_json::to_vec_pretty(&saved).map_err(|e| WorkerError::State {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    crate::durable::write(path, &bytes).map_err(|e| WorkerError::State {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(kind: &str, status: u16) -> ClientError {
        ClientError::Problem {
            method: "POST".into(),
            path: "/v1/entries".into(),
            status,
            kind: kind.into(),
            title: String::new(),
            detail: String::new(),
        }
    }

    #[test]
    fn problem_kinds_are_read_from_the_nodes_type_uris() {
        assert_eq!(
            problem_kind(&problem("urn:govern:problem:duplicate", 409)),
            Some("duplicate")
        );
        assert_eq!(
            problem_kind(&problem("urn:govern:problem:already-held", 409)),
            Some("already-held")
        );
        assert_eq!(
            problem_kind(&problem("https://example.org/problems/not-witnessed", 503)),
            Some("not-witnessed")
        );
        assert!(transient(&problem("urn:govern:problem:not-witnessed", 503)));
        assert!(transient(&problem("urn:govern:problem:overloaded", 429)));
        assert!(!transient(&problem("urn:govern:problem:duplicate", 409)));
    }

    #[test]
    fn backoff_waits_stay_within_the_doubling_cap() {
        let mut b = Backoff::default();
        let mut cap = BACKOFF_BASE_MS;
        for _ in 0..12 {
            assert!(b.next_wait() <= Duration::from_millis(cap));
            cap = (cap * 2).min(BACKOFF_MAX_MS);
        }
        assert!(b.next_wait() <= Duration::from_millis(BACKOFF_MAX_MS));
    }
}
