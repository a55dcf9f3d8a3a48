//! Witnesses as separate processes (`govern witness`), attacked as a hostile sequencer would:
//! a split view, an inconsistent checkpoint, a restart, a lost state, malformed requests;
//! then a node submitting to three of them under a 2-of-3 policy.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use govern_core::checkpoint::Checkpoint;
use govern_core::ids::{LeafHash, TreeSize};
use govern_core::merkle::{self, MemoryTree};
use govern_core::note::{Note, NoteSigner};
use govern_core::witness::{
    AddCheckpoint, PolicyFile, PolicyWitness, WitnessPolicy, add_cosignatures,
};
use support::{
    PATIENCE, WitnessProc, append, govern, size_of, witness, witness_on, witnessed_at_least,
};
use tokio::io::{AsyncBufReadExt, BufReader};

const ORIGIN: &str = "test.example/log";

fn tree(n: u64, fork_from: u64) -> MemoryTree {
    (0..n)
        .map(|i| {
            let tag: &[u8] = if i >= fork_from { b"fork" } else { b"main" };
            merkle::hash_leaf(&[&i.to_be_bytes()[..], tag].concat())
        })
        .collect::<Vec<LeafHash>>()
        .into_iter()
        .collect()
}

fn note(key: &NoteSigner, t: &MemoryTree) -> String {
    Checkpoint::new(ORIGIN, t.size(), t.root())
        .sign(key)
        .unwrap()
}

fn body(old: u64, t: &MemoryTree, key: &NoteSigner) -> Vec<u8> {
    let proof = if old == 0 || old >= t.size().0 {
        Vec::new()
    } else {
        merkle::consistency_proof(t, TreeSize(old), t.size()).unwrap()
    };
    AddCheckpoint {
        old_size: TreeSize(old),
        proof,
        checkpoint: note(key, t).into_bytes(),
    }
    .encode()
}

/// POST `body` to a witness: status, content type, answer.
async fn post(url: &str, body: Vec<u8>) -> (u16, String, String) {
    let r = reqwest::Client::new()
        .post(format!("{url}/add-checkpoint"))
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, ct, r.text().await.unwrap())
}

fn policy(ws: &[&WitnessProc], k: usize) -> WitnessPolicy {
    WitnessPolicy::from_file(&PolicyFile {
        quorum: k,
        witnesses: ws
            .iter()
            .map(|w| PolicyWitness {
                vkey: w.vkey.clone(),
                url: None,
            })
            .collect(),
    })
    .unwrap()
}

