//! Policies as a tenant's admins write them, parsed and checked in one place
//! ([`parse_change`]), and the facts of a transfer a rule reads ([`parse_transfer`]).
//!
//! The format is strict: every object refuses fields it does not define (serde's
//! `deny_unknown_fields`, at every level), every list and number has a named bound, and an
//! error names the field (`policy.rule.max: not a decimal string of base units`). Addresses,
//! wallet ids and user ids are compared case-insensitively, so they are stored lower-cased.
//! [`Policy`] serializes to the same format it parses, and deserializes through the same
//! parser.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::amount::Amount;
use crate::tenants::{text, validate_transfer};

/// The most policies a tenant has in force at once.
pub const POLICIES_PER_TENANT_MAX: usize = 100;
/// The longest policy id, in bytes (ids are 1 or more of `[a-z0-9_-]`).
pub const POLICY_ID_BYTES_MAX: usize = 64;
/// The most wallets a policy's wallet filter names.
pub const POLICY_WALLETS_MAX: usize = 100;
/// The most addresses of a recipient allow-list.
pub const ALLOWLIST_MAX: usize = 256;
/// The longest velocity window, in seconds (365 days).
pub const WINDOW_S_MAX: u64 = 31_536_000;
/// The highest `max` of a count velocity rule.
pub const COUNT_MAX: u64 = 1_000_000;
/// The most approval groups of a policy.
pub const GROUPS_MAX: usize = 10;
/// The most named approvers of a group, and the highest quorum of an `"any"` group.
pub const APPROVERS_MAX: usize = 100;
/// The longest group name, in bytes (names are 1 or more of `[a-z0-9_-]`, as ids).
pub const GROUP_NAME_BYTES_MAX: usize = 64;
/// The longest approval timeout, in seconds (365 days).
pub const TIMEOUT_S_MAX: u64 = 31_536_000;

/// Why a policy change or a transfer's params are not acceptable. Every message starts with
/// the field it is about.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// A field is present but wrong.
    #[error("{field}: {reason}")]
    Invalid {
        /// Where, as a path (`policy.action.groups[0].quorum`).
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// A required field is absent.
    #[error("{field}: required")]
    Missing {
        /// Where.
        field: String,
    },
    /// A field the format does not define.
    #[error("{field}: not a field of this object")]
    Unknown {
        /// Where.
        field: String,
    },
    /// The change would give the tenant more than [`POLICIES_PER_TENANT_MAX`] policies.
    #[error("policy.id: a new policy, and the tenant has {max} in force already (the most)")]
    TooManyPolicies {
        /// [`POLICIES_PER_TENANT_MAX`].
        max: usize,
    },
    /// The change removes a policy that is not in force.
    #[error("remove: no policy {id:?} is in force")]
    UnknownPolicy {
        /// The id it names.
        id: String,
    },
    /// A transfer's params are not a transfer's (the edge's check,
    /// [`crate::tenants::validate_transfer`]).
    #[error("transfer.{0}")]
    Transfer(String),
}

fn invalid(field: &str, reason: impl Into<String>) -> PolicyError {
    PolicyError::Invalid {
        field: field.to_string(),
        reason: reason.into(),
    }
}

/// What a policy governs: the kind of subject it is evaluated on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activity {
    /// `transfer.requested`.
    Transfers,
    /// `policy.changed`.
    PolicyChanges,
    /// `wallet.requested`.
    WalletCreation,
}

impl Activity {
    /// Its name in a policy.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Transfers => "transfers",
            Self::PolicyChanges => "policy_changes",
            Self::WalletCreation => "wallet_creation",
        }
    }

    /// The activity of a subject's event kind.
    #[must_use]
    pub fn of_kind(kind: &str) -> Option<Self> {
        match kind {
            govern_core::kinds::TRANSFER_REQUESTED => Some(Self::Transfers),
            govern_core::kinds::POLICY_CHANGED => Some(Self::PolicyChanges),
            govern_core::kinds::WALLET_REQUESTED => Some(Self::WalletCreation),
            _ => None,
        }
    }
}

