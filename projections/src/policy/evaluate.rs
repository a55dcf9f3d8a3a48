//! The evaluation of one subject against the policies in force, and the decision it owes
//! given the approvals recorded since: pure functions of their inputs, which the fold
//! ([`super::book`]) gathers from the log.

use std::collections::BTreeSet;

use govern_core::event::{RequestId, Timestamp};
use govern_core::ids::LeafHash;
use govern_core::kinds::{
    POLICY_ACTIVATED, POLICY_CHANGED, POLICY_REJECTED, TRANSFER_APPROVED, TRANSFER_REJECTED,
    TRANSFER_REQUESTED, WALLET_APPROVED, WALLET_REJECTED, WALLET_REQUESTED,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};

use super::amount::Amount;
use super::model::{Action, ActionKind, Activity, Approvers, Asset, Policy, Rule, TransferFacts};

/// The first timestamp ([`Timestamp`] spans years 0000 to 9999).
/// The longest evaluation (its JCS) sealed in full; a longer one is sealed in its digest
/// form ([`Evaluation::sealed_body`]). Sealed (AES-GCM adds 16 bytes) and base64-encoded
/// (4/3), 32,768 bytes leave room for the envelope within an event's 65,535.
pub const REASONS_BYTES_MAX: usize = 32_768;

const TIME_MIN_MS: i64 = -62_167_219_200_000;
/// The last timestamp, 9999-12-31T23:59:59.999Z.
const TIME_MAX_MS: i64 = 253_402_300_799_999;

/// `ms` as a timestamp, clamped to the years a [`Timestamp`] spans (a window's start before
/// year 0, a deadline after 9999).
fn clamped(ms: i64) -> Option<Timestamp> {
    Timestamp::from_unix_ms(ms.clamp(TIME_MIN_MS, TIME_MAX_MS))
}

/// What the policies say of a subject.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// No triggered policy blocks or asks for approval.
    Allow,
    /// A triggered policy blocks.
    Block,
    /// Triggered policies ask for approval, and none blocks.
    Approval,
    /// The subject's params are not acceptable (unparsable, or a policy change that does
    /// not fit the tenant's policies).
    Invalid,
}

impl Outcome {
    /// Its name in `policy.evaluated`'s clear body.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Block => "block",
            Self::Approval => "approval",
            Self::Invalid => "invalid",
        }
    }
}

/// The subject an evaluation is of.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubjectRef {
    /// `transfer.requested`, `policy.changed` or `wallet.requested`.
    pub kind: String,
    /// Its request id.
    pub request: RequestId,
    /// Its index in the log.
    pub index: u64,
}

/// A matched policy's rule, with the inputs it read and whether it triggered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum RuleReport {
    /// `always`.
    Always {
        /// Always true.
        triggered: bool,
    },
    /// `amount_limit`.
    AmountLimit {
        /// The rule's asset.
        asset: Asset,
        /// The transfer's amount; `null` when it moves another asset (then the rule does not
        /// trigger).
        amount: Option<Amount>,
        /// The rule's max.
        max: Amount,
        /// amount > max.
        triggered: bool,
    },
    /// `recipient_allowlist`. The list is not echoed (events are at most 65,535 bytes).
    RecipientAllowlist {
        /// The transfer's recipient, lower-cased.
        to: String,
        /// Whether it is in the list.
        listed: bool,
        /// How many addresses the list holds.
        size: u64,
        /// Hex SHA-256 of the JCS of the list as the policy holds it (lower-cased, in the
        /// policy's order).
        list: String,
        /// Not listed.
        triggered: bool,
    },
    /// `amount_velocity`.
    AmountVelocity {
        /// The rule's asset.
        asset: Asset,
        /// The window.
        window_s: u64,
        /// The window's exclusive start: the subject's time − `window_s`.
        from: Timestamp,
        /// The sum of the wallet's earlier transfers of the asset in the window; `null`
        /// when this transfer moves another asset (then the rule does not trigger).
        past: Option<Amount>,
        /// This transfer's amount (`null` likewise).
        amount: Option<Amount>,
        /// past + amount (`null` likewise).
        total: Option<Amount>,
        /// The rule's max.
        max: Amount,
        /// total > max.
        triggered: bool,
    },
    /// `count_velocity`.
    CountVelocity {
        /// The window.
        window_s: u64,
        /// The window's exclusive start: the subject's time − `window_s`.
        from: Timestamp,
        /// How many earlier transfers of the wallet are in the window.
        past: u64,
        /// This transfer: 1.
        amount: u64,
        /// past + 1.
        total: u64,
        /// The rule's max.
        max: u64,
        /// total > max.
        triggered: bool,
    },
}

