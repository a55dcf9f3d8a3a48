//! `govern bench e2e`: the signers end to end, in one run on this machine. A node, the
//! policy worker and the five signers as separate processes (the signers' aux info from the
//! test-only fixture: preparing real aux info takes minutes and is not what is measured):
//!
//! - key generation: a wallet request submitted → its `wallet.created` in the log;
//! - a transfer submitted → its `transfer.signed` in the log, p50 and p99, at concurrency 1
//!   and 10, first with no presignatures (every signing is the whole protocol), then with the
//!   signers restarted keeping a pool (at concurrency 1 the pool is refilled before each
//!   transfer);
//! - beside them, the same cggmp24 protocols with every party in this process on one thread.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Args;
use govern_core::kinds::{
    MPC_JOIN, MPC_MESSAGE, TRANSFER_QUARANTINED, TRANSFER_SIGNED, WALLET_CREATED,
};
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::bench_actions::{Account, Client, pct, setup, submit};
use crate::error::Result;
use crate::run::{WorkerProcess, WorkerSpec, spawn_policy_worker, spawn_worker};

#[derive(Debug, Args)]
pub struct E2eArgs {
    /// Transfers at concurrency 1 (each phase).
    #[arg(long, default_value_t = 10)]
    pub serial: usize,
    /// Transfers at concurrency 10 (each phase, in all).
    #[arg(long, default_value_t = 20)]
    pub concurrent: usize,
    /// Wallets made (key generation timed for each).
    #[arg(long, default_value_t = 3)]
    pub wallets: usize,
    /// Presignatures per wallet and committee in the pool phase.
    #[arg(long, default_value_t = 2)]
    pub presignatures: u16,
    /// The signers' aux info (TEST-ONLY fixture; default: the repository's).
    #[arg(long)]
    pub aux_info: Option<std::path::PathBuf>,
}

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/enclave-workers/tests/fixtures/aux-info.test-only.json"
);

/// When each request's result was seen in the log, and the protocol traffic so far.
#[derive(Default)]
struct Seen {
    results: HashMap<String, (Instant, String)>,
    /// Presignature runs' joins by session, and when the last protocol message landed.
    presign_joins: HashMap<String, usize>,
    last_message: Option<Instant>,
}

/// Note each request's result, each presignature run's joins, and the last protocol message.
async fn watch(
    node: govern_client::Client,
    seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicU64>,
) -> Result<()> {
    crate::bench_policy::follow_log(&node, &stop, |e, at| {
        let seen = Arc::clone(&seen);
        async move {
            let kind = e["kind"].as_str().unwrap_or_default();
            let mut s = seen.lock().await;
            match kind {
                WALLET_CREATED | TRANSFER_SIGNED | TRANSFER_QUARANTINED => {
                    if let Some(r) = e["request"].as_str() {
                        s.results
                            .entry(r.to_string())
                            .or_insert((at, kind.to_string()));
                    }
                }
                MPC_JOIN if e["body"]["purpose"] == "presign" => {
                    if let Some(session) = e["body"]["session"].as_str() {
                        *s.presign_joins.entry(session.to_string()).or_default() += 1;
                    }
                }
                MPC_MESSAGE => s.last_message = Some(at),
                _ => {}
            }
        }
    })
    .await
}

