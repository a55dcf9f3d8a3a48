//! The append contract (docs/design.md §3): what a log asks of an append policy and what a
//! policy may see of the log, and the typed refusals an append can meet. The store's
//! sequencer calls an [`AppendPolicy`]; govern-admission implements the node's; workers and
//! `govern verify request` run the same checks and get the same typed verdicts. Nothing
//! here does I/O: a [`LogView`] is handed in, and so is the [`Clock`].

use crate::action::ActionError;
use crate::event::{Event, Kind, RequestId, Role, SignedEvent, SkewError, TenantId, Timestamp};
use crate::ids::{LeafHash, LeafIndex, RootHash, TreeSize};

/// How many of the latest checkpoints an attestation document's nonce may name (docs/design.md §6:
/// the nonce is the root of one of the last N checkpoints). At the log's busiest a batch,
/// and so a checkpoint, is written every few milliseconds: 1,024 checkpoints leave a
/// service several seconds to fetch a root, obtain a document and append it; an idle log
/// keeps its last 1,024 roots however old they are.
pub const NONCE_WINDOW_CHECKPOINTS: usize = 1024;

/// How far (in entries) past its anchor checkpoint an action may land: the action's
/// expiry, checkable on replay. At the node's busiest that is a few seconds; when idle,
/// a client has as long as it likes.
pub const ANCHOR_DISTANCE_MAX: u64 = 4096;

/// How far an event's `time` may be from the log's clock, either way.
pub const TIME_SKEW_MS: i64 = 60_000;

/// The log's clock, injected so tests and replays control it.
pub trait Clock: Send + Sync + 'static {
    /// Now.
    fn now(&self) -> Timestamp;
}

/// Randomness, injected like the [`Clock`]: the node passes the operating system's
/// (govern-store's `OsEntropy`), a simulation a seeded generator, so a run can be repeated
/// byte for byte. Nothing in govern-core, govern-admission, the edge or the key service
/// draws randomness any other way.
pub trait Entropy: Send + Sync + 'static {
    /// Fill `buf` with random bytes.
    fn fill(&self, buf: &mut [u8]);
}

/// What the log knows about an event named as a parent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParentInfo {
    /// Where it is.
    pub index: LeafIndex,
    /// Its kind.
    pub kind: Kind,
    /// Its tenant.
    pub tenant: TenantId,
    /// Its request.
    pub request: RequestId,
}

/// The log as an [`AppendPolicy`] sees it while checking one event: what is stored, plus
/// what the sequencer accepted earlier in the same batch.
pub trait LogView {
    /// The event with leaf hash `leaf`, if the log holds it.
    ///
    /// # Errors
    /// [`StorageError`] when storage fails or holds an entry that does not parse.
    fn parent(&self, leaf: &LeafHash) -> Result<Option<ParentInfo>, StorageError>;

    /// The index of the event that claimed uniqueness key `key`, if one did.
    ///
    /// # Errors
    /// [`StorageError`] when storage fails.
    fn unique_taken(&self, key: &str) -> Result<Option<LeafIndex>, StorageError>;

    /// The index the event being checked would get.
    fn next_index(&self) -> LeafIndex;

    /// The size of the checkpoint with root `root`, if it is one of the last
    /// [`NONCE_WINDOW_CHECKPOINTS`] checkpoints the log signed.
    fn recent_checkpoint(&self, root: &RootHash) -> Option<TreeSize>;
}