impl RuleReport {
    /// Whether the rule triggered.
    #[must_use]
    pub fn triggered(&self) -> bool {
        match self {
            Self::Always { triggered }
            | Self::AmountLimit { triggered, .. }
            | Self::RecipientAllowlist { triggered, .. }
            | Self::AmountVelocity { triggered, .. }
            | Self::CountVelocity { triggered, .. } => *triggered,
        }
    }
}

/// A policy that matched the subject.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyReport {
    /// Its id.
    pub id: String,
    /// The index of the `policy.activated` that put it in force.
    pub activated: u64,
    /// Its rule, inputs and result.
    pub rule: RuleReport,
    /// Its action's kind (it acts only if the rule triggered).
    pub action: ActionKind,
}

/// One approval group the subject needs: a group of a triggered `request_approval` policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupReport {
    /// The policy's id.
    pub policy: String,
    /// The group's name.
    pub group: String,
    /// Approvals it needs.
    pub quorum: u32,
    /// Who may approve.
    pub approvers: Approvers,
    /// Whether the initiator may approve (the policy's setting).
    pub initiator_may_approve: bool,
}

/// The evaluation of a subject: what the policy engine seals as `{"reasons": <this>}` in
/// its `policy.evaluated`, whose clear body is [`Evaluation::clear_body`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Evaluation {
    /// The subject.
    pub subject: SubjectRef,
    /// The outcome.
    pub outcome: Outcome,
    /// For an invalid subject: why (a [`PolicyError`](super::PolicyError)'s message).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invalid: Option<String>,
    /// Every matched policy, by id.
    pub policies: Vec<PolicyReport>,
    /// For the approval outcome: every group of every triggered `request_approval` policy,
    /// by policy id, then in the policy's order.
    pub groups: Vec<GroupReport>,
    /// For the approval outcome: the subject's time + the smallest `timeout_s` of the
    /// triggered `request_approval` policies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<Timestamp>,
}

impl Evaluation {
    /// The clear body of its `policy.evaluated`: `{"subject": "<leaf hex>", "outcome"}`.
    #[must_use]
    pub fn clear_body(&self, subject_leaf: &LeafHash) -> Map<String, Value> {
        let mut body = Map::new();
        body.insert("subject".into(), subject_leaf.to_hex().into());
        body.insert("outcome".into(), self.outcome.as_str().into());
        body
    }

    /// The sealed members of its `policy.evaluated`: `{"reasons": <this evaluation>}`.
    #[must_use]
    ///
    /// An evaluation whose JCS is longer than [`REASONS_BYTES_MAX`] (many matching policies
    /// with large approval groups) is sealed in its digest form instead, so it always fits
    /// in an event: `{"subject", "outcome", ["invalid"], ["deadline"], "policies": <how
    /// many>, "groups": <how many>, "digest": "<hex SHA-256 of the full evaluation's JCS>"}`.
    /// Which form is chosen is a function of the evaluation, so a reader recomputing it
    /// compares the same form ([`Evaluation::sealed_body`] on both sides).
    pub fn sealed_body(&self) -> Map<String, Value> {
        let full = serde_json::to_value(self).unwrap_or(Value::Null);
        let jcs = govern_core::canonical::to_vec(&full).unwrap_or_default();
        let reasons = if jcs.len() <= REASONS_BYTES_MAX {
            full
        } else {
            let mut d = Map::new();
            d.insert(
                "subject".into(),
                serde_json::to_value(&self.subject).unwrap_or(Value::Null),
            );
            d.insert("outcome".into(), self.outcome.as_str().into());
            if let Some(i) = &self.invalid {
                d.insert("invalid".into(), i.clone().into());
            }
            if let Some(t) = &self.deadline {
                d.insert(
                    "deadline".into(),
                    serde_json::to_value(t).unwrap_or(Value::Null),
                );
            }
            d.insert("policies".into(), self.policies.len().into());
            d.insert("groups".into(), self.groups.len().into());
            d.insert("digest".into(), hex::encode(Sha256::digest(&jcs)).into());
            Value::Object(d)
        };
        let mut body = Map::new();
        body.insert("reasons".into(), reasons);
        body
    }

