//! What the tests that run `govern` as a child process share: starting a node on a data
//! dir and finding its port, and stopping it.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use govern_api::DataDir;
use govern_api::routes::Receipt;
use govern_core::event::SignedEvent;
use govern_core::ids::LeafHash;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

pub mod liar;
pub mod schemas;

/// What a node writes when it first starts: the genesis manifest, the log's, the edge's and the key service's
/// `service.attested`.
pub const BOOT_ENTRIES: u64 = 4;

pub const BIN: &str = env!("CARGO_BIN_EXE_govern");
/// How long any single wait may take before a test gives up.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// A process group a test started (`process_group(0)`), killed whole when dropped: `govern
/// up` and the witnesses and workers it started, which a SIGKILL of `govern up` alone would
/// leave running.
pub struct Group(pub u32);

impl Drop for Group {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.0)])
            .stderr(Stdio::null())
            .status();
    }
}

/// A node running as a child process.
pub struct Node {
    pub child: Child,
    pub url: String,
    stderr: PathBuf,
    /// Kept open: the node prints after the line we wait for, and a closed pipe would
    /// make those prints fail.
    _stdout: Lines<BufReader<ChildStdout>>,
}

/// Aux info for the five signers, for tests only (enclave-workers/tests/aux_fixture.rs).
pub const TEST_AUX_INFO: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/enclave-workers/tests/fixtures/aux-info.test-only.json"
);

pub fn govern() -> Command {
    let mut cmd = Command::new(BIN);
    for var in [
        "GOVERN_CONFIG",
        "GOVERN_DATA_DIR",
        "GOVERN_LISTEN",
        "GOVERN_ORIGIN",
        "GOVERN_URL",
        "GOVERN_RP_ID",
        "GOVERN_WEB_ORIGIN",
        "GOVERN_WITNESSES",
    ] {
        cmd.env_remove(var);
    }
    // `verify log` and `verify request` default to a state file under XDG_STATE_HOME: never
    // the user's, and never another test's (each test is a process of its own).
    cmd.env(
        "XDG_STATE_HOME",
        std::env::temp_dir().join(format!("govern-test-state-{}", std::process::id())),
    );
    // The signers `govern up` starts take the committed test-only aux info instead of
    // generating safe primes (minutes).
    cmd.env("GOVERN_TEST_AUX_INFO", TEST_AUX_INFO);
    cmd.env("GOVERN_LOG", "warn")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    cmd
}

/// Start `govern node` on `data` and wait for its "listening" line.
pub async fn start(data: &Path, listen: &str, stderr: &Path) -> Result<Node, String> {
    start_with(data, listen, stderr, &[]).await
}

/// [`start`] with more flags.
pub async fn start_with(
    data: &Path,
    listen: &str,
    stderr: &Path,
    extra: &[&str],
) -> Result<Node, String> {
    let log = std::fs::File::create(stderr).map_err(|e| e.to_string())?;
    let mut child = govern()
        .arg("node")
        .arg("--data-dir")
        .arg(data)
        .args(["--listen", listen])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .spawn()
        .map_err(|e| format!("cannot run {BIN}: {e}"))?;
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let found = tokio::time::timeout(PATIENCE, async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(rest) = line.strip_prefix("govern node listening on ") {
                return rest.split_whitespace().next().map(str::to_string);
            }
        }
        None
    })
    .await;
    match found {
        Ok(Some(url)) => Ok(Node {
            child,
            url,
            stderr: stderr.to_path_buf(),
            _stdout: lines,
        }),
        _ => {
            let _ = child.kill().await;
            let status = child
                .wait()
                .await
                .map(|s| s.to_string())
                .unwrap_or_default();
            Err(format!(
                "the node did not start ({status}); its stderr:\n{}",
                std::fs::read_to_string(stderr).unwrap_or_default()
            ))
        }
    }
}

impl Node {
    /// SIGKILL, and reap.
    pub async fn kill(mut self) {
        self.child.kill().await.expect("SIGKILL the node");
    }
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Node {
    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.url.rsplit(':').next().unwrap().parse().unwrap()
    }
}

/// `govern verify log`: success, stdout, stderr.
pub async fn verify_log(url: &str, state: &Path) -> (bool, String, String) {
    verify_log_with(url, state, &[]).await
}