/// What a transfer moves: the chain's native coin or an ERC-20 token by its contract. In
/// JSON `"native"` or the contract's address (`0x` + 40 hex, stored lower-cased).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Asset {
    /// The native coin.
    Native,
    /// An ERC-20 token: its contract, lower-cased.
    Token(String),
}

impl Asset {
    /// Parse `"native"` or an address (either case).
    #[must_use]
    pub fn parse(text: &str) -> Option<Self> {
        if text == "native" {
            Some(Self::Native)
        } else {
            address(text).map(Self::Token)
        }
    }

    /// Its JSON spelling.
    #[must_use]
    pub fn as_str(&self) -> &str {
        match self {
            Self::Native => "native",
            Self::Token(a) => a,
        }
    }
}

impl Serialize for Asset {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Asset {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).ok_or_else(|| {
            serde::de::Error::custom(format!("{text:?} is not \"native\" or a 0x address"))
        })
    }
}

/// `0x` + 40 hex digits, lower-cased; `None` otherwise.
fn address(text: &str) -> Option<String> {
    (text.len() == 42
        && text.starts_with("0x")
        && text.bytes().skip(2).all(|b| b.is_ascii_hexdigit()))
    .then(|| text.to_ascii_lowercase())
}

/// A UUID in its hyphenated form (either case), lower-cased; `None` otherwise.
fn uuid_text(text: &str) -> Option<String> {
    let ok = text.len() == 36
        && text.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        });
    ok.then(|| text.to_ascii_lowercase())
}

/// 1 to `max` bytes of `[a-z0-9_-]`.
fn is_name(text: &str, max: usize) -> bool {
    !text.is_empty()
        && text.len() <= max
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// When a policy triggers. Rules other than `always` read a transfer's facts, so they are
/// for the `transfers` activity only.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Rule {
    /// Always.
    Always,
    /// When a transfer of `asset` moves more than `max` (equal does not trigger).
    AmountLimit {
        /// The asset it limits.
        asset: Asset,
        /// The most one transfer may move.
        max: Amount,
    },
    /// When a transfer's recipient is not in `allowed`.
    RecipientAllowlist {
        /// Addresses, lower-cased, in the policy's order, no duplicates.
        allowed: Vec<String>,
    },
    /// When the wallet's transfers of `asset` in the window ending at this one, this one
    /// included, move more than `max`.
    AmountVelocity {
        /// The asset it limits.
        asset: Asset,
        /// The window, in seconds.
        window_s: u64,
        /// The most the window may move.
        max: Amount,
    },
    /// When the wallet's transfers (any asset) in the window ending at this one, this one
    /// included, number more than `max`.
    CountVelocity {
        /// The window, in seconds.
        window_s: u64,
        /// The most transfers the window may hold.
        max: u64,
    },
}

impl Rule {
    /// Its `kind`.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Always => "always",
            Self::AmountLimit { .. } => "amount_limit",
            Self::RecipientAllowlist { .. } => "recipient_allowlist",
            Self::AmountVelocity { .. } => "amount_velocity",
            Self::CountVelocity { .. } => "count_velocity",
        }
    }
}

/// Who may approve in a group. In JSON `"any"` or a list of user ids.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Approvers {
    /// Any registered user of the tenant.
    Any,
    /// These users (lower-cased UUIDs, no duplicates).
    Named(Vec<String>),
}

impl Approvers {
    /// Whether `user` (lower-cased) is one of them; `registered` says whether the user is a
    /// registered user of the tenant (what `"any"` asks).
    #[must_use]
    pub fn admits(&self, user: &str, registered: bool) -> bool {
        match self {
            Self::Any => registered,
            Self::Named(users) => users.iter().any(|u| u == user),
        }
    }
}

