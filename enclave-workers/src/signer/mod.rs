//! The five signers (docs/design.md §8; docs/formats.md, "The signers"): enclave processes
//! `signer-1` … `signer-5` holding 3-of-5 threshold ECDSA keys on secp256k1 (cggmp24), with
//! the log as their only input and their only channel to each other.
//!
//! Each round a signer
//! 1. follows the log to its latest witnessed checkpoint and folds every entry into its
//!    [`Custody`] (govern-admission: each hop's identity, routing edge, user signature and
//!    the policy outcome recomputed), opening the sealed transfers, policy changes and
//!    evaluations with its released scope keys (recorded in `reads.audit`);
//! 2. prepares its aux info once (safe primes, then the five-party aux-info protocol over the
//!    log; `aux.join`, `aux.ready`), sealed in its own [`vault::Vault`];
//! 3. for a `wallet.approved`, runs key generation with the other four (`mpc.join`, then
//!    `mpc.message`s) and appends `wallet.created` with the public key and the EVM address;
//!    its key share goes only into its vault;
//! 4. for a `transfer.approved`, checks the request's whole chain; a broken one gets
//!    `transfer.quarantined` with the failing hop's code and nothing is signed. Otherwise, if
//!    it is in the attempt's committee, it joins, naming the checkpoint it verified under;
//!    once the three have joined and their checkpoints agree with its own view of the log,
//!    they sign the EIP-1559 transaction each built from the transfer's own fields, and
//!    append `transfer.signed` (raw transaction sealed in `transfers`, its hash in clear);
//! 5. gives up an attempt that does not finish in time, or whose protocol blames a party
//!    (`mpc.aborted` naming the culprit): the next attempt takes the next committee.
//!
//! A protocol in progress cannot be saved: a signer that restarts aborts the attempts it had
//! joined, and the request goes on under the next attempt's execution id. Every result
//! carries the request as its uniqueness key, so nothing is signed or created twice.

pub mod eth;
pub mod inproc;
pub mod mpc;
pub mod vault;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender};
use std::time::{Duration, Instant};

use cggmp24::key_share::AuxInfo;
use cggmp24::security_level::SecurityLevel128;
use cggmp24::supported_curves::Secp256k1;
use cggmp24::{DataToSign, ExecutionId, IncompleteKeyShare, KeyShare, PregeneratedPrimes};
use govern_admission::custody::Custody;
use govern_core::event::{Kind, RequestId, SignedEvent, TenantId, Timestamp};
use govern_core::ids::{LeafHash, RootHash};
use govern_core::kinds::{
    AUX_JOIN, AUX_READY, KEYS_ROTATED, KEYS_SHREDDED, MPC_ABORTED, MPC_JOIN, MPC_MESSAGE,
    POLICY_CHANGED, POLICY_EVALUATED, TRANSFER_APPROVED, TRANSFER_QUARANTINED, TRANSFER_REQUESTED,
    TRANSFER_SIGNED, WALLET_APPROVED, WALLET_CREATED,
};
use govern_core::merkle;
use govern_core::seal::{open_action, sealed_scope};
use rand_core::{OsRng, SeedableRng as _};
use serde_json::{Map, Value, json};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use crate::identity::ServiceIdentity;
use crate::nsm::Nsm;
use crate::runtime::{Appended, POLL_WAIT_MS, Runtime, WorkerConfig, WorkerError, append_to};
use mpc::{Inbound, Outbound, RunError, Wire};

/// A signer's aux info (cggmp24's, at security level 128).
pub type SignerAux = cggmp24::key_share::AuxInfo<SecurityLevel128>;

/// The scopes a signer asks the key service for.
pub const SCOPES: [&str; 4] = ["approvals", "policies", "transfers", "wallets"];
/// The scope a signed transaction is sealed in.
pub const TX_SCOPE: &str = "transfers";
/// How long the members of an attempt have to join, from its start (log time).
pub const JOIN_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a key generation or a signing has, from the last join.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the aux-info protocol has, from the last join.
pub const AUX_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// A signer's role name.
#[must_use]
pub fn role(index: u16) -> String {
    format!("signer-{index}")
}

fn signer_of(role: &str) -> Option<u16> {
    role.strip_prefix("signer-")
        .and_then(|n| n.parse::<u16>().ok())
        .filter(|n| (1..=mpc::SIGNERS).contains(n))
}

/// How a signer misbehaves, for the fault tests only (debug builds; `GOVERN_TEST_MISBEHAVE`):
/// its signing messages are garbage, or sealed to the wrong key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Misbehave {
    /// Point-to-point messages replaced by random bytes (sealed correctly).
    Garbage,
    /// Point-to-point messages sealed to a key that is not the recipient's.
    WrongSeal,
}

/// A signer's own settings.
#[derive(Debug, Clone, Default)]
pub struct SignerOptions {
    /// Test-only aux info for all five signers (JSON `{"aux": [...]}`): installed instead of
    /// generating primes. Never in production.
    pub test_aux_info: Option<PathBuf>,
    /// Presignatures to keep ready per wallet and committee (0: none; every signing is the
    /// full protocol).
    pub presignatures: usize,
    /// Fault tests only.
    pub misbehave: Option<Misbehave>,
}

/// What a protocol run thread reports.
enum Done {
    Primes(Result<Box<PregeneratedPrimes<SecurityLevel128>>, String>),
    Aux {
        session: String,
        result: Result<Box<AuxInfo<SecurityLevel128>>, RunError>,
    },
    Keygen {
        eid: String,
        result: Result<Box<IncompleteKeyShare<Secp256k1>>, RunError>,
    },
    Sign {
        eid: String,
        result: Result<cggmp24::Signature<Secp256k1>, RunError>,
    },
    Presign {
        eid: String,
        result: Result<Presig, RunError>,
    },
}

/// A transfer as the signer read it.
#[derive(Debug, Clone)]
struct Transfer {
    /// The wallet its signed path names.
    wallet: String,
    /// Its opened parameters (`None`: its tenant's keys are gone).
    params: Option<Map<String, Value>>,
}

/// A member's join of an attempt, as the log shows it.
#[derive(Debug, Clone)]
struct Join {
    time: Timestamp,
    size: u64,
    root: Option<RootHash>,
    x25519: [u8; 32],
    /// The presignature the member offers for this signing, by its number.
    presignature: Option<u32>,
}

/// A presignature and its public data, held only in this signer's memory.
type Presig = Box<(
    cggmp24::Presignature<Secp256k1>,
    cggmp24::signing::PresignaturePublicData<Secp256k1>,
)>;

/// A presignature run: which wallet and committee, its number, who joined.
#[derive(Debug)]
struct PresignRun {
    wallet: String,
    committee: [u16; 3],
    seq: u32,
    joins: BTreeMap<u16, Join>,
    /// This process joined it (when).
    joined: Option<Instant>,
    started: bool,
    done: bool,
}

/// A wallet this signer may hold a share of.
#[derive(Debug, Clone)]
struct WalletInfo {
    tenant: TenantId,
    request: RequestId,
    /// Its `wallet.created`.
    created: LeafHash,
}

/// What a request needs from the signers.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Work {
    /// Key generation for a wallet.
    Keygen,
    /// A signature for a transfer from `wallet`.
    Sign { wallet: String },
}

/// A request the signers owe a result.
#[derive(Debug)]
struct Job {
    tenant: TenantId,
    request: RequestId,
    work: Work,
    /// The request's first event (the committee rotation's seed).
    seed: LeafHash,
    /// The approval that opened the session (its leaf hash goes into every execution id).
    trigger: LeafHash,
    attempt: u32,
    /// When the current attempt began (log time): the trigger's, or the abort's before it.
    started: Timestamp,
    /// The event the current attempt's joins follow.
    follows: LeafHash,
    joins: BTreeMap<u32, BTreeMap<u16, Join>>,
    /// Attempts this process joined, aborted, or ran.
    joined: BTreeSet<u32>,
    aborted: BTreeSet<u32>,
    started_runs: BTreeSet<u32>,
    settled: bool,
}

impl Job {
    fn members(&self, attempt: u32) -> Vec<u16> {
        match self.work {
            Work::Keygen => (1..=mpc::SIGNERS).collect(),
            Work::Sign { .. } => mpc::committee(self.seed.0.as_bytes(), attempt).to_vec(),
        }
    }

    fn purpose(&self) -> &'static str {
        match self.work {
            Work::Keygen => "keygen",
            Work::Sign { .. } => "sign",
        }
    }

    fn eid(&self, attempt: u32) -> [u8; 32] {
        mpc::execution_id(
            self.purpose(),
            self.trigger.0.as_bytes(),
            &self.members(attempt),
            attempt,
        )
    }
}

/// A message's parts are gathered by sender, recipient (`None`: all) and round.
type PartKey = (u16, Option<u16>, u32);

