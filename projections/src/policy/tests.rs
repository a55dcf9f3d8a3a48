//! Scenarios: exact outcomes, reasons and approvals, through the fold and the simulated
//! worker ([`super::harness`]).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use govern_core::event::RequestId;
use govern_core::kinds::{
    POLICY_ACTIVATED, POLICY_EVALUATED, POLICY_REJECTED, TRANSFER_APPROVED, TRANSFER_REJECTED,
    WALLET_APPROVED, WALLET_REJECTED,
};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use super::harness::{Log, S, addr, at, erc20, native, obj, set};
use super::*;

fn pair(kind: &str, reason: &str) -> Option<(String, String)> {
    Some((kind.to_string(), reason.to_string()))
}

fn limit(id: &str, max: &str) -> Value {
    json!({"id": id, "activity": "transfers",
           "rule": {"kind": "amount_limit", "asset": "native", "max": max},
           "action": {"kind": "block"}})
}

fn approval(id: &str, rule: Value, groups: Value, may: bool, timeout_s: u64) -> Value {
    json!({"id": id, "activity": "transfers", "rule": rule,
           "action": {"kind": "request_approval", "groups": groups,
                      "initiator_may_approve": may, "timeout_s": timeout_s}})
}

/// Put `policy` in force at `ms` (no policy governs policy changes yet).
fn activate(log: &mut Log, admin: &str, ms: i64, policy: Value) -> RequestId {
    let r = log.change(admin, ms, Some(set(policy)));
    log.work(ms);
    assert_eq!(log.decided_as(r), pair(POLICY_ACTIVATED, "allowed"));
    r
}

/// The replay of the whole log, every payload opened, agrees with every recorded result.
fn assert_replays(log: &Log) {
    assert!(log.mismatches.is_empty(), "{:?}", log.mismatches);
    let (_, mismatches) = log.replay(|_| true);
    assert!(mismatches.is_empty(), "{mismatches:?}");
}

fn outcome(log: &Log, r: RequestId) -> Outcome {
    log.evaluation(r).outcome
}

fn approvals(log: &Log, r: RequestId, ms: i64) -> Vec<String> {
    log.decision_at(r, ms)
        .unwrap()
        .approvals
        .iter()
        .map(|l| l.to_hex())
        .collect()
}

#[test]
fn with_no_policy_everything_is_allowed() {
    let mut log = Log::new();
    let u = log.user();
    let w = log.wallet(&u, S);
    let t = log.transfer(&u, w, 2 * S, native(&addr(1), "5"));
    // Owed in subject order: both evaluations first.
    let owed = log.book.owed(at(2 * S));
    assert_eq!(owed.len(), 2);
    match &owed[0] {
        Owed::Evaluate {
            request,
            evaluation,
            ..
        } => {
            assert_eq!(*request, w);
            assert_eq!(evaluation.outcome, Outcome::Allow);
            assert_eq!(evaluation.subject.kind, "wallet.requested");
        }
        other => panic!("{other:?}"),
    }
    log.work(2 * S);
    let e = log.evaluation(t);
    assert_eq!(e.outcome, Outcome::Allow);
    assert!(e.policies.is_empty() && e.groups.is_empty() && e.deadline.is_none());
    assert_eq!(log.decided_as(w), pair(WALLET_APPROVED, "allowed"));
    assert_eq!(log.decided_as(t), pair(TRANSFER_APPROVED, "allowed"));
    assert!(log.book.owed(at(1_000 * S)).is_empty());
    let subject = log.book.subject(&log.tenant, &t).unwrap();
    assert_eq!(subject.evaluated.as_ref().unwrap().outcome, "allow");
    assert_eq!(subject.wallet.as_deref(), Some(w.0.to_string().as_str()));
    assert_replays(&log);
}

#[test]
fn a_limit_blocks_above_its_max_not_at_it() {
    let mut log = Log::new();
    let u = log.user();
    let w = log.wallet(&u, 0);
    activate(&mut log, &u, S, limit("limit-eth", "100"));
    let at_max = log.transfer(&u, w, 2 * S, native(&addr(1), "100"));
    let above = log.transfer(&u, w, 3 * S, native(&addr(1), "101"));
    let token = log.transfer(&u, w, 4 * S, erc20(&addr(7), &addr(1), "1000000"));
    log.work(5 * S);
    assert_eq!(outcome(&log, at_max), Outcome::Allow);
    assert_eq!(outcome(&log, above), Outcome::Block);
    assert_eq!(outcome(&log, token), Outcome::Allow);
    assert_eq!(log.decided_as(at_max), pair(TRANSFER_APPROVED, "allowed"));
    assert_eq!(log.decided_as(above), pair(TRANSFER_REJECTED, "blocked"));
    let report = &log.evaluation(above).policies[0];
    assert_eq!(report.id, "limit-eth");
    assert_eq!(report.action, ActionKind::Block);
    assert_eq!(
        serde_json::to_value(&report.rule).unwrap(),
        json!({"kind": "amount_limit", "asset": "native", "amount": "101", "max": "100", "triggered": true})
    );
    // Another asset: the rule matches and reads no amount.
    assert_eq!(
        serde_json::to_value(&log.evaluation(token).policies[0].rule).unwrap(),
        json!({"kind": "amount_limit", "asset": "native", "amount": null, "max": "100", "triggered": false})
    );
    assert_replays(&log);
}

#[test]
fn an_allowlist_admits_listed_recipients_in_any_case() {
    let mut log = Log::new();
    let u = log.user();
    let w = log.wallet(&u, 0);
    let listed = addr(0xab);
    activate(
        &mut log,
        &u,
        S,
        json!({"id": "allow", "activity": "transfers",
               "rule": {"kind": "recipient_allowlist", "allowed": [listed.to_uppercase().replace("0X", "0x"), addr(2)]},
               "action": {"kind": "block"}}),
    );
    let hit = log.transfer(&u, w, 2 * S, native(&listed, "1"));
    let miss = log.transfer(&u, w, 3 * S, native(&addr(3), "1"));
    log.work(3 * S);
    assert_eq!(log.decided_as(hit), pair(TRANSFER_APPROVED, "allowed"));
    assert_eq!(log.decided_as(miss), pair(TRANSFER_REJECTED, "blocked"));
    let list = format!("[\"{listed}\",\"{}\"]", addr(2));
    let hash = hex::encode(Sha256::digest(list.as_bytes()));
    assert_eq!(
        serde_json::to_value(&log.evaluation(miss).policies[0].rule).unwrap(),
        json!({"kind": "recipient_allowlist", "to": addr(3), "listed": false, "size": 2, "list": hash, "triggered": true})
    );
    assert!(!log.evaluation(hit).policies[0].rule.triggered());
    assert_replays(&log);
}

