//! The operator's key commands against a running node: `govern tenant rotate-key`, `govern
//! tenant shred` (which asks for `--yes`) and `govern tenant keys`; after shredding, `govern
//! verify log` still passes, before and after a restart.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use serde_json::{Value, json};
use support::{govern, start, verify_log};
use webauthn_authenticator_rs::prelude::WebauthnAuthenticator;
use webauthn_authenticator_rs::softpasskey::SoftPasskey;
use webauthn_rs::prelude::{CreationChallengeResponse, Url};

async fn cli(args: &[&str], data: &std::path::Path, url: &str) -> (bool, String, String) {
    let out = govern()
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .args(["--url", url])
        .output()
        .await
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

async fn post(url: &str, path: &str, body: &Value) -> Value {
    let resp = reqwest::Client::new()
        .post(format!("{url}{path}"))
        .json(body)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let v: Value = resp.json().await.unwrap();
    assert!(status.is_success(), "{path}: {status}: {v}");
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_shred_and_the_log_still_verifies() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let node = start(&data, "127.0.0.1:0", &tmp.path().join("node.err"))
        .await
        .unwrap();
    let url = node.url.clone();

    let (ok, out, err) = cli(&["tenant", "create", "acme", "--json"], &data, &url).await;
    assert!(ok, "{err}");
    let created: Value = serde_json::from_str(&out).unwrap();
    let tenant = created["tenant"].as_str().unwrap().to_string();
    // The first admin registers: their name is sealed in scope `users`.
    let begun = post(
        &url,
        "/v1/auth/register/start",
        &json!({"tenant": tenant, "invite": created["invite"]}),
    )
    .await;
    let ccr: CreationChallengeResponse = serde_json::from_value(begun["options"].clone()).unwrap();
    let origin = Url::parse(&format!("http://localhost:{}", node.port())).unwrap();
    let credential = SoftPasskey::new(true).do_registration(origin, ccr).unwrap();
    post(
        &url,
        "/v1/auth/register/finish",
        &json!({"registration": begun["registration"], "credential": credential}),
    )
    .await;

    let (ok, out, err) = cli(&["tenant", "rotate-key", &tenant], &data, &url).await;
    assert!(ok, "{err}");
    assert!(out.contains("key version 2"), "{out}");
    // Shredding asks first, and does nothing until asked with --yes.
    let (ok, _, err) = cli(&["tenant", "shred", &tenant], &data, &url).await;
    assert!(!ok);
    assert!(err.contains("--yes"), "{err}");
    let (ok, out, err) = cli(&["tenant", "keys", &tenant, "--json"], &data, &url).await;
    assert!(ok, "{err}");
    let status: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(status["status"], "active");
    assert_eq!(status["current_version"], 2);
    assert_eq!(status["releases"]["edge"]["count"], 5, "{status}");

    let (ok, out, err) = cli(&["tenant", "shred", &tenant, "--yes"], &data, &url).await;
    assert!(ok, "{err}");
    assert!(out.contains("shredded"), "{out}");
    let (ok, out, err) = cli(&["tenant", "keys", &tenant], &data, &url).await;
    assert!(ok, "{err}");
    assert!(out.contains("(shredded)"), "{out}");
    assert!(!data.join(format!("keys/seeds/{tenant}.json")).exists());
    let (ok, _, err) = cli(&["tenant", "shred", &tenant, "--yes"], &data, &url).await;
    assert!(!ok);
    assert!(err.contains("410"), "{err}");

    // Every signature, proof and checkpoint still verifies, now and after a restart.
    let state = tmp.path().join("verify.json");
    let (ok, out, err) = verify_log(&url, &state).await;
    assert!(ok, "verify log after shredding:\n{out}\n{err}");
    node.kill().await;
    let node = start(&data, "127.0.0.1:0", &tmp.path().join("node2.err"))
        .await
        .unwrap();
    let (ok, out, err) = verify_log(&node.url, &state).await;
    assert!(ok, "verify log after a restart:\n{out}\n{err}");
    let (ok, out, err) = cli(&["tenant", "keys", &tenant, "--json"], &data, &node.url).await;
    assert!(ok, "{err}");
    let status: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(status["status"], "shredded");
    assert_eq!(status["seeds_held"], false);
    node.kill().await;
}

/// The operator's commands read the token from the data dir and create nothing there; a
/// missing file or a token the node refuses is told in words, naming the file read and the
/// flag to pass. `govern tenant create` prints its `tenant.created` request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_refused_operator_token_says_which_file_and_what_to_pass() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let node = start(&data, "127.0.0.1:0", &tmp.path().join("node.err"))
        .await
        .unwrap();
    let url = node.url.clone();

    let nowhere = tmp.path().join("nowhere");
    let (ok, _, err) = cli(&["tenant", "create", "acme"], &nowhere, &url).await;
    assert!(!ok);
    assert_eq!(
        err.trim_end(),
        format!(
            "error: {d}/operator.token does not exist: is {d} the data dir of the node at {url}? (--data-dir)",
            d = nowhere.display()
        )
    );
    assert!(!nowhere.exists(), "reading the token created the data dir");

    let other = tmp.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("operator.token"), "not-this-nodes\n").unwrap();
    let tenant = uuid::Uuid::now_v7().to_string();
    for (args, kind) in [
        (vec!["tenant", "create", "acme"], "operator-unauthorized"),
        (
            vec!["tenant", "rotate-key", &tenant],
            "operator-unauthorized",
        ),
        (vec!["tenant", "keys", &tenant], "unauthenticated"),
        (vec!["requests", "--tenant", &tenant], "unauthenticated"),
    ] {
        let (ok, _, err) = cli(&args, &other, &url).await;
        assert!(!ok, "{args:?}");
        assert_eq!(
            err.trim_end(),
            format!(
                "error: the node at {url} refused the operator token read from {}/operator.token (401 {kind}): pass --data-dir DIR, the data dir of the node at {url}",
                other.display()
            ),
            "{args:?}"
        );
    }

    // With the node's own data dir: the tenant and the request that made it.
    let (ok, out, err) = cli(&["tenant", "create", "acme"], &data, &url).await;
    assert!(ok, "{err}");
    let first = out.lines().next().unwrap();
    let request = first
        .strip_suffix(')')
        .and_then(|l| l.rsplit("request ").next())
        .unwrap();
    let index: u64 = first
        .split("(entry ")
        .nth(1)
        .and_then(|l| l.split(',').next())
        .unwrap()
        .parse()
        .unwrap();
    let entry: Value = reqwest::get(format!("{url}/v1/entries/{index}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(entry["kind"], "tenant.created");
    assert_eq!(entry["request"], request, "{first}");
    assert_eq!(
        first,
        format!(
            "tenant {} created (entry {index}, request {request})",
            entry["tenant"].as_str().unwrap()
        )
    );
    node.kill().await;
}
