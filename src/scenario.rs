//! `govern scenario`: a seeded scenario that drives a running node as its users and
//! operator would, so its log holds every event kind the code produces. The golden logs of
//! `replay-tests/` and `govern bench replay` are made with it.
//!
//! The seed decides the choices (amounts, decisions, which wallet, comments); keys, ids and
//! times are fresh each run, so two runs of one seed make logs of the same shape, not the
//! same bytes. What it does, per tenant: the operator creates it; its first admin registers
//! a software passkey; the admin adds an API key (signed with the passkey) and signs in with
//! it; invites a member, who registers; changes the member's role and back; adds a second
//! key and revokes it; changes the policy; requests wallets and transfers; the member
//! approves or denies each transfer with their passkey; the admin reads the sealed
//! transfers. Then the operator rotates the first tenant's keys and the admin requests one
//! more transfer, the operator shreds the last tenant, and a service presents an
//! attestation of an unpinned measurement, which the log quarantines. `govern scenario`
//! prints every request it made (tenant, kind, the whole id), so any can be checked with
//! `govern verify request`.

use std::path::{Path, PathBuf};

use clap::Args;
use govern_api::DataDir;
use govern_client::action::{self, ApiKey};
use govern_core::action::{ChallengeObject, UserSignature};
use govern_core::event::Role;
use govern_core::ids::{Hash, LeafHash, RootHash};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use reqwest::Method;
use serde_json::{Value, json};
use webauthn_authenticator_rs::prelude::WebauthnAuthenticator as _;
use webauthn_authenticator_rs::softpasskey::SoftPasskey;
use webauthn_rs::prelude::{CreationChallengeResponse, Url};

use crate::demo::Result;
use govern_client::Client;

#[derive(Debug, Args)]
pub struct ScenarioArgs {
    /// The node.
    #[arg(long, env = "GOVERN_URL")]
    pub url: String,
    /// The node's data dir (for the operator token and the dev CA).
    #[arg(long, env = "GOVERN_DATA_DIR")]
    pub data_dir: PathBuf,
    /// The web origin users sign for [default: http://localhost:<the URL's port>].
    #[arg(long)]
    pub origin: Option<String>,
    /// The seed of the scenario's choices.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Tenants.
    #[arg(long, default_value_t = 2)]
    pub tenants: usize,
    /// Wallets per tenant.
    #[arg(long, default_value_t = 2)]
    pub wallets: usize,
    /// Transfers per tenant (each approved or denied by the member).
    #[arg(long, default_value_t = 3)]
    pub transfers: usize,
}

enum Signer {
    Passkey(Box<SoftPasskey>),
    Key(Box<ApiKey>),
}

/// A signed-in user.
struct Member {
    tenant: String,
    user: String,
    session: String,
    signer: Signer,
}

pub(crate) struct Driver {
    client: Client,
    origin: String,
    operator: String,
    rng: StdRng,
}

fn text(v: &Value, field: &str) -> String {
    v[field].as_str().unwrap_or_default().to_string()
}

