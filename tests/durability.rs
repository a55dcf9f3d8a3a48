//! Crash durability of a real node: `govern node` runs as a child process while clients
//! append over HTTP, and is SIGKILLed at random moments (seeded: the seed is printed, and
//! `GOVERN_TEST_SEED=<n>` replays the same schedule) and restarted on the same data dir.
//! Every acknowledged append (HTTP 200 with a receipt) must afterwards be where its receipt
//! says, its inclusion proof must verify against its checkpoint, every receipt's checkpoint
//! must be a prefix of the final one, and `govern verify log` must accept the log.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use govern_api::DataDir;
use govern_api::routes::{ConsistencyProof, Receipt};
use govern_core::checkpoint::Checkpoint;
use govern_core::event::SignedEvent;
use govern_core::ids::{Hash, LeafHash, LeafIndex, RootHash, TreeSize};
use govern_core::merkle;
use govern_core::note::NoteVerifier;
use rand::{Rng, SeedableRng, rngs::StdRng};
use support::{Node, PATIENCE, start, verify_log};

/// SIGKILLs (each followed by a restart on the same data dir).
const KILLS: usize = 40;
/// Client tasks appending at once.
const CLIENTS: u64 = 4;
/// At most this many acknowledgements between two kills (the number is drawn per round).
const ACKS_BETWEEN_KILLS_MAX: u64 = 40;

fn seed() -> u64 {
    let seed = std::env::var("GOVERN_TEST_SEED")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("seed {seed} (replay with GOVERN_TEST_SEED={seed})");
    seed
}

fn event(key: &SigningKey, attestation: LeafHash, client: u64, n: u64) -> SignedEvent {
    let mut body = serde_json::Map::new();
    body.insert("client".into(), client.into());
    body.insert("n".into(), n.into());
    support::edge_event(key, attestation, body)
}

struct Shared {
    /// The edge's current attestation (it re-attests on every start); written before `url`.
    attestation: RwLock<LeafHash>,
    url: RwLock<String>,
    stop: AtomicBool,
    acked: AtomicU64,
    /// Each receipt with the leaf hash the client computed for the event it sent.
    receipts: Mutex<Vec<(Receipt, LeafHash)>>,
    unexpected: Mutex<Vec<String>>,
}

/// Append until told to stop; a receipt counts only if the whole 200 answer arrived.
async fn client(c: u64, key: SigningKey, shared: Arc<Shared>) {
    let http = reqwest::Client::builder()
        .timeout(PATIENCE)
        .build()
        .unwrap();
    let mut n = 0;
    while !shared.stop.load(Ordering::SeqCst) {
        let url = shared.url.read().unwrap().clone();
        let attestation = *shared.attestation.read().unwrap();
        let ev = event(&key, attestation, c, n);
        n += 1;
        let sent = http
            .post(format!("{url}/v1/entries"))
            .header("content-type", "application/json")
            .body(ev.bytes().to_vec())
            .send()
            .await;
        let resp = match sent {
            Ok(r) => r,
            // Killed (or restarting): nothing acknowledged; try again shortly.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            }
        };
        let status = resp.status().as_u16();
        let Ok(body) = resp.bytes().await else {
            continue;
        };
        match status {
            200 => match serde_json::from_slice::<Receipt>(&body) {
                Ok(r) => {
                    shared.receipts.lock().unwrap().push((r, ev.leaf_hash()));
                    shared.acked.fetch_add(1, Ordering::SeqCst);
                }
                Err(e) => shared
                    .unexpected
                    .lock()
                    .unwrap()
                    .push(format!("bad receipt: {e}")),
            },
            503 => tokio::time::sleep(Duration::from_millis(20)).await,
            _ => shared
                .unexpected
                .lock()
                .unwrap()
                .push(format!("HTTP {status}: {}", String::from_utf8_lossy(&body))),
        }
    }
}

