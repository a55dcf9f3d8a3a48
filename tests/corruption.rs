//! `govern verify log` against a node serving damaged or substituted data: one flipped byte
//! in a stored entry, one wrong stored tree hash, and a different log served to a verifier
//! that remembers the checkpoint it saw before.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};

use govern_api::DataDir;
use govern_store::{Batch, RocksStorage, Storage};
use support::{Node, PATIENCE, event, fill, verify_log};

/// Start `govern node` on `data`, its stderr in a file beside it.
async fn start(data: &Path, listen: &str) -> Result<Node, String> {
    let stderr = data.with_extension(format!("{}.log", rand::random::<u32>()));
    support::start(data, listen, &stderr).await
}

fn entry_key(index: u64) -> Vec<u8> {
    let mut k = vec![b'e'];
    k.extend_from_slice(&index.to_be_bytes());
    k
}

fn node_key(level: u8, index: u64) -> Vec<u8> {
    let mut k = vec![b'n', level];
    k.extend_from_slice(&index.to_be_bytes());
    k
}

/// Change one stored value in place, as a disk fault would (the node must be stopped).
fn corrupt(data: &Path, key: &[u8], damage: impl FnOnce(&mut Vec<u8>)) {
    let db = RocksStorage::open(&data.join("db")).unwrap();
    let mut value = db.get(key).unwrap().expect("the key is stored");
    let before = value.clone();
    damage(&mut value);
    assert_ne!(value, before);
    let mut batch = Batch::new();
    batch.put(key.to_vec(), value);
    db.write(batch, true).unwrap();
}

