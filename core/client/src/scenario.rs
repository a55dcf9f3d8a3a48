//! The scenario driver (feature `scenario`): a seeded scenario that drives a running node
//! over HTTP as its users and operator would, so its log holds every event kind the node
//! produces; `govern scenario` makes the golden exports of `replay-tests/` with it.
//!
//! The seed decides the choices (amounts, decisions, which wallet, comments); keys, ids and
//! times are fresh each run. Per tenant: the operator creates it; its first admin registers
//! a passkey; the admin adds an API key (signed with the passkey) and signs in with it;
//! invites a member, who registers; changes the member's role and back; adds a second key
//! and revokes it; changes the policy; requests wallets and transfers; the member approves
//! or denies each transfer with their passkey; the admin reads the sealed transfers. Then
//! the operator rotates the first tenant's keys and the admin requests one more transfer,
//! and the operator shreds the last tenant. Passkeys are the caller's ([`Passkey`]: the CLI
//! emulates them in software), so this crate links no WebAuthn library.

use std::sync::Arc;

use govern_core::action::{ChallengeObject, UserSignature};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use reqwest::{Method, Url};
use serde_json::{Value, json};

use crate::action::{self, ApiKey};
use crate::http::Client;

/// Any error of a run, in words.
pub type Error = Box<dyn std::error::Error + Send + Sync>;
/// A run's result.
pub type Result<T> = std::result::Result<T, Error>;

/// A passkey: an authenticator that registers (`navigator.credentials.create`) and signs
/// (`navigator.credentials.get`) for an origin, WebAuthn's JSON in and out.
pub trait Passkey: Send {
    /// The `PublicKeyCredential` of a registration, for the creation options `options`
    /// (`{"publicKey": …}`).
    ///
    /// # Errors
    /// When the authenticator refuses.
    fn register(&mut self, origin: &str, options: Value) -> Result<Value>;

    /// The `PublicKeyCredential` of an assertion, for the request options `options`.
    ///
    /// # Errors
    /// When the authenticator refuses.
    fn authenticate(&mut self, origin: &str, options: Value) -> Result<Value>;
}

/// Makes a new passkey for each user who registers.
pub type NewPasskey = Arc<dyn Fn() -> Box<dyn Passkey> + Send + Sync>;

/// The scenario's size and seed.
#[derive(Debug, Clone)]
pub struct Params {
    /// The seed of the choices.
    pub seed: u64,
    /// Tenants.
    pub tenants: usize,
    /// Wallets per tenant.
    pub wallets: usize,
    /// Transfers per tenant (each approved or denied by the member).
    pub transfers: usize,
    /// Exercise the policy worker (which must be running: the scenario waits for its
    /// decisions): in the first tenant, a policy that governs policy changes, a change it
    /// approves (wallet creation blocked), a wallet request then rejected, and a change
    /// the member denies.
    pub policies: bool,
}

enum Signer {
    Passkey(Box<dyn Passkey>),
    Key(Box<ApiKey>),
}

/// A signed-in user.
struct Member {
    tenant: String,
    user: String,
    session: String,
    signer: Signer,
}

/// Drives a node as its operator and users.
pub struct Driver {
    client: Client,
    origin: String,
    operator: String,
    rng: StdRng,
    new_passkey: Option<NewPasskey>,
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver")
            .field("node", &self.client.base())
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

fn text(v: &Value, field: &str) -> String {
    v[field].as_str().unwrap_or_default().to_string()
}

impl Driver {
    /// A driver of the node at `client` as the operator holding `operator` (its token) and
    /// as users signing for `origin` [default: `http://localhost:<the node's port>`], its
    /// choices drawn from `seed`, its users' passkeys made by `new_passkey` (none: no user
    /// can register).
    ///
    /// # Errors
    /// When the node's URL does not parse.
    pub fn new(
        client: Client,
        origin: Option<String>,
        operator: String,
        seed: u64,
        new_passkey: Option<NewPasskey>,
    ) -> Result<Self> {
        let port = Url::parse(client.base())?
            .port_or_known_default()
            .unwrap_or(80);
        Ok(Self {
            client,
            origin: origin.unwrap_or_else(|| format!("http://localhost:{port}")),
            operator,
            rng: StdRng::seed_from_u64(seed),
            new_passkey,
        })
    }

