//! `govern bench append`: figures, not a test. Prints what it measured.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clap::Args;
use ed25519_dalek::{Signer as _, SigningKey};
use govern_api::DataDir;
use govern_core::event::{
    Event, Kind, Producer, RequestId, Role, SignedEvent, TenantId, Timestamp,
};
use govern_core::ids::{LeafHash, LeafIndex};
use govern_store::{LogReader, RocksStorage};
use rand::{Rng as _, SeedableRng as _};
use tokio::io::AsyncBufReadExt as _;

use crate::error::Result;
use govern_client::Client;

#[derive(Debug, Args)]
pub struct AppendArgs {
    /// Events to append.
    #[arg(long, default_value_t = 1_000_000)]
    pub entries: usize,
    /// Concurrent HTTP clients (keep-alive connections).
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
    /// Size of each event in bytes (approximately; the body is padded).
    #[arg(long, default_value_t = 1024)]
    pub event_bytes: usize,
    /// Use this running node instead of starting one (its data dir gives the producer key).
    #[arg(long)]
    pub url: Option<String>,
    /// With --url: the node's data dir, for its dev edge key and in-process proofs.
    #[arg(long, default_value = ".govern")]
    pub data_dir: PathBuf,
    /// Seconds to spend on each proof measurement.
    #[arg(long, default_value_t = 3)]
    pub proof_seconds: u64,
    /// Open-loop append rates (per second) at which to measure the time from an append's
    /// acknowledgement to its first quorum-cosigned checkpoint, on a node of its own with
    /// three witness processes and a 2-of-3 policy (`--witness-rates` with no value: skip).
    #[arg(long, value_delimiter = ',', num_args = 0.., default_value = "1000,20000")]
    pub witness_rates: Vec<u64>,
    /// Seconds of appends at each witness rate.
    #[arg(long, default_value_t = 5)]
    pub witness_seconds: u64,
    /// Only the witness measurement.
    #[arg(long)]
    pub witness_only: bool,
    /// Instead: the log on this PostgreSQL database (empty; `postgres://…` or a libpq
    /// connection string) beside the embedded RocksDB in one run: durable appends/s and
    /// p50/p99 at --clients, the failover time of two nodes over it, and inclusion proofs/s
    /// served by the node that does not sequence.
    #[arg(long, value_name = "URL")]
    pub storage: Option<String>,
    /// With --storage: appends per store per round.
    #[arg(long, default_value_t = 5_000)]
    pub storage_appends: usize,
    /// With --storage: rounds, alternating the stores.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// With --storage: how many times the sequencer is killed.
    #[arg(long, default_value_t = 3)]
    pub failovers: usize,
    /// With --storage: the nodes' sequencer lease, in milliseconds.
    #[arg(long, default_value_t = crate::cluster::LEASE_MS)]
    pub lease_ms: u64,
}

pub(crate) fn verify_strict_rate(key: &SigningKey, event_bytes: usize) -> f64 {
    let msg = vec![0x42u8; event_bytes];
    let sig = key.sign(&msg);
    let vk = key.verifying_key();
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_millis(1500) {
        for _ in 0..100 {
            let ok = vk.verify_strict(std::hint::black_box(&msg), &sig).is_ok();
            std::hint::black_box(ok);
        }
        n += 100;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

pub(crate) fn make_event(
    key: &SigningKey,
    attestation: LeafHash,
    pad: &str,
    i: usize,
) -> Result<SignedEvent> {
    let mut body = serde_json::Map::new();
    body.insert("n".into(), (i as u64).into());
    body.insert("pad".into(), pad.into());
    let producer = Producer::new(Role::new("edge")?, &key.verifying_key());
    let mut ev = Event::new(
        Kind::new("demo.hello")?,
        TenantId::SYSTEM,
        RequestId::new_v7(),
        producer,
        Timestamp::now(),
        body,
    );
    ev.attestation = Some(attestation);
    Ok(ev.sign(key)?)
}

pub(crate) fn presign(
    key: &SigningKey,
    attestation: LeafHash,
    count: usize,
    event_bytes: usize,
) -> Result<Vec<Vec<u8>>> {
    let probe = make_event(key, attestation, "", 0)?.bytes().len();
    let pad = "x".repeat(event_bytes.saturating_sub(probe + 8));
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let chunk = count.div_ceil(threads).max(1);
    let parts: Vec<Result<Vec<Vec<u8>>>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let pad = &pad;
                s.spawn(move || -> Result<Vec<Vec<u8>>> {
                    let lo = t * chunk;
                    let hi = ((t + 1) * chunk).min(count);
                    (lo..hi)
                        .map(|i| make_event(key, attestation, pad, i).map(SignedEvent::into_bytes))
                        .collect()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("signing thread panicked".into()))
            })
            .collect()
    });
    let mut out = Vec::with_capacity(count);
    for p in parts {
        out.extend(p?);
    }
    Ok(out)
}

fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// CPU seconds (user + system) the process has used, from /proc.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

pub(crate) fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[i.min(sorted.len() - 1)]) / 1000.0
}

/// The time skew the bench's own node allows (one hour).
const BENCH_TIME_SKEW_MS: i64 = 3_600_000;

pub(crate) struct Child {
    proc: tokio::process::Child,
    pub(crate) url: String,
    pid: u32,
    _dir: tempfile::TempDir,
    pub(crate) data_dir: PathBuf,
}

pub(crate) async fn start_node() -> Result<Child> {
    let dir = tempfile::tempdir()?;
    let data_dir = dir.path().join("data");
    DataDir::open(&data_dir, None)?;
    spawn_node(dir, data_dir, &[]).await
}

/// Read the stdout of the `govern node` process `proc` until it says where it listens,
/// within `within`; that URL. Its stdout is drained from then on, so it never blocks.
pub(crate) async fn listening(
    proc: &mut tokio::process::Child,
    within: Duration,
) -> Result<String> {
    let stdout = proc.stdout.take().ok_or("no stdout")?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let url = loop {
        let line = tokio::time::timeout(within, lines.next_line())
            .await
            .map_err(|_| format!("node did not start in {} s", within.as_secs()))??
            .ok_or("node exited before listening")?;
        if let Some(rest) = line.strip_prefix("govern node listening on ") {
            break rest
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_string();
        }
    };
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(url)
}

/// Start `govern node` on `data_dir` (inside `dir`, which lives as long as the child) with
/// `extra` flags.
pub(crate) async fn spawn_node(
    dir: tempfile::TempDir,
    data_dir: PathBuf,
    extra: &[String],
) -> Result<Child> {
    let exe = std::env::current_exe()?;
    let mut proc = tokio::process::Command::new(exe)
        .args(["node", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data_dir)
        .args(extra)
        // Events are all signed before timing starts, so the last of a million is minutes
        // old when it is sent: the bench's own node allows for that.
        .args(["--time-skew-ms", &BENCH_TIME_SKEW_MS.to_string()])
        .env("GOVERN_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let pid = proc.id().ok_or("node exited at once")?;
    let url = listening(&mut proc, Duration::from_secs(30)).await?;
    Ok(Child {
        proc,
        url,
        pid,
        _dir: dir,
        data_dir,
    })
}

/// Inclusion proofs for random indices at the latest size, from `threads` threads at once
/// for `secs`, through the store's own reads (node cache, then RocksDB).
fn proofs_in_process(
    reader: &LogReader<RocksStorage>,
    threads: usize,
    secs: Duration,
) -> Result<f64> {
    let size = reader.latest().size;
    let start = Instant::now();
    let counts: Vec<Result<u64>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| -> Result<u64> {
                    let mut rng = rand::thread_rng();
                    let mut n = 0u64;
                    while start.elapsed() < secs {
                        for _ in 0..100 {
                            let i = rng.gen_range(0..size.0.max(1));
                            std::hint::black_box(reader.inclusion_proof(LeafIndex(i), size)?);
                        }
                        n += 100;
                    }
                    Ok(n)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("proof thread panicked".into()))
            })
            .collect()
    });
    let mut total = 0;
    for c in counts {
        total += c?;
    }
    Ok(total as f64 / start.elapsed().as_secs_f64())
}

