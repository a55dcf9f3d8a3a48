//! Tenants, their users, invitations and credentials, folded from the log (docs/design.md §4).
//!
//! [`Tenants::apply`] is a pure fold over accepted events: the append policy judges every
//! user action against this state (who may sign what, with which key, whether a passkey's
//! counter went back), and the edge answers its reads from it. It trusts the events it is
//! given to have passed that policy, and ignores what it cannot read rather than guess.
//!
//! The event bodies it reads are specified in docs/formats.md ("Tenants, users and
//! credentials"); the names of their fields are the constants below.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use govern_core::action::{Credential, CredentialKey, CredentialType};
use govern_core::event::{Event, SignedEvent, TenantId};
use govern_core::ids::LeafHash;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use govern_core::kinds::{
    ACTION_KINDS, APPROVAL_DECIDED, CREDENTIAL_REGISTERED, CREDENTIAL_REVOKED, KEY_KINDS,
    KEYS_AUDIT, KEYS_ROTATED, KEYS_SHREDDED, POLICY_ACTIVATED, POLICY_CHANGED, POLICY_EVALUATED,
    POLICY_REJECTED, POLICY_RESULT_KINDS, READS_AUDIT, TENANT_CREATED, TRANSFER_APPROVED,
    TRANSFER_REJECTED, TRANSFER_REQUESTED, USER_INVITED, USER_REGISTERED, USER_ROLE_CHANGED,
    WALLET_APPROVED, WALLET_REJECTED, WALLET_REQUESTED, is_tenant_kind,
};
pub use govern_core::kinds::{TRANSFER_QUARANTINED, TRANSFER_SIGNED, WALLET_CREATED};

/// A user's role in a tenant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UserRole {
    /// Manages users, credentials and policies, and does everything a member does.
    Admin,
    /// Requests wallets and transfers, approves or denies, manages their own credentials.
    Member,
}

impl UserRole {
    /// Parse `admin` or `member`.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "admin" => Some(Self::Admin),
            "member" => Some(Self::Member),
            _ => None,
        }
    }

    /// Its name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Member => "member",
        }
    }

    /// Whether this role may sign an action of `kind` (the target of the action, such as
    /// whose credential, is checked separately).
    #[must_use]
    pub fn may(self, kind: &str) -> bool {
        match self {
            Self::Admin => ACTION_KINDS.contains(&kind),
            Self::Member => matches!(
                kind,
                WALLET_REQUESTED
                    | TRANSFER_REQUESTED
                    | APPROVAL_DECIDED
                    | CREDENTIAL_REGISTERED
                    | CREDENTIAL_REVOKED
            ),
        }
    }
}

/// An invitation: the hash of its one-time secret, the role it grants, and who redeemed it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invite {
    /// Hex SHA-256 of the secret.
    pub hash: String,
    /// The first admin's name, which the operator gave (`tenant.created`); a later
    /// invitation names no one (the invitee gives their name when they register, sealed).
    pub name: Option<String>,
    /// The role it grants.
    pub role: UserRole,
    /// The event that made it.
    pub index: u64,
    /// That entry's leaf hash.
    pub leaf: LeafHash,
    /// The user who redeemed it.
    pub used_by: Option<String>,
}

/// A registered user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// Its id (a UUID).
    pub id: String,
    /// Role.
    pub role: UserRole,
    /// Its `user.registered`.
    pub registered: u64,
    /// That entry's leaf hash.
    pub leaf: LeafHash,
}

/// A credential and what the log says of it since.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CredentialState {
    /// The credential.
    pub credential: Credential,
    /// Its `credential.registered`.
    pub registered: u64,
    /// That entry's leaf hash.
    pub leaf: LeafHash,
    /// Its `credential.revoked`, if any.
    pub revoked: Option<u64>,
    /// The highest signature counter seen in an action (passkeys; 0 for none).
    pub counter: u32,
    /// The latest user action signed with it (what a user re-checks beside the
    /// registration, in the dashboard's credentials view).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_action: Option<u64>,
}

