//! `govern bench actions`: user-action verifications per second (ES256 passkey assertions
//! and Ed25519 API-key signatures, through govern-core's offline verifier, on one thread
//! and on every core), and the submission latency of signed transfers against a running
//! node at concurrency 1 and 32: the whole flow a client runs (init, sign, exchange for a
//! userAction token, submit), and the submit alone.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use clap::Args;
use govern_api::DataDir;
use govern_client::action::{self, ApiKey};
use govern_core::action::{
    ACTION_DOMAIN, Anchor, ChallengeObject, Credential, CredentialKey, CredentialType,
    UserSignature, verify_user_action,
};
use serde_json::{Value, json};
use webauthn_authenticator_rs::prelude::WebauthnAuthenticator as _;
use webauthn_authenticator_rs::softpasskey::SoftPasskey;
use webauthn_rs::prelude::{CreationChallengeResponse, Url};

use crate::error::Result;

#[derive(Debug, Args)]
pub struct ActionsArgs {
    /// Seconds each verification measurement runs.
    #[arg(long, default_value_t = 3)]
    pub seconds: u64,
    /// Transfers submitted at concurrency 1.
    #[arg(long, default_value_t = 300)]
    pub serial: usize,
    /// Transfers submitted at concurrency 32 (in all).
    #[arg(long, default_value_t = 3200)]
    pub concurrent: usize,
}

fn sample_object() -> ChallengeObject {
    ChallengeObject {
        domain: ACTION_DOMAIN.into(),
        tenant: "0193f0a0-0000-7000-8000-000000000001".into(),
        user: "0193f0a0-0000-7000-8000-000000000002".into(),
        credential: "Y3JlZC0x".into(),
        kind: "transfer.requested".into(),
        request: "0193f0a0-0000-7000-8000-000000000003".into(),
        rp_id: "localhost".into(),
        method: "POST".into(),
        path: "/v1/wallets/0193f0a0-0000-7000-8000-000000000004/transfers".into(),
        body_commitment: "11".repeat(32),
        nonce: "bm9uY2Ux".into(),
        anchor: Anchor {
            size: 1234,
            root: "22".repeat(32),
        },
    }
}

/// An ES256 passkey assertion over `object`, as an authenticator makes it.
fn es256_assertion(key: &p256::ecdsa::SigningKey, object: &ChallengeObject) -> UserSignature {
    let challenge = object.challenge().unwrap_or_default();
    govern_client::action::es256_assertion(
        key,
        &object.rp_id,
        "http://localhost:7600",
        &B64URL.encode(challenge),
        7,
    )
}

/// Verifications per second on `threads` threads for `secs`.
fn verify_rate(
    threads: usize,
    secs: Duration,
    object: &ChallengeObject,
    signature: &UserSignature,
    credential: &Credential,
) -> f64 {
    let done = AtomicU64::new(0);
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                let mut n = 0u64;
                while start.elapsed() < secs {
                    for _ in 0..64 {
                        if verify_user_action(object, signature, credential).is_ok() {
                            n += 1;
                        }
                    }
                }
                done.fetch_add(n, Ordering::Relaxed);
            });
        }
    });
    done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

pub(crate) struct Client {
    pub(crate) node: govern_client::Client,
    pub(crate) origin: String,
}

impl Client {
    async fn post(&self, path: &str, headers: &[(&str, &str)], body: &Value) -> Result<Value> {
        Ok(self
            .node
            .request_json(reqwest::Method::POST, path, headers, Some(body))
            .await?)
    }
}

/// A signed-in API key and the wallet it moves money from.
pub(crate) struct Account {
    pub(crate) session: String,
    key: ApiKey,
    pub(crate) wallet: String,
}