/// An approval policy on every transfer: group `signers` of `named`, quorum `quorum`.
fn approval_log(quorum: u32, may: bool, timeout_s: u64) -> (Log, String, [String; 3], RequestId) {
    let mut log = Log::new();
    let initiator = log.user();
    let a = log.user();
    let b = log.user();
    let c = log.user();
    let w = log.wallet(&initiator, 0);
    activate(
        &mut log,
        &a,
        S,
        approval(
            "two-of-three",
            json!({"kind": "always"}),
            json!([{"name": "signers", "quorum": quorum, "approvers": [a, b, c, initiator]}]),
            may,
            timeout_s,
        ),
    );
    let t = log.transfer(&initiator, w, 10 * S, native(&addr(1), "5"));
    log.work(10 * S);
    (log, initiator, [a, b, c], t)
}

#[test]
fn approval_by_quorum() {
    let (mut log, _, [a, b, c], t) = approval_log(2, false, 3600);
    let e = log.evaluation(t).clone();
    assert_eq!(e.outcome, Outcome::Approval);
    assert_eq!(e.deadline, Some(at(3610 * S)));
    assert_eq!(e.groups.len(), 1);
    assert_eq!(e.groups[0].policy, "two-of-three");
    assert_eq!(e.groups[0].quorum, 2);
    assert!(!e.groups[0].initiator_may_approve);
    assert_eq!(log.decided(t), None);
    let la = log.vote(&a, t, true, 20 * S);
    log.work(21 * S);
    assert_eq!(log.decided(t), None);
    let pending = log.book.pending(&log.tenant, &t).unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].approved, vec![a.clone()]);
    assert_eq!(pending[0].needs, 1);
    // A second approval by the same user does not count.
    log.vote(&a, t, true, 22 * S);
    log.work(23 * S);
    assert_eq!(log.decided(t), None);
    let lb = log.vote(&b, t, true, 30 * S);
    log.vote(&c, t, false, 31 * S);
    // Decided by b's approval: c's later denial changes nothing.
    assert_eq!(approvals(&log, t, 40 * S), vec![la.to_hex(), lb.to_hex()]);
    log.work(40 * S);
    assert_eq!(log.decided_as(t), pair(TRANSFER_APPROVED, "approved"));
    assert_eq!(log.book.pending(&log.tenant, &t).unwrap()[0].needs, 0);
    assert_replays(&log);
}

#[test]
fn an_eligible_denial_rejects() {
    let (mut log, _, [a, b, _], t) = approval_log(2, false, 3600);
    let la = log.vote(&a, t, true, 20 * S);
    let lb = log.vote(&b, t, false, 21 * S);
    assert_eq!(approvals(&log, t, 22 * S), vec![la.to_hex(), lb.to_hex()]);
    log.work(22 * S);
    assert_eq!(log.decided_as(t), pair(TRANSFER_REJECTED, "denied"));
    assert_replays(&log);
}

#[test]
fn the_deadline_rejects_and_late_approvals_are_ignored() {
    let (mut log, _, [a, b, _], t) = approval_log(2, false, 60);
    assert_eq!(log.evaluation(t).deadline, Some(at(70 * S)));
    let la = log.vote(&a, t, true, 20 * S);
    // Exactly at the deadline: too late.
    log.vote(&b, t, true, 70 * S);
    assert_eq!(log.decision_at(t, 70 * S - 1), None);
    log.work(70 * S - 1);
    assert_eq!(log.decided(t), None);
    let d = log.decision_at(t, 70 * S).unwrap();
    assert_eq!((d.kind, d.reason), (TRANSFER_REJECTED, Reason::Timeout));
    assert_eq!(approvals(&log, t, 70 * S), vec![la.to_hex()]);
    log.work(70 * S);
    assert_eq!(log.decided_as(t), pair(TRANSFER_REJECTED, "timeout"));
    assert_replays(&log);
}

#[test]
fn the_initiator_approves_only_where_the_policy_says_so() {
    let (mut log, initiator, [a, _, _], t) = approval_log(2, false, 3600);
    log.vote(&initiator, t, true, 20 * S);
    log.vote(&a, t, true, 21 * S);
    log.work(22 * S);
    assert_eq!(log.decided(t), None);
    assert_eq!(
        log.book.pending(&log.tenant, &t).unwrap()[0].approved,
        vec![a.clone()]
    );
    // Nor does the initiator's denial count.
    log.vote(&initiator, t, false, 23 * S);
    assert_eq!(log.decision_at(t, 24 * S), None);

    let (mut log, initiator, [a, _, _], t) = approval_log(2, true, 3600);
    let li = log.vote(&initiator, t, true, 20 * S);
    let la = log.vote(&a, t, true, 21 * S);
    assert_eq!(approvals(&log, t, 22 * S), vec![li.to_hex(), la.to_hex()]);
    log.work(22 * S);
    assert_eq!(log.decided_as(t), pair(TRANSFER_APPROVED, "approved"));
    assert_replays(&log);
}

#[test]
fn approvers_outside_the_group_are_ignored() {
    let mut log = Log::new();
    let initiator = log.user();
    let a = log.user();
    let outsider = log.user();
    let w = log.wallet(&initiator, 0);
    activate(
        &mut log,
        &a,
        S,
        approval(
            "one",
            json!({"kind": "always"}),
            json!([{"name": "g", "quorum": 1, "approvers": [a]}]),
            false,
            3600,
        ),
    );
    let t = log.transfer(&initiator, w, 10 * S, native(&addr(1), "5"));
    log.vote(&outsider, t, false, 11 * S);
    log.vote(&outsider, t, true, 12 * S);
    log.work(13 * S);
    assert_eq!(log.decided(t), None);
    let la = log.vote(&a, t, true, 14 * S);
    assert_eq!(approvals(&log, t, 15 * S), vec![la.to_hex()]);
    log.work(15 * S);
    assert_eq!(log.decided_as(t), pair(TRANSFER_APPROVED, "approved"));
    assert_replays(&log);
}

