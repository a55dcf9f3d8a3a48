//! [`PolicyBook`]: every tenant's policies in force, subjects, votes and recorded results,
//! folded from the log in order.

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::fmt;
use std::ops::Bound;
use std::sync::Arc;

use govern_core::event::{RequestId, SignedEvent, TenantId, Timestamp};
use govern_core::ids::LeafHash;
use govern_core::kinds::{
    APPROVAL_DECIDED, KEYS_SHREDDED, POLICY_ACTIVATED, POLICY_CHANGED, POLICY_EVALUATED,
    POLICY_RESULT_KINDS, TENANT_CREATED, TRANSFER_REJECTED, TRANSFER_REQUESTED, USER_REGISTERED,
    WALLET_REQUESTED,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::evaluate::{
    self, Computed, Decision, Evaluation, Facts, GroupStatus, Outcome, Past, Reason, SubjectRef,
    Vote, decision_kinds,
};
use super::model::{
    Asset, POLICIES_PER_TENANT_MAX, Policy, PolicyChange, PolicyError, TransferFacts, parse_change,
    parse_transfer,
};
use crate::tenants::text;

/// The role that records evaluations and decisions. A result kind from any other producer
/// is not a result: the fold ignores it.
pub const POLICY_ROLE: &str = "policy";

/// A recorded result that is not what this fold computes. The recorded event still takes
/// effect: the log is what it is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("entry {index}: the log records {recorded}, where the policy computes {expected}")]
pub struct Mismatch {
    /// The recorded event's index.
    pub index: u64,
    /// What this fold computes.
    pub expected: String,
    /// What the log records.
    pub recorded: String,
}

/// A policy in force.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ActivePolicy {
    /// The policy.
    pub policy: Policy,
    /// The index of the `policy.activated` that put it in force.
    pub activated: u64,
}

/// What the fold read of a subject's params.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "state", content = "value", rename_all = "snake_case")]
pub enum SubjectFacts {
    /// A transfer's.
    Transfer(TransferFacts),
    /// A policy change.
    Change(PolicyChange),
    /// A wallet creation: nothing to read.
    Wallet,
    /// Not opened (the caller had no key).
    Unknown,
    /// Not acceptable.
    Invalid(String),
}

/// A recorded `policy.evaluated`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RecordedEvaluation {
    /// Its index.
    pub index: u64,
    /// Its leaf hash.
    pub leaf: LeafHash,
    /// Its clear `outcome`.
    pub outcome: String,
}

/// A recorded decision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RecordedDecision {
    /// Its index.
    pub index: u64,
    /// Its leaf hash.
    pub leaf: LeafHash,
    /// Its kind (`transfer.approved`, …).
    pub kind: String,
    /// Its clear `reason`.
    pub reason: String,
    /// Its recorded time.
    pub time: Timestamp,
}

/// A subject (`transfer.requested`, `policy.changed` or `wallet.requested`) and everything
/// the log records of it since: what `govern verify request` reports per hop.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Subject {
    /// Its kind.
    pub kind: &'static str,
    /// Its request id.
    pub request: RequestId,
    /// Its index.
    pub index: u64,
    /// Its leaf hash.
    pub leaf: LeafHash,
    /// Its recorded time.
    pub time: Timestamp,
    /// Who signed it (`body.action.user`, lower-cased).
    pub initiator: Option<String>,
    /// A transfer's wallet: the `{id}` of `/v1/wallets/{id}/transfers`, lower-cased.
    pub wallet: Option<String>,
    /// Its params as read.
    pub facts: SubjectFacts,
    /// Its evaluation, computed when it was applied from the log before it.
    pub evaluation: Computed,
    /// Its recorded `policy.evaluated`.
    pub evaluated: Option<RecordedEvaluation>,
    /// Its recorded decision.
    pub decided: Option<RecordedDecision>,
    /// Its `approval.decided`, in log order.
    pub votes: Vec<Vote>,
    /// Recorded results of it that are not what this fold computes.
    pub mismatches: Vec<Mismatch>,
}

