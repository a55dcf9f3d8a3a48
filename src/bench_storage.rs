//! `govern bench append --storage URL`: the log on PostgreSQL beside the embedded RocksDB,
//! in one run.
//!
//! 1. Durable appends per second and their latency (p50, p99) with `--clients` concurrent
//!    appenders, on each store, in alternating rounds so the machine's drift falls on both
//!    alike. Each store backs a node booted in this process (genesis, attestations), and
//!    each append is a signed event the node's full append policy checks; what differs is
//!    only where a batch is made durable.
//! 2. Two `govern node --storage` processes over the same database (the log of step 1
//!    continues): clients append over HTTP to whichever sequences, the sequencer is killed
//!    (SIGKILL), and the failover time is the gap between the last acknowledgement before
//!    the kill and the first after it; `--failovers` times, the killed node started again.
//! 3. Inclusion proofs per second served over HTTP by the node that does not sequence,
//!    beside the RocksDB node's in this process, both at `--clients` concurrent readers.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use govern_api::{Attestor, DataDir};
use govern_store::{LogConfig, NodeLog, RocksStorage, Storage};
use parking_lot::Mutex;

use crate::error::Result;

/// What `govern bench append --storage` runs with.
#[derive(Debug)]
pub struct StorageArgs {
    /// An empty PostgreSQL database the bench writes a log into (a libpq connection string
    /// or a `postgres://` URL).
    pub postgres: String,
    /// Appends per store per round.
    pub appends: usize,
    /// Concurrent appenders (and proof readers).
    pub clients: usize,
    /// Rounds, alternating the stores.
    pub rounds: usize,
    /// Sequencer kills.
    pub failovers: usize,
    /// The nodes' sequencer lease.
    pub lease_ms: u64,
    /// Seconds of each proof measurement.
    pub proof_seconds: u64,
}

struct Node {
    name: &'static str,
    log: Arc<dyn NodeLog>,
    key: ed25519_dalek::SigningKey,
    attestation: govern_core::ids::LeafHash,
    /// Its data dir.
    dir: tempfile::TempDir,
}

/// A fresh data dir with this executable's dev measurements pinned.
fn pinned_dir() -> Result<tempfile::TempDir> {
    let tmp = tempfile::tempdir()?;
    govern_api::devpin::pin_dev_manifest(tmp.path(), None, &std::env::current_exe()?)?;
    Ok(tmp)
}

/// A node on `storage` over the data dir `tmp` ([`pinned_dir`]).
async fn node<S: Storage>(name: &'static str, storage: S, tmp: tempfile::TempDir) -> Result<Node> {
    let exe = std::env::current_exe()?;
    let dir = DataDir::open(tmp.path(), None)?;
    let services = dir
        .boot_on(
            storage,
            LogConfig::new(dir.origin()),
            true,
            &Attestor::Simulated { executable: exe },
            Arc::new(govern_store::SystemClock),
        )
        .await?;
    let identity = &services.edge.identity;
    Ok(Node {
        name,
        log: services.log.clone(),
        key: identity.keys().signing_key().clone(),
        attestation: identity.current().ok_or("edge not attested")?,
        dir: tmp,
    })
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

/// `count` appends by `clients` appenders: (appends/s, sorted latencies).
async fn round(n: &Node, count: usize, clients: usize) -> Result<(f64, Vec<Duration>)> {
    let next = Arc::new(AtomicUsize::new(0));
    let times = Arc::new(Mutex::new(Vec::with_capacity(count)));
    let padding = "x".repeat(900);
    let start = Instant::now();
    let tasks: Vec<_> = (0..clients.max(1))
        .map(|_| {
            let (log, key, next, times, padding) = (
                Arc::clone(&n.log),
                n.key.clone(),
                Arc::clone(&next),
                Arc::clone(&times),
                padding.clone(),
            );
            let attestation = n.attestation;
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count {
                        break;
                    }
                    let e = crate::bench::make_event(&key, attestation, &padding, i)
                        .map_err(|e| e.to_string())?;
                    let t = Instant::now();
                    log.append(e).await.map_err(|e| e.to_string())?;
                    times.lock().push(t.elapsed());
                }
                Ok::<(), String>(())
            })
        })
        .collect();
    for t in tasks {
        t.await.map_err(|e| e.to_string())??;
    }
    let rate = count as f64 / start.elapsed().as_secs_f64();
    let mut times = std::mem::take(&mut *times.lock());
    times.sort_unstable();
    Ok((rate, times))
}

