//! `govern bench append`'s witness measurement: the time from an append's acknowledgement to
//! the first quorum-cosigned checkpoint that includes it, at a fixed (open-loop) rate, on a
//! node of its own with three witness processes and a 2-of-3 policy, as `govern up` runs.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use govern_api::DataDir;
use govern_core::checkpoint::Checkpoint;

use crate::bench::{percentile, presign, spawn_node};
use crate::error::Result;
use govern_client::Client;

/// Most appends in flight at once (the open loop's connection pool).
const IN_FLIGHT: usize = 256;

pub async fn latency(rate: u64, seconds: u64, event_bytes: usize) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data_dir = dir.path().join("data");
    let log_vkey = DataDir::open(&data_dir, None)?.verifier_key();
    let (witnesses, file) =
        crate::run::spawn_witnesses(dir.path(), "bench.localhost/w", 3, 2, &log_vkey).await?;
    let policy_path = dir.path().join("witnesses.toml");
    std::fs::write(&policy_path, toml::to_string(&file)?)?;
    let extra = ["--witnesses".to_string(), policy_path.display().to_string()];
    let node = spawn_node(dir, data_dir.clone(), &extra).await?;
    let client = Client::new(&node.url)?;
    let key = DataDir::open(&data_dir, None)?.edge_key()?;
    let attestation = client.current_attestation("edge").await?;
    let count = usize::try_from(rate * seconds)?;
    let events = Arc::new(
        tokio::task::spawn_blocking(move || presign(&key, attestation, count, event_bytes))
            .await??,
    );
    let base = client.log_info().await?.size;

    // The quorum-cosigned checkpoints as a client sees them: (when, size), polled.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let start = Instant::now();
    let poller = {
        let (client, stop) = (client.clone(), Arc::clone(&stop));
        tokio::spawn(async move {
            let mut seen: Vec<(u64, u64)> = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                if let Ok(note) = client.get_required("/checkpoint").await
                    && let Ok(text) = std::str::from_utf8(&note)
                    && let Some(body) = text.split("\n\n").next()
                    && let Ok(cp) = Checkpoint::parse_body(&format!("{body}\n"))
                    && seen.last().is_none_or(|&(_, s)| cp.size.0 > s)
                {
                    let at = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
                    seen.push((at, cp.size.0));
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            seen
        })
    };
    // Open loop: append i is due at start + i / rate, whatever happened to the ones before.
    let acks: Arc<Vec<AtomicU64>> = Arc::new((0..count).map(|_| AtomicU64::new(0)).collect());
    let next = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..IN_FLIGHT {
        let (client, events, acks, next, failed) = (
            client.clone(),
            Arc::clone(&events),
            Arc::clone(&acks),
            Arc::clone(&next),
            Arc::clone(&failed),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(ev) = events.get(i) else { break };
                let due = start + Duration::from_secs_f64(i as f64 / rate as f64);
                tokio::time::sleep_until(due.into()).await;
                match client.append(ev).await {
                    Ok(receipt) => {
                        let at = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
                        let slot = receipt.index.saturating_sub(base);
                        if let Some(a) = usize::try_from(slot).ok().and_then(|s| acks.get(s)) {
                            a.store(at.max(1), Ordering::Relaxed);
                        }
                    }
                    Err(_) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let sent_for = start.elapsed().as_secs_f64();
    // Let the witnesses catch up with the last append.
    let last = base + count as u64;
    let until = Instant::now() + Duration::from_secs(15);
    while Instant::now() < until {
        let note = client.get_required("/checkpoint").await?;
        let text = String::from_utf8_lossy(&note).into_owned();
        let body = text.split("\n\n").next().unwrap_or_default().to_owned() + "\n";
        if Checkpoint::parse_body(&body).is_ok_and(|cp| cp.size.0 >= last) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    stop.store(true, Ordering::Relaxed);
    let seen = poller.await?;
    // For each append: the first quorum checkpoint seen whose size covers its index.
    let mut lat: Vec<u32> = Vec::with_capacity(count);
    let mut unwitnessed = 0u64;
    for (slot, ack) in acks.iter().enumerate() {
        let ack = ack.load(Ordering::Relaxed);
        if ack == 0 {
            continue;
        }
        let index = base + slot as u64;
        let first = seen.partition_point(|&(_, size)| size <= index);
        match seen.get(first) {
            Some(&(at, _)) => lat.push(u32::try_from(at.saturating_sub(ack)).unwrap_or(u32::MAX)),
            None => unwitnessed += 1,
        }
    }
    lat.sort_unstable();
    println!();
    println!(
        "witnessed checkpoints at {rate} appends/s asked ({:.0}/s achieved, {} appends, {} failed), 3 witnesses, quorum 2:",
        count as f64 / sent_for,
        lat.len() as u64 + unwitnessed,
        failed.load(Ordering::Relaxed)
    );
    println!(
        "  ack -> first quorum-cosigned checkpoint: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} quorum checkpoints seen, {unwitnessed} appends never witnessed)",
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        percentile(&lat, 1.0),
        seen.len()
    );
    drop(node);
    drop(witnesses);
    Ok(())
}
