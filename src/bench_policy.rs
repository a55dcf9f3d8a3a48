//! `govern bench policy`: the policy engine's pure evaluation, in evaluations per second on
//! one core (a tenant with 1,000 past transfers in one wallet and 20 policies in force,
//! every rule kind among them), beside this machine's Ed25519 verify rate in the same run;
//! then the end-to-end latency from a signed transfer's `transfer.requested` acknowledged
//! to its `policy.evaluated` in the log, at concurrency 1 and 32, with the node and the
//! policy worker as separate processes, beside the node's own append (submit) latency.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Args;
use ed25519_dalek::SigningKey;
use govern_core::event::{
    Event, Kind, Producer, RequestId, Role, SignedEvent, TenantId, Timestamp,
};
use govern_core::kinds::{
    POLICY_CHANGED, POLICY_EVALUATED, TENANT_CREATED, TRANSFER_REQUESTED, USER_REGISTERED,
};
use govern_projections::policy::{Owed, PolicyBook};
use serde_json::{Map, Value, json};
use tokio::sync::Mutex;

use crate::bench_actions::{Account, Client, setup, submit};
use crate::error::Result;

#[derive(Debug, Args)]
pub struct PolicyArgs {
    /// Past transfers of the tenant's wallet.
    #[arg(long, default_value_t = 1000)]
    pub past: usize,
    /// Policies in force.
    #[arg(long, default_value_t = 20)]
    pub policies: usize,
    /// Seconds the evaluation rate is measured.
    #[arg(long, default_value_t = 3)]
    pub seconds: u64,
    /// Transfers submitted at concurrency 1.
    #[arg(long, default_value_t = 200)]
    pub serial: usize,
    /// Transfers submitted at concurrency 32 (in all).
    #[arg(long, default_value_t = 640)]
    pub concurrent: usize,
    /// Skip the end-to-end part (no node, no worker).
    #[arg(long)]
    pub pure_only: bool,
}

/// A tenant's log built in memory, its results recorded as the worker records them.
struct Synthetic {
    key: SigningKey,
    tenant: TenantId,
    user: String,
    wallet: String,
    book: PolicyBook,
    index: u64,
    ms: i64,
}

impl Synthetic {
    fn new() -> Self {
        Self {
            key: SigningKey::generate(&mut rand_core::OsRng),
            tenant: TenantId(uuid::Uuid::now_v7()),
            user: uuid::Uuid::now_v7().to_string(),
            wallet: uuid::Uuid::now_v7().to_string(),
            book: PolicyBook::default(),
            index: 0,
            ms: Timestamp::now().unix_ms() - 3_600_000,
        }
    }

    fn event(
        &mut self,
        kind: &str,
        role: &str,
        request: RequestId,
        parents: Vec<govern_core::ids::LeafHash>,
        body: Value,
    ) -> Result<SignedEvent> {
        let Value::Object(body) = body else {
            return Err("a body is an object".into());
        };
        self.ms += 1;
        let mut e = Event::new(
            Kind::new(kind)?,
            self.tenant,
            request,
            Producer {
                role: Role::new(role)?,
                key: govern_core::event::PublicKey::from(&self.key.verifying_key()),
            },
            Timestamp::from_unix_ms(self.ms).ok_or("time")?,
            body,
        );
        e.parents = parents;
        Ok(e.sign(&self.key)?)
    }

    /// Apply `event` (with `opened`), then record every result the book owes.
    fn apply(&mut self, event: &SignedEvent, opened: Option<&Map<String, Value>>) -> Result<()> {
        let _ = self.book.apply(self.index, event, opened);
        self.index += 1;
        loop {
            let now = Timestamp::from_unix_ms(self.ms).ok_or("time")?;
            let Some(owed) = self.book.owed(now).into_iter().next() else {
                return Ok(());
            };
            let recorded = match owed {
                Owed::Evaluate {
                    request,
                    subject_leaf,
                    evaluation,
                    ..
                } => self.event(
                    POLICY_EVALUATED,
                    "policy",
                    request,
                    vec![subject_leaf],
                    Value::Object(evaluation.clear_body(&subject_leaf)),
                )?,
                Owed::Decide {
                    request,
                    kind,
                    evaluation_leaf,
                    decision,
                    ..
                } => self.event(
                    kind,
                    "policy",
                    request,
                    decision.parents(&evaluation_leaf),
                    Value::Object(decision.body(&evaluation_leaf)),
                )?,
            };
            let _ = self.book.apply(self.index, &recorded, None);
            self.index += 1;
        }
    }

    fn action(&self, kind: &str, path: &str) -> Value {
        json!({"action": {"user": self.user, "kind": kind, "path": path}, "signature": {}, "clear": {}})
    }

    fn transfer(&mut self, i: usize) -> Result<(SignedEvent, Map<String, Value>)> {
        let path = format!("/v1/wallets/{}/transfers", self.wallet);
        let body = self.action(TRANSFER_REQUESTED, &path);
        let event = self.event(
            TRANSFER_REQUESTED,
            "edge",
            RequestId::new_v7(),
            vec![],
            body,
        )?;
        let Value::Object(params) = transfer_params(i) else {
            return Err("params".into());
        };
        Ok((event, params))
    }
}