/// What the policy engine owes the log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "owed", rename_all = "snake_case")]
pub enum Owed {
    /// A `policy.evaluated` of the subject (its parent), with the clear body
    /// [`Evaluation::clear_body`] and the sealed `{"reasons": evaluation}`.
    Evaluate {
        /// The tenant.
        tenant: TenantId,
        /// The subject's request.
        request: RequestId,
        /// The subject's leaf.
        subject_leaf: LeafHash,
        /// The evaluation.
        evaluation: Evaluation,
    },
    /// A decision of the subject, with the recorded evaluation as a parent and the clear
    /// body [`Decision::body`].
    Decide {
        /// The tenant.
        tenant: TenantId,
        /// The subject's request.
        request: RequestId,
        /// The kind of event to record (= `decision.kind`).
        kind: &'static str,
        /// The recorded `policy.evaluated`'s leaf.
        evaluation_leaf: LeafHash,
        /// The decision.
        decision: Decision,
    },
}

/// A window query: wallet, asset (none: any), exclusive start and inclusive end in ms.
type WindowQuery = (String, Option<Asset>, i64, i64);

/// One tenant's book.
#[derive(Clone, Debug, Default)]
struct TenantBook {
    /// Registered users, lower-cased.
    users: BTreeSet<String>,
    /// The policies in force, by id.
    policies: BTreeMap<String, ActivePolicy>,
    /// True once a policy change the fold could not read took effect: every later
    /// evaluation is then unknown.
    policies_unknown: bool,
    /// Subjects by request.
    subjects: BTreeMap<RequestId, Subject>,
    /// Subjects without a recorded decision, by index.
    open: BTreeMap<u64, RequestId>,
    /// Transfers by wallet, by (recorded time in ms, index).
    transfers: BTreeMap<String, BTreeMap<(i64, u64), RequestId>>,
}

impl TenantBook {
    /// The wallet's earlier transfers with a recorded time in (`from`, `to`], of `asset`
    /// when given, that may still move funds. A recorded decision says whether one does
    /// (a `transfer.rejected` does not); without one, the computed evaluation does (one
    /// evaluated `block` or `invalid` will be rejected; any other may go ahead). `None` when
    /// that cannot be known for one of them: its params or its evaluation are unknown.
    fn window(&self, wallet: &str, asset: Option<&Asset>, from: i64, to: i64) -> Option<Past> {
        let mut past = Past::default();
        let Some(transfers) = self.transfers.get(wallet) else {
            return Some(past);
        };
        if from >= to {
            return Some(past);
        }
        let range = (
            Bound::Excluded((from, u64::MAX)),
            Bound::Included((to, u64::MAX)),
        );
        for request in transfers.range(range).map(|(_, r)| r) {
            let Some(s) = self.subjects.get(request) else {
                continue;
            };
            if let (SubjectFacts::Transfer(f), Some(a)) = (&s.facts, asset)
                && f.asset != *a
            {
                continue;
            }
            let moves = match (&s.decided, &s.evaluation) {
                (Some(d), _) => d.kind != TRANSFER_REJECTED,
                (None, Computed::Known(e)) => {
                    !matches!(e.outcome, Outcome::Block | Outcome::Invalid)
                }
                (None, Computed::Unknown) => return None,
            };
            if !moves {
                continue;
            }
            let SubjectFacts::Transfer(f) = &s.facts else {
                return None;
            };
            past.sum.add_assign(&f.amount);
            past.count = past.count.saturating_add(1);
        }
        Some(past)
    }

    /// Whether `change` fits the policies in force: a new id while there are
    /// [`POLICIES_PER_TENANT_MAX`] does not, nor the removal of an id not in force.
    fn fits(&self, change: &PolicyChange) -> Result<(), PolicyError> {
        match change {
            PolicyChange::Set(p)
                if !self.policies.contains_key(&p.id)
                    && self.policies.len() >= POLICIES_PER_TENANT_MAX =>
            {
                Err(PolicyError::TooManyPolicies {
                    max: POLICIES_PER_TENANT_MAX,
                })
            }
            PolicyChange::Remove(id) if !self.policies.contains_key(id) => {
                Err(PolicyError::UnknownPolicy { id: id.clone() })
            }
            _ => Ok(()),
        }
    }