/// Checks that need more than the event itself (who may append what, and what it may
/// follow): the node's `IdentityPolicy` (govern-admission), or for tests a fixed allow-list
/// (`ProducerAllowList`) and the routing graph over it (`ManifestPolicy`).
pub trait AppendPolicy: Send + Sync + 'static {
    /// Whether `event` may be appended to the log `view` shows. On success, the uniqueness
    /// keys the event claims (the log refuses the event if one is taken, records them, and
    /// refuses a second claim within the same batch).
    ///
    /// # Errors
    /// The refusal.
    fn check(&self, event: &SignedEvent, view: &dyn LogView) -> Result<Vec<String>, AppendError>;

    /// `event` was accepted at `index` into the batch being written (or, when the log
    /// reopens, is a stored entry of a tracked kind ([`crate::kinds::is_tracked`]), replayed in order). A policy
    /// that keeps state updates its working copy here; [`AppendPolicy::finish`] commits or
    /// discards it.
    fn accepted(&self, _event: &SignedEvent, _index: LeafIndex) {}

    /// Events the log itself must append next (unsigned: the sequencer signs them with its
    /// key, checks them like any other, and writes them in the same batch). Asked after
    /// every event; a policy returns each follow-up once.
    fn followups(&self) -> Vec<Event> {
        Vec::new()
    }

    /// The log (re)opened, or recovered from a failed write, at `size`: every tracked entry
    /// below it has been handed to [`AppendPolicy::accepted`].
    fn resumed(&self, _size: TreeSize) {}

    /// The state as of the last durable batch, as bytes [`AppendPolicy::restore`] reads back;
    /// `None` for a policy that keeps none.
    fn snapshot(&self) -> Option<Vec<u8>> {
        None
    }

    /// Take the state from `snapshot` (made by [`AppendPolicy::snapshot`] after the log had
    /// the size the log recorded with it). The log checks the snapshot's size, tree root and
    /// checksum first, and on any refusal replays every tracked entry from zero instead.
    ///
    /// # Errors
    /// Why the snapshot cannot be used (another version, a manifest that no longer loads).
    fn restore(&self, _snapshot: &[u8]) -> Result<(), String> {
        Err("this policy keeps no snapshots".into())
    }

    /// The batch is durable (`true`: keep what [`AppendPolicy::accepted`] recorded) or was
    /// not written (`false`: forget it).
    fn finish(&self, _durable: bool) {}
}

/// Why an append was not made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AppendError {
    /// The queue is full: try again after `retry_after_s`.
    #[error("the log is busy; retry after {retry_after_s} s")]
    Pushback {
        /// Seconds to wait.
        retry_after_s: u64,
    },
    /// The event's time is too far from the log's clock.
    #[error(transparent)]
    Skew(#[from] SkewError),
    /// The producer is not allowed to append.
    #[error("producer {role} with key {key} may not append")]
    UnknownProducer {
        /// Its role.
        role: String,
        /// Its key, base64.
        key: String,
    },
    /// The event's kind is not declared in the manifest in force.
    #[error("event kind {kind} is not declared in the manifest")]
    UnknownKind {
        /// The kind.
        kind: Kind,
    },
    /// The producer's role may not produce the event's kind.
    #[error("role {role} may not produce events of kind {kind}")]
    KindNotAllowed {
        /// The producer's role.
        role: Role,
        /// The kind.
        kind: Kind,
    },
    /// The kind follows other events (its manifest entry lists parent kinds), and the event
    /// names none.
    #[error("an event of kind {kind} must name its parent")]
    ParentRequired {
        /// The event's kind.
        kind: Kind,
    },
    /// A parent is not in the log.
    #[error("parent {parent} is not in the log")]
    ParentMissing {
        /// The parent's leaf hash.
        parent: LeafHash,
    },
    /// A parent's kind is not among the kind's allowed parents.
    #[error("an event of kind {kind} may not have a parent of kind {parent_kind}")]
    ParentKindNotAllowed {
        /// The event's kind.
        kind: Kind,
        /// The parent's kind.
        parent_kind: Kind,
    },
    /// The kind requires parents of the same request, and a parent is of another.
    #[error(
        "parent {parent} belongs to request {}, but events of kind {kind} must follow their own request {}",
        .parent_request.0,
        .request.0
    )]
    ParentOtherRequest {
        /// The event's kind.
        kind: Kind,
        /// The parent's leaf hash.
        parent: LeafHash,
        /// The event's request.
        request: RequestId,
        /// The parent's request.
        parent_request: RequestId,
    },
    /// A parent belongs to another tenant (other than the system tenant).
    #[error(
        "parent {parent} belongs to tenant {}, not the event's tenant {}",
        .parent_tenant.0,
        .tenant.0
    )]
    ParentOtherTenant {
        /// The parent's leaf hash.
        parent: LeafHash,
        /// The event's tenant.
        tenant: TenantId,
        /// The parent's tenant.
        parent_tenant: TenantId,
    },
    /// The event lacks what its kind's uniqueness key needs.
    #[error("uniqueness key: {reason}")]
    UniquenessKey {
        /// What is missing.
        reason: String,
    },
    /// The log holds this very event (the same leaf hash) already, at `index`. The
    /// sequencer answers a re-sent event with its original receipt instead (appends are
    /// idempotent); a replay refuses a log that holds one event twice.
    #[error("the log holds this event already, at entry {index}")]
    AlreadyHeld {
        /// Where it is.
        index: LeafIndex,
    },
    /// Another event already claimed the event's uniqueness key.
    #[error("uniqueness key {key} is already taken by entry {index}")]
    Duplicate {
        /// The key.
        key: String,
        /// The entry that claimed it.
        index: LeafIndex,
    },
    /// The producer's attested identity does not allow the append, or a manifest or an
    /// attestation does not verify (docs/design.md §5, §6).
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// The node's policy refused a tenant event or user action.
    #[error(transparent)]
    UserAction(#[from] UserActionError),
    /// The storage failed; nothing of the batch was acknowledged.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The sequencer has stopped.
    #[error("the log is shutting down")]
    Closed,
    /// The log refuses every append: a witness has cosigned a larger tree of this log than
    /// this copy holds, so appending here would sign a second history (a fork). Only a
    /// restart on the newer copy clears it.
    #[error("{reason}")]
    Fenced {
        /// What the witness said.
        reason: String,
    },
    /// This node does not sequence the log (several nodes share one store and another holds
    /// the sequencer's lease): append at the sequencer.
    #[error("this node does not sequence the log; {}", .sequencer.as_deref().map_or_else(|| "no node holds the sequencer's lease now: retry shortly".to_string(), |s| format!("the sequencer is {s}")))]
    NotSequencer {
        /// Where the sequencer listens, as it advertised itself (none: no node holds the
        /// lease now).
        sequencer: Option<String>,
    },
}