/// A protocol run this signer takes part in: where its messages go, and what it sends.
#[derive(Debug)]
struct Session {
    request: Option<RequestId>,
    attempt: u32,
    /// Protocol party index → signer index.
    members: Vec<u16>,
    inbox: Sender<Inbound>,
    /// The inbox's other end, until the run starts.
    pending: Option<Receiver<Inbound>>,
    /// Parts of messages not yet whole: (from, to, round) → parts.
    parts: HashMap<PartKey, Vec<Option<Vec<u8>>>>,
    /// This signer's join (the parent of its messages).
    join: LeafHash,
    /// The presignature this signer offered in its join (taken out of the pool: it is
    /// never offered again, whatever the attempt comes to).
    presig: Option<(u32, Held)>,
}

/// A presignature taken for one signing (its secret never printed).
struct Held(Presig);

impl std::fmt::Debug for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("presignature")
    }
}

/// Aux-info preparation, as the log shows it.
#[derive(Default)]
struct AuxProgress {
    /// Joins by attempt, then signer.
    joins: BTreeMap<u32, BTreeMap<u16, Join>>,
    /// `aux.ready` by session: who, and the last one's time.
    ready: BTreeMap<String, BTreeSet<u16>>,
    /// The session every signer is ready in (the latest).
    active: Option<String>,
    /// This process's joins (by attempt) and the session it runs.
    joined: BTreeSet<u32>,
    running: Option<u32>,
    primes: Option<Box<PregeneratedPrimes<SecurityLevel128>>>,
    primes_started: bool,
    fixture_sent: bool,
}

impl std::fmt::Debug for Done {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Primes(_) => "Primes",
            Self::Aux { .. } => "Aux",
            Self::Keygen { .. } => "Keygen",
            Self::Sign { .. } => "Sign",
            Self::Presign { .. } => "Presign",
        })
    }
}

/// A signer.
pub struct SignerWorker {
    rt: Runtime,
    index: u16,
    options: SignerOptions,
    identity: Arc<ServiceIdentity>,
    vault: vault::Vault,
    custody: Custody,
    /// The tree of the entries folded so far, and its root after each entry (what a
    /// member's named checkpoint is compared with).
    tree: merkle::Frontier,
    roots: Vec<RootHash>,
    genesis: Option<LeafHash>,
    aux: AuxProgress,
    aux_info: Option<Box<AuxInfo<SecurityLevel128>>>,
    jobs: BTreeMap<RequestId, Job>,
    /// Each transfer's wallet (from its signed path) and opened parameters, by request.
    transfers: HashMap<RequestId, Transfer>,
    /// Running and expected protocol runs, by execution id (hex).
    sessions: HashMap<String, Session>,
    done_tx: UnboundedSender<Done>,
    done_rx: UnboundedReceiver<Done>,
    out_tx: UnboundedSender<SignedEvent>,
    /// Opened payloads not yet recorded in `reads.audit`.
    reads: BTreeMap<(TenantId, String), Vec<u64>>,
    /// Presignatures by wallet and committee, by number: memory only.
    pool: HashMap<(String, [u16; 3]), BTreeMap<u32, Presig>>,
    /// Presignature runs by execution id (hex).
    presigns: HashMap<String, PresignRun>,
    /// Wallets whose key the log records, by wallet id.
    wallets: BTreeMap<String, WalletInfo>,
    /// Key shares read from the vault, by their vault name.
    shares: std::sync::Mutex<HashMap<String, Arc<KeyShare<Secp256k1>>>>,
}

impl std::fmt::Debug for SignerWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignerWorker")
            .field("index", &self.index)
            .field("size", &self.custody.size())
            .field("jobs", &self.jobs.len())
            .finish_non_exhaustive()
    }
}

impl SignerWorker {
    /// Signer `index` (1..=5) of `config` (its role must be `signer-<index>`).
    ///
    /// # Errors
    /// As [`Runtime::new`]; the vault cannot be opened.
    pub fn new(
        index: u16,
        config: WorkerConfig,
        nsm: Box<dyn Nsm>,
        options: SignerOptions,
    ) -> Result<Self, WorkerError> {
        let state_dir = config.state_dir.clone();
        let rt = Runtime::new(config, nsm)?;
        let vault =
            vault::Vault::open(&state_dir, &role(index)).map_err(|e| WorkerError::State {
                path: state_dir.clone(),
                reason: e.to_string(),
            })?;
        let (done_tx, done_rx) = unbounded_channel();
        let (out_tx, out_rx) = unbounded_channel();
        tokio::spawn(append_loop(rt.client().clone(), out_rx));
        Ok(Self {
            identity: rt.identity_handle(),
            rt,
            index,
            options,
            vault,
            custody: Custody::new(),
            tree: merkle::Frontier::new(),
            roots: Vec::new(),
            genesis: None,
            aux: AuxProgress::default(),
            aux_info: None,
            jobs: BTreeMap::new(),
            transfers: HashMap::new(),
            sessions: HashMap::new(),
            done_tx,
            done_rx,
            out_tx,
            reads: BTreeMap::new(),
            pool: HashMap::new(),
            presigns: HashMap::new(),
            wallets: BTreeMap::new(),
            shares: std::sync::Mutex::new(HashMap::new()),
        })
    }

    /// Run until an error that waiting does not cure.
    ///
    /// # Errors
    /// [`WorkerError`]: the log does not verify, the node refuses this signer.
    pub async fn run(mut self) -> Result<(), WorkerError> {
        loop {
            self.round().await?;
            let wait = self.wait();
            let done = {
                let rt = &self.rt;
                let rx = &mut self.done_rx;
                tokio::select! {
                    () = rt.wait_for_growth(wait) => None,
                    d = rx.recv() => d,
                }
            };
            if let Some(d) = done {
                self.finished(d).await?;
                while let Ok(d) = self.done_rx.try_recv() {
                    self.finished(d).await?;
                }
            }
        }
    }

    /// How long to wait for the log: until the next attempt's deadline, at most the long
    /// poll's bound.
    fn wait(&self) -> Duration {
        let now = Timestamp::now().unix_ms();
        let mut wait = POLL_WAIT_MS;
        for job in self.jobs.values().filter(|j| !j.settled) {
            let deadline = self.deadline(job);
            let ms = u64::try_from(deadline - now).unwrap_or(0) + 1;
            wait = wait.min(ms.max(50));
        }
        Duration::from_millis(wait)
    }

    /// The current attempt's deadline (unix ms, log time): the joins', then the run's.
    fn deadline(&self, job: &Job) -> i64 {
        let members = job.members(job.attempt);
        let joins = job.joins.get(&job.attempt);
        let all = joins.is_some_and(|j| members.iter().all(|m| j.contains_key(m)));
        if all {
            let last = joins
                .and_then(|j| j.values().map(|x| x.time.unix_ms()).max())
                .unwrap_or_else(|| job.started.unix_ms());
            last + i64::try_from(RUN_TIMEOUT.as_millis()).unwrap_or(i64::MAX)
        } else {
            job.started.unix_ms() + i64::try_from(JOIN_TIMEOUT.as_millis()).unwrap_or(i64::MAX)
        }
    }

    /// One round: follow, attest if due, fold, act.
    ///
    /// # Errors
    /// [`WorkerError`].
    pub async fn round(&mut self) -> Result<(), WorkerError> {
        let batch = self.rt.follow(|_| true).await?;
        if self.rt.attestation_due() {
            self.rt.attest().await?;
        }
        for (index, signed) in batch {
            self.fold(index, &signed).await?;
        }
        self.record_reads().await?;
        self.act_aux().await?;
        self.act().await?;
        self.act_presign().await
    }