    /// The evaluation in a `policy.evaluated`'s opened sealed members
    /// (`{"reasons": …}`), if it is one.
    #[must_use]
    pub fn from_sealed_body(opened: &Map<String, Value>) -> Option<Self> {
        serde_json::from_value(opened.get("reasons")?.clone()).ok()
    }
}

/// A subject's evaluation as this fold could compute it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", content = "evaluation", rename_all = "lowercase")]
pub enum Computed {
    /// Computed from the log prefix before the subject and the payloads opened.
    Known(Evaluation),
    /// Not computable: a payload it depends on was not opened (the subject's params, a
    /// policy change in force, or a transfer a velocity rule would count).
    Unknown,
}

impl Computed {
    /// The evaluation, if known.
    #[must_use]
    pub fn known(&self) -> Option<&Evaluation> {
        match self {
            Self::Known(e) => Some(e),
            Self::Unknown => None,
        }
    }
}

/// What a subject is, for its evaluation: a transfer's facts and wallet, or a policy
/// change or a wallet creation (whose rules are `always`).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Facts<'a> {
    Transfer {
        wallet: &'a str,
        facts: &'a TransferFacts,
    },
    Other,
}

/// The earlier transfers of a wallet in a window: the sum of their amounts (of the asset
/// asked for) and their count.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Past {
    pub sum: Amount,
    pub count: u64,
}

/// The window query: the wallet's earlier transfers (of the asset, when given) with a
/// recorded time in (`from_ms`, `to_ms`]; `None` when one of them is unknown.
pub(crate) type Window<'a> = dyn Fn(&str, Option<&Asset>, i64, i64) -> Option<Past> + 'a;

/// Hex SHA-256 of the JCS of an allow-list.
fn list_hash(list: &[String]) -> String {
    let bytes = govern_core::canonical::to_vec(&list).unwrap_or_default();
    hex::encode(Sha256::digest(bytes))
}

/// The invalid evaluation of a subject, and why (a [`PolicyError`](super::PolicyError)'s
/// message).
pub(crate) fn invalid(subject: SubjectRef, reason: String) -> Evaluation {
    Evaluation {
        subject,
        outcome: Outcome::Invalid,
        invalid: Some(reason),
        policies: Vec::new(),
        groups: Vec::new(),
        deadline: None,
    }
}