/// A failure of the storage below the log. Operators' fault, not the client's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The underlying store reported an error.
    #[error("storage: {0}")]
    Backend(String),
    /// The storage handle was lost (in the power-failure double: the power failed).
    #[error("storage is gone (power failed)")]
    Gone,
    /// Stored bytes are not what the log wrote (corruption).
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The store holds a log, but not this one (another origin, or checkpoints under
    /// another key): serving it would sign a second history.
    #[error("{0}")]
    NotThisLog(String),
    /// There is no store at the path (read-only opening never creates one).
    #[error("{path} holds no log store")]
    Missing {
        /// The store's directory.
        path: String,
    },
    /// Another process has the store open for writing.
    #[error("{path} is in use by another process{}: stop it first (status, export and the other read-only commands read a data dir beside a running node)",
        .pid.map(|p| format!(" (PID {p})")).unwrap_or_default())]
    Locked {
        /// The store's directory.
        path: String,
        /// The process holding its lock, when the system says.
        pid: Option<u32>,
    },
    /// Another node took the log over (a shared store's writer epoch moved on): this one
    /// sequences no more, and nothing of the batch was written.
    #[error("deposed: {0}")]
    Deposed(String),
}

/// Why the identity policy refused an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// The log is empty and the event is not its genesis manifest.
    #[error("the log's first entry must be manifest.published by the log's key, not {kind}")]
    NotGenesis {
        /// The event's kind.
        kind: Kind,
    },
    /// A manifest was not published by the log's role and checkpoint key (or the genesis
    /// manifest carries an attestation).
    #[error(
        "manifest.published must be produced by role log with the log's checkpoint key (and the genesis manifest names no attestation)"
    )]
    ManifestProducer,
    /// A `manifest.published` whose manifest may not take effect.
    #[error("manifest refused: {reason}")]
    ManifestRefused {
        /// Why (unsigned, under-signed, not a successor, unknown root, malformed body).
        reason: String,
    },
    /// The event names no attestation.
    #[error(
        "an event of role {role} must name its producer's current service.attested in `attestation`"
    )]
    MissingAttestation {
        /// The producer's role.
        role: Role,
    },
    /// A `service.attested` names an attestation (it must not: it is the attestation).
    #[error("service.attested must not carry an `attestation` field")]
    UnexpectedAttestation,
    /// The producer's role has no identity in the log.
    #[error("role {role} has no attested identity")]
    NoIdentity {
        /// The role.
        role: Role,
    },
    /// `attestation` names something other than the role's current identity.
    #[error("attestation {named} is not role {role}'s current identity {current}")]
    StaleAttestation {
        /// The role.
        role: Role,
        /// What the event named.
        named: LeafHash,
        /// The current identity's leaf hash.
        current: LeafHash,
    },
    /// The producer key is not the key of the identity the event names.
    #[error("producer key {key} is not the key of role {role}'s identity")]
    ProducerKeyMismatch {
        /// The role.
        role: Role,
        /// The event's producer key, base64.
        key: String,
    },
    /// The identity's `max_age_s` has passed.
    #[error(
        "role {role}'s identity attested at {attested} signs events only until {expired} (its expiry less the log's time skew); the event's time is {time}"
    )]
    IdentityExpired {
        /// The role.
        role: Role,
        /// When it was attested (its event's time).
        attested: Timestamp,
        /// The latest event time it could sign (its expiry less the log's time skew).
        expired: Timestamp,
        /// The refused event's time.
        time: Timestamp,
    },
    /// The identity's measurement is quarantined.
    #[error("role {role}'s identity runs measurement {measurement}, which is quarantined")]
    Quarantined {
        /// The role.
        role: Role,
        /// PCR0, hex.
        measurement: String,
    },
    /// The identity's measurement is not pinned by the manifest in force.
    #[error(
        "role {role}'s identity runs measurement {measurement}, which the manifest in force does not pin"
    )]
    NotPinned {
        /// The role.
        role: Role,
        /// PCR0, hex.
        measurement: String,
    },
    /// `body.document` is missing, not base64, or too large.
    #[error("service.attested body: {reason}")]
    DocumentField {
        /// What is wrong.
        reason: String,
    },
    /// The document does not verify (format, signature, chain, time, debug PCRs).
    #[error("attestation document refused: {reason}")]
    DocumentRefused {
        /// The verifier's refusal.
        reason: String,
    },
    /// The document's measurement is quarantined.
    #[error("measurement {measurement} is quarantined")]
    MeasurementQuarantined {
        /// PCR0, hex.
        measurement: String,
    },
    /// `user_data` is missing or malformed, or names another role.
    #[error("the document's user_data does not bind role {role}: {reason}")]
    RoleBinding {
        /// The producer's role.
        role: Role,
        /// What it binds instead.
        reason: String,
    },
    /// The document binds keys other than the producer's (a copied document).
    #[error("the document binds {what}, not the producer's")]
    KeyBinding {
        /// Which key.
        what: String,
    },
    /// The document binds another manifest than the one in force.
    #[error("the document binds manifest {bound}; the manifest in force is {in_force}")]
    ManifestBinding {
        /// Hex hash in the document.
        bound: String,
        /// Hex hash of the manifest in force.
        in_force: String,
    },
    /// The nonce is not the root of a recent checkpoint.
    #[error(
        "the document's nonce {nonce} is not the root of one of the log's last {window} checkpoints"
    )]
    NonceOutsideWindow {
        /// The nonce, hex.
        nonce: String,
        /// The window, in checkpoints.
        window: usize,
    },
    /// A genuine document, bound to the manifest in force, shows a measurement that manifest
    /// does not pin for the role. The log appends `service.quarantined` for it in the same
    /// batch, before this refusal is answered.
    #[error("measurement {measurement} is not pinned for role {role}; the log quarantines it")]
    MeasurementNotPinned {
        /// The role.
        role: Role,
        /// PCR0, hex.
        measurement: String,
    },
    /// A `service.quarantined` whose evidence does not show what it claims.
    #[error("service.quarantined refused: {reason}")]
    QuarantineRefused {
        /// What the evidence fails to show.
        reason: String,
    },
    /// A system event (`service.attested`, `service.quarantined`) names a tenant.
    #[error("{kind} belongs to the system tenant, not to a tenant")]
    SystemTenant {
        /// The event's kind.
        kind: Kind,
    },
    /// The log's identity binds a key other than its checkpoint key.
    #[error("the log's identity must bind the log's checkpoint key")]
    LogKey,
    /// A `service.attested` not newer than the role's current identity: its document or its
    /// event is not later than theirs (an old attestation brought back).
    #[error(
        "role {role} has a newer identity: this attestation's document is of {document_time} \
         and its event of {time}, the current identity's document of {current_document_time} \
         and its event of {current_time}"
    )]
    AttestationNotNewer {
        /// The role.
        role: Role,
        /// This document's timestamp.
        document_time: Timestamp,
        /// This event's time.
        time: Timestamp,
        /// The current identity's document timestamp.
        current_document_time: Timestamp,
        /// The current identity's `service.attested` time.
        current_time: Timestamp,
    },
}