async fn wait_for_acks(shared: &Shared, target: u64, seed: u64, node: &Node) {
    let deadline = Instant::now() + PATIENCE;
    while shared.acked.load(Ordering::SeqCst) < target {
        assert!(
            Instant::now() < deadline,
            "seed {seed}: no progress ({} acknowledged, waiting for {target}); node stderr:\n{}",
            shared.acked.load(Ordering::SeqCst),
            node.stderr()
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

async fn get(http: &reqwest::Client, url: &str) -> (u16, Vec<u8>) {
    let resp = http
        .get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = resp.status().as_u16();
    (status, resp.bytes().await.unwrap().to_vec())
}

fn hashes(b64: &[String]) -> Vec<Hash> {
    b64.iter().map(|h| Hash::from_base64(h).unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_appends_survive_sigkill() {
    let started = Instant::now();
    let seed = seed();
    let mut rng = StdRng::seed_from_u64(seed);
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let state = tmp.path().join("verify-state.json");
    let mut starts = 0;
    let mut stderr_path = || {
        starts += 1;
        tmp.path().join(format!("node-{starts}.log"))
    };
    let mut node = start(&data, "127.0.0.1:0", &stderr_path())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // The node made the keys on its first start.
    let dir = DataDir::open(&data, None).unwrap();
    let key = dir.edge_key().unwrap();
    let verifier = NoteVerifier::parse(&dir.verifier_key()).unwrap();
    let origin = dir.origin().to_string();

    let shared = Arc::new(Shared {
        attestation: RwLock::new(support::edge_attestation(&node.url).await),
        url: RwLock::new(node.url.clone()),
        stop: AtomicBool::new(false),
        acked: AtomicU64::new(0),
        receipts: Mutex::new(Vec::new()),
        unexpected: Mutex::new(Vec::new()),
    });
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| tokio::spawn(client(c, key.clone(), Arc::clone(&shared))))
        .collect();

    for round in 0..KILLS {
        let target =
            shared.acked.load(Ordering::SeqCst) + rng.gen_range(0..=ACKS_BETWEEN_KILLS_MAX);
        wait_for_acks(&shared, target, seed, &node).await;
        // A random moment within a few batches: often while a batch is being written.
        tokio::time::sleep(Duration::from_micros(rng.gen_range(0..8_000))).await;
        node.kill().await;
        node = start(&data, "127.0.0.1:0", &stderr_path())
            .await
            .unwrap_or_else(|e| panic!("seed {seed}: restart after kill {round}: {e}"));
        *shared.attestation.write().unwrap() = support::edge_attestation(&node.url).await;
        *shared.url.write().unwrap() = node.url.clone();
        if round == KILLS / 2 {
            // Halfway: verify (remembering the checkpoint), so the final run also checks
            // consistency with a checkpoint seen before the later kills.
            let (ok, out, err) = verify_log(&node.url, &state).await;
            assert!(ok, "seed {seed}: verify log failed halfway:\n{out}\n{err}");
        }
    }
    let target = shared.acked.load(Ordering::SeqCst) + 10;
    wait_for_acks(&shared, target, seed, &node).await;
    shared.stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.await.unwrap();
    }
    let unexpected = shared.unexpected.lock().unwrap().clone();
    assert!(
        unexpected.is_empty(),
        "seed {seed}: unexpected answers: {unexpected:#?}"
    );
    let receipts = std::mem::take(&mut *shared.receipts.lock().unwrap());

    // The final state, from the restarted node.
    let http = reqwest::Client::builder()
        .timeout(PATIENCE)
        .build()
        .unwrap();
    let url = node.url.clone();
    let (status, note) = get(&http, &format!("{url}/checkpoint")).await;
    assert_eq!(status, 200);
    let (latest, _) =
        Checkpoint::open(&note, &origin, &verifier).expect("the final checkpoint verifies");
    assert!(
        latest.size.0 >= receipts.len() as u64,
        "seed {seed}: final size {} but {} appends were acknowledged",
        latest.size,
        receipts.len()
    );

    let mut indices = HashSet::new();
    let mut checkpoint_roots: BTreeMap<u64, RootHash> = BTreeMap::new();
    for (r, sent_leaf) in &receipts {
        let leaf = LeafHash(Hash::from_hex(&r.leaf_hash).unwrap());
        assert_eq!(
            leaf, *sent_leaf,
            "seed {seed}: receipt {} names another leaf than the one sent",
            r.index
        );
        assert!(
            indices.insert(r.index),
            "seed {seed}: index {} acknowledged twice",
            r.index
        );
        let (cp, _) = Checkpoint::open(r.checkpoint.as_bytes(), &origin, &verifier)
            .unwrap_or_else(|e| panic!("seed {seed}: receipt {}: checkpoint: {e}", r.index));
        assert_eq!(
            cp.size.0, r.inclusion.size,
            "seed {seed}: receipt {}: proof is for another size",
            r.index
        );
        merkle::verify_inclusion(
            &leaf,
            LeafIndex(r.index),
            cp.size,
            &hashes(&r.inclusion.hashes),
            &cp.root,
        )
        .unwrap_or_else(|e| panic!("seed {seed}: receipt {}: inclusion: {e}", r.index));
        if let Some(root) = checkpoint_roots.insert(cp.size.0, cp.root) {
            assert_eq!(
                root, cp.root,
                "seed {seed}: two checkpoints of size {} with different roots",
                cp.size
            );
        }
        let (status, bytes) = get(&http, &format!("{url}/v1/entries/{}", r.index)).await;
        assert_eq!(
            status, 200,
            "seed {seed}: acknowledged entry {} is not served",
            r.index
        );
        assert_eq!(
            merkle::hash_leaf(&bytes),
            leaf,
            "seed {seed}: index {} holds another entry than its receipt says",
            r.index
        );
    }
    // No fork across the kills: every checkpoint a client was given is a prefix of the last.
    for (&size, root) in &checkpoint_roots {
        let (status, body) = get(
            &http,
            &format!("{url}/v1/proofs/consistency?from={size}&to={}", latest.size),
        )
        .await;
        assert_eq!(status, 200, "consistency proof {size} -> {}", latest.size);
        let proof: ConsistencyProof = serde_json::from_slice(&body).unwrap();
        merkle::verify_consistency(
            TreeSize(size),
            latest.size,
            &hashes(&proof.hashes),
            root,
            &latest.root,
        )
        .unwrap_or_else(|e| {
            panic!(
                "seed {seed}: checkpoint {size} is not a prefix of {}: {e}",
                latest.size
            )
        });
    }

    let (ok, out, err) = verify_log(&url, &state).await;
    assert!(ok, "seed {seed}: verify log failed:\n{out}\n{err}");
    assert!(out.contains("verified"), "{out}");
    assert!(
        out.contains("consistent with the checkpoint of size"),
        "{out}"
    );
    node.kill().await;
    eprintln!(
        "seed {seed}: {KILLS} kills, {} acknowledged, final size {}, {} checkpoints in receipts, {:.1} s",
        receipts.len(),
        latest.size,
        checkpoint_roots.len(),
        started.elapsed().as_secs_f64()
    );
}