fn transfer_params(i: usize) -> Value {
    json!({
        "kind": "Native",
        "to": format!("0x{:040x}", 0xaa + (i % 8)),
        "amount": (1_000_000 + i).to_string(),
        "chain_id": "1",
        "nonce": i.to_string(),
        "max_fee_per_gas": "30000000000",
        "max_priority_fee_per_gas": "1000000000",
        "gas_limit": "21000"
    })
}

/// `n` policies of every rule kind, none of which triggers a block or an approval on the
/// bench's transfers, so each is evaluated in full and every transfer is allowed.
fn policies(n: usize) -> Vec<Value> {
    let allowed: Vec<String> = (0..8).map(|i| format!("0x{:040x}", 0xaa + i)).collect();
    (0..n)
        .map(|i| {
            let rule = match i % 5 {
                0 => json!({"kind": "amount_limit", "asset": "native", "max": "1000000000000000000000"}),
                1 => json!({"kind": "recipient_allowlist", "allowed": allowed}),
                2 => json!({"kind": "amount_velocity", "asset": "native", "window_s": 86_400, "max": "1000000000000000000000"}),
                3 => json!({"kind": "count_velocity", "window_s": 86_400, "max": 1_000_000}),
                _ => json!({"kind": "always"}),
            };
            let action = if i % 5 == 4 {
                json!({"kind": "none"})
            } else {
                json!({"kind": "block"})
            };
            json!({"policy": {"id": format!("p{i}"), "activity": "transfers", "rule": rule, "action": action}})
        })
        .collect()
}

/// The pure evaluation's rate: a tenant with `past` transfers and `n` policies, then new
/// transfers applied one after another for `secs` (each is evaluated as it is applied).
fn evaluation_rate(past: usize, n: usize, secs: Duration) -> Result<(f64, usize, String)> {
    let mut s = Synthetic::new();
    let created = s.event(
        TENANT_CREATED,
        "edge",
        RequestId::new_v7(),
        vec![],
        json!({}),
    )?;
    s.apply(&created, None)?;
    let user = s.user.clone();
    let registered = s.event(
        USER_REGISTERED,
        "edge",
        RequestId::new_v7(),
        vec![],
        json!({"user": user}),
    )?;
    s.apply(&registered, None)?;
    for p in policies(n) {
        let body = s.action(POLICY_CHANGED, "/v1/policies");
        let e = s.event(POLICY_CHANGED, "edge", RequestId::new_v7(), vec![], body)?;
        let Value::Object(params) = p else {
            return Err("policy".into());
        };
        s.apply(&e, Some(&params))?;
    }
    let in_force = s
        .book
        .policies(&s.tenant)
        .map_or(0, std::collections::BTreeMap::len);
    if in_force != n {
        return Err(format!("{in_force} of {n} policies in force").into());
    }
    for i in 0..past {
        let (e, params) = s.transfer(i)?;
        s.apply(&e, Some(&params))?;
    }
    // Pre-build the measured transfers so only evaluation is timed.
    let mut ready = Vec::new();
    for i in 0..200_000 {
        ready.push(s.transfer(past + i)?);
    }
    let mut done = 0usize;
    let start = Instant::now();
    let mut outcome = String::new();
    for (e, params) in &ready {
        let _ = s.book.apply(s.index, e, Some(params));
        s.index += 1;
        done += 1;
        if done.is_multiple_of(64) && start.elapsed() >= secs {
            let subject = s.book.subject(&s.tenant, &e.event().request);
            outcome = subject
                .and_then(|x| x.evaluation.known())
                .map(|x| x.outcome.as_str().to_string())
                .unwrap_or_default();
            break;
        }
    }
    Ok((done as f64 / start.elapsed().as_secs_f64(), done, outcome))
}