impl IdentityError {
    /// The problem type's last segment and its title (RFC 9457), one per variant.
    #[must_use]
    pub fn problem(&self) -> (&'static str, &'static str) {
        match self {
            Self::NotGenesis { .. } => ("not-genesis", "The log must begin with its manifest"),
            Self::ManifestProducer => ("manifest-producer", "Manifest not published by the log"),
            Self::ManifestRefused { .. } => ("manifest-refused", "Manifest may not take effect"),
            Self::MissingAttestation { .. } => {
                ("attestation-missing", "Event names no attested identity")
            }
            Self::UnexpectedAttestation => (
                "attestation-unexpected",
                "service.attested must not name an attestation",
            ),
            Self::NoIdentity { .. } => ("no-identity", "Role has no attested identity"),
            Self::StaleAttestation { .. } => {
                ("attestation-stale", "Not the role's current identity")
            }
            Self::ProducerKeyMismatch { .. } => (
                "producer-key-mismatch",
                "Producer key is not the identity's",
            ),
            Self::IdentityExpired { .. } => ("identity-expired", "Identity expired"),
            Self::Quarantined { .. } => ("identity-quarantined", "Identity quarantined"),
            Self::NotPinned { .. } => ("identity-not-pinned", "Identity no longer pinned"),
            Self::DocumentField { .. } => ("attestation-field", "Malformed service.attested"),
            Self::DocumentRefused { .. } => ("attestation-refused", "Attestation document refused"),
            Self::MeasurementQuarantined { .. } => {
                ("measurement-quarantined", "Measurement quarantined")
            }
            Self::RoleBinding { .. } => ("attestation-role-binding", "Document binds another role"),
            Self::KeyBinding { .. } => ("attestation-key-binding", "Document binds other keys"),
            Self::ManifestBinding { .. } => (
                "attestation-manifest-binding",
                "Document binds another manifest",
            ),
            Self::NonceOutsideWindow { .. } => {
                ("attestation-nonce", "Nonce outside the checkpoint window")
            }
            Self::MeasurementNotPinned { .. } => (
                "measurement-not-pinned",
                "Measurement not pinned for the role",
            ),
            Self::QuarantineRefused { .. } => {
                ("quarantine-refused", "Quarantine evidence does not hold")
            }
            Self::SystemTenant { .. } => ("system-tenant", "System event names a tenant"),
            Self::LogKey => ("log-key", "Log identity must bind the checkpoint key"),
            Self::AttestationNotNewer { .. } => (
                "attestation-not-newer",
                "Not newer than the role's current identity",
            ),
        }
    }