/// [`verify_log`] with more flags (`--witnesses FILE`).
pub async fn verify_log_with(url: &str, state: &Path, extra: &[&str]) -> (bool, String, String) {
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        govern()
            .args(["verify", "log", "--url", url])
            .args(extra)
            .arg("--state")
            .arg(state)
            .output(),
    )
    .await
    .expect("verify log finishes")
    .expect("verify log runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// The leaf hash of the edge's current `service.attested`, from `GET /v1/services`: what
/// events signed with the data dir's edge key name in `attestation`.
pub async fn edge_attestation(url: &str) -> govern_core::ids::LeafHash {
    let view: serde_json::Value = reqwest::get(format!("{url}/v1/services"))
        .await
        .expect("GET /v1/services")
        .json()
        .await
        .expect("services JSON");
    leaf_of(&view, "edge")
}

/// `role`'s current attestation in a `GET /v1/services` answer.
pub fn leaf_of(view: &serde_json::Value, role: &str) -> govern_core::ids::LeafHash {
    let leaf = view["services"]
        .as_array()
        .and_then(|l| l.iter().find(|s| s["role"] == role))
        .and_then(|s| s["leaf"].as_str())
        .unwrap_or_else(|| panic!("no {role} identity in {view}"));
    govern_core::ids::LeafHash::try_from(leaf.to_string()).expect("leaf hash")
}

/// A `demo.hello` by the edge key under `attestation`, with `body`.
pub fn edge_event(
    key: &ed25519_dalek::SigningKey,
    attestation: govern_core::ids::LeafHash,
    body: serde_json::Map<String, serde_json::Value>,
) -> govern_core::event::SignedEvent {
    use govern_core::event::{Event, Kind, Producer, RequestId, Role, TenantId, Timestamp};
    let mut event = Event::new(
        Kind::new("demo.hello").unwrap(),
        TenantId::SYSTEM,
        RequestId::new_v7(),
        Producer::new(Role::new("edge").unwrap(), &key.verifying_key()),
        Timestamp::now(),
        body,
    );
    event.attestation = Some(attestation);
    event.sign(key).unwrap()
}

pub fn event(key: &SigningKey, attestation: LeafHash, tag: &str, n: u64) -> SignedEvent {
    let mut body = serde_json::Map::new();
    body.insert("tag".into(), tag.into());
    body.insert("n".into(), n.into());
    edge_event(key, attestation, body)
}

/// Append `count` events to the node on `data` (four clients at once); the final size.
pub async fn fill(node: &Node, data: &Path, tag: &str, count: u64) -> u64 {
    let key = DataDir::open(data, None).unwrap().edge_key().unwrap();
    let attestation = edge_attestation(&node.url).await;
    let http = reqwest::Client::builder()
        .timeout(PATIENCE)
        .build()
        .unwrap();
    let mut tasks = Vec::new();
    for c in 0..4u64 {
        let (http, key, url, tag) = (
            http.clone(),
            key.clone(),
            node.url.clone(),
            format!("{tag}-{c}"),
        );
        tasks.push(tokio::spawn(async move {
            let mut last = 0;
            for n in (c..count).step_by(4) {
                let resp = http
                    .post(format!("{url}/v1/entries"))
                    .header("content-type", "application/json")
                    .body(event(&key, attestation, &tag, n).into_bytes())
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status().as_u16(), 200);
                let r: Receipt = resp.json().await.unwrap();
                last = last.max(r.inclusion.size);
            }
            last
        }));
    }
    let mut size = 0;
    for t in tasks {
        size = size.max(t.await.unwrap());
    }
    assert_eq!(
        size,
        BOOT_ENTRIES + count,
        "a fresh log of its {} boot entries and {count} appends",
        BOOT_ENTRIES
    );
    size
}

/// A static file server for `root`, as any web server would serve the export: GET of a
/// path answers the file or 404. Its base URL.
pub async fn serve(root: PathBuf) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let root = root.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut n = 0;
                while !buf[..n].windows(4).any(|w| w == b"\r\n\r\n") && n < buf.len() {
                    match socket.read(&mut buf[n..]).await {
                        Ok(0) | Err(_) => return,
                        Ok(k) => n += k,
                    }
                }
                let head = String::from_utf8_lossy(&buf[..n]).to_string();
                let path = head.split_whitespace().nth(1).unwrap_or("/");
                let path = path
                    .split('?')
                    .next()
                    .unwrap_or("/")
                    .trim_start_matches('/');
                let file = root.join(path);
                let reply = match std::fs::read(&file) {
                    Ok(body) if !path.contains("..") => {
                        let mut r = format!(
                            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                            body.len()
                        )
                        .into_bytes();
                        r.extend(body);
                        r
                    }
                    _ => {
                        b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                            .to_vec()
                    }
                };
                let _ = socket.write_all(&reply).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    format!("http://{addr}")
}