/// A wallet, by the request that asked for it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Wallet {
    /// The `wallet.requested` request id.
    pub id: String,
    /// Its `wallet.requested`.
    pub index: u64,
    /// That entry's leaf hash.
    pub leaf: LeafHash,
    /// Its key, once the signers made it (`wallet.created`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<WalletKey>,
}

/// A wallet's key as `wallet.created` records it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalletKey {
    /// The EVM address, EIP-55 checksummed.
    pub address: String,
    /// The secp256k1 public key, compressed SEC1, hex.
    pub public_key: String,
    /// The `wallet.created` entry.
    pub index: u64,
}

/// A transfer's signed transaction as `transfer.signed` records it in clear (the raw
/// transaction itself is sealed in scope `transfers`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedTransaction {
    /// Keccak-256 of the raw transaction, 0x hex: its Ethereum transaction hash.
    pub hash: String,
    /// The `transfer.signed` entry.
    pub index: u64,
}

/// One step of a request's receipt chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// The entry.
    pub index: u64,
    /// Its kind.
    pub kind: String,
    /// Its leaf hash.
    pub leaf: LeafHash,
}

/// A request: what asked for it, and every tenant event of it so far.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// The request id.
    pub id: String,
    /// The kind of its first event.
    pub kind: String,
    /// `requested`; after the policy worker's `policy.evaluated`, `pending` (approvals
    /// needed) or `evaluated`; after its decision `approved` (a transfer or a wallet),
    /// `activated` (a policy change) or `rejected`; after the signers `created` (a wallet),
    /// `signed` or `quarantined` (a transfer).
    pub status: String,
    /// Its events in log order.
    pub events: Vec<Step>,
    /// A transfer's signed transaction, once signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction: Option<SignedTransaction>,
}

/// One tenant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tenant {
    /// Its name.
    pub name: String,
    /// The WebAuthn relying party id its credentials are bound to.
    pub rp_id: String,
    /// The origin its users sign from.
    pub origin: String,
    /// Its `tenant.created`.
    pub created: u64,
    /// That entry's leaf hash.
    pub leaf: LeafHash,
    /// Invitations by hash.
    pub invites: BTreeMap<String, Invite>,
    /// Users by id.
    pub users: BTreeMap<String, User>,
    /// Credentials by id.
    pub credentials: BTreeMap<String, CredentialState>,
    /// Wallets by id.
    pub wallets: BTreeMap<String, Wallet>,
    /// Requests by id.
    pub requests: BTreeMap<String, Request>,
    /// The latest `policy.changed`.
    pub policy: Option<Step>,
    /// Its keys: versions, shredding, releases and decryptions.
    pub keys: KeyStatus,
    /// The entries of its sealed payloads, by scope, in log order.
    pub payloads: BTreeMap<String, Vec<u64>>,
}

/// One version of a tenant's scope keys.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyVersion {
    /// The version (1 at `tenant.created`).
    pub version: u32,
    /// When: the time of the event that added it.
    pub created: String,
    /// That event's index.
    pub index: u64,
    /// Its leaf hash.
    pub leaf: LeafHash,
}

/// How often a role did something with a tenant's keys.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditCount {
    /// Scope keys released (one per scope a `keys.audit` names) or payloads opened (entries
    /// named by `reads.audit`).
    pub count: u64,
    /// By scope.
    pub scopes: BTreeMap<String, u64>,
    /// The time of the latest audit event.
    pub last: String,
    /// Its index.
    pub last_index: u64,
}

/// A tenant's key status, from `tenant.created` and the `keys.*` and `reads.audit` events.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyStatus {
    /// Every version, in order; the last is current.
    pub versions: Vec<KeyVersion>,
    /// The `keys.shredded` time and index, once shredded.
    pub shredded: Option<(String, u64)>,
    /// Scope-key releases, by the role they went to.
    pub releases: BTreeMap<String, AuditCount>,
    /// Payloads opened, by the role that opened them.
    pub decryptions: BTreeMap<String, AuditCount>,
    /// Releases and openings per hour of log time (the event's `time` cut to
    /// `YYYY-MM-DDTHH`), by role and scope: what the dashboard charts.
    #[serde(default)]
    pub hourly: BTreeMap<String, HourAudit>,
}