    /// Whether the fault is the event's form (HTTP 400) rather than its authority (403).
    #[must_use]
    pub fn is_malformed(&self) -> bool {
        matches!(self, Self::DocumentField { .. } | Self::SystemTenant { .. })
    }
}

/// Why a tenant event or user action was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UserActionError {
    /// A body field is missing or malformed.
    #[error("{kind}: {reason}")]
    Malformed {
        /// The event's kind.
        kind: String,
        /// What is wrong.
        reason: String,
    },
    /// The event's tenant was never created.
    #[error("tenant {} does not exist", tenant.0)]
    UnknownTenant {
        /// The tenant id.
        tenant: TenantId,
    },
    /// An action kind without a user's signature (and not the first credential of a
    /// registration).
    #[error("{kind} needs a user's signed action (body.action and body.signature)")]
    Missing {
        /// The kind.
        kind: String,
    },
    /// The signed object names another tenant, kind or request than the event.
    #[error("the signed action names {what} {named:?}, but the event's is {actual:?}")]
    Binding {
        /// `tenant`, `kind`, `request`, `rp_id`, or `clear` (a sealed action's clear fields,
        /// which are its signed path's last segments).
        what: &'static str,
        /// In the signed object.
        named: String,
        /// The event's.
        actual: String,
    },
    /// The event's parents are not the object the signed action names (the wallet of a
    /// transfer's path, the request of an approval's, the user of a role change, …).
    #[error(
        "the signed action names {target}, so its event's parents are [{required}], not {actual}"
    )]
    Parent {
        /// What the signed action names.
        target: String,
        /// The parent it requires, hex leaf hash.
        required: String,
        /// The event's parents.
        actual: String,
    },
    /// The body does not match the signed commitment.
    #[error("the action's params and salt do not match the signed body_commitment")]
    Commitment,
    /// The credential was never registered in the tenant.
    #[error("credential {credential} is not registered in this tenant")]
    UnknownCredential {
        /// Its id.
        credential: String,
    },
    /// The credential was revoked.
    #[error("credential {credential} was revoked at entry {index}")]
    Revoked {
        /// Its id.
        credential: String,
        /// The `credential.revoked` entry.
        index: u64,
    },
    /// The user may not sign this action.
    #[error("user {user} ({role}) may not {what}")]
    NotAuthorized {
        /// The signer.
        user: String,
        /// Their role.
        role: String,
        /// What was attempted.
        what: String,
    },
    /// The user's signature does not verify.
    #[error("user signature: {0}")]
    Signature(ActionError),
    /// The anchor is not a recent checkpoint, or too far back.
    #[error("anchor: {reason}")]
    Anchor {
        /// What is wrong.
        reason: String,
    },
    /// A passkey's counter did not increase.
    #[error("passkey counter {counter} does not exceed {last}, the credential's last")]
    Counter {
        /// This assertion's counter.
        counter: u32,
        /// The last seen.
        last: u32,
    },
    /// The nonce was used by an earlier action of the tenant.
    #[error("nonce {nonce} was used by entry {index}")]
    NonceUsed {
        /// The nonce.
        nonce: String,
        /// The entry that used it.
        index: u64,
    },
    /// The invitation does not exist in the tenant.
    #[error("no invitation with that secret in this tenant")]
    UnknownInvite,
    /// The invitation was already redeemed.
    #[error("the invitation was already redeemed by user {user}")]
    InviteUsed {
        /// Who redeemed it.
        user: String,
    },
    /// A user or credential the action names does not exist, or exists already.
    #[error("{0}")]
    Target(String),
    /// The object a signed action names (its wallet, request, user or credential) is not in
    /// the tenant.
    #[error("no {what} {id} in this tenant")]
    Unknown {
        /// `wallet`, `request`, `user` or `credential`.
        what: &'static str,
        /// Its id.
        id: String,
    },
    /// The user holds [`KEYS_PER_USER_MAX`] live API keys already.
    #[error("user {user} holds {max} live API keys already, the most allowed; revoke one first")]
    KeyLimit {
        /// The user.
        user: String,
        /// [`KEYS_PER_USER_MAX`].
        max: usize,
    },
    /// The tenant's keys were shredded: it takes no more events.
    #[error("tenant {} was shredded at entry {index}", tenant.0)]
    Shredded {
        /// The tenant.
        tenant: TenantId,
        /// The `keys.shredded` entry.
        index: u64,
    },
    /// A sealed kind in clear, a clear kind sealed, or a seal of the wrong scope or an
    /// unknown key version.
    #[error("{kind}: {reason}")]
    Sealing {
        /// The event's kind.
        kind: String,
        /// What is wrong.
        reason: String,
    },
}