impl Serialize for Approvers {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Any => s.serialize_str("any"),
            Self::Named(users) => users.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Approvers {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::String(s) if s == "any" => Ok(Self::Any),
            Value::Array(users) => users
                .into_iter()
                .map(|u| match u {
                    Value::String(s) => Ok(s),
                    _ => Err(serde::de::Error::custom("an approver is a user id")),
                })
                .collect::<Result<_, _>>()
                .map(Self::Named),
            _ => Err(serde::de::Error::custom(
                "approvers are \"any\" or a list of user ids",
            )),
        }
    }
}

/// One group of approvers and how many of them must approve.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Group {
    /// Its name, unique in the policy.
    pub name: String,
    /// How many approvals it needs (1 or more; at most the number of named approvers).
    pub quorum: u32,
    /// Who may approve.
    pub approvers: Approvers,
}

/// What a triggered policy does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Action {
    /// The subject is rejected.
    Block,
    /// Every group must reach its quorum before the deadline.
    RequestApproval {
        /// The groups (1 to [`GROUPS_MAX`]).
        groups: Vec<Group>,
        /// Whether the subject's initiator may approve (default false).
        initiator_may_approve: bool,
        /// Seconds from the subject's time to its deadline.
        timeout_s: u64,
    },
    /// Nothing: the policy is evaluated and recorded, and changes no outcome.
    None,
}

impl Action {
    /// Its `kind`.
    #[must_use]
    pub fn kind(&self) -> ActionKind {
        match self {
            Self::Block => ActionKind::Block,
            Self::RequestApproval { .. } => ActionKind::RequestApproval,
            Self::None => ActionKind::None,
        }
    }
}

/// The kind of an [`Action`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    /// [`Action::Block`].
    Block,
    /// [`Action::RequestApproval`].
    RequestApproval,
    /// [`Action::None`].
    None,
}

/// A policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Policy {
    /// Its id: 1 to [`POLICY_ID_BYTES_MAX`] bytes of `[a-z0-9_-]`.
    pub id: String,
    /// What it governs.
    pub activity: Activity,
    /// The wallets it applies to (transfers only; all when absent): 1 to
    /// [`POLICY_WALLETS_MAX`] wallet ids (the request id of the wallet's `wallet.requested`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wallets: Option<Vec<String>>,
    /// When it triggers.
    pub rule: Rule,
    /// What it does then.
    pub action: Action,
}

impl<'de> Deserialize<'de> for Policy {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(d)?;
        parse_policy(&value, "policy").map_err(serde::de::Error::custom)
    }
}

/// What a `policy.changed` asks: `{"policy": {…}}` sets (creates or replaces) the policy of
/// that id, `{"remove": "<id>"}` removes one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyChange {
    /// Create or replace.
    #[serde(rename = "policy")]
    Set(Policy),
    /// Remove the policy of this id.
    Remove(String),
}

impl PolicyChange {
    /// The id of the policy it sets or removes.
    #[must_use]
    pub fn id(&self) -> &str {
        match self {
            Self::Set(p) => &p.id,
            Self::Remove(id) => id,
        }
    }
}

impl<'de> Deserialize<'de> for PolicyChange {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let params = Map::deserialize(d)?;
        parse_change(&params).map_err(serde::de::Error::custom)
    }
}

/// What a rule reads of a transfer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransferFacts {
    /// `native`, or the token's contract, lower-cased.
    pub asset: Asset,
    /// The recipient, lower-cased.
    pub to: String,
    /// Base units.
    pub amount: Amount,
}