#[test]
fn any_means_any_registered_user_but_the_initiator() {
    let mut log = Log::new();
    let initiator = log.user();
    let a = log.user();
    let w = log.wallet(&initiator, 0);
    activate(
        &mut log,
        &a,
        S,
        approval(
            "any2",
            json!({"kind": "always"}),
            json!([{"name": "anyone", "quorum": 2, "approvers": "any"}]),
            false,
            3600,
        ),
    );
    let t = log.transfer(&initiator, w, 10 * S, native(&addr(1), "5"));
    log.vote(&initiator, t, true, 11 * S);
    // Not a registered user of the tenant.
    log.vote("00000000-0000-4000-8000-00000000dead", t, true, 12 * S);
    let la = log.vote(&a, t, true, 13 * S);
    log.work(14 * S);
    assert_eq!(log.decided(t), None);
    let b = log.user();
    let lb = log.vote(&b, t, true, 15 * S);
    assert_eq!(approvals(&log, t, 16 * S), vec![la.to_hex(), lb.to_hex()]);
    log.work(16 * S);
    assert_eq!(log.decided_as(t), pair(TRANSFER_APPROVED, "approved"));
    assert_replays(&log);
}

#[test]
fn amount_velocity_is_per_wallet_and_asset_over_a_half_open_window() {
    let mut log = Log::new();
    let u = log.user();
    let w = log.wallet(&u, 0);
    let other = log.wallet(&u, 0);
    activate(
        &mut log,
        &u,
        0,
        json!({"id": "daily", "activity": "transfers",
               "rule": {"kind": "amount_velocity", "asset": "native", "window_s": 3600, "max": "100"},
               "action": {"kind": "block"}}),
    );
    let t1 = log.transfer(&u, w, 1000 * S, native(&addr(1), "60"));
    // Another wallet, another asset: not counted.
    log.transfer(&u, other, 1001 * S, native(&addr(1), "90"));
    log.transfer(&u, w, 1002 * S, erc20(&addr(5), &addr(1), "90"));
    // 1 ms inside t1's window.
    let t2 = log.transfer(&u, w, 4600 * S - 1, native(&addr(1), "50"));
    // Exactly at the boundary: t1 is outside, and t2 (blocked) does not count.
    let t3 = log.transfer(&u, w, 4600 * S, native(&addr(1), "60"));
    let t4 = log.transfer(&u, w, 4600 * S + 1, native(&addr(1), "41"));
    let t5 = log.transfer(&u, w, 4600 * S + 2, native(&addr(1), "40"));
    log.work(5000 * S);
    assert_eq!(outcome(&log, t1), Outcome::Allow);
    assert_eq!(outcome(&log, t2), Outcome::Block);
    assert_eq!(outcome(&log, t3), Outcome::Allow);
    assert_eq!(outcome(&log, t4), Outcome::Block);
    assert_eq!(outcome(&log, t5), Outcome::Allow);
    assert_eq!(
        serde_json::to_value(&log.evaluation(t2).policies[0].rule).unwrap(),
        json!({"kind": "amount_velocity", "asset": "native", "window_s": 3600,
               "from": at(1000 * S - 1).to_string(), "past": "60", "amount": "50",
               "total": "110", "max": "100", "triggered": true})
    );
    assert_eq!(
        serde_json::to_value(&log.evaluation(t3).policies[0].rule).unwrap(),
        json!({"kind": "amount_velocity", "asset": "native", "window_s": 3600,
               "from": at(1000 * S).to_string(), "past": "0", "amount": "60",
               "total": "60", "max": "100", "triggered": false})
    );
    assert_replays(&log);
}

#[test]
fn count_velocity_counts_the_window_not_the_rejected() {
    let mut log = Log::new();
    let u = log.user();
    let a = log.user();
    let w = log.wallet(&u, 0);
    activate(
        &mut log,
        &u,
        0,
        json!({"id": "two-a-minute", "activity": "transfers",
               "rule": {"kind": "count_velocity", "window_s": 60, "max": 2},
               "action": {"kind": "block"}}),
    );
    activate(
        &mut log,
        &u,
        0,
        approval(
            "big",
            json!({"kind": "amount_limit", "asset": "native", "max": "100"}),
            json!([{"name": "g", "quorum": 1, "approvers": [a]}]),
            false,
            3600,
        ),
    );
    let t1 = log.transfer(&u, w, 10 * S, native(&addr(1), "1"));
    let t2 = log.transfer(&u, w, 20 * S, native(&addr(1), "500"));
    let t3 = log.transfer(&u, w, 30 * S, native(&addr(1), "1"));
    log.work(30 * S);
    assert_eq!(outcome(&log, t1), Outcome::Allow);
    // Waiting for approval: it may still go ahead, so it counts.
    assert_eq!(outcome(&log, t2), Outcome::Approval);
    assert_eq!(outcome(&log, t3), Outcome::Block);
    // Exactly 60 s after t1: t1 is outside; t2 pending counts; t3 was blocked.
    let t4 = log.transfer(&u, w, 70 * S, native(&addr(1), "1"));
    assert_eq!(outcome(&log, t4), Outcome::Allow);
    match &log.evaluation(t4).policies[1].rule {
        RuleReport::CountVelocity {
            past, total, from, ..
        } => {
            assert_eq!((*past, *total), (1, 2));
            assert_eq!(*from, at(10 * S));
        }
        other => panic!("{other:?}"),
    }
    let t5 = log.transfer(&u, w, 71 * S, native(&addr(1), "1"));
    assert_eq!(outcome(&log, t5), Outcome::Block);
    // t2 denied and its rejection recorded: it no longer counts.
    log.vote(&a, t2, false, 72 * S);
    log.work(72 * S);
    assert_eq!(log.decided_as(t2), pair(TRANSFER_REJECTED, "denied"));
    let t6 = log.transfer(&u, w, 73 * S, native(&addr(1), "1"));
    assert_eq!(outcome(&log, t6), Outcome::Allow);
    log.work(73 * S);
    assert_replays(&log);
}

#[test]
fn of_two_matching_policies_the_block_wins() {
    let mut log = Log::new();
    let u = log.user();
    let a = log.user();
    let w = log.wallet(&u, 0);
    activate(
        &mut log,
        &u,
        0,
        approval(
            "all",
            json!({"kind": "always"}),
            json!([{"name": "g", "quorum": 1, "approvers": [a]}]),
            false,
            600,
        ),
    );
    activate(&mut log, &u, 0, limit("cap", "10"));
    activate(
        &mut log,
        &u,
        0,
        json!({"id": "note", "activity": "transfers", "rule": {"kind": "always"}, "action": {"kind": "none"}}),
    );
    let big = log.transfer(&u, w, S, native(&addr(1), "11"));
    let small = log.transfer(&u, w, 2 * S, native(&addr(1), "10"));
    log.work(2 * S);
    let e = log.evaluation(big);
    assert_eq!(e.outcome, Outcome::Block);
    assert!(e.groups.is_empty() && e.deadline.is_none());
    let ids: Vec<&str> = e.policies.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, ["all", "cap", "note"]);
    assert_eq!(log.decided_as(big), pair(TRANSFER_REJECTED, "blocked"));
    let e = log.evaluation(small);
    assert_eq!(e.outcome, Outcome::Approval);
    assert_eq!(e.policies[2].action, ActionKind::None);
    assert!(e.policies[2].rule.triggered());
    assert_eq!(e.deadline, Some(at(602 * S)));
    assert_replays(&log);
}

