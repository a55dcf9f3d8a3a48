//! The policy worker (docs/design.md §8; docs/formats.md, "Policies"): an enclave process
//! that follows the log and decides every transfer, policy change and wallet request by the
//! tenant's policies.
//!
//! Each round it
//! 1. follows the log to its latest witnessed checkpoint ([`Runtime::follow`]);
//! 2. attests when it never did or its role's `reattest_s` has passed;
//! 3. opens the sealed parameters of each new transfer and policy change with its released
//!    scope keys (`open_action`, which checks them against the user's signed commitment;
//!    a payload that does not open or does not match is evaluated as invalid) and records
//!    what it opened in `reads.audit`;
//! 4. folds every entry into the pure [`PolicyBook`] (govern-projections), which evaluates a
//!    request as of its place in the log;
//! 5. appends what the book says is owed: a `policy.evaluated` (outcome in clear, reasons
//!    sealed in scope `policies`), then the decision (`transfer.approved`/`rejected`,
//!    `policy.activated`/`rejected`, `wallet.approved`/`rejected`) once the outcome, a
//!    quorum, a denial or the deadline decides;
//! 6. long-polls for the next checkpoint, waking early for the next deadline.
//!
//! It keeps no decision state of its own: the book is rebuilt from the log at every start,
//! and a result whose uniqueness key is already taken counts as appended, so a worker killed
//! at any point appends every decision exactly once.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use govern_core::event::{SignedEvent, TenantId, Timestamp};
use govern_core::kinds::{
    KEYS_ROTATED, KEYS_SHREDDED, POLICY_ACTIVATED, POLICY_CHANGED, POLICY_EVALUATED,
    POLICY_REJECTED, TRANSFER_REQUESTED, WALLET_REQUESTED,
};
use govern_core::seal::{open_action, sealed_scope};
use govern_projections::policy::{Owed, PolicyBook};
use serde_json::{Map, Value};

use crate::nsm::Nsm;
use crate::runtime::{Appended, POLL_WAIT_MS, Runtime, WorkerConfig, WorkerError};

/// The policy worker's role.
pub const ROLE: &str = "policy";
/// The scopes it asks the key service for.
pub const SCOPES: [&str; 3] = ["approvals", "policies", "transfers"];
/// The scope its evaluations' reasons are sealed in.
pub const REASONS_SCOPE: &str = "policies";

/// What one round did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Round {
    /// Entries folded.
    pub folded: usize,
    /// Results appended now.
    pub appended: usize,
    /// Results the log held already.
    pub already: usize,
}

/// The policy worker.
#[derive(Debug)]
pub struct PolicyWorker {
    rt: Runtime,
    book: PolicyBook,
    /// Results appended and not yet seen in the followed log.
    in_flight: BTreeSet<InFlight>,
}

impl PolicyWorker {
    /// A policy worker of `config` (its role must be `policy`), attesting through `nsm`.
    ///
    /// # Errors
    /// As [`Runtime::new`].
    pub fn new(config: WorkerConfig, nsm: Box<dyn Nsm>) -> Result<Self, WorkerError> {
        Ok(Self {
            rt: Runtime::new(config, nsm)?,
            book: PolicyBook::default(),
            in_flight: BTreeSet::new(),
        })
    }

    /// The book folded so far.
    #[must_use]
    pub fn book(&self) -> &PolicyBook {
        &self.book
    }

    /// The runtime (identity, position).
    #[must_use]
    pub fn runtime(&self) -> &Runtime {
        &self.rt
    }

    /// Run rounds until an error that waiting does not cure.
    ///
    /// # Errors
    /// [`WorkerError`]: the log does not verify, the node refuses this worker.
    pub async fn run(mut self) -> Result<(), WorkerError> {
        loop {
            self.round().await?;
            self.rt.wait_for_growth(self.wait()).await;
        }
    }

    /// How long to wait for the log to grow: until the next deadline, at most the long
    /// poll's bound.
    fn wait(&self) -> Duration {
        let max = Duration::from_millis(POLL_WAIT_MS);
        match self.book.next_deadline() {
            Some(deadline) => {
                let ms = deadline.unix_ms() - Timestamp::now().unix_ms();
                if ms < 0 {
                    // Past: its decision is appended and not yet in the followed log.
                    return Duration::from_millis(100);
                }
                // Wake just after the deadline: a decision by timeout is owed at it.
                Duration::from_millis(u64::try_from(ms).unwrap_or(0) + 1).min(max)
            }
            None => max,
        }
    }

    /// One round: follow, attest if due, fold, append what is owed.
    ///
    /// # Errors
    /// [`WorkerError`].
    pub async fn round(&mut self) -> Result<Round, WorkerError> {
        let started = std::time::Instant::now();
        let batch = self
            .rt
            .follow(|kind| PolicyBook::reads(kind) || kind == KEYS_ROTATED)
            .await?;
        let followed = started.elapsed();
        if self.rt.attestation_due() {
            self.rt.attest().await?;
        }
        let mut round = Round {
            folded: batch.len(),
            ..Round::default()
        };
        let reads = self.fold(batch).await?;
        let folded = started.elapsed();
        self.act(&mut round, reads).await?;
        tracing::debug!(
            size = self.rt.size(),
            folded = round.folded,
            appended = round.appended,
            follow_ms = followed.as_secs_f64() * 1e3,
            fold_ms = (folded - followed).as_secs_f64() * 1e3,
            act_ms = (started.elapsed() - folded).as_secs_f64() * 1e3,
            "round"
        );
        Ok(round)
    }

