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
use support::{run, s, start};

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

/// The column of `header` at which `name` starts.
fn column(header: &str, name: &str) -> usize {
    header
        .find(name)
        .unwrap_or_else(|| panic!("no {name} in {header}"))
}

/// `govern scenario` prints every request it makes; `govern requests` lists a tenant's page
/// by page in aligned columns, each with its full id; `govern verify request` walks a
/// transfer's chain (every hop ok, the user's signature verified against the credential of
/// the time; `--json` as data: booleans, full ids), names a hop that does not verify by its
/// code, and refuses an unknown or malformed id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_printed_listed_and_verified() {
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

    // What the scenario printed: its tenants, then (tenant, kind, request) per request.
    let mut names = std::collections::HashMap::new();
    let mut rows: Vec<(String, String, String)> = Vec::new();
    let mut lines = out.lines();
    for line in lines.by_ref() {
        if let Some((name, id)) = line.split_once(" is tenant ") {
            names.insert(id.to_string(), name.to_string());
        } else {
            assert_eq!(
                line.split_whitespace().collect::<Vec<_>>(),
                ["tenant", "kind", "request"]
            );
            break;
        }
    }
    for line in lines {
        if line.starts_with("scenario (seed 3) done: size ") {
            break;
        }
        let cells: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cells.len(), 3, "{line}");
        rows.push((cells[0].into(), cells[1].into(), cells[2].into()));
    }
    assert_eq!(names.len(), 2, "{out}");
    // Each is the request of an entry of that kind and tenant, and every request of the
    // tenants' entries is printed (but the services' own key audits and reads).
    let size = reqwest::get(format!("{}/v1/log", node.url))
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()["size"]
        .as_u64()
        .unwrap();
    let mut entries = Vec::new();
    for i in 0..size {
        let e: Value = reqwest::get(format!("{}/v1/entries/{i}", node.url))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        entries.push(e);
    }
    let of_tenants: Vec<&Value> = entries
        .iter()
        .filter(|e| names.contains_key(e["tenant"].as_str().unwrap()))
        .collect();
    for (name, kind, request) in &rows {
        assert!(
            of_tenants
                .iter()
                .any(|e| names[e["tenant"].as_str().unwrap()] == *name
                    && e["kind"] == kind.as_str()
                    && e["request"] == request.as_str()),
            "{name} {kind} {request} is no entry's"
        );
    }
    for e in &of_tenants {
        if !["keys.audit", "reads.audit"].contains(&e["kind"].as_str().unwrap()) {
            assert!(
                rows.iter().any(|(_, _, r)| e["request"] == r.as_str()),
                "{e} is not printed"
            );
        }
    }

    // `govern requests` of the first tenant, five at a time, as the operator: its users'
    // requests (not the operator's tenant.created and keys.rotated), in log order.
    let (tenant, _) = names.iter().find(|(_, n)| *n == "tenant-0").unwrap();
    let mut expected: Vec<&str> = Vec::new();
    for (name, kind, request) in &rows {
        if name == "tenant-0"
            && !["tenant.created", "keys.rotated"].contains(&kind.as_str())
            && !expected.contains(&request.as_str())
        {
            expected.push(request);
        }
    }
    let mut listed: Vec<String> = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut args = vec![
            "requests",
            "--tenant",
            tenant.as_str(),
            "--limit",
            "5",
            "--url",
            node.url.as_str(),
            "--data-dir",
            s(&data),
        ];
        if let Some(a) = &after {
            args.extend(["--after", a.as_str()]);
        }
        let (ok, out, err) = run(&args).await;
        assert!(ok, "{err}");
        let lines: Vec<&str> = out.lines().collect();
        let header = lines[0];
        assert_eq!(
            header.split_whitespace().collect::<Vec<_>>(),
            ["index", "time", "kind", "status", "request"]
        );
        let last = *lines.last().unwrap();
        let items = &lines[1..lines.len() - 1];
        assert!(!items.is_empty() && items.len() <= 5, "{out}");
        for item in items {
            // Aligned: each cell starts under its header; the id is whole.
            for (name, cell) in ["time", "kind", "status", "request"]
                .iter()
                .zip(item.split_whitespace().skip(1))
            {
                assert_eq!(
                    item[column(header, name)..].split_whitespace().next(),
                    Some(cell),
                    "{out}"
                );
            }
            let id = item[column(header, "request")..].trim_end();
            assert!(uuid::Uuid::parse_str(id).is_ok(), "{item}");
            listed.push(id.to_string());
        }
        match last.strip_prefix(&format!(
            "next page: govern requests --tenant {tenant} --after "
        )) {
            Some(rest) => after = Some(rest.trim_end_matches(" --limit 5").to_string()),
            None => {
                assert_eq!(
                    last,
                    format!("end of the list ({} on this page)", items.len())
                );
                break;
            }
        }
    }
    assert_eq!(listed, expected);

    // The first transfer's receipt chain, as data.
    let (_, _, request) = rows
        .iter()
        .find(|(n, k, _)| n == "tenant-0" && k == "transfer.requested")
        .unwrap();
    let request = request.clone();
    let (ok, out, err) = run(&["verify", "request", &request, "--url", &node.url, "--json"]).await;
    assert!(ok, "{out}{err}");
    let chain: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(chain["ok"], true);
    assert_eq!(chain["request"], request.as_str());
    let hops = chain["hops"].as_array().unwrap();
    let kinds: Vec<&str> = hops.iter().map(|h| h["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["transfer.requested", "approval.decided"]);
    for hop in hops {
        let entry = &entries[usize::try_from(hop["index"].as_u64().unwrap()).unwrap()];
        assert_eq!(hop["ok"], true, "{hop}");
        assert_eq!(
            hop["producer"], entry["producer"],
            "the role and the whole key"
        );
        assert_eq!(hop["identity"]["ok"], true, "{hop}");
        assert_eq!(
            hop["identity"]["attestation"], entry["attestation"],
            "{hop}"
        );
        assert_eq!(hop["identity"]["manifest"], 1, "{hop}");
        assert_eq!(
            hop["inclusion"],
            serde_json::json!({"ok": true, "size": size, "recomputed": false})
        );
        let action = &entry["body"]["action"];
        let signature = &hop["user_signature"];
        assert_eq!(signature["ok"], true, "{hop}");
        assert_eq!(signature["user"], action["user"], "the whole user id");
        assert_eq!(signature["credential"], action["credential"]);
        assert!(["key", "passkey"].contains(&signature["credential_type"].as_str().unwrap()));
    }
    // The table: aligned columns, the users' ids whole.
    let (ok, out, _) = run(&["verify", "request", &request, "--url", &node.url]).await;
    assert!(ok, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    let header = lines[1];
    for (row, hop) in lines[2..4].iter().zip(hops) {
        assert!(
            row[column(header, "kind")..].starts_with(hop["kind"].as_str().unwrap()),
            "{out}"
        );
        let user = hop["user_signature"]["user"].as_str().unwrap();
        assert!(
            row[column(header, "user signature")..].contains(&format!("of user {user})")),
            "{out}"
        );
        assert!(row[column(header, "verdict")..].starts_with("ok"), "{out}");
    }
    assert_eq!(lines[4], "verdict: ok");

    // A copy whose inclusion proofs lie: every hop fails inclusion, by its code.
    let export = tmp.path().join("export");
    let (ok, out, err) = run(&["export", s(&export), "--url", &node.url]).await;
    assert!(ok, "{out}{err}");
    std::fs::create_dir_all(export.join("v1/proofs")).unwrap();
    std::fs::write(
        export.join("v1/proofs/inclusion"),
        serde_json::json!({"size": size, "hashes": [Hash([7; 32]).to_base64()]}).to_string(),
    )
    .unwrap();
    let lying = support::serve(export).await;
    let (ok, out, err) = run(&["verify", "request", &request, "--url", &lying, "--json"]).await;
    assert!(!ok, "{out}");
    assert!(err.contains("a hop of the chain does not verify"), "{err}");
    let chain: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(chain["ok"], false);
    for hop in chain["hops"].as_array().unwrap() {
        assert_eq!(hop["ok"], false, "{hop}");
        assert_eq!(hop["identity"]["ok"], true, "{hop}");
        assert_eq!(hop["user_signature"]["ok"], true, "{hop}");
        let inclusion = hop["inclusion"].as_object().unwrap();
        assert_eq!(inclusion["ok"], false, "{hop}");
        assert_eq!(inclusion["code"], "inclusion-proof", "{hop}");
        assert!(
            inclusion["detail"].as_str().unwrap().starts_with(&format!(
                "the node's inclusion proof at size {size} does not verify: "
            )),
            "{hop}"
        );
        assert_eq!(inclusion.len(), 3, "ok, code and detail only: {hop}");
    }
    let (ok, out, _) = run(&["verify", "request", &request, "--url", &lying]).await;
    assert!(!ok);
    let first = chain["hops"][0]["index"].as_u64().unwrap();
    assert!(out.contains("FAIL (inclusion-proof)"), "{out}");
    assert!(
        out.contains(&format!(
            "entry {first}, inclusion: inclusion-proof: the node's inclusion proof at size {size} does not verify: "
        )),
        "{out}"
    );
    assert!(out.ends_with("verdict: FAIL\n"), "{out}");

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