impl UserActionError {
    /// The problem type's last segment and title (RFC 9457).
    #[must_use]
    pub fn problem(&self) -> (&'static str, &'static str) {
        match self {
            Self::Malformed { .. } => ("user-action-malformed", "Malformed tenant event"),
            Self::UnknownTenant { .. } => ("tenant-unknown", "No such tenant"),
            Self::Missing { .. } => ("user-action-missing", "No user action"),
            Self::Binding { .. } => ("user-action-binding", "Action bound elsewhere"),
            Self::Parent { .. } => ("user-action-parent", "Event follows another object"),
            Self::Commitment => ("user-action-commitment", "Body does not match the action"),
            Self::UnknownCredential { .. } => ("credential-unknown", "Credential not registered"),
            Self::Revoked { .. } => ("credential-revoked", "Credential revoked"),
            Self::NotAuthorized { .. } => ("user-not-authorized", "User may not do this"),
            Self::Signature(_) => ("user-signature", "User signature refused"),
            Self::Anchor { .. } => ("user-action-anchor", "Anchor too old or unknown"),
            Self::Counter { .. } => ("passkey-counter", "Passkey counter went back"),
            Self::NonceUsed { .. } => ("user-action-nonce", "Nonce already used"),
            Self::UnknownInvite => ("invite-unknown", "No such invitation"),
            Self::InviteUsed { .. } => ("invite-used", "Invitation already used"),
            Self::Target(_) | Self::Unknown { .. } => {
                ("user-action-target", "Action's target refused")
            }
            Self::KeyLimit { .. } => ("credential-limit", "Too many API keys"),
            Self::Shredded { .. } => ("tenant-shredded", "Tenant shredded"),
            Self::Sealing { .. } => ("payload-sealing", "Payload not sealed as its kind is"),
        }
    }