/// `note` with the lines witnesses answered.
fn cosigned(note: &str, lines: &[String]) -> Note {
    Note::parse(add_cosignatures(note, lines).unwrap().as_bytes()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn witnesses_refuse_split_views_keep_their_state_and_never_cosign_a_rollback() {
    let tmp = tempfile::tempdir().unwrap();
    let key = NoteSigner::new(ORIGIN, SigningKey::from_bytes(&[5; 32])).unwrap();
    let vkey = key.verifier_key();
    let mut ws = Vec::new();
    for i in 1..=3 {
        let dir = tmp.path().join(format!("w{i}"));
        ws.push(
            witness(&dir, &format!("test.example/w{i}"), &vkey)
                .await
                .unwrap(),
        );
    }
    let urls: Vec<String> = ws.iter().map(|w| w.url.clone()).collect();

    // Everyone cosigns the honest tree at 10, then at 20.
    let honest10 = tree(10, u64::MAX);
    let honest20 = tree(20, u64::MAX);
    for url in &urls {
        let (st, ct, text) = post(url, body(0, &honest10, &key)).await;
        assert_eq!(
            (st, ct.as_str()),
            (200, "text/plain; charset=utf-8"),
            "{text}"
        );
        assert!(
            text.starts_with("\u{2014} test.example/w") && text.ends_with('\n'),
            "{text:?}"
        );
    }
    let mut lines = Vec::new();
    for url in &urls[..2] {
        let (st, _, text) = post(url, body(10, &honest20, &key)).await;
        assert_eq!(st, 200, "{text}");
        lines.push(text);
    }
    let honest_note = note(&key, &honest20);
    let c = policy(&[&ws[0], &ws[1], &ws[2]], 2)
        .check(&cosigned(&honest_note, &lines))
        .unwrap();
    assert_eq!(c.signed.len(), 2);

    // A split view: the same key signs another tree of size 20 (forked after entry 10).
    let fork20 = tree(20, 10);
    let fork_note = note(&key, &fork20);
    let mut fork_lines = Vec::new();
    // The two that cosigned the honest 20 refuse it at the same size (409, their size) and
    // from 10 (409: their size is 20).
    for url in &urls[..2] {
        for old in [20, 10] {
            let (st, ct, text) = post(url, body(old, &fork20, &key)).await;
            assert_eq!(
                (st, ct.as_str(), text.as_str()),
                (409, "text/x.tlog.size", "20\n")
            );
        }
    }
    // The third, still at 10, cannot tell: the fork extends what it saw. It cosigns.
    let (st, _, text) = post(&urls[2], body(10, &fork20, &key)).await;
    assert_eq!(st, 200);
    fork_lines.push(text);
    // So the fork has one cosignature of a 2-of-3 policy: never a quorum, while the honest
    // tree has one. Two conflicting trees can never both reach 2 of 3.
    let err = policy(&[&ws[0], &ws[1], &ws[2]], 2)
        .check(&cosigned(&fork_note, &fork_lines))
        .unwrap_err();
    assert!(err.to_string().contains("1 of the 2"), "{err}");
    // A checkpoint inconsistent with an earlier one: the fork grown to 30, with its own
    // (valid for the fork) proof from 20, is refused by the honest witnesses (422)...
    let fork30 = tree(30, 10);
    for url in &urls[..2] {
        let (st, _, text) = post(url, body(20, &fork30, &key)).await;
        assert_eq!(st, 422, "{text}");
    }
    // ...and the honest 30 by the witness the fork misled (422), which now holds the fork.
    let honest30 = tree(30, u64::MAX);
    let (st, _, _) = post(&urls[2], body(20, &honest30, &key)).await;
    assert_eq!(st, 422);

    // The rest of the spec's codes, and malformed bodies: typed answers, never a crash.
    let other = NoteSigner::new("other.example/log", SigningKey::from_bytes(&[6; 32])).unwrap();
    let stranger = NoteSigner::new(ORIGIN, SigningKey::from_bytes(&[7; 32])).unwrap();
    let unknown = AddCheckpoint {
        old_size: TreeSize(0),
        proof: vec![],
        checkpoint: Checkpoint::new("other.example/log", TreeSize(1), tree(1, 9).root())
            .sign(&other)
            .unwrap()
            .into_bytes(),
    }
    .encode();
    let cases: Vec<(Vec<u8>, u16)> = vec![
        (unknown, 404),
        (body(20, &honest30, &stranger), 403),
        (body(31, &honest30, &key), 400),
        (b"old 1\n".to_vec(), 400),
        (b"old 01\n\nx\n".to_vec(), 400),
        (b"\n\n".to_vec(), 400),
        (vec![0xff; 100], 400),
        (
            [
                b"old 20\nnot-base64!\n\n".as_slice(),
                note(&key, &honest30).as_bytes(),
            ]
            .concat(),
            400,
        ),
        (
            [
                b"old 20\n\n".as_slice(),
                b"test.example/log\n30\nxx\n\n\xe2\x80\x94 a b\n",
            ]
            .concat(),
            400,
        ),
        (vec![b'a'; 300_000], 413),
    ];
    for (b, want) in cases {
        let preview = String::from_utf8_lossy(&b[..b.len().min(40)]).into_owned();
        let (st, _, text) = post(&urls[0], b).await;
        assert_eq!(st, want, "{preview:?}: {text}");
    }
    let r = reqwest::get(format!("{}/add-checkpoint", urls[0]))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 405);

    // Restarted mid-stream (SIGKILL), a witness keeps its state: old 0 gets 409 with its
    // size, and it goes on from there.
    let w1_dir = tmp.path().join("w1");
    let mut w1 = ws.remove(0);
    let w1_vkey = w1.vkey.clone();
    w1.child.kill().await.unwrap();
    let w1 = witness(&w1_dir, "test.example/w1", &vkey).await.unwrap();
    let info: serde_json::Value = reqwest::get(&w1.url).await.unwrap().json().await.unwrap();
    assert_eq!(info["logs"][ORIGIN], 20, "{info}");
    assert_eq!(
        (info["vkey"].as_str(), w1.vkey.as_str()),
        (Some(w1_vkey.as_str()), w1_vkey.as_str())
    );
    let (st, _, text) = post(&w1.url, body(0, &honest30, &key)).await;
    assert_eq!((st, text.as_str()), (409, "20\n"));
    let (st, _, _) = post(&w1.url, body(20, &honest30, &key)).await;
    assert_eq!(st, 200);

    // A witness that lost its state refuses to start rather than cosign from nothing.
    let w2_dir = tmp.path().join("w2");
    let mut w2 = ws.remove(0);
    w2.child.kill().await.unwrap();
    std::fs::remove_file(w2_dir.join("state.json")).unwrap();
    let err = witness(&w2_dir, "test.example/w2", &vkey)
        .await
        .err()
        .expect("refused");
    assert!(err.contains("lost the record"), "{err}");
    // Started over in a new data dir it is a new key: it cosigns the rollback to the fork at
    // 20 (it knows nothing), but no policy that lists the old w2 counts it.
    let w2_new = witness(&tmp.path().join("w2-new"), "test.example/w2", &vkey)
        .await
        .unwrap();
    assert_ne!(w2_new.vkey, w2.vkey);
    let (st, _, line) = post(&w2_new.url, body(0, &fork20, &key)).await;
    assert_eq!(st, 200);
    let policy = policy(&[&w1, &w2, &ws[0]], 2);
    let c = policy.cosigners(&cosigned(&fork_note, &[fork_lines[0].clone(), line]));
    assert_eq!(c.signed.len(), 1, "{c:?}");
    assert!(!c.has_quorum());
}

async fn get_text(url: &str) -> (u16, String) {
    let r = reqwest::get(url).await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_serves_checkpoints_cosigned_by_a_quorum_and_appends_never_wait() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let log_vkey = govern_api::DataDir::open(&data, None)
        .unwrap()
        .verifier_key();
    let mut ws = Vec::new();
    for i in 1..=3 {
        let dir = tmp.path().join(format!("w{i}"));
        ws.push(
            witness(&dir, &format!("test.example/w{i}"), &log_vkey)
                .await
                .unwrap(),
        );
    }
    let file = support::witness_policy(&ws, 2);
    let policy_path = tmp.path().join("witnesses.toml");
    std::fs::write(&policy_path, toml::to_string(&file).unwrap()).unwrap();
    let policy = WitnessPolicy::from_file(&file).unwrap();
    let p = policy_path.to_str().unwrap();
    let node = support::start_with(
        &data,
        "127.0.0.1:0",
        &tmp.path().join("node.err"),
        &["--witnesses", p],
    )
    .await
    .unwrap();
    let verifier = govern_core::note::NoteVerifier::parse(&log_vkey).unwrap();

    // Appends; then /checkpoint reaches their size with at least 2 valid cosignatures.
    let size = support::fill(&node, &data, "a", 40).await;
    let served = witnessed_at_least(&node.url, size).await;
    let (cp, parsed) = Checkpoint::open(served.as_bytes(), verifier.name(), &verifier).unwrap();
    assert_eq!(cp.size.0, size);
    assert!(policy.check(&parsed).unwrap().signed.len() >= 2);
    let info: serde_json::Value = reqwest::get(format!("{}/v1/log", node.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["witnesses"]["quorum"], 2, "{info}");
    // `govern verify log` checks the cosignatures under a pinned policy.
    let out = govern()
        .args([
            "verify",
            "log",
            "--url",
            &node.url,
            "--witnesses",
            p,
            "--state",
        ])
        .arg(tmp.path().join("verify.json"))
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("witnessed: cosigned by test.example/w"),
        "{stdout}"
    );

    // One witness down: two are a quorum still.
    let mut w3 = ws.pop().unwrap();
    w3.child.kill().await.unwrap();
    let size = size + append(&node, &data, "b", 30).await;
    let served = witnessed_at_least(&node.url, size).await;
    assert_eq!(size_of(&served), size);

    // Two down: appends still succeed at once, but /checkpoint stays at the last quorum.
    let mut w2 = ws.pop().unwrap();
    w2.child.kill().await.unwrap();
    let witnessed = size;
    let size = size + append(&node, &data, "c", 20).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (_, served) = get_text(&format!("{}/checkpoint", node.url)).await;
    assert_eq!(
        size_of(&served),
        witnessed,
        "a checkpoint without a quorum was served"
    );
    let st: serde_json::Value = reqwest::get(format!("{}/v1/state", node.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(st["size"], size);

    // The export carries the cosigned checkpoints and the replay reports who cosigned what.
    let export = tmp.path().join("export");
    let out = govern()
        .args(["export"])
        .arg(&export)
        .args(["--url", &node.url])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = replay(&export, &tmp.path().join("fresh"), &data, p).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let replayed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(replayed["size"], witnessed, "{replayed}");
    assert_eq!(
        replayed["witnessed"]["latest_size"], witnessed,
        "{replayed}"
    );
    assert_eq!(
        replayed["witnessed"]["by_witness"]["test.example/w1"][1],
        witnessed
    );
    // A flipped byte in a cosignature is refused, naming the checkpoint.
    let bad = tmp.path().join("bad");
    std::fs::create_dir(&bad).unwrap();
    support::copy_dir(&export, &bad);
    let cp_path = bad.join(format!("checkpoints/{witnessed}"));
    let text = std::fs::read_to_string(&cp_path).unwrap();
    let last = text.trim_end().rsplit('\n').next().unwrap().to_owned();
    let (head, sig) = last.rsplit_once(' ').unwrap();
    let mut sig = sig.as_bytes().to_vec();
    sig[20] = if sig[20] == b'A' { b'B' } else { b'A' };
    let tampered = text.replace(
        &last,
        &format!("{head} {}", String::from_utf8(sig).unwrap()),
    );
    std::fs::write(&cp_path, tampered).unwrap();
    let out = replay(&bad, &tmp.path().join("fresh-bad"), &data, p).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains(&format!("checkpoints/{witnessed}")),
        "{err}"
    );

    // Restarted with every witness down, the node serves the quorum checkpoint it stored.
    node.kill().await;
    let node = support::start_with(
        &data,
        "127.0.0.1:0",
        &tmp.path().join("node2.err"),
        &["--witnesses", p],
    )
    .await
    .unwrap();
    let (st, served) = get_text(&format!("{}/checkpoint", node.url)).await;
    assert_eq!((st, size_of(&served)), (200, witnessed));
    assert!(
        policy
            .check(&Note::parse(served.as_bytes()).unwrap())
            .is_ok()
    );
    drop(ws);
}

/// `govern replay EXPORT --data-dir FRESH --json` with the witness policy `policy` and the
/// trust of the data dir `data` pinned.
async fn replay(export: &Path, fresh: &Path, data: &Path, policy: &str) -> std::process::Output {
    govern()
        .arg("replay")
        .arg(export)
        .arg("--data-dir")
        .arg(fresh)
        .args(["--witnesses", policy, "--json", "--signers"])
        .arg(data.join("manifest-signers.toml"))
        .arg("--dev-root")
        .arg(data.join("dev-ca/root.der"))
        .output()
        .await
        .unwrap()
}

/// `govern up` starts three witness processes, a node that serves only checkpoints that two
/// of them cosigned, and the policy worker; stopping it stops them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn govern_up_runs_three_witnesses_with_a_two_of_three_policy() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut child = govern()
        .arg("up")
        .arg("--data-dir")
        .arg(&data)
        .args(["--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut url = None;
    let mut witness_lines = 0;
    tokio::time::timeout(PATIENCE, async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(rest) = line.strip_prefix("govern node listening on ") {
                url = rest.split_whitespace().next().map(str::to_owned);
            }
            if line.starts_with("witness govern.localhost/witness-") {
                witness_lines += 1;
            }
            if line.starts_with("Ctrl-C") {
                break;
            }
        }
    })
    .await
    .expect("govern up starts");
    let url = url.expect("the node's address");
    assert_eq!(witness_lines, 3);
    let text = std::fs::read_to_string(data.join("witnesses.toml")).unwrap();
    let file: PolicyFile = toml::from_str(&text).unwrap();
    assert_eq!((file.quorum, file.witnesses.len()), (2, 3));
    let policy = WitnessPolicy::from_file(&file).unwrap();
    // The demo entry (index 4) is witnessed: size 5 with 2 of 3 cosignatures.
    let served = witnessed_at_least(&url, 5).await;
    assert!(
        policy
            .check(&Note::parse(served.as_bytes()).unwrap())
            .unwrap()
            .signed
            .len()
            >= 2
    );
    let processes = |what: &str| {
        std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| {
                let cmd = std::fs::read(e.ok()?.path().join("cmdline")).ok()?;
                let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
                (cmd.contains(what) && cmd.contains(data.to_str().unwrap())).then_some(cmd)
            })
            .count()
    };
    let witness_pids = || processes(" witness ");
    let worker_pids = || processes(" worker policy ");
    let signer_pids = || processes(" worker signer ");
    assert_eq!(witness_pids(), 3);
    // The policy worker and the five signers are processes of their own, attested (and the
    // signers holding aux info) before `govern up` said it is up.
    assert_eq!(worker_pids(), 1);
    assert_eq!(signer_pids(), 5);
    let services: serde_json::Value = reqwest::get(format!("{url}/v1/services"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        services["services"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["role"] == "policy"),
        "{services}"
    );
    for i in 1..=5 {
        let role = format!("signer-{i}");
        assert_eq!(services["aux"][&role]["stage"], "ready", "{services}");
    }
    assert!(services["aux_ready"].is_string(), "{services}");
    let pid = child.id().unwrap().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    tokio::time::timeout(PATIENCE, child.wait())
        .await
        .unwrap()
        .unwrap();
    let until = tokio::time::Instant::now() + PATIENCE;
    while witness_pids() > 0 || worker_pids() > 0 || signer_pids() > 0 {
        assert!(
            tokio::time::Instant::now() < until,
            "the witnesses or a worker outlived govern up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `govern verify log|request` with `args`, `--url url --state state`: success, stdout,
/// stderr.
async fn verify(what: &[&str], url: &str, state: &Path, args: &[&str]) -> (bool, String, String) {
    let out = govern()
        .arg("verify")
        .args(what)
        .args(["--url", url, "--state"])
        .arg(state)
        .args(args)
        .output()
        .await
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// A copy of the export `from` at `to`, its `v1/log` and `checkpoint` changed by `edit`.
fn forge(
    from: &Path,
    to: &Path,
    edit: impl FnOnce(&mut serde_json::Value, &mut String),
) -> std::path::PathBuf {
    std::fs::create_dir_all(to).unwrap();
    support::copy_dir(from, to);
    let mut info: serde_json::Value =
        serde_json::from_slice(&std::fs::read(to.join("v1/log")).unwrap()).unwrap();
    let mut note = std::fs::read_to_string(to.join("checkpoint")).unwrap();
    edit(&mut info, &mut note);
    std::fs::write(to.join("v1/log"), info.to_string()).unwrap();
    std::fs::write(to.join("checkpoint"), note).unwrap();
    to.to_path_buf()
}

/// `k of [name+<key ID>, …]`, as the verifier names a policy.
fn summary(policy: &WitnessPolicy) -> String {
    govern_client::witness::summary(policy)
}

/// `verify log` remembers the witness policy it checked with the log's key. A node (or a
/// copy of its export) that later announces no policy, or a weaker one, is refused unless
/// `--witnesses` names the policy to use (then that one is remembered); a stronger one is
/// taken and remembered. `verify request` reads the same state: it refuses the weaker policy
/// and a log that shows another key, which it used to take from the node at every run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verifiers_pin_the_witness_policy_with_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let dir = govern_api::DataDir::open(&data, None).unwrap();
    let (log_vkey, origin) = (dir.verifier_key(), dir.origin().to_string());
    drop(dir);
    let mut ws = Vec::new();
    for i in 1..=3 {
        let dir = tmp.path().join(format!("w{i}"));
        ws.push(
            witness(&dir, &format!("test.example/w{i}"), &log_vkey)
                .await
                .unwrap(),
        );
    }
    let policy_file = |k: usize, urls: bool| PolicyFile {
        quorum: k,
        witnesses: ws
            .iter()
            .map(|w| PolicyWitness {
                vkey: w.vkey.clone(),
                url: urls.then(|| w.url.clone()),
            })
            .collect(),
    };
    let two_of_three = tmp.path().join("2-of-3.toml");
    std::fs::write(
        &two_of_three,
        toml::to_string(&policy_file(2, true)).unwrap(),
    )
    .unwrap();
    let one_of_three = tmp.path().join("1-of-3.toml");
    std::fs::write(
        &one_of_three,
        toml::to_string(&policy_file(1, false)).unwrap(),
    )
    .unwrap();
    let strong = summary(&WitnessPolicy::from_file(&policy_file(2, false)).unwrap());
    let weak = summary(&WitnessPolicy::from_file(&policy_file(1, false)).unwrap());
    let node = support::start_with(
        &data,
        "127.0.0.1:0",
        &tmp.path().join("node.err"),
        &["--witnesses", two_of_three.to_str().unwrap()],
    )
    .await
    .unwrap();
    let size = support::fill(&node, &data, "pin", 8).await;
    witnessed_at_least(&node.url, size).await;

    // First run: the key and the announced 2-of-3 policy, remembered together.
    let state = tmp.path().join("verify.json");
    let (ok, out, err) = verify(&["log"], &node.url, &state, &[]).await;
    assert!(ok, "{out}{err}");
    assert!(out.contains("policy announced by the node)"), "{out}");
    let remembered: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    assert_eq!(remembered["verifier_key"], log_vkey.as_str());
    assert_eq!(remembered["witnesses"]["quorum"], 2, "{remembered}");
    assert_eq!(
        remembered["witnesses"]["witness"].as_array().unwrap().len(),
        3
    );
    // Again: the same policy, as remembered.
    let (ok, out, err) = verify(&["log"], &node.url, &state, &[]).await;
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("policy announced by the node, as remembered)"),
        "{out}"
    );

    // Copies of the export, served as a mirror would, each announcing less.
    let export = tmp.path().join("export");
    let out = govern()
        .arg("export")
        .arg(&export)
        .args(["--url", &node.url])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log_line = format!("\u{2014} {origin} ");
    // No policy, and the checkpoint with the log's signature alone.
    let bare = forge(&export, &tmp.path().join("bare"), |info, note| {
        info.as_object_mut().unwrap().remove("witnesses");
        *note = note
            .lines()
            .filter(|l| !l.starts_with('\u{2014}') || l.starts_with(&log_line))
            .map(|l| format!("{l}\n"))
            .collect();
    });
    let bare = support::serve(bare).await;
    // 1 of the 3, which the served checkpoint meets.
    let weaker = forge(&export, &tmp.path().join("weaker"), |info, _| {
        info["witnesses"]["quorum"] = 1.into();
    });
    let weaker = support::serve(weaker).await;
    let no_policy = format!(
        "error: the node announces no witness policy, but {strong} was checked when last verified; pass --witnesses FILE to verify under another\n"
    );
    let weaker_policy = format!(
        "error: the node announces the witness policy {weak}, weaker than {strong} checked when last verified; pass --witnesses FILE to verify under another\n"
    );
    let before = std::fs::read(&state).unwrap();
    let (ok, out, err) = verify(&["log"], &bare, &state, &[]).await;
    assert!(!ok, "a log announcing no policy passed: {out}");
    assert_eq!(err, no_policy);
    let (ok, out, err) = verify(&["log"], &weaker, &state, &[]).await;
    assert!(!ok, "a log announcing a weaker policy passed: {out}");
    assert_eq!(err, weaker_policy);
    assert_eq!(
        std::fs::read(&state).unwrap(),
        before,
        "a refused run wrote the state"
    );

    // verify request reads the same state: refused alike.
    let entry: serde_json::Value = reqwest::get(format!("{}/v1/entries/{}", node.url, size - 1))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let request = entry["request"].as_str().unwrap();
    let (ok, out, err) = verify(&["request", request], &node.url, &state, &[]).await;
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("witnessed: cosigned by test.example/w"),
        "{out}"
    );
    assert!(out.ends_with("verdict: ok\n"), "{out}");
    let (ok, out, err) = verify(&["request", request], &bare, &state, &[]).await;
    assert!(!ok, "verify request took a log announcing no policy: {out}");
    assert_eq!(err, no_policy);
    let (ok, out, err) = verify(&["request", request], &weaker, &state, &[]).await;
    assert!(!ok, "verify request took a weaker policy: {out}");
    assert_eq!(err, weaker_policy);
    // A copy whose checkpoint another key signed (the witnesses' cosignatures still verify:
    // they are over the same checkpoint), announcing that key.
    let other = NoteSigner::new(&origin, SigningKey::from_bytes(&[9; 32])).unwrap();
    let other_vkey = other.verifier_key();
    let resigned = forge(&export, &tmp.path().join("resigned"), |info, note| {
        info["verifier_key"] = other_vkey.clone().into();
        let (body, sigs) = note.split_once("\n\n").unwrap();
        let cp = Checkpoint::parse_body(&format!("{body}\n")).unwrap();
        let cosignatures: Vec<String> = sigs
            .lines()
            .filter(|l| !l.starts_with(&log_line))
            .map(|l| format!("{l}\n"))
            .collect();
        let signed = Checkpoint::new(&origin, cp.size, cp.root)
            .sign(&other)
            .unwrap();
        *note = add_cosignatures(&signed, &cosignatures).unwrap();
    });
    let resigned = support::serve(resigned).await;
    let other_key =
        format!("error: the node announces the log key {other_vkey}, not the pinned {log_vkey}\n");
    let (ok, out, err) = verify(&["request", request], &resigned, &state, &[]).await;
    assert!(!ok, "verify request took another key: {out}");
    assert_eq!(err, other_key);
    let (ok, out, err) = verify(&["log"], &resigned, &state, &[]).await;
    assert!(!ok, "{out}");
    assert_eq!(err, other_key);
    // Given that key, it is not the remembered one.
    let (ok, out, err) = verify(
        &["request", request],
        &resigned,
        &state,
        &["--key", &other_vkey],
    )
    .await;
    assert!(!ok, "{out}");
    assert_eq!(
        err,
        format!("error: the log's key was {log_vkey} when last verified, not {other_vkey}\n")
    );

    // --witnesses names the policy: the weaker one is used, and remembered.
    let one = one_of_three.to_str().unwrap();
    let (ok, out, err) = verify(
        &["request", request],
        &weaker,
        &state,
        &["--witnesses", one],
    )
    .await;
    assert!(ok, "{out}{err}");
    assert!(out.contains("; policy pinned)"), "{out}");
    assert_eq!(
        std::fs::read(&state).unwrap(),
        before,
        "verify request wrote the state"
    );
    let (ok, out, err) = verify(&["log"], &weaker, &state, &["--witnesses", one]).await;
    assert!(ok, "{out}{err}");
    let remembered: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    assert_eq!(remembered["witnesses"]["quorum"], 1, "{remembered}");
    // Still not nothing; and the node's 2 of 3 is stronger: taken, and remembered.
    let (ok, _, err) = verify(&["log"], &bare, &state, &[]).await;
    assert!(!ok);
    assert!(
        err.contains("announces no witness policy, but 1 of ["),
        "{err}"
    );
    let (ok, out, err) = verify(&["log"], &node.url, &state, &[]).await;
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("policy announced by the node, stronger than the one remembered)"),
        "{out}"
    );
    let remembered: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    assert_eq!(remembered["witnesses"]["quorum"], 2, "{remembered}");
    node.kill().await;
    drop(ws);
}

async fn status_size(data: &Path) -> u64 {
    let out = govern()
        .args(["status", "--json", "--data-dir"])
        .arg(data)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["size"].as_u64().unwrap()
}

/// A backup restored while the original went on under a witness: the copy refuses to start
/// and appends nothing; started while the witness is unreachable, it stops appending as soon
/// as the witness tells of the larger tree (no fork is ever cosigned).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_copy_of_a_witnessed_log_cannot_append() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let log_vkey = govern_api::DataDir::open(&data, None)
        .unwrap()
        .verifier_key();
    let w_dir = tmp.path().join("w1");
    let w = witness(&w_dir, "test.example/w1", &log_vkey).await.unwrap();
    let listen = w.url.trim_start_matches("http://").to_owned();
    let file = PolicyFile {
        quorum: 1,
        witnesses: vec![PolicyWitness {
            vkey: w.vkey.clone(),
            url: Some(w.url.clone()),
        }],
    };
    let policy_path = tmp.path().join("witnesses.toml");
    std::fs::write(&policy_path, toml::to_string(&file).unwrap()).unwrap();
    let p = policy_path.to_str().unwrap();
    let start = |data: std::path::PathBuf, err: &str| {
        let err = tmp.path().join(err);
        async move { support::start_with(&data, "127.0.0.1:0", &err, &["--witnesses", p]).await }
    };

    // The original: cosigned at its size, then backed up.
    let node = start(data.clone(), "a1.err").await.unwrap();
    let size = support::BOOT_ENTRIES + append(&node, &data, "a", 3).await;
    witnessed_at_least(&node.url, size).await;
    node.kill().await;
    let stale = tmp.path().join("stale");
    support::copy_dir(&data, &stale);
    // It goes on: a restart (three attestations) and more appends, cosigned.
    let node = start(data.clone(), "a2.err").await.unwrap();
    let newer = size + 3 + append(&node, &data, "b", 4).await;
    witnessed_at_least(&node.url, newer).await;
    node.kill().await;

    // The restored copy: refused before anything is written.
    let Err(err) = start(stale.clone(), "stale1.err").await else {
        panic!("the stale copy started");
    };
    let expected = format!(
        "this log has advanced elsewhere: witness test.example/w1 cosigned size {newer}, this copy holds {size}; \
         appending here would fork the log. Restore the newer copy of the data dir"
    );
    assert!(err.contains(&expected), "{expected}\n{err}");
    assert_eq!(status_size(&stale).await, size, "the stale copy appended");

    // With the witness down it starts (it cannot know) and appends its attestations...
    drop(w);
    let node = start(stale.clone(), "stale2.err").await.unwrap();
    assert!(
        node.stderr()
            .contains("cannot rule out that this log advanced elsewhere"),
        "{}",
        node.stderr()
    );
    // ...and more, past the size the witness cosigned of the original...
    assert_eq!(append(&node, &stale, "s", 8).await, 8);
    // ...until the witness answers again: its tree of that size is not this copy's, and
    // every append is refused from then on, in words.
    let _w = witness_on(&w_dir, "test.example/w1", &log_vkey, &listen)
        .await
        .unwrap();
    let key = govern_api::DataDir::open(&stale, None)
        .unwrap()
        .edge_key()
        .unwrap();
    let attestation = support::edge_attestation(&node.url).await;
    let http = reqwest::Client::new();
    let until = tokio::time::Instant::now() + PATIENCE;
    let mut n = 0;
    let problem: serde_json::Value = loop {
        n += 1;
        let resp = http
            .post(format!("{}/v1/entries", node.url))
            .header("content-type", "application/json")
            .body(support::event(&key, attestation, "c", n).into_bytes())
            .send()
            .await
            .unwrap();
        if resp.status().as_u16() == 503 {
            break resp.json().await.unwrap();
        }
        assert_eq!(resp.status().as_u16(), 200);
        assert!(tokio::time::Instant::now() < until, "never fenced");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        problem["type"]
            .as_str()
            .unwrap()
            .ends_with("log-advanced-elsewhere"),
        "{problem}"
    );
    assert!(
        problem["detail"].as_str().unwrap().starts_with(
            "this log has forked: witness test.example/w1 cosigned another tree of size "
        ),
        "{problem}"
    );
    // The witness never cosigned the copy's history: what /checkpoint serves is still the
    // stored quorum checkpoint, of the copy's own size before its start.
    let served = get_text(&format!("{}/checkpoint", node.url)).await.1;
    assert_eq!(size_of(&served), size);
    node.kill().await;
}