/// Parse and check a `policy.changed`'s opened params: exactly `{"policy": {…}}` or
/// `{"remove": "<id>"}`. Everything about the policy itself is checked here; whether it fits
/// the tenant's policies in force ([`POLICIES_PER_TENANT_MAX`], a removed id in force) is
/// the fold's to say.
///
/// # Errors
/// The first thing wrong, naming its field.
pub fn parse_change(params: &Map<String, Value>) -> Result<PolicyChange, PolicyError> {
    if let Some(extra) = params.keys().find(|k| *k != "policy" && *k != "remove") {
        return Err(PolicyError::Unknown {
            field: extra.clone(),
        });
    }
    match (params.get("policy"), params.get("remove")) {
        (Some(policy), None) => parse_policy(policy, "policy").map(PolicyChange::Set),
        (None, Some(id)) => policy_id(id, "remove").map(PolicyChange::Remove),
        _ => Err(invalid(
            "params",
            "exactly one of `policy` (set a policy) or `remove` (a policy id)",
        )),
    }
}

/// Parse a transfer's opened params (`transfer.requested`): the edge's checks
/// ([`validate_transfer`]), then the asset (`native`, or the lower-cased `contract` of an
/// `Erc20` transfer), the lower-cased `to` and the `amount`.
///
/// # Errors
/// [`PolicyError::Transfer`], naming the field.
pub fn parse_transfer(params: &Map<String, Value>) -> Result<TransferFacts, PolicyError> {
    validate_transfer(params).map_err(PolicyError::Transfer)?;
    let field = |name: &str| {
        text(params, name).ok_or_else(|| PolicyError::Transfer(format!("{name}: required")))
    };
    let asset = match field("kind")? {
        "Erc20" => address(field("contract")?).map(Asset::Token),
        _ => Some(Asset::Native),
    }
    .ok_or_else(|| PolicyError::Transfer("contract: not a 0x address".into()))?;
    let to = address(field("to")?)
        .ok_or_else(|| PolicyError::Transfer("to: not a 0x address".into()))?;
    let amount = Amount::parse(field("amount")?).ok_or_else(|| {
        PolicyError::Transfer("amount: not a decimal string of base units".into())
    })?;
    Ok(TransferFacts { asset, to, amount })
}

/// An object at `path` holding only `allowed` fields.
fn object<'a>(
    value: &'a Value,
    path: &str,
    allowed: &[&str],
) -> Result<&'a Map<String, Value>, PolicyError> {
    let map = value
        .as_object()
        .ok_or_else(|| invalid(path, "not an object"))?;
    if let Some(extra) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(PolicyError::Unknown {
            field: format!("{path}.{extra}"),
        });
    }
    Ok(map)
}

fn required<'a>(
    map: &'a Map<String, Value>,
    path: &str,
    name: &str,
) -> Result<&'a Value, PolicyError> {
    map.get(name).ok_or_else(|| PolicyError::Missing {
        field: format!("{path}.{name}"),
    })
}

fn string<'a>(value: &'a Value, path: &str) -> Result<&'a str, PolicyError> {
    value.as_str().ok_or_else(|| invalid(path, "not a string"))
}

fn integer(value: &Value, path: &str, min: u64, max: u64) -> Result<u64, PolicyError> {
    value
        .as_u64()
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| invalid(path, format!("not an integer from {min} to {max}")))
}

fn array<'a>(value: &'a Value, path: &str, max: usize) -> Result<&'a [Value], PolicyError> {
    let items = value
        .as_array()
        .ok_or_else(|| invalid(path, "not a list"))?;
    if items.is_empty() || items.len() > max {
        return Err(invalid(path, format!("a list of 1 to {max} entries")));
    }
    Ok(items)
}

/// Each entry of a list through `parse`, refusing duplicates (after `parse`'s
/// normalization).
fn unique_list(
    value: &Value,
    path: &str,
    max: usize,
    what: &str,
    parse: fn(&str) -> Option<String>,
) -> Result<Vec<String>, PolicyError> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for (i, item) in array(value, path, max)?.iter().enumerate() {
        let at = format!("{path}[{i}]");
        let parsed =
            parse(string(item, &at)?).ok_or_else(|| invalid(&at, format!("not {what}")))?;
        if !seen.insert(parsed.clone()) {
            return Err(invalid(&at, "a duplicate"));
        }
        out.push(parsed);
    }
    Ok(out)
}

