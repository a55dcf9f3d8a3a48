//! The policy engine's evaluation, as a pure fold over a tenant's log.
//!
//! The policy worker, `govern verify request` and the signers all run this code on the same
//! log and compare results, so it is a function of the log prefix and the payloads the
//! caller could open, and of nothing else: no clock (the caller passes `now`, and a recorded
//! decision is judged at its own recorded time), no I/O, no randomness, no keys.
//!
//! # Policies ([`model`])
//!
//! A `policy.changed` action's opened params are `{"policy": {…}}` (create or replace the
//! policy of that id) or `{"remove": "<id>"}`, parsed by [`parse_change`]:
//!
//! ```json
//! {"id": "limit-eth",
//!  "activity": "transfers" | "policy_changes" | "wallet_creation",
//!  "wallets": ["<wallet id>", …],
//!  "rule": {"kind": "always"}
//!        | {"kind": "amount_limit", "asset": "native" | "0x<40 hex>", "max": "<decimal>"}
//!        | {"kind": "recipient_allowlist", "allowed": ["0x<40 hex>", …]}
//!        | {"kind": "amount_velocity", "asset": …, "window_s": <1..=31536000>, "max": "<decimal>"}
//!        | {"kind": "count_velocity", "window_s": <1..=31536000>, "max": <0..=1000000>},
//!  "action": {"kind": "block"}
//!          | {"kind": "request_approval",
//!             "groups": [{"name": "admins", "quorum": 2, "approvers": "any" | ["<user id>", …]}],
//!             "initiator_may_approve": false, "timeout_s": 86400}
//!          | {"kind": "none"}}
//! ```
//!
//! The bounds are the constants of [`model`]. Amounts are decimal strings of base units
//! ([`Amount`]), never floats. Rules other than `always` read a transfer, so only a
//! `transfers` policy has one, and only it may name `wallets`.
//!
//! # The fold ([`PolicyBook`])
//!
//! [`PolicyBook::apply`] takes every entry of the log in order. It reads `tenant.created`,
//! `user.registered` (the users `"approvers": "any"` admits), `keys.shredded` (the tenant is
//! dropped: nothing is owed it any more), the subjects — `transfer.requested` (activity
//! `transfers`), `policy.changed` (`policy_changes`), `wallet.requested` (`wallet_creation`)
//! — the votes (`approval.decided`), and the results role `policy` records
//! (`policy.evaluated` and the decisions, [`POLICY_RESULT_KINDS`]).
//!
//! A subject is evaluated **when it is applied**, against the policies in force and the
//! transfers before it: its evaluation is a function of the prefix before it, so every
//! reader computes the same whatever it has read since. A recorded result is compared with
//! what the fold computes — an evaluation with the subject's, a decision with the one owed
//! at the decision's own recorded time — and a difference is a [`Mismatch`]; the recorded
//! event takes effect all the same (the log is what it is): `policy.activated` sets or
//! removes the policy, and a `transfer.rejected` drops the transfer from velocity windows.
//!
//! # Evaluation ([`Evaluation`], sealed as `{"reasons": <Evaluation>}`)
//!
//! A policy in force *matches* a subject of its activity (and, with `wallets`, of one of
//! those wallets); its rule then *triggers* or not:
//!
//! - `always` triggers;
//! - `amount_limit` triggers on a transfer of its asset moving more than `max` (equal does
//!   not trigger);
//! - `recipient_allowlist` triggers when `to` is not in the list (compared lower-cased);
//! - `amount_velocity` triggers when the wallet's earlier transfers of the asset in the
//!   window, plus this one, move more than `max`; `count_velocity` when they number more
//!   than `max` (any asset).
//!
//! Any triggered `block` makes the outcome `block`; else any triggered `request_approval`
//! makes it `approval` (every group of every such policy must reach its quorum, by the
//! earliest of their deadlines); else `allow` (with no policy at all too; a triggered
//! `none` is recorded and changes nothing). A subject whose params do not parse, or a policy
//! change that would exceed [`POLICIES_PER_TENANT_MAX`] or removes an id not in force, is
//! `invalid`.
//!
//! What is decided, and why:
//!
//! - **The window is half-open**: `(t − window_s, t]`, with `t` the subject's recorded time
//!   and each earlier transfer's own recorded time. A transfer exactly `window_s` before is
//!   outside, so a limit "per 24 h" frees a transfer's amount exactly 24 h after it, and the
//!   window's start ([`RuleReport`]'s `from`) is exclusive.
//! - **Velocity is per wallet**: only the subject's wallet's transfers count (for
//!   `amount_velocity`, only those of the rule's asset), and only those recorded before the
//!   subject (lower index, even if a skewed clock gave them a later time: those are outside
//!   `(…, t]` anyway).
//! - **What no longer moves funds does not count**: a transfer with a recorded
//!   `transfer.rejected`, and one evaluated `block` or `invalid` (its rejection is certain
//!   and only not yet recorded), is left out. A transfer waiting for approval counts: it may
//!   still go ahead.
//! - **Unknown is contagious, never guessed**: without a subject's opened params its
//!   evaluation is [`Computed::Unknown`] (an auditor without keys), and so is every later
//!   evaluation a velocity rule would make count it (same wallet, in the window, not
//!   rejected), and every evaluation of the tenant after a policy change the fold could not
//!   read took effect. An unknown evaluation is never owed, and a recorded result of it is
//!   not compared.
//! - **The allow-list is not echoed**: the report carries its size and the hex SHA-256 of
//!   its JCS (events are at most 65,535 bytes).
//!
//! # Decisions ([`PolicyBook::decision_at`], [`Decision`])
//!
//! `allow` owes the approved kind (reason `allowed`), `block` the rejected kind (`blocked`),
//! `invalid` the rejected kind (`invalid`). For `approval`, the votes count in log order:
//!
//! - **Approvals after the deadline are ignored**: a vote counts only if its recorded time is
//!   before the deadline (the subject's time + the smallest `timeout_s`); once `now` reaches
//!   the deadline without a decision, the subject is rejected (`timeout`). A late vote
//!   cannot revive it, and every reader agrees on which votes were in time from their
//!   recorded times alone.
//! - Only a user's first counted vote counts; only users eligible for a group count (named in
//!   it, or any registered user of the tenant for `"any"`), and the initiator is never
//!   eligible unless the group's policy says `initiator_may_approve`. An ineligible vote,
//!   approval or denial, is ignored. One approval counts toward every group its user is
//!   eligible for.
//! - An eligible denial rejects (`denied`); every group at its quorum approves (`approved`).
//!   Whichever comes first in log order decides, so a later vote never changes a decision
//!   already owed.
//! - A policy change about to take effect is checked again against the policies in force
//!   then: if another change took effect meanwhile and it no longer fits (too many
//!   policies, or its removed id is gone), it is rejected as `invalid`.
//!
//! The decision kinds: `transfer.requested` → `transfer.approved` / `transfer.rejected`,
//! `policy.changed` → `policy.activated` / `policy.rejected`, `wallet.requested` →
//! `wallet.approved` / `wallet.rejected`. A decision's clear body is [`Decision::body`]:
//! `{"evaluation": "<leaf hex of the policy.evaluated>", "reason", "approvals": [<leaf
//! hex>, …]}`; an evaluation's is [`Evaluation::clear_body`]: `{"subject": "<leaf hex>",
//! "outcome"}`. [`PolicyBook::owed`] lists what the worker owes, in subject order: an
//! evaluation not yet recorded, then (once recorded, as the decision's parent) the decision.