    /// The HTTP status: 400 for the event's form, 409 for a reused nonce, 410 for a shredded
    /// tenant, else 403.
    #[must_use]
    pub fn http_status(&self) -> u16 {
        if self.is_malformed() {
            400
        } else if matches!(self, Self::NonceUsed { .. }) {
            409
        } else if matches!(self, Self::Shredded { .. }) {
            410
        } else {
            403
        }
    }

    /// Whether the fault is the event's form (HTTP 400) rather than its authority (403).
    #[must_use]
    pub fn is_malformed(&self) -> bool {
        matches!(
            self,
            Self::Malformed { .. } | Self::Sealing { .. } | Self::Signature(ActionError::Body(_))
        )
    }
}

/// What re-checking one hop of a receipt chain found wrong, in the log's own terms: the
/// identity and user-action refusals are the ones the log gives at append (the same
/// checks, govern-admission's), so an auditor's verdict and the log's cannot drift apart.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HopVerdict {
    /// The producer's attested identity does not hold at the hop.
    #[error(transparent)]
    Identity(IdentityError),
    /// The user's signed action does not hold at the hop.
    #[error(transparent)]
    UserAction(UserActionError),
    /// The hop is not included under the checkpoint: `code` says how (`inclusion-proof`,
    /// `entries-not-the-checkpoint`, …).
    #[error("{reason}")]
    Inclusion {
        /// Stable, kebab-case.
        code: &'static str,
        /// What was found.
        reason: String,
    },
    /// The policy worker's recorded result is not what the tenant's policies give when
    /// evaluated again (`policy-mismatch`).
    #[error("{0}")]
    Policy(String),
    /// The hop does not follow the manifest's routing graph (`routing-edge`): a kind its
    /// producer may not produce, or a parent of a kind, tenant or request it may not follow.
    #[error("{0}")]
    Routing(String),
}

impl HopVerdict {
    /// The verdict's stable code: the log's problem type for an identity or user-action
    /// refusal, else the inclusion check's own.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Self::Identity(e) => e.problem().0,
            Self::UserAction(e) => e.problem().0,
            Self::Inclusion { code, .. } => code,
            Self::Policy(_) => "policy-mismatch",
            Self::Routing(_) => "routing-edge",
        }
    }
}