/// Append every event of `events` through `clients` concurrent keep-alive clients, each
/// taking the next unsent one; a pushback (503) is retried after 50 ms. Counts each done
/// append in `done`, each pushback in `pushbacks`; returns every acknowledgement latency in
/// microseconds, unsorted.
pub(crate) async fn append_events(
    client: &Client,
    events: &Arc<Vec<Vec<u8>>>,
    clients: usize,
    done: &Arc<AtomicU64>,
    pushbacks: &Arc<AtomicU64>,
) -> Result<Vec<u32>> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (client, events, next, done, pushbacks) = (
            client.clone(),
            Arc::clone(events),
            Arc::clone(&next),
            Arc::clone(done),
            Arc::clone(pushbacks),
        );
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(ev) = events.get(i) else { break };
                loop {
                    let t = Instant::now();
                    match client.append(ev).await {
                        Ok(_) => {
                            lat.push(u32::try_from(t.elapsed().as_micros()).unwrap_or(u32::MAX));
                            break;
                        }
                        Err(e) if e.status() == Some(503) => {
                            pushbacks.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        Err(e) => return Err(e.to_string()),
                    }
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
            Ok(lat)
        }));
    }
    let mut lat = Vec::with_capacity(events.len());
    for t in tasks {
        lat.extend(t.await?.map_err(|e| format!("append failed: {e}"))?);
    }
    Ok(lat)
}

/// `govern bench append`.
pub async fn append(args: AppendArgs) -> Result<()> {
    if let Some(postgres) = args.storage.clone() {
        return crate::bench_storage::storage_bench(crate::bench_storage::StorageArgs {
            postgres,
            appends: args.storage_appends,
            clients: args.clients,
            rounds: args.rounds,
            failovers: args.failovers,
            lease_ms: args.lease_ms,
            proof_seconds: args.proof_seconds,
        })
        .await;
    }
    if !args.witness_only {
        append_throughput(&args).await?;
    }
    for &rate in &args.witness_rates {
        crate::bench_witness::latency(rate, args.witness_seconds, args.event_bytes).await?;
    }
    Ok(())
}