    /// The decision `subject` owes at `now`; `None` while pending or when its evaluation
    /// is unknown. A policy change about to take effect is checked again against the
    /// policies in force then: if it no longer fits, it is rejected as invalid.
    fn decision_at(&self, subject: &Subject, now: Timestamp) -> Option<Decision> {
        let evaluation = subject.evaluation.known()?;
        let (approved_kind, rejected_kind) = decision_kinds(subject.kind)?;
        let (approves, reason, approvals) = evaluate::decide(
            evaluation,
            subject.initiator.as_deref(),
            &subject.votes,
            now,
        )?;
        if approves && let SubjectFacts::Change(change) = &subject.facts {
            if self.policies_unknown {
                return None;
            }
            if self.fits(change).is_err() {
                return Some(Decision {
                    kind: rejected_kind,
                    reason: Reason::Invalid,
                    approvals: Vec::new(),
                });
            }
        }
        Some(Decision {
            kind: if approves {
                approved_kind
            } else {
                rejected_kind
            },
            reason,
            approvals,
        })
    }
}

/// Every tenant's policy state, folded from the log: see the [module](super) documentation.
#[derive(Clone, Debug, Default)]
pub struct PolicyBook {
    tenants: BTreeMap<TenantId, Arc<TenantBook>>,
}

/// The `{id}` of a transfer's signed path `/v1/wallets/{id}/transfers`, lower-cased.
fn wallet_of(path: &str) -> Option<String> {
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    match segments.as_slice() {
        ["", "v1", "wallets", id, "transfers"] if !id.is_empty() => Some(id.to_ascii_lowercase()),
        _ => None,
    }
}

fn leaf_list(value: Option<&Value>) -> Option<Vec<String>> {
    value?
        .as_array()?
        .iter()
        .map(|v| v.as_str().map(str::to_string))
        .collect()
}

impl PolicyBook {
    /// An empty book.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Fold in the entry at `index`. Apply every entry of the log in order: kinds it does not
    /// read change nothing, and nothing malformed is trusted (it is ignored, or its subject
    /// evaluated `invalid`).
    ///
    /// `opened` is the payload the caller could open: for `transfer.requested` and
    /// `policy.changed` the action's params (already checked against the user's
    /// commitment, `seal::open_action`); for `policy.evaluated` its sealed members
    /// (`{"reasons": …}`); `None` without the key, and for the kinds that need none.
    ///
    /// # Errors
    /// [`Mismatch`] when the entry is a recorded result (`policy.evaluated` or a decision,
    /// from role `policy`) that is not what this fold computes. The entry takes effect all
    /// the same, and the mismatch stays on its subject ([`Subject::mismatches`]).
    pub fn apply(
        &mut self,
        index: u64,
        signed: &SignedEvent,
        opened: Option<&Map<String, Value>>,
    ) -> Result<(), Mismatch> {
        let event = signed.event();
        let kind = event.kind.as_str();
        if kind == TENANT_CREATED {
            self.tenants.entry(event.tenant).or_default();
            return Ok(());
        }
        let relevant = matches!(
            kind,
            KEYS_SHREDDED
                | USER_REGISTERED
                | TRANSFER_REQUESTED
                | POLICY_CHANGED
                | WALLET_REQUESTED
                | APPROVAL_DECIDED
        ) || (POLICY_RESULT_KINDS.contains(&kind)
            && event.producer.role.as_str() == POLICY_ROLE);
        if !relevant {
            return Ok(());
        }
        if kind == KEYS_SHREDDED {
            // Nothing is owed a shredded tenant, and the log takes none of its events.
            self.tenants.remove(&event.tenant);
            return Ok(());
        }
        let Some(tenant) = self.tenants.get_mut(&event.tenant) else {
            return Ok(());
        };
        let tenant = Arc::make_mut(tenant);
        match kind {
            USER_REGISTERED => {
                if let Some(user) = text(&event.body, "user") {
                    tenant.users.insert(user.to_ascii_lowercase());
                }
                Ok(())
            }
            TRANSFER_REQUESTED | POLICY_CHANGED | WALLET_REQUESTED => {
                apply_subject(tenant, index, signed, opened);
                Ok(())
            }
            APPROVAL_DECIDED => {
                apply_vote(tenant, index, signed);
                Ok(())
            }
            POLICY_EVALUATED => apply_evaluated(tenant, index, signed, opened),
            _ => apply_decided(tenant, index, signed),
        }
    }

    /// A subject of a live tenant.
    #[must_use]
    pub fn subject(&self, tenant: &TenantId, request: &RequestId) -> Option<&Subject> {
        self.tenants.get(tenant)?.subjects.get(request)
    }

