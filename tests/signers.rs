//! The five signers as processes of their own (`govern worker signer --index N`) beside a
//! node and the policy worker: a user's transfer ends in an EIP-1559 transaction whose sender
//! an independent Ethereum implementation (eth-account, Python) recovers as the wallet's
//! address; two signers down still sign, three down wait until one returns; a signer that
//! sends garbage or wrongly sealed messages is named in the log and the next committee
//! signs; a restart mid-protocol never signs twice; forged approvals, written straight into
//! the store or by a lying policy identity, are quarantined and never signed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use support::{Node, PATIENCE, govern, listening_inodes, socket_fds, start};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};

/// How long a test waits for a transfer's signature (every committee may be tried first).
const SIGNED_WAIT: Duration = Duration::from_secs(180);
/// How long a test waits for the signers to act on what the log shows (seconds when the
/// machine is idle; much longer on two cores that also run the other tests' clusters).
const PATIENT: Duration = Duration::from_secs(180);

/// A free loopback address (the node comes back on it after a restart).
fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

/// A node, the policy worker and five signers, each a process.
struct Cluster {
    tmp: tempfile::TempDir,
    data: PathBuf,
    listen: String,
    node: Option<Node>,
    policy: Option<Child>,
    signers: BTreeMap<u16, (Child, u32)>,
}

impl Cluster {
    /// Start it all, signer `i` with the extra environment `env(i)`, and wait until the five
    /// hold aux info.
    async fn start(env: impl Fn(u16) -> Vec<(&'static str, &'static str)>) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        let listen = free_addr();
        let node = start(&data, &listen, &tmp.path().join("node.log"))
            .await
            .unwrap();
        let mut c = Self {
            tmp,
            data,
            listen,
            node: Some(node),
            policy: None,
            signers: BTreeMap::new(),
        };
        c.policy = Some(c.worker("policy", &["policy"], &[]).await.0);
        for i in 1..=5 {
            c.start_signer(i, &env(i)).await;
        }
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let v = c.get(&format!("{}/v1/services", c.url())).await;
            if !v["aux_ready"].is_null() {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "aux info: {v}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        c
    }

    fn url(&self) -> String {
        format!("http://{}", self.listen)
    }

    async fn get(&self, url: &str) -> Value {
        reqwest::get(url).await.unwrap().json().await.unwrap()
    }

