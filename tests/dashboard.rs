//! The dashboard in a real browser: headless Chromium (Debian's), driven by playwright-core
//! with Chromium's virtual authenticator, against `govern up` (the node, three witnesses, the
//! policy worker and the five signers, each a process). `tests/browser/dashboard.mjs` is the
//! person at the browser; this test starts the system, hands it the tenant's link, checks
//! what it reports, and compares the browser's verification of the receipt chain with
//! `govern verify request` on the same request.
//!
//! Needs `chromium` and `tests/browser/node_modules` (`make test` installs both).
//! `GOVERN_SCREENSHOTS=DIR` also writes a screenshot of each view there (`make screenshots`
//! regenerates `docs/screenshots/`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{PATIENCE, govern};
use tokio::io::{AsyncBufReadExt as _, BufReader};

/// The browser's verifier alone, in Node's WebCrypto (`tests/browser/verify.test.mjs`): the
/// C2SP note vector, RFC 8785, every RFC 9162 inclusion and consistency proof of trees up to
/// 33 leaves against a naive recursive tree, checkpoints and cosignatures under pinned keys,
/// COSE keys, API-key and passkey (ES256, DER) user actions, and signed events; each value
/// made to pass, then changed to fail for its reason.
#[test]
fn the_browsers_verifier_passes_its_vectors_and_refuses_each_change() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    let run = std::process::Command::new("node")
        .arg(dir.join("verify.test.mjs"))
        .current_dir(&dir)
        .output()
        .expect("node runs (make test installs it)");
    let out = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let checks: u64 = out.trim().strip_prefix("ok ").unwrap().parse().unwrap();
    assert!(checks > 2000, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_acts_with_passkeys_and_verifies_the_receipt_chain_itself() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut up = govern()
        .args(["up", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .stdout(Stdio::piped())
        .stderr(Stdio::from(
            std::fs::File::create(tmp.path().join("up.log")).unwrap(),
        ))
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let group = support::Group(up.id().unwrap());
    let mut lines = BufReader::new(up.stdout.take().unwrap()).lines();
    let mut port = None;
    tokio::time::timeout(PATIENCE * 6, async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(rest) = line.strip_prefix("govern node listening on ") {
                port = rest
                    .split_whitespace()
                    .next()
                    .and_then(|a| a.rsplit(':').next())
                    .map(str::to_owned);
            }
            if line.starts_with("Ctrl-C") {
                break;
            }
        }
    })
    .await
    .expect("govern up starts");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    // The browser's origin is the node's default web origin: http://localhost:<port>.
    let url = format!("http://localhost:{}", port.expect("the node's address"));

    // A registration link of the older form opens the dashboard's registration.
    let old = reqwest::get(format!("{url}/ui/register.html"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(old.contains("/ui/register.js"), "{old}");

    let created = govern()
        .args([
            "tenant",
            "create",
            "acme",
            "--json",
            "--url",
            &url,
            "--data-dir",
        ])
        .arg(&data)
        .output()
        .await
        .unwrap();
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let created: Value = serde_json::from_slice(&created.stdout).unwrap();
    let link = created["registration_url"].as_str().unwrap();
    assert!(
        link.starts_with(&format!("{url}/#register?tenant=")),
        "{link}"
    );

    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    let mut node = tokio::process::Command::new("node");
    node.arg(dir.join("dashboard.mjs"))
        .arg(link)
        .current_dir(&dir)
        .stdin(Stdio::null());
    if let Ok(shots) = std::env::var("GOVERN_SCREENSHOTS") {
        node.arg(shots);
    }
    let run = tokio::time::timeout(Duration::from_secs(900), node.output())
        .await
        .expect("the browser finishes within fifteen minutes")
        .expect("node runs (make test installs Node's packages and Chromium)");
    let log = std::fs::read_to_string(tmp.path().join("up.log")).unwrap_or_default();
    assert!(
        run.status.success(),
        "the browser run failed:\n{}\n{}\ngovern up's log (tail):\n{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr),
        &log[log.len().saturating_sub(4000)..]
    );
    let out: Value = serde_json::from_slice(run.stdout.trim_ascii()).unwrap();

    // The journey: the chain the browser verified is the transfer's, from the user's signed
    // action to the signers' result.
    let kinds: Vec<&str> = out["kinds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "checkpoint",
            "transfer.requested",
            "policy.evaluated",
            "approval.decided",
            "transfer.approved",
            "transfer.signed"
        ]
    );
    // Each tampered answer turned exactly its own row red, for its own reason.
    let t = &out["tamper"];
    assert_eq!(t["entry"]["kind"], "policy.evaluated");
    assert_eq!(t["proof"]["kind"], "approval.decided");
    assert_eq!(t["cosignature"]["index"], "checkpoint");
    assert!(
        t["cosignature"]["reason"]
            .as_str()
            .unwrap()
            .contains("does not verify"),
        "{t}"
    );
    // No view has a serious accessibility violation (the script fails on one); each was run.
    for view in [
        "register",
        "login",
        "request",
        "activity",
        "credentials",
        "services",
        "data-plane",
    ] {
        assert!(out["axe"][view].is_array(), "axe ran on {view}: {out}");
    }
    assert!(
        out["dev_banner"]
            .as_str()
            .unwrap()
            .contains("Dev attestation")
    );

    // The same request through the CLI's verifier, for the benchmark (ten runs each): both verify every
    // hop; the figures go to the note, not into an assertion.
    let request = out["request"].as_str().unwrap();
    let mut cli_ms = Vec::new();
    for _ in 0..10 {
        let state = tmp.path().join(format!("verify-state-{}", cli_ms.len()));
        let started = Instant::now();
        let v = govern()
            .args([
                "verify", "request", "--json", "--url", &url, request, "--state",
            ])
            .arg(&state)
            .output()
            .await
            .unwrap();
        cli_ms.push(started.elapsed().as_secs_f64() * 1000.0);
        assert!(
            v.status.success(),
            "{}{}",
            String::from_utf8_lossy(&v.stdout),
            String::from_utf8_lossy(&v.stderr)
        );
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let mut browser_ms: Vec<f64> = out["verify_ms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    let (b, c) = (median(&mut browser_ms), median(&mut cli_ms));
    eprintln!(
        "benchmark: the receipt chain of {request} ({} hops, log size {}): in Chromium \
         median {b:.0} ms of {:?}; `govern verify request` (a process, its own fetches) median \
         {c:.0} ms of {:?}; browser/CLI = {:.2}",
        out["hops"],
        out["log_size"],
        browser_ms,
        cli_ms.iter().map(|x| x.round()).collect::<Vec<_>>(),
        b / c
    );
    drop(group);
}