    /// The policies in force in a live tenant, by id; `None` for a tenant not created or
    /// shredded, or once a policy change the fold could not read took effect.
    #[must_use]
    pub fn policies(&self, tenant: &TenantId) -> Option<&BTreeMap<String, ActivePolicy>> {
        self.tenants
            .get(tenant)
            .filter(|t| !t.policies_unknown)
            .map(|t| &t.policies)
    }

    /// The decision the subject of `request` owes at `now`: `None` while it waits for
    /// approvals before its deadline, when its evaluation is unknown, or for no such
    /// subject. Whether a decision is already recorded does not matter here
    /// ([`Subject::decided`]).
    #[must_use]
    pub fn decision_at(
        &self,
        tenant: &TenantId,
        request: &RequestId,
        now: Timestamp,
    ) -> Option<Decision> {
        let t = self.tenants.get(tenant)?;
        t.decision_at(t.subjects.get(request)?, now)
    }

    /// For a subject evaluated `approval`: where each of its groups stands (the approvals
    /// counted so far and how many more it needs). `None` for any other subject.
    #[must_use]
    pub fn pending(&self, tenant: &TenantId, request: &RequestId) -> Option<Vec<GroupStatus>> {
        let subject = self.subject(tenant, request)?;
        let evaluation = subject
            .evaluation
            .known()
            .filter(|e| e.outcome == Outcome::Approval)?;
        Some(evaluate::group_status(
            evaluation,
            subject.initiator.as_deref(),
            &subject.votes,
        ))
    }

    /// Whether this fold reads `kind` (a follower may skip every other entry).
    #[must_use]
    pub fn reads(kind: &str) -> bool {
        matches!(
            kind,
            TENANT_CREATED
                | KEYS_SHREDDED
                | USER_REGISTERED
                | TRANSFER_REQUESTED
                | POLICY_CHANGED
                | WALLET_REQUESTED
                | APPROVAL_DECIDED
        ) || POLICY_RESULT_KINDS.contains(&kind)
    }

    /// Every subject of the live tenants: (tenant, request), in tenant then request order.
    pub fn requests(&self) -> impl Iterator<Item = (TenantId, RequestId)> + '_ {
        self.tenants
            .iter()
            .flat_map(|(t, book)| book.subjects.keys().map(move |r| (*t, *r)))
    }

    /// The earliest deadline of a subject still waiting for approvals (its evaluation
    /// recorded, no decision yet): when a decision by timeout falls due.
    #[must_use]
    pub fn next_deadline(&self) -> Option<Timestamp> {
        self.tenants
            .values()
            .flat_map(|t| t.open.values().filter_map(|r| t.subjects.get(r)))
            .filter(|s| s.evaluated.is_some() && s.decided.is_none())
            .filter_map(|s| s.evaluation.known().and_then(|e| e.deadline))
            .min_by_key(|d| d.unix_ms())
    }

    /// What the policy engine owes at `now`, in subject index order: for every subject of a
    /// live tenant without a recorded decision, its evaluation if none is recorded and it
    /// is known; else its decision if one is owed at `now`.
    #[must_use]
    pub fn owed(&self, now: Timestamp) -> Vec<Owed> {
        let mut owed: Vec<(u64, Owed)> = Vec::new();
        for (tenant_id, tenant) in &self.tenants {
            for (index, request) in &tenant.open {
                let Some(subject) = tenant.subjects.get(request) else {
                    continue;
                };
                match &subject.evaluated {
                    None => {
                        if let Computed::Known(evaluation) = &subject.evaluation {
                            owed.push((
                                *index,
                                Owed::Evaluate {
                                    tenant: *tenant_id,
                                    request: *request,
                                    subject_leaf: subject.leaf,
                                    evaluation: evaluation.clone(),
                                },
                            ));
                        }
                    }
                    Some(recorded) => {
                        if let Some(decision) = tenant.decision_at(subject, now) {
                            owed.push((
                                *index,
                                Owed::Decide {
                                    tenant: *tenant_id,
                                    request: *request,
                                    kind: decision.kind,
                                    evaluation_leaf: recorded.leaf,
                                    decision,
                                },
                            ));
                        }
                    }
                }
            }
        }
        owed.sort_by_key(|(index, _)| *index);
        owed.into_iter().map(|(_, o)| o).collect()
    }
}