/// Wait until `request` has a result in the log; its time and kind.
async fn result_of(
    seen: &Arc<Mutex<Seen>>,
    request: &str,
    wait: Duration,
) -> Result<(Instant, String)> {
    let deadline = Instant::now() + wait;
    loop {
        if let Some(r) = seen.lock().await.results.get(request) {
            return Ok(r.clone());
        }
        if Instant::now() > deadline {
            return Err(
                format!("request {request} has no result after {} s", wait.as_secs()).into(),
            );
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Wait until at least `runs` presignature runs have their three joins, none has fewer, and
/// no protocol message landed for a second.
async fn pool_warm(seen: &Arc<Mutex<Seen>>, runs: usize) -> Result<Duration> {
    let started = Instant::now();
    loop {
        {
            let s = seen.lock().await;
            let whole = s.presign_joins.values().filter(|n| **n == 3).count();
            let open = s.presign_joins.values().any(|n| *n < 3);
            let quiet = s
                .last_message
                .is_none_or(|t| t.elapsed() > Duration::from_secs(1));
            if whole >= runs && !open && quiet {
                return Ok(started.elapsed());
            }
        }
        if started.elapsed() > Duration::from_secs(600) {
            return Err("the presignature pool did not fill in 10 minutes".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn transfer(i: usize) -> Value {
    crate::bench_actions::transfer_to("0x00000000000000000000000000000000000000bb", i)
}

async fn signers(
    data_dir: &std::path::Path,
    url: &str,
    aux: &std::path::Path,
    presignatures: u16,
) -> Result<Vec<WorkerProcess>> {
    let mut out = Vec::new();
    for i in 1..=5u16 {
        let spec = WorkerSpec {
            role: govern_workers::signer::role(i),
            args: vec![
                "signer".into(),
                "--index".into(),
                i.to_string().into(),
                "--test-aux-info".into(),
                aux.into(),
                "--presignatures".into(),
                presignatures.to_string().into(),
            ],
        };
        out.push(spawn_worker(data_dir, url, &spec).await?);
    }
    Ok(out)
}

/// Transfers at `concurrency`, `count` in all, from `first` on: the latencies (submission →
/// `transfer.signed` in the log), and how many were signed in one round.
async fn latency(
    client: &Arc<Client>,
    account: &Arc<Account>,
    seen: &Arc<Mutex<Seen>>,
    first: usize,
    count: usize,
    concurrency: usize,
    refill: Option<usize>,
) -> Result<Vec<Duration>> {
    let next = Arc::new(AtomicU64::new(first as u64));
    let end = (first + count) as u64;
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, account, next, seen) = (
            Arc::clone(client),
            Arc::clone(account),
            Arc::clone(&next),
            Arc::clone(seen),
        );
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            let path = format!("/v1/wallets/{}/transfers", account.wallet);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= end {
                    break;
                }
                if let Some(runs) = refill {
                    pool_warm(&seen, runs).await?;
                }
                let started = Instant::now();
                let (request, _, _) = submit(
                    &client,
                    &account,
                    govern_core::kinds::TRANSFER_REQUESTED,
                    &path,
                    &transfer(i as usize),
                )
                .await?;
                let (at, kind) = result_of(&seen, &request, Duration::from_secs(300)).await?;
                if kind != TRANSFER_SIGNED {
                    return Err(format!("transfer {request}: {kind}").into());
                }
                out.push(at.saturating_duration_since(started));
            }
            Result::Ok(out)
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await??);
    }
    lat.sort_unstable();
    Ok(lat)
}

fn line(label: &str, lat: &[Duration]) {
    println!(
        "  {label}: {} transfers, submitted → transfer.signed in the log: p50 {:.0} ms, p99 {:.0} ms",
        lat.len(),
        pct(lat, 0.5),
        pct(lat, 0.99)
    );
}

pub async fn e2e(args: E2eArgs) -> Result<()> {
    println!("govern bench e2e");
    let aux_path = args.aux_info.clone().unwrap_or_else(|| FIXTURE.into());
    let fixture: Value = serde_json::from_slice(
        &std::fs::read(&aux_path).map_err(|e| format!("{}: {e}", aux_path.display()))?,
    )?;
    let aux: Vec<govern_workers::signer::SignerAux> =
        serde_json::from_value(fixture["aux"].clone())?;
    let inproc = tokio::task::spawn_blocking(move || {
        govern_workers::signer::inproc::timings(aux, b"govern bench e2e")
    })
    .await??;
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "in-process cggmp24 (backend-rug), every party on one thread: keygen 3-of-5 {:.0} ms; presignature, 3 parties {:.0} ms; partial signatures + combine {:.2} ms; full signing, 3 parties {:.0} ms",
        ms(inproc.keygen),
        ms(inproc.presign),
        ms(inproc.partials),
        ms(inproc.sign)
    );

    let node = crate::bench::start_node().await?;
    let _policy = spawn_policy_worker(&node.data_dir, &node.url).await?;
    let mut signer_procs = signers(&node.data_dir, &node.url, &aux_path, 0).await?;
    let port = node.url.rsplit(':').next().unwrap_or_default().to_string();
    let client = Arc::new(Client {
        node: govern_client::Client::new(&node.url)?,
        origin: format!("http://localhost:{port}"),
    });
    let seen = Arc::new(Mutex::new(Seen::default()));
    let stop = Arc::new(AtomicU64::new(0));
    let watcher = tokio::spawn(watch(
        client.node.clone(),
        Arc::clone(&seen),
        Arc::clone(&stop),
    ));
    // Every signer holds aux info before anything is timed.
    let until = Instant::now() + Duration::from_secs(60);
    while client.node.get_json::<Value>("/v1/services").await?["aux_ready"].is_null() {
        if Instant::now() > until {
            return Err("the signers did not get ready in 60 s".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "end to end: node {}, the policy worker and five signers, each a separate process:",
        node.url
    );

    // Key generation: the account's wallet, then more.
    let started = Instant::now();
    let account = setup(&client, &node.data_dir).await?;
    let (at, kind) = result_of(&seen, &account.wallet, Duration::from_secs(120)).await?;
    if kind != WALLET_CREATED {
        return Err(format!("wallet {}: {kind}", account.wallet).into());
    }
    let mut dkg = vec![at.saturating_duration_since(started)];
    for _ in 1..args.wallets {
        let started = Instant::now();
        let (wallet, _, _) = submit(
            &client,
            &account,
            "wallet.requested",
            "/v1/wallets",
            &json!({"name": "bench"}),
        )
        .await?;
        let (at, _) = result_of(&seen, &wallet, Duration::from_secs(120)).await?;
        dkg.push(at.saturating_duration_since(started));
    }
    dkg.sort_unstable();
    println!(
        "  key generation: {} wallets, wallet request submitted → wallet.created in the log: p50 {:.0} ms, max {:.0} ms (the first includes the tenant's setup)",
        dkg.len(),
        pct(&dkg, 0.5),
        pct(&dkg, 1.0)
    );
    let account = Arc::new(account);

    // No presignatures: every signing is the whole protocol.
    let c1 = latency(&client, &account, &seen, 0, args.serial, 1, None).await?;
    line("no pool, concurrency 1", &c1);
    let c10 = latency(
        &client,
        &account,
        &seen,
        args.serial,
        args.concurrent,
        10,
        None,
    )
    .await?;
    line("no pool, concurrency 10", &c10);
    println!(
        "  no pool, concurrency 1, p50 against the in-process full signing: {:.2}",
        pct(&c1, 0.5) / ms(inproc.sign)
    );

    // A pool: the signers started again with presignatures (their shares and aux info are
    // in their vaults; their pools start empty and fill over the log).
    for s in signer_procs.drain(..) {
        drop(s);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _signers = signers(&node.data_dir, &node.url, &aux_path, args.presignatures).await?;
    let wallets = args.wallets;
    let runs = 10 * usize::from(args.presignatures) * wallets;
    let filled = pool_warm(&seen, runs).await?;
    println!(
        "  pool: {runs} presignature runs ({} per committee, {wallets} wallets) filled in {:.0} s",
        args.presignatures,
        filled.as_secs_f64()
    );
    let base = args.serial + args.concurrent;
    let mut warm = Vec::new();
    for i in 0..args.serial {
        // Each signing takes a presignature; the pool is refilled before the next.
        let lat = latency(&client, &account, &seen, base + i, 1, 1, Some(runs)).await?;
        warm.extend(lat);
    }
    warm.sort_unstable();
    line("warm pool, concurrency 1", &warm);
    pool_warm(&seen, runs).await?;
    let c10w = latency(
        &client,
        &account,
        &seen,
        base + args.serial,
        args.concurrent,
        10,
        None,
    )
    .await?;
    line(
        "warm pool, concurrency 10 (the pool as it is; a committee without one signs the whole protocol)",
        &c10w,
    );
    stop.store(1, Ordering::Relaxed);
    watcher.abort();
    Ok(())
}