/// Evaluate a subject at `time` against `policies` (the tenant's in force, by id, each with
/// the index of its activation). `Unknown` only when a velocity rule would count a transfer
/// `window` cannot read.
pub(crate) fn evaluate<'p>(
    subject: SubjectRef,
    time: Timestamp,
    facts: Facts<'_>,
    policies: impl Iterator<Item = (&'p Policy, u64)>,
    window: &Window<'_>,
) -> Computed {
    let Some(activity) = Activity::of_kind(&subject.kind) else {
        return Computed::Unknown;
    };
    let t = time.unix_ms();
    let mut reports = Vec::new();
    let mut triggered_approvals: Vec<&Policy> = Vec::new();
    for (policy, activated) in policies {
        if policy.activity != activity {
            continue;
        }
        if let (Facts::Transfer { wallet, .. }, Some(wallets)) = (facts, &policy.wallets)
            && !wallets.iter().any(|w| w == wallet)
        {
            continue;
        }
        let rule = match (&policy.rule, facts) {
            (Rule::Always, _) => RuleReport::Always { triggered: true },
            (rule, Facts::Transfer { wallet, facts }) => {
                match transfer_rule(rule, wallet, facts, t, window) {
                    Some(report) => report,
                    None => return Computed::Unknown,
                }
            }
            // A rule that reads a transfer never matches another subject (the parser
            // allows none on another activity).
            (_, Facts::Other) => continue,
        };
        if rule.triggered() && matches!(policy.action, Action::RequestApproval { .. }) {
            triggered_approvals.push(policy);
        }
        reports.push(PolicyReport {
            id: policy.id.clone(),
            activated,
            rule,
            action: policy.action.kind(),
        });
    }
    let blocked = reports
        .iter()
        .any(|r| r.rule.triggered() && r.action == ActionKind::Block);
    let outcome = if blocked {
        Outcome::Block
    } else if triggered_approvals.is_empty() {
        Outcome::Allow
    } else {
        Outcome::Approval
    };
    let mut groups = Vec::new();
    let mut deadline = None;
    if outcome == Outcome::Approval {
        let mut timeout_s: Option<u64> = None;
        for policy in triggered_approvals {
            if let Action::RequestApproval {
                groups: g,
                initiator_may_approve,
                timeout_s: s,
            } = &policy.action
            {
                timeout_s = Some(timeout_s.map_or(*s, |m| m.min(*s)));
                groups.extend(g.iter().map(|g| GroupReport {
                    policy: policy.id.clone(),
                    group: g.name.clone(),
                    quorum: g.quorum,
                    approvers: g.approvers.clone(),
                    initiator_may_approve: *initiator_may_approve,
                }));
            }
        }
        let ms = i64::try_from(timeout_s.unwrap_or(0).saturating_mul(1000)).unwrap_or(i64::MAX);
        deadline = clamped(t.saturating_add(ms));
    }
    Computed::Known(Evaluation {
        subject,
        outcome,
        invalid: None,
        policies: reports,
        groups,
        deadline,
    })
}

/// A rule that reads a transfer; `None` when a window it needs is unknown.
fn transfer_rule(
    rule: &Rule,
    wallet: &str,
    facts: &TransferFacts,
    t: i64,
    window: &Window<'_>,
) -> Option<RuleReport> {
    let from_of = |window_s: u64| {
        let ms = i64::try_from(window_s.saturating_mul(1000)).unwrap_or(i64::MAX);
        t.saturating_sub(ms)
    };
    Some(match rule {
        Rule::Always => RuleReport::Always { triggered: true },
        Rule::AmountLimit { asset, max } => {
            let amount = (facts.asset == *asset).then(|| facts.amount.clone());
            let triggered = amount.as_ref().is_some_and(|a| a > max);
            RuleReport::AmountLimit {
                asset: asset.clone(),
                amount,
                max: max.clone(),
                triggered,
            }
        }
        Rule::RecipientAllowlist { allowed } => {
            let listed = allowed.contains(&facts.to);
            RuleReport::RecipientAllowlist {
                to: facts.to.clone(),
                listed,
                size: allowed.len() as u64,
                list: list_hash(allowed),
                triggered: !listed,
            }
        }
        Rule::AmountVelocity {
            asset,
            window_s,
            max,
        } => {
            let from = from_of(*window_s);
            let (past, amount, total) = if facts.asset == *asset {
                let past = window(wallet, Some(asset), from, t)?.sum;
                let total = &past + &facts.amount;
                (Some(past), Some(facts.amount.clone()), Some(total))
            } else {
                (None, None, None)
            };
            let triggered = total.as_ref().is_some_and(|t| t > max);
            RuleReport::AmountVelocity {
                asset: asset.clone(),
                window_s: *window_s,
                from: clamped(from)?,
                past,
                amount,
                total,
                max: max.clone(),
                triggered,
            }
        }
        Rule::CountVelocity { window_s, max } => {
            let from = from_of(*window_s);
            let past = window(wallet, None, from, t)?.count;
            let total = past.saturating_add(1);
            RuleReport::CountVelocity {
                window_s: *window_s,
                from: clamped(from)?,
                past,
                amount: 1,
                total,
                max: *max,
                triggered: total > *max,
            }
        }
    })
}