/// A subject: read what it asks and evaluate it now, against the state before it.
fn apply_subject(
    tenant: &mut TenantBook,
    index: u64,
    signed: &SignedEvent,
    opened: Option<&Map<String, Value>>,
) {
    let event = signed.event();
    let request = event.request;
    if tenant.subjects.contains_key(&request) {
        // One subject per request: the log's uniqueness keys make a second impossible.
        return;
    }
    let kind = match event.kind.as_str() {
        TRANSFER_REQUESTED => TRANSFER_REQUESTED,
        POLICY_CHANGED => POLICY_CHANGED,
        _ => WALLET_REQUESTED,
    };
    let action = event.body.get("action").and_then(Value::as_object);
    let initiator = action
        .and_then(|a| text(a, "user"))
        .map(str::to_ascii_lowercase);
    let path = action.and_then(|a| text(a, "path"));
    let wallet = if kind == TRANSFER_REQUESTED {
        path.and_then(wallet_of)
    } else {
        None
    };
    let facts = if initiator.is_none() {
        SubjectFacts::Invalid("action: no signed action naming its user".into())
    } else if kind == TRANSFER_REQUESTED && wallet.is_none() {
        SubjectFacts::Invalid("action.path: not /v1/wallets/{id}/transfers".into())
    } else {
        match (kind, opened) {
            (WALLET_REQUESTED, _) => SubjectFacts::Wallet,
            (_, None) => SubjectFacts::Unknown,
            (TRANSFER_REQUESTED, Some(params)) => match parse_transfer(params) {
                Ok(f) => SubjectFacts::Transfer(f),
                Err(e) => SubjectFacts::Invalid(e.to_string()),
            },
            (_, Some(params)) => match parse_change(params) {
                Ok(c) => SubjectFacts::Change(c),
                Err(e) => SubjectFacts::Invalid(e.to_string()),
            },
        }
    };
    let subject_ref = SubjectRef {
        kind: kind.to_string(),
        request,
        index,
    };
    let evaluation = match &facts {
        SubjectFacts::Invalid(reason) => {
            Computed::Known(evaluate::invalid(subject_ref, reason.clone()))
        }
        SubjectFacts::Unknown => Computed::Unknown,
        _ if tenant.policies_unknown => Computed::Unknown,
        _ => {
            let misfit = match &facts {
                SubjectFacts::Change(change) => tenant.fits(change).err(),
                _ => None,
            };
            if let Some(e) = misfit {
                Computed::Known(evaluate::invalid(subject_ref, e.to_string()))
            } else {
                let facts_in = match (&facts, &wallet) {
                    (SubjectFacts::Transfer(f), Some(w)) => Facts::Transfer {
                        wallet: w,
                        facts: f,
                    },
                    _ => Facts::Other,
                };
                let book: &TenantBook = tenant;
                // Policies often share a window (a day, of the native asset): each distinct
                // query is answered once per evaluation.
                let memo: std::cell::RefCell<Vec<(WindowQuery, Option<Past>)>> =
                    std::cell::RefCell::new(Vec::new());
                evaluate::evaluate(
                    subject_ref,
                    event.time,
                    facts_in,
                    book.policies.values().map(|a| (&a.policy, a.activated)),
                    &|wallet, asset, from, to| {
                        let key = (wallet.to_string(), asset.cloned(), from, to);
                        if let Some((_, past)) = memo.borrow().iter().find(|(k, _)| *k == key) {
                            return past.clone();
                        }
                        let past = book.window(wallet, asset, from, to);
                        memo.borrow_mut().push((key, past.clone()));
                        past
                    },
                )
            }
        }
    };
    if let Some(w) = &wallet
        && !matches!(facts, SubjectFacts::Invalid(_))
    {
        tenant
            .transfers
            .entry(w.clone())
            .or_default()
            .insert((event.time.unix_ms(), index), request);
    }
    tenant.open.insert(index, request);
    tenant.subjects.insert(
        request,
        Subject {
            kind,
            request,
            index,
            leaf: signed.leaf_hash(),
            time: event.time,
            initiator,
            wallet,
            facts,
            evaluation,
            evaluated: None,
            decided: None,
            votes: Vec::new(),
            mismatches: Vec::new(),
        },
    );
}