impl Driver {
    pub(crate) fn new(
        url: &str,
        origin: Option<String>,
        data_dir: &Path,
        seed: u64,
    ) -> Result<Self> {
        let client = Client::new(url)?;
        let port = Url::parse(client.base())?
            .port_or_known_default()
            .unwrap_or(80);
        Ok(Self {
            client,
            origin: origin.unwrap_or_else(|| format!("http://localhost:{port}")),
            operator: crate::operator::token(data_dir, url)?,
            rng: StdRng::seed_from_u64(seed),
        })
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
        let ccr: CreationChallengeResponse = serde_json::from_value(start["options"].clone())?;
        let mut passkey = SoftPasskey::new(true);
        let credential = passkey
            .do_registration(Url::parse(&self.origin)?, ccr)
            .map_err(|e| format!("software passkey: {e:?}"))?;
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
                signer: Signer::Passkey(Box::new(passkey)),
            },
            text(&done, "request"),
        ))
    }

    fn sign(&self, m: &mut Member, object: &ChallengeObject) -> Result<UserSignature> {
        Ok(match &mut m.signer {
            Signer::Key(key) => key.sign(&object.challenge()?, &self.origin),
            Signer::Passkey(passkey) => {
                let rcr = serde_json::from_value(action::passkey_request(object)?)?;
                action::passkey_signature(&serde_json::to_value(
                    passkey
                        .do_authentication(Url::parse(&self.origin)?, rcr)
                        .map_err(|e| format!("software passkey: {e:?}"))?,
                )?)
            }
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
        let params = govern_api::edge::key_credential_params(&admin.user, &key.credential_key());
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
pub(crate) struct Requested {
    pub tenant: String,
    pub kind: String,
    pub request: String,
}

/// What a run made, for the callers that go on (the bench) and for `govern scenario` to
/// print.
pub(crate) struct Made {
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

/// Run the scenario against the node at `args.url`.
pub(crate) async fn run_scenario(args: &ScenarioArgs) -> Result<Made> {
    let mut d = Driver::new(&args.url, args.origin.clone(), &args.data_dir, args.seed)?;
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
        let approvers = d.rng.gen_range(1..3u32);
        let r = d
            .act(
                &mut key,
                "policy.changed",
                "/v1/policies",
                &json!({"policy": {"approvers": approvers}}),
            )
            .await?;
        made.note(&name, "policy.changed", text(&r, "request"));
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
    quarantine_unpinned(&d, &args.data_dir).await?;
    Ok(made)
}

/// A service presents a document of a measurement the manifest does not pin: the log refuses
/// it and appends `service.quarantined` with the document as evidence.
async fn quarantine_unpinned(d: &Driver, data_dir: &Path) -> Result<()> {
    let services = d.call(Method::GET, "/v1/services", None, None).await?;
    let manifest = &services["manifest"];
    let hash: [u8; 32] = hex::decode(text(manifest, "hash"))?
        .try_into()
        .map_err(|_| "the manifest hash is not 32 bytes")?;
    let leaf: LeafHash = serde_json::from_value(manifest["leaf"].clone())?;
    let info: Value = d.call(Method::GET, "/v1/state", None, None).await?;
    let nonce = RootHash(Hash::from_hex(&text(&info, "root"))?);
    let dir = tempfile::tempdir()?;
    let image = dir.path().join("unpinned-image");
    std::fs::write(
        &image,
        format!("an image nobody pinned, {}", uuid::Uuid::now_v7()),
    )?;
    let role = Role::new("policy")?;
    let nsm = govern_workers::nsm::SimulatedNsm::open(
        &DataDir::open(data_dir, None)?.dev_ca_path(),
        &image,
        role.clone(),
    )?;
    let keys = govern_workers::identity::ServiceKeys::generate(role)?;
    let event = keys.attest(&nsm, hash, nonce, vec![leaf])?;
    match d.client.append(event.bytes()).await {
        Err(e) if e.status() == Some(403) => Ok(()),
        Err(e) => Err(format!("an unpinned attestation was not refused as forbidden: {e}").into()),
        Ok(r) => Err(format!(
            "an unpinned attestation was appended (entry {}), not refused",
            r.index
        )
        .into()),
    }
}

/// `govern scenario`.
pub async fn run(args: ScenarioArgs) -> Result<()> {
    let made = run_scenario(&args).await?;
    for (name, id) in &made.tenants {
        println!("{name} is tenant {id}");
    }
    let rows: Vec<Vec<String>> = made
        .requests
        .iter()
        .map(|r| vec![r.tenant.clone(), r.kind.clone(), r.request.clone()])
        .collect();
    println!(
        "{}",
        crate::table::render(&["tenant", "kind", "request"], &rows, &[])
    );
    let info: Value = Client::new(&args.url)?.get_json("/v1/state").await?;
    println!(
        "scenario (seed {}) done: size {} root {} state {}",
        args.seed,
        info["size"],
        info["root"].as_str().unwrap_or_default(),
        info["state_root"].as_str().unwrap_or_default()
    );
    Ok(())
}

/// `count` signed transfers from `wallets` by the API key `key` (signed in as `session`),
/// 32 at a time: the mixed part of `govern bench replay`'s log.
pub(crate) async fn transfers(
    url: &str,
    data_dir: &Path,
    session: String,
    key: ApiKey,
    wallets: Vec<String>,
    count: usize,
) -> Result<()> {
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for t in 0..32u64 {
        let mut d = Driver::new(url, None, data_dir, 1000 + t)?;
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