    /// Fold one entry.
    async fn fold(&mut self, index: u64, signed: &SignedEvent) -> Result<(), WorkerError> {
        let event = signed.event();
        let kind = event.kind.as_str();
        let leaf = signed.leaf_hash();
        if index == 0 {
            self.genesis = Some(leaf);
        }
        self.tree.push(leaf, &mut Vec::new());
        self.roots.push(self.tree.root());
        let opened = match kind {
            TRANSFER_REQUESTED | POLICY_CHANGED | POLICY_EVALUATED => {
                self.open(index, signed).await?
            }
            _ => None,
        };
        if kind == TRANSFER_REQUESTED {
            let wallet = event
                .body
                .get("action")
                .and_then(|a| a.get("path"))
                .and_then(Value::as_str)
                .and_then(|p| p.strip_prefix("/v1/wallets/"))
                .and_then(|p| p.strip_suffix("/transfers"))
                .unwrap_or_default()
                .to_string();
            self.transfers.insert(
                event.request,
                Transfer {
                    wallet,
                    params: opened.clone(),
                },
            );
        }
        if kind == KEYS_SHREDDED || kind == KEYS_ROTATED {
            self.rt.forget(&event.tenant);
        }
        self.custody.apply(index, signed, opened.as_ref());
        let from = signer_of(event.producer.role.as_str());
        match kind {
            WALLET_APPROVED => self.open_job(signed, Work::Keygen),
            TRANSFER_APPROVED => {
                let wallet = self
                    .transfers
                    .get(&event.request)
                    .map(|t| t.wallet.clone())
                    .unwrap_or_default();
                self.open_job(signed, Work::Sign { wallet });
            }
            WALLET_CREATED | TRANSFER_SIGNED | TRANSFER_QUARANTINED => {
                if let Some(job) = self.jobs.get_mut(&event.request) {
                    job.settled = true;
                }
                if kind == WALLET_CREATED {
                    self.wallets
                        .entry(event.request.0.to_string())
                        .or_insert(WalletInfo {
                            tenant: event.tenant,
                            request: event.request,
                            created: leaf,
                        });
                }
                // A signing still running is moot. A key generation is not: this signer's
                // share of the key the log now names comes out of it, so it runs to its end.
                if kind != WALLET_CREATED {
                    self.sessions
                        .retain(|_, s| s.request != Some(event.request));
                }
            }
            MPC_JOIN => {
                if let Some(from) = from {
                    if event.body.get("purpose").and_then(Value::as_str) == Some("presign") {
                        self.fold_presign_join(signed, from);
                    } else {
                        self.fold_join(signed, from);
                    }
                }
            }
            MPC_ABORTED => self.fold_abort(signed),
            MPC_MESSAGE => {
                if let Some(from) = from {
                    self.fold_message(signed, from);
                }
            }
            AUX_JOIN => {
                // A real attempt's join: its session is that attempt's execution id.
                let attempt = event
                    .body
                    .get("attempt")
                    .and_then(Value::as_u64)
                    .and_then(|a| u32::try_from(a).ok())
                    .filter(|a| *a < u32::MAX);
                if let (Some(from), Some(a), Some(genesis)) = (from, attempt, self.genesis) {
                    let eid = mpc::execution_id("aux", genesis.0.as_bytes(), &ALL, a);
                    let session = event.body.get("session").and_then(Value::as_str);
                    if session == Some(hex::encode(eid).as_str())
                        && let Some(join) = self.join_of(signed)
                    {
                        self.aux.joins.entry(a).or_default().insert(from, join);
                    }
                }
            }
            AUX_READY => {
                if let (Some(from), Some(session)) =
                    (from, event.body.get("session").and_then(Value::as_str))
                {
                    let ready = self.aux.ready.entry(session.to_string()).or_default();
                    ready.insert(from);
                    if ready.len() == usize::from(mpc::SIGNERS) {
                        self.aux.active = Some(session.to_string());
                        self.aux_info = None;
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// The opened payload the custody fold reads (a sealed action's parameters, an
    /// evaluation's reasons): `None` when the tenant's keys are gone; an empty object when
    /// it does not open (the fold judges that as invalid).
    async fn open(
        &mut self,
        index: u64,
        signed: &SignedEvent,
    ) -> Result<Option<Map<String, Value>>, WorkerError> {
        let event = signed.event();
        let Ok((scope, version)) = sealed_scope(event) else {
            return Ok(Some(Map::new()));
        };
        let key = match self.rt.scope_key(event.tenant, &scope, version).await {
            Ok(k) => k,
            Err(WorkerError::Refused(c)) if matches!(c.status(), Some(404 | 410)) => {
                tracing::warn!(index, error = %c, "cannot open: the tenant has no keys");
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        self.reads
            .entry((event.tenant, scope))
            .or_default()
            .push(index);
        if event.kind.as_str() == POLICY_EVALUATED {
            return Ok(Some(
                govern_core::seal::open(event, &key)
                    .ok()
                    .and_then(|plain| serde_json::from_slice(&plain).ok())
                    .unwrap_or_default(),
            ));
        }
        Ok(Some(open_action(event, &key).unwrap_or_default()))
    }

    /// Append the `reads.audit` of what this round opened.
    async fn record_reads(&mut self) -> Result<(), WorkerError> {
        if self.identity.current().is_none() {
            return Ok(());
        }
        for ((tenant, scope), entries) in std::mem::take(&mut self.reads) {
            for event in self.rt.reads_events(tenant, &scope, &entries).await? {
                self.rt.append(&event).await?;
            }
        }
        Ok(())
    }

    /// A join's facts: its checkpoint and its producer's X25519 key as of now.
    fn join_of(&self, signed: &SignedEvent) -> Option<Join> {
        let event = signed.event();
        let identity = self
            .custody
            .state()
            .services
            .identities
            .get(&event.producer.role)?;
        if identity.ed25519 != event.producer.key {
            return None;
        }
        let checkpoint = event.body.get("checkpoint");
        Some(Join {
            time: event.time,
            size: checkpoint
                .and_then(|c| c.get("size"))
                .and_then(Value::as_u64)
                .unwrap_or(0),
            root: checkpoint
                .and_then(|c| c.get("root"))
                .and_then(Value::as_str)
                .and_then(|r| RootHash::try_from(r.to_string()).ok()),
            x25519: identity.x25519,
            presignature: event
                .body
                .get("presignature")
                .and_then(Value::as_u64)
                .and_then(|n| u32::try_from(n).ok()),
        })
    }

    /// A request the signers now owe a result: from its approval.
    fn open_job(&mut self, signed: &SignedEvent, work: Work) {
        let event = signed.event();
        if self.jobs.contains_key(&event.request) {
            return;
        }
        let Some(seed) = self
            .custody
            .state()
            .tenants
            .get(&event.tenant)
            .and_then(|t| t.requests.get(&event.request.0.to_string()))
            .and_then(|r| r.events.first())
            .map(|s| s.leaf)
        else {
            return;
        };
        let leaf = signed.leaf_hash();
        self.jobs.insert(
            event.request,
            Job {
                tenant: event.tenant,
                request: event.request,
                work,
                seed,
                trigger: leaf,
                attempt: 0,
                started: event.time,
                follows: leaf,
                joins: BTreeMap::new(),
                joined: BTreeSet::new(),
                aborted: BTreeSet::new(),
                started_runs: BTreeSet::new(),
                settled: false,
            },
        );
    }

    fn fold_join(&mut self, signed: &SignedEvent, from: u16) {
        let event = signed.event();
        let Some(join) = self.join_of(signed) else {
            return;
        };
        let Some(job) = self.jobs.get_mut(&event.request) else {
            return;
        };
        let Some(attempt) = event
            .body
            .get("attempt")
            .and_then(Value::as_u64)
            .and_then(|a| u32::try_from(a).ok())
        else {
            return;
        };
        let session = event.body.get("session").and_then(Value::as_str);
        if session != Some(hex::encode(job.eid(attempt)).as_str())
            || !job.members(attempt).contains(&from)
        {
            tracing::warn!(%from, attempt, "a join that is not this attempt's: ignored");
            return;
        }
        job.joins.entry(attempt).or_default().insert(from, join);
    }

    fn fold_abort(&mut self, signed: &SignedEvent) {
        let event = signed.event();
        let Some(job) = self.jobs.get_mut(&event.request) else {
            return;
        };
        let attempt = event.body.get("attempt").and_then(Value::as_u64);
        if attempt != Some(u64::from(job.attempt)) {
            return;
        }
        let old = hex::encode(job.eid(job.attempt));
        let reason = event
            .body
            .get("reason")
            .and_then(Value::as_str)
            .unwrap_or("");
        let culprit = event
            .body
            .get("culprit")
            .and_then(Value::as_str)
            .unwrap_or("");
        tracing::info!(
            request = %job.request.0,
            attempt = job.attempt,
            reason,
            culprit,
            "attempt aborted; the next committee takes it"
        );
        job.attempt += 1;
        job.started = event.time;
        job.follows = signed.leaf_hash();
        // A signing of the attempt given up is moot. A key generation runs to its end: if
        // it finishes, its key may be the one the log records, and this signer's share of
        // it must be in the vault.
        if matches!(job.work, Work::Sign { .. }) {
            self.sessions.remove(&old);
        }
    }

    fn fold_message(&mut self, signed: &SignedEvent, from: u16) {
        let Ok(wire) = Wire::parse(&signed.event().body) else {
            return;
        };
        if wire.from != from || from == self.index || wire.to.is_some_and(|t| t != self.index) {
            return;
        }
        let Some(session) = self.sessions.get_mut(&wire.session) else {
            return;
        };
        let Some(party) = session.members.iter().position(|m| *m == from) else {
            return;
        };
        let party = u16::try_from(party).unwrap_or(u16::MAX);
        let parts = session
            .parts
            .entry((from, wire.to, wire.round))
            .or_insert_with(|| vec![None; usize::from(wire.parts)]);
        if parts.len() != usize::from(wire.parts) {
            let _ = session.inbox.send(Inbound::Bad {
                from: party,
                reason: "a message whose parts disagree on their number".into(),
            });
            return;
        }
        parts[usize::from(wire.part)] = Some(wire.data);
        if parts.iter().any(Option::is_none) {
            return;
        }
        let whole: Vec<u8> = session
            .parts
            .remove(&(from, wire.to, wire.round))
            .unwrap_or_default()
            .into_iter()
            .flatten()
            .flatten()
            .collect();
        let inbound = match wire.to {
            None => Inbound::Message {
                from: party,
                broadcast: true,
                bytes: whole,
            },
            Some(me) => {
                let mut eid = [0u8; 32];
                if hex::decode_to_slice(&wire.session, &mut eid).is_err() {
                    return;
                }
                let info = mpc::seal_info(&eid, wire.round, from, me);
                match mpc::open(self.identity.keys().x25519(), &info, &whole) {
                    Ok(bytes) => Inbound::Message {
                        from: party,
                        broadcast: false,
                        bytes,
                    },
                    Err(reason) => Inbound::Bad {
                        from: party,
                        reason: format!("a point-to-point message {reason}"),
                    },
                }
            }
        };
        let _ = session.inbox.send(inbound);
    }

    /// Sign an event of this signer now.
    fn event(
        &self,
        kind: &str,
        tenant: TenantId,
        request: RequestId,
        parents: Vec<LeafHash>,
        body: Value,
    ) -> Result<SignedEvent, WorkerError> {
        let Value::Object(body) = body else {
            return Err(WorkerError::Event("a body is an object".into()));
        };
        let kind = Kind::new(kind).map_err(|e| WorkerError::Event(e.to_string()))?;
        self.identity
            .sign(kind, tenant, request, parents, body, Timestamp::now())
            .map_err(|e| WorkerError::Event(e.to_string()))
    }

    async fn append(&self, event: &SignedEvent) -> Result<(), WorkerError> {
        match self.rt.append(event).await? {
            Appended::New(r) => {
                tracing::debug!(kind = %event.event().kind, index = r.index, "appended");
            }
            Appended::Already => {
                tracing::debug!(kind = %event.event().kind, "already in the log");
            }
        }
        Ok(())
    }

    /// A presignature run's join: the committee's lowest member opens one for a wallet and
    /// committee; the other two join it.
    fn fold_presign_join(&mut self, signed: &SignedEvent, from: u16) {
        let event = signed.event();
        let wallet = event.request.0.to_string();
        let Some(info) = self.wallets.get(&wallet).cloned() else {
            return;
        };
        let Some(join) = self.join_of(signed) else {
            return;
        };
        let body = &event.body;
        let (Some(seq), Some(committee)) = (
            body.get("attempt")
                .and_then(Value::as_u64)
                .and_then(|a| u32::try_from(a).ok()),
            body.get("committee")
                .and_then(Value::as_array)
                .and_then(|c| {
                    let m: Vec<u16> = c
                        .iter()
                        .filter_map(|r| r.as_str().and_then(signer_of))
                        .collect();
                    <[u16; 3]>::try_from(m).ok()
                }),
        ) else {
            return;
        };
        let eid = mpc::execution_id("presign", info.created.0.as_bytes(), &committee, seq);
        let hex_eid = hex::encode(eid);
        if body.get("session").and_then(Value::as_str) != Some(hex_eid.as_str())
            || !committee.contains(&from)
            || !mpc::committees().contains(&committee)
        {
            return;
        }
        self.presigns
            .entry(hex_eid)
            .or_insert_with(|| PresignRun {
                wallet,
                committee,
                seq,
                joins: BTreeMap::new(),
                joined: None,
                started: false,
                done: false,
            })
            .joins
            .insert(from, join);
    }

    /// Keep `presignatures` ready per wallet and committee: the lowest member of a committee
    /// opens a run (one at a time per signer), the others join what is opened, and a run
    /// starts once its three have joined.
    async fn act_presign(&mut self) -> Result<(), WorkerError> {
        let target = self.options.presignatures;
        if target == 0 || self.aux_info.is_none() || self.identity.current().is_none() {
            return Ok(());
        }
        // Join what others opened.
        let open: Vec<String> = self
            .presigns
            .iter()
            .filter(|(_, p)| !p.done && p.joined.is_none() && p.committee.contains(&self.index))
            .map(|(e, _)| e.clone())
            .collect();
        for eid in open {
            let Some(p) = self.presigns.get(&eid) else {
                continue;
            };
            let (wallet, committee, seq) = (p.wallet.clone(), p.committee, p.seq);
            if p.joins.contains_key(&self.index) {
                // An earlier run of this signer joined it and lost it.
                if let Some(p) = self.presigns.get_mut(&eid) {
                    p.done = true;
                }
                continue;
            }
            self.join_presign(&wallet, committee, seq).await?;
        }
        // Open one where the pool is short and no run of this signer's is in flight.
        let busy = self.presigns.values().any(|p| {
            !p.done
                && p.committee[0] == self.index
                && p.joined.is_some_and(|t| t.elapsed() < RUN_TIMEOUT)
        });
        if !busy {
            let wallets: Vec<(String, WalletInfo)> = self
                .wallets
                .iter()
                .map(|(w, i)| (w.clone(), i.clone()))
                .collect();
            'open: for (wallet, info) in wallets {
                if self.share(info.tenant, &wallet)?.is_none() {
                    continue;
                }
                for committee in mpc::committees() {
                    if committee[0] != self.index {
                        continue;
                    }
                    let have = self
                        .pool
                        .get(&(wallet.clone(), committee))
                        .map_or(0, BTreeMap::len);
                    if have >= target {
                        continue;
                    }
                    let seq = self
                        .presigns
                        .values()
                        .filter(|p| p.wallet == wallet && p.committee == committee)
                        .map(|p| p.seq + 1)
                        .max()
                        .unwrap_or(0);
                    self.join_presign(&wallet, committee, seq).await?;
                    break 'open;
                }
            }
        }
        // Start the runs whose three have joined.
        let ready: Vec<String> = self
            .presigns
            .iter()
            .filter(|(_, p)| {
                !p.done
                    && !p.started
                    && p.joined.is_some()
                    && p.committee.iter().all(|m| p.joins.contains_key(m))
            })
            .map(|(e, _)| e.clone())
            .collect();
        for eid in ready {
            self.start_presign(&eid)?;
        }
        Ok(())
    }

    /// Join (or open) presignature run `seq` of `wallet` by `committee`.
    async fn join_presign(
        &mut self,
        wallet: &str,
        committee: [u16; 3],
        seq: u32,
    ) -> Result<(), WorkerError> {
        let Some(info) = self.wallets.get(wallet).cloned() else {
            return Ok(());
        };
        let eid = mpc::execution_id("presign", info.created.0.as_bytes(), &committee, seq);
        let hex_eid = hex::encode(eid);
        let body = json!({
            "session": hex_eid,
            "attempt": seq,
            "committee": committee.iter().map(|m| role(*m)).collect::<Vec<_>>(),
            "checkpoint": {
                "size": self.rt.size(),
                "root": self.rt.root().map(|r| r.to_string()).unwrap_or_default(),
            },
            "purpose": "presign",
        });
        let event = self.event(
            MPC_JOIN,
            info.tenant,
            info.request,
            vec![info.created],
            body,
        )?;
        self.expect_session(&eid, None, seq, committee.to_vec(), event.leaf_hash());
        self.presigns
            .entry(hex_eid)
            .or_insert_with(|| PresignRun {
                wallet: wallet.to_string(),
                committee,
                seq,
                joins: BTreeMap::new(),
                joined: None,
                started: false,
                done: false,
            })
            .joined = Some(Instant::now());
        self.append(&event).await
    }

    /// Run presignature generation `eid` on a thread of its own.
    fn start_presign(&mut self, eid_hex: &str) -> Result<(), WorkerError> {
        let Some(p) = self.presigns.get_mut(eid_hex) else {
            return Ok(());
        };
        p.started = true;
        let (wallet, committee, joins) = (p.wallet.clone(), p.committee, p.joins.clone());
        let Some(info) = self.wallets.get(&wallet).cloned() else {
            return Ok(());
        };
        let Some(share) = self.share(info.tenant, &wallet)? else {
            return Ok(());
        };
        let Some(session) = self.sessions.get_mut(eid_hex) else {
            return Ok(());
        };
        let Some(inbox) = session.pending.take() else {
            return Ok(());
        };
        let join = session.join;
        let mut eid = [0u8; 32];
        if hex::decode_to_slice(eid_hex, &mut eid).is_err() {
            return Ok(());
        }
        let misbehave = self.options.misbehave;
        let outbox = self.outbox(
            eid,
            info.tenant,
            info.request,
            &committee,
            &joins,
            join,
            misbehave,
        );
        let done = self.done_tx.clone();
        let deadline = Instant::now() + RUN_TIMEOUT;
        let me = u16::try_from(committee.iter().position(|m| *m == self.index).unwrap_or(0))
            .unwrap_or(0);
        let parties: Vec<u16> = committee.iter().map(|m| m - 1).collect();
        let eid_hex = eid_hex.to_string();
        std::thread::spawn(move || {
            let mut outbox = outbox;
            let result = rand_chacha::ChaCha20Rng::from_rng(OsRng)
                .map_err(|e| RunError::Failed(e.to_string()))
                .and_then(|mut rng| {
                    let machine = round_based::state_machine::wrap_protocol(|party| async move {
                        let share: &KeyShare<Secp256k1> = &share;
                        cggmp24::signing(ExecutionId::new(&eid), me, &parties, share)
                            .generate_presignature(&mut rng, party)
                            .await
                    });
                    mpc::drive(machine, &inbox, &mut |o| outbox.send(o), deadline)
                });
            let _ = done.send(Done::Presign {
                eid: eid_hex,
                result: result.map(Box::new),
            });
        });
        Ok(())
    }

    /// A new protocol run's inbox, registered under its execution id.
    fn expect_session(
        &mut self,
        eid: &[u8; 32],
        request: Option<RequestId>,
        attempt: u32,
        members: Vec<u16>,
        join: LeafHash,
    ) {
        let (tx, rx) = std::sync::mpsc::channel();
        self.sessions.insert(
            hex::encode(eid),
            Session {
                request,
                attempt,
                members,
                inbox: tx,
                pending: Some(rx),
                parts: HashMap::new(),
                join,
                presig: None,
            },
        );
    }

    /// What a run sends, and to whom: the members' X25519 keys from their joins.
    #[allow(clippy::too_many_arguments)]
    fn outbox(
        &self,
        eid: [u8; 32],
        tenant: TenantId,
        request: RequestId,
        members: &[u16],
        joins: &BTreeMap<u16, Join>,
        join: LeafHash,
        misbehave: Option<Misbehave>,
    ) -> Outbox {
        Outbox {
            identity: self.identity.clone(),
            tenant,
            request,
            join,
            eid,
            me: self.index,
            members: members.to_vec(),
            keys: joins.iter().map(|(m, j)| (*m, j.x25519)).collect(),
            rounds: HashMap::new(),
            out: self.out_tx.clone(),
            misbehave,
        }
    }

    /// The root of the log's first `size` entries, as this signer folded them.
    fn root_at(&self, size: u64) -> Option<RootHash> {
        match usize::try_from(size).ok()? {
            0 => Some(merkle::Frontier::new().root()),
            n => self.roots.get(n - 1).copied(),
        }
    }

    /// Prepare aux info: install the test fixture, or generate primes and run the
    /// aux-info protocol with the other four.
    async fn act_aux(&mut self) -> Result<(), WorkerError> {
        if let Some(active) = self.aux.active.clone()
            && self.aux_info.is_none()
        {
            match self.vault.get(&format!("aux-{active}")) {
                Ok(Some(bytes)) => match serde_json::from_slice(&bytes) {
                    Ok(aux) => {
                        tracing::info!(session = %active, "aux info ready");
                        self.aux_info = Some(Box::new(aux));
                    }
                    Err(e) => tracing::error!(error = %e, "the vault's aux info does not parse"),
                },
                Ok(None) => {}
                Err(e) => tracing::error!(error = %e, "the vault's aux info"),
            }
        }
        if self.aux_info.is_some() || self.identity.current().is_none() {
            return Ok(());
        }
        let Some(attested) = self.identity.current() else {
            return Ok(());
        };
        if let Some(path) = self.options.test_aux_info.clone() {
            if self.aux.fixture_sent {
                return Ok(());
            }
            let bytes = std::fs::read(&path).map_err(|e| WorkerError::State {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            let session = format!("fixture-{}", &hex::encode(sha2_256(&bytes))[..32]);
            let all: Value = serde_json::from_slice(&bytes).map_err(|e| WorkerError::State {
                path: path.clone(),
                reason: format!("not the aux-info fixture: {e}"),
            })?;
            let mine = all
                .get("aux")
                .and_then(|a| a.get(usize::from(self.index - 1)))
                .ok_or_else(|| WorkerError::State {
                    path: path.clone(),
                    reason: "no aux info for this signer".into(),
                })?;
            self.vault
                .put(
                    &format!("aux-{session}"),
                    &serde_json::to_vec(mine).unwrap_or_default(),
                )
                .map_err(|e| WorkerError::State {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
            let request = request_of(&sha2_256(session.as_bytes()));
            let body = json!({"session": session, "fixture": true});
            let join = self.event(
                AUX_JOIN,
                TenantId::SYSTEM,
                request,
                vec![attested],
                body.clone(),
            )?;
            self.append(&join).await?;
            let ready = self.event(
                AUX_READY,
                TenantId::SYSTEM,
                request,
                vec![join.leaf_hash()],
                body,
            )?;
            self.append(&ready).await?;
            tracing::warn!(
                "aux info installed from a TEST-ONLY fixture ({}): never in production",
                path.display()
            );
            self.aux.fixture_sent = true;
            return Ok(());
        }
        if self.aux.primes.is_none() {
            match self.vault.get("primes") {
                Ok(Some(bytes)) => {
                    self.aux.primes = serde_json::from_slice(&bytes).ok().map(Box::new);
                }
                Ok(None) => {}
                Err(e) => tracing::error!(error = %e, "the vault's primes"),
            }
        }
        let Some(primes) = self.aux.primes.clone() else {
            if !self.aux.primes_started {
                self.aux.primes_started = true;
                tracing::info!("generating this signer's safe primes (minutes)");
                let done = self.done_tx.clone();
                std::thread::spawn(move || {
                    let result = rand_chacha::ChaCha20Rng::from_rng(OsRng)
                        .map_err(|e| e.to_string())
                        .map(|mut rng| {
                            Box::new(PregeneratedPrimes::<SecurityLevel128>::generate(&mut rng))
                        });
                    let _ = done.send(Done::Primes(result));
                });
            }
            return Ok(());
        };
        let Some(genesis) = self.genesis else {
            return Ok(());
        };
        let current = self.aux.joins.keys().max().copied().unwrap_or(0);
        if let Some(a) = self.aux.running
            && a < current
        {
            let eid = mpc::execution_id("aux", genesis.0.as_bytes(), &ALL, a);
            self.sessions.remove(&hex::encode(eid));
            self.aux.running = None;
        }
        if self.aux.running.is_none() {
            let mine_in_log = self
                .aux
                .joins
                .get(&current)
                .is_some_and(|j| j.contains_key(&self.index));
            let target = if mine_in_log { current + 1 } else { current };
            if !self.aux.joined.contains(&target) {
                let eid = mpc::execution_id("aux", genesis.0.as_bytes(), &ALL, target);
                let request = request_of(&eid);
                let join = self.event(
                    AUX_JOIN,
                    TenantId::SYSTEM,
                    request,
                    vec![attested],
                    json!({"session": hex::encode(eid), "attempt": target}),
                )?;
                self.expect_session(&eid, None, target, ALL.to_vec(), join.leaf_hash());
                self.append(&join).await?;
                self.aux.joined.insert(target);
                self.aux.running = Some(target);
                tracing::info!(attempt = target, "joined the aux-info protocol");
            }
        }
        let Some(a) = self.aux.running else {
            return Ok(());
        };
        let joins = self.aux.joins.get(&a).cloned().unwrap_or_default();
        if joins.len() < usize::from(mpc::SIGNERS) {
            return Ok(());
        }
        let eid = mpc::execution_id("aux", genesis.0.as_bytes(), &ALL, a);
        let hex_eid = hex::encode(eid);
        let Some(session) = self.sessions.get_mut(&hex_eid) else {
            return Ok(());
        };
        let Some(inbox) = session.pending.take() else {
            return Ok(());
        };
        let join = session.join;
        let outbox = self.outbox(
            eid,
            TenantId::SYSTEM,
            request_of(&eid),
            &ALL,
            &joins,
            join,
            None,
        );
        let done = self.done_tx.clone();
        let i = self.index - 1;
        tracing::info!(
            attempt = a,
            "all five joined: running the aux-info protocol"
        );
        std::thread::spawn(move || {
            let mut outbox = outbox;
            let result = rand_chacha::ChaCha20Rng::from_rng(OsRng)
                .map_err(|e| RunError::Failed(e.to_string()))
                .and_then(|mut rng| {
                    let machine = round_based::state_machine::wrap_protocol(|party| async move {
                        cggmp24::aux_info_gen(ExecutionId::new(&eid), i, mpc::SIGNERS, *primes)
                            .start(&mut rng, party)
                            .await
                    });
                    mpc::drive(
                        machine,
                        &inbox,
                        &mut |o| outbox.send(o),
                        Instant::now() + AUX_TIMEOUT,
                    )
                });
            let _ = done.send(Done::Aux {
                session: hex_eid,
                result: result.map(Box::new),
            });
        });
        Ok(())
    }

    /// What the requests owe: checks, joins, runs, and attempts given up.
    async fn act(&mut self) -> Result<(), WorkerError> {
        let Some(aux) = self.aux_info.clone() else {
            return Ok(());
        };
        if self.identity.current().is_none() {
            return Ok(());
        }
        let ids: Vec<RequestId> = self
            .jobs
            .iter()
            .filter(|(_, j)| !j.settled)
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            self.act_on(id, &aux).await?;
        }
        Ok(())
    }

    async fn act_on(
        &mut self,
        id: RequestId,
        aux: &AuxInfo<SecurityLevel128>,
    ) -> Result<(), WorkerError> {
        let Some(job) = self.jobs.get(&id) else {
            return Ok(());
        };
        let (tenant, request, attempt) = (job.tenant, job.request, job.attempt);
        let members = job.members(attempt);
        let eid = job.eid(attempt);
        let joins = job.joins.get(&attempt).cloned().unwrap_or_default();
        let all_joined = members.iter().all(|m| joins.contains_key(m));
        let member = members.contains(&self.index);
        // The chain, before anything else: a broken one is quarantined by every signer.
        if let Work::Sign { wallet } = job.work.clone() {
            if let Some(hop) = self.custody.broken(&tenant, &request).cloned() {
                let verdict = hop.verdict.err();
                let code = verdict.as_ref().map_or("unknown", |v| v.code());
                tracing::error!(request = %request.0, index = hop.index, code, "broken chain of custody: quarantined");
                let body = json!({
                    "reason": code,
                    "detail": verdict.map(|v| v.to_string()).unwrap_or_default(),
                    "index": hop.index,
                    "kind": hop.kind,
                });
                return self.quarantine(id, body).await;
            }
            if member && !job.joined.contains(&attempt) && !job.aborted.contains(&attempt) {
                let tx = self
                    .transfers
                    .get(&request)
                    .and_then(|t| t.params.clone())
                    .map(|p| eth::Eip1559::from_transfer(&p));
                match tx {
                    Some(Err(e)) => {
                        let body =
                            json!({"reason": "invalid-transaction", "detail": e.to_string()});
                        return self.quarantine(id, body).await;
                    }
                    None => return Ok(()),
                    Some(Ok(_)) => {}
                }
                if self.share(tenant, &wallet)?.is_none() {
                    // Not created yet (or its creation is not in the log yet): wait.
                    let created = self
                        .custody
                        .state()
                        .tenants
                        .get(&tenant)
                        .and_then(|t| t.wallets.get(&wallet))
                        .is_some_and(|w| w.key.is_some());
                    if created {
                        self.abort(id, "no-key-share", Some(self.index), Vec::new())
                            .await?;
                    }
                    return Ok(());
                }
            }
        }
        let Some(job) = self.jobs.get(&id) else {
            return Ok(());
        };
        // Join: unless this process already did, or an earlier run of this signer did (it
        // lost that run: abort it so the next attempt goes on).
        if member && !job.joined.contains(&attempt) && !job.aborted.contains(&attempt) {
            if joins.contains_key(&self.index) {
                return self
                    .abort(id, "restarted", Some(self.index), Vec::new())
                    .await;
            }
            let size = self.rt.size();
            let root = self.rt.root().map(|r| r.to_string()).unwrap_or_default();
            let follows = job.follows;
            // A signing offers this signer's oldest presignature for the committee (taken
            // out of the pool now: never offered twice).
            // The number another member offered, where this signer holds it; numbers below
            // the highest offered are ones another member no longer holds, never to match.
            let others: Vec<u32> = joins
                .iter()
                .filter(|(m, _)| **m != self.index)
                .filter_map(|(_, j)| j.presignature)
                .collect();
            let taken = match (&job.work, <[u16; 3]>::try_from(members.clone())) {
                (Work::Sign { wallet }, Ok(c)) => {
                    self.pool.get_mut(&(wallet.clone(), c)).and_then(|p| {
                        if let Some(max) = others.iter().max() {
                            p.retain(|seq, _| seq >= max);
                        }
                        let held = others.iter().rev().find(|n| p.contains_key(n)).copied();
                        match held {
                            Some(n) => p.remove(&n).map(|x| (n, x)),
                            None => p.pop_first(),
                        }
                    })
                }
                _ => None,
            };
            let mut body = json!({
                "session": hex::encode(eid),
                "attempt": attempt,
                "committee": members.iter().map(|m| role(*m)).collect::<Vec<_>>(),
                "checkpoint": {"size": size, "root": root},
            });
            if let Some((seq, _)) = &taken {
                body["presignature"] = (*seq).into();
            }
            let event = self.event(MPC_JOIN, tenant, request, vec![follows], body)?;
            self.expect_session(
                &eid,
                Some(request),
                attempt,
                members.clone(),
                event.leaf_hash(),
            );
            if let Some(session) = self.sessions.get_mut(&hex::encode(eid)) {
                session.presig = taken.map(|(seq, p)| (seq, Held(p)));
            }
            if let Some(job) = self.jobs.get_mut(&id) {
                job.joined.insert(attempt);
            }
            self.append(&event).await?;
            return Ok(());
        }
        // Run, once all have joined and their checkpoints agree with this signer's log.
        if member
            && all_joined
            && job.joined.contains(&attempt)
            && !job.started_runs.contains(&attempt)
        {
            // A checkpoint ahead of this signer's log is checked next round; meanwhile the
            // attempt's deadline still holds (a member naming a size never reached stalls
            // nobody past it).
            let mut ahead = false;
            for (m, j) in &joins {
                match self.root_at(j.size) {
                    None => {
                        ahead = true;
                        break;
                    }
                    Some(root) if Some(root) == j.root => {}
                    Some(_) => {
                        return self
                            .abort(id, "checkpoint-disagreement", Some(*m), Vec::new())
                            .await;
                    }
                }
            }
            if !ahead {
                self.start_run(id, aux, &joins)?;
                if let Some(job) = self.jobs.get_mut(&id) {
                    job.started_runs.insert(attempt);
                }
                return Ok(());
            }
        }
        let Some(job) = self.jobs.get(&id) else {
            return Ok(());
        };
        // Give up an attempt past its deadline.
        if !job.aborted.contains(&attempt) && Timestamp::now().unix_ms() > self.deadline(job) {
            let missing: Vec<String> = members
                .iter()
                .filter(|m| !joins.contains_key(m))
                .map(|m| role(*m))
                .collect();
            return self.abort(id, "timeout", None, missing).await;
        }
        Ok(())
    }

    /// Refuse to sign `id`: `transfer.quarantined` with `body`, and the request is settled.
    async fn quarantine(&mut self, id: RequestId, body: Value) -> Result<(), WorkerError> {
        let Some(job) = self.jobs.get_mut(&id) else {
            return Ok(());
        };
        job.settled = true;
        let (tenant, request, trigger) = (job.tenant, job.request, job.trigger);
        // A signing in flight for it stops here: nothing is signed after a quarantine.
        self.sessions.retain(|_, s| s.request != Some(request));
        let event = self.event(TRANSFER_QUARANTINED, tenant, request, vec![trigger], body)?;
        self.append(&event).await
    }

    /// This signer's key share of the key the log records for `wallet`, from its vault
    /// (kept by wallet and public key: a key generation that finishes after another
    /// attempt's key was recorded leaves a share no transfer uses).
    fn share(
        &self,
        tenant: TenantId,
        wallet: &str,
    ) -> Result<Option<Arc<KeyShare<Secp256k1>>>, WorkerError> {
        let Some(public) = self
            .custody
            .state()
            .tenants
            .get(&tenant)
            .and_then(|t| t.wallets.get(wallet))
            .and_then(|w| w.key.as_ref())
            .map(|k| k.public_key.clone())
        else {
            return Ok(None);
        };
        let name = format!("share-{wallet}-{public}");
        let mut cache = self
            .shares
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(share) = cache.get(&name) {
            return Ok(Some(share.clone()));
        }
        match self.vault.get(&name) {
            Ok(Some(bytes)) => {
                let share: Option<Arc<KeyShare<Secp256k1>>> =
                    serde_json::from_slice(&bytes).ok().map(Arc::new);
                if let Some(share) = &share {
                    cache.insert(name, share.clone());
                }
                Ok(share)
            }
            Ok(None) => Ok(None),
            Err(e) => Err(WorkerError::State {
                path: PathBuf::from(vault::DIR),
                reason: e.to_string(),
            }),
        }
    }

    /// Give up the current attempt of `id`, naming a culprit or the members missing.
    async fn abort(
        &mut self,
        id: RequestId,
        reason: &str,
        culprit: Option<u16>,
        missing: Vec<String>,
    ) -> Result<(), WorkerError> {
        let Some(job) = self.jobs.get(&id) else {
            return Ok(());
        };
        let attempt = job.attempt;
        if job.aborted.contains(&attempt) {
            return Ok(());
        }
        let mut body = json!({
            "session": hex::encode(job.eid(attempt)),
            "attempt": attempt,
            "reason": reason,
        });
        if let Some(c) = culprit {
            body["culprit"] = role(c).into();
        }
        if !missing.is_empty() {
            body["missing"] = missing.into();
        }
        tracing::warn!(request = %job.request.0, attempt, reason, ?culprit, "aborting the attempt");
        let event = self.event(
            MPC_ABORTED,
            job.tenant,
            job.request,
            vec![job.follows],
            body,
        )?;
        if let Some(job) = self.jobs.get_mut(&id) {
            job.aborted.insert(attempt);
        }
        self.append(&event).await
    }

    /// Start the current attempt's protocol run on a thread of its own.
    fn start_run(
        &mut self,
        id: RequestId,
        aux: &AuxInfo<SecurityLevel128>,
        joins: &BTreeMap<u16, Join>,
    ) -> Result<(), WorkerError> {
        let Some(job) = self.jobs.get(&id) else {
            return Ok(());
        };
        let attempt = job.attempt;
        let members = job.members(attempt);
        let eid = job.eid(attempt);
        let hex_eid = hex::encode(eid);
        let Some(session) = self.sessions.get_mut(&hex_eid) else {
            return Ok(());
        };
        let Some(inbox) = session.pending.take() else {
            return Ok(());
        };
        let join = session.join;
        let misbehave = match job.work {
            Work::Sign { .. } => self.options.misbehave,
            Work::Keygen => None,
        };
        let outbox = self.outbox(
            eid,
            job.tenant,
            job.request,
            &members,
            joins,
            join,
            misbehave,
        );
        let done = self.done_tx.clone();
        let deadline = Instant::now() + RUN_TIMEOUT;
        let me =
            u16::try_from(members.iter().position(|m| *m == self.index).unwrap_or(0)).unwrap_or(0);
        match job.work.clone() {
            Work::Keygen => {
                std::thread::spawn(move || {
                    let mut outbox = outbox;
                    let result = rand_chacha::ChaCha20Rng::from_rng(OsRng)
                        .map_err(|e| RunError::Failed(e.to_string()))
                        .and_then(|mut rng| {
                            let machine =
                                round_based::state_machine::wrap_protocol(|party| async move {
                                    cggmp24::keygen::<Secp256k1>(
                                        ExecutionId::new(&eid),
                                        me,
                                        mpc::SIGNERS,
                                    )
                                    .set_threshold(mpc::THRESHOLD)
                                    .start(&mut rng, party)
                                    .await
                                });
                            mpc::drive(machine, &inbox, &mut |o| outbox.send(o), deadline)
                        });
                    let _ = done.send(Done::Keygen {
                        eid: hex_eid,
                        result: result.map(Box::new),
                    });
                });
            }
            Work::Sign { wallet } => {
                let Some(share) = self.share(job.tenant, &wallet)? else {
                    return Ok(());
                };
                let Some(Ok(tx)) = self
                    .transfers
                    .get(&id)
                    .and_then(|t| t.params.as_ref())
                    .map(eth::Eip1559::from_transfer)
                else {
                    return Ok(());
                };
                let unsigned = tx.unsigned();
                let parties: Vec<u16> = members.iter().map(|m| m - 1).collect();
                let _ = aux;
                // All three offered the same presignature: one round of partial signatures.
                let mut offered = self
                    .sessions
                    .get_mut(&hex_eid)
                    .and_then(|s| s.presig.take());
                if let Some((seq, _)) = &offered
                    && !joins.values().all(|j| j.presignature == Some(*seq))
                {
                    // Not the same one: unused (no partial signature was issued), so it goes
                    // back to the pool.
                    if let (Some((seq, Held(p))), Ok(c)) =
                        (offered.take(), <[u16; 3]>::try_from(members.clone()))
                    {
                        self.pool
                            .entry((wallet.clone(), c))
                            .or_default()
                            .insert(seq, p);
                    }
                }
                if let Some((_, Held(presig))) = offered {
                    std::thread::spawn(move || {
                        let mut outbox = outbox;
                        let result =
                            one_round(*presig, &unsigned, me, &inbox, &mut outbox, deadline);
                        let _ = done.send(Done::Sign {
                            eid: hex_eid,
                            result,
                        });
                    });
                    return Ok(());
                }
                std::thread::spawn(move || {
                    let mut outbox = outbox;
                    let data = DataToSign::<Secp256k1>::digest::<sha3::Keccak256>(&unsigned);
                    let result = rand_chacha::ChaCha20Rng::from_rng(OsRng)
                        .map_err(|e| RunError::Failed(e.to_string()))
                        .and_then(|mut rng| {
                            let machine =
                                round_based::state_machine::wrap_protocol(|party| async move {
                                    let share: &KeyShare<Secp256k1> = &share;
                                    cggmp24::signing(ExecutionId::new(&eid), me, &parties, share)
                                        .sign(&mut rng, party, &data)
                                        .await
                                });
                            mpc::drive(machine, &inbox, &mut |o| outbox.send(o), deadline)
                        });
                    let _ = done.send(Done::Sign {
                        eid: hex_eid,
                        result,
                    });
                });
            }
        }
        Ok(())
    }

    /// A run's (or the primes') result.
    async fn finished(&mut self, done: Done) -> Result<(), WorkerError> {
        match done {
            Done::Primes(Ok(primes)) => {
                let bytes = serde_json::to_vec(&primes).unwrap_or_default();
                self.vault
                    .put("primes", &bytes)
                    .map_err(|e| WorkerError::State {
                        path: PathBuf::from(vault::DIR),
                        reason: e.to_string(),
                    })?;
                tracing::info!("safe primes ready");
                self.aux.primes = Some(primes);
                self.act_aux().await
            }
            Done::Primes(Err(e)) => Err(WorkerError::Event(format!("primes: {e}"))),
            Done::Aux { session, result } => {
                let Some(s) = self.sessions.remove(&session) else {
                    return Ok(());
                };
                self.aux.running = None;
                match result {
                    Ok(aux) => {
                        self.vault
                            .put(
                                &format!("aux-{session}"),
                                &serde_json::to_vec(&aux).unwrap_or_default(),
                            )
                            .map_err(|e| WorkerError::State {
                                path: PathBuf::from(vault::DIR),
                                reason: e.to_string(),
                            })?;
                        let mut eid = [0u8; 32];
                        let _ = hex::decode_to_slice(&session, &mut eid);
                        let event = self.event(
                            AUX_READY,
                            TenantId::SYSTEM,
                            request_of(&eid),
                            vec![s.join],
                            json!({"session": session, "attempt": s.attempt}),
                        )?;
                        self.aux.running = Some(s.attempt);
                        self.append(&event).await?;
                        tracing::info!(
                            attempt = s.attempt,
                            "aux info made; waiting for the other four"
                        );
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, attempt = s.attempt, "the aux-info protocol failed; joining the next attempt");
                    }
                }
                Ok(())
            }
            Done::Keygen { eid, result } => {
                let Some(s) = self.sessions.remove(&eid) else {
                    return Ok(());
                };
                let Some(id) = s.request else {
                    return Ok(());
                };
                match result {
                    Ok(incomplete) => self.created(id, s, *incomplete).await,
                    Err(e) => self.failed(id, &s, e).await,
                }
            }
            Done::Presign { eid, result } => {
                self.sessions.remove(&eid);
                let Some(p) = self.presigns.get_mut(&eid) else {
                    return Ok(());
                };
                p.done = true;
                match result {
                    Ok(presig) => {
                        tracing::debug!(wallet = %p.wallet, committee = ?p.committee, seq = p.seq, "presignature ready");
                        self.pool
                            .entry((p.wallet.clone(), p.committee))
                            .or_default()
                            .insert(p.seq, presig);
                    }
                    Err(e) => tracing::warn!(error = %e, "a presignature run failed"),
                }
                Ok(())
            }
            Done::Sign { eid, result } => {
                let Some(s) = self.sessions.remove(&eid) else {
                    return Ok(());
                };
                let Some(id) = s.request else {
                    return Ok(());
                };
                match result {
                    Ok(sig) => self.signed(id, s, sig).await,
                    Err(e) => self.failed(id, &s, e).await,
                }
            }
        }
    }

    async fn failed(&mut self, id: RequestId, s: &Session, e: RunError) -> Result<(), WorkerError> {
        let current = self.jobs.get(&id).map(|j| j.attempt);
        if current != Some(s.attempt) {
            return Ok(());
        }
        match e {
            RunError::Stopped => Ok(()),
            RunError::Timeout => self.abort(id, "timeout", None, Vec::new()).await,
            RunError::Culprit { party, reason } => {
                let culprit = s.members.get(usize::from(party)).copied();
                tracing::warn!(?culprit, %reason, "a member sent a bad message");
                self.abort(id, "bad-message", culprit, Vec::new()).await
            }
            RunError::Failed(reason) => {
                tracing::warn!(%reason, "the protocol failed");
                self.abort(id, "protocol-failed", None, Vec::new()).await
            }
        }
    }

    /// Key generation's output: the share into the vault (by wallet and public key), then
    /// `wallet.created` unless another member's is in the log already.
    async fn created(
        &mut self,
        id: RequestId,
        s: Session,
        incomplete: IncompleteKeyShare<Secp256k1>,
    ) -> Result<(), WorkerError> {
        let Some(aux) = self.aux_info.clone() else {
            return Ok(());
        };
        let Some(job) = self.jobs.get(&id) else {
            return Ok(());
        };
        let share = KeyShare::from_parts((incomplete, *aux))
            .map_err(|e| WorkerError::Event(format!("key share: {e}")))?;
        let wallet = job.request.0.to_string();
        let public = share.shared_public_key.to_bytes(true);
        let public_hex = hex::encode(public.as_bytes());
        self.vault
            .put(
                &format!("share-{wallet}-{public_hex}"),
                &serde_json::to_vec(&share).unwrap_or_default(),
            )
            .map_err(|e| WorkerError::State {
                path: PathBuf::from(vault::DIR),
                reason: e.to_string(),
            })?;
        if job.settled {
            return Ok(());
        }
        let key = k256::ecdsa::VerifyingKey::from_sec1_bytes(public.as_bytes())
            .map_err(|e| WorkerError::Event(format!("the wallet's key: {e}")))?;
        let body = json!({
            "public_key": public_hex,
            "address": eth::address(&key),
            "session": hex::encode(job.eid(s.attempt)),
            "attempt": s.attempt,
        });
        let event = self.event(
            WALLET_CREATED,
            job.tenant,
            job.request,
            vec![job.trigger, s.join],
            body,
        )?;
        tracing::info!(wallet, address = %eth::address(&key), "wallet created");
        self.append(&event).await
    }

    /// Signing's output: the raw transaction, sealed, in `transfer.signed`.
    async fn signed(
        &mut self,
        id: RequestId,
        s: Session,
        sig: cggmp24::Signature<Secp256k1>,
    ) -> Result<(), WorkerError> {
        let Some(job) = self.jobs.get(&id) else {
            return Ok(());
        };
        let Work::Sign { wallet } = job.work.clone() else {
            return Ok(());
        };
        let (tenant, request, trigger) = (job.tenant, job.request, job.trigger);
        // Settled meanwhile (quarantined, or signed by another member), or its chain broke
        // since the run began: nothing to append.
        if job.settled || self.custody.broken(&tenant, &request).is_some() {
            return Ok(());
        }
        let eid = job.eid(s.attempt);
        let Some(share) = self.share(tenant, &wallet)? else {
            return Ok(());
        };
        let Some(Ok(tx)) = self
            .transfers
            .get(&id)
            .and_then(|t| t.params.as_ref())
            .map(eth::Eip1559::from_transfer)
        else {
            return Ok(());
        };
        let mut raw_sig = vec![0u8; cggmp24::Signature::<Secp256k1>::serialized_len()];
        sig.write_to_slice(&mut raw_sig);
        let public = share.shared_public_key.to_bytes(true);
        let key = k256::ecdsa::VerifyingKey::from_sec1_bytes(public.as_bytes())
            .map_err(|e| WorkerError::Event(format!("the wallet's key: {e}")))?;
        let signature = k256::ecdsa::Signature::from_slice(&raw_sig)
            .map_err(|e| WorkerError::Event(format!("the signature: {e}")))?;
        let raw = match tx.signed(&signature, &key) {
            Ok(raw) => raw,
            Err(e) => {
                // A combined signature that does not verify: someone cheated.
                tracing::error!(error = %e, "the combined signature does not verify");
                return self.abort(id, "invalid-signature", None, Vec::new()).await;
            }
        };
        let joins = self
            .jobs
            .get(&id)
            .and_then(|j| j.joins.get(&s.attempt))
            .cloned()
            .unwrap_or_default();
        let mine = joins.get(&self.index);
        let body = json!({
            "tx_hash": format!("0x{}", hex::encode(eth::keccak(&raw))),
            "checkpoint": {
                "size": mine.map_or(0, |j| j.size),
                "root": mine.and_then(|j| j.root).map(|r| r.to_string()).unwrap_or_default(),
            },
            "session": hex::encode(eid),
            "attempt": s.attempt,
            "committee": s.members.iter().map(|m| role(*m)).collect::<Vec<_>>(),
        });
        let Value::Object(body) = body else {
            return Ok(());
        };
        let plaintext =
            govern_core::canonical::to_vec(&json!({"raw": format!("0x{}", hex::encode(&raw))}))
                .map_err(|e| WorkerError::Event(e.to_string()))?;
        let event = self
            .rt
            .sign(
                TRANSFER_SIGNED,
                tenant,
                request,
                vec![trigger, s.join],
                body,
                Some((TX_SCOPE, plaintext)),
                Timestamp::now(),
            )
            .await?;
        tracing::info!(request = %request.0, attempt = s.attempt, "transfer signed");
        self.append(&event).await
    }
}

/// All five signers.
const ALL: [u16; 5] = [1, 2, 3, 4, 5];

/// Sign with a presignature: broadcast this party's partial signature over the message
/// (`DataToSign` from the message itself, never a bare hash), take the others', combine.
fn one_round(
    (presig, public): (
        cggmp24::Presignature<Secp256k1>,
        cggmp24::signing::PresignaturePublicData<Secp256k1>,
    ),
    unsigned: &[u8],
    me: u16,
    inbox: &Receiver<Inbound>,
    outbox: &mut Outbox,
    deadline: Instant,
) -> Result<cggmp24::Signature<Secp256k1>, RunError> {
    let data = DataToSign::<Secp256k1>::digest::<sha3::Keccak256>(unsigned);
    let n = public.commitments.len();
    let mut partials: Vec<Option<cggmp24::PartialSignature<Secp256k1>>> = vec![None; n];
    let mine = presig.issue_partial_signature(data);
    let bytes = serde_json::to_vec(&mine).map_err(|e| RunError::Failed(e.to_string()))?;
    outbox.send(Outbound { to: None, bytes });
    *partials
        .get_mut(usize::from(me))
        .ok_or_else(|| RunError::Failed("not a member".into()))? = Some(mine);
    while partials.iter().any(Option::is_none) {
        let wait = deadline.saturating_duration_since(Instant::now());
        let next = match inbox.recv_timeout(wait.max(Duration::from_millis(1))) {
            Ok(m) => m,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => return Err(RunError::Timeout),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return Err(RunError::Stopped),
        };
        let (from, bytes) = match next {
            Inbound::Message {
                from,
                broadcast: true,
                bytes,
            } => (from, bytes),
            Inbound::Message { from, .. } => {
                return Err(RunError::Culprit {
                    party: from,
                    reason: "a point-to-point message in a one-round signing".into(),
                });
            }
            Inbound::Bad { from, reason } => {
                return Err(RunError::Culprit {
                    party: from,
                    reason,
                });
            }
        };
        let partial: cggmp24::PartialSignature<Secp256k1> = serde_json::from_slice(&bytes)
            .map_err(|e| RunError::Culprit {
                party: from,
                reason: format!("not a partial signature: {e}"),
            })?;
        match partials.get_mut(usize::from(from)) {
            Some(slot @ None) => *slot = Some(partial),
            _ => {
                return Err(RunError::Culprit {
                    party: from,
                    reason: "a second partial signature".into(),
                });
            }
        }
    }
    let partials: Vec<_> = partials.into_iter().flatten().collect();
    cggmp24::PartialSignature::combine(&partials, &public, data)
        .ok_or_else(|| RunError::Failed("the partial signatures do not combine".into()))
}

fn sha2_256(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes).into()
}

/// The request id of a system session (aux info): the first 16 bytes of its id, with a
/// UUIDv7's version and variant bits (every request id is one).
fn request_of(eid: &[u8; 32]) -> RequestId {
    let mut b = [0u8; 16];
    b.copy_from_slice(&eid[..16]);
    b[6] = (b[6] & 0x0f) | 0x70;
    b[8] = (b[8] & 0x3f) | 0x80;
    RequestId(uuid::Uuid::from_bytes(b))
}

/// Where a run's messages go: signed as `mpc.message`s of this signer, point-to-point ones
/// sealed to the recipient, long ones in parts.
struct Outbox {
    identity: Arc<ServiceIdentity>,
    tenant: TenantId,
    request: RequestId,
    join: LeafHash,
    eid: [u8; 32],
    me: u16,
    members: Vec<u16>,
    keys: BTreeMap<u16, [u8; 32]>,
    rounds: HashMap<Option<u16>, u32>,
    out: UnboundedSender<SignedEvent>,
    misbehave: Option<Misbehave>,
}

impl Outbox {
    fn send(&mut self, o: Outbound) {
        let to = o.to.and_then(|j| self.members.get(usize::from(j)).copied());
        let counter = self.rounds.entry(to).or_insert(0);
        let round = *counter;
        *counter += 1;
        let data = match to {
            None => o.bytes,
            Some(t) => {
                let mut plain = o.bytes;
                let mut key = self.keys.get(&t).copied().unwrap_or_default();
                match self.misbehave {
                    Some(Misbehave::Garbage) => {
                        use rand_core::RngCore as _;
                        OsRng.fill_bytes(&mut plain);
                    }
                    Some(Misbehave::WrongSeal) => {
                        key = x25519_dalek::PublicKey::from(
                            &x25519_dalek::StaticSecret::random_from_rng(OsRng),
                        )
                        .to_bytes();
                    }
                    None => {}
                }
                match mpc::seal(&key, &mpc::seal_info(&self.eid, round, self.me, t), &plain) {
                    Ok(sealed) => sealed,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot seal a message");
                        return;
                    }
                }
            }
        };
        let session = hex::encode(self.eid);
        let Ok(kind) = Kind::new(MPC_MESSAGE) else {
            tracing::error!("mpc.message is not a kind name");
            return;
        };
        for part in Wire::split(&session, round, self.me, to, &data) {
            match self.identity.sign(
                kind.clone(),
                self.tenant,
                self.request,
                vec![self.join],
                part.body(),
                Timestamp::now(),
            ) {
                Ok(event) => {
                    let _ = self.out.send(event);
                }
                Err(e) => tracing::error!(error = %e, "cannot sign a protocol message"),
            }
        }
    }
}

/// Append what the protocol runs send, each as its own request (their order does not
/// matter: a run takes its messages by round).
async fn append_loop(client: govern_client::http::Client, mut rx: UnboundedReceiver<SignedEvent>) {
    while let Some(event) = rx.recv().await {
        let client = client.clone();
        tokio::spawn(async move {
            if let Err(e) = append_to(&client, &event).await {
                tracing::error!(error = %e, kind = %event.event().kind, "a protocol message was refused");
            }
        });
    }
}