async fn append_throughput(args: &AppendArgs) -> Result<()> {
    println!(
        "govern bench append: {} events of ~{} bytes, {} clients",
        args.entries, args.event_bytes, args.clients
    );
    let mut child = None;
    let (url, data_dir, pid) = match &args.url {
        Some(u) => (u.clone(), args.data_dir.clone(), None),
        None => {
            let c = start_node().await?;
            let v = (c.url.clone(), c.data_dir.clone(), Some(c.pid));
            child = Some(c);
            v
        }
    };
    let client = Client::new(&url)?;
    // The node's edge identity (the data dir's edge key): its events name its attestation.
    let key = DataDir::open(&data_dir, None)?.edge_key()?;
    let attestation = client.current_attestation("edge").await?;
    let verify_rate = tokio::task::spawn_blocking({
        let key = key.clone();
        let n = args.event_bytes;
        move || verify_strict_rate(&key, n)
    })
    .await?;
    println!("single-core Ed25519 verify_strict: {verify_rate:.0} /s");
    let t = Instant::now();
    let events = Arc::new(
        tokio::task::spawn_blocking({
            let key = key.clone();
            let (n, b) = (args.entries, args.event_bytes);
            move || presign(&key, attestation, n, b)
        })
        .await??,
    );
    let size_each = events.first().map_or(0, Vec::len);
    println!(
        "signed {} events of {size_each} bytes in {:.1} s (before timing)",
        events.len(),
        t.elapsed().as_secs_f64()
    );

    let base_size = client.log_info().await?.size;
    let done = Arc::new(AtomicU64::new(0));
    let pushbacks = Arc::new(AtomicU64::new(0));
    let rss_at_100k = Arc::new(parking_rss::Slot::default());
    let monitor = pid.map(|pid| {
        let done = Arc::clone(&done);
        let slot = Arc::clone(&rss_at_100k);
        tokio::spawn(async move {
            while done.load(Ordering::Relaxed) < 100_000 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            slot.set(rss_mib(pid));
        })
    });
    let node_cpu_before = pid.and_then(cpu_seconds);
    let self_cpu_before = cpu_seconds(std::process::id());
    let start = Instant::now();
    let mut lat = append_events(&client, &events, args.clients, &done, &pushbacks).await?;
    let elapsed = start.elapsed().as_secs_f64();
    let rss_end = pid.and_then(rss_mib);
    let node_cpu = pid
        .and_then(cpu_seconds)
        .zip(node_cpu_before)
        .map(|(a, b)| a - b);
    let self_cpu = cpu_seconds(std::process::id())
        .zip(self_cpu_before)
        .map(|(a, b)| a - b);
    if let Some(m) = monitor {
        m.abort();
    }
    lat.sort_unstable();
    let rate = lat.len() as f64 / elapsed;
    println!();
    println!(
        "durable appends:        {rate:.0} /s ({} in {elapsed:.2} s, {} pushbacks)",
        lat.len(),
        pushbacks.load(Ordering::Relaxed)
    );
    println!(
        "ack latency:            p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        percentile(&lat, 1.0)
    );
    println!("append / verify_strict: {:.2}", rate / verify_rate);
    if let (Some(n), Some(c)) = (node_cpu, self_cpu) {
        let per = |cpu: f64| cpu / lat.len().max(1) as f64 * 1e6;
        println!(
            "CPU per append:         node {:.0} µs, load generator {:.0} µs ({:.2} and {:.2} cores busy)",
            per(n),
            per(c),
            n / elapsed,
            c / elapsed
        );
    }
    match (rss_at_100k.get(), rss_end) {
        (Some(a), Some(b)) => println!(
            "node RSS:               {a:.1} MiB at 100k entries, {b:.1} MiB at {} entries (growth {:.1} MiB)",
            base_size + args.entries as u64,
            b - a
        ),
        (None, Some(b)) => println!(
            "node RSS:               {b:.1} MiB at {} entries",
            base_size + args.entries as u64
        ),
        _ => println!("node RSS:               not measured (--url)"),
    }

    let size = client.log_info().await?.size;
    let secs = Duration::from_secs(args.proof_seconds);
    // In-process: the store opened read-only beside the node, one thread.
    match RocksStorage::open_read_only(&data_dir.join("db"))
        .map_err(|e| e.to_string())
        .and_then(|s| LogReader::open(s).map_err(|e| e.to_string()))
    {
        Ok(reader) => {
            let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
            for t in [1, threads] {
                let reader = reader.clone();
                let rate = tokio::task::spawn_blocking(move || proofs_in_process(&reader, t, secs))
                    .await??;
                println!(
                    "inclusion proofs:       {rate:.0} /s in-process, {t} thread(s), random index at size {size}"
                );
            }
        }
        Err(e) => println!("inclusion proofs:       in-process not measured: {e}"),
    }
    let served = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.clients {
        let (client, served) = (client.clone(), Arc::clone(&served));
        tasks.push(tokio::spawn(async move {
            let mut rng = rand::rngs::StdRng::from_entropy();
            while start.elapsed() < secs {
                let i = rand::Rng::gen_range(&mut rng, 0..size.max(1));
                client
                    .get_required(&format!("/v1/proofs/inclusion?index={i}&size={size}"))
                    .await?;
                served.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<_, govern_client::ClientError>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    println!(
        "inclusion proofs:       {:.0} /s over HTTP ({} clients)",
        served.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64(),
        args.clients
    );
    if let Some(mut c) = child {
        let _ = c.proc.kill().await;
    }
    Ok(())
}

mod parking_rss {
    use std::sync::Mutex;

    /// A value set once by the monitor task.
    #[derive(Debug, Default)]
    pub struct Slot(Mutex<Option<f64>>);

    impl Slot {
        pub fn set(&self, v: Option<f64>) {
            if let Ok(mut g) = self.0.lock() {
                *g = v;
            }
        }
        pub fn get(&self) -> Option<f64> {
            self.0.lock().ok().and_then(|g| *g)
        }
    }
}
