//! The errors a newcomer hits, in words with what to do: a closed port, a URL without its
//! scheme or with a path, a problem the node answers, a replay of an export made with `--url`
//! without the trust it lacks; no colour codes in logs that go to a file; and `verify
//! receipt` saying what it did with a checkpoint's cosignatures.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::Path;

use ed25519_dalek::SigningKey;
use govern_core::checkpoint::{Checkpoint, CosignatureSigner};
use govern_core::ids::{RootHash, TreeSize};
use govern_core::merkle::hash_leaf;
use govern_core::note::NoteSigner;
use govern_core::proof::TlogProof;
use govern_core::witness::{PolicyFile, PolicyWitness, add_cosignatures};
use support::{govern, run, s, serve, start};

/// Nothing listens on a port just closed: every command that talks to a node says so, and
/// what to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_port_is_a_refused_connection_in_words() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}");
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    // An operator token to send (read, never made, by the operator's commands).
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("operator.token"), "00".repeat(32)).unwrap();
    let expected = format!(
        "error: cannot connect to {url}: connection refused (is a govern node running there? start one with govern up)\n"
    );
    for args in [
        vec!["status", "--url", &url],
        vec!["verify", "log", "--url", &url],
        vec!["receipt", "0", "--url", &url],
        vec![
            "tenant",
            "keys",
            "NOPE",
            "--url",
            &url,
            "--data-dir",
            s(&data),
        ],
    ] {
        let (ok, out, err) = run(&args).await;
        assert!(!ok, "{args:?}: {out}");
        assert_eq!(err, expected, "{args:?}");
    }
}

/// A URL without `http://`, or with a path, is refused before any request, naming the URL
/// to give instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_without_scheme_or_with_a_path_is_refused_before_any_request() {
    for (args, expected) in [
        (
            vec!["status", "--url", "localhost:7600"],
            "localhost:7600 is not a URL: write http://localhost:7600",
        ),
        (
            vec!["verify", "log", "--url", "127.0.0.1:7600"],
            "127.0.0.1:7600 is not a URL: write http://127.0.0.1:7600",
        ),
        (
            vec![
                "export",
                "/nonexistent/x",
                "--url",
                "http://127.0.0.1:7600/v1",
            ],
            "http://127.0.0.1:7600/v1 names a path (/v1): give the node's base URL, http://127.0.0.1:7600",
        ),
        (
            vec!["verify", "log", "--url", "http://127.0.0.1:7600/v1"],
            "http://127.0.0.1:7600/v1 names a path (/v1): give the log's base URL, http://127.0.0.1:7600",
        ),
        (
            vec!["tenant", "keys", "NOPE", "--url", "ftp://127.0.0.1:7600"],
            "ftp://127.0.0.1:7600 is not a URL govern can read: govern speaks http:// and https://, not ftp://",
        ),
    ] {
        let (ok, _, err) = run(&args).await;
        assert!(!ok, "{args:?}");
        assert_eq!(err, format!("error: {expected}\n"), "{args:?}");
    }
}

/// The node's RFC 9457 problems read as words (title, detail, status, type, request), from
/// the operator's commands and from `govern scenario`; the node's log, written to a file,
/// holds no colour codes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_problem_the_node_answers_reads_as_words() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let node = start(&data, "127.0.0.1:0", &tmp.path().join("node.err"))
        .await
        .unwrap();
    let (ok, out, err) = run(&[
        "tenant",
        "keys",
        "NOPE",
        "--url",
        &node.url,
        "--data-dir",
        s(&data),
    ])
    .await;
    assert!(!ok, "{out}");
    assert_eq!(
        err,
        "error: Request body refused: the tenant is not a UUID (HTTP 400, urn:govern:problem:invalid-body; GET /v1/tenants/NOPE/keys)\n"
    );
    // Another data dir's operator token: the scenario's first call is refused.
    let other = tmp.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("operator.token"), "00".repeat(32)).unwrap();
    let (ok, out, err) = run(&["scenario", "--url", &node.url, "--data-dir", s(&other)]).await;
    assert!(!ok, "{out}");
    assert_eq!(
        err,
        "error: Operator token required: send Authorization: Bearer <the data dir's operator.token> (HTTP 401, urn:govern:problem:operator-unauthorized; POST /v1/tenants)\n"
    );
    let log = node.stderr();
    assert!(log.contains("DEV MODE"), "{log}");
    assert!(
        !log.contains("\x1b["),
        "colour codes in a log file: {log:?}"
    );
}

