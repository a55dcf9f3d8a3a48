//! Properties over random policies and histories, through the fold and the simulated worker
//! (which also checks, at every step, that the fold agrees with each result it owed).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use govern_core::event::RequestId;
use proptest::prelude::*;
use serde_json::{Value, json};

use super::harness::{Log, S, addr, erc20, native, set};
use super::{Outcome, Reason};

const TOKEN: u8 = 0xcc;

#[derive(Clone, Debug)]
enum RuleSpec {
    Always,
    Limit {
        token: bool,
        max: u32,
    },
    Allow {
        mask: u8,
    },
    AmountVelocity {
        token: bool,
        window_s: u16,
        max: u32,
    },
    CountVelocity {
        window_s: u16,
        max: u8,
    },
}

#[derive(Clone, Debug)]
enum ActionSpec {
    Block,
    Approval,
    None,
}

#[derive(Clone, Debug)]
struct PolicySpec {
    rule: RuleSpec,
    action: ActionSpec,
    /// A filter over the two wallets (bit i: wallet i), or none.
    wallets: Option<u8>,
}

#[derive(Clone, Debug)]
struct TransferSpec {
    wallet: usize,
    token: bool,
    amount: u32,
    to: u8,
    /// Seconds after the previous one.
    dt_s: u16,
}

fn asset(token: bool) -> Value {
    if token {
        addr(TOKEN).into()
    } else {
        "native".into()
    }
}

impl PolicySpec {
    fn json(&self, id: &str, wallets: &[RequestId; 2]) -> Value {
        let rule = match &self.rule {
            RuleSpec::Always => json!({"kind": "always"}),
            RuleSpec::Limit { token, max } => {
                json!({"kind": "amount_limit", "asset": asset(*token), "max": max.to_string()})
            }
            RuleSpec::Allow { mask } => {
                let allowed: Vec<String> = (1..=3u8)
                    .filter(|i| mask & (1 << (i - 1)) != 0)
                    .map(addr)
                    .collect();
                json!({"kind": "recipient_allowlist", "allowed": allowed})
            }
            RuleSpec::AmountVelocity {
                token,
                window_s,
                max,
            } => json!({
                "kind": "amount_velocity", "asset": asset(*token), "window_s": window_s,
                "max": max.to_string()
            }),
            RuleSpec::CountVelocity { window_s, max } => {
                json!({"kind": "count_velocity", "window_s": window_s, "max": max})
            }
        };
        let action = match self.action {
            ActionSpec::Block => json!({"kind": "block"}),
            ActionSpec::None => json!({"kind": "none"}),
            ActionSpec::Approval => json!({"kind": "request_approval", "timeout_s": 100,
                "groups": [{"name": "g", "quorum": 1, "approvers": "any"}]}),
        };
        let mut p = json!({"id": id, "activity": "transfers", "rule": rule, "action": action});
        if let Some(mask) = self.wallets {
            let ws: Vec<String> = (0..2)
                .filter(|i| mask & (1 << i) != 0)
                .map(|i| wallets[i].0.to_string())
                .collect();
            p["wallets"] = json!(ws);
        }
        p
    }
}

fn rule_spec() -> impl Strategy<Value = RuleSpec> {
    prop_oneof![
        Just(RuleSpec::Always),
        (any::<bool>(), 0..300u32).prop_map(|(token, max)| RuleSpec::Limit { token, max }),
        (1..8u8).prop_map(|mask| RuleSpec::Allow { mask }),
        (any::<bool>(), 1..200u16, 0..600u32).prop_map(|(token, window_s, max)| {
            RuleSpec::AmountVelocity {
                token,
                window_s,
                max,
            }
        }),
        (1..200u16, 0..5u8).prop_map(|(window_s, max)| RuleSpec::CountVelocity { window_s, max }),
    ]
}

fn policy_spec() -> impl Strategy<Value = PolicySpec> {
    (
        rule_spec(),
        prop_oneof![
            Just(ActionSpec::Block),
            Just(ActionSpec::Approval),
            Just(ActionSpec::None)
        ],
        prop::option::of(1..4u8),
    )
        .prop_map(|(rule, action, wallets)| PolicySpec {
            rule,
            action,
            wallets,
        })
}

fn transfer_spec() -> impl Strategy<Value = TransferSpec> {
    (0..2usize, any::<bool>(), 0..300u32, 1..5u8, 0..90u16).prop_map(
        |(wallet, token, amount, to, dt_s)| TransferSpec {
            wallet,
            token,
            amount,
            to,
            dt_s,
        },
    )
}

fn params(t: &TransferSpec) -> serde_json::Map<String, Value> {
    let amount = t.amount.to_string();
    if t.token {
        erc20(&addr(TOKEN), &addr(t.to), &amount)
    } else {
        native(&addr(t.to), &amount)
    }
}

/// The outcome of `last` after `policies` (and `extra`, put in force just before `last`)
/// and `history` (decided as it goes when `decide`).
fn last_outcome(
    policies: &[PolicySpec],
    extra: Option<&PolicySpec>,
    history: &[TransferSpec],
    decide: bool,
    last: &TransferSpec,
) -> Outcome {
    let mut log = Log::new();
    let u = log.user();
    let wallets = [log.wallet(&u, 0), log.wallet(&u, 0)];
    for (i, p) in policies.iter().enumerate() {
        log.change(&u, 0, Some(set(p.json(&format!("p{i}"), &wallets))));
    }
    log.work(0);
    let mut ms = 0;
    for t in history {
        ms += i64::from(t.dt_s) * S;
        log.transfer(&u, wallets[t.wallet], ms, params(t));
        if decide {
            log.work(ms);
        }
    }
    ms += S;
    if let Some(q) = extra {
        log.change(&u, ms, Some(set(q.json("q", &wallets))));
    }
    // Both logs decide the history here, at the same time, alike.
    log.work(ms);
    if extra.is_some() {
        assert!(log.book.policies(&log.tenant).unwrap().contains_key("q"));
    }
    ms += i64::from(last.dt_s) * S;
    let r = log.transfer(&u, wallets[last.wallet], ms, params(last));
    log.evaluation(r).outcome
}