/// A tenant whose policy changes need one of the admins `a`, `b`; returns the log, the
/// initiating admin, `a`, `b` and a wallet.
fn governed_changes() -> (Log, String, String, String, RequestId) {
    let mut log = Log::new();
    let admin = log.user();
    let a = log.user();
    let b = log.user();
    let w = log.wallet(&admin, 0);
    activate(
        &mut log,
        &admin,
        S,
        json!({"id": "changes", "activity": "policy_changes", "rule": {"kind": "always"},
               "action": {"kind": "request_approval",
                          "groups": [{"name": "admins", "quorum": 1, "approvers": [a, b]}],
                          "timeout_s": 3600}}),
    );
    (log, admin, a, b, w)
}

#[test]
fn a_policy_change_approved_takes_effect() {
    let (mut log, admin, a, _, w) = governed_changes();
    let change = log.change(&admin, 10 * S, Some(set(limit("cap", "10"))));
    log.work(10 * S);
    assert_eq!(outcome(&log, change), Outcome::Approval);
    assert_eq!(log.decided(change), None);
    // Not yet in force.
    let before = log.transfer(&admin, w, 11 * S, native(&addr(1), "11"));
    assert_eq!(outcome(&log, before), Outcome::Allow);
    log.vote(&a, change, true, 12 * S);
    log.work(12 * S);
    assert_eq!(log.decided_as(change), pair(POLICY_ACTIVATED, "approved"));
    let activated = log.decided(change).unwrap().index;
    assert_eq!(
        log.book.policies(&log.tenant).unwrap()["cap"].activated,
        activated
    );
    let after = log.transfer(&admin, w, 13 * S, native(&addr(1), "11"));
    assert_eq!(outcome(&log, after), Outcome::Block);
    assert_eq!(log.evaluation(after).policies[0].activated, activated);
    log.work(13 * S);
    assert_replays(&log);
}

#[test]
fn a_policy_change_denied_does_not() {
    let (mut log, admin, _, b, w) = governed_changes();
    let change = log.change(&admin, 10 * S, Some(set(limit("cap", "10"))));
    log.work(10 * S);
    log.vote(&b, change, false, 12 * S);
    log.work(12 * S);
    assert_eq!(log.decided_as(change), pair(POLICY_REJECTED, "denied"));
    assert!(!log.book.policies(&log.tenant).unwrap().contains_key("cap"));
    let t = log.transfer(&admin, w, 13 * S, native(&addr(1), "11"));
    assert_eq!(outcome(&log, t), Outcome::Allow);
    // Removing the approval policy itself needs its own approval.
    let remove = log.change(&admin, 14 * S, Some(obj(json!({"remove": "changes"}))));
    log.work(14 * S);
    assert_eq!(outcome(&log, remove), Outcome::Approval);
    log.work(3614 * S);
    assert_eq!(log.decided_as(remove), pair(POLICY_REJECTED, "timeout"));
    assert!(
        log.book
            .policies(&log.tenant)
            .unwrap()
            .contains_key("changes")
    );
    assert_replays(&log);
}

#[test]
fn a_wallet_filter_limits_a_policy_to_its_wallets() {
    let mut log = Log::new();
    let u = log.user();
    let w1 = log.wallet(&u, 0);
    let w2 = log.wallet(&u, 0);
    let mut policy = limit("w1-cap", "10");
    policy["wallets"] = json!([w1.0.to_string().to_uppercase()]);
    activate(&mut log, &u, 0, policy);
    let in_w1 = log.transfer(&u, w1, S, native(&addr(1), "11"));
    let in_w2 = log.transfer(&u, w2, S, native(&addr(1), "11"));
    log.work(S);
    assert_eq!(outcome(&log, in_w1), Outcome::Block);
    assert_eq!(outcome(&log, in_w2), Outcome::Allow);
    assert!(log.evaluation(in_w2).policies.is_empty());
    assert_replays(&log);
}

#[test]
fn wallet_creation_has_policies_too() {
    let mut log = Log::new();
    let u = log.user();
    activate(
        &mut log,
        &u,
        0,
        json!({"id": "no-wallets", "activity": "wallet_creation", "rule": {"kind": "always"}, "action": {"kind": "block"}}),
    );
    let w = log.wallet(&u, S);
    log.work(S);
    assert_eq!(log.decided_as(w), pair(WALLET_REJECTED, "blocked"));
    assert_replays(&log);
}

#[test]
fn invalid_subjects_are_rejected_as_invalid() {
    let mut log = Log::new();
    let u = log.user();
    let w = log.wallet(&u, 0);
    let mut bad = native(&addr(1), "1");
    bad.insert("amount".into(), "01".into());
    let t = log.transfer(&u, w, S, bad);
    let c = log.change(&u, S, Some(obj(json!({"policy": {"id": "x"}}))));
    let gone = log.change(&u, S, Some(obj(json!({"remove": "nope"}))));
    log.work(S);
    let e = log.evaluation(t);
    assert_eq!(e.outcome, Outcome::Invalid);
    assert!(
        e.invalid
            .as_deref()
            .unwrap()
            .starts_with("transfer.amount: "),
        "{e:?}"
    );
    assert_eq!(log.decided_as(t), pair(TRANSFER_REJECTED, "invalid"));
    assert_eq!(
        log.evaluation(c).invalid.as_deref(),
        Some("policy.activity: required")
    );
    assert_eq!(log.decided_as(c), pair(POLICY_REJECTED, "invalid"));
    assert_eq!(
        log.evaluation(gone).invalid.as_deref(),
        Some("remove: no policy \"nope\" is in force")
    );
    // An invalid transfer never counts in a window.
    let sub = log.book.subject(&log.tenant, &t).unwrap();
    assert!(matches!(sub.facts, SubjectFacts::Invalid(_)));
    assert_replays(&log);
}

