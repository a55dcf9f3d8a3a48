//! Dev mode: pin the measurements of the running executable and the data dir's dev CA root
//! into a manifest, signed by dev manifest-signer keys kept in the data dir
//! (`govern manifest pin`; `govern up` and `govern node` run it in a dev build).
//!
//! ```text
//! <data-dir>/manifest.json             the signed manifest
//! <data-dir>/manifest-signers/dev-N.key  three dev signer keys (C2SP private keys, 0600)
//! <data-dir>/manifest-signers.toml     the pinned signers: threshold 2 of the three
//! <data-dir>/dev-ca/                   the simulated NSM's CA (root.der is what is pinned)
//! ```

use std::path::{Path, PathBuf};

use ed25519_dalek::VerifyingKey;
use govern_core::attestation::TrustAnchor;
use govern_core::event::{PublicKey, Role};
use govern_core::manifest::{Manifest, Measurement, SignedManifest, TrustedRoot};
use govern_core::note::NoteSigner;

/// The dev manifest template (`manifests/dev.json`).
pub const DEV_TEMPLATE: &str = include_str!("../../manifests/dev.json");
/// How many dev manifest-signer keys a data dir gets.
pub const DEV_SIGNERS: usize = 3;
/// How many of them must sign.
pub const DEV_THRESHOLD: usize = 2;

/// What [`pin_dev_manifest`] did.
#[derive(Debug, Clone)]
pub struct Pinned {
    /// The signed manifest now in `<data-dir>/manifest.json`.
    pub signed: SignedManifest,
    /// Whether the file was (re)written.
    pub changed: bool,
    /// The manifest file.
    pub path: PathBuf,
    /// The pinned dev root.
    pub root: TrustAnchor,
    /// The dev CA directory.
    pub ca_dir: PathBuf,
    /// The signers file.
    pub signers_path: PathBuf,
}

fn err(path: &Path) -> impl FnOnce(std::io::Error) -> String + '_ {
    move |e| format!("{}: {e}", path.display())
}

/// Write a public file (mode 0644) durably: govern_workers::durable, the one durable write.
fn write_public(path: &Path, bytes: &[u8]) -> Result<(), String> {
    govern_workers::durable::write_with_mode(path, bytes, PUBLIC_MODE).map_err(|e| e.to_string())
}

/// The mode of the manifest and the signers file: anyone may read them.
const PUBLIC_MODE: u32 = 0o644;

/// Write `signed` as pretty JSON to `path`.
///
/// # Errors
/// A message naming the file.
pub fn write_manifest(path: &Path, signed: &SignedManifest) -> Result<(), String> {
    let mut text = serde_json::to_vec_pretty(signed).map_err(|e| e.to_string())?;
    text.push(b'\n');
    write_public(path, &text)
}

/// The text of a signers file for `keys` and `threshold`.
#[must_use]
pub fn signers_toml(keys: &[VerifyingKey], threshold: usize) -> String {
    use std::fmt::Write as _;
    let mut out = String::from(
        "# The pinned manifest signers: a manifest takes effect when `threshold` of these\n\
         # keys (Ed25519, standard base64) have signed it.\n",
    );
    let _ = write!(out, "threshold = {threshold}\nkeys = [\n");
    for k in keys {
        let _ = writeln!(out, "  \"{}\",", PublicKey::from(k).to_base64());
    }
    out.push_str("]\n");
    out
}

fn same_but_serial(a: &Manifest, b: &Manifest) -> bool {
    let mut a = a.clone();
    a.serial = b.serial;
    a == *b
}