/// An `approval.decided`: a vote on the subject of its request.
fn apply_vote(tenant: &mut TenantBook, index: u64, signed: &SignedEvent) {
    let event = signed.event();
    let approve = match event
        .body
        .get("clear")
        .and_then(Value::as_object)
        .and_then(|c| text(c, "decision"))
    {
        Some("approve") => true,
        Some("deny") => false,
        _ => return,
    };
    let Some(user) = text(&event.body, "user").map(str::to_ascii_lowercase) else {
        return;
    };
    let registered = tenant.users.contains(&user);
    if let Some(subject) = tenant.subjects.get_mut(&event.request) {
        subject.votes.push(Vote {
            index,
            leaf: signed.leaf_hash(),
            user,
            approve,
            time: event.time,
            registered,
        });
    }
}

/// A recorded `policy.evaluated`: compare, then record it on its subject (the first one).
fn apply_evaluated(
    tenant: &mut TenantBook,
    index: u64,
    signed: &SignedEvent,
    opened: Option<&Map<String, Value>>,
) -> Result<(), Mismatch> {
    let event = signed.event();
    let recorded_subject = text(&event.body, "subject").unwrap_or_default();
    let recorded_outcome = text(&event.body, "outcome").unwrap_or_default();
    let mismatch = |expected: String, recorded: String| Mismatch {
        index,
        expected,
        recorded,
    };
    let Some(subject) = tenant.subjects.get_mut(&event.request) else {
        return Err(mismatch(
            format!("no evaluation: request {} has no subject", event.request.0),
            format!("policy.evaluated of subject {recorded_subject}"),
        ));
    };
    let found = if let Some(first) = &subject.evaluated {
        Err(mismatch(
            format!("one policy.evaluated (entry {})", first.index),
            "a second".into(),
        ))
    } else {
        subject.evaluated = Some(RecordedEvaluation {
            index,
            leaf: signed.leaf_hash(),
            outcome: recorded_outcome.to_string(),
        });
        check_evaluated(subject, recorded_subject, recorded_outcome, opened)
            .map_err(|(e, r)| mismatch(e, r))
    };
    if let Err(m) = &found {
        subject.mismatches.push(m.clone());
    }
    found
}

fn check_evaluated(
    subject: &Subject,
    recorded_subject: &str,
    recorded_outcome: &str,
    opened: Option<&Map<String, Value>>,
) -> Result<(), (String, String)> {
    if recorded_subject != subject.leaf.to_hex() {
        return Err((
            format!("subject {}", subject.leaf),
            format!("subject {recorded_subject:?}"),
        ));
    }
    let Computed::Known(expected) = &subject.evaluation else {
        return Ok(());
    };
    if recorded_outcome != expected.outcome.as_str() {
        return Err((
            format!("outcome {:?}", expected.outcome.as_str()),
            format!("outcome {recorded_outcome:?}"),
        ));
    }
    if let Some(opened) = opened {
        // Compared in the form sealed: the full evaluation, or its digest form when long.
        let expected_body = expected.sealed_body();
        if *opened != expected_body {
            let json = |m: &Map<String, Value>| serde_json::to_string(m).unwrap_or_default();
            return Err((
                format!("sealed {}", json(&expected_body)),
                format!("sealed {}", json(opened)),
            ));
        }
    }
    Ok(())
}