fn ed25519_rate(secs: Duration) -> f64 {
    let key = SigningKey::generate(&mut rand_core::OsRng);
    let msg = [7u8; 200];
    let sig = ed25519_dalek::Signer::sign(&key, &msg);
    let vk = key.verifying_key();
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < secs {
        for _ in 0..64 {
            let _ = vk.verify_strict(&msg, &sig);
        }
        n += 64;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    crate::bench_actions::pct(sorted, p)
}

/// Follow the node's log (long polls and entries; this is a stopwatch, not a verifier) until
/// `stop` is set, handing `each` every new entry and the moment it was read. The benches'
/// watchers are this with what they note.
pub(crate) async fn follow_log<F: Future<Output = ()>>(
    node: &govern_client::Client,
    stop: &AtomicU64,
    mut each: impl FnMut(Value, Instant) -> F,
) -> Result<()> {
    let mut size = 0u64;
    while stop.load(Ordering::Relaxed) == 0 {
        let note = node
            .get_required(&format!("/checkpoint?after={size}&wait_ms=1000"))
            .await?;
        let text = String::from_utf8_lossy(&note);
        let new: u64 = text
            .lines()
            .nth(1)
            .and_then(|l| l.parse().ok())
            .ok_or("a checkpoint without a size")?;
        for i in size..new {
            let e: Value = node.get_json(&format!("/v1/entries/{i}")).await?;
            each(e, Instant::now()).await;
        }
        size = size.max(new);
    }
    Ok(())
}

/// Note when each request's `policy.evaluated` appears.
async fn watch(
    node: govern_client::Client,
    seen: Arc<Mutex<HashMap<String, Instant>>>,
    stop: Arc<AtomicU64>,
) -> Result<()> {
    follow_log(&node, &stop, |e, at| {
        let seen = Arc::clone(&seen);
        async move {
            if e["kind"] == POLICY_EVALUATED
                && let Some(r) = e["request"].as_str()
            {
                seen.lock().await.insert(r.to_string(), at);
            }
        }
    })
    .await
}

async fn latency(
    client: &Arc<Client>,
    account: &Arc<Account>,
    seen: &Arc<Mutex<HashMap<String, Instant>>>,
    count: usize,
    concurrency: usize,
) -> Result<()> {
    let next = Arc::new(AtomicU64::new(0));
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
                let r = submit(
                    &client,
                    &account,
                    TRANSFER_REQUESTED,
                    &path,
                    &transfer_params(i),
                )
                .await
                .map(|(request, _, sub)| (request, Instant::now(), sub))
                .map_err(|e| e.to_string());
                out.push(r);
            }
            out
        }));
    }
    let mut acked = Vec::new();
    let mut appends = Vec::new();
    for t in tasks {
        for r in t.await? {
            let (request, at, sub) = r?;
            acked.push((request, at));
            appends.push(sub);
        }
    }
    // Every evaluation must arrive.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut lat = Vec::new();
    loop {
        let seen = seen.lock().await;
        if acked.iter().all(|(r, _)| seen.contains_key(r)) {
            for (r, at) in &acked {
                lat.push(seen[r].saturating_duration_since(*at));
            }
            break;
        }
        drop(seen);
        if Instant::now() > deadline {
            return Err("some transfers were not evaluated within 60 s".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    lat.sort_unstable();
    appends.sort_unstable();
    println!(
        "  concurrency {concurrency:>2}: {count} transfers; transfer.requested acknowledged → policy.evaluated in the log: p50 {:.2} ms p99 {:.2} ms; the node's own append (submit) p50 {:.2} ms p99 {:.2} ms",
        pct(&lat, 0.5),
        pct(&lat, 0.99),
        pct(&appends, 0.5),
        pct(&appends, 0.99),
    );
    Ok(())
}

pub async fn policy(args: PolicyArgs) -> Result<()> {
    let secs = Duration::from_secs(args.seconds.max(1));
    println!("govern bench policy");
    let (rate, done, outcome) = tokio::task::spawn_blocking(move || {
        evaluation_rate(args.past, args.policies, secs).map_err(|e| e.to_string())
    })
    .await??;
    let ed = ed25519_rate(secs);
    println!(
        "pure evaluation, one core: {rate:.0} evaluations/s ({} past transfers in the wallet growing to {}, {} policies of every rule kind; outcome {outcome}); Ed25519 verify_strict {ed:.0}/s; ratio {:.3}",
        args.past,
        args.past + done,
        args.policies,
        rate / ed
    );
    if args.pure_only {
        return Ok(());
    }
    let node = crate::bench::start_node().await?;
    let worker = crate::run::spawn_policy_worker(&node.data_dir, &node.url).await?;
    let port = node.url.rsplit(':').next().unwrap_or_default().to_string();
    let client = Arc::new(Client {
        node: govern_client::Client::new(&node.url)?,
        origin: format!("http://localhost:{port}"),
    });
    let account = Arc::new(setup(&client, &node.data_dir).await?);
    let mut changes = Vec::new();
    for p in policies(args.policies) {
        changes.push(
            submit(&client, &account, POLICY_CHANGED, "/v1/policies", &p)
                .await?
                .0,
        );
    }
    // Every policy in force before the first measured transfer.
    let bearer = format!("Bearer {}", account.session);
    for id in &changes {
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            let r = client
                .node
                .request_json(
                    reqwest::Method::GET,
                    &format!("/v1/requests/{id}"),
                    &[("authorization", &bearer)],
                    None,
                )
                .await?;
            if r["status"] == "activated" {
                break;
            }
            if Instant::now() > until {
                return Err(format!("policy change {id} is {} after 60 s", r["status"]).into());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let seen = Arc::new(Mutex::new(HashMap::new()));
    let stop = Arc::new(AtomicU64::new(0));
    let watcher = tokio::spawn(watch(
        client.node.clone(),
        Arc::clone(&seen),
        Arc::clone(&stop),
    ));
    println!(
        "end to end, node {} and policy worker pid {} as separate processes, {} policies:",
        node.url,
        worker.id().unwrap_or_default(),
        args.policies
    );
    latency(&client, &account, &seen, args.serial, 1).await?;
    latency(&client, &account, &seen, args.concurrent, 32).await?;
    stop.store(1, Ordering::Relaxed);
    watcher.abort();
    Ok(())
}
