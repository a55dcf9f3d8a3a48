//! `govern manifest`, as a process: pin into a fresh data dir, verify with the signers file
//! pin made, and refuse a tampered, under-signed or stale manifest with a non-zero exit.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::{Command, Output};

use ed25519_dalek::SigningKey;
use govern_core::event::PublicKey;
use govern_core::manifest::{Manifest, Measurement, SignedManifest, TrustedRoot};
#[cfg(feature = "dev")]
use serde_json::Value;

fn govern(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_govern"))
        .args(args)
        .env("GOVERN_LOG", "warn")
        .env_remove("GOVERN_CONFIG")
        .env_remove("GOVERN_DATA_DIR")
        .output()
        .expect("run govern")
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn ok(args: &[&str]) -> String {
    let out = govern(args);
    assert!(
        out.status.success(),
        "govern {args:?} failed: {}",
        text(&out)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn refused(args: &[&str]) -> String {
    let out = govern(args);
    assert!(
        !out.status.success(),
        "govern {args:?} succeeded: {}",
        text(&out)
    );
    text(&out)
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[cfg(feature = "dev")]
fn serial(path: &Path) -> u64 {
    SignedManifest::from_json(&std::fs::read(path).unwrap())
        .unwrap()
        .manifest
        .serial
}

/// `manifest pin` makes dev manifests, so it runs in dev builds (the default) only.
#[cfg(feature = "dev")]
#[test]
fn pin_then_verify_then_tamper() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let manifest = dir.join("manifest.json");
    let signers = dir.join("manifest-signers.toml");

    let out = ok(&["manifest", "pin", "--data-dir", p(&dir)]);
    assert!(out.contains("verdict      ACCEPTED"), "{out}");
    for f in ["manifest.json", "manifest-signers.toml", "dev-ca/root.der"] {
        assert!(dir.join(f).exists(), "{f}");
    }
    for i in 1..=3 {
        let key = dir.join(format!("manifest-signers/dev-{i}.key"));
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&key).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600, "{}", key.display());
    }
    assert_eq!(serial(&manifest), 1);

    let out = ok(&["manifest", "verify", p(&manifest), "--signers", p(&signers)]);
    assert!(out.contains("verdict      ACCEPTED"), "{out}");
    assert_eq!(out.matches("pinned, valid").count(), 2, "{out}");

    // Pinning again with the same binary and root changes nothing.
    let before = std::fs::read(&manifest).unwrap();
    let out = ok(&["manifest", "pin", "--data-dir", p(&dir)]);
    assert!(out.contains("(unchanged)"), "{out}");
    assert_eq!(std::fs::read(&manifest).unwrap(), before);

    let out = ok(&["manifest", "show", p(&manifest)]);
    let hash = {
        let m = SignedManifest::from_json(&before).unwrap().manifest;
        hex::encode(m.manifest_hash().unwrap())
    };
    assert!(out.contains(&hash), "{out}");
    assert!(out.contains("signer-1..5"), "{out}");
    assert!(out.contains("well-formed and pinned"), "{out}");

    // Tampered: one value changed after signing.
    let mut value: Value = serde_json::from_slice(&before).unwrap();
    value["manifest"]["roles"]["policy"]["scopes"]
        .as_array_mut()
        .unwrap()
        .push("wallets".into());
    let tampered = tmp.path().join("tampered.json");
    std::fs::write(&tampered, serde_json::to_vec_pretty(&value).unwrap()).unwrap();
    let out = refused(&["manifest", "verify", p(&tampered), "--signers", p(&signers)]);
    assert!(
        out.contains("REFUSED: the signature by pinned manifest signer"),
        "{out}"
    );

    // One byte flipped in a signature.
    let text = String::from_utf8(before.clone()).unwrap();
    let sig = value["signatures"][0]["sig"].as_str().unwrap().to_string();
    let flipped_sig = format!(
        "{}{}",
        if sig.starts_with('A') { "B" } else { "A" },
        &sig[1..]
    );
    std::fs::write(&tampered, text.replacen(&sig, &flipped_sig, 1)).unwrap();
    let out = refused(&["manifest", "verify", p(&tampered), "--signers", p(&signers)]);
    assert!(out.contains("REFUSED"), "{out}");

    // Under-signed: one of the two signatures removed.
    let mut one: Value = serde_json::from_slice(&before).unwrap();
    one["signatures"].as_array_mut().unwrap().truncate(1);
    let under = tmp.path().join("under.json");
    std::fs::write(&under, serde_json::to_vec_pretty(&one).unwrap()).unwrap();
    let out = refused(&["manifest", "verify", p(&under), "--signers", p(&signers)]);
    assert!(out.contains("under-signed: 1 valid signature(s)"), "{out}");

    // A key that is not pinned signs: ignored, still under-signed. The third dev key
    // (pinned) then completes the quorum.
    let stranger = tmp.path().join("stranger.key");
    let out = ok(&["manifest", "keygen", "--out", p(&stranger)]);
    assert!(out.contains("public key"), "{out}");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&stranger).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    refused(&["manifest", "keygen", "--out", p(&stranger)]);
    ok(&["manifest", "sign", p(&under), "--key", p(&stranger)]);
    let out = refused(&["manifest", "verify", p(&under), "--signers", p(&signers)]);
    assert!(out.contains("not pinned (ignored)"), "{out}");
    let third = dir.join("manifest-signers/dev-3.key");
    let resigned = tmp.path().join("resigned.json");
    ok(&[
        "manifest",
        "sign",
        p(&under),
        "--key",
        p(&third),
        "--out",
        p(&resigned),
    ]);
    ok(&["manifest", "verify", p(&resigned), "--signers", p(&signers)]);

    // A successor must have a greater serial than the manifest in force.
    let out = refused(&[
        "manifest",
        "verify",
        p(&resigned),
        "--signers",
        p(&signers),
        "--previous",
        p(&manifest),
    ]);
    assert!(out.contains("does not exceed the serial 1"), "{out}");

    // A template is refused for signing: it cannot take effect.
    let template = Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/production.json");
    let out = refused(&[
        "manifest",
        "sign",
        p(&template),
        "--key",
        p(&stranger),
        "--out",
        p(&tmp.path().join("x.json")),
    ]);
    assert!(out.contains("placeholder"), "{out}");
    let out = ok(&["manifest", "show", p(&template)]);
    assert!(out.contains("INVALID"), "{out}");

    // A changed binary is a new manifest: simulated by a changed template, whose pin bumps
    // the serial and is again accepted.
    let mut changed: Value = serde_json::from_slice(
        &std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/dev.json")).unwrap(),
    )
    .unwrap();
    changed["name"] = "govern-dev-2".into();
    let changed_path = tmp.path().join("dev2.json");
    std::fs::write(&changed_path, serde_json::to_vec(&changed).unwrap()).unwrap();
    let out = ok(&[
        "manifest",
        "pin",
        "--data-dir",
        p(&dir),
        "--template",
        p(&changed_path),
    ]);
    assert!(out.contains("(written)"), "{out}");
    assert_eq!(serial(&manifest), 2);
    ok(&["manifest", "verify", p(&manifest), "--signers", p(&signers)]);
}

