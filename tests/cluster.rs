//! Several nodes over one PostgreSQL database (`govern node --storage`), as real processes
//! over a throwaway server of Debian's: the sequencer killed again and again under load, a
//! paused sequencer woken after another took over. docs/deployment.md says what they show.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use base64::Engine as _;
use govern_api::DataDir;
use govern_client::wire::{ConsistencyProof, Receipt};
use govern_core::ids::{Hash, LeafHash, RootHash, TreeSize};
use govern_replay_tests::postgres::TestPostgres;
use parking_lot::Mutex;
use support::{Node, PATIENCE, copy_dir, edge_attestation, event, start_with, verify_log};

/// The lease the tests' nodes hold: short, so each takeover is quick.
const LEASE_MS: &str = "1000";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port()
}

/// Two data dirs for two nodes of one log: the first node's, made by its first start, and a
/// copy (the same log key, edge key and key service master; the log itself is in the
/// database).
struct Cluster {
    url: String,
    dirs: [std::path::PathBuf; 2],
    ports: [u16; 2],
    nodes: [Option<Node>; 2],
    tmp: tempfile::TempDir,
    starts: usize,
}

impl Cluster {
    async fn start(pg: &TestPostgres) -> Self {
        Self::over(pg.database().unwrap()).await
    }

    /// Two nodes over the database at `url`.
    async fn over(url: String) -> Self {
        Self::over_with(url, |_| {}).await
    }