pub async fn storage_bench(args: StorageArgs) -> Result<()> {
    let url = args.postgres.clone();
    let pg = tokio::task::spawn_blocking(move || crate::cluster::open_empty(&url))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let rocks_dir = pinned_dir()?;
    let rocks_db = RocksStorage::open(&rocks_dir.path().join("db"))?;
    let nodes = [
        node("RocksDB", rocks_db, rocks_dir).await?,
        node("PostgreSQL", pg, pinned_dir()?).await?,
    ];
    println!(
        "govern bench append --storage: durable appends of ~1 KiB signed events, {} concurrent appenders, {} per store per round, rounds alternating",
        args.clients, args.appends
    );
    let mut all: Vec<(f64, Vec<Duration>)> = vec![(0.0, Vec::new()), (0.0, Vec::new())];
    for r in 1..=args.rounds.max(1) {
        let mut line = format!("  round {r}:");
        for (i, n) in nodes.iter().enumerate() {
            let (rate, times) = round(n, args.appends, args.clients).await?;
            line.push_str(&format!(
                " {} {rate:.0}/s (p50 {:.1} ms, p99 {:.1} ms);",
                n.name,
                pct(&times, 0.5),
                pct(&times, 0.99)
            ));
            all[i].0 += rate;
            all[i].1.extend(times);
        }
        println!("{line}");
    }
    let rounds = args.rounds.max(1) as f64;
    for (i, n) in nodes.iter().enumerate() {
        all[i].1.sort_unstable();
        println!(
            "  {}: mean {:.0} appends/s, p50 {:.1} ms, p99 {:.1} ms",
            n.name,
            all[i].0 / rounds,
            pct(&all[i].1, 0.5),
            pct(&all[i].1, 0.99)
        );
    }
    println!(
        "  PostgreSQL / RocksDB: {:.2} of the appends/s",
        (all[1].0 / rounds) / (all[0].0 / rounds)
    );
    let [rocks, postgres] = nodes;
    // The database's log passes to the node processes of step 2, on copies of this node's
    // data dir: this one stops writing.
    drop(postgres.log);
    let failover = crate::bench_failover::run(&args, postgres.dir.path()).await?;
    let rocks_node = govern_api::NodeHandle::spawn(
        govern_api::AppState::over(Arc::clone(&rocks.log), "bench"),
        tokio::net::TcpListener::bind("127.0.0.1:0").await?,
    )?;
    let rocks_rate = proofs_rate(
        &rocks_node.addr.to_string(),
        rocks.log.latest().size.0,
        args.clients,
        args.proof_seconds,
    )
    .await?;
    println!(
        "  inclusion proofs over HTTP, {} readers, {} s each: PostgreSQL standby node {:.0}/s, RocksDB node {rocks_rate:.0}/s ({:.2} of RocksDB's)",
        args.clients,
        args.proof_seconds,
        failover.standby_proofs,
        failover.standby_proofs / rocks_rate.max(1e-9)
    );
    rocks_node.shutdown().await;
    Ok(())
}

/// Inclusion proofs per second from the node at `addr` (host:port) over a log of `size`,
/// `clients` readers for `seconds`.
pub(crate) async fn proofs_rate(
    addr: &str,
    size: u64,
    clients: usize,
    seconds: u64,
) -> Result<f64> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(clients)
        .build()?;
    let done = Arc::new(AtomicUsize::new(0));
    let end = Instant::now() + Duration::from_secs(seconds.max(1));
    let start = Instant::now();
    let tasks: Vec<_> = (0..clients.max(1))
        .map(|c| {
            let (http, done) = (http.clone(), Arc::clone(&done));
            let base = format!("http://{addr}");
            tokio::spawn(async move {
                let mut i = c as u64;
                while Instant::now() < end {
                    let index = (i * 7919) % size.max(1);
                    let r = http
                        .get(format!(
                            "{base}/v1/proofs/inclusion?index={index}&size={size}"
                        ))
                        .send()
                        .await
                        .map_err(|e| e.to_string())?;
                    if !r.status().is_success() {
                        return Err(format!("inclusion proof {index}: {}", r.status()));
                    }
                    r.bytes().await.map_err(|e| e.to_string())?;
                    done.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
                Ok::<(), String>(())
            })
        })
        .collect();
    for t in tasks {
        t.await.map_err(|e| e.to_string())??;
    }
    Ok(done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64())
}
