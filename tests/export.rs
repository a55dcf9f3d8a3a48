//! `govern export`: a static C2SP tlog-tiles directory, the same from a data dir and from a
//! running node, byte for byte what the node serves, and verifiable whole by `govern verify
//! log` from any static file server.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use support::{fill, govern, serve, start, verify_log};

async fn export(args: &[&str]) -> (bool, String, String) {
    let out = govern().arg("export").args(args).output().await.unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// Every file under `dir`, by its path relative to `dir`.
fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let rel = path
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                out.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_is_the_log_as_static_tiles_that_verify_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let node = start(&data, "127.0.0.1:0", &tmp.path().join("node.err"))
        .await
        .unwrap();
    // 300 entries: a full tile and a partial one at level 0, a partial one at level 1.
    let size = fill(&node, &data, "export", 300 - support::BOOT_ENTRIES).await;
    assert_eq!(size, 300);

    let local = tmp.path().join("local");
    let data_arg = data.to_string_lossy().to_string();
    let (ok, out, err) = export(&[local.to_str().unwrap(), "--data-dir", &data_arg]).await;
    assert!(ok, "{err}");
    assert!(out.contains("exported 300 entries"), "{out}");
    let remote = tmp.path().join("remote");
    let (ok, _, err) = export(&[remote.to_str().unwrap(), "--url", &node.url]).await;
    assert!(ok, "{err}");
    // The same bytes, from the data dir and from the node; the data dir's export also
    // carries what a replay trusts beside the log's key (the node serves no such files).
    let mut files = tree(&local);
    let trust: Vec<String> = files
        .keys()
        .filter(|k| k.starts_with("trust/"))
        .cloned()
        .collect();
    assert_eq!(trust, ["trust/dev-root.der", "trust/manifest-signers.toml"]);
    assert_eq!(
        files["trust/manifest-signers.toml"],
        std::fs::read(data.join("manifest-signers.toml")).unwrap()
    );
    for k in &trust {
        files.remove(k);
    }
    assert_eq!(files, tree(&remote));
    for name in [
        "checkpoint",
        "v1/log",
        "tile/0/000",
        "tile/0/001.p/44",
        "tile/1/000.p/1",
        "tile/entries/000",
        "tile/entries/001.p/44",
        "manifests/1.json",
    ] {
        assert!(
            files.contains_key(name),
            "{name} is not exported: {:?}",
            files.keys()
        );
    }
    assert!(files.keys().any(|k| k.starts_with("checkpoints/")));
    assert!(!tmp.path().join("local.partial").exists());
    // Byte for byte what the node serves.
    let http = reqwest::Client::new();
    for name in [
        "checkpoint",
        "tile/0/001.p/44",
        "tile/entries/001.p/44",
        "tile/1/000.p/1",
    ] {
        let served = http
            .get(format!("{}/{name}", node.url))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(&files[name][..], &served[..], "{name}");
    }
    // Every checkpoint it signed, each for its own size.
    for (name, note) in files.iter().filter(|(k, _)| k.starts_with("checkpoints/")) {
        let size = name.trim_start_matches("checkpoints/");
        let text = String::from_utf8(note.clone()).unwrap();
        assert_eq!(text.lines().nth(1), Some(size), "{name}");
    }
    // It never overwrites.
    let (ok, _, err) = export(&[local.to_str().unwrap(), "--data-dir", &data_arg]).await;
    assert!(!ok);
    assert!(err.contains("exists already"), "{err}");

    // Served by a plain static file server, it verifies whole, to the node's own root.
    let url = serve(local.clone()).await;
    let (ok, out, err) = verify_log(&url, &tmp.path().join("state.json")).await;
    assert!(ok, "verify log of the export:\n{out}\n{err}");
    let status = govern()
        .args(["status", "--url", &node.url, "--json"])
        .output()
        .await
        .unwrap();
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert!(
        out.contains(status["root"].as_str().unwrap()),
        "{out}\n{status}"
    );
    // An offline receipt of entry 137, checked with no node; not for a changed entry.
    let entry = tmp.path().join("entry-137");
    let receipt = govern()
        .args(["receipt", "137", "--url", &node.url, "--entry-out"])
        .arg(&entry)
        .output()
        .await
        .unwrap();
    assert!(
        receipt.status.success(),
        "{}",
        String::from_utf8_lossy(&receipt.stderr)
    );
    assert!(
        receipt
            .stdout
            .starts_with(b"c2sp.org/tlog-proof@v1\nindex 137\n")
    );
    let proof = tmp.path().join("137.tlog-proof");
    std::fs::write(&proof, &receipt.stdout).unwrap();
    let info: serde_json::Value = http
        .get(format!("{}/v1/log", node.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = info["verifier_key"].as_str().unwrap();
    let check = |entry: PathBuf| {
        let proof = proof.clone();
        async move {
            govern()
                .args(["verify", "receipt"])
                .arg(&proof)
                .arg("--entry")
                .arg(&entry)
                .args(["--key", key])
                .output()
                .await
                .unwrap()
        }
    };
    let ok = check(entry.clone()).await;
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("entry 137 is in"));
    let mut bytes = std::fs::read(&entry).unwrap();
    bytes[10] ^= 0x01;
    let changed = tmp.path().join("entry-137-changed");
    std::fs::write(&changed, bytes).unwrap();
    let refused = check(changed).await;
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("not included"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    // A changed byte in an exported entry is found, at that entry.
    let bundle = local.join("tile/entries/000");
    let mut bytes = std::fs::read(&bundle).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&bundle, bytes).unwrap();
    let (ok, out, err) = verify_log(&url, &tmp.path().join("state2.json")).await;
    assert!(!ok, "verify log accepted a damaged export:\n{out}");
    assert!(err.contains("entry "), "{err}");
    node.kill().await;
}