/// Tenant, admin passkey, an API key added by the admin, key login, a wallet.
pub(crate) async fn setup(client: &Client, data_dir: &std::path::Path) -> Result<Account> {
    let token = DataDir::open(data_dir, None)?.operator_token()?;
    let created = client
        .post(
            "/v1/tenants",
            &[("authorization", &format!("Bearer {token}"))],
            &json!({"name": "bench", "admin": "Ada"}),
        )
        .await?;
    let tenant = created["tenant"].as_str().unwrap_or_default().to_string();
    let start = client
        .post(
            "/v1/auth/register/start",
            &[],
            &json!({"tenant": tenant, "invite": created["invite"]}),
        )
        .await?;
    let ccr: CreationChallengeResponse = serde_json::from_value(start["options"].clone())?;
    let mut passkey = SoftPasskey::new(true);
    let origin = Url::parse(&client.origin)?;
    let credential = passkey
        .do_registration(origin.clone(), ccr)
        .map_err(|e| format!("software passkey: {e:?}"))?;
    let admin = client
        .post(
            "/v1/auth/register/finish",
            &[],
            &json!({"registration": start["registration"], "credential": credential}),
        )
        .await?;
    let admin_session = admin["session"].as_str().unwrap_or_default().to_string();
    let user = admin["user"].as_str().unwrap_or_default().to_string();
    // The admin's passkey signs the API key's registration.
    let key = ApiKey::Ed25519(ed25519_dalek::SigningKey::generate(&mut rand_core::OsRng));
    let params = govern_api::edge::key_credential_params(&user, &key.credential_key());
    let object = action::init(
        &client.node,
        &admin_session,
        "credential.registered",
        "/v1/credentials",
        &params,
    )
    .await?;
    let rcr = serde_json::from_value(action::passkey_request(&object)?)?;
    let a = serde_json::to_value(
        passkey
            .do_authentication(origin, rcr)
            .map_err(|e| format!("software passkey: {e:?}"))?,
    )?;
    let signature = action::passkey_signature(&a);
    let token = action::token(&client.node, &admin_session, &object, &signature).await?;
    let added = client
        .post(
            "/v1/credentials",
            &[("x-govern-user-action", &token)],
            &params,
        )
        .await?;
    let key_id = added["credential"].as_str().unwrap_or_default().to_string();
    // The key logs in.
    let login = client
        .post(
            "/v1/auth/login/start",
            &[],
            &json!({"tenant": tenant, "user": user, "credential": key_id}),
        )
        .await?;
    let object: ChallengeObject = serde_json::from_value(login["challenge"].clone())?;
    let signature = key.sign(&object.challenge()?, &client.origin);
    let session = client
        .post(
            "/v1/auth/login/finish",
            &[],
            &json!({"login": login["login"], "signature": signature}),
        )
        .await?;
    let mut account = Account {
        session: session["session"].as_str().unwrap_or_default().to_string(),
        key,
        wallet: String::new(),
    };
    let (wallet, _, _) = submit(
        client,
        &account,
        "wallet.requested",
        "/v1/wallets",
        &json!({"name": "bench"}),
    )
    .await?;
    account.wallet = wallet;
    Ok(account)
}

/// One whole user action: (request id, whole-flow time, submit time).
pub(crate) async fn submit(
    client: &Client,
    account: &Account,
    kind: &str,
    path: &str,
    body: &Value,
) -> Result<(String, Duration, Duration)> {
    let start = Instant::now();
    let object = action::init(&client.node, &account.session, kind, path, body).await?;
    let signature = account.key.sign(&object.challenge()?, &client.origin);
    let token = action::token(&client.node, &account.session, &object, &signature).await?;
    let submit_start = Instant::now();
    let done = client
        .post(path, &[("x-govern-user-action", &token)], body)
        .await?;
    Ok((
        done["request"].as_str().unwrap_or_default().to_string(),
        start.elapsed(),
        submit_start.elapsed(),
    ))
}

fn transfer(i: usize) -> Value {
    transfer_to("0x00000000000000000000000000000000000000aa", i)
}