#[test]
fn a_tenant_holds_at_most_its_policies_even_when_changes_race() {
    let (mut log, admin, a, _, _) = governed_changes();
    let limits: Vec<_> = (0..POLICIES_PER_TENANT_MAX - 2)
        .map(|i| log.change(&admin, 10 * S, Some(set(limit(&format!("l{i}"), "10")))))
        .collect();
    log.work(10 * S);
    for r in &limits {
        log.vote(&a, *r, true, 11 * S);
    }
    log.work(11 * S);
    assert_eq!(
        log.book.policies(&log.tenant).unwrap().len(),
        POLICIES_PER_TENANT_MAX - 1
    );
    // Two new policies race for the last place; a replacement always fits.
    let first = log.change(&admin, 12 * S, Some(set(limit("first", "1"))));
    let second = log.change(&admin, 12 * S, Some(set(limit("second", "1"))));
    let replace = log.change(&admin, 12 * S, Some(set(limit("l0", "5"))));
    log.work(12 * S);
    assert_eq!(outcome(&log, first), Outcome::Approval);
    assert_eq!(outcome(&log, second), Outcome::Approval);
    log.vote(&a, first, true, 13 * S);
    log.vote(&a, second, true, 13 * S);
    log.vote(&a, replace, true, 13 * S);
    log.work(13 * S);
    assert_eq!(log.decided_as(first), pair(POLICY_ACTIVATED, "approved"));
    assert_eq!(log.decided_as(second), pair(POLICY_REJECTED, "invalid"));
    assert_eq!(log.decided_as(replace), pair(POLICY_ACTIVATED, "approved"));
    assert_eq!(
        log.book.policies(&log.tenant).unwrap().len(),
        POLICIES_PER_TENANT_MAX
    );
    let third = log.change(&admin, 14 * S, Some(set(limit("third", "1"))));
    assert_eq!(
        log.evaluation(third).invalid.as_deref(),
        Some("policy.id: a new policy, and the tenant has 100 in force already (the most)")
    );
    assert_replays(&log);
}

#[test]
fn recorded_results_that_differ_are_mismatches_and_still_take_effect() {
    let mut log = Log::new();
    let u = log.user();
    let w = log.wallet(&u, 0);
    log.work(0);
    activate(
        &mut log,
        &u,
        0,
        json!({"id": "two", "activity": "transfers", "rule": {"kind": "count_velocity", "window_s": 60, "max": 1}, "action": {"kind": "block"}}),
    );
    let t = log.transfer(&u, w, S, native(&addr(1), "1"));
    let subject_leaf = log.book.subject(&log.tenant, &t).unwrap().leaf;
    // A recorded evaluation with another outcome.
    let mut body = log.evaluation(t).clear_body(&subject_leaf);
    body.insert("outcome".into(), "block".into());
    let eval_leaf = log.record_evaluation(t, 2 * S, body, None);
    assert_eq!(log.mismatches.len(), 1);
    let m = log.mismatches.pop().unwrap();
    assert_eq!(m.index, log.entries.len() as u64 - 1);
    assert_eq!(m.expected, "outcome \"allow\"");
    assert_eq!(m.recorded, "outcome \"block\"");
    assert!(m.to_string().starts_with(&format!("entry {}: ", m.index)));
    // It took effect: the decision is owed next, naming it.
    match log.book.owed(at(2 * S)).as_slice() {
        [
            Owed::Decide {
                evaluation_leaf,
                decision,
                ..
            },
        ] => {
            assert_eq!(*evaluation_leaf, eval_leaf);
            assert_eq!(decision.reason, Reason::Allowed);
        }
        other => panic!("{other:?}"),
    }
    // A recorded decision other than the one owed.
    let wrong = Decision {
        kind: TRANSFER_REJECTED,
        reason: Reason::Blocked,
        approvals: Vec::new(),
    };
    log.record_decision(t, TRANSFER_REJECTED, 3 * S, wrong.body(&eval_leaf));
    let m = log.mismatches.pop().unwrap();
    assert_eq!(m.expected, "transfer.approved (allowed, approvals )");
    assert_eq!(m.recorded, "transfer.rejected (blocked, approvals )");
    assert_eq!(log.decided_as(t), pair(TRANSFER_REJECTED, "blocked"));
    let sub = log.book.subject(&log.tenant, &t).unwrap();
    assert_eq!(sub.mismatches.len(), 2);
    // Recorded as rejected, it does not count against the next transfer.
    let next = log.transfer(&u, w, 4 * S, native(&addr(1), "1"));
    assert_eq!(outcome(&log, next), Outcome::Allow);
    // A second decision, and one for no subject.
    log.record_decision(t, TRANSFER_APPROVED, 5 * S, wrong.body(&eval_leaf));
    assert!(
        log.mismatches
            .pop()
            .unwrap()
            .expected
            .starts_with("one decision (transfer.rejected")
    );
    log.record_decision(
        RequestId(uuid::Uuid::nil()),
        TRANSFER_APPROVED,
        5 * S,
        wrong.body(&eval_leaf),
    );
    assert!(
        log.mismatches
            .pop()
            .unwrap()
            .expected
            .starts_with("no decision: request")
    );
    assert!(log.mismatches.is_empty());
}

#[test]
fn sealed_reasons_and_early_decisions_are_checked() {
    let (mut log, _, _, t) = {
        let mut log = Log::new();
        let initiator = log.user();
        let a = log.user();
        let w = log.wallet(&initiator, 0);
        activate(
            &mut log,
            &a,
            S,
            approval(
                "one",
                json!({"kind": "always"}),
                json!([{"name": "g", "quorum": 1, "approvers": [a]}]),
                false,
                60,
            ),
        );
        let t = log.transfer(&initiator, w, 10 * S, native(&addr(1), "5"));
        (log, initiator, a, t)
    };
    let leaf = log.book.subject(&log.tenant, &t).unwrap().leaf;
    let mut reasons = log.evaluation(t).clone();
    reasons.groups[0].quorum = 0;
    let e = log.evaluation(t).clone();
    let eval_leaf =
        log.record_evaluation(t, 10 * S, e.clear_body(&leaf), Some(reasons.sealed_body()));
    let m = log.mismatches.pop().unwrap();
    assert!(m.expected.starts_with("sealed {\"reasons\":{"), "{m}");
    // A decision while approval is pending.
    let early = Decision {
        kind: TRANSFER_REJECTED,
        reason: Reason::Timeout,
        approvals: Vec::new(),
    };
    log.record_decision(t, TRANSFER_REJECTED, 69 * S, early.body(&eval_leaf));
    let m = log.mismatches.pop().unwrap();
    assert_eq!(
        m.expected,
        format!("no decision yet at {} (approval pending)", at(69 * S))
    );
    // A result from a role other than the policy engine's is not a result.
    let before = log.entries.len();
    log.push(
        POLICY_EVALUATED,
        t,
        "edge",
        at(70 * S),
        Value::Object(e.clear_body(&leaf)),
        None,
    );
    assert_eq!(log.entries.len(), before + 1);
    assert!(log.mismatches.is_empty());
    assert_eq!(
        log.book.subject(&log.tenant, &t).unwrap().mismatches.len(),
        2
    );
}

