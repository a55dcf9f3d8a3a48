//! An operator's first steps, as attacks on the data dir: reading commands never write
//! (a missing, empty, foreign, read-only directory, and `/`), and a start that fails for a
//! setting (a port in use, an IP as relying party) or for a restored copy's missing files
//! leaves the data dir byte for byte as it was.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

/// Every path under `root` with its kind and, for a file, the SHA-256 of its bytes and its
/// mode: two equal snapshots mean nothing was created, changed or removed.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, String> {
    use std::os::unix::fs::PermissionsExt as _;
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let what = if meta.is_dir() {
                stack.push(path.clone());
                format!("dir {:o}", meta.permissions().mode())
            } else if meta.is_file() {
                format!(
                    "file {:o} {}",
                    meta.permissions().mode(),
                    hex::encode(Sha256::digest(std::fs::read(&path).unwrap_or_default()))
                )
            } else {
                "other".into()
            };
            out.insert(path, what);
        }
    }
    out
}

/// The names directly in `dir` (for `/`, where a full walk is too much).
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_commands_create_nothing_and_say_what_the_directory_lacks() {
    use std::os::unix::fs::PermissionsExt as _;
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let foreign = tmp.path().join("foreign");
    std::fs::create_dir_all(foreign.join("sub")).unwrap();
    std::fs::write(foreign.join("notes.txt"), b"not a data dir").unwrap();
    let sealed = tmp.path().join("sealed");
    std::fs::create_dir(&sealed).unwrap();
    std::fs::write(sealed.join("x"), b"x").unwrap();
    std::fs::set_permissions(&sealed, std::fs::Permissions::from_mode(0o555)).unwrap();
    let missing = tmp.path().join("missing");
    let out = tmp.path().join("export-out");

    let cases: Vec<(PathBuf, String)> = vec![
        (missing.clone(), "it does not exist".into()),
        (empty.clone(), "no db/".into()),
        (foreign.clone(), "no db/".into()),
        (sealed.clone(), "no db/".into()),
    ];
    let root_before = names(Path::new("/"));
    let before = snapshot(tmp.path());
    for (dir, reason) in &cases {
        let d = dir.to_str().unwrap();
        let expected = format!("error: {d} is not a govern data dir: {reason}");
        for args in [
            vec!["status", "--data-dir", d],
            vec!["status", "--data-dir", d, "--json"],
            vec!["export", out.to_str().unwrap(), "--data-dir", d],
        ] {
            let (ok, stdout, stderr) = support::run_in(&args, &work).await;
            assert!(!ok, "{args:?} succeeded: {stdout}");
            assert!(
                stderr.lines().any(|l| l == expected),
                "{args:?}: expected {expected:?}, got {stderr}"
            );
        }
    }
    // `/` as the data dir: the same, and nothing appears at the root.
    let (ok, _, stderr) = support::run_in(&["status", "--data-dir", "/"], &work).await;
    assert!(!ok);
    assert!(
        stderr.contains("error: / is not a govern data dir: "),
        "{stderr}"
    );
    let (ok, _, stderr) =
        support::run_in(&["export", out.to_str().unwrap(), "--data-dir", "/"], &work).await;
    assert!(!ok);
    assert!(
        stderr.contains("error: / is not a govern data dir: "),
        "{stderr}"
    );
    // No flags, in a directory that is not a node's: the default `.govern`, not made.
    for args in [vec!["status"], vec!["export", "here"]] {
        let (ok, _, stderr) = support::run_in(&args, &work).await;
        assert!(!ok);
        assert!(
            stderr
                .lines()
                .any(|l| l == "error: .govern is not a govern data dir: it does not exist"),
            "{args:?}: {stderr}"
        );
    }
    assert_eq!(snapshot(tmp.path()), before, "a reading command wrote");
    assert_eq!(
        names(Path::new("/")),
        root_before,
        "something appeared in /"
    );
    std::fs::set_permissions(&sealed, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Hold `addr`'s port for the test's length.
fn taken_port() -> (std::net::TcpListener, String) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    (l, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_refused_for_a_setting_leaves_the_data_dir_as_it_was() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let (_held, addr) = taken_port();

    // A fresh data dir: nothing is created.
    let fresh = tmp.path().join("fresh");
    let f = fresh.to_str().unwrap();
    let (ok, _, stderr) = support::run_in(&["up", "--data-dir", f, "--listen", &addr], &work).await;
    assert!(!ok);
    assert!(
        stderr.contains(&format!("error: cannot listen on {addr}: ")),
        "{stderr}"
    );
    let (ok, _, stderr) = support::run_in(
        &[
            "node",
            "--data-dir",
            f,
            "--listen",
            "127.0.0.1:0",
            "--rp-id",
            "127.0.0.1",
        ],
        &work,
    )
    .await;
    assert!(!ok);
    assert!(
        stderr.contains(
            "error: rp_id \"127.0.0.1\" is an IP address; WebAuthn needs a domain name (localhost in dev)"
        ),
        "{stderr}"
    );
    let (ok, _, stderr) = support::run_in(
        &[
            "up",
            "--data-dir",
            f,
            "--listen",
            "127.0.0.1:0",
            "--witnesses",
            "w.toml",
        ],
        &work,
    )
    .await;
    assert!(!ok);
    assert!(
        stderr.contains("error: --witnesses w.toml: govern up runs its own three witnesses"),
        "{stderr}"
    );
    assert!(!fresh.exists(), "a refused start made the data dir");

    // An existing data dir, with a log: byte for byte as it was.
    let data = tmp.path().join("data");
    let node = support::start(&data, "127.0.0.1:0", &tmp.path().join("node.err"))
        .await
        .unwrap();
    node.kill().await;
    let before = snapshot(&data);
    let d = data.to_str().unwrap();
    for (args, expected) in [
        (
            vec!["up", "--data-dir", d, "--listen", &addr],
            format!("error: cannot listen on {addr}: "),
        ),
        (
            vec!["node", "--data-dir", d, "--listen", &addr],
            format!("error: cannot listen on {addr}: "),
        ),
        (
            vec![
                "node",
                "--data-dir",
                d,
                "--listen",
                "127.0.0.1:0",
                "--rp-id",
                "127.0.0.1",
            ],
            "is an IP address".to_string(),
        ),
        (
            vec![
                "node",
                "--data-dir",
                d,
                "--listen",
                "127.0.0.1:0",
                "--web-origin",
                "http://evil.example",
            ],
            "error: origin http://evil.example/ is not on rp_id localhost".to_string(),
        ),
        (
            vec![
                "node",
                "--data-dir",
                d,
                "--listen",
                "127.0.0.1:0",
                "--witnesses",
                "/nonexistent/witnesses.toml",
            ],
            "error: /nonexistent/witnesses.toml: ".to_string(),
        ),
    ] {
        let (ok, _, stderr) = support::run_in(&args, &work).await;
        assert!(!ok, "{args:?}");
        assert!(stderr.contains(&expected), "{args:?}: {stderr}");
        assert_eq!(snapshot(&data), before, "{args:?} changed the data dir");
    }
    // A second node on a data dir in use: refused in words, naming the process.
    let node = support::start(&data, "127.0.0.1:0", &tmp.path().join("node2.err"))
        .await
        .unwrap();
    let pid = node.child.id().unwrap();
    let (ok, _, stderr) =
        support::run_in(&["node", "--data-dir", d, "--listen", "127.0.0.1:0"], &work).await;
    assert!(!ok);
    let expected =
        format!("error: log store: {d}/db is in use by another process (PID {pid}): stop it first");
    assert!(stderr.contains(&expected), "{expected}\n{stderr}");
    node.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_copy_names_everything_to_install_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let data = tmp.path().join("data");
    let node = support::start(&data, "127.0.0.1:0", &tmp.path().join("node.err"))
        .await
        .unwrap();
    node.kill().await;
    let export = tmp.path().join("export");
    let replayed = tmp.path().join("replayed");
    let (ok, _, stderr) = support::run_in(
        &[
            "export",
            export.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
        ],
        &work,
    )
    .await;
    assert!(ok, "{stderr}");
    let (ok, _, stderr) = support::run_in(
        &[
            "replay",
            export.to_str().unwrap(),
            "--data-dir",
            replayed.to_str().unwrap(),
        ],
        &work,
    )
    .await;
    assert!(ok, "{stderr}");
    let before = snapshot(&replayed);
    let r = replayed.to_str().unwrap();
    let (ok, _, stderr) =
        support::run_in(&["node", "--data-dir", r, "--listen", "127.0.0.1:0"], &work).await;
    assert!(!ok);
    let expected = format!(
        "error: {r} holds a log of 4 entries but not all of its node's files (a replayed or partly restored copy?): \
         install log.key (the log's signing key), dev-ca/ (the dev CA, root.der and root.key), \
         manifest-signers/ (the dev manifest-signer keys), keys/ (the key service: its sealed master and tenants' seeds) \
         from the original data dir's backup, then start again; nothing was written \
         (docs/operations.md, \"Restore\", lists what a data dir holds)"
    );
    assert!(
        stderr.lines().any(|l| l == expected),
        "{expected}\n{stderr}"
    );
    assert_eq!(snapshot(&replayed), before, "a refused start wrote");
    // Another log's key: refused as not this log's, nothing written.
    let other = tmp.path().join("other");
    let node = support::start(&other, "127.0.0.1:0", &tmp.path().join("other.err"))
        .await
        .unwrap();
    node.kill().await;
    std::fs::copy(other.join("log.key"), replayed.join("log.key")).unwrap();
    let before = snapshot(&replayed);
    let (ok, _, stderr) =
        support::run_in(&["node", "--data-dir", r, "--listen", "127.0.0.1:0"], &work).await;
    assert!(!ok);
    assert!(
        stderr.contains("the stored log's latest checkpoint is not signed by this key"),
        "{stderr}"
    );
    assert!(!stderr.contains("corrupt"), "{stderr}");
    assert_eq!(snapshot(&replayed), before, "a refused start wrote");
    // The restore the message asks for: every file of the original beside the replayed
    // store; the node starts and serves the log where it was.
    for name in [
        "log.key",
        "edge.key",
        "operator.token",
        "manifest.json",
        "manifest-signers.toml",
    ] {
        std::fs::copy(data.join(name), replayed.join(name)).unwrap();
    }
    for dir in ["dev-ca", "manifest-signers", "keys"] {
        support::copy_dir(&data.join(dir), &replayed.join(dir));
    }
    let node = support::start(&replayed, "127.0.0.1:0", &tmp.path().join("restored.err"))
        .await
        .unwrap();
    let state: serde_json::Value = reqwest::get(format!("{}/v1/state", node.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // The log's four entries, and this start's three attestations after them.
    assert_eq!(state["size"], 7, "{state}");
    node.kill().await;
}

/// `attestation verify --root dev` checks a dev document against the data dir's dev CA root,
/// read only; on a directory that has none it says which file it looked for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attestation_verify_reads_the_dev_root_of_a_data_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let data = tmp.path().join("data");
    let node = support::start(&data, "127.0.0.1:0", &tmp.path().join("node.err"))
        .await
        .unwrap();
    // Entry 1: the log's service.attested, whose body carries its document in base64.
    let entry: serde_json::Value = reqwest::get(format!("{}/v1/entries/1", node.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    node.kill().await;
    let doc = tmp.path().join("doc.b64");
    std::fs::write(&doc, entry["body"]["document"].as_str().unwrap()).unwrap();
    let d = doc.to_str().unwrap();
    let (ok, stdout, stderr) = support::run_in(
        &[
            "attestation",
            "verify",
            d,
            "--root",
            "dev",
            "--data-dir",
            data.to_str().unwrap(),
        ],
        &work,
    )
    .await;
    assert!(ok, "{stdout}{stderr}");
    assert!(
        stdout.lines().any(|l| l == "verdict      ACCEPTED"),
        "{stdout}"
    );
    let before = snapshot(tmp.path());
    let missing = tmp.path().join("missing");
    let m = missing.to_str().unwrap();
    let (ok, _, stderr) = support::run_in(
        &["attestation", "verify", d, "--root", "dev", "--data-dir", m],
        &work,
    )
    .await;
    assert!(!ok);
    assert_eq!(
        stderr,
        format!(
            "error: --root dev: {m}/dev-ca/root.der does not exist: is {m} a dev node's data dir? (--data-dir)\n"
        )
    );
    assert_eq!(snapshot(tmp.path()), before);
}