/// One hour of a tenant's key audit: counts by role, then scope.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HourAudit {
    /// Scope keys released (`keys.audit`), by the role they went to.
    pub releases: BTreeMap<String, BTreeMap<String, u64>>,
    /// Payloads opened (`reads.audit`), by the role that opened them.
    pub decryptions: BTreeMap<String, BTreeMap<String, u64>>,
}

/// The hour an event's time falls in: `YYYY-MM-DDTHH`.
fn hour_of(event: &Event) -> String {
    let t = event.time.to_string();
    t.get(..13).unwrap_or(&t).to_string()
}

fn count_hour(
    map: &mut BTreeMap<String, BTreeMap<String, u64>>,
    role: &str,
    scopes: &[(String, u64)],
) {
    let by_scope = map.entry(role.to_string()).or_default();
    for (scope, n) in scopes {
        *by_scope.entry(scope.clone()).or_default() += n;
    }
}

impl KeyStatus {
    /// The current version (0 before `tenant.created`).
    #[must_use]
    pub fn current(&self) -> u32 {
        self.versions.last().map_or(0, |v| v.version)
    }
}

fn count(
    map: &mut BTreeMap<String, AuditCount>,
    role: &str,
    scopes: &[(String, u64)],
    event: &Event,
    index: u64,
) {
    let c = map.entry(role.to_string()).or_default();
    for (scope, n) in scopes {
        c.count += n;
        *c.scopes.entry(scope.clone()).or_default() += n;
    }
    c.last = event.time.to_string();
    c.last_index = index;
}

impl Tenant {
    /// A live (registered, not revoked) credential.
    #[must_use]
    pub fn live_credential(&self, id: &str) -> Option<&CredentialState> {
        self.credentials.get(id).filter(|c| c.revoked.is_none())
    }

    /// The credentials of `user`.
    pub fn credentials_of<'a>(
        &'a self,
        user: &'a str,
    ) -> impl Iterator<Item = &'a CredentialState> + 'a {
        self.credentials
            .values()
            .filter(move |c| c.credential.user == user)
    }
}

/// Every tenant. Cloning is cheap (each tenant is shared until changed), so the append
/// policy can keep a committed and a working copy.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tenants {
    tenants: BTreeMap<TenantId, Arc<Tenant>>,
}

/// In JSON: an object of every tenant by id.
impl Serialize for Tenants {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.tenants.iter().map(|(id, t)| (id, t.as_ref())))
    }
}

impl<'de> Deserialize<'de> for Tenants {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let tenants = BTreeMap::<TenantId, Tenant>::deserialize(d)?;
        Ok(Self {
            tenants: tenants.into_iter().map(|(k, v)| (k, Arc::new(v))).collect(),
        })
    }
}

/// A field of a body, as a string.
#[must_use]
pub fn text<'a>(body: &'a serde_json::Map<String, Value>, field: &str) -> Option<&'a str> {
    body.get(field).and_then(Value::as_str)
}

/// The action's parameters the log can read: `body.params` of a clear action, `body.clear`
/// of a sealed one (govern-core's `seal::SEALED_KINDS`); empty when absent.
#[must_use]
pub fn params(event: &Event) -> serde_json::Map<String, Value> {
    let member = if govern_core::seal::sealed_kind(event.kind.as_str()).is_some() {
        "clear"
    } else {
        "params"
    };
    event
        .body
        .get(member)
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}

/// The credential a `credential.registered` records: `credential` (base64url id), `type`,
/// `user` and `public_key` (base64url COSE_Key) from the body for a registration, or from
/// `params` for an action.
#[must_use]
pub fn registered_credential(event: &Event) -> Option<Credential> {
    let fields = if event.body.contains_key("action") {
        params(event)
    } else {
        event.body.clone()
    };
    let cose = B64URL.decode(text(&fields, "public_key")?).ok()?;
    let id = match text(&fields, "credential") {
        Some(id) => id.to_string(),
        None => key_credential_id(&cose),
    };
    let kind = match text(&fields, "type")? {
        "passkey" => CredentialType::Passkey,
        "key" => CredentialType::Key,
        _ => return None,
    };
    let user = text(&fields, "user")?.to_string();
    let key = CredentialKey::from_cose(&cose).ok()?;
    Some(Credential {
        id,
        kind,
        key,
        tenant: event.tenant.0.to_string(),
        user,
    })
}