#[derive(Clone, Debug)]
struct GroupSpec {
    /// Named members (bit i: user i of 5, user 4 the initiator), or `"any"` when 0.
    members: u8,
    quorum: u8,
}

#[derive(Clone, Debug)]
struct VoteSpec {
    user: usize,
    approve: bool,
    /// Seconds after the transfer (the deadline is at 100).
    t_s: u8,
}

fn group_spec() -> impl Strategy<Value = GroupSpec> {
    (0..32u8, 1..6u8).prop_map(|(members, quorum)| {
        let named = members.count_ones() as u8;
        let quorum = if named == 0 {
            1 + quorum % 3
        } else {
            1 + quorum % named
        };
        GroupSpec { members, quorum }
    })
}

fn vote_spec() -> impl Strategy<Value = VoteSpec> {
    // Mostly approvals, mostly in time: the cases where one approval more or less matters.
    (0..5usize, prop::bool::weighted(0.8), 0..115u8).prop_map(|(user, approve, t_s)| VoteSpec {
        user,
        approve,
        t_s,
    })
}

/// The decision owed `now_s` after a transfer needing `groups`, with `votes` in log order.
fn decision(
    groups: &[GroupSpec],
    may: bool,
    votes: &[VoteSpec],
    now_s: u8,
) -> Option<(bool, Reason)> {
    let mut log = Log::new();
    let users: Vec<String> = (0..5).map(|_| log.user()).collect();
    let initiator = &users[4];
    let wallet = log.wallet(initiator, 0);
    let groups: Vec<Value> = groups
        .iter()
        .enumerate()
        .map(|(i, g)| {
            let approvers = if g.members == 0 {
                json!("any")
            } else {
                json!(
                    (0..5)
                        .filter(|b| g.members & (1 << b) != 0)
                        .map(|b| users[b].clone())
                        .collect::<Vec<_>>()
                )
            };
            json!({"name": format!("g{i}"), "quorum": g.quorum, "approvers": approvers})
        })
        .collect();
    log.change(
        initiator,
        0,
        Some(set(
            json!({"id": "approve", "activity": "transfers", "rule": {"kind": "always"},
            "action": {"kind": "request_approval", "groups": groups,
                       "initiator_may_approve": may, "timeout_s": 100}}),
        )),
    );
    log.work(0);
    let t0 = 10 * S;
    let r = log.transfer(initiator, wallet, t0, native(&addr(1), "1"));
    log.work(t0);
    assert_eq!(log.evaluation(r).outcome, Outcome::Approval);
    for v in votes {
        log.vote(&users[v.user], r, v.approve, t0 + i64::from(v.t_s) * S);
    }
    let now = t0 + i64::from(now_s) * S;
    let d = log.decision_at(r, now);
    // What the fold owes, the worker records, and a replay agrees with.
    log.work(now);
    let (_, mismatches) = log.replay(|_| true);
    assert!(mismatches.is_empty(), "{mismatches:?}");
    d.map(|d| (d.approves(), d.reason))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Adding a policy in force never turns a `block` into anything else.
    #[test]
    fn block_is_monotone(
        policies in prop::collection::vec(policy_spec(), 0..4),
        extra in policy_spec(),
        history in prop::collection::vec(transfer_spec(), 0..6),
        decide in any::<bool>(),
        last in transfer_spec(),
    ) {
        let without = last_outcome(&policies, None, &history, decide, &last);
        let with = last_outcome(&policies, Some(&extra), &history, decide, &last);
        if without == Outcome::Block {
            prop_assert_eq!(with, Outcome::Block);
        }
        // And a blocking policy that triggers always blocks.
        if matches!(extra.rule, RuleSpec::Always) && matches!(extra.action, ActionSpec::Block)
            && extra.wallets.is_none_or(|m| m & (1 << last.wallet) != 0)
        {
            prop_assert_eq!(with, Outcome::Block);
        }
    }

    /// Removing an approval never turns a rejection into an approval.
    #[test]
    fn fewer_approvals_never_approve_what_was_rejected(
        groups in prop::collection::vec(group_spec(), 1..4),
        may in any::<bool>(),
        votes in prop::collection::vec(vote_spec(), 1..12),
        pick in any::<prop::sample::Index>(),
        now_s in 0..120u8,
    ) {
        let approving: Vec<usize> = (0..votes.len()).filter(|i| votes[*i].approve).collect();
        prop_assume!(!approving.is_empty());
        let removed = approving[pick.index(approving.len())];
        let mut fewer = votes.clone();
        fewer.remove(removed);
        let all = decision(&groups, may, &votes, now_s);
        let less = decision(&groups, may, &fewer, now_s);
        if let Some((false, reason)) = all {
            prop_assert!(matches!(reason, Reason::Denied | Reason::Timeout), "{:?}", reason);
            prop_assert!(!matches!(less, Some((true, _))), "{:?} became {:?}", all, less);
        }
        // At or after the deadline something is always decided.
        if now_s >= 100 {
            prop_assert!(all.is_some() && less.is_some());
        }
    }
}