fn policy_id(value: &Value, path: &str) -> Result<String, PolicyError> {
    let id = string(value, path)?;
    if !is_name(id, POLICY_ID_BYTES_MAX) {
        return Err(invalid(
            path,
            format!("not a policy id (1 to {POLICY_ID_BYTES_MAX} bytes of [a-z0-9_-])"),
        ));
    }
    Ok(id.to_string())
}

fn amount(value: &Value, path: &str) -> Result<Amount, PolicyError> {
    value
        .as_str()
        .and_then(Amount::parse)
        .ok_or_else(|| invalid(path, "not a decimal string of base units"))
}

fn asset(value: &Value, path: &str) -> Result<Asset, PolicyError> {
    value
        .as_str()
        .and_then(Asset::parse)
        .ok_or_else(|| invalid(path, "not \"native\" or a token contract (0x + 40 hex)"))
}

fn parse_policy(value: &Value, path: &str) -> Result<Policy, PolicyError> {
    let map = object(
        value,
        path,
        &["id", "activity", "wallets", "rule", "action"],
    )?;
    let id = policy_id(required(map, path, "id")?, &format!("{path}.id"))?;
    let at = format!("{path}.activity");
    let activity = match string(required(map, path, "activity")?, &at)? {
        "transfers" => Activity::Transfers,
        "policy_changes" => Activity::PolicyChanges,
        "wallet_creation" => Activity::WalletCreation,
        _ => {
            return Err(invalid(
                &at,
                "not transfers, policy_changes or wallet_creation",
            ));
        }
    };
    let wallets = match map.get("wallets") {
        None => None,
        Some(_) if activity != Activity::Transfers => {
            return Err(invalid(
                &format!("{path}.wallets"),
                "a wallet filter is for the transfers activity only",
            ));
        }
        Some(list) => Some(unique_list(
            list,
            &format!("{path}.wallets"),
            POLICY_WALLETS_MAX,
            "a wallet id (a UUID)",
            uuid_text,
        )?),
    };
    let rule = parse_rule(required(map, path, "rule")?, &format!("{path}.rule"))?;
    if activity != Activity::Transfers && rule != Rule::Always {
        return Err(invalid(
            &format!("{path}.rule.kind"),
            format!(
                "{} reads a transfer; a {} policy's rule is always",
                rule.kind(),
                activity.as_str()
            ),
        ));
    }
    let action = parse_action(required(map, path, "action")?, &format!("{path}.action"))?;
    Ok(Policy {
        id,
        activity,
        wallets,
        rule,
        action,
    })
}

fn parse_rule(value: &Value, path: &str) -> Result<Rule, PolicyError> {
    let kind_at = format!("{path}.kind");
    let kind = value
        .as_object()
        .ok_or_else(|| invalid(path, "not an object"))
        .and_then(|m| required(m, path, "kind"))
        .and_then(|k| string(k, &kind_at))?;
    let fields: &[&str] = match kind {
        "always" => &["kind"],
        "amount_limit" => &["kind", "asset", "max"],
        "recipient_allowlist" => &["kind", "allowed"],
        "amount_velocity" => &["kind", "asset", "window_s", "max"],
        "count_velocity" => &["kind", "window_s", "max"],
        _ => {
            return Err(invalid(
                &kind_at,
                "not always, amount_limit, recipient_allowlist, amount_velocity or count_velocity",
            ));
        }
    };
    let map = object(value, path, fields)?;
    let at = |name: &str| format!("{path}.{name}");
    let get = |name: &str| required(map, path, name);
    let window = || integer(get("window_s")?, &at("window_s"), 1, WINDOW_S_MAX);
    Ok(match kind {
        "amount_limit" => Rule::AmountLimit {
            asset: asset(get("asset")?, &at("asset"))?,
            max: amount(get("max")?, &at("max"))?,
        },
        "recipient_allowlist" => Rule::RecipientAllowlist {
            allowed: unique_list(
                get("allowed")?,
                &at("allowed"),
                ALLOWLIST_MAX,
                "an address (0x + 40 hex)",
                address,
            )?,
        },
        "amount_velocity" => Rule::AmountVelocity {
            asset: asset(get("asset")?, &at("asset"))?,
            window_s: window()?,
            max: amount(get("max")?, &at("max"))?,
        },
        "count_velocity" => Rule::CountVelocity {
            window_s: window()?,
            max: integer(get("max")?, &at("max"), 0, COUNT_MAX)?,
        },
        _ => Rule::Always,
    })
}