/// An export made with `--url` has no `trust/`: its replay names the flags that give it,
/// one at a time. Such an export served under a path verifies from there, a URL that names
/// one of the log's routes below it is refused, and the state file is named after the host,
/// port and path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_made_with_url_asks_for_the_trust_it_lacks() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let node = start(&data, "127.0.0.1:0", &tmp.path().join("node.err"))
        .await
        .unwrap();
    let exports = tmp.path().join("exports");
    let remote = exports.join("remote");
    let (ok, out, err) = run(&["export", s(&remote), "--url", &node.url]).await;
    assert!(ok, "{out}{err}");
    node.kill().await;

    let (ok, _, err) = run(&[
        "replay",
        s(&remote),
        "--data-dir",
        s(&tmp.path().join("f1")),
    ])
    .await;
    assert!(!ok);
    assert!(
        err.ends_with(&format!(
            "error: {}/trust/manifest-signers.toml: no such file: an export made with --url carries no trust/; pass --signers FILE (the operator's manifest-signers.toml) and, for a dev log, --dev-root FILE\n",
            remote.display()
        )),
        "{err}"
    );
    let signers = data.join("manifest-signers.toml");
    let (ok, _, err) = run(&[
        "replay",
        s(&remote),
        "--data-dir",
        s(&tmp.path().join("f2")),
        "--signers",
        s(&signers),
    ])
    .await;
    assert!(!ok);
    assert!(
        err.ends_with(&format!(
            "error: manifests/1.json pins a dev CA root and {}/trust/dev-root.der is missing: pass --dev-root FILE (the operator's dev-ca/root.der)\n",
            remote.display()
        )),
        "{err}"
    );
    let (ok, out, err) = run(&[
        "replay",
        s(&remote),
        "--data-dir",
        s(&tmp.path().join("f3")),
        "--signers",
        s(&signers),
        "--dev-root",
        s(&data.join("dev-ca/root.der")),
    ])
    .await;
    assert!(ok, "{out}{err}");

    let served = serve(exports.clone()).await;
    let state = tmp.path().join("state");
    let verify = |url: String| {
        let state = state.clone();
        async move {
            let out = govern()
                .env("XDG_STATE_HOME", &state)
                .args(["verify", "log", "--url", &url])
                .output()
                .await
                .unwrap();
            (
                out.status.success(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        }
    };
    let (ok, out, err) = verify(format!("{served}/remote/")).await;
    assert!(ok, "{out}{err}");
    assert!(
        out.starts_with("log govern.localhost/log verified: size "),
        "{out}"
    );
    let name = format!(
        "verify-{}_remote.json",
        served.trim_start_matches("http://").replace(':', "_")
    );
    assert!(
        state.join("govern").join(&name).exists(),
        "no state file {name}"
    );
    let (ok, _, err) = verify(format!("{served}/remote/v1")).await;
    assert!(!ok);
    assert_eq!(
        err,
        format!(
            "error: {served}/remote/v1 names a path (/remote/v1): give the log's base URL, {served}/remote\n"
        )
    );
    // A base that is not the export's: the 404 says which base was used.
    let (ok, _, err) = verify(format!("{served}/elsewhere")).await;
    assert!(!ok);
    assert_eq!(
        err,
        format!(
            "error: {served}/elsewhere/v1/log: not found (HTTP 404; is {served}/elsewhere the log's base URL?)\n"
        )
    );
}

/// A receipt whose checkpoint carries cosignatures: without `--witnesses` they are counted
/// and said to be unchecked; with a policy they are checked, and one that falls short fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_receipt_says_what_it_did_with_cosignatures() {
    let tmp = tempfile::tempdir().unwrap();
    let log = NoteSigner::new("test.example/log", SigningKey::from_bytes(&[1; 32])).unwrap();
    let entry = b"an entry".to_vec();
    let cp = Checkpoint::new(
        "test.example/log",
        TreeSize(1),
        RootHash(hash_leaf(&entry).hash()),
    );
    let note = log.sign(&cp.body()).unwrap();
    let witnesses: Vec<CosignatureSigner> = (1..=3u8)
        .map(|i| {
            CosignatureSigner::new(
                format!("test.example/w{i}"),
                SigningKey::from_bytes(&[10 + i; 32]),
            )
            .unwrap()
        })
        .collect();
    let lines: Vec<String> = witnesses[..2]
        .iter()
        .map(|w| w.sign(&cp, 1_700_000_000).unwrap())
        .collect();
    let write_receipt = |name: &str, checkpoint: String| {
        let proof = TlogProof {
            extra: None,
            index: 0,
            hashes: Vec::new(),
            checkpoint,
        };
        let path = tmp.path().join(name);
        std::fs::write(&path, proof.to_text()).unwrap();
        path
    };
    let bare = write_receipt("bare", note.clone());
    let cosigned = write_receipt("cosigned", add_cosignatures(&note, &lines).unwrap());
    let entry_file = tmp.path().join("entry");
    std::fs::write(&entry_file, &entry).unwrap();
    let policy = |quorum: usize, of: &[CosignatureSigner]| {
        let file = PolicyFile {
            quorum,
            witnesses: of
                .iter()
                .map(|w| PolicyWitness {
                    vkey: w.verifier_key(),
                    url: None,
                })
                .collect(),
        };
        let path = tmp
            .path()
            .join(format!("policy-{quorum}-{}.toml", of.len()));
        std::fs::write(&path, toml::to_string(&file).unwrap()).unwrap();
        path
    };
    let vkey = log.verifier_key();
    let verified = "receipt verified: entry 0 is in test.example/log at size 1 (root ".to_string();
    let check = |receipt: &Path, extra: &[&Path]| {
        let mut args = vec![
            "verify".to_string(),
            "receipt".into(),
            s(receipt).into(),
            "--entry".into(),
            s(&entry_file).into(),
            "--key".into(),
            vkey.clone(),
        ];
        for p in extra {
            args.push("--witnesses".into());
            args.push(s(p).into());
        }
        async move {
            let out = govern().args(&args).output().await.unwrap();
            (
                out.status.success(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        }
    };

    let (ok, out, err) = check(&cosigned, &[]).await;
    assert!(ok, "{err}");
    let lines_out: Vec<&str> = out.lines().collect();
    assert!(lines_out[0].starts_with(&verified), "{out}");
    assert_eq!(
        lines_out[1..],
        ["cosignatures: 2 present, not checked: pass --witnesses FILE to check them"]
    );
    let (ok, out, err) = check(&bare, &[]).await;
    assert!(ok, "{err}");
    assert_eq!(out.lines().nth(1), Some("cosignatures: none"), "{out}");

    let two_of_three = policy(2, &witnesses);
    let (ok, out, err) = check(&cosigned, &[&two_of_three]).await;
    assert!(ok, "{err}");
    assert_eq!(
        out.lines().nth(1),
        Some(
            "witnessed: cosigned by test.example/w1 at 2023-11-14T22:13:20Z, test.example/w2 at 2023-11-14T22:13:20Z (2 of 3 witnesses, quorum 2; policy pinned)"
        ),
        "{out}"
    );
    // w2 and w3 at 2 of 2: only w2 cosigned.
    let short = policy(2, &witnesses[1..]);
    let (ok, out, err) = check(&cosigned, &[&short]).await;
    assert!(!ok, "{out}");
    assert_eq!(
        err,
        "error: witness policy (pinned): 1 of the 2 witness cosignatures the policy needs (test.example/w2)\n"
    );
}
