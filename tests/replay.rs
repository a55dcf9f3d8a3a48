//! `govern replay` of an export made by `govern export`, as an operator runs it: the same
//! tree size, tree root and state root as the source node (`govern status`), with a shredded
//! tenant and a quarantine in the log; and every way an export can lie — a changed byte in
//! an entry, a hash tile, a checkpoint or a manifest, a truncation, a fork — stops it with
//! the index (or size) named.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::{Path, PathBuf};

use govern_core::checkpoint::Checkpoint;
use govern_core::ids::{Hash, RootHash};
use govern_core::tiles::decode_bundle;
use serde_json::Value;
use support::{govern, start};

async fn run(args: &[&str]) -> (bool, String, String) {
    let out = govern().args(args).output().await.unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A node that ran the scenario (every event kind, one tenant shredded, one quarantine),
/// stopped, and its export: (tmp, data dir, export dir, status JSON of the node).
async fn scenario() -> (tempfile::TempDir, PathBuf, PathBuf, Value) {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let node = start(&data, "127.0.0.1:0", &tmp.path().join("node.err"))
        .await
        .unwrap();
    let (ok, out, err) = run(&[
        "scenario",
        "--url",
        &node.url,
        "--data-dir",
        s(&data),
        "--seed",
        "7",
    ])
    .await;
    assert!(ok, "{out}{err}");
    let (ok, out, err) = run(&["status", "--url", &node.url, "--json"]).await;
    assert!(ok, "{err}");
    let status: Value = serde_json::from_str(&out).unwrap();
    node.kill().await;
    let export = tmp.path().join("export");
    let (ok, out, err) = run(&["export", s(&export), "--data-dir", s(&data)]).await;
    assert!(ok, "{out}{err}");
    (tmp, data, export, status)
}

async fn replay(export: &Path, fresh: &Path, extra: &[&str]) -> (bool, String, String) {
    let mut args = vec!["replay", s(export), "--data-dir", s(fresh), "--json"];
    args.extend_from_slice(extra);
    run(&args).await
}

/// Copy `from` to a new directory beside it.
fn copy(from: &Path, name: &str) -> PathBuf {
    fn walk(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let p = e.unwrap().path();
            let t = to.join(p.file_name().unwrap());
            if p.is_dir() {
                walk(&p, &t);
            } else {
                std::fs::copy(&p, &t).unwrap();
            }
        }
    }
    let to = from.parent().unwrap().join(name);
    walk(from, &to);
    to
}