/// A recorded `approval.decided` of a subject.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vote {
    /// Its index.
    pub index: u64,
    /// Its leaf hash.
    pub leaf: LeafHash,
    /// The decider (`body.user`), lower-cased.
    pub user: String,
    /// `approve` (true) or `deny` (false): `body.clear.decision`.
    pub approve: bool,
    /// Its recorded time.
    pub time: Timestamp,
    /// Whether the decider was a registered user of the tenant when it was recorded (what
    /// `"approvers": "any"` asks).
    pub registered: bool,
}

/// Why a decision is what it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reason {
    /// The outcome was allow.
    Allowed,
    /// Every group reached its quorum.
    Approved,
    /// The outcome was block.
    Blocked,
    /// An eligible approver denied.
    Denied,
    /// The deadline passed first.
    Timeout,
    /// The subject is invalid (or, for a policy change, no longer fits the policies in
    /// force when it would take effect).
    Invalid,
}

impl Reason {
    /// Its name in a decision's clear body.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allowed => "allowed",
            Self::Approved => "approved",
            Self::Blocked => "blocked",
            Self::Denied => "denied",
            Self::Timeout => "timeout",
            Self::Invalid => "invalid",
        }
    }
}

/// A decision the policy engine owes: the kind of event to record, why, and the approvals
/// that counted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// `transfer.approved`, `transfer.rejected`, `policy.activated`, `policy.rejected`,
    /// `wallet.approved` or `wallet.rejected`.
    pub kind: &'static str,
    /// Why.
    pub reason: Reason,
    /// The leaves of the `approval.decided` that counted, in log order: every counted vote
    /// up to the one that decided (for `denied`, the denial is the last), or every counted
    /// vote before the deadline (for `timeout`); empty otherwise.
    pub approvals: Vec<LeafHash>,
}

impl Decision {
    /// Whether it lets the subject go ahead.
    #[must_use]
    pub fn approves(&self) -> bool {
        matches!(self.reason, Reason::Allowed | Reason::Approved)
    }

    /// Its parents: the `policy.evaluated`, then the approvals that counted (what the log
    /// checks against [`Decision::body`]'s `evaluation` and `approvals`).
    #[must_use]
    pub fn parents(&self, evaluation_leaf: &LeafHash) -> Vec<LeafHash> {
        let mut parents = vec![*evaluation_leaf];
        parents.extend(self.approvals.iter().copied());
        parents
    }

    /// Its clear body: `{"evaluation": "<leaf hex of the policy.evaluated>", "reason",
    /// "approvals": ["<leaf hex>", …]}`.
    #[must_use]
    pub fn body(&self, evaluation_leaf: &LeafHash) -> Map<String, Value> {
        let mut body = Map::new();
        body.insert("evaluation".into(), evaluation_leaf.to_hex().into());
        body.insert("reason".into(), self.reason.as_str().into());
        body.insert(
            "approvals".into(),
            Value::Array(self.approvals.iter().map(|l| l.to_hex().into()).collect()),
        );
        body
    }
}

/// The decision kinds of a subject kind: (approved, rejected).
#[must_use]
pub fn decision_kinds(subject_kind: &str) -> Option<(&'static str, &'static str)> {
    match subject_kind {
        TRANSFER_REQUESTED => Some((TRANSFER_APPROVED, TRANSFER_REJECTED)),
        POLICY_CHANGED => Some((POLICY_ACTIVATED, POLICY_REJECTED)),
        WALLET_REQUESTED => Some((WALLET_APPROVED, WALLET_REJECTED)),
        _ => None,
    }
}

/// Where one approval group stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupStatus {
    /// The policy's id.
    pub policy: String,
    /// The group's name.
    pub group: String,
    /// Approvals it needs.
    pub quorum: u32,
    /// The users whose approval counted for it, in log order.
    pub approved: Vec<String>,
    /// How many more it needs (0 once reached).
    pub needs: u32,
}