#[test]
fn without_payloads_evaluations_are_unknown_and_never_owed() {
    let mut log = Log::new();
    let u = log.user();
    let w = log.wallet(&u, 0);
    let w2 = log.wallet(&u, 0);
    activate(
        &mut log,
        &u,
        0,
        json!({"id": "count", "activity": "transfers", "rule": {"kind": "count_velocity", "window_s": 60, "max": 5}, "action": {"kind": "block"}}),
    );
    let unknown = log.transfer_opened(&u, w, 10 * S, None);
    assert_eq!(*log.computed(unknown), Computed::Unknown);
    let same_wallet = log.transfer(&u, w, 20 * S, native(&addr(1), "1"));
    let other_wallet = log.transfer(&u, w2, 20 * S, native(&addr(1), "1"));
    // Outside the unknown one's window, and the one after it (unknown too: whether it was
    // blocked is not known) also outside.
    let later = log.transfer(&u, w, 81 * S, native(&addr(1), "1"));
    assert_eq!(*log.computed(same_wallet), Computed::Unknown);
    assert_eq!(outcome(&log, other_wallet), Outcome::Allow);
    assert_eq!(outcome(&log, later), Outcome::Allow);
    let owed: Vec<RequestId> = log
        .book
        .owed(at(81 * S))
        .iter()
        .map(|o| match o {
            Owed::Evaluate { request, .. } | Owed::Decide { request, .. } => *request,
        })
        .collect();
    assert_eq!(owed, vec![other_wallet, later]);
    assert_eq!(log.decision_at(unknown, 1000 * S), None);
    // An auditor without keys: every transfer and policy change unknown, and the policy
    // set unknown once that change took effect; nothing recorded is contradicted.
    log.work(81 * S);
    let (book, mismatches) = log.replay(|_| false);
    assert!(mismatches.is_empty(), "{mismatches:?}");
    assert!(book.policies(&log.tenant).is_none());
    let sub = book.subject(&log.tenant, &other_wallet).unwrap();
    assert_eq!(sub.evaluation, Computed::Unknown);
    assert_eq!(sub.facts, SubjectFacts::Unknown);
    assert_eq!(sub.decided.as_ref().unwrap().kind, TRANSFER_APPROVED);
    assert!(book.owed(at(1000 * S)).is_empty());
}

#[test]
fn a_shredded_tenant_is_owed_nothing() {
    let mut log = Log::new();
    let u = log.user();
    let w = log.wallet(&u, 0);
    log.transfer(&u, w, S, native(&addr(1), "1"));
    assert_eq!(log.book.owed(at(S)).len(), 2);
    log.shred(2 * S);
    assert!(log.book.owed(at(S)).is_empty());
    assert!(log.book.subject(&log.tenant, &w).is_none());
}

#[test]
fn evaluations_round_trip_through_json() {
    let (log, _, _, t) = approval_log(2, false, 3600);
    let e = log.evaluation(t);
    let sealed = e.sealed_body();
    assert_eq!(Evaluation::from_sealed_body(&sealed).as_ref(), Some(e));
    let json = serde_json::to_value(e).unwrap();
    assert_eq!(json["outcome"], "approval");
    assert_eq!(json["subject"]["kind"], "transfer.requested");
    assert_eq!(json["deadline"], at(3610 * S).to_string());
    assert_eq!(json["groups"][0]["approvers"].as_array().unwrap().len(), 4);
    assert_eq!(
        json["policies"][0]["rule"],
        json!({"kind": "always", "triggered": true})
    );
    let body = e.clear_body(&log.book.subject(&log.tenant, &t).unwrap().leaf);
    let mut keys: Vec<&String> = body.keys().collect();
    keys.sort();
    assert_eq!(keys, ["outcome", "subject"]);
    let d = Decision {
        kind: TRANSFER_APPROVED,
        reason: Reason::Approved,
        approvals: vec![body_leaf()],
    };
    assert_eq!(
        Value::Object(d.body(&body_leaf())),
        json!({"evaluation": body_leaf().to_hex(), "reason": "approved", "approvals": [body_leaf().to_hex()]})
    );
}

fn body_leaf() -> govern_core::ids::LeafHash {
    govern_core::ids::LeafHash(govern_core::ids::Hash([7; 32]))
}

fn change_error(params: Value) -> String {
    parse_change(&obj(params)).unwrap_err().to_string()
}

fn policy_error(policy: Value) -> String {
    change_error(json!({ "policy": policy }))
}

#[test]
fn policy_errors_name_their_field() {
    let base = limit("p", "10");
    let with = |path: &[&str], v: Value| {
        let mut p = base.clone();
        let mut node = &mut p;
        for k in &path[..path.len() - 1] {
            node = &mut node[*k];
        }
        node[path[path.len() - 1]] = v;
        p
    };
    assert_eq!(
        policy_error(with(&["rule", "max"], json!("01"))),
        "policy.rule.max: not a decimal string of base units"
    );
    assert_eq!(
        policy_error(with(&["rule", "max"], json!(10))),
        "policy.rule.max: not a decimal string of base units"
    );
    assert_eq!(
        policy_error(with(&["rule", "max"], json!("1".repeat(79)))),
        "policy.rule.max: not a decimal string of base units"
    );
    assert!(
        parse_change(&obj(
            json!({"policy": with(&["rule", "max"], json!("9".repeat(78)))})
        ))
        .is_ok()
    );
    assert_eq!(
        policy_error(with(&["rule", "extra"], json!(1))),
        "policy.rule.extra: not a field of this object"
    );
    assert_eq!(
        policy_error(with(&["extra"], json!(1))),
        "policy.extra: not a field of this object"
    );
    assert_eq!(
        policy_error(json!({"id": "p", "activity": "transfers", "rule": {"kind": "always"}})),
        "policy.action: required"
    );
    assert_eq!(
        policy_error(with(&["rule", "asset"], json!("0x12"))),
        "policy.rule.asset: not \"native\" or a token contract (0x + 40 hex)"
    );
    assert_eq!(
        policy_error(with(&["id"], json!("Upper"))),
        "policy.id: not a policy id (1 to 64 bytes of [a-z0-9_-])"
    );
    assert!(policy_error(with(&["id"], json!("a".repeat(65)))).starts_with("policy.id: "));
    assert!(
        parse_change(&obj(
            json!({"policy": with(&["id"], json!("a".repeat(64)))})
        ))
        .is_ok()
    );
    assert_eq!(
        policy_error(with(&["activity"], json!("policy_changes"))),
        "policy.rule.kind: amount_limit reads a transfer; a policy_changes policy's rule is always"
    );
    let mut wallets = json!({"id": "p", "activity": "wallet_creation", "rule": {"kind": "always"}, "action": {"kind": "block"}});
    wallets["wallets"] = json!(["01900000-0000-7000-8000-000000000001"]);
    assert_eq!(
        policy_error(wallets),
        "policy.wallets: a wallet filter is for the transfers activity only"
    );
    assert_eq!(
        policy_error(with(&["wallets"], json!(["not-a-uuid"]))),
        "policy.wallets[0]: not a wallet id (a UUID)"
    );
    assert_eq!(
        policy_error(with(&["wallets"], json!([]))),
        "policy.wallets: a list of 1 to 100 entries"
    );
    let w = "01900000-0000-7000-8000-00000000000a";
    assert_eq!(
        policy_error(with(&["wallets"], json!([w, w.to_uppercase()]))),
        "policy.wallets[1]: a duplicate"
    );
    assert_eq!(
        change_error(json!({"policy": base, "remove": "p"})),
        "params: exactly one of `policy` (set a policy) or `remove` (a policy id)"
    );
    assert_eq!(
        change_error(json!({"other": 1})),
        "other: not a field of this object"
    );
    assert_eq!(
        change_error(json!({"remove": "A"})),
        "remove: not a policy id (1 to 64 bytes of [a-z0-9_-])"
    );
}