fn flip(path: &Path, at: usize) {
    let mut b = std::fs::read(path).unwrap();
    b[at] ^= 0x01;
    std::fs::write(path, b).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_reaches_the_sources_roots_and_every_lie_is_named() {
    let (tmp, data, export, status) = scenario().await;

    // Replay into a fresh dir: the node's size, tree root and state root, with a shredded
    // tenant whose payloads no one can read any more.
    let fresh = tmp.path().join("fresh");
    let (ok, out, err) = replay(&export, &fresh, &[]).await;
    assert!(ok, "{err}");
    let replayed: Value = serde_json::from_str(&out).unwrap();
    for field in ["size", "root", "state_root"] {
        assert_eq!(replayed[field], status[field], "{field}: {out} vs {status}");
    }
    // `govern status` of the replayed dir and of the source dir say the same.
    for dir in [&fresh, &data] {
        let (ok, out, err) = run(&["status", "--data-dir", s(dir), "--json"]).await;
        assert!(ok, "{err}");
        let st: Value = serde_json::from_str(&out).unwrap();
        for field in ["size", "root", "state_root"] {
            assert_eq!(st[field], status[field], "{}: {field}", dir.display());
        }
    }
    // A fresh dir means fresh: replaying into it again is refused.
    let (ok, _, err) = replay(&export, &fresh, &[]).await;
    assert!(!ok && err.contains("not empty"), "{err}");

    // A changed byte inside entry k of a bundle: stopped at entry k.
    let bundle_path = export
        .join("tile/entries/000.p")
        .read_dir()
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let bundle = std::fs::read(&bundle_path).unwrap();
    let entries = decode_bundle(&bundle).unwrap();
    let size = entries.len();
    for k in [5usize, size / 2, size - 1] {
        let offset: usize =
            entries[..k].iter().map(|e| e.len() + 2).sum::<usize>() + 2 + entries[k].len() / 2;
        let bad = copy(&export, &format!("bad-entry-{k}"));
        flip(
            &bad.join(bundle_path.strip_prefix(&export).unwrap()),
            offset,
        );
        let (ok, _, err) = replay(&bad, &tmp.path().join(format!("f-entry-{k}")), &[]).await;
        assert!(!ok, "a changed byte in entry {k} passed");
        assert!(err.contains(&format!("entry {k}:")), "entry {k}: {err}");
    }

    // A changed byte in hash j of the level-0 tile: named at entry j.
    let tile0 = export
        .join("tile/0/000.p")
        .read_dir()
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let j = 9;
    let bad = copy(&export, "bad-tile");
    flip(&bad.join(tile0.strip_prefix(&export).unwrap()), j * 32 + 3);
    let (ok, _, err) = replay(&bad, &tmp.path().join("f-tile"), &[]).await;
    assert!(!ok && err.contains(&format!("entry {j}:")), "{err}");

    // A changed byte in a signed checkpoint: named by its size.
    let bad = copy(&export, "bad-checkpoint");
    let cp = bad.join("checkpoints/12");
    let len = std::fs::read(&cp).unwrap().len();
    flip(&cp, len - 10);
    let (ok, _, err) = replay(&bad, &tmp.path().join("f-cp"), &[]).await;
    assert!(!ok && err.contains("size 12"), "{err}");

    // A changed byte in a manifest file.
    let bad = copy(&export, "bad-manifest");
    let m = bad.join("manifests/1.json");
    let text = std::fs::read_to_string(&m)
        .unwrap()
        .replacen("\"name\"", "\"nAme\"", 1);
    std::fs::write(&m, text).unwrap();
    let (ok, _, err) = replay(&bad, &tmp.path().join("f-manifest"), &[]).await;
    assert!(!ok && err.contains("manifests/1.json"), "{err}");

    // Truncated: the last bundle gone; or the export ends before a checkpoint seen elsewhere.
    let bad = copy(&export, "truncated");
    std::fs::remove_file(bad.join(bundle_path.strip_prefix(&export).unwrap())).unwrap();
    let (ok, _, err) = replay(&bad, &tmp.path().join("f-trunc"), &[]).await;
    assert!(
        !ok && err.contains("entry 0:") && err.contains("incomplete"),
        "{err}"
    );

    // A fork: a checkpoint of the same size and another root, signed by the log's own key
    // (as a compromised sequencer could), is reported as a fork whether it is the export's
    // latest or handed in from elsewhere.
    let key = std::fs::read_to_string(data.join("log.key")).unwrap();
    let signer = govern_core::note::NoteSigner::from_private_key(key.trim()).unwrap();
    let latest = std::fs::read(export.join("checkpoint")).unwrap();
    let body = String::from_utf8(latest.clone()).unwrap();
    let body = body.split("\n\n").next().unwrap().to_string() + "\n";
    let mut forked = Checkpoint::parse_body(&body).unwrap();
    forked.root = RootHash(Hash([7u8; 32]));
    let forked_note = forked.sign(&signer).unwrap();
    let elsewhere = tmp.path().join("elsewhere.checkpoint");
    std::fs::write(&elsewhere, &forked_note).unwrap();
    let (ok, _, err) = replay(
        &export,
        &tmp.path().join("f-fork1"),
        &["--checkpoint", s(&elsewhere)],
    )
    .await;
    assert!(
        !ok && err.contains("fork") && err.contains(&format!("size {size}")),
        "{err}"
    );
    let bad = copy(&export, "forked");
    std::fs::write(bad.join("checkpoint"), &forked_note).unwrap();
    let (ok, _, err) = replay(&bad, &tmp.path().join("f-fork2"), &[]).await;
    assert!(!ok && err.contains("fork"), "{err}");
    // And a checkpoint of a size beyond the export: truncated or rolled back.
    forked.size = govern_core::ids::TreeSize(size as u64 + 5);
    std::fs::write(&elsewhere, forked.sign(&signer).unwrap()).unwrap();
    let (ok, _, err) = replay(
        &export,
        &tmp.path().join("f-beyond"),
        &["--checkpoint", s(&elsewhere)],
    )
    .await;
    assert!(!ok && err.contains("rolled back"), "{err}");
    // The honest latest checkpoint, handed in, agrees.
    std::fs::write(&elsewhere, &latest).unwrap();
    let (ok, _, err) = replay(
        &export,
        &tmp.path().join("f-honest"),
        &["--checkpoint", s(&elsewhere)],
    )
    .await;
    assert!(ok, "{err}");
}

/// Every golden log of replay-tests/ replays with `govern replay`, its recorded verifier key
/// pinned, to its recorded size, tree root and state root.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn goldens_replay_to_their_recorded_roots() {
    let goldens = Path::new(env!("CARGO_MANIFEST_DIR")).join("replay-tests/goldens");
    let tmp = tempfile::tempdir().unwrap();
    let mut seen = 0;
    for entry in std::fs::read_dir(&goldens).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let recorded: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let export = path.with_extension("");
        let fresh = tmp.path().join(export.file_name().unwrap());
        let (ok, out, err) = replay(
            &export,
            &fresh,
            &["--key", recorded["verifier_key"].as_str().unwrap()],
        )
        .await;
        assert!(ok, "{}: {err}", export.display());
        let reached: Value = serde_json::from_str(&out).unwrap();
        for field in ["size", "root", "state_root"] {
            assert_eq!(
                reached[field],
                recorded[field],
                "{}: {field}",
                export.display()
            );
        }
        seen += 1;
    }
    assert!(seen > 0, "no goldens");
}

