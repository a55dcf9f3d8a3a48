//! The policy worker as a process of its own (`govern worker policy`) beside a node: it
//! decides a user's transfer end to end (`govern demo transfer`), holds no listening
//! socket, its decisions are recomputed by `govern verify request`, and SIGKILLed at random
//! moments through a seeded scenario of hundreds of requests it still decides every request
//! exactly once, each equal to what the tenant's policies give when evaluated again.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use govern_client::follower::Follower;
use govern_core::event::TenantId;
use govern_core::kinds::{
    POLICY_CHANGED, POLICY_EVALUATED, POLICY_RESULT_KINDS, TRANSFER_REQUESTED,
};
use govern_core::note::NoteVerifier;
use govern_projections::policy::PolicyBook;
use rand::{Rng as _, SeedableRng as _};
use serde_json::Value;
use support::{PATIENCE, govern, listening_inodes, s, socket_fds, start};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::Child;

/// `govern worker policy` against `url`, once it says it follows.
async fn worker(url: &str, data: &Path, stderr: &Path) -> (Child, u32) {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(stderr)
        .unwrap();
    let mut child = govern()
        .args(["worker", "policy", "--url", url, "--data-dir"])
        .arg(data)
        .env("GOVERN_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(PATIENCE, lines.next_line())
        .await
        .expect("the worker starts")
        .unwrap()
        .unwrap_or_else(|| {
            panic!(
                "the worker stopped: {}",
                std::fs::read_to_string(stderr).unwrap()
            )
        });
    assert!(line.starts_with("govern worker policy following"), "{line}");
    let pid = child.id().unwrap();
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, pid)
}

/// `govern demo transfer --json` against `url`, which must end at `transfer.approved`.
async fn demo(url: &str, data: &Path, worker_log: &Path) -> Value {
    let out = tokio::time::timeout(
        Duration::from_secs(120),
        govern()
            .args([
                "demo",
                "transfer",
                "--url",
                url,
                "--data-dir",
                s(data),
                "--json",
            ])
            .output(),
    )
    .await
    .unwrap()
    .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(worker_log).unwrap_or_default()
    );
    let demo: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(demo["last"], "transfer.approved", "{demo}");
    demo
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_decides_a_users_transfer_listens_on_nothing_and_is_recomputed() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let node = start(&data, "127.0.0.1:0", &tmp.path().join("node.log"))
        .await
        .unwrap();
    let worker_log = tmp.path().join("worker.log");
    let (_worker, pid) = worker(&node.url, &data, &worker_log).await;

    let demo = demo(&node.url, &data, &worker_log).await;
    assert_eq!(demo["amount"], "2000000000000000000");
    let request = demo["request"].as_str().unwrap().to_string();

    // No listening socket among the worker's file descriptors, though it holds sockets
    // (its connections to the node); the same check finds the node's listening socket.
    let sockets = socket_fds(pid);
    assert!(!sockets.is_empty(), "the worker holds no socket at all");
    let listening = listening_inodes(pid);
    assert!(
        sockets.is_disjoint(&listening),
        "the worker owns a listening socket: {:?}",
        sockets.intersection(&listening).collect::<Vec<_>>()
    );
    let node_pid = node.child.id().unwrap();
    assert!(
        !socket_fds(node_pid).is_disjoint(&listening_inodes(node_pid)),
        "the check does not see the node's listening socket"
    );

    // The auditor recomputes the outcome with the tenant's keys (dev: the data dir's key
    // store), and without them checks everything else.
    let verify = |keys: bool| {
        let mut cmd = govern();
        cmd.args(["verify", "request", &request, "--url", &node.url, "--json"]);
        if keys {
            cmd.args(["--keys-from", s(&data)]);
        }
        cmd.output()
    };
    let out = verify(true).await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let hops = v["hops"].as_array().unwrap();
    let kinds: Vec<&str> = hops.iter().map(|h| h["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "transfer.requested",
            "policy.evaluated",
            "approval.decided",
            "transfer.approved"
        ],
        "{v}"
    );
    assert_eq!(hops[1]["producer"]["role"], "policy");
    assert_eq!(hops[1]["policy"]["recomputed"], true, "{v}");
    assert_eq!(hops[1]["policy"]["outcome"], "approval", "{v}");
    assert_eq!(hops[3]["policy"]["ok"], true, "{v}");
    assert!(hops[0]["policy"].is_null());
    let out = verify(false).await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["hops"][1]["policy"]["recomputed"], false, "{v}");
    node.kill().await;
}