    /// [`Cluster::over`], with `prepare` run on the first node's data dir before it starts
    /// (the second's is a copy).
    async fn over_with(url: String, prepare: impl FnOnce(&std::path::Path)) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let dirs = [tmp.path().join("a"), tmp.path().join("b")];
        let mut c = Cluster {
            url,
            dirs,
            ports: [free_port(), free_port()],
            nodes: [None, None],
            tmp,
            starts: 0,
        };
        prepare(&c.dirs[0]);
        c.run(0).await;
        assert_eq!(c.sequencer().await, Some(0), "the first node sequences");
        copy_dir(&c.dirs[0], &c.dirs[1]);
        c.run(1).await;
        c
    }

    fn base(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.ports[i])
    }

    async fn run(&mut self, i: usize) {
        self.try_run(i).await.unwrap();
    }

    /// Start again, as a supervisor would, a node that stopped (a deposed sequencer stops).
    async fn restart_stopped(&mut self) {
        for i in 0..2 {
            let stopped = match &mut self.nodes[i] {
                Some(node) => node.child.try_wait().unwrap().is_some(),
                None => false,
            };
            if stopped {
                self.nodes[i] = None;
                // The database may be between primaries: the node refuses to start until
                // it answers.
                while self.nodes[i].is_none() {
                    match self.try_run(i).await {
                        Ok(()) => {}
                        Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
                    }
                }
            }
        }
    }

    async fn try_run(&mut self, i: usize) -> Result<(), String> {
        self.starts += 1;
        let log = self
            .tmp
            .path()
            .join(format!("node-{i}-{}.log", self.starts));
        let listen = format!("127.0.0.1:{}", self.ports[i]);
        let node = start_with(
            &self.dirs[i],
            &listen,
            &log,
            &["--storage", &self.url, "--lease-ms", LEASE_MS],
        )
        .await?;
        self.nodes[i] = Some(node);
        Ok(())
    }

    /// Which node sequences now (its `/v1/services` answers; a standby's is 503).
    async fn sequencer(&self) -> Option<usize> {
        let http = reqwest::Client::new();
        for _ in 0..300 {
            for i in 0..2 {
                if self.nodes[i].is_none() {
                    continue;
                }
                let r = http
                    .get(format!("{}/v1/services", self.base(i)))
                    .timeout(Duration::from_secs(2))
                    .send()
                    .await;
                if r.is_ok_and(|r| r.status().is_success()) {
                    return Some(i);
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        None
    }
}

/// Whether the node at `base` sequences within [`PATIENCE`] (its `/v1/services` answers).
async fn sequences(base: &str) -> bool {
    let http = reqwest::Client::new();
    tokio::time::timeout(PATIENCE, async {
        loop {
            let r = http.get(format!("{base}/v1/services")).send().await;
            if r.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .is_ok()
}

/// The size `base`'s `/v1/log` announces.
async fn log_size(base: &str) -> u64 {
    let info: serde_json::Value = reqwest::get(format!("{base}/v1/log"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    info["size"].as_u64().unwrap()
}

/// What the clients were told.
#[derive(Default)]
struct Seen {
    /// Acknowledged appends: index → leaf hash.
    acked: BTreeMap<u64, LeafHash>,
    /// Every checkpoint a receipt carried: size → root.
    checkpoints: BTreeMap<u64, RootHash>,
    /// Answers other than 200 and 503 (with their body).
    unexpected: Vec<String>,
}

fn note_size_root(note: &str) -> (u64, RootHash) {
    let mut lines = note.lines().skip(1);
    let size = lines.next().unwrap().parse().unwrap();
    let root: [u8; 32] = base64::engine::general_purpose::STANDARD
        .decode(lines.next().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    (size, RootHash(Hash(root)))
}

/// Append until `stop`, each client to the node it last found sequencing, moving to the
/// other at a 503 or a broken connection; events signed with the edge key, under the edge's
/// current attestation (fetched again when the new sequencer re-attested).
fn load(
    cluster: &Cluster,
    key: ed25519_dalek::SigningKey,
    clients: usize,
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Seen>>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let bases = [cluster.base(0), cluster.base(1)];
    (0..clients)
        .map(|c| {
            let (bases, key, stop, seen) = (bases.clone(), key.clone(), stop.clone(), seen.clone());
            tokio::spawn(async move {
                let http = reqwest::Client::builder()
                    .timeout(Duration::from_secs(10))
                    .build()
                    .unwrap();
                let mut at = 0usize;
                let mut attestation = None;
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let base = &bases[at];
                    let att = match attestation {
                        Some(a) => a,
                        None => match http.get(format!("{base}/v1/services")).send().await {
                            Ok(r) if r.status().is_success() => {
                                let view: serde_json::Value = r.json().await.unwrap();
                                let a = support::leaf_of(&view, "edge");
                                attestation = Some(a);
                                a
                            }
                            _ => {
                                at = 1 - at;
                                tokio::time::sleep(Duration::from_millis(50)).await;
                                continue;
                            }
                        },
                    };
                    n += 1;
                    let e = event(&key, att, &format!("client-{c}"), n);
                    let leaf = e.leaf_hash();
                    let sent = http
                        .post(format!("{base}/v1/entries"))
                        .header("content-type", "application/json")
                        .body(e.into_bytes())
                        .send()
                        .await;
                    let Ok(resp) = sent else {
                        at = 1 - at;
                        attestation = None;
                        continue;
                    };
                    let status = resp.status().as_u16();
                    let body = resp.text().await.unwrap_or_default();
                    match status {
                        200 => {
                            let r: Receipt = serde_json::from_str(&body).unwrap();
                            let (size, root) = note_size_root(&r.checkpoint);
                            let mut s = seen.lock();
                            // The receipt is for the event sent; the log is checked against
                            // what was sent, not what the node said.
                            if r.leaf_hash != leaf.to_hex() {
                                s.unexpected.push(format!(
                                    "a receipt for {} answered the append of {leaf}",
                                    r.leaf_hash
                                ));
                            }
                            if let Some(before) = s.acked.insert(r.index, leaf) {
                                s.unexpected.push(format!(
                                    "index {} acknowledged twice: {before} and {leaf}",
                                    r.index
                                ));
                            }
                            if let Some(other) = s.checkpoints.insert(size, root)
                                && other != root
                            {
                                s.unexpected
                                    .push(format!("two roots at size {size}: {other} and {root}"));
                            }
                        }
                        503 => {
                            at = 1 - at;
                            attestation = None;
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        403 if body.contains("attestation-stale")
                            || body.contains("unknown-producer") =>
                        {
                            attestation = None;
                        }
                        _ => seen.lock().unexpected.push(format!("{status} {body}")),
                    }
                }
            })
        })
        .collect()
}

async fn consistency(base: &str, from: u64, to: u64) -> Vec<Hash> {
    let p: ConsistencyProof =
        reqwest::get(format!("{base}/v1/proofs/consistency?from={from}&to={to}"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    p.hashes
        .iter()
        .map(|h| {
            Hash(
                base64::engine::general_purpose::STANDARD
                    .decode(h)
                    .unwrap()
                    .try_into()
                    .unwrap(),
            )
        })
        .collect()
}

/// Every acknowledged append is at its index on `base`, and every checkpoint a client was
/// given is consistent with `base`'s latest.
async fn check_against(base: &str, seen: &Seen) {
    let http = reqwest::Client::new();
    for (index, leaf) in &seen.acked {
        let bytes = http
            .get(format!("{base}/v1/entries/{index}"))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(
            govern_core::merkle::hash_leaf(&bytes),
            *leaf,
            "the acknowledged append at {index} is in the log"
        );
    }
    let note = http
        .get(format!("{base}/checkpoint"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let (size, root) = note_size_root(&note);
    for (&from, from_root) in &seen.checkpoints {
        assert!(
            from <= size,
            "a client saw size {from} beyond the log's {size}"
        );
        if from == size {
            assert_eq!(*from_root, root);
            continue;
        }
        if from == 0 {
            continue;
        }
        let proof = consistency(base, from, size).await;
        govern_core::merkle::verify_consistency(
            TreeSize(from),
            TreeSize(size),
            &proof,
            from_root,
            &root,
        )
        .unwrap_or_else(|e| panic!("checkpoint {from} is not consistent with {size}: {e}"));
    }
}

/// Two nodes under four clients' appends; ten times, at a random moment, the sequencing
/// node is killed (SIGKILL) and started again as a standby: the other takes over each time,
/// every acknowledged append is at its index, every checkpoint a client was given is
/// consistent with the last, and `govern verify log` passes after each takeover, against
/// what it verified before.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_sequencer_killed_ten_times_loses_no_acknowledged_append() {
    let pg = TestPostgres::start().unwrap();
    let mut cluster = Cluster::start(&pg).await;
    let key = DataDir::open(&cluster.dirs[0], None)
        .unwrap()
        .edge_key()
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let clients = load(&cluster, key, 4, Arc::clone(&stop), Arc::clone(&seen));
    let state = cluster.tmp.path().join("verify-state.json");
    let pauses: Vec<u64> = {
        use rand::Rng as _;
        let mut rng = rand::thread_rng();
        (0..10).map(|_| rng.gen_range(0..400)).collect()
    };
    let acked = || seen.lock().acked.len();
    for (kill, pause) in pauses.into_iter().enumerate() {
        // Appends flow through this sequencer before it dies.
        let before = acked();
        let waited = tokio::time::timeout(PATIENCE, async {
            while acked() < before + 20 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        assert!(
            waited.is_ok(),
            "kill {kill}: no appends acknowledged; {:?}",
            seen.lock().unexpected
        );
        tokio::time::sleep(Duration::from_millis(pause)).await;
        let victim = cluster.sequencer().await.expect("a node sequences");
        cluster.nodes[victim].take().unwrap().kill().await;
        let next = cluster
            .sequencer()
            .await
            .expect("the other node takes over");
        assert_eq!(next, 1 - victim, "kill {kill}: the standby took over");
        let (ok, out, err) = verify_log(&cluster.base(next), &state).await;
        assert!(ok, "kill {kill}: verify log after the takeover: {out}{err}");
        cluster.run(victim).await;
    }
    // The last sequencer takes appends too.
    let before = acked();
    let waited = tokio::time::timeout(PATIENCE, async {
        while acked() < before + 20 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "no appends after the last takeover");
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    let seen = std::mem::take(&mut *seen.lock());
    assert!(seen.unexpected.is_empty(), "{:#?}", seen.unexpected);
    let sequencer = cluster.sequencer().await.unwrap();
    check_against(&cluster.base(sequencer), &seen).await;
    // The standby serves the same log, once caught up.
    let standby = cluster.base(1 - sequencer);
    let size = log_size(&cluster.base(sequencer)).await;
    let caught_up = tokio::time::timeout(PATIENCE, async {
        while log_size(&standby).await < size {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(caught_up.is_ok(), "the standby did not reach size {size}");
    check_against(&standby, &seen).await;
    let (ok, out, err) = verify_log(&standby, &state).await;
    assert!(ok, "verify log through the standby: {out}{err}");
}

/// A sequencer paused (SIGSTOP) past its lease while clients wait on it, then resumed after
/// the other node took over: none of its waiting clients gets a receipt (each gets 503
/// `not-the-sequencer`), none of their events is in the log, and it stops with status 75.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_paused_sequencer_woken_after_a_takeover_acknowledges_nothing() {
    let pg = TestPostgres::start().unwrap();
    let mut cluster = Cluster::start(&pg).await;
    let key = DataDir::open(&cluster.dirs[0], None)
        .unwrap()
        .edge_key()
        .unwrap();
    let a = cluster.sequencer().await.unwrap();
    let attestation = edge_attestation(&cluster.base(a)).await;
    let pid = cluster.nodes[a].as_ref().unwrap().child.id().unwrap();
    let signal = |sig: &str| {
        let ok = std::process::Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    };
    signal("-STOP");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let waiting: Vec<_> = (0..8u64)
        .map(|n| {
            let e = event(&key, attestation, "paused", n);
            let leaf = e.leaf_hash();
            let (http, url) = (http.clone(), cluster.base(a));
            let answer = tokio::spawn(async move {
                let r = http
                    .post(format!("{url}/v1/entries"))
                    .header("content-type", "application/json")
                    .body(e.into_bytes())
                    .send()
                    .await;
                match r {
                    Ok(r) => (
                        Some(r.status().as_u16()),
                        r.text().await.unwrap_or_default(),
                    ),
                    Err(e) => (None, e.to_string()),
                }
            });
            (leaf, answer)
        })
        .collect();
    // The other node takes over while it sleeps, and appends.
    let b = 1 - a;
    assert!(
        sequences(&cluster.base(b)).await,
        "the standby did not take over"
    );
    let fresh = edge_attestation(&cluster.base(b)).await;
    let resp = http
        .post(format!("{}/v1/entries", cluster.base(b)))
        .header("content-type", "application/json")
        .body(event(&key, fresh, "after", 0).into_bytes())
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status().as_u16(),
        200,
        "{}",
        resp.text().await.unwrap()
    );
    signal("-CONT");
    for (leaf, answer) in waiting {
        let (status, body) = answer.await.unwrap();
        assert_eq!(
            status,
            Some(503),
            "a waiting client of the deposed node: {body}"
        );
        assert!(
            body.contains("urn:govern:problem:not-the-sequencer"),
            "{body}"
        );
        let held = http
            .get(format!("{}/v1/leaves/{leaf}", cluster.base(b)))
            .send()
            .await
            .unwrap();
        assert_eq!(held.status().as_u16(), 404, "{leaf} is not in the log");
    }
    let mut node = cluster.nodes[a].take().unwrap();
    let status = tokio::time::timeout(PATIENCE, node.child.wait())
        .await
        .expect("the deposed node stops")
        .unwrap();
    assert_eq!(status.code(), Some(75), "{}", node.stderr());
    assert!(node.stderr().contains("deposed"), "{}", node.stderr());
    let state = cluster.tmp.path().join("verify-state.json");
    let (ok, out, err) = verify_log(&cluster.base(b), &state).await;
    assert!(
        ok,
        "{out}{err}\nthe other node's stderr: {}",
        cluster.nodes[b].as_ref().unwrap().stderr()
    );
}

/// `govern replay --storage`: a RocksDB node's export restored into PostgreSQL reaches the
/// source's size and root, a database that holds a log is refused, and a node over it (with
/// the source's data dir, its store left behind) serves that log and sequences on from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_export_replays_into_postgres_and_a_node_sequences_on_from_it() {
    use support::{run, s};
    let pg = TestPostgres::start().unwrap();
    let url = pg.database().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let source = tmp.path().join("source");
    let node = support::start(&source, "127.0.0.1:0", &tmp.path().join("source.log"))
        .await
        .unwrap();
    support::fill(&node, &source, "restore", 40).await;
    let note = reqwest::get(format!("{}/checkpoint", node.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let (size, root) = note_size_root(&note);
    node.kill().await;
    let export = tmp.path().join("export");
    let (ok, out, err) = run(&["export", s(&export), "--data-dir", s(&source)]).await;
    assert!(ok, "{out}{err}");

    let fresh = tmp.path().join("fresh");
    let (ok, out, err) = run(&[
        "replay",
        s(&export),
        "--data-dir",
        s(&fresh),
        "--storage",
        &url,
        "--json",
    ])
    .await;
    assert!(ok, "{out}{err}");
    let replayed: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(replayed["size"], size);
    assert_eq!(replayed["root"], root.to_hex());
    // The database holds a log now: a second restore into it is refused, in words.
    let again = tmp.path().join("again");
    let (ok, _, err) = run(&[
        "replay",
        s(&export),
        "--data-dir",
        s(&again),
        "--storage",
        &url,
    ])
    .await;
    assert!(!ok);
    assert!(err.contains("holds a log already"), "{err}");

    // The source's keys, without its RocksDB store.
    let keys = tmp.path().join("keys");
    copy_dir(&source, &keys);
    std::fs::remove_dir_all(keys.join("db")).unwrap();
    let node = start_with(
        &keys,
        "127.0.0.1:0",
        &tmp.path().join("pg.log"),
        &["--storage", &url, "--lease-ms", LEASE_MS],
    )
    .await
    .unwrap();
    let http = reqwest::Client::new();
    assert!(sequences(&node.url).await, "{}", node.stderr());
    let key = DataDir::open(&keys, None).unwrap().edge_key().unwrap();
    let attestation = edge_attestation(&node.url).await;
    let resp = http
        .post(format!("{}/v1/entries", node.url))
        .header("content-type", "application/json")
        .body(event(&key, attestation, "restored", 0).into_bytes())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let receipt: Receipt = resp.json().await.unwrap();
    assert!(
        receipt.index > size,
        "appended after the restored log and the node's attestations"
    );
    let seen = Seen {
        checkpoints: BTreeMap::from([(size, root)]),
        ..Seen::default()
    };
    check_against(&node.url, &seen).await;
    let (ok, out, err) = verify_log(&node.url, &tmp.path().join("state.json")).await;
    assert!(ok, "{out}{err}");
}

/// The edge's passkeys are shared through the database: a passkey registered while one node
/// sequenced logs in at the node that took over from it (whose data dir never had it).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_passkey_registered_at_one_sequencer_logs_in_at_the_next() {
    use serde_json::{Value, json};
    use webauthn_authenticator_rs::prelude::WebauthnAuthenticator as _;
    use webauthn_authenticator_rs::softpasskey::SoftPasskey;
    use webauthn_rs::prelude::{CreationChallengeResponse, RequestChallengeResponse, Url};
    let pg = TestPostgres::start().unwrap();
    let mut cluster = Cluster::start(&pg).await;
    let a = cluster.sequencer().await.unwrap();
    let token = DataDir::open(&cluster.dirs[a], None)
        .unwrap()
        .operator_token()
        .unwrap();
    let http = reqwest::Client::new();
    let post = |base: String, path: &'static str, body: Value, bearer: Option<String>| {
        let http = http.clone();
        async move {
            let mut req = http.post(format!("{base}{path}")).json(&body);
            if let Some(t) = bearer {
                req = req.bearer_auth(t);
            }
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            let body: Value = resp.json().await.unwrap();
            assert!((200..300).contains(&status), "{path}: {status} {body}");
            body
        }
    };
    let created = post(
        cluster.base(a),
        "/v1/tenants",
        json!({"name": "failover", "admin": "Ada"}),
        Some(token),
    )
    .await;
    let tenant = created["tenant"].clone();
    let start = post(
        cluster.base(a),
        "/v1/auth/register/start",
        json!({"tenant": tenant, "invite": created["invite"]}),
        None,
    )
    .await;
    let mut passkey = SoftPasskey::new(true);
    // Each node's web origin is its own address (no --web-origin), under one relying party.
    let origin = |i: usize| Url::parse(&format!("http://localhost:{}", cluster.ports[i])).unwrap();
    let ccr: CreationChallengeResponse = serde_json::from_value(start["options"].clone()).unwrap();
    let credential = passkey.do_registration(origin(a), ccr).unwrap();
    let admin = post(
        cluster.base(a),
        "/v1/auth/register/finish",
        json!({"registration": start["registration"], "credential": credential}),
        None,
    )
    .await;
    cluster.nodes[a].take().unwrap().kill().await;
    let b = cluster.sequencer().await.unwrap();
    assert_eq!(b, 1 - a);
    assert!(
        !cluster.dirs[b]
            .join("passkeys")
            .join(tenant.as_str().unwrap())
            .exists(),
        "the node taking over has no file of the passkey"
    );
    let login = post(
        cluster.base(b),
        "/v1/auth/login/start",
        json!({"tenant": tenant, "user": admin["user"]}),
        None,
    )
    .await;
    let rcr: RequestChallengeResponse = serde_json::from_value(login["options"].clone()).unwrap();
    let assertion = passkey.do_authentication(origin(b), rcr).unwrap();
    let session = post(
        cluster.base(b),
        "/v1/auth/login/finish",
        json!({"login": login["login"], "assertion": assertion}),
        None,
    )
    .await;
    assert!(
        session["session"].as_str().is_some_and(|s| !s.is_empty()),
        "{session}"
    );
}

/// The cluster of `scripts/pg-cluster.sh` (etcd, three PostgreSQL members under Patroni,
/// synchronous replication), stopped on drop.
struct Patroni {
    dir: tempfile::TempDir,
    base: u16,
}

impl Patroni {
    const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/pg-cluster.sh");

    /// Start it; its connection string (every member, the primary chosen by libpq).
    fn up(base: u16) -> (Self, String) {
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new(Self::SCRIPT)
            .args(["up", dir.path().to_str().unwrap(), "--no-nodes"])
            .env("PORT_BASE", base.to_string())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let this = Patroni { dir, base };
        assert!(
            out.status.success(),
            "pg-cluster.sh up: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let url = stdout
            .lines()
            .find_map(|l| l.strip_prefix("storage: "))
            .expect("the storage line")
            .to_string();
        (this, url)
    }

    /// The member running as primary now: the one whose Patroni answers `GET /primary`
    /// with 200 (it holds the leader key and its PostgreSQL runs as primary).
    async fn primary(&self) -> String {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        for _ in 0..300 {
            for i in 0..3u16 {
                let r = http
                    .get(format!("http://127.0.0.1:{}/primary", self.base + 20 + i))
                    .send()
                    .await;
                if r.is_ok_and(|r| r.status().is_success()) {
                    return format!("pg{i}");
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("no member runs as primary");
    }

    /// SIGKILL a member's Patroni and PostgreSQL, as a machine's death would.
    fn kill(&self, member: &str) {
        let dir = self.dir.path().join(member);
        for pattern in [
            format!("patroni {}/patroni.yml", dir.display()),
            format!("{}/data", dir.display()),
        ] {
            let _ = std::process::Command::new("pkill")
                .args(["-KILL", "-f", &pattern])
                .status();
            let left = std::process::Command::new("pgrep")
                .args(["-f", &pattern])
                .output()
                .unwrap();
            assert!(!left.status.success(), "{pattern} survived SIGKILL");
        }
    }
}

impl Drop for Patroni {
    fn drop(&mut self) {
        let _ = std::process::Command::new(Self::SCRIPT)
            .args(["down", self.dir.path().to_str().unwrap()])
            .env("PORT_BASE", self.base.to_string())
            .output();
    }
}

/// The PostgreSQL primary killed under load: Patroni promotes the synchronous standby, the
/// nodes (a sequencer that could not renew its lease stops and is started again, as a
/// supervisor would) resume appending through the new primary, every acknowledged append is
/// there, every checkpoint a client was given is consistent with the last, and the log
/// verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_postgres_primary_killed_under_load_loses_no_acknowledged_append() {
    let (patroni, url) = Patroni::up(27700);
    let mut cluster = Cluster::over(url).await;
    let key = DataDir::open(&cluster.dirs[0], None)
        .unwrap()
        .edge_key()
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let clients = load(&cluster, key, 4, Arc::clone(&stop), Arc::clone(&seen));
    let acked = || seen.lock().acked.len();
    let until = |n: usize| {
        let seen = Arc::clone(&seen);
        async move {
            while seen.lock().acked.len() < n {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    assert!(
        tokio::time::timeout(PATIENCE, until(50)).await.is_ok(),
        "no appends"
    );
    let primary = patroni.primary().await;
    let killed = std::time::Instant::now();
    patroni.kill(&primary);
    // Counted once the primary is dead: what was acknowledged up to here is before.
    let before = acked();
    // Appends resume: through the new primary, whichever node sequences.
    let resumed = tokio::time::timeout(Duration::from_secs(120), async {
        loop {
            cluster.restart_stopped().await;
            if seen.lock().acked.len() >= before + 20 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    assert!(
        resumed.is_ok(),
        "appends did not resume after the primary died"
    );
    eprintln!(
        "appends resumed {:?} after the primary was killed",
        killed.elapsed()
    );
    assert_ne!(
        patroni.primary().await,
        primary,
        "Patroni promoted another member"
    );
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    let seen = std::mem::take(&mut *seen.lock());
    assert!(seen.unexpected.is_empty(), "{:#?}", seen.unexpected);
    let sequencer = cluster.sequencer().await.unwrap();
    check_against(&cluster.base(sequencer), &seen).await;
    let state = cluster.tmp.path().join("verify-state.json");
    let (ok, out, err) = verify_log(&cluster.base(sequencer), &state).await;
    assert!(ok, "{out}{err}");
}

/// Wait until `base` serves at `/checkpoint` a witnessed checkpoint of at least `size`;
/// its size.
async fn witnessed_at_least(base: &str, size: u64) -> u64 {
    support::size_of(&support::witnessed_at_least(base, size).await)
}

/// Three witnesses (two must cosign) follow the log across three takeovers: each new
/// sequencer has its checkpoints cosigned past what was witnessed before, the standby
/// serves the same cosigned checkpoints, and one `govern verify log` state, fed through
/// both nodes in turn, sees one consistent, witnessed history.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn witnesses_cosign_across_takeovers_and_both_nodes_show_one_history() {
    let pg = TestPostgres::start().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let policy_path = tmp.path().join("witnesses.toml");
    let mut witnesses = Vec::new();
    let mut cluster = {
        let url = pg.database().unwrap();
        let (policy_path, tmp_path) = (policy_path.clone(), tmp.path().to_path_buf());
        let ws = &mut witnesses;
        // The witnesses need the log's key, which the first data dir holds once opened.
        let prepare = |dir: &std::path::Path| {
            let vkey = DataDir::open(dir, None).unwrap().verifier_key();
            let rt = tokio::runtime::Handle::current();
            for i in 1..=3 {
                let w = tokio::task::block_in_place(|| {
                    rt.block_on(support::witness(
                        &tmp_path.join(format!("w{i}")),
                        &format!("test.example/w{i}"),
                        &vkey,
                    ))
                })
                .unwrap();
                ws.push(w);
            }
            let file = support::witness_policy(ws, 2);
            let text = toml::to_string(&file).unwrap();
            std::fs::write(&policy_path, &text).unwrap();
            std::fs::write(dir.join("witnesses.toml"), text).unwrap();
        };
        Cluster::over_with(url, prepare).await
    };
    let key = DataDir::open(&cluster.dirs[0], None)
        .unwrap()
        .edge_key()
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let clients = load(&cluster, key, 2, Arc::clone(&stop), Arc::clone(&seen));
    let state = tmp.path().join("verify-state.json");
    let policy = policy_path.to_str().unwrap().to_string();
    let verify = |base: String| {
        let (state, policy) = (state.clone(), policy.clone());
        async move {
            let (ok, out, err) =
                support::verify_log_with(&base, &state, &["--witnesses", &policy]).await;
            assert!(ok, "verify log through {base}: {out}{err}");
        }
    };
    for takeover in 0..3 {
        let a = cluster.sequencer().await.unwrap();
        let latest = log_size(&cluster.base(a)).await;
        let witnessed = witnessed_at_least(&cluster.base(a), latest).await;
        // The standby serves it too, and both agree with what was verified before.
        witnessed_at_least(&cluster.base(1 - a), witnessed).await;
        verify(cluster.base(1 - a)).await;
        verify(cluster.base(a)).await;
        cluster.nodes[a].take().unwrap().kill().await;
        let b = cluster.sequencer().await.unwrap();
        assert_eq!(b, 1 - a, "takeover {takeover}");
        // The new sequencer's own appends (its attestations) and the clients' get
        // cosigned past what was witnessed under the one before.
        witnessed_at_least(&cluster.base(b), witnessed + 1).await;
        verify(cluster.base(b)).await;
        cluster.run(a).await;
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    let seen = std::mem::take(&mut *seen.lock());
    assert!(seen.unexpected.is_empty(), "{:#?}", seen.unexpected);
    let b = cluster.sequencer().await.unwrap();
    check_against(&cluster.base(b), &seen).await;
    drop(witnesses);
}

/// Under a witness policy, a node over a database restored from a copy the witnesses have
/// seen go further appends nothing: it refuses to sequence, naming the witness, and stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_database_restored_from_a_stale_copy_gets_nothing_appended() {
    use support::{run, s};
    let pg = TestPostgres::start().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let vkey = DataDir::open(&data, None).unwrap().verifier_key();
    let w = support::witness(&tmp.path().join("w1"), "test.example/w1", &vkey)
        .await
        .unwrap();
    let policy = support::witness_policy(std::slice::from_ref(&w), 1);
    std::fs::write(
        data.join("witnesses.toml"),
        toml::to_string(&policy).unwrap(),
    )
    .unwrap();
    let start = |url: String, name: &'static str| {
        let (data, err) = (data.clone(), tmp.path().join(name));
        async move {
            start_with(
                &data,
                "127.0.0.1:0",
                &err,
                &["--storage", &url, "--lease-ms", LEASE_MS],
            )
            .await
            .unwrap()
        }
    };
    let node = start(pg.database().unwrap(), "first.log").await;
    assert!(sequences(&node.url).await, "{}", node.stderr());
    // A backup (an export of what the witness cosigned)...
    witnessed_at_least(&node.url, log_size(&node.url).await).await;
    let export = tmp.path().join("export");
    let (ok, out, err) = run(&["export", s(&export), "--url", &node.url]).await;
    assert!(ok, "{out}{err}");
    let size = support::size_of(&std::fs::read_to_string(export.join("checkpoint")).unwrap());
    // ...then the log goes on, cosigned further.
    support::append(&node, &data, "after-backup", 3).await;
    let newer = witnessed_at_least(&node.url, size + 3).await;
    node.kill().await;

    // The backup restored into a new database, and a node started over it.
    let restored = pg.database().unwrap();
    // An export over HTTP carries no trust: the operator pins the manifest signers and, in
    // dev, the dev CA.
    let (ok, out, err) = run(&[
        "replay",
        s(&export),
        "--data-dir",
        s(&tmp.path().join("fresh")),
        "--storage",
        &restored,
        "--signers",
        s(&data.join("manifest-signers.toml")),
        "--dev-root",
        s(&data.join("dev-ca").join("root.der")),
    ])
    .await;
    assert!(ok, "{out}{err}");
    let mut node = start(restored.clone(), "restored.log").await;
    let status = tokio::time::timeout(PATIENCE, node.child.wait())
        .await
        .expect("the node over the stale database stops")
        .unwrap();
    assert!(!status.success());
    let expected =
        format!("this log has advanced elsewhere: witness test.example/w1 cosigned size {newer}");
    assert!(
        node.stderr().contains(&expected),
        "{expected}\n{}",
        node.stderr()
    );
    let held = govern_store::LogReader::open(
        govern_store_postgres::PgStorage::connect_reader(&restored).unwrap(),
    )
    .unwrap()
    .latest()
    .size
    .0;
    assert_eq!(held, size, "nothing was appended to the stale database");
}