/// `govern verify request` walks a transfer's chain against a running node: every hop ok,
/// the user's signature verified against the credential of the time; an unknown or
/// malformed id is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_request_walks_a_receipt_chain() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let node = start(&data, "127.0.0.1:0", &tmp.path().join("node.err"))
        .await
        .unwrap();
    let (ok, out, err) = run(&[
        "scenario",
        "--url",
        &node.url,
        "--data-dir",
        s(&data),
        "--seed",
        "3",
    ])
    .await;
    assert!(ok, "{out}{err}");
    let mut request = None;
    for i in 0.. {
        let e: Value = reqwest::get(format!("{}/v1/entries/{i}", node.url))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if e["kind"] == "transfer.requested" {
            request = Some(e["request"].as_str().unwrap().to_string());
            break;
        }
    }
    let request = request.unwrap();
    let (ok, out, err) = run(&["verify", "request", &request, "--url", &node.url, "--json"]).await;
    assert!(ok, "{out}{err}");
    let chain: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(chain["verdict"], "ok");
    let kinds: Vec<&str> = chain["hops"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["transfer.requested", "approval.decided"]);
    for hop in chain["hops"].as_array().unwrap() {
        assert!(
            hop["user_signature"].as_str().unwrap().starts_with("ok ("),
            "{hop}"
        );
        assert!(
            hop["inclusion"].as_str().unwrap().starts_with("ok"),
            "{hop}"
        );
    }
    let (ok, out, _) = run(&["verify", "request", &request, "--url", &node.url]).await;
    assert!(
        ok && out.contains("transfer.requested") && out.contains("verdict: ok"),
        "{out}"
    );
    let (ok, _, err) = run(&[
        "verify",
        "request",
        &uuid::Uuid::now_v7().to_string(),
        "--url",
        &node.url,
    ])
    .await;
    assert!(!ok && err.contains("no event"), "{err}");
    let (ok, _, err) = run(&["verify", "request", "not-a-uuid", "--url", &node.url]).await;
    assert!(!ok && err.contains("not a request id"), "{err}");
    node.kill().await;
}