#[test]
fn rule_and_action_bounds() {
    let rule = |rule: Value| json!({"id": "p", "activity": "transfers", "rule": rule, "action": {"kind": "block"}});
    let window = |w: Value| rule(json!({"kind": "count_velocity", "window_s": w, "max": 1}));
    assert_eq!(
        policy_error(window(json!(0))),
        "policy.rule.window_s: not an integer from 1 to 31536000"
    );
    assert_eq!(
        policy_error(window(json!(31_536_001))),
        "policy.rule.window_s: not an integer from 1 to 31536000"
    );
    assert_eq!(
        policy_error(window(json!(1.5))),
        "policy.rule.window_s: not an integer from 1 to 31536000"
    );
    assert!(parse_change(&obj(json!({"policy": window(json!(31_536_000))}))).is_ok());
    assert_eq!(
        policy_error(rule(
            json!({"kind": "count_velocity", "window_s": 1, "max": 1_000_001})
        )),
        "policy.rule.max: not an integer from 0 to 1000000"
    );
    let many: Vec<String> = (0..257u32).map(|i| format!("0x{i:040x}")).collect();
    assert_eq!(
        policy_error(rule(
            json!({"kind": "recipient_allowlist", "allowed": many})
        )),
        "policy.rule.allowed: a list of 1 to 256 entries"
    );
    assert_eq!(
        policy_error(rule(
            json!({"kind": "recipient_allowlist", "allowed": [addr(1), addr(1).to_uppercase().replace("0X", "0x")]})
        )),
        "policy.rule.allowed[1]: a duplicate"
    );
    assert_eq!(
        policy_error(rule(json!({"kind": "sometimes"})))
            .split(':')
            .next(),
        Some("policy.rule.kind")
    );

    let u = |i: u32| format!("01900000-0000-7000-8000-{i:012x}");
    let action = |a: Value| json!({"id": "p", "activity": "transfers", "rule": {"kind": "always"}, "action": a});
    let ra = |groups: Value, timeout: Value| {
        action(json!({"kind": "request_approval", "groups": groups, "timeout_s": timeout}))
    };
    let g = |name: &str, quorum: Value, approvers: Value| json!({"name": name, "quorum": quorum, "approvers": approvers});
    assert_eq!(
        policy_error(ra(
            json!([g("g", json!(3), json!([u(1), u(2)]))]),
            json!(60)
        )),
        "policy.action.groups[0].quorum: not an integer from 1 to 2"
    );
    assert_eq!(
        policy_error(ra(json!([g("g", json!(0), json!("any"))]), json!(60))),
        "policy.action.groups[0].quorum: not an integer from 1 to 100"
    );
    assert_eq!(
        policy_error(ra(
            json!([g("g", json!(1), json!([u(1), u(1)]))]),
            json!(60)
        )),
        "policy.action.groups[0].approvers[1]: a duplicate"
    );
    assert_eq!(
        policy_error(ra(json!([g("g", json!(1), json!("all"))]), json!(60))),
        "policy.action.groups[0].approvers: not \"any\" or a list of user ids"
    );
    assert_eq!(
        policy_error(ra(
            json!([
                g("g", json!(1), json!("any")),
                g("g", json!(1), json!("any"))
            ]),
            json!(60)
        )),
        "policy.action.groups[1].name: a duplicate group name"
    );
    let eleven: Vec<Value> = (0..11)
        .map(|i| g(&format!("g{i}"), json!(1), json!("any")))
        .collect();
    assert_eq!(
        policy_error(ra(json!(eleven), json!(60))),
        "policy.action.groups: a list of 1 to 10 entries"
    );
    assert_eq!(
        policy_error(ra(json!([g("g", json!(1), json!("any"))]), json!(0))),
        "policy.action.timeout_s: not an integer from 1 to 31536000"
    );
    assert_eq!(
        policy_error(action(
            json!({"kind": "request_approval", "groups": [g("g", json!(1), json!("any"))]})
        )),
        "policy.action.timeout_s: required"
    );
    assert_eq!(
        policy_error(action(json!({"kind": "block", "timeout_s": 1}))),
        "policy.action.timeout_s: not a field of this object"
    );
    // A valid policy serializes to what it parses from (lower-cased), and back.
    let p = ra(
        json!([g("g", json!(1), json!([u(10).to_uppercase()]))]),
        json!(60),
    );
    let PolicyChange::Set(parsed) = parse_change(&obj(json!({"policy": p}))).unwrap() else {
        panic!()
    };
    assert_eq!(
        serde_json::to_value(&parsed).unwrap()["action"],
        json!({"kind": "request_approval", "groups": [{"name": "g", "quorum": 1, "approvers": [u(10)]}],
               "initiator_may_approve": false, "timeout_s": 60})
    );
    let back: Policy = serde_json::from_value(serde_json::to_value(&parsed).unwrap()).unwrap();
    assert_eq!(back, parsed);
}