impl Tenants {
    /// A tenant.
    #[must_use]
    pub fn get(&self, id: &TenantId) -> Option<&Tenant> {
        self.tenants.get(id).map(AsRef::as_ref)
    }

    /// The tenant `id`, shared (a reader keeps it while the fold moves on).
    #[must_use]
    pub fn shared(&self, id: &TenantId) -> Option<Arc<Tenant>> {
        self.tenants.get(id).cloned()
    }

    /// How many tenants.
    #[must_use]
    pub fn len(&self) -> usize {
        self.tenants.len()
    }

    /// Whether there are none.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.tenants.is_empty()
    }

    /// Fold an accepted event in (`index`: its position in the log). Events of other kinds,
    /// and of tenants never created, change nothing.
    pub fn apply(&mut self, signed: &SignedEvent, index: u64) {
        let event = signed.event();
        let leaf = signed.leaf_hash();
        let kind = event.kind.as_str();
        if kind == TENANT_CREATED {
            let body = &event.body;
            let mut tenant = Tenant {
                name: text(body, "name").unwrap_or_default().to_string(),
                rp_id: text(body, "rp_id").unwrap_or_default().to_string(),
                origin: text(body, "origin").unwrap_or_default().to_string(),
                created: index,
                leaf,
                invites: BTreeMap::new(),
                users: BTreeMap::new(),
                credentials: BTreeMap::new(),
                wallets: BTreeMap::new(),
                requests: BTreeMap::new(),
                policy: None,
                keys: KeyStatus {
                    versions: vec![KeyVersion {
                        version: 1,
                        created: event.time.to_string(),
                        index,
                        leaf,
                    }],
                    ..KeyStatus::default()
                },
                payloads: BTreeMap::new(),
            };
            if let Some(hash) = text(body, "invite") {
                tenant.invites.insert(
                    hash.to_string(),
                    Invite {
                        hash: hash.to_string(),
                        name: text(body, "admin").map(str::to_string),
                        role: UserRole::Admin,
                        index,
                        leaf,
                        used_by: None,
                    },
                );
            }
            self.tenants.insert(event.tenant, Arc::new(tenant));
            return;
        }
        if !is_tenant_kind(kind) {
            return;
        }
        let Some(tenant) = self.tenants.get_mut(&event.tenant) else {
            return;
        };
        let tenant = Arc::make_mut(tenant);
        if let Ok((scope, _)) = govern_core::seal::sealed_scope(event) {
            tenant.payloads.entry(scope).or_default().push(index);
        }
        if KEY_KINDS.contains(&kind) {
            apply_keys(tenant, event, index, leaf);
            return;
        }
        let params = params(event);
        let step = Step {
            index,
            kind: kind.to_string(),
            leaf,
        };
        let request = tenant
            .requests
            .entry(event.request.0.to_string())
            .or_insert_with(|| Request {
                id: event.request.0.to_string(),
                kind: kind.to_string(),
                status: "requested".into(),
                events: Vec::new(),
                transaction: None,
            });
        request.events.push(step.clone());
        // The request's status is the policy worker's: its evaluation, then its decision.
        // An approval is an input to that decision, not the decision.
        match kind {
            POLICY_EVALUATED => {
                request.status = if text(&event.body, "outcome") == Some("approval") {
                    "pending".into()
                } else {
                    "evaluated".into()
                };
            }
            TRANSFER_APPROVED | WALLET_APPROVED => request.status = "approved".into(),
            POLICY_ACTIVATED => request.status = "activated".into(),
            TRANSFER_REJECTED | WALLET_REJECTED | POLICY_REJECTED => {
                request.status = "rejected".into();
            }
            // The signers' results: one each by their uniqueness key; a quarantine by one
            // signer does not undo a signature the others made.
            WALLET_CREATED => request.status = "created".into(),
            TRANSFER_SIGNED => {
                request.status = "signed".into();
                if let Some(hash) = text(&event.body, "tx_hash") {
                    request.transaction = Some(SignedTransaction {
                        hash: hash.to_string(),
                        index,
                    });
                }
            }
            TRANSFER_QUARANTINED if request.status != "signed" => {
                request.status = "quarantined".into();
            }
            _ => {}
        }
        // The credential that signed the action: its latest action, and a passkey's counter
        // as the action's authenticatorData carries it.
        if let Some(c) = event
            .body
            .get("action")
            .and_then(|a| a.get("credential"))
            .and_then(Value::as_str)
            .and_then(|id| tenant.credentials.get_mut(id))
        {
            if let Some(counter) = action_counter(event) {
                c.counter = c.counter.max(counter);
            }
            c.last_action = Some(index);
        }
        match kind {
            USER_INVITED => {
                if let (Some(hash), Some(role)) = (
                    text(&event.body, "invite"),
                    text(&params, "role").and_then(UserRole::parse),
                ) {
                    tenant.invites.insert(
                        hash.to_string(),
                        Invite {
                            hash: hash.to_string(),
                            name: None,
                            role,
                            index,
                            leaf,
                            used_by: None,
                        },
                    );
                }
            }
            USER_REGISTERED => {
                let body = &event.body;
                let (Some(user), Some(hash)) = (text(body, "user"), text(body, "invite")) else {
                    return;
                };
                let Some(invite) = tenant.invites.get_mut(hash) else {
                    return;
                };
                invite.used_by = Some(user.to_string());
                let role = invite.role;
                tenant.users.insert(
                    user.to_string(),
                    User {
                        id: user.to_string(),
                        role,
                        registered: index,
                        leaf,
                    },
                );
            }
            USER_ROLE_CHANGED => {
                if let (Some(user), Some(role)) = (
                    text(&params, "user"),
                    text(&params, "role").and_then(UserRole::parse),
                ) && let Some(u) = tenant.users.get_mut(user)
                {
                    u.role = role;
                }
            }
            CREDENTIAL_REGISTERED => {
                if let Some(credential) = registered_credential(event) {
                    tenant.credentials.insert(
                        credential.id.clone(),
                        CredentialState {
                            credential,
                            registered: index,
                            leaf,
                            revoked: None,
                            counter: 0,
                            last_action: None,
                        },
                    );
                }
            }
            CREDENTIAL_REVOKED => {
                if let Some(id) = text(&params, "credential")
                    && let Some(c) = tenant.credentials.get_mut(id)
                {
                    c.revoked.get_or_insert(index);
                }
            }
            WALLET_REQUESTED => {
                let id = event.request.0.to_string();
                tenant.wallets.insert(
                    id.clone(),
                    Wallet {
                        id,
                        index,
                        leaf,
                        key: None,
                    },
                );
            }
            WALLET_CREATED => {
                if let (Some(w), Some(address), Some(public_key)) = (
                    tenant.wallets.get_mut(&event.request.0.to_string()),
                    text(&event.body, "address"),
                    text(&event.body, "public_key"),
                ) && w.key.is_none()
                {
                    w.key = Some(WalletKey {
                        address: address.to_string(),
                        public_key: public_key.to_string(),
                        index,
                    });
                }
            }
            POLICY_CHANGED => tenant.policy = Some(step),
            _ => {}
        }
    }
}