    /// The client it drives the node with.
    #[must_use]
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// One call to the node: its JSON answer, or its problem in words.
    async fn call(
        &self,
        method: Method,
        path: &str,
        header: Option<(&str, String)>,
        body: Option<&Value>,
    ) -> Result<Value> {
        let headers: Vec<(&str, &str)> = header.iter().map(|(k, v)| (*k, v.as_str())).collect();
        Ok(self
            .client
            .request_json(method, path, &headers, body)
            .await?)
    }

    /// The request of the entry an answer names by `index` (the operator's key answers
    /// name no request).
    async fn request_at(&self, answer: &Value) -> Result<String> {
        let entry = self
            .call(
                Method::GET,
                &format!("/v1/entries/{}", answer["index"]),
                None,
                None,
            )
            .await?;
        Ok(text(&entry, "request"))
    }

    async fn operator(&self, path: &str, body: &Value) -> Result<Value> {
        let bearer = format!("Bearer {}", self.operator);
        self.call(
            Method::POST,
            path,
            Some(("authorization", bearer)),
            Some(body),
        )
        .await
    }

    /// Redeem `invite` with a new software passkey: the member, and the registration's
    /// request.
    async fn register(
        &self,
        tenant: &str,
        invite: &str,
        name: Option<&str>,
    ) -> Result<(Member, String)> {
        let mut start = json!({"tenant": tenant, "invite": invite});
        if let Some(n) = name {
            start["name"] = n.into();
        }
        let start = self
            .call(Method::POST, "/v1/auth/register/start", None, Some(&start))
            .await?;
        let mut passkey = self
            .new_passkey
            .as_ref()
            .ok_or("no passkey to register with")?();
        let credential = passkey.register(&self.origin, start["options"].clone())?;
        let done = self
            .call(
                Method::POST,
                "/v1/auth/register/finish",
                None,
                Some(&json!({"registration": start["registration"], "credential": credential})),
            )
            .await?;
        Ok((
            Member {
                tenant: tenant.to_string(),
                user: text(&done, "user"),
                session: text(&done, "session"),
                signer: Signer::Passkey(passkey),
            },
            text(&done, "request"),
        ))
    }

    fn sign(&self, m: &mut Member, object: &ChallengeObject) -> Result<UserSignature> {
        Ok(match &mut m.signer {
            Signer::Key(key) => key.sign(&object.challenge()?, &self.origin),
            Signer::Passkey(passkey) => action::passkey_signature(
                &passkey.authenticate(&self.origin, action::passkey_request(object)?)?,
            ),
        })
    }

    /// One user action: init, sign, token, perform.
    async fn act(&self, m: &mut Member, kind: &str, path: &str, body: &Value) -> Result<Value> {
        let object = action::init(&self.client, &m.session, kind, path, body).await?;
        let signature = self.sign(m, &object)?;
        let token = action::token(&self.client, &m.session, &object, &signature).await?;
        self.call(
            Method::POST,
            path,
            Some(("x-govern-user-action", token)),
            Some(body),
        )
        .await
    }