/// A recorded decision: compare it with the decision owed at its own time, then record it
/// and let it take effect (a policy change activated; a transfer rejected drops out of
/// velocity windows).
fn apply_decided(
    tenant: &mut TenantBook,
    index: u64,
    signed: &SignedEvent,
) -> Result<(), Mismatch> {
    let event = signed.event();
    let kind = event.kind.as_str();
    let mismatch = |expected: String, recorded: String| Mismatch {
        index,
        expected,
        recorded,
    };
    let Some(subject) = tenant.subjects.get(&event.request) else {
        return Err(mismatch(
            format!("no decision: request {} has no subject", event.request.0),
            format!("a {kind}"),
        ));
    };
    let Some((approved_kind, rejected_kind)) = decision_kinds(subject.kind) else {
        return Ok(());
    };
    if kind != approved_kind && kind != rejected_kind {
        let m = mismatch(
            format!(
                "a {approved_kind} or {rejected_kind} (the subject is a {})",
                subject.kind
            ),
            format!("a {kind}"),
        );
        if let Some(s) = tenant.subjects.get_mut(&event.request) {
            s.mismatches.push(m.clone());
        }
        return Err(m);
    }
    if let Some(first) = &subject.decided {
        let m = mismatch(
            format!("one decision ({} at entry {})", first.kind, first.index),
            format!("a second, {kind}"),
        );
        if let Some(s) = tenant.subjects.get_mut(&event.request) {
            s.mismatches.push(m.clone());
        }
        return Err(m);
    }
    let found = check_decided(tenant, subject, signed).map_err(|(e, r)| mismatch(e, r));
    let subject_index = subject.index;
    let reason = text(&event.body, "reason").unwrap_or_default().to_string();
    let change = match (&subject.facts, kind) {
        (SubjectFacts::Change(c), POLICY_ACTIVATED) => Some(Some(c.clone())),
        (SubjectFacts::Unknown, POLICY_ACTIVATED) => Some(None),
        _ => None,
    };
    match change {
        Some(Some(PolicyChange::Set(policy))) => {
            tenant.policies.insert(
                policy.id.clone(),
                ActivePolicy {
                    policy,
                    activated: index,
                },
            );
        }
        Some(Some(PolicyChange::Remove(id))) => {
            tenant.policies.remove(&id);
        }
        Some(None) => tenant.policies_unknown = true,
        None => {}
    }
    tenant.open.remove(&subject_index);
    if let Some(s) = tenant.subjects.get_mut(&event.request) {
        s.decided = Some(RecordedDecision {
            index,
            leaf: signed.leaf_hash(),
            kind: kind.to_string(),
            reason,
            time: event.time,
        });
        if let Err(m) = &found {
            s.mismatches.push(m.clone());
        }
    }
    found
}

fn check_decided(
    tenant: &TenantBook,
    subject: &Subject,
    signed: &SignedEvent,
) -> Result<(), (String, String)> {
    let event = signed.event();
    let kind = event.kind.as_str();
    let body = &event.body;
    let recorded_evaluation = text(body, "evaluation").unwrap_or_default();
    let Some(evaluated) = &subject.evaluated else {
        return Err((
            "a policy.evaluated recorded before the decision".into(),
            format!("a {kind} naming evaluation {recorded_evaluation:?}"),
        ));
    };
    if recorded_evaluation != evaluated.leaf.to_hex() {
        return Err((
            format!("evaluation {}", evaluated.leaf),
            format!("evaluation {recorded_evaluation:?}"),
        ));
    }
    if subject.evaluation.known().is_none() {
        return Ok(());
    }
    let recorded_reason = text(body, "reason").unwrap_or_default();
    let recorded_approvals = leaf_list(body.get("approvals"));
    let recorded = || {
        format!(
            "{kind} ({recorded_reason}, approvals {})",
            recorded_approvals
                .as_ref()
                .map_or_else(|| "unreadable".into(), |a| a.join(", "))
        )
    };
    let Some(expected) = tenant.decision_at(subject, event.time) else {
        return Err((
            format!("no decision yet at {} (approval pending)", event.time),
            recorded(),
        ));
    };
    let expected_approvals: Vec<String> = expected.approvals.iter().map(LeafHash::to_hex).collect();
    if expected.kind != kind
        || expected.reason.as_str() != recorded_reason
        || recorded_approvals.as_ref() != Some(&expected_approvals)
    {
        return Err((
            format!(
                "{} ({}, approvals {})",
                expected.kind,
                expected.reason.as_str(),
                expected_approvals.join(", ")
            ),
            recorded(),
        ));
    }
    Ok(())
}

impl fmt::Display for SubjectFacts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Transfer(t) => write!(
                f,
                "transfer of {} {} to {}",
                t.amount,
                t.asset.as_str(),
                t.to
            ),
            Self::Change(PolicyChange::Set(p)) => write!(f, "set policy {}", p.id),
            Self::Change(PolicyChange::Remove(id)) => write!(f, "remove policy {id}"),
            Self::Wallet => f.write_str("wallet creation"),
            Self::Unknown => f.write_str("unknown (not opened)"),
            Self::Invalid(reason) => write!(f, "invalid: {reason}"),
        }
    }
}