/// The votes of a subject as they count.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    /// The leaves of the votes that counted, in log order, up to the deciding one.
    pub counted: Vec<LeafHash>,
    /// Per group of the evaluation: the users whose approval counted.
    pub approved: Vec<Vec<String>>,
    /// `Approved` or `Denied` once the votes decided.
    pub end: Option<Reason>,
}

/// Count the votes of an approval evaluation, in log order. A vote counts when it was
/// recorded before the deadline, is its user's first such vote, and its user is eligible for
/// at least one group: named in it (or registered, for `"any"`), and not the initiator unless
/// the group's policy lets the initiator approve. An approval counts toward every group its
/// user is eligible for; an eligible denial ends it (`Denied`); every group at its quorum
/// ends it (`Approved`).
pub(crate) fn tally(evaluation: &Evaluation, initiator: Option<&str>, votes: &[Vote]) -> Tally {
    let groups = &evaluation.groups;
    let mut tally = Tally {
        approved: vec![Vec::new(); groups.len()],
        ..Tally::default()
    };
    let reached = |approved: &[Vec<String>]| {
        groups
            .iter()
            .zip(approved)
            .all(|(g, a)| a.len() >= g.quorum as usize)
    };
    if reached(&tally.approved) {
        tally.end = Some(Reason::Approved);
        return tally;
    }
    let mut seen = BTreeSet::new();
    for vote in votes {
        if evaluation.deadline.is_some_and(|d| vote.time >= d) {
            continue;
        }
        let eligible: Vec<usize> = groups
            .iter()
            .enumerate()
            .filter(|(_, g)| {
                (initiator != Some(vote.user.as_str()) || g.initiator_may_approve)
                    && g.approvers.admits(&vote.user, vote.registered)
            })
            .map(|(i, _)| i)
            .collect();
        if eligible.is_empty() || !seen.insert(vote.user.as_str()) {
            continue;
        }
        tally.counted.push(vote.leaf);
        if !vote.approve {
            tally.end = Some(Reason::Denied);
            return tally;
        }
        for i in eligible {
            if let Some(a) = tally.approved.get_mut(i) {
                a.push(vote.user.clone());
            }
        }
        if reached(&tally.approved) {
            tally.end = Some(Reason::Approved);
            return tally;
        }
    }
    tally
}

/// The decision an evaluation owes at `now`, given the subject's initiator and votes:
/// `(approves, reason, approvals)`; `None` while approval is pending.
pub(crate) fn decide(
    evaluation: &Evaluation,
    initiator: Option<&str>,
    votes: &[Vote],
    now: Timestamp,
) -> Option<(bool, Reason, Vec<LeafHash>)> {
    match evaluation.outcome {
        Outcome::Allow => Some((true, Reason::Allowed, Vec::new())),
        Outcome::Block => Some((false, Reason::Blocked, Vec::new())),
        Outcome::Invalid => Some((false, Reason::Invalid, Vec::new())),
        Outcome::Approval => {
            let tally = tally(evaluation, initiator, votes);
            match tally.end {
                Some(reason) => Some((reason == Reason::Approved, reason, tally.counted)),
                None if evaluation.deadline.is_none_or(|d| now >= d) => {
                    Some((false, Reason::Timeout, tally.counted))
                }
                None => None,
            }
        }
    }
}

/// Where each group of an approval evaluation stands.
pub(crate) fn group_status(
    evaluation: &Evaluation,
    initiator: Option<&str>,
    votes: &[Vote],
) -> Vec<GroupStatus> {
    let tally = tally(evaluation, initiator, votes);
    evaluation
        .groups
        .iter()
        .zip(tally.approved)
        .map(|(g, approved)| GroupStatus {
            policy: g.policy.clone(),
            group: g.group.clone(),
            quorum: g.quorum,
            needs: g
                .quorum
                .saturating_sub(u32::try_from(approved.len()).unwrap_or(u32::MAX)),
            approved,
        })
        .collect()
}
