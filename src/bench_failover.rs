//! `govern bench append --storage`, steps 2 and 3 (see [`crate::bench_storage`]): two
//! `govern node --storage` processes over one database, the sequencer killed under load,
//! the gap in acknowledgements measured; then inclusion proofs served by the standby.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use govern_api::DataDir;
use parking_lot::Mutex;

use crate::bench_storage::{StorageArgs, proofs_rate};
use crate::error::Result;

/// What steps 2 and 3 measured.
pub(crate) struct Failover {
    /// Inclusion proofs per second from the node that does not sequence.
    pub(crate) standby_proofs: f64,
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

struct Nodes {
    url: String,
    lease_ms: u64,
    dirs: [std::path::PathBuf; 2],
    addrs: [String; 2],
    children: [Option<tokio::process::Child>; 2],
    logs: std::path::PathBuf,
}

impl Nodes {
    async fn start(&mut self, i: usize) -> Result<()> {
        let exe = std::env::current_exe()?;
        let err = std::fs::File::create(self.logs.join(format!("node{i}.log")))?;
        let mut child = tokio::process::Command::new(exe)
            .args(["node", "--storage", &self.url, "--listen", &self.addrs[i]])
            .args(["--lease-ms", &self.lease_ms.to_string(), "--data-dir"])
            .arg(&self.dirs[i])
            .env("GOVERN_LOG", "warn")
            .stdout(std::process::Stdio::piped())
            .stderr(err)
            .kill_on_drop(true)
            .spawn()?;
        crate::bench::listening(&mut child, Duration::from_secs(60))
            .await
            .map_err(|e| {
                format!(
                    "node {i}: {e}; see {}",
                    self.logs.join(format!("node{i}.log")).display()
                )
            })?;
        self.children[i] = Some(child);
        Ok(())
    }

    /// The node that sequences now (its `/v1/services` answers 200).
    async fn sequencer(&self, http: &reqwest::Client) -> Result<usize> {
        for _ in 0..600 {
            for i in 0..2 {
                let r = http
                    .get(format!("http://{}/v1/services", self.addrs[i]))
                    .send()
                    .await;
                if self.children[i].is_some() && r.is_ok_and(|r| r.status().is_success()) {
                    return Ok(i);
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err("no node sequences".into())
    }
}

fn free_addr() -> Result<String> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .to_string())
}

/// Appenders that follow the sequencer, noting when each acknowledgement came.
fn load(
    addrs: [String; 2],
    key: ed25519_dalek::SigningKey,
    clients: usize,
    stop: Arc<AtomicBool>,
    acks: Arc<Mutex<Vec<Instant>>>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..clients.max(1))
        .map(|_| {
            let (addrs, key, stop, acks) = (addrs.clone(), key.clone(), stop.clone(), acks.clone());
            tokio::spawn(async move {
                let http = reqwest::Client::builder()
                    .timeout(Duration::from_secs(10))
                    .build()
                    .unwrap_or_default();
                let (Ok(first), Ok(second)) = (
                    govern_client::Client::new(&format!("http://{}", addrs[0])),
                    govern_client::Client::new(&format!("http://{}", addrs[1])),
                ) else {
                    return;
                };
                let nodes = [first, second];
                let (mut at, mut attestation, mut n) = (0usize, None, 0usize);
                while !stop.load(Ordering::Relaxed) {
                    let Some(att) = (match attestation {
                        Some(a) => Some(a),
                        None => nodes[at].current_attestation("edge").await.ok(),
                    }) else {
                        at = 1 - at;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    };
                    attestation = Some(att);
                    n += 1;
                    let Ok(e) = crate::bench::make_event(&key, att, "", n) else {
                        return;
                    };
                    let sent = http
                        .post(format!("http://{}/v1/entries", addrs[at]))
                        .header("content-type", "application/json")
                        .body(e.into_bytes())
                        .send()
                        .await;
                    match sent.map(|r| r.status().as_u16()) {
                        Ok(200) => acks.lock().push(Instant::now()),
                        Ok(403) => attestation = None,
                        _ => {
                            at = 1 - at;
                            attestation = None;
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    }
                }
            })
        })
        .collect()
}

pub(crate) async fn run(args: &StorageArgs, data: &Path) -> Result<Failover> {
    let tmp = tempfile::tempdir()?;
    let dirs = [tmp.path().join("a"), tmp.path().join("b")];
    for d in &dirs {
        copy_dir(data, d)?;
    }
    let mut nodes = Nodes {
        url: args.postgres.clone(),
        lease_ms: args.lease_ms,
        dirs,
        addrs: [free_addr()?, free_addr()?],
        children: [None, None],
        logs: tmp.path().to_path_buf(),
    };
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    nodes.start(0).await?;
    nodes.sequencer(&http).await?;
    nodes.start(1).await?;
    let key = DataDir::open(data, None)?.edge_key()?;
    let stop = Arc::new(AtomicBool::new(false));
    let acks = Arc::new(Mutex::new(Vec::new()));
    let clients = load(
        nodes.addrs.clone(),
        key,
        args.clients.min(16),
        Arc::clone(&stop),
        Arc::clone(&acks),
    );
    println!(
        "  failover: two govern node processes over the database, {} appenders over HTTP, lease {} ms; the sequencer SIGKILLed {} times",
        args.clients.min(16),
        args.lease_ms,
        args.failovers
    );
    let mut gaps = Vec::new();
    for k in 1..=args.failovers.max(1) {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let victim = nodes.sequencer(&http).await?;
        if let Some(mut child) = nodes.children[victim].take() {
            // Returns once the process is gone: an acknowledgement after this instant came
            // from the node that took over.
            child.kill().await?;
        }
        let killed = Instant::now();
        let first_after = tokio::time::timeout(Duration::from_secs(120), async {
            loop {
                if let Some(t) = acks.lock().iter().copied().find(|t| *t > killed) {
                    return t;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .map_err(|_| "no append was acknowledged within 120 s of the kill")?;
        let last_before = acks
            .lock()
            .iter()
            .copied()
            .filter(|t| *t <= killed)
            .max()
            .unwrap_or(killed);
        let gap = first_after - last_before;
        println!(
            "    failover {k}: {:.2} s from the last acknowledgement before the kill to the first after",
            gap.as_secs_f64()
        );
        gaps.push(gap);
        nodes.start(victim).await?;
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        let _ = c.await;
    }
    gaps.sort_unstable();
    println!(
        "  failover: median {:.2} s, max {:.2} s (lease {} ms: it expires, a standby polls every fifth of it, then boots as sequencer)",
        gaps[gaps.len() / 2].as_secs_f64(),
        gaps.last().map_or(0.0, Duration::as_secs_f64),
        args.lease_ms
    );
    let sequencer = nodes.sequencer(&http).await?;
    let standby = &nodes.addrs[1 - sequencer];
    // The standby catches up every 100 ms; read its size, then measure.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let info: serde_json::Value = http
        .get(format!("http://{standby}/v1/log"))
        .send()
        .await?
        .json()
        .await?;
    let size = info["size"].as_u64().ok_or("the standby names no size")?;
    let standby_proofs = proofs_rate(standby, size, args.clients, args.proof_seconds).await?;
    Ok(Failover { standby_proofs })
}