#[test]
fn transfer_facts() {
    let contract = addr(0xcd).to_uppercase().replace("0X", "0x");
    let facts = parse_transfer(&erc20(
        &contract,
        &addr(0xef).to_uppercase().replace("0X", "0x"),
        "42",
    ))
    .unwrap();
    assert_eq!(facts.asset, Asset::Token(addr(0xcd)));
    assert_eq!(facts.to, addr(0xef));
    assert_eq!(facts.amount, Amount::parse("42").unwrap());
    assert_eq!(
        parse_transfer(&native(&addr(1), "0")).unwrap().asset,
        Asset::Native
    );
    let err = parse_transfer(&native("0x1", "1")).unwrap_err().to_string();
    assert!(err.starts_with("transfer.to: "), "{err}");
    let mut extra = native(&addr(1), "1");
    extra.insert("memo".into(), "x".into());
    assert!(
        parse_transfer(&extra)
            .unwrap_err()
            .to_string()
            .starts_with("transfer.memo: ")
    );
}

#[test]
fn every_group_of_every_triggered_policy_must_reach_its_quorum_by_the_earliest_deadline() {
    let mut log = Log::new();
    let initiator = log.user();
    let a = log.user();
    let b = log.user();
    let c = log.user();
    let w = log.wallet(&initiator, 0);
    activate(
        &mut log,
        &a,
        S,
        approval(
            "all",
            json!({"kind": "always"}),
            json!([{"name": "g1", "quorum": 1, "approvers": [a]},
                   {"name": "g2", "quorum": 2, "approvers": [b, c]}]),
            false,
            600,
        ),
    );
    activate(
        &mut log,
        &a,
        S,
        approval(
            "big",
            json!({"kind": "amount_limit", "asset": "native", "max": "10"}),
            json!([{"name": "g", "quorum": 1, "approvers": [c]}]),
            false,
            60,
        ),
    );
    let small = log.transfer(&initiator, w, 10 * S, native(&addr(1), "10"));
    let t = log.transfer(&initiator, w, 10 * S, native(&addr(1), "11"));
    log.work(10 * S);
    assert_eq!(log.evaluation(small).deadline, Some(at(610 * S)));
    assert_eq!(log.evaluation(small).groups.len(), 2);
    let e = log.evaluation(t);
    assert_eq!(e.deadline, Some(at(70 * S)));
    let groups: Vec<(&str, &str)> = e
        .groups
        .iter()
        .map(|g| (g.policy.as_str(), g.group.as_str()))
        .collect();
    assert_eq!(groups, [("all", "g1"), ("all", "g2"), ("big", "g")]);
    let lc = log.vote(&c, t, true, 20 * S);
    let la = log.vote(&a, t, true, 21 * S);
    log.work(22 * S);
    assert_eq!(log.decided(t), None);
    let needs: Vec<u32> = log
        .book
        .pending(&log.tenant, &t)
        .unwrap()
        .iter()
        .map(|g| g.needs)
        .collect();
    assert_eq!(needs, [0, 1, 0]);
    let lb = log.vote(&b, t, true, 23 * S);
    assert_eq!(
        approvals(&log, t, 24 * S),
        vec![lc.to_hex(), la.to_hex(), lb.to_hex()]
    );
    log.work(24 * S);
    assert_eq!(log.decided_as(t), pair(TRANSFER_APPROVED, "approved"));
    // The other waits for its own deadline, 600 s.
    log.work(609 * S);
    assert_eq!(log.decided(small), None);
    log.work(610 * S);
    assert_eq!(log.decided_as(small), pair(TRANSFER_REJECTED, "timeout"));
    assert_replays(&log);
}

/// Ten matching approval policies of ten groups of a hundred named approvers: an evaluation
/// far beyond an event's 65,535 bytes is sealed in its digest form, still owed, recorded
/// and recomputed equal; a tampered digest is a mismatch.
#[test]
fn a_huge_evaluation_is_sealed_in_its_digest_form() {
    let mut log = Log::new();
    let admin = log.user();
    let approvers: Vec<String> = (0..100)
        .map(|i| format!("00000000-0000-7000-8000-{i:012}"))
        .collect();
    for p in 0..10 {
        let groups: Vec<Value> = (0..10)
            .map(|g| json!({"name": format!("g{g}"), "quorum": 1, "approvers": approvers}))
            .collect();
        activate(
            &mut log,
            &admin,
            S,
            approval(
                &format!("p{p}"),
                json!({"kind": "always"}),
                json!(groups),
                false,
                3600,
            ),
        );
    }
    let w = log.wallet(&admin, 2 * S);
    log.work(2 * S);
    let t = log.transfer(&admin, w, 3 * S, native(&addr(1), "5"));
    let full = serde_json::to_vec(log.evaluation(t)).unwrap();
    assert!(full.len() > 65_535, "{} bytes", full.len());
    let sealed = log.evaluation(t).sealed_body();
    let reasons = &sealed["reasons"];
    assert_eq!(reasons["policies"], 10);
    assert_eq!(reasons["groups"], 100);
    assert_eq!(reasons["outcome"], "approval");
    assert_eq!(
        reasons["digest"],
        hex::encode(Sha256::digest(
            govern_core::canonical::to_vec(log.evaluation(t)).unwrap()
        ))
    );
    assert!(serde_json::to_vec(&sealed).unwrap().len() < 1_000);
    log.work(3 * S);
    assert_eq!(outcome(&log, t), Outcome::Approval);
    assert_replays(&log);

    // The same log with the digest of the recorded reasons altered.
    let mut tampered = Log::new();
    let admin = tampered.user();
    let mut policy = approval(
        "p",
        json!({"kind": "always"}),
        json!([{"name": "g", "quorum": 1, "approvers": approvers}]),
        false,
        3600,
    );
    for g in 1..10 {
        policy["action"]["groups"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": format!("g{g}"), "quorum": 1, "approvers": approvers}));
    }
    activate(&mut tampered, &admin, S, policy);
    let w = tampered.wallet(&admin, 2 * S);
    tampered.work(2 * S);
    let t = tampered.transfer(&admin, w, 3 * S, native(&addr(1), "5"));
    let mut body = tampered.evaluation(t).sealed_body();
    assert!(body["reasons"].get("digest").is_some(), "{body:?}");
    body["reasons"]["digest"] = json!("00".repeat(32));
    let leaf = tampered.book.subject(&tampered.tenant, &t).unwrap().leaf;
    let clear = tampered.evaluation(t).clear_body(&leaf);
    tampered.record_evaluation(t, 3 * S, clear, Some(body));
    assert_eq!(tampered.mismatches.len(), 1, "{:?}", tampered.mismatches);
}