/// The scopes and entry counts an audit event names: `keys.audit`'s `scopes` (one release
/// each), `reads.audit`'s `scope` and the number of its `entries`.
fn audited(event: &Event) -> Vec<(String, u64)> {
    let b = &event.body;
    if let Some(scope) = text(b, "scope") {
        let n = b
            .get("entries")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        return vec![(scope.to_string(), n as u64)];
    }
    b.get("scopes")
        .and_then(Value::as_array)
        .map(|s| {
            s.iter()
                .filter_map(Value::as_str)
                .map(|s| (s.to_string(), 1))
                .collect()
        })
        .unwrap_or_default()
}

fn apply_keys(tenant: &mut Tenant, event: &Event, index: u64, leaf: LeafHash) {
    let b = &event.body;
    match event.kind.as_str() {
        KEYS_ROTATED => {
            if let Some(version) = b
                .get("version")
                .and_then(Value::as_u64)
                .and_then(|v| u32::try_from(v).ok())
            {
                tenant.keys.versions.push(KeyVersion {
                    version,
                    created: event.time.to_string(),
                    index,
                    leaf,
                });
            }
        }
        KEYS_SHREDDED => {
            tenant
                .keys
                .shredded
                .get_or_insert((event.time.to_string(), index));
        }
        KEYS_AUDIT => {
            if let Some(role) = text(b, "role") {
                let scopes = audited(event);
                count(&mut tenant.keys.releases, role, &scopes, event, index);
                let hour = tenant.keys.hourly.entry(hour_of(event)).or_default();
                count_hour(&mut hour.releases, role, &scopes);
            }
        }
        READS_AUDIT => {
            let scopes = audited(event);
            let role = event.producer.role.to_string();
            count(&mut tenant.keys.decryptions, &role, &scopes, event, index);
            let hour = tenant.keys.hourly.entry(hour_of(event)).or_default();
            count_hour(&mut hour.decryptions, &role, &scopes);
        }
        _ => {}
    }
}