/// A fresh state file path (no checkpoint remembered).
fn fresh_state(tmp: &Path, name: &str) -> PathBuf {
    let p = tmp.join(format!("{name}.json"));
    assert!(!p.exists());
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_names_the_entry_with_one_flipped_byte() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let node = start(&data, "127.0.0.1:0").await.unwrap();
    fill(&node, &data, "entry", 300).await;
    // The undamaged log verifies (so the failure below is the damage's doing).
    let (ok, out, err) = verify_log(&node.url, &fresh_state(tmp.path(), "before")).await;
    assert!(ok, "the undamaged log does not verify:\n{out}\n{err}");
    node.kill().await;

    corrupt(&data, &entry_key(137), |v| {
        let mid = v.len() / 2;
        v[mid] ^= 0x01;
    });

    let node = start(&data, "127.0.0.1:0")
        .await
        .expect("a damaged entry does not stop the node");
    let (ok, out, err) = verify_log(&node.url, &fresh_state(tmp.path(), "after")).await;
    eprintln!("verify log said: {err}");
    assert!(
        !ok,
        "verify log accepted a log with a damaged entry:\n{out}\n{err}"
    );
    assert!(
        err.contains("entry 137:"),
        "verify log did not name entry 137:\n{err}"
    );
    assert!(!out.contains("verified"), "{out}");
    node.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_names_a_wrong_tree_hash_and_the_node_refuses_a_wrong_right_edge() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let node = start(&data, "127.0.0.1:0").await.unwrap();
    // 4 boot entries + 296 = 300 = 256 + 32 + 8 + 4: tile 0 of level 0 is full, and its
    // leaf 100 is not on the tree's right edge (nodes (8,0), (5,8), (3,36), (2,74)), which
    // the node checks at start.
    fill(&node, &data, "node", 296).await;
    let (ok, out, err) = verify_log(&node.url, &fresh_state(tmp.path(), "before")).await;
    assert!(ok, "the undamaged log does not verify:\n{out}\n{err}");
    node.kill().await;

    corrupt(&data, &node_key(0, 100), |v| v[7] ^= 0x80);
    let node = start(&data, "127.0.0.1:0")
        .await
        .expect("an interior node does not stop the node");
    let (ok, out, err) = verify_log(&node.url, &fresh_state(tmp.path(), "after")).await;
    eprintln!("verify log said: {err}");
    assert!(
        !ok,
        "verify log accepted a log with a wrong tree hash:\n{out}\n{err}"
    );
    assert!(
        err.contains("entry 100:") || err.contains("tile/0/000"),
        "verify log did not name entry 100 or its tile:\n{err}"
    );
    node.kill().await;

    // A wrong hash on the right edge: the stored tree no longer matches the latest
    // checkpoint, and the node refuses to serve it.
    corrupt(&data, &node_key(8, 0), |v| v[0] ^= 0x01);
    match start(&data, "127.0.0.1:0").await {
        Ok(node) => {
            node.kill().await;
            panic!("the node started on a tree that does not match its checkpoint");
        }
        Err(why) => assert!(
            // 300, and the attestations of the log, the edge and the key service at the
            // restart in between.
            why.contains("checkpoint says size 303"),
            "refused for another reason: {why}"
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_remembers_the_checkpoint_it_saw() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state.json");
    let log_a = tmp.path().join("a");
    let node = start(&log_a, "127.0.0.1:0").await.unwrap();
    let url = node.url.clone();
    let listen = format!("127.0.0.1:{}", node.port());
    fill(&node, &log_a, "a", 20).await;
    let (ok, out, err) = verify_log(&url, &state).await;
    assert!(ok, "log A does not verify:\n{out}\n{err}");
    let remembered = std::fs::read(&state).expect("verify log remembers the checkpoint");
    node.kill().await;

    // Each impostor is served at the same URL, to the same state file.
    let same_url = |node: &Node| assert_eq!(node.url, url, "the impostor is not at the same URL");

    // Another log with its own key.
    let log_b = tmp.path().join("b");
    let node = start(&log_b, &listen).await.unwrap();
    same_url(&node);
    fill(&node, &log_b, "b", 25).await;
    let (ok, out, err) = verify_log(&url, &state).await;
    eprintln!("verify log said: {err}");
    assert!(
        !ok,
        "verify log accepted a log under another key:\n{out}\n{err}"
    );
    // Refused when the node announces its key, before any checkpoint is read.
    assert!(
        err.contains("the node announces the log key") && err.contains("not the pinned"),
        "{err}"
    );
    node.kill().await;

    // Logs signed with A's own key (a stolen or misused log key) but other histories.
    let with_a_key = |name: &str| {
        let dir = tmp.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(log_a.join("log.key"), dir.join("log.key")).unwrap();
        dir
    };
    // Shorter: a rollback.
    let log_c = with_a_key("c");
    let node = start(&log_c, &listen).await.unwrap();
    same_url(&node);
    fill(&node, &log_c, "c", 10).await;
    let (ok, out, err) = verify_log(&url, &state).await;
    eprintln!("verify log said: {err}");
    assert!(
        !ok,
        "verify log accepted a rollback from 20 to 10:\n{out}\n{err}"
    );
    assert!(err.contains("rollback"), "{err}");
    node.kill().await;

    // Longer: a fork whose first 20 entries are not A's.
    let log_d = with_a_key("d");
    let node = start(&log_d, &listen).await.unwrap();
    same_url(&node);
    fill(&node, &log_d, "d", 30).await;
    let (ok, out, err) = verify_log(&url, &state).await;
    eprintln!("verify log said: {err}");
    assert!(!ok, "verify log accepted a forked history:\n{out}\n{err}");
    assert!(
        // 20 appends after the node's 4 boot entries.
        err.contains("consistency with the checkpoint seen before (size 24)"),
        "{err}"
    );
    node.kill().await;

    // The failures changed nothing remembered, and log A itself still verifies against it.
    assert_eq!(
        std::fs::read(&state).unwrap(),
        remembered,
        "a failed verification changed the state file"
    );
    let node = start(&log_a, &listen).await.unwrap();
    fill_more(&node, &log_a, 5).await;
    let (ok, out, err) = verify_log(&url, &state).await;
    assert!(
        ok,
        "log A no longer verifies against its own remembered checkpoint:\n{out}\n{err}"
    );
    assert!(
        out.contains("consistent with the checkpoint of size 24 seen before"),
        "{out}"
    );
    node.kill().await;
}

/// Append `count` more events to a log that already has some.
async fn fill_more(node: &Node, data: &Path, count: u64) {
    let key = DataDir::open(data, None).unwrap().edge_key().unwrap();
    let attestation = support::edge_attestation(&node.url).await;
    let http = reqwest::Client::builder()
        .timeout(PATIENCE)
        .build()
        .unwrap();
    for n in 0..count {
        let resp = http
            .post(format!("{}/v1/entries", node.url))
            .header("content-type", "application/json")
            .body(event(&key, attestation, "more", n).into_bytes())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
    }
}