/// Fold the node's whole log, verified, into a policy book with the tenants' keys (the dev
/// data dir's key store): the book recomputes every evaluation and decision and compares
/// them with the recorded ones. Also counts each request's results by kind.
async fn recompute(
    url: &str,
    data: &Path,
) -> (PolicyBook, BTreeMap<String, BTreeMap<String, usize>>, u64) {
    let vkey = govern_api::DataDir::open_existing(data)
        .unwrap()
        .verifier_key();
    let client = govern_client::Client::for_log(url).unwrap();
    let mut follower = Follower::new(client, NoteVerifier::parse(&vkey).unwrap());
    let mut book = PolicyBook::default();
    let mut tenants = govern_projections::tenants::Tenants::default();
    let mut keys: BTreeMap<TenantId, (u32, govern_client::release::ScopeKeys)> = BTreeMap::new();
    let mut results: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    let store = data.join("keys");
    let update = follower
        .follow(|index, signed| {
            let event = signed.event();
            let kind = event.kind.as_str();
            tenants.apply(signed, index.0);
            if POLICY_RESULT_KINDS.contains(&kind) {
                *results
                    .entry(event.request.0.to_string())
                    .or_default()
                    .entry(kind.to_string())
                    .or_default() += 1;
            }
            let mut opened = None;
            if [TRANSFER_REQUESTED, POLICY_CHANGED, POLICY_EVALUATED].contains(&kind)
                && let Ok((scope, version)) = govern_core::seal::sealed_scope(event)
                && let Some(t) = tenants.get(&event.tenant)
            {
                let current = t.keys.current();
                if keys.get(&event.tenant).is_none_or(|(c, _)| *c < current)
                    && let Ok(k) = govern_api::keys::dev_scope_keys(
                        &store,
                        &event.tenant,
                        &govern_core::seal::SCOPES,
                        current,
                    )
                {
                    keys.insert(event.tenant, (current, k));
                }
                if let Some(key) = keys
                    .get(&event.tenant)
                    .and_then(|(_, k)| k.get(&scope, version))
                {
                    opened = Some(if kind == POLICY_EVALUATED {
                        serde_json::from_slice(&govern_core::seal::open(event, key).unwrap())
                            .unwrap()
                    } else {
                        govern_core::seal::open_action(event, key).unwrap()
                    });
                }
            }
            let _ = book.apply(index.0, signed, opened.as_ref());
            Ok::<(), std::convert::Infallible>(())
        })
        .await
        .unwrap();
    (book, results, update.latest.checkpoint.size.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_at_random_moments_decides_every_request_exactly_once() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let node = start(&data, "127.0.0.1:0", &tmp.path().join("node.log"))
        .await
        .unwrap();
    let worker_log = tmp.path().join("worker.log");
    let (mut current, _) = worker(&node.url, &data, &worker_log).await;

    // A seeded scenario of hundreds of requests: 3 tenants (the last shredded at the end), each with a policy that needs
    // the member's approval above a seeded limit, 120 transfers each approved or denied.
    let mut scenario = govern()
        .args(["scenario", "--url", &node.url, "--data-dir", s(&data)])
        .args([
            "--seed",
            "17",
            "--tenants",
            "3",
            "--wallets",
            "2",
            "--transfers",
            "120",
            // Wait for each tenant's limit to be in force before its transfers (else a
            // worker slowed by the kills lets them through before the policy: no denial
            // would count).
            "--policies",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(17);
    let mut kills = 0;
    let mut finished = None;
    // Kill at random moments while the scenario runs, and on while the worker catches up
    // after it, until the worker has been killed at least 8 times.
    while finished.is_none() || kills < 8 {
        let wait = Duration::from_millis(rng.gen_range(20..250));
        tokio::select! {
            status = scenario.wait(), if finished.is_none() => finished = Some(status.unwrap()),
            () = tokio::time::sleep(wait) => {
                current.kill().await.unwrap();
                kills += 1;
                tokio::time::sleep(Duration::from_millis(rng.gen_range(0..100))).await;
                current = worker(&node.url, &data, &worker_log).await.0;
            }
        }
    }
    let finished = finished.unwrap();
    let mut err = String::new();
    if let Some(mut e) = scenario.stderr.take() {
        use tokio::io::AsyncReadExt as _;
        e.read_to_string(&mut err).await.unwrap();
    }
    assert!(finished.success(), "the scenario failed: {err}");

    // The last worker catches up: every subject of a live tenant is decided.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let (book, results, size) = loop {
        let (book, results, size) = recompute(&node.url, &data).await;
        if book.owed(govern_core::event::Timestamp::now()).is_empty()
            || tokio::time::Instant::now() > deadline
        {
            break (book, results, size);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(
        book.owed(govern_core::event::Timestamp::now()).is_empty(),
        "still owed at size {size}: {:?}\n{}",
        book.owed(govern_core::event::Timestamp::now()).first(),
        std::fs::read_to_string(&worker_log).unwrap_or_default()
    );
    let mut decided = 0;
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    for (request, kinds) in &results {
        let evaluated = kinds.get(POLICY_EVALUATED).copied().unwrap_or(0);
        let decisions: usize = kinds
            .iter()
            .filter(|(k, _)| *k != POLICY_EVALUATED)
            .map(|(_, n)| n)
            .sum();
        assert_eq!(evaluated, 1, "request {request}: {kinds:?}");
        assert!(decisions <= 1, "request {request} decided twice: {kinds:?}");
        decided += decisions;
        for k in kinds.keys().filter(|k| *k != POLICY_EVALUATED) {
            *outcomes.entry(k.clone()).or_default() += 1;
        }
    }
    assert!(
        decided >= 240,
        "only {decided} requests decided: {outcomes:?}"
    );
    for k in [
        "transfer.approved",
        "transfer.rejected",
        "policy.activated",
        "wallet.approved",
    ] {
        assert!(
            outcomes.get(k).copied().unwrap_or(0) > 0,
            "no {k}: {outcomes:?}"
        );
    }
    // Every recorded result equals the recomputed one.
    let mut compared = 0;
    for (tenant, request) in book.requests() {
        let subject = book.subject(&tenant, &request).unwrap();
        assert!(
            subject.mismatches.is_empty(),
            "{request:?}: {:?}",
            subject.mismatches
        );
        if subject.evaluated.is_some() && subject.evaluation.known().is_some() {
            compared += 1;
        }
    }
    assert!(compared >= 240, "only {compared} evaluations recomputed");
    current.kill().await.unwrap();
    node.kill().await;
}

/// A worker that lies: it holds the live `policy` identity (attested through the data dir's
/// dev CA as the node's own binary, as a compromised worker would), reports the demo's
/// transfer, which needs an approval, as allowed, and approves it at once. The log takes
/// both (they are the live identity's, well formed); `govern verify request` with the
/// tenant's keys recomputes the outcome and fails both hops with `policy-mismatch`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_misreports_an_outcome_is_caught_by_the_recomputation() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let node = start(&data, "127.0.0.1:0", &tmp.path().join("node.log"))
        .await
        .unwrap();
    let demo = govern()
        .args([
            "demo",
            "transfer",
            "--url",
            &node.url,
            "--data-dir",
            s(&data),
            "--json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let demo = tokio::spawn(demo.wait_with_output());
    let mut liar =
        support::liar::Liar::attest(&node.url, &data, &tmp.path().join("evil"), None).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while !demo.is_finished() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the demo did not finish"
        );
        liar.round().await;
    }
    let lied = liar.lied.first().copied();
    let out = demo.await.unwrap().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown: Value = serde_json::from_slice(&out.stdout).unwrap();
    let request = shown["request"].as_str().unwrap().to_string();
    assert_eq!(lied.map(|r| r.0.to_string()), Some(request.clone()));

    let verify = |keys: bool| {
        let mut cmd = govern();
        cmd.args(["verify", "request", &request, "--url", &node.url, "--json"]);
        if keys {
            cmd.args(["--keys-from", s(&data)]);
        }
        cmd.output()
    };
    let out = verify(true).await.unwrap();
    assert!(!out.status.success(), "the lie verified");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let hop = |kind: &str| {
        v["hops"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["kind"] == kind)
            .unwrap()
            .clone()
    };
    let evaluated = hop("policy.evaluated");
    assert_eq!(evaluated["policy"]["ok"], false, "{v}");
    assert_eq!(evaluated["policy"]["code"], "policy-mismatch", "{v}");
    let detail = evaluated["policy"]["detail"].as_str().unwrap();
    assert!(
        detail.contains("outcome \"approval\"") && detail.contains("outcome \"allow\""),
        "{detail}"
    );
    let approved = hop("transfer.approved");
    assert_eq!(approved["policy"]["code"], "policy-mismatch", "{v}");
    assert_eq!(hop("transfer.requested")["ok"], true);
    // Without the tenant's keys nothing can be recomputed, and everything else verifies.
    let out = verify(false).await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    node.kill().await;
}

/// A node that goes away is waited for, not taken as an answer: the worker outlives the
/// node's SIGKILL (retrying with backoff), and once the node is back on the same data dir
/// and address it decides the next transfer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_waits_for_a_node_that_went_away() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let node = start(&data, &addr, &tmp.path().join("node.log"))
        .await
        .unwrap();
    let url = node.url.clone();
    let worker_log = tmp.path().join("worker.log");
    let (mut w, _) = worker(&url, &data, &worker_log).await;
    node.kill().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        w.try_wait().unwrap().is_none(),
        "the worker stopped when the node went away: {}",
        std::fs::read_to_string(&worker_log).unwrap()
    );
    let node = start(&data, &addr, &tmp.path().join("node2.log"))
        .await
        .unwrap();
    demo(&node.url, &data, &worker_log).await;
    let log = std::fs::read_to_string(&worker_log).unwrap();
    assert!(log.contains("not answering; waiting"), "{log}");
    w.kill().await.unwrap();
    node.kill().await;
}