/// The `i`-th bench transfer to `to`: a native one, its amount and nonce from `i`.
pub(crate) fn transfer_to(to: &str, i: usize) -> Value {
    json!({
        "kind": "Native",
        "to": to,
        "amount": (1_000 + i).to_string(),
        "chain_id": "1",
        "nonce": i.to_string(),
        "max_fee_per_gas": "30000000000",
        "max_priority_fee_per_gas": "1000000000",
        "gas_limit": "21000"
    })
}

pub(crate) fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

async fn run_transfers(
    client: &Arc<Client>,
    account: &Arc<Account>,
    count: usize,
    concurrency: usize,
) -> Result<()> {
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, account, next) = (Arc::clone(client), Arc::clone(account), Arc::clone(&next));
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            let path = format!("/v1/wallets/{}/transfers", account.wallet);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                if i >= count {
                    break;
                }
                let r = submit(&client, &account, "transfer.requested", &path, &transfer(i)).await;
                out.push(
                    r.map(|(_, whole, sub)| (whole, sub))
                        .map_err(|e| e.to_string()),
                );
            }
            out
        }));
    }
    let mut whole = Vec::new();
    let mut sub = Vec::new();
    for t in tasks {
        for r in t.await? {
            let (w, s) = r?;
            whole.push(w);
            sub.push(s);
        }
    }
    let secs = start.elapsed().as_secs_f64();
    whole.sort_unstable();
    sub.sort_unstable();
    println!(
        "  concurrency {concurrency:>2}: {count} transfers in {secs:.1} s = {:.0}/s; whole flow p50 {:.2} ms p99 {:.2} ms; submit p50 {:.2} ms p99 {:.2} ms",
        count as f64 / secs,
        pct(&whole, 0.5),
        pct(&whole, 0.99),
        pct(&sub, 0.5),
        pct(&sub, 0.99),
    );
    Ok(())
}

pub async fn actions(args: ActionsArgs) -> Result<()> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let secs = Duration::from_secs(args.seconds.max(1));
    println!("govern bench actions ({threads} cores)");
    let object = sample_object();
    let p256_key = p256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
    let es256 = Credential {
        id: object.credential.clone(),
        kind: CredentialType::Passkey,
        key: CredentialKey::P256(*p256_key.verifying_key()),
        tenant: object.tenant.clone(),
        user: object.user.clone(),
    };
    let passkey_sig = es256_assertion(&p256_key, &object);
    verify_user_action(&object, &passkey_sig, &es256)?;
    let ed_key = ApiKey::Ed25519(ed25519_dalek::SigningKey::generate(&mut rand_core::OsRng));
    let ed = Credential {
        kind: CredentialType::Key,
        key: ed_key.credential_key(),
        ..es256.clone()
    };
    let key_sig = ed_key.sign(&object.challenge()?, "http://localhost:7600");
    verify_user_action(&object, &key_sig, &ed)?;
    println!(
        "user-action verifications (challenge recomputed, client data and signature checked):"
    );
    for (name, sig, cred) in [
        ("ES256 passkey", &passkey_sig, &es256),
        ("Ed25519 API key", &key_sig, &ed),
    ] {
        let one = verify_rate(1, secs, &object, sig, cred);
        let all = verify_rate(threads, secs, &object, sig, cred);
        println!("  {name:<16} {one:>8.0}/s on 1 thread, {all:>8.0}/s on {threads}");
    }

    let node = crate::bench::start_node().await?;
    let port = node.url.rsplit(':').next().unwrap_or_default().to_string();
    let client = Arc::new(Client {
        node: govern_client::Client::new(&node.url)?,
        origin: format!("http://localhost:{port}"),
    });
    let account = Arc::new(setup(&client, &node.data_dir).await?);
    println!(
        "signed transfers against a node at {} (init, sign, token, submit; each appended durably):",
        node.url
    );
    run_transfers(&client, &account, args.serial, 1).await?;
    run_transfers(&client, &account, args.concurrent, 32).await?;
    Ok(())
}