/// A quorum-signed manifest pinning the dev root: a dev build accepts it, a production build
/// (`--no-default-features`) refuses it, and a production build refuses to pin one.
#[test]
fn the_dev_root_is_accepted_by_dev_builds_only() {
    let tmp = tempfile::tempdir().unwrap();
    let template = Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/dev.json");
    let mut m = Manifest::from_json(&std::fs::read(template).unwrap()).unwrap();
    for spec in m.roles.values_mut() {
        spec.measurements = vec![Measurement {
            pcr0: hex::encode([7u8; 48]),
            pcr1: None,
            pcr2: None,
        }];
    }
    m.trusted_root = TrustedRoot::Dev {
        sha256: hex::encode([1u8; 32]),
    };
    m.serial = 1;
    let keys = [1u8, 2, 3].map(|b| SigningKey::from_bytes(&[b; 32]));
    let mut signed = SignedManifest::new(m);
    signed.sign(&keys[0]).unwrap();
    signed.sign(&keys[2]).unwrap();
    let file = tmp.path().join("manifest.json");
    std::fs::write(&file, serde_json::to_vec_pretty(&signed).unwrap()).unwrap();
    let signers = tmp.path().join("signers.toml");
    let list: Vec<String> = keys
        .iter()
        .map(|k| format!("\"{}\"", PublicKey::from(&k.verifying_key()).to_base64()))
        .collect();
    std::fs::write(
        &signers,
        format!("threshold = 2\nkeys = [{}]\n", list.join(", ")),
    )
    .unwrap();
    let args = ["manifest", "verify", p(&file), "--signers", p(&signers)];
    if cfg!(feature = "dev") {
        let out = ok(&args);
        assert!(out.contains("verdict      ACCEPTED"), "{out}");
    } else {
        let out = refused(&args);
        assert!(out.contains("pins the dev root"), "{out}");
        let out = refused(&["manifest", "pin", "--data-dir", p(&tmp.path().join("d"))]);
        assert!(out.contains("production build"), "{out}");
    }
    // A signers file that asks for more than it pins is refused outright.
    std::fs::write(
        &signers,
        format!("threshold = 4\nkeys = [{}]\n", list.join(", ")),
    )
    .unwrap();
    let out = refused(&args);
    assert!(out.contains("threshold 4 is not in 1..=3"), "{out}");
}
