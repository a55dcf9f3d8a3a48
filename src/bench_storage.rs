//! `govern bench storage --postgres URL`: durable appends per second and their latency
//! (p50, p99) with `--clients` concurrent appenders, on the embedded RocksDB store and on
//! PostgreSQL (govern-store-postgres), in the same run and in alternating rounds so the
//! machine's drift falls on both alike. Each store backs a node booted in this process
//! (genesis, attestations), and each append is a signed event the node's full append policy
//! checks; what differs is only where a batch is made durable.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clap::Args;
use govern_api::{Attestor, DataDir};
use govern_core::event::{Event, Kind, RequestId, TenantId, Timestamp};
use govern_store::{LogConfig, NodeLog, RocksStorage, Storage};
use govern_store_postgres::PgStorage;
use parking_lot::Mutex;
use serde_json::{Map, Value};

use crate::error::Result;

#[derive(Debug, Args)]
pub struct StorageArgs {
    /// An empty PostgreSQL database the bench writes a log into (a libpq connection string
    /// or a `postgres://` URL).
    #[arg(long)]
    pub postgres: String,
    /// Appends per store per round.
    #[arg(long, default_value_t = 5_000)]
    pub appends: usize,
    /// Concurrent appenders.
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
    /// Rounds, alternating the stores.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
}

struct Node {
    name: &'static str,
    log: Arc<dyn NodeLog>,
    key: ed25519_dalek::SigningKey,
    producer: govern_core::event::Producer,
    attestation: govern_core::ids::LeafHash,
    _dir: tempfile::TempDir,
}

async fn node<S: Storage>(name: &'static str, storage: S) -> Result<Node> {
    let tmp = tempfile::tempdir()?;
    let exe = std::env::current_exe()?;
    govern_api::devpin::pin_dev_manifest(tmp.path(), None, &exe)?;
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
        producer: identity.keys().producer(),
        attestation: identity.current().ok_or("edge not attested")?,
        _dir: tmp,
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
            let (log, key, producer, next, times, padding) = (
                Arc::clone(&n.log),
                n.key.clone(),
                n.producer.clone(),
                Arc::clone(&next),
                Arc::clone(&times),
                padding.clone(),
            );
            let attestation = n.attestation;
            tokio::spawn(async move {
                while next.fetch_add(1, Ordering::Relaxed) < count {
                    let mut body = Map::new();
                    body.insert("message".into(), Value::from(padding.as_str()));
                    let mut e = Event::new(
                        Kind::new("demo.hello").map_err(|e| e.to_string())?,
                        TenantId(uuid::Uuid::nil()),
                        RequestId::new_v7(),
                        producer.clone(),
                        Timestamp::now(),
                        body,
                    );
                    e.attestation = Some(attestation);
                    let e = e.sign(&key).map_err(|e| e.to_string())?;
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
    let pg = PgStorage::connect(&args.postgres)?;
    let dir = tempfile::tempdir()?;
    let nodes = [
        node("RocksDB", RocksStorage::open(&dir.path().join("db"))?).await?,
        node("PostgreSQL", pg).await?,
    ];
    println!(
        "govern bench storage: durable appends of ~1 KiB signed events, {} concurrent appenders, {} per store per round, rounds alternating",
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
    Ok(())
}