/// The signature counter of an action signed with a passkey (`authenticatorData` bytes
/// 33..37), if the event carries one.
#[must_use]
pub fn action_counter(event: &Event) -> Option<u32> {
    let sig = event.body.get("signature")?;
    if sig.get("type").and_then(Value::as_str) != Some("passkey") {
        return None;
    }
    let auth = B64URL
        .decode(sig.get("authenticator_data")?.as_str()?)
        .ok()?;
    let c = auth.get(33..37)?;
    Some(u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
}

/// The fields of a transfer (`transfer.requested`'s params; the wallet is the path's and the
/// event's parent), checked: `kind` `Native` or `Erc20` (then
/// `contract`, a 0x address), `to` (a 0x address), `amount` (a decimal string of base
/// units), `chain_id`, `nonce`, `max_fee_per_gas`, `max_priority_fee_per_gas`, `gas_limit`
/// (decimal strings). Nothing else.
///
/// # Errors
/// What is wrong, naming the field.
pub fn validate_transfer(params: &serde_json::Map<String, Value>) -> Result<(), String> {
    const DECIMALS: [&str; 6] = [
        "amount",
        "chain_id",
        "nonce",
        "max_fee_per_gas",
        "max_priority_fee_per_gas",
        "gas_limit",
    ];
    let kind = text(params, "kind").ok_or("kind: Native or Erc20 is required")?;
    let mut allowed: Vec<&str> = vec!["kind", "to"];
    allowed.extend(DECIMALS);
    match kind {
        "Native" => {}
        "Erc20" => {
            allowed.push("contract");
            if !text(params, "contract").is_some_and(is_address) {
                return Err(
                    "contract: an Erc20 transfer names its token contract (0x + 40 hex)".into(),
                );
            }
        }
        _ => return Err(format!("kind: {kind:?} is not Native or Erc20")),
    }
    if let Some(extra) = params.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(format!("{extra}: not a field of a {kind} transfer"));
    }
    if !text(params, "to").is_some_and(is_address) {
        return Err("to: a 0x address (40 hex digits) is required".into());
    }
    for field in DECIMALS {
        let ok = text(params, field).is_some_and(|v| {
            !v.is_empty()
                && v.len() <= 78
                && v.bytes().all(|b| b.is_ascii_digit())
                && (v == "0" || !v.starts_with('0'))
        });
        if !ok {
            return Err(format!(
                "{field}: a decimal string of at most 78 digits, no sign, no leading zero"
            ));
        }
    }
    Ok(())
}

fn is_address(s: &str) -> bool {
    s.len() == 42 && s.starts_with("0x") && s[2..].bytes().all(|b| b.is_ascii_hexdigit())
}

/// The id of a credential added by an action: base64url (no padding) of SHA-256 of its
/// COSE_Key.
#[must_use]
pub fn key_credential_id(cose: &[u8]) -> String {
    use sha2::Digest as _;
    B64URL.encode(sha2::Sha256::digest(cose))
}