    /// `govern worker ARGS`, once it says it follows.
    async fn worker(&self, role: &str, args: &[&str], env: &[(&str, &str)]) -> (Child, u32) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.tmp.path().join(format!("{role}.log")))
            .unwrap();
        let mut cmd = govern();
        cmd.arg("worker")
            .args(args)
            .args(["--url", &self.url(), "--data-dir"])
            .arg(&self.data)
            .env("GOVERN_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let line = tokio::time::timeout(PATIENCE, lines.next_line())
            .await
            .expect("the worker starts")
            .unwrap()
            .unwrap_or_else(|| panic!("worker {role} stopped: {}", self.log(role)));
        assert!(
            line.starts_with(&format!("govern worker {role} following")),
            "{line}"
        );
        let pid = child.id().unwrap();
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        (child, pid)
    }

    fn log(&self, role: &str) -> String {
        std::fs::read_to_string(self.tmp.path().join(format!("{role}.log"))).unwrap_or_default()
    }

    async fn start_signer(&mut self, i: u16, env: &[(&'static str, &'static str)]) {
        let index = i.to_string();
        // No presignatures unless the test asks: the full protocol, every time.
        let mut env = env.to_vec();
        if !env.iter().any(|(k, _)| *k == "GOVERN_SIGNER_PRESIGNATURES") {
            env.push(("GOVERN_SIGNER_PRESIGNATURES", "0"));
        }
        let env = &env;
        let started = self
            .worker(&format!("signer-{i}"), &["signer", "--index", &index], env)
            .await;
        self.signers.insert(i, started);
    }

    async fn kill_signer(&mut self, i: u16) {
        let (mut child, _) = self.signers.remove(&i).unwrap();
        child.kill().await.unwrap();
    }

    async fn kill_policy(&mut self) {
        if let Some(mut p) = self.policy.take() {
            p.kill().await.unwrap();
        }
    }

    async fn stop_node(&mut self) {
        if let Some(node) = self.node.take() {
            node.kill().await;
        }
    }

    async fn start_node(&mut self) {
        let log = self.tmp.path().join("node-again.log");
        self.node = Some(start(&self.data, &self.listen, &log).await.unwrap());
    }

    /// Every entry of the log, as `/v1/entries/{i}` gives it.
    async fn entries(&self) -> Vec<Value> {
        let size = self.get(&format!("{}/v1/log", self.url())).await["size"]
            .as_u64()
            .unwrap();
        let mut out = Vec::new();
        for i in 0..size {
            out.push(self.get(&format!("{}/v1/entries/{i}", self.url())).await);
        }
        out
    }

    /// Every event of the log holds to its kind's schema (schemas/events).
    async fn schemas_hold(&self) {
        let failures = support::schemas::failures(&self.entries().await);
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    /// The entries of `request`.
    async fn of(&self, request: &str) -> Vec<Value> {
        self.entries()
            .await
            .into_iter()
            .filter(|e| e["request"] == request)
            .collect()
    }

    /// `govern demo transfer --json --step --transfers N`, once it made its wallet.
    async fn demo(&self, transfers: u32) -> Demo {
        let mut child = govern()
            .args(["demo", "transfer", "--url", &self.url(), "--data-dir"])
            .arg(&self.data)
            .args(["--json", "--step", "--transfers", &transfers.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(
                std::fs::File::create(self.tmp.path().join("demo.err")).unwrap(),
            ))
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut demo = Demo {
            child,
            stdin,
            lines,
            err: self.tmp.path().join("demo.err"),
            wallet: Value::Null,
        };
        demo.wallet = demo.line(PATIENCE).await;
        assert!(demo.wallet["address"].is_string(), "{}", demo.wallet);
        demo
    }
}

/// A running demo: its wallet, and a transfer per line sent to it.
struct Demo {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
    err: PathBuf,
    wallet: Value,
}

impl Demo {
    async fn line(&mut self, wait: Duration) -> Value {
        let line = tokio::time::timeout(wait, self.lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("no demo line: {}", self.stderr()))
            .unwrap()
            .unwrap_or_else(|| panic!("the demo stopped: {}", self.stderr()));
        serde_json::from_str(&line).unwrap()
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }

    /// Send the next transfer (without waiting for it).
    async fn send(&mut self) {
        self.stdin.write_all(b"\n").await.unwrap();
        self.stdin.flush().await.unwrap();
    }

    /// Send the next transfer and wait for it to be signed.
    async fn signed(&mut self) -> Value {
        self.send().await;
        let v = self.line(SIGNED_WAIT).await;
        assert_eq!(v["last"], "transfer.signed", "{v}");
        v
    }
}

/// The venv's Python with eth-account (`make test-deps` installs it).
fn python() -> String {
    std::env::var("GOVERN_TEST_PYTHON").unwrap_or_else(|_| "/var/tmp/govern-venv/bin/python".into())
}

/// The transaction as eth-account reads it: its sender, recovered from the signature, and
/// its fields.
fn decoded(raw: &str) -> Value {
    let script = r#"
import json, sys
from eth_account import Account
from eth_account.typed_transactions import TypedTransaction
from hexbytes import HexBytes
from eth_utils import keccak
raw = sys.argv[1]
tx = TypedTransaction.from_bytes(HexBytes(raw)).as_dict()
print(json.dumps({
    "sender": Account.recover_transaction(raw),
    "hash": "0x" + keccak(HexBytes(raw)).hex(),
    "type": tx["type"] if isinstance(tx["type"], int) else int(tx["type"], 16),
    "chainId": tx["chainId"], "nonce": tx["nonce"], "to": tx["to"] if isinstance(tx["to"], str) else "0x" + bytes(tx["to"]).hex(),
    "value": str(tx["value"]), "gas": tx["gas"],
    "maxFeePerGas": str(tx["maxFeePerGas"]), "maxPriorityFeePerGas": str(tx["maxPriorityFeePerGas"]),
}))
"#;
    let out = std::process::Command::new(python())
        .args(["-c", script, raw])
        .output()
        .unwrap_or_else(|e| panic!("{}: {e} (make test-deps installs it)", python()));
    assert!(
        out.status.success(),
        "eth-account: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The transfer's transaction recovers to the wallet, with the fields the user signed.
fn check_transaction(shown: &Value, nonce: u64) {
    let raw = shown["raw_transaction"].as_str().unwrap();
    let tx = decoded(raw);
    assert_eq!(tx["sender"], shown["address"], "{tx} {shown}");
    assert_eq!(tx["hash"], shown["tx_hash"], "{tx}");
    assert_eq!(tx["type"], 2, "{tx}");
    assert_eq!(tx["chainId"], 1, "{tx}");
    assert_eq!(tx["nonce"], nonce, "{tx}");
    assert_eq!(
        tx["to"].as_str().unwrap().to_ascii_lowercase(),
        shown["to"].as_str().unwrap(),
        "{tx}"
    );
    assert_eq!(tx["value"], "2000000000000000000", "{tx}");
    assert_eq!(tx["gas"], 21000, "{tx}");
    assert_eq!(tx["maxFeePerGas"], "30000000000", "{tx}");
    assert_eq!(tx["maxPriorityFeePerGas"], "1000000000", "{tx}");
}

fn kinds(entries: &[Value]) -> Vec<&str> {
    entries
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect()
}

fn count(entries: &[Value], kind: &str) -> usize {
    entries.iter().filter(|e| e["kind"] == kind).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_is_signed_three_of_five_and_eth_account_recovers_the_wallet() {
    let c = Cluster::start(|_| Vec::new()).await;
    let mut demo = c.demo(1).await;
    let shown = demo.signed().await;
    check_transaction(&shown, 0);
    assert!(
        shown["address"]
            .as_str()
            .unwrap()
            .chars()
            .any(|ch| ch.is_ascii_uppercase()),
        "an EIP-55 checksum: {shown}"
    );
    let request = shown["request"].as_str().unwrap();
    let entries = c.of(request).await;
    assert_eq!(
        count(&entries, "transfer.signed"),
        1,
        "{:?}",
        kinds(&entries)
    );
    let signed = entries
        .iter()
        .find(|e| e["kind"] == "transfer.signed")
        .unwrap();
    // The raw transaction is sealed; its hash and the checkpoint it was verified under are
    // clear.
    assert!(signed["body"].get("raw").is_none(), "{signed}");
    assert_eq!(signed["body"]["tx_hash"], shown["tx_hash"]);
    assert!(signed["body"]["checkpoint"]["size"].as_u64().unwrap() > 0);
    assert_eq!(signed["sealed"]["scope"], "transfers", "{signed}");
    let committee: Vec<&str> = signed["body"]["committee"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(committee.len(), 3);
    // Every member of the committee joined, naming the same session.
    let joins: Vec<&Value> = entries.iter().filter(|e| e["kind"] == "mpc.join").collect();
    for m in &committee {
        assert!(
            joins.iter().any(|j| j["producer"]["role"] == *m
                && j["body"]["session"] == signed["body"]["session"]),
            "{m} did not join"
        );
    }
    assert!(count(&entries, "mpc.message") >= 6);

    // The wallet's creation: the key of all five, the address the transaction recovers to.
    let wallet = c.of(demo.wallet["wallet"].as_str().unwrap()).await;
    let created = wallet
        .iter()
        .find(|e| e["kind"] == "wallet.created")
        .unwrap();
    assert_eq!(created["body"]["address"], shown["address"]);
    let members: BTreeSet<&str> = wallet
        .iter()
        .filter(|e| e["kind"] == "mpc.join")
        .map(|e| e["producer"]["role"].as_str().unwrap())
        .collect();
    assert_eq!(members.len(), 5, "{members:?}");

    // The chain verifies from outside, hop by hop, the policy recomputed.
    let out = govern()
        .args([
            "verify",
            "request",
            request,
            "--url",
            &c.url(),
            "--keys-from",
        ])
        .arg(&c.data)
        .arg("--json")
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        v["hops"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["kind"] == "transfer.signed" && h["ok"] == true),
        "{v}"
    );

    // No signer listens: the sockets they hold are their connections to the node.
    for (i, (_, pid)) in &c.signers {
        let sockets = socket_fds(*pid);
        assert!(!sockets.is_empty(), "signer-{i} holds no socket at all");
        let listening = listening_inodes(*pid);
        assert!(
            sockets.is_disjoint(&listening),
            "signer-{i} listens: {sockets:?} ∩ {listening:?}"
        );
    }
    let node_pid = c.node.as_ref().unwrap().child.id().unwrap();
    assert!(
        !socket_fds(node_pid).is_disjoint(&listening_inodes(node_pid)),
        "the check finds the node's listening socket"
    );
    c.schemas_hold().await;
}

/// Two signers down: one committee of ten is whole, and the rotation finds it. Three down:
/// no committee is whole, every attempt times out (in the log, naming who is missing),
/// until one comes back. A member killed the moment it joined and started again aborts its
/// lost attempt, and the next committee signs: once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_down_still_signs_three_down_waits_and_a_restart_never_signs_twice() {
    let mut c = Cluster::start(|_| Vec::new()).await;
    let mut demo = c.demo(3).await;

    c.kill_signer(1).await;
    c.kill_signer(2).await;
    let first = demo.signed().await;
    check_transaction(&first, 0);
    let entries = c.of(first["request"].as_str().unwrap()).await;
    let signed = entries
        .iter()
        .find(|e| e["kind"] == "transfer.signed")
        .unwrap();
    assert_eq!(
        signed["body"]["committee"],
        json!(["signer-3", "signer-4", "signer-5"])
    );
    for abort in entries.iter().filter(|e| e["kind"] == "mpc.aborted") {
        assert_eq!(abort["body"]["reason"], "timeout", "{abort}");
    }

    c.kill_signer(3).await;
    demo.send().await;
    // The transfer is approved and waits: attempts time out, none is signed.
    let deadline = tokio::time::Instant::now() + PATIENT;
    let request = loop {
        let all = c.entries().await;
        let approved: Vec<&Value> = all
            .iter()
            .filter(|e| e["kind"] == "transfer.approved" && e["request"] != first["request"])
            .collect();
        if let Some(a) = approved.first() {
            let r = a["request"].as_str().unwrap().to_string();
            let aborts = all
                .iter()
                .filter(|e| e["request"] == r.as_str() && e["kind"] == "mpc.aborted")
                .count();
            if aborts >= 2 {
                break r;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no attempt timed out"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let waiting = c.of(&request).await;
    assert_eq!(count(&waiting, "transfer.signed"), 0);
    let abort = waiting.iter().find(|e| e["kind"] == "mpc.aborted").unwrap();
    assert_eq!(abort["body"]["reason"], "timeout", "{abort}");
    assert!(
        !abort["body"]["missing"].as_array().unwrap().is_empty(),
        "{abort}"
    );
    c.start_signer(3, &[]).await;
    let second = demo.line(SIGNED_WAIT).await;
    assert_eq!(second["last"], "transfer.signed", "{second}");
    assert_eq!(second["request"], request.as_str());
    check_transaction(&second, 1);

    // All five again; the first member to join the third transfer is killed at once and
    // started again.
    c.start_signer(1, &[]).await;
    c.start_signer(2, &[]).await;
    let before = c.entries().await.len();
    demo.send().await;
    let deadline = tokio::time::Instant::now() + PATIENT;
    let (joined, third) = loop {
        let all = c.entries().await;
        if let Some(j) = all[before..].iter().find(|e| e["kind"] == "mpc.join") {
            let role = j["producer"]["role"].as_str().unwrap();
            break (
                role.strip_prefix("signer-")
                    .unwrap()
                    .parse::<u16>()
                    .unwrap(),
                j["request"].as_str().unwrap().to_string(),
            );
        }
        assert!(tokio::time::Instant::now() < deadline, "nobody joined");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    c.kill_signer(joined).await;
    c.start_signer(joined, &[]).await;
    let shown = demo.line(SIGNED_WAIT).await;
    assert_eq!(shown["last"], "transfer.signed", "{shown}");
    assert_eq!(shown["request"], third.as_str());
    check_transaction(&shown, 2);
    // Wait for the stragglers, then count: one signature for each request.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for r in [
        &first["request"],
        &Value::from(request.as_str()),
        &Value::from(third.as_str()),
    ] {
        let entries = c.of(r.as_str().unwrap()).await;
        assert_eq!(
            count(&entries, "transfer.signed"),
            1,
            "{:?}",
            kinds(&entries)
        );
        assert_eq!(count(&entries, "transfer.quarantined"), 0);
    }
}

/// Signer 2 sends garbage and signer 4 seals to the wrong key, in every signing they join:
/// each attempt with one of them aborts naming it (and nobody else), and the one committee
/// without them signs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signer_sending_garbage_or_wrongly_sealed_messages_is_named_and_the_next_committee_signs()
{
    let mut c = Cluster::start(|i| match i {
        2 => vec![("GOVERN_TEST_MISBEHAVE", "garbage")],
        4 => vec![("GOVERN_TEST_MISBEHAVE", "wrong-seal")],
        _ => Vec::new(),
    })
    .await;
    let mut demo = c.demo(4).await;
    let mut named = BTreeSet::new();
    for nonce in 0..4 {
        let shown = demo.signed().await;
        check_transaction(&shown, nonce);
        let entries = c.of(shown["request"].as_str().unwrap()).await;
        let signed = entries
            .iter()
            .find(|e| e["kind"] == "transfer.signed")
            .unwrap();
        assert_eq!(
            signed["body"]["committee"],
            json!(["signer-1", "signer-3", "signer-5"])
        );
        for abort in entries.iter().filter(|e| e["kind"] == "mpc.aborted") {
            if let Some(culprit) = abort["body"]["culprit"].as_str() {
                assert!(["signer-2", "signer-4"].contains(&culprit), "{abort}");
                assert_eq!(abort["body"]["reason"], "bad-message", "{abort}");
                named.insert(culprit.to_string());
            }
        }
        if named.len() == 2 {
            break;
        }
    }
    assert_eq!(named.len(), 2, "both culprits named: {named:?}");
    c.kill_signer(2).await;
    c.schemas_hold().await;
}

/// An approval forged straight into the store (the node stopped, the entries written with
/// the log's own key, bypassing every check at append) by a key no attestation binds: each
/// signer's chain check fails on it, each appends `transfer.quarantined` naming the hop and
/// the log's code, and nothing is joined or signed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_forged_into_the_store_is_quarantined_not_signed() {
    use govern_core::event::{Event, Kind, Producer, Role, SignedEvent, TenantId, Timestamp};
    use govern_core::ids::LeafHash;

    let mut c = Cluster::start(|_| Vec::new()).await;
    let mut demo = c.demo(1).await;
    // Nobody decides the next transfer: it waits at transfer.requested.
    c.kill_policy().await;
    let before = c.entries().await.len();
    demo.send().await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let requested = loop {
        let all = c.entries().await;
        if let Some(r) = all[before..]
            .iter()
            .find(|e| e["kind"] == "transfer.requested")
        {
            break r.clone();
        }
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let all = c.entries().await;
    let index = all.iter().position(|e| e == &requested).unwrap();
    let data = c.data.clone();
    let leaf_of = |i: usize| -> LeafHash {
        let bytes = c_entry_bytes(&data, i as u64);
        SignedEvent::from_bytes(&bytes).unwrap().leaf_hash()
    };
    c.stop_node().await;
    let subject = leaf_of(index);
    let policy_attestation = all
        .iter()
        .enumerate()
        .rev()
        .find(|(_, e)| e["kind"] == "service.attested" && e["producer"]["role"] == "policy")
        .map(|(i, _)| leaf_of(i))
        .unwrap();
    let tenant = TenantId(uuid::Uuid::parse_str(requested["tenant"].as_str().unwrap()).unwrap());
    let request = govern_core::event::RequestId(
        uuid::Uuid::parse_str(requested["request"].as_str().unwrap()).unwrap(),
    );
    let rogue = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
    let producer = Producer {
        role: Role::new("policy").unwrap(),
        key: govern_core::event::PublicKey::from(&rogue.verifying_key()),
    };
    let sign = |kind: &str, parents: Vec<LeafHash>, body: Value| {
        let Value::Object(body) = body else { panic!() };
        let mut e = Event::new(
            Kind::new(kind).unwrap(),
            tenant,
            request,
            producer.clone(),
            Timestamp::now(),
            body,
        );
        e.parents = parents;
        e.attestation = Some(policy_attestation);
        e.sign(&rogue).unwrap()
    };
    let evaluated = sign(
        "policy.evaluated",
        vec![subject],
        json!({"outcome": "allow", "subject": subject.to_hex()}),
    );
    let approved = sign(
        "transfer.approved",
        vec![evaluated.leaf_hash()],
        json!({"evaluation": evaluated.leaf_hash().to_hex(), "reason": "allowed", "approvals": []}),
    );
    support::forge(&c.data, &[evaluated, approved]).await;
    c.start_node().await;

    let deadline = tokio::time::Instant::now() + PATIENT;
    let entries = loop {
        let entries = c.of(&request.0.to_string()).await;
        if count(&entries, "transfer.quarantined") >= 3 {
            break entries;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not quarantined: {:?}\n{}",
            kinds(&entries),
            c.log("signer-1")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let q = entries
        .iter()
        .find(|e| e["kind"] == "transfer.quarantined")
        .unwrap();
    assert_eq!(q["body"]["kind"], "policy.evaluated", "{q}");
    assert_eq!(q["body"]["reason"], "producer-key-mismatch", "{q}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let entries = c.of(&request.0.to_string()).await;
    assert_eq!(count(&entries, "mpc.join"), 0, "{:?}", kinds(&entries));
    assert_eq!(count(&entries, "transfer.signed"), 0);
    let _ = demo.child.kill().await;
}

/// The raw bytes of entry `index` of the stopped node's store.
fn c_entry_bytes(data: &Path, index: u64) -> Vec<u8> {
    let dir = govern_api::DataDir::open_existing(data).unwrap();
    let storage = govern_store::RocksStorage::open_read_only(&dir.db_path()).unwrap();
    let reader = govern_store::LogReader::open(storage).unwrap();
    reader.entry(govern_core::ids::LeafIndex(index)).unwrap()
}

/// A policy identity that lies (attested, live, well formed): the transfer that needs an
/// approval it reports allowed and approves. The log takes it; each signer recomputes the
/// outcome, finds the mismatch, and quarantines the transfer with `policy-mismatch`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lying_policy_outcome_is_quarantined_not_signed() {
    let mut c = Cluster::start(|_| Vec::new()).await;
    let mut demo = c.demo(1).await;
    c.kill_policy().await;
    let mut liar =
        support::liar::Liar::attest(&c.url(), &c.data, &c.tmp.path().join("liar"), None).await;
    demo.send().await;
    let deadline = tokio::time::Instant::now() + PATIENT;
    while liar.lied.is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "no lie told");
        liar.round().await;
    }
    let request = liar.lied[0].0.to_string();
    let entries = loop {
        let entries = c.of(&request).await;
        if count(&entries, "transfer.quarantined") >= 3 {
            break entries;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{:?}",
            kinds(&entries)
        );
        liar.round().await;
    };
    let q = entries
        .iter()
        .find(|e| e["kind"] == "transfer.quarantined")
        .unwrap();
    assert_eq!(q["body"]["reason"], "policy-mismatch", "{q}");
    assert_eq!(count(&entries, "mpc.join"), 0);
    assert_eq!(count(&entries, "transfer.signed"), 0);
    let _ = demo.child.kill().await;
    c.schemas_hold().await;
}

/// With a presignature per wallet and committee made ahead (over the log, in the signers'
/// memory only), a transfer is signed in one round: its three members offer the same
/// presignature in their joins, and the signing is their three partial signatures, each a
/// broadcast. A presignature is offered once: no signer offers one in two signings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_warm_pool_a_transfer_is_signed_in_one_round_and_no_presignature_is_used_twice() {
    let c = Cluster::start(|_| vec![("GOVERN_SIGNER_PRESIGNATURES", "1")]).await;
    let mut demo = c.demo(2).await;
    // The pool: ten runs (one per committee) of three joins each, then quiet.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(240);
    loop {
        let all = c.entries().await;
        let mut runs: BTreeMap<&str, usize> = BTreeMap::new();
        for e in all.iter().filter(|e| e["body"]["purpose"] == "presign") {
            *runs
                .entry(e["body"]["session"].as_str().unwrap())
                .or_default() += 1;
        }
        let whole = runs.values().filter(|n| **n == 3).count();
        if whole >= 10 {
            // Quiet: the runs' last messages are in.
            tokio::time::sleep(Duration::from_secs(2)).await;
            if c.entries().await.len() == all.len() {
                break;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the pool did not fill: {whole} runs of 10"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let mut offered: BTreeSet<(String, String, u64)> = BTreeSet::new();
    for nonce in 0..2 {
        let shown = demo.signed().await;
        check_transaction(&shown, nonce);
        let entries = c.of(shown["request"].as_str().unwrap()).await;
        let signed = entries
            .iter()
            .find(|e| e["kind"] == "transfer.signed")
            .unwrap();
        let session = &signed["body"]["session"];
        let joins: Vec<&Value> = entries
            .iter()
            .filter(|e| e["kind"] == "mpc.join" && e["body"]["session"] == *session)
            .collect();
        assert_eq!(joins.len(), 3);
        if nonce == 0 {
            // The first signing finds the pool full: one round.
            let seq = &joins[0]["body"]["presignature"];
            assert!(seq.is_u64(), "{}", joins[0]);
            assert!(joins.iter().all(|j| j["body"]["presignature"] == *seq));
            let messages: Vec<&Value> = entries
                .iter()
                .filter(|e| e["kind"] == "mpc.message" && e["body"]["session"] == *session)
                .collect();
            assert_eq!(messages.len(), 3, "three partial signatures");
            assert!(messages.iter().all(|m| m["body"]["to"] == "all"));
        }
        for j in entries.iter().filter(|e| e["kind"] == "mpc.join") {
            if let Some(seq) = j["body"]["presignature"].as_u64() {
                let key = (
                    j["producer"]["role"].as_str().unwrap().to_string(),
                    j["body"]["committee"].to_string(),
                    seq,
                );
                assert!(offered.insert(key.clone()), "offered twice: {key:?}");
            }
        }
    }
    c.schemas_hold().await;
}