/// Pin `template` (the built-in dev manifest when `None`) into `data_dir`: every role's
/// measurement becomes the dev PCR0 of `executable` for that role, the trusted root the
/// data dir's dev CA root. The serial stays when nothing else changed, else becomes one past
/// the existing manifest's and the template's. Dev signer keys are made once; two sign.
///
/// # Errors
/// A message: the template does not pin the dev root, a file cannot be read or written, or
/// the result does not validate.
pub fn pin_dev_manifest(
    data_dir: &Path,
    template: Option<Manifest>,
    executable: &Path,
) -> Result<Pinned, String> {
    std::fs::create_dir_all(data_dir).map_err(err(data_dir))?;
    let mut manifest = match template {
        Some(m) => m,
        None => {
            SignedManifest::from_json(DEV_TEMPLATE.as_bytes())
                .map_err(|e| format!("built-in manifests/dev.json: {e}"))?
                .manifest
        }
    };
    if !manifest.trusted_root.is_dev() {
        return Err(
            "the template does not pin the dev root: `manifest pin` is for dev \
                    manifests; a production manifest pins the PCR0 of each role's signed \
                    enclave image, then `govern manifest sign`"
                .into(),
        );
    }
    let template_serial = manifest.serial;
    let roles: Vec<Role> = manifest.roles.keys().cloned().collect();
    let measured = govern_workers::nsm::dev_measurements(executable, &roles)
        .map_err(|e| format!("{}: {e}", executable.display()))?;
    for (role, pcr0) in roles.iter().zip(measured) {
        if let Some(spec) = manifest.roles.get_mut(role) {
            spec.measurements = vec![Measurement {
                pcr0: hex::encode(pcr0),
                pcr1: None,
                pcr2: None,
            }];
        }
    }
    let ca_dir = data_dir.join("dev-ca");
    let root_der = govern_workers::nsm::dev_root_der(&ca_dir).map_err(|e| e.to_string())?;
    let root = TrustAnchor::from_der(&root_der)
        .map_err(|e| format!("{}: {e}", ca_dir.join("root.der").display()))?;
    manifest.trusted_root = TrustedRoot::Dev {
        sha256: hex::encode(root.sha256()),
    };

    let path = data_dir.join("manifest.json");
    let existing = if path.exists() {
        let text = std::fs::read(&path).map_err(err(&path))?;
        Some(
            SignedManifest::from_json(&text)
                .map_err(|e| format!("{}: {e} (move it away to pin afresh)", path.display()))?,
        )
    } else {
        None
    };
    let mut signed = match existing {
        Some(existing) if same_but_serial(&manifest, &existing.manifest) => existing,
        existing => {
            let previous = existing.map_or(0, |e| e.manifest.serial);
            manifest.serial = previous.max(template_serial) + 1;
            SignedManifest::new(manifest)
        }
    };
    signed
        .manifest
        .validate_pinned()
        .map_err(|e| format!("the pinned manifest is invalid: {e}"))?;

    let keys_dir = data_dir.join("manifest-signers");
    std::fs::create_dir_all(&keys_dir).map_err(err(&keys_dir))?;
    let dev_keys = (1..=DEV_SIGNERS)
        .map(|i| {
            crate::datadir::load_or_create_key(
                &keys_dir.join(format!("dev-{i}.key")),
                &format!("govern-dev-manifest-signer-{i}"),
            )
            .map_err(|e| e.to_string())
        })
        .collect::<Result<Vec<_>, _>>()?;
    let signers_path = data_dir.join("manifest-signers.toml");
    if !signers_path.exists() {
        let keys: Vec<VerifyingKey> = dev_keys.iter().map(NoteSigner::verifying_key).collect();
        write_public(&signers_path, signers_toml(&keys, DEV_THRESHOLD).as_bytes())?;
    }
    let before = signed.clone();
    for key in dev_keys.iter().take(DEV_THRESHOLD) {
        signed.sign(key.signing_key()).map_err(|e| e.to_string())?;
    }
    let changed = before != signed || !path.exists();
    if changed {
        write_manifest(&path, &signed)?;
    }
    Ok(Pinned {
        signed,
        changed,
        path,
        root,
        ca_dir,
        signers_path,
    })
}

/// In a dev build, make sure `data_dir` holds a manifest pinning `executable`: pin the
/// built-in template when there is none, re-pin the existing one (a new serial) when the
/// executable changed since.
///
/// # Errors
/// As [`pin_dev_manifest`].
pub fn ensure_dev_pinned(data_dir: &Path, executable: &Path) -> Result<Pinned, String> {
    let path = data_dir.join("manifest.json");
    let template = if path.exists() {
        let text = std::fs::read(&path).map_err(err(&path))?;
        Some(
            SignedManifest::from_json(&text)
                .map_err(|e| format!("{}: {e}", path.display()))?
                .manifest,
        )
    } else {
        None
    };
    pin_dev_manifest(data_dir, template, executable)
}