    /// Add an API key for `admin`'s user (signed by `admin`) and sign in with it: the key's
    /// member, its credential id, and the action's answer.
    async fn add_key(&mut self, admin: &mut Member) -> Result<(Member, String, Value)> {
        let key = ApiKey::Ed25519(ed25519_dalek::SigningKey::from_bytes(&self.rng.r#gen()));
        let params = action::key_credential_params(&admin.user, &key.credential_key());
        let added = self
            .act(admin, "credential.registered", "/v1/credentials", &params)
            .await?;
        let id = text(&added, "credential");
        let login = self
            .call(
                Method::POST,
                "/v1/auth/login/start",
                None,
                Some(&json!({"tenant": admin.tenant, "user": admin.user, "credential": id})),
            )
            .await?;
        let object: ChallengeObject = serde_json::from_value(login["challenge"].clone())?;
        let signature = key.sign(&object.challenge()?, &self.origin);
        let session = self
            .call(
                Method::POST,
                "/v1/auth/login/finish",
                None,
                Some(&json!({"login": login["login"], "signature": signature})),
            )
            .await?;
        Ok((
            Member {
                tenant: admin.tenant.clone(),
                user: admin.user.clone(),
                session: text(&session, "session"),
                signer: Signer::Key(Box::new(key)),
            },
            id,
            added,
        ))
    }

    fn transfer(&mut self) -> Value {
        let amount: u64 = self.rng.gen_range(1..1_000_000_000);
        let nonce: u32 = self.rng.gen_range(0..1_000_000);
        json!({
            "kind": "Native",
            "to": format!("0x{:040x}", self.rng.r#gen::<u128>()),
            "amount": amount.to_string(),
            "chain_id": "1",
            "nonce": nonce.to_string(),
            "max_fee_per_gas": "30000000000",
            "max_priority_fee_per_gas": "1000000000",
            "gas_limit": "21000"
        })
    }
}

/// One request a run made: its tenant (by the run's name for it), the kind of the event
/// and the request id.
#[derive(Debug, Clone)]
pub struct Requested {
    /// The run's name for the tenant.
    pub tenant: String,
    /// The kind of the event.
    pub kind: String,
    /// The request id.
    pub request: String,
}

/// What a run made, for the callers that go on (the bench) and for `govern scenario` to
/// print.
#[derive(Debug)]
pub struct Made {
    /// A signed-in API key and the wallets of the first tenant.
    pub admin_key: Option<(String, ApiKey, Vec<String>)>,
    /// Every tenant, by the run's name for it: (name, id).
    pub tenants: Vec<(String, String)>,
    /// Every request made, in order (an approval's request is its transfer's).
    pub requests: Vec<Requested>,
}

impl Made {
    fn note(&mut self, tenant: &str, kind: &str, request: String) {
        self.requests.push(Requested {
            tenant: tenant.to_string(),
            kind: kind.to_string(),
            request,
        });
    }
}

/// Run the scenario of `args` with `d`.
///
/// # Errors
/// The first call the node refuses, or an answer that is not what the scenario expects.
pub async fn run(d: &mut Driver, args: &Params) -> Result<Made> {
    let mut tenants = Vec::new();
    let mut made = Made {
        admin_key: None,
        tenants: Vec::new(),
        requests: Vec::new(),
    };
    for t in 0..args.tenants.max(1) {
        let name = format!("tenant-{t}");
        let created = d
            .operator("/v1/tenants", &json!({"name": name, "admin": "Ada"}))
            .await?;
        let tenant = text(&created, "tenant");
        made.tenants.push((name.clone(), tenant.clone()));
        made.note(&name, "tenant.created", text(&created, "request"));
        let (mut admin, registered) = d.register(&tenant, &text(&created, "invite"), None).await?;
        made.note(&name, "user.registered", registered);
        let (mut key, _, added) = d.add_key(&mut admin).await?;
        made.note(&name, "credential.registered", text(&added, "request"));
        let invited = d
            .act(
                &mut key,
                "user.invited",
                "/v1/users",
                &json!({"role": "member"}),
            )
            .await?;
        made.note(&name, "user.invited", text(&invited, "request"));
        let (mut member, registered) = d
            .register(&tenant, &text(&invited, "invite"), Some("Bob"))
            .await?;
        made.note(&name, "user.registered", registered);
        for role in ["admin", "member"] {
            let r = d
                .act(
                    &mut key,
                    "user.role_changed",
                    "/v1/users/role",
                    &json!({"user": member.user, "role": role}),
                )
                .await?;
            made.note(&name, "user.role_changed", text(&r, "request"));
        }
        let (_, spare, added) = d.add_key(&mut admin).await?;
        made.note(&name, "credential.registered", text(&added, "request"));
        let r = d
            .act(
                &mut key,
                "credential.revoked",
                "/v1/credentials/revoke",
                &json!({"credential": spare}),
            )
            .await?;
        made.note(&name, "credential.revoked", text(&r, "request"));
        // Transfers above a seeded limit need the member's approval (the admin initiates
        // them all, so only the member can approve).
        let limit: u64 = d.rng.gen_range(100_000_000..900_000_000);
        let r = d
            .act(
                &mut key,
                "policy.changed",
                "/v1/policies",
                &approval_above(limit, &member.user),
            )
            .await?;
        made.note(&name, "policy.changed", text(&r, "request"));
        if args.policies {
            // With a policy worker, the limit is in force before the first transfer.
            let mut seen = std::collections::BTreeSet::new();
            d.hops(
                &key.session,
                &text(&r, "request"),
                "policy.activated",
                &mut seen,
                &mut |_: &Hop| {},
            )
            .await?;
        }
        let mut wallets = Vec::new();
        for w in 0..args.wallets.max(1) {
            let r = d
                .act(
                    &mut key,
                    "wallet.requested",
                    "/v1/wallets",
                    &json!({"name": format!("wallet {w}")}),
                )
                .await?;
            made.note(&name, "wallet.requested", text(&r, "request"));
            wallets.push(text(&r, "request"));
        }
        for _ in 0..args.transfers {
            let wallet = wallets[d.rng.gen_range(0..wallets.len())].clone();
            let body = d.transfer();
            let r = d
                .act(
                    &mut key,
                    "transfer.requested",
                    &format!("/v1/wallets/{wallet}/transfers"),
                    &body,
                )
                .await?;
            made.note(&name, "transfer.requested", text(&r, "request"));
            let decision = if d.rng.gen_bool(0.75) {
                "approve"
            } else {
                "deny"
            };
            let body = if d.rng.gen_bool(0.5) {
                json!({"comment": format!("checked by seed {}", args.seed)})
            } else {
                json!({})
            };
            let a = d
                .act(
                    &mut member,
                    "approval.decided",
                    &format!("/v1/requests/{}/approvals/{decision}", text(&r, "request")),
                    &body,
                )
                .await?;
            made.note(&name, "approval.decided", text(&a, "request"));
        }
        d.call(
            Method::GET,
            &format!("/v1/tenants/{tenant}/payloads/transfers?limit=5"),
            Some(("authorization", format!("Bearer {}", key.session))),
            None,
        )
        .await?;
        if t == 0 && args.policies {
            policy_phase(d, &mut made, &name, &mut key, &mut member, &wallets[0]).await?;
        }
        if t == 0
            && let Signer::Key(k) = &key.signer
        {
            made.admin_key = Some((key.session.clone(), (**k).clone(), wallets.clone()));
        }
        tenants.push((name, tenant, key, wallets));
    }
    // The operator rotates the first tenant's keys; a transfer is sealed under the new ones.
    if let Some((name, tenant, key, wallets)) = tenants.first_mut() {
        let rotated = d
            .operator(&format!("/v1/tenants/{tenant}/keys/rotate"), &json!({}))
            .await?;
        made.note(name, "keys.rotated", d.request_at(&rotated).await?);
        let body = d.transfer();
        let r = d
            .act(
                key,
                "transfer.requested",
                &format!("/v1/wallets/{}/transfers", wallets[0]),
                &body,
            )
            .await?;
        made.note(name, "transfer.requested", text(&r, "request"));
    }
    // The last tenant is shredded (its payloads stay in the log, unreadable).
    if tenants.len() > 1
        && let Some((name, tenant, _, _)) = tenants.last()
    {
        let shredded = d
            .operator(&format!("/v1/tenants/{tenant}/keys/shred"), &json!({}))
            .await?;
        made.note(name, "keys.shredded", d.request_at(&shredded).await?);
    }
    Ok(made)
}

/// A policy: a native transfer above `limit` (wei) needs the approval of `approver`, within
/// a day.
#[must_use]
pub fn approval_above(limit: u64, approver: &str) -> Value {
    json!({"policy": {
        "id": "large-transfers",
        "activity": "transfers",
        "rule": {"kind": "amount_limit", "asset": "native", "max": limit.to_string()},
        "action": {
            "kind": "request_approval",
            "groups": [{"name": "approvers", "quorum": 1, "approvers": [approver]}],
            "timeout_s": 86_400
        }
    }})
}

/// One event of a request, as `govern demo transfer` prints it when it lands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hop {
    /// The request.
    pub request: String,
    /// Its kind.
    pub kind: String,
    /// Its index.
    pub index: u64,
    /// Its producer's role.
    pub producer: String,
}

/// What `govern demo transfer` made.
#[derive(Debug, Clone)]
pub struct Demo {
    /// The tenant.
    pub tenant: String,
    /// The wallet (its request id).
    pub wallet: String,
    /// The transfer's request id.
    pub transfer: String,
    /// Its recipient.
    pub to: String,
    /// Its amount (wei).
    pub amount: String,
    /// The last hop: `transfer.signed` where the signers run (else `transfer.approved`).
    pub last: Hop,
    /// The wallet's EVM address (EIP-55), once the signers made its key.
    pub address: Option<String>,
    /// The signed transaction: its hash and raw bytes (0x hex), where the signers run.
    pub tx_hash: Option<String>,
    pub raw: Option<String>,
}

/// How long the demo waits for the policy worker's next hop.
pub const DEMO_HOP_WAIT_S: u64 = 60;
/// How long it waits for a transfer's signature: the signers may have to go through every
/// committee before they find three that are up.
pub const DEMO_SIGNED_WAIT_S: u64 = 180;

impl Driver {
    /// Wait until the request `id` (read with `session`) holds an event of kind `until`,
    /// handing `out` each event as it lands (those in `seen` excepted).
    async fn hops(
        &self,
        session: &str,
        id: &str,
        until: &str,
        seen: &mut std::collections::BTreeSet<u64>,
        out: &mut (dyn FnMut(&Hop) + Send),
    ) -> Result<Hop> {
        self.hops_within(session, id, until, seen, out, DEMO_HOP_WAIT_S)
            .await
    }

    /// [`Driver::hops`], waiting at most `wait_s` seconds.
    async fn hops_within(
        &self,
        session: &str,
        id: &str,
        until: &str,
        seen: &mut std::collections::BTreeSet<u64>,
        out: &mut (dyn FnMut(&Hop) + Send),
        wait_s: u64,
    ) -> Result<Hop> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(wait_s);
        loop {
            let r = self
                .call(
                    Method::GET,
                    &format!("/v1/requests/{id}"),
                    Some(("authorization", format!("Bearer {session}"))),
                    None,
                )
                .await?;
            let mut last = None;
            for e in r["events"].as_array().into_iter().flatten() {
                let index = e["index"].as_u64().unwrap_or_default();
                let kind = text(e, "kind");
                if seen.insert(index) {
                    let entry = self
                        .call(Method::GET, &format!("/v1/entries/{index}"), None, None)
                        .await?;
                    let hop = Hop {
                        request: id.to_string(),
                        kind: kind.clone(),
                        index,
                        producer: entry["producer"]["role"]
                            .as_str()
                            .unwrap_or_default()
                            .to_string(),
                    };
                    out(&hop);
                    if kind == until {
                        last = Some(hop);
                    }
                } else if kind == until {
                    last = Some(Hop {
                        request: id.to_string(),
                        kind,
                        index,
                        producer: "policy".into(),
                    });
                }
            }
            if let Some(hop) = last {
                return Ok(hop);
            }
            let status = text(&r, "status");
            if status == "rejected" || status == "quarantined" {
                return Err(format!("request {id} is {status}, not at {until}").into());
            }
            if std::time::Instant::now() > deadline {
                return Err(format!(
                    "request {id} is {status} after {wait_s} s, not at {until} (are the policy worker and the signers running? govern up starts them)"
                )
                .into());
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

/// A demo tenant ready to send transfers: its two users, its wallet (and the wallet's
/// address where the signers run).
pub struct DemoWallet {
    /// The tenant.
    pub tenant: String,
    /// The wallet (its request id).
    pub wallet: String,
    /// Its EVM address, once the signers made its key.
    pub address: Option<String>,
    /// Whether the node's five signers hold aux info (transfers end at `transfer.signed`).
    pub signers: bool,
    ada: Member,
    bob: Member,
    seen: std::collections::BTreeSet<u64>,
}

impl std::fmt::Debug for DemoWallet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DemoWallet")
            .field("tenant", &self.tenant)
            .field("wallet", &self.wallet)
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

/// The first half of `govern demo transfer`: a tenant and its first admin (a passkey), a
/// second user invited and registered (a passkey), a policy that needs the second user's
/// approval above 1 ETH, and a wallet, its key made by the signers when they run (the
/// node's `/v1/services` says so). `out` is handed every hop as it lands.
///
/// # Errors
/// The first call the node refuses; a hop that does not come within [`DEMO_HOP_WAIT_S`].
pub async fn demo_wallet(d: &mut Driver, out: &mut (dyn FnMut(&Hop) + Send)) -> Result<DemoWallet> {
    let mut seen = std::collections::BTreeSet::new();
    let created = d
        .operator("/v1/tenants", &json!({"name": "demo", "admin": "Ada"}))
        .await?;
    let tenant = text(&created, "tenant");
    let (mut ada, _) = d.register(&tenant, &text(&created, "invite"), None).await?;
    let session = ada.session.clone();
    let invited = d
        .act(
            &mut ada,
            "user.invited",
            "/v1/users",
            &json!({"role": "member"}),
        )
        .await?;
    let (bob, _) = d
        .register(&tenant, &text(&invited, "invite"), Some("Bob"))
        .await?;
    let policy = d
        .act(
            &mut ada,
            "policy.changed",
            "/v1/policies",
            &approval_above(1_000_000_000_000_000_000, &bob.user),
        )
        .await?;
    d.hops(
        &session,
        &text(&policy, "request"),
        "policy.activated",
        &mut seen,
        out,
    )
    .await?;
    let wallet = d
        .act(
            &mut ada,
            "wallet.requested",
            "/v1/wallets",
            &json!({"name": "treasury"}),
        )
        .await?;
    let wallet = text(&wallet, "request");
    d.hops(&session, &wallet, "wallet.approved", &mut seen, out)
        .await?;
    let services = d.call(Method::GET, "/v1/services", None, None).await?;
    let signers = services.get("aux_ready").is_some_and(|v| !v.is_null());
    let mut address = None;
    if signers {
        d.hops(&session, &wallet, "wallet.created", &mut seen, out)
            .await?;
        let w = d
            .call(
                Method::GET,
                &format!("/v1/wallets/{wallet}"),
                Some(("authorization", format!("Bearer {session}"))),
                None,
            )
            .await?;
        address = w["key"]["address"].as_str().map(str::to_string);
    }
    Ok(DemoWallet {
        tenant,
        wallet,
        address,
        signers,
        ada,
        bob,
        seen,
    })
}

/// The second half of `govern demo transfer`: a user-signed transfer of 2 ETH from the
/// demo's wallet with `nonce`, the second user's approval, and every hop to
/// `transfer.signed` (`transfer.approved` without signers).
///
/// # Errors
/// The first call the node refuses; a hop that does not come in time (the signature
/// within [`DEMO_SIGNED_WAIT_S`]); a transfer quarantined.
pub async fn demo_send(
    d: &mut Driver,
    w: &mut DemoWallet,
    nonce: u64,
    out: &mut (dyn FnMut(&Hop) + Send),
) -> Result<Demo> {
    let session = w.ada.session.clone();
    let wallet = w.wallet.clone();
    let to = format!("0x{}dead", "0".repeat(36));
    let amount = "2000000000000000000".to_string();
    let body = json!({
        "kind": "Native",
        "to": to,
        "amount": amount,
        "chain_id": "1",
        "nonce": nonce.to_string(),
        "max_fee_per_gas": "30000000000",
        "max_priority_fee_per_gas": "1000000000",
        "gas_limit": "21000"
    });
    let transfer = d
        .act(
            &mut w.ada,
            "transfer.requested",
            &format!("/v1/wallets/{wallet}/transfers"),
            &body,
        )
        .await?;
    let transfer = text(&transfer, "request");
    d.hops(&session, &transfer, "policy.evaluated", &mut w.seen, out)
        .await?;
    d.act(
        &mut w.bob,
        "approval.decided",
        &format!("/v1/requests/{transfer}/approvals/approve"),
        &json!({"comment": "checked: demo"}),
    )
    .await?;
    let mut last = d
        .hops(&session, &transfer, "transfer.approved", &mut w.seen, out)
        .await?;
    let (mut tx_hash, mut raw) = (None, None);
    if w.signers {
        last = d
            .hops_within(
                &session,
                &transfer,
                "transfer.signed",
                &mut w.seen,
                out,
                DEMO_SIGNED_WAIT_S,
            )
            .await?;
        let r = d
            .call(
                Method::GET,
                &format!("/v1/requests/{transfer}"),
                Some(("authorization", format!("Bearer {session}"))),
                None,
            )
            .await?;
        tx_hash = r["transaction"]["hash"].as_str().map(str::to_string);
        raw = r["transaction"]["raw"].as_str().map(str::to_string);
    }
    Ok(Demo {
        tenant: w.tenant.clone(),
        wallet,
        transfer,
        to,
        amount,
        last,
        address: w.address.clone(),
        tx_hash,
        raw,
    })
}

/// `govern demo transfer`: [`demo_wallet`], then one [`demo_send`] with nonce 0.
///
/// # Errors
/// As those.
pub async fn demo_transfer(d: &mut Driver, out: &mut (dyn FnMut(&Hop) + Send)) -> Result<Demo> {
    let mut w = demo_wallet(d, out).await?;
    demo_send(d, &mut w, 0, out).await
}

/// The policy worker's other decisions, each waited for: a transfer above the limit that
/// the member denies, rejected; a policy that governs policy
/// changes (the member must approve them), activated; a change that blocks wallet
/// creation, approved by the member and activated; a wallet request, rejected; a change
/// that removes the transfer limit, denied by the member and rejected.
async fn policy_phase(
    d: &mut Driver,
    made: &mut Made,
    name: &str,
    admin: &mut Member,
    member: &mut Member,
    wallet: &str,
) -> Result<()> {
    let mut body = d.transfer();
    body["amount"] = "1000000000".into();
    let transfers = format!("/v1/wallets/{wallet}/transfers");
    let guard = json!({"policy": {
        "id": "guard", "activity": "policy_changes", "rule": {"kind": "always"},
        "action": {"kind": "request_approval",
                   "groups": [{"name": "second-pair-of-eyes", "quorum": 1, "approvers": [member.user]}],
                   "timeout_s": 86_400}}});
    let no_wallets = json!({"policy": {
        "id": "no-new-wallets", "activity": "wallet_creation", "rule": {"kind": "always"},
        "action": {"kind": "block"}}});
    let steps: [(&str, &str, Value, Option<&str>, &str); 5] = [
        (
            "transfer.requested",
            &transfers,
            body,
            Some("deny"),
            "transfer.rejected",
        ),
        (
            "policy.changed",
            "/v1/policies",
            guard,
            None,
            "policy.activated",
        ),
        (
            "policy.changed",
            "/v1/policies",
            no_wallets,
            Some("approve"),
            "policy.activated",
        ),
        (
            "wallet.requested",
            "/v1/wallets",
            json!({"name": "one too many"}),
            None,
            "wallet.rejected",
        ),
        (
            "policy.changed",
            "/v1/policies",
            json!({"remove": "large-transfers"}),
            Some("deny"),
            "policy.rejected",
        ),
    ];
    let session = admin.session.clone();
    let mut seen = std::collections::BTreeSet::new();
    let mut quiet = |_: &Hop| {};
    for (kind, path, body, vote, until) in steps {
        let r = d.act(admin, kind, path, &body).await?;
        let id = text(&r, "request");
        made.note(name, kind, id.clone());
        if let Some(vote) = vote {
            d.hops(&session, &id, "policy.evaluated", &mut seen, &mut quiet)
                .await?;
            d.act(
                member,
                "approval.decided",
                &format!("/v1/requests/{id}/approvals/{vote}"),
                &json!({}),
            )
            .await?;
        }
        d.hops(&session, &id, until, &mut seen, &mut quiet).await?;
    }
    Ok(())
}

/// `count` signed transfers from `wallets` by the API key `key` (signed in as `session`),
/// 32 at a time: the mixed part of `govern bench replay`'s log.
///
/// # Errors
/// The first transfer the node refuses.
pub async fn transfers(
    client: &Client,
    session: String,
    key: ApiKey,
    wallets: Vec<String>,
    count: usize,
) -> Result<()> {
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for t in 0..32u64 {
        let mut d = Driver::new(client.clone(), None, String::new(), 1000 + t, None)?;
        let mut m = Member {
            tenant: String::new(),
            user: String::new(),
            session: session.clone(),
            signer: Signer::Key(Box::new(key.clone())),
        };
        let (wallets, next) = (wallets.clone(), std::sync::Arc::clone(&next));
        tasks.push(tokio::spawn(async move {
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < count {
                let wallet = &wallets[d.rng.gen_range(0..wallets.len())];
                let body = d.transfer();
                d.act(
                    &mut m,
                    "transfer.requested",
                    &format!("/v1/wallets/{wallet}/transfers"),
                    &body,
                )
                .await
                .map_err(|e| e.to_string())?;
            }
            Ok::<(), String>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}
