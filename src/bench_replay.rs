//! `govern bench replay`: how fast `govern replay` re-verifies an export, beside the
//! strict Ed25519 verify rate of every core measured in the same run (every entry carries at
//! least one producer signature, so that rate bounds a replay), and the export's bytes per
//! event.
//!
//! The log: a node started for the bench, the seeded scenario (every event kind, passkey
//! and API-key actions, a shredded tenant, a quarantine), `--transfers` signed transfers
//! through the edge (each verified twice at replay: the edge's signature and the user's),
//! and then `--events` 1 KB `demo.hello` events appended by 64 clients.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use clap::Args;
use govern_api::DataDir;

use crate::error::Result;
use govern_client::Client;

#[derive(Debug, Args)]
pub struct ReplayBenchArgs {
    /// `demo.hello` events appended after the scenario.
    #[arg(long, default_value_t = 100_000)]
    pub events: usize,
    /// Signed transfers submitted through the edge (init, sign, token, submit).
    #[arg(long, default_value_t = 2_000)]
    pub transfers: usize,
    /// Keep the export here (made if absent; an existing one is replayed as it is, so runs
    /// can be repeated on one log).
    #[arg(long)]
    pub export: Option<std::path::PathBuf>,
}

fn dir_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir).map_or(0, |d| {
        d.filter_map(std::result::Result::ok)
            .map(|e| {
                let p = e.path();
                if p.is_dir() {
                    dir_bytes(&p)
                } else {
                    e.metadata().map_or(0, |m| m.len())
                }
            })
            .sum()
    })
}

pub async fn replay_bench(args: ReplayBenchArgs) -> Result<()> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("govern bench replay ({threads} cores)");
    let work = tempfile::tempdir()?;
    let export = args
        .export
        .clone()
        .unwrap_or_else(|| work.path().join("export"));
    if !export.exists() {
        make_export(&args, &export).await?;
    }
    let size = std::fs::read(export.join("v1/log"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v["size"].as_u64())
        .unwrap_or(0);
    let bytes = dir_bytes(&export);
    println!(
        "  export: {size} entries, {bytes} bytes = {:.0} bytes per entry",
        bytes as f64 / size.max(1) as f64
    );
    replay_export(&export, work.path(), threads).await
}

/// A node, the scenario, the transfers and the events, exported to `export`.
async fn make_export(args: &ReplayBenchArgs, export: &std::path::Path) -> Result<()> {
    let node = crate::bench::start_node().await?;
    let scenario = crate::scenario::ScenarioArgs {
        url: node.url.clone(),
        data_dir: node.data_dir.clone(),
        origin: None,
        seed: 1,
        tenants: 2,
        wallets: 2,
        transfers: 3,
        policies: false,
    };
    let made = crate::scenario::run_scenario(&scenario).await?;
    let t = Instant::now();
    if let Some((session, key, wallets)) = made.admin_key {
        govern_client::scenario::transfers(
            &Client::new(&node.url)?,
            session,
            key,
            wallets,
            args.transfers,
        )
        .await?;
    }
    println!(
        "  {} signed transfers through the edge in {:.1} s",
        args.transfers,
        t.elapsed().as_secs_f64()
    );
    let key = DataDir::open(&node.data_dir, None)?.edge_key()?;
    let client = Client::new(&node.url)?;
    let attestation = client.current_attestation("edge").await?;
    let events = Arc::new(
        tokio::task::spawn_blocking({
            let key = key.clone();
            let n = args.events;
            move || crate::bench::presign(&key, attestation, n, 1024)
        })
        .await??,
    );
    let t = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let (client, events, next) = (client.clone(), Arc::clone(&events), Arc::clone(&next));
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(ev) = events.get(i) else { break };
                loop {
                    match client.append(ev).await {
                        Ok(_) => break,
                        Err(e) if e.status() == Some(503) => {
                            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        }
                        Err(e) => return Err(e.to_string()),
                    }
                }
            }
            Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    println!(
        "  {} demo.hello events of ~1 KB appended in {:.1} s",
        args.events,
        t.elapsed().as_secs_f64()
    );
    crate::export::run(crate::export::ExportArgs {
        dir: export.to_path_buf(),
        url: None,
        data_dir: Some(node.data_dir.clone()),
    })
    .await?;
    drop(node);
    Ok(())
}

async fn replay_export(
    export: &std::path::Path,
    work: &std::path::Path,
    threads: usize,
) -> Result<()> {
    // The bound: strict Ed25519 verifications per second on every core at once, measured
    // just before and just after the replay (this machine's rate drifts; the mean of the
    // two is the bound of the replay between them).
    let bound_now = move || {
        tokio::task::spawn_blocking(move || {
            let key = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
            std::thread::scope(|s| {
                let hs: Vec<_> = (0..threads)
                    .map(|_| s.spawn(|| crate::bench::verify_strict_rate(&key, 1024)))
                    .collect();
                hs.into_iter().map(|h| h.join().unwrap_or(0.0)).sum::<f64>()
            })
        })
    };
    let before = bound_now().await?;
    let replay_args = crate::replay::ReplayArgs {
        dir: export.to_path_buf(),
        data_dir: work.join("fresh"),
        key: None,
        signers: None,
        dev_root: None,
        checkpoints: Vec::new(),
        json: false,
        storage: None,
        witnesses: None,
    };
    let outcome = tokio::task::spawn_blocking(move || crate::replay::replay(&replay_args, true))
        .await?
        .map_err(|e| e.to_string())?;
    let after = bound_now().await?;
    let bound = (before + after) / 2.0;
    let secs = outcome.elapsed.as_secs_f64();
    let rate = outcome.size as f64 / secs;
    println!(
        "  replay: {} entries in {} batches in {secs:.2} s = {rate:.0} entries/s (state root {})",
        outcome.size, outcome.batches, outcome.state_root
    );
    println!(
        "  strict Ed25519 verify, {threads} cores at once: {bound:.0}/s (before {before:.0}, after {after:.0}); replay is {:.0}% of that bound (target >= 50%)",
        100.0 * rate / bound
    );
    Ok(())
}