pub mod amount;
pub mod book;
pub mod evaluate;
pub mod model;

#[cfg(test)]
mod harness;
#[cfg(test)]
mod props;
#[cfg(test)]
mod tests;

pub use amount::Amount;
pub use amount::{AMOUNT_DIGITS_MAX, SUM_DIGITS_MAX};
pub use book::{
    ActivePolicy, Mismatch, Owed, POLICY_ROLE, PolicyBook, RecordedDecision, RecordedEvaluation,
    Subject, SubjectFacts,
};
pub use evaluate::{
    Computed, Decision, Evaluation, GroupReport, GroupStatus, Outcome, PolicyReport,
    REASONS_BYTES_MAX, Reason, RuleReport, SubjectRef, Vote, decision_kinds,
};
pub use govern_core::kinds::POLICY_RESULT_KINDS;
pub use model::{
    ALLOWLIST_MAX, APPROVERS_MAX, Action, ActionKind, Activity, Approvers, Asset, COUNT_MAX,
    GROUP_NAME_BYTES_MAX, GROUPS_MAX, Group, POLICIES_PER_TENANT_MAX, POLICY_ID_BYTES_MAX,
    POLICY_WALLETS_MAX, Policy, PolicyChange, PolicyError, Rule, TIMEOUT_S_MAX, TransferFacts,
    WINDOW_S_MAX, parse_change, parse_transfer,
};
