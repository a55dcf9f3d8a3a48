//! A person at a real browser: headless Chromium (Debian's), driven by playwright-core with
//! Chromium's virtual authenticator, opens the one-time link `govern tenant create` printed,
//! registers a passkey with `navigator.credentials.create`, then creates a wallet and signs a
//! transfer with `navigator.credentials.get` over challenges the page recomputed itself. The
//! log then holds the transfer with the passkey's signature, which the offline verifier
//! accepts from the log alone.
//!
//! Needs `chromium` and `tests/browser/node_modules` (`make test` installs both).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::Path;
use std::process::Stdio;

use govern_core::event::SignedEvent;
use serde_json::Value;

async fn entry(url: &str, index: u64) -> SignedEvent {
    let bytes = reqwest::get(format!("{url}/v1/entries/{index}"))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    SignedEvent::from_bytes(&bytes).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_registers_a_passkey_and_signs_a_transfer() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let node = support::start(&data, "127.0.0.1:0", &tmp.path().join("stderr"))
        .await
        .unwrap();
    // The browser's origin is the node's default web origin: http://localhost:<port>.
    let url = format!("http://localhost:{}", node.port());
    let created = support::govern()
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
        link.starts_with(&format!("{url}/ui/register.html#tenant=")),
        "{link}"
    );

    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    let run = tokio::time::timeout(
        std::time::Duration::from_secs(120),
        tokio::process::Command::new("node")
            .arg(dir.join("passkey.mjs"))
            .arg(link)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .output(),
    )
    .await
    .expect("the browser finishes within two minutes")
    .expect("node runs (make test installs Node's packages and Chromium)");
    assert!(
        run.status.success(),
        "the browser run failed:\n{}\n{}\nnode's stderr:\n{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr),
        node.stderr()
    );
    let out: Value = serde_json::from_slice(run.stdout.trim_ascii()).unwrap();
    assert_eq!(out["transfer"]["status"], "requested", "{out}");
    // The virtual authenticator signed: registration, wallet, transfer.
    assert!(
        out["authenticator"][0]["signCount"].as_u64().unwrap() >= 2,
        "{out}"
    );
    assert_eq!(out["authenticator"][0]["rpId"], "localhost");

    // From the log alone: the transfer carries the passkey's signature over its own challenge
    // object, and the credential recorded at registration verifies it.
    let transfer = entry(&url, out["transfer"]["index"].as_u64().unwrap()).await;
    let e = transfer.event();
    assert_eq!(e.kind.as_str(), "transfer.requested");
    assert_eq!(e.body["signature"]["type"], "passkey");
    // Its parameters are sealed in scope `transfers`: nothing of them in the entry.
    assert!(e.body.get("params").is_none());
    assert_eq!(e.sealed.as_ref().unwrap()["scope"], "transfers");
    let credential_id = e.body["action"]["credential"].as_str().unwrap();
    let size = reqwest::get(format!("{url}/v1/log"))
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()["size"]
        .as_u64()
        .unwrap();
    let mut credential = None;
    for i in 0..size {
        let ev = entry(&url, i).await;
        if ev.event().kind.as_str() == "credential.registered"
            && ev.event().body["credential"] == credential_id
        {
            credential = govern_projections::tenants::registered_credential(ev.event());
        }
    }
    let credential = credential.expect("the log holds the credential");
    govern_core::action::verify_user_action_body(&e.body, &credential).unwrap();
    node.kill().await;
}