/// Copy the directory `from` into `to` (made if missing), recursively.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// `govern args`: success, stdout, stderr.
pub async fn run(args: &[&str]) -> (bool, String, String) {
    let out = govern().args(args).output().await.unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// [`run`] in the working directory `cwd`.
pub async fn run_in(args: &[&str], cwd: &Path) -> (bool, String, String) {
    let out = govern().args(args).current_dir(cwd).output().await.unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// A path as the `&str` a command line takes.
pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Write `events` straight into the stopped node's store, bypassing every check the log
/// makes at append, as an attacker holding the data dir (and so, in dev mode, the log key)
/// could: the log's own sequencer, under a policy that accepts anything.
pub async fn forge(data: &Path, events: &[SignedEvent]) {
    use govern_store::{
        AppendError, AppendPolicy, Log, LogConfig, LogView, RocksStorage, SystemClock,
    };
    struct AcceptAll;
    impl AppendPolicy for AcceptAll {
        fn check(&self, _: &SignedEvent, _: &dyn LogView) -> Result<Vec<String>, AppendError> {
            Ok(Vec::new())
        }
    }
    let dir = DataDir::open_existing(data).unwrap();
    let storage = RocksStorage::open(&dir.db_path()).unwrap();
    let signer = govern_core::note::NoteSigner::new(dir.origin(), dir.log_signing_key()).unwrap();
    let log = Log::open(
        storage,
        signer,
        LogConfig::new(dir.origin()),
        std::sync::Arc::new(AcceptAll),
        std::sync::Arc::new(SystemClock),
    )
    .unwrap();
    for e in events {
        log.append(e.clone()).await.unwrap();
    }
    drop(log);
}

/// The inodes of the TCP sockets in LISTEN state in the process's network namespace.
pub fn listening_inodes(pid: u32) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    for file in ["tcp", "tcp6"] {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/{file}")) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.get(3) == Some(&"0A") {
                out.insert(f[9].to_string());
            }
        }
    }
    out
}

/// The inodes of the sockets the process holds open.
pub fn socket_fds(pid: u32) -> std::collections::BTreeSet<String> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| {
            l.to_str()?
                .strip_prefix("socket:[")?
                .strip_suffix(']')
                .map(str::to_string)
        })
        .collect()
}

/// A `govern witness` running as a child process.
pub struct WitnessProc {
    pub child: Child,
    pub url: String,
    pub vkey: String,
    _lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

/// Start `govern witness` on `dir` for the log of `log_vkey`, on a free port.
pub async fn witness(dir: &Path, name: &str, log_vkey: &str) -> Result<WitnessProc, String> {
    witness_on(dir, name, log_vkey, "127.0.0.1:0").await
}

/// [`witness`] listening on `listen` (a restart on the same address).
pub async fn witness_on(
    dir: &Path,
    name: &str,
    log_vkey: &str,
    listen: &str,
) -> Result<WitnessProc, String> {
    let mut child = govern()
        .arg("witness")
        .arg("--data-dir")
        .arg(dir)
        .args(["--name", name, "--listen", listen, "--log", log_vkey])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut url, mut vkey) = (None, None);
    let read = tokio::time::timeout(PATIENCE, async {
        while url.is_none() || vkey.is_none() {
            match lines.next_line().await {
                Ok(Some(line)) => {
                    if let Some(rest) = line.split(" listening on ").nth(1) {
                        url = rest.split_whitespace().next().map(str::to_owned);
                    } else if let Some(k) = line.strip_prefix("witness vkey: ") {
                        vkey = Some(k.to_owned());
                    }
                }
                _ => return false,
            }
        }
        true
    })
    .await;
    if read != Ok(true) {
        let out = child.wait_with_output().await.map_err(|e| e.to_string())?;
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(WitnessProc {
        child,
        url: url.unwrap(),
        vkey: vkey.unwrap(),
        _lines: lines,
    })
}

/// Wait until the node's `/checkpoint` is of `size` at least; its note.
pub async fn witnessed_at_least(url: &str, size: u64) -> String {
    let until = tokio::time::Instant::now() + PATIENCE;
    loop {
        let (st, text) = {
            let r = reqwest::get(format!("{url}/checkpoint")).await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        };
        if st == 200 {
            let cp = text.split_once("\n\n").and_then(|(body, _)| {
                govern_core::checkpoint::Checkpoint::parse_body(&format!("{body}\n")).ok()
            });
            if cp.is_some_and(|c| c.size.0 >= size) {
                return text;
            }
        }
        assert!(
            tokio::time::Instant::now() < until,
            "no witnessed checkpoint of size {size}: {st} {text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The tree size of the checkpoint `note`.
pub fn size_of(note: &str) -> u64 {
    govern_core::checkpoint::Checkpoint::parse_body(&format!(
        "{}\n",
        note.split("\n\n").next().unwrap()
    ))
    .unwrap()
    .size
    .0
}

/// A witness policy of `ws` (with their URLs) needing `quorum` cosignatures.
pub fn witness_policy(ws: &[WitnessProc], quorum: usize) -> govern_core::witness::PolicyFile {
    govern_core::witness::PolicyFile {
        quorum,
        witnesses: ws
            .iter()
            .map(|w| govern_core::witness::PolicyWitness {
                vkey: w.vkey.clone(),
                url: Some(w.url.clone()),
            })
            .collect(),
    }
}

/// Append `count` more events to the node on `data`, one after another, each acknowledged;
/// `count`.
pub async fn append(node: &Node, data: &Path, tag: &str, count: u64) -> u64 {
    let key = govern_api::DataDir::open(data, None)
        .unwrap()
        .edge_key()
        .unwrap();
    let attestation = edge_attestation(&node.url).await;
    let http = reqwest::Client::new();
    for n in 0..count {
        let resp = http
            .post(format!("{}/v1/entries", node.url))
            .header("content-type", "application/json")
            .body(event(&key, attestation, tag, n).into_bytes())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
    }
    count
}