fn parse_action(value: &Value, path: &str) -> Result<Action, PolicyError> {
    let kind_at = format!("{path}.kind");
    let kind = value
        .as_object()
        .ok_or_else(|| invalid(path, "not an object"))
        .and_then(|m| required(m, path, "kind"))
        .and_then(|k| string(k, &kind_at))?;
    match kind {
        "block" => object(value, path, &["kind"]).map(|_| Action::Block),
        "none" => object(value, path, &["kind"]).map(|_| Action::None),
        "request_approval" => {
            let map = object(
                value,
                path,
                &["kind", "groups", "initiator_may_approve", "timeout_s"],
            )?;
            let groups_at = format!("{path}.groups");
            let mut names = BTreeSet::new();
            let mut groups = Vec::new();
            for (i, g) in array(required(map, path, "groups")?, &groups_at, GROUPS_MAX)?
                .iter()
                .enumerate()
            {
                let group = parse_group(g, &format!("{groups_at}[{i}]"))?;
                if !names.insert(group.name.clone()) {
                    return Err(invalid(
                        &format!("{groups_at}[{i}].name"),
                        "a duplicate group name",
                    ));
                }
                groups.push(group);
            }
            let initiator_may_approve = match map.get("initiator_may_approve") {
                None => false,
                Some(v) => v.as_bool().ok_or_else(|| {
                    invalid(
                        &format!("{path}.initiator_may_approve"),
                        "not true or false",
                    )
                })?,
            };
            let timeout_s = integer(
                required(map, path, "timeout_s")?,
                &format!("{path}.timeout_s"),
                1,
                TIMEOUT_S_MAX,
            )?;
            Ok(Action::RequestApproval {
                groups,
                initiator_may_approve,
                timeout_s,
            })
        }
        _ => Err(invalid(&kind_at, "not block, request_approval or none")),
    }
}

fn parse_group(value: &Value, path: &str) -> Result<Group, PolicyError> {
    let map = object(value, path, &["name", "quorum", "approvers"])?;
    let name_at = format!("{path}.name");
    let name = string(required(map, path, "name")?, &name_at)?;
    if !is_name(name, GROUP_NAME_BYTES_MAX) {
        return Err(invalid(
            &name_at,
            format!("not a group name (1 to {GROUP_NAME_BYTES_MAX} bytes of [a-z0-9_-])"),
        ));
    }
    let approvers_at = format!("{path}.approvers");
    let approvers = match required(map, path, "approvers")? {
        Value::String(s) if s == "any" => Approvers::Any,
        list @ Value::Array(_) => Approvers::Named(unique_list(
            list,
            &approvers_at,
            APPROVERS_MAX,
            "a user id (a UUID)",
            uuid_text,
        )?),
        _ => return Err(invalid(&approvers_at, "not \"any\" or a list of user ids")),
    };
    let most = match &approvers {
        Approvers::Any => APPROVERS_MAX,
        Approvers::Named(users) => users.len(),
    };
    let quorum_at = format!("{path}.quorum");
    let quorum = integer(required(map, path, "quorum")?, &quorum_at, 1, most as u64)
        .and_then(|q| u32::try_from(q).map_err(|_| invalid(&quorum_at, "too large")))?;
    Ok(Group {
        name: name.to_string(),
        quorum,
        approvers,
    })
}
