//! `govern bench flood`: durable-append latency on a node with and without a flood of
//! unauthenticated reads (`GET /v1/state`, which canonicalizes the whole state, and
//! `POST /v1/auth/login/start`, which reads a tenant's users and credentials), in
//! alternating phases of one run, so the machine's drift touches both alike.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Args;
use govern_api::DataDir;

use crate::bench::{append_events, percentile, presign, start_node};
use crate::error::Result;
use govern_client::Client;

#[derive(Debug, Args)]
pub struct FloodArgs {
    /// Appends in each phase.
    #[arg(long, default_value_t = 20_000)]
    pub entries: usize,
    /// Concurrent appending clients.
    #[arg(long, default_value_t = 32)]
    pub clients: usize,
    /// Concurrent flooding clients of each of the two endpoints.
    #[arg(long, default_value_t = 16)]
    pub flooders: usize,
    /// Tenants created first, so the state has some size.
    #[arg(long, default_value_t = 300)]
    pub tenants: usize,
    /// Quiet/flooded phase pairs.
    #[arg(long, default_value_t = 2)]
    pub rounds: usize,
    /// Size of each appended event in bytes (approximately).
    #[arg(long, default_value_t = 1024)]
    pub event_bytes: usize,
    /// Use this running node instead of starting one (for example another build's, to
    /// compare; start it with a `--time-skew-ms` that covers the run).
    #[arg(long)]
    pub url: Option<String>,
    /// With --url: the node's data dir, for its dev edge key and operator token.
    #[arg(long, default_value = ".govern")]
    pub data_dir: std::path::PathBuf,
}

/// One phase's figures.
struct Phase {
    rate: f64,
    p50: f64,
    p99: f64,
    reads: u64,
    elapsed: f64,
}

/// `govern bench flood`.
pub async fn flood(args: FloodArgs) -> Result<()> {
    println!(
        "govern bench flood: {} rounds of {} appends (~{} bytes, {} clients), quiet then under \
         {} flooders each of GET /v1/state and POST /v1/auth/login/start, {} tenants",
        args.rounds, args.entries, args.event_bytes, args.clients, args.flooders, args.tenants
    );
    let (child, url, data_dir) = match &args.url {
        Some(url) => (
            None,
            Client::new(url)?.base().to_owned(),
            args.data_dir.clone(),
        ),
        None => {
            let child = start_node().await?;
            let (url, dir) = (child.url.clone(), child.data_dir.clone());
            (Some(child), url, dir)
        }
    };
    let dir = DataDir::open(&data_dir, None)?;
    let key = dir.edge_key()?;
    let token = dir.operator_token()?;
    let client = Client::new(&url)?;
    let bearer = format!("Bearer {token}");
    let mut tenants = Vec::with_capacity(args.tenants);
    for i in 0..args.tenants {
        let r = client
            .request_json(
                reqwest::Method::POST,
                "/v1/tenants",
                &[("authorization", &bearer)],
                Some(&serde_json::json!({"name": format!("tenant {i}"), "admin": "Ada"})),
            )
            .await?;
        tenants.push(
            r["tenant"]
                .as_str()
                .ok_or("POST /v1/tenants answered no tenant")?
                .to_string(),
        );
    }
    let http = reqwest::Client::new();
    let attestation = client.current_attestation("edge").await?;
    let total = args.entries * args.rounds * 2;
    let events = tokio::task::spawn_blocking({
        let (n, b) = (total, args.event_bytes);
        move || presign(&key, attestation, n, b)
    })
    .await??;
    let mut phases: Vec<(bool, Phase)> = Vec::new();
    let mut chunks = events.chunks(args.entries.max(1));
    for _ in 0..args.rounds {
        for flooded in [false, true] {
            let chunk = Arc::new(chunks.next().ok_or("too few events")?.to_vec());
            let phase = run_phase(&client, &http, &url, &tenants, chunk, &args, flooded).await?;
            phases.push((flooded, phase));
        }
    }
    println!();
    println!(
        "{:<8} {:>12} {:>10} {:>10} {:>16}",
        "phase", "appends/s", "p50 ms", "p99 ms", "flood reads/s"
    );
    for (flooded, p) in &phases {
        println!(
            "{:<8} {:>12.0} {:>10.2} {:>10.2} {:>16.0}",
            if *flooded { "flooded" } else { "quiet" },
            p.rate,
            p.p50,
            p.p99,
            p.reads as f64 / p.elapsed
        );
    }
    let mean = |flooded: bool, f: fn(&Phase) -> f64| {
        let v: Vec<f64> = phases
            .iter()
            .filter(|(x, _)| *x == flooded)
            .map(|(_, p)| f(p))
            .collect();
        v.iter().sum::<f64>() / v.len().max(1) as f64
    };
    println!(
        "flooded / quiet:        p99 {:.2}, p50 {:.2}, appends/s {:.2}",
        mean(true, |p| p.p99) / mean(false, |p| p.p99),
        mean(true, |p| p.p50) / mean(false, |p| p.p50),
        mean(true, |p| p.rate) / mean(false, |p| p.rate)
    );
    drop(child);
    Ok(())
}

/// A client sending `request()` until `stop`, counting each answer in `reads`.
fn flooder(
    stop: &Arc<AtomicBool>,
    reads: &Arc<AtomicU64>,
    request: impl Fn() -> Option<reqwest::RequestBuilder> + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    let (stop, reads) = (Arc::clone(stop), Arc::clone(reads));
    tokio::spawn(async move {
        while !stop.load(Ordering::Relaxed) {
            let Some(r) = request() else { return };
            if let Ok(r) = r.send().await {
                let _ = r.bytes().await;
                reads.fetch_add(1, Ordering::Relaxed);
            }
        }
    })
}

async fn run_phase(
    client: &Client,
    http: &reqwest::Client,
    url: &str,
    tenants: &[String],
    events: Arc<Vec<Vec<u8>>>,
    args: &FloodArgs,
    flooded: bool,
) -> Result<Phase> {
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));
    let mut flood = Vec::new();
    if flooded {
        for f in 0..args.flooders {
            let state = http.get(format!("{url}/v1/state"));
            flood.push(flooder(&stop, &reads, move || state.try_clone()));
            let tenant = tenants
                .get(f % tenants.len().max(1))
                .cloned()
                .unwrap_or_default();
            let login = http.post(format!("{url}/v1/auth/login/start"));
            flood.push(flooder(&stop, &reads, move || {
                let body = serde_json::json!({"tenant": tenant, "user": uuid::Uuid::now_v7()});
                login.try_clone().map(|r| r.json(&body))
            }));
        }
        // Let the flood reach its pace first.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let done = Arc::new(AtomicU64::new(0));
    let pushbacks = Arc::new(AtomicU64::new(0));
    let reads_before = reads.load(Ordering::Relaxed);
    let start = Instant::now();
    let mut lat = append_events(client, &events, args.clients, &done, &pushbacks).await?;
    let elapsed = start.elapsed().as_secs_f64();
    let reads_during = reads.load(Ordering::Relaxed) - reads_before;
    stop.store(true, Ordering::Relaxed);
    for f in flood {
        let _ = f.await;
    }
    lat.sort_unstable();
    Ok(Phase {
        rate: lat.len() as f64 / elapsed,
        p50: percentile(&lat, 0.5),
        p99: percentile(&lat, 0.99),
        reads: reads_during,
        elapsed,
    })
}