    /// Open and fold `batch`; what was opened, by tenant and scope, for `reads.audit`.
    async fn fold(&mut self, batch: Vec<(u64, SignedEvent)>) -> Result<Reads, WorkerError> {
        let mut reads: Reads = BTreeMap::new();
        for (index, signed) in batch {
            let event = signed.event();
            let kind = event.kind.as_str();
            let opened = if kind == TRANSFER_REQUESTED || kind == POLICY_CHANGED {
                self.open(index, &signed, &mut reads).await?
            } else {
                None
            };
            if kind == KEYS_SHREDDED || kind == KEYS_ROTATED {
                // Shredded: nothing to hold. Rotated: the next seal takes the new version.
                self.rt.forget(&event.tenant);
            }
            if let Err(mismatch) = self.book.apply(index, &signed, opened.as_ref()) {
                tracing::error!(%mismatch, "a recorded policy result is not what the policies say");
            }
        }
        Ok(reads)
    }

    /// The opened parameters of a sealed action: `None` when its tenant's key is not to be
    /// had (shredded), an empty object when the payload does not open or does not match
    /// the user's commitment (the book evaluates that as invalid).
    async fn open(
        &mut self,
        index: u64,
        signed: &SignedEvent,
        reads: &mut BTreeMap<(TenantId, String), Vec<u64>>,
    ) -> Result<Option<Map<String, Value>>, WorkerError> {
        let event = signed.event();
        let Ok((scope, version)) = sealed_scope(event) else {
            tracing::warn!(index, "a sealed action without its sealed payload: invalid");
            return Ok(Some(Map::new()));
        };
        let key = match self.rt.scope_key(event.tenant, &scope, version).await {
            Ok(k) => k,
            // A shredded (or unknown) tenant: its keys are gone, and the evaluation unknown.
            Err(WorkerError::Refused(c)) if matches!(c.status(), Some(404 | 410)) => {
                tracing::warn!(index, error = %c, "cannot open: the tenant has no keys");
                return Ok(None);
            }
            // Anything else (this identity refused, a release that does not open) must not
            // leave the subject unknown for good: stop, and read the log again at restart.
            Err(e) => return Err(e),
        };
        reads.entry((event.tenant, scope)).or_default().push(index);
        Ok(match open_action(event, &key) {
            Ok(params) => Some(params),
            Err(e) => {
                tracing::warn!(index, error = %e, "the sealed payload does not stand: invalid");
                Some(Map::new())
            }
        })
    }

    /// Append what the book owes now, and the round's `reads.audit`: every event of a phase
    /// at once (the log commits them in one batch), evaluations first, then the decisions
    /// that follow from an evaluation alone (a transfer or wallet request allowed, blocked or
    /// invalid, or already decided by votes), which need the evaluation in the log.
    async fn act(&mut self, round: &mut Round, reads: Reads) -> Result<(), WorkerError> {
        let now = Timestamp::now();
        let owed = self.book.owed(now);
        let owed_keys: BTreeSet<InFlight> = owed.iter().map(owed_key).collect();
        // What the log now shows is no longer in flight.
        self.in_flight.retain(|k| owed_keys.contains(k));
        let mut first: Vec<(Option<InFlight>, SignedEvent)> = Vec::new();
        // A decision that follows an evaluation of `first`, by that evaluation's position.
        let mut then: Vec<(usize, InFlight, SignedEvent)> = Vec::new();
        // A policy change's decision is judged against the policies in force when it lands: at
        // most one per tenant is in flight, so none is decided against a set another is
        // about to change.
        let mut changing: BTreeSet<TenantId> = self
            .in_flight
            .iter()
            .filter(|(_, _, kind)| *kind == POLICY_ACTIVATED || *kind == POLICY_REJECTED)
            .map(|(tenant, _, _)| *tenant)
            .collect();
        for item in owed {
            let key = owed_key(&item);
            if self.in_flight.contains(&key) {
                continue;
            }
            if let Owed::Decide { tenant, kind, .. } = &item
                && (*kind == POLICY_ACTIVATED || *kind == POLICY_REJECTED)
                && !changing.insert(*tenant)
            {
                continue;
            }
            if let Err(e) = self.build(&item, key, now, &mut first, &mut then).await {
                // One tenant's trouble (a key the service will not release now) is not the
                // others': this result waits for a later round.
                tracing::warn!(error = %e, "cannot sign a result now");
            }
        }
        for ((tenant, scope), entries) in reads {
            for event in self.rt.reads_events(tenant, &scope, &entries).await? {
                first.push((None, event));
            }
        }
        let Some(new_first) = self.append_all(&first, round).await else {
            return Ok(());
        };
        // Only after its evaluation, appended now (not one a predecessor appended).
        let then: Vec<(Option<InFlight>, SignedEvent)> = then
            .into_iter()
            .filter(|(at, _, _)| new_first.get(*at).copied().unwrap_or(false))
            .map(|(_, key, event)| (Some(key), event))
            .collect();
        self.append_all(&then, round).await;
        Ok(())
    }

    /// Sign what `item` owes into `first` (and a decision that follows from an evaluation
    /// alone into `then`).
    async fn build(
        &mut self,
        item: &Owed,
        key: InFlight,
        now: Timestamp,
        first: &mut Vec<(Option<InFlight>, SignedEvent)>,
        then: &mut Vec<(usize, InFlight, SignedEvent)>,
    ) -> Result<(), WorkerError> {
        match item {
            Owed::Evaluate {
                tenant,
                request,
                subject_leaf,
                evaluation,
            } => {
                let plaintext = govern_core::canonical::to_vec(&evaluation.sealed_body())
                    .map_err(|e| WorkerError::Event(e.to_string()))?;
                let evaluated = self
                    .rt
                    .sign(
                        POLICY_EVALUATED,
                        *tenant,
                        *request,
                        vec![*subject_leaf],
                        evaluation.clear_body(subject_leaf),
                        Some((REASONS_SCOPE, plaintext)),
                        now,
                    )
                    .await?;
                let decided_now = [TRANSFER_REQUESTED, WALLET_REQUESTED]
                    .contains(&evaluation.subject.kind.as_str());
                if decided_now && let Some(decision) = self.book.decision_at(tenant, request, now) {
                    let leaf = evaluated.leaf_hash();
                    let event = self
                        .rt
                        .sign(
                            decision.kind,
                            *tenant,
                            *request,
                            decision.parents(&leaf),
                            decision.body(&leaf),
                            None,
                            now,
                        )
                        .await?;
                    then.push((
                        first.len(),
                        (*tenant, request.0.to_string(), decision.kind),
                        event,
                    ));
                }
                first.push((Some(key), evaluated));
            }
            Owed::Decide {
                tenant,
                request,
                kind,
                evaluation_leaf,
                decision,
            } => {
                let event = self
                    .rt
                    .sign(
                        kind,
                        *tenant,
                        *request,
                        decision.parents(evaluation_leaf),
                        decision.body(evaluation_leaf),
                        None,
                        now,
                    )
                    .await?;
                first.push((Some(key), event));
            }
        }
        Ok(())
    }

    /// Append `events` at once; which were appended now, or `None` when the log refused
    /// this worker's identity (it attests again before the next round).
    async fn append_all(
        &mut self,
        events: &[(Option<InFlight>, SignedEvent)],
        round: &mut Round,
    ) -> Option<Vec<bool>> {
        let answers =
            futures_util::future::join_all(events.iter().map(|(_, event)| self.rt.append(event)))
                .await;
        let mut refused_identity = false;
        let mut new = Vec::with_capacity(events.len());
        for ((key, event), answer) in events.iter().zip(answers) {
            let kind = event.event().kind.to_string();
            new.push(matches!(answer, Ok(Appended::New(_))));
            match answer {
                Ok(Appended::New(r)) => {
                    tracing::info!(%kind, index = r.index, request = %event.event().request.0, "appended");
                    if key.is_some() {
                        round.appended += 1;
                    }
                }
                Ok(Appended::Already) => round.already += 1,
                Err(e) => {
                    // The log refused this worker's identity (expired, replaced, no longer
                    // pinned): attest again before the next round. Any other refusal is this
                    // event's (a tenant shredded since): logged, and the next round computes
                    // what is still owed again.
                    let identity = matches!(&e, WorkerError::Refused(c) if crate::runtime::problem_kind(c).is_some_and(is_identity_problem));
                    tracing::warn!(error = %e, %kind, identity, "the log refused an event");
                    refused_identity |= identity;
                    continue;
                }
            }
            if let Some(key) = key {
                self.in_flight.insert(key.clone());
            }
        }
        if refused_identity {
            self.rt.force_reattest();
            return None;
        }
        Some(new)
    }
}

/// What a round opened: entries by tenant and scope.
type Reads = BTreeMap<(TenantId, String), Vec<u64>>;

/// A result appended and not yet seen in the followed log: (tenant, request, kind).
type InFlight = (TenantId, String, &'static str);

/// The log's problem types that refuse the producer's identity rather than the event.
fn is_identity_problem(kind: &str) -> bool {
    matches!(
        kind,
        "attestation-missing"
            | "no-identity"
            | "attestation-stale"
            | "producer-key-mismatch"
            | "identity-expired"
            | "identity-quarantined"
            | "identity-not-pinned"
    )
}

fn owed_key(o: &Owed) -> InFlight {
    match o {
        Owed::Evaluate {
            tenant, request, ..
        } => (*tenant, request.0.to_string(), POLICY_EVALUATED),
        Owed::Decide {
            tenant,
            request,
            kind,
            ..
        } => (*tenant, request.0.to_string(), *kind),
    }
}
