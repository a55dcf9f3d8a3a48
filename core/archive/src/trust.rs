//! The trust a replay starts from, and where it comes from: the log's verifier key (the
//! caller's pin, else the export's `v1/log`), the manifest signers (the caller's file, else
//! the export's `trust/manifest-signers.toml`), for a dev log the dev CA root (the caller's
//! file, else `trust/dev-root.der`; the manifest pins its SHA-256, so it cannot be swapped),
//! and the witness policy the checkpoints are checked under (the caller's file, else the
//! export's `trust/witnesses.toml`, else the policy its `v1/log` names, else none). Every
//! default taken from the export is said through [`Observer::note`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use govern_admission::IdentityPolicy;
use govern_core::attestation::TrustAnchor;
use govern_core::event::PublicKey;
use govern_core::manifest::{ManifestSigners, SignersFile};
use govern_core::note::NoteVerifier;
use govern_core::witness::{PolicyFile, WitnessPolicy};

use crate::read::read;
use crate::{Error, Observer, layout};

/// What the caller pins; `None` takes the export's own.
#[derive(Debug, Clone, Default)]
pub struct Pins {
    /// The log's verifier key.
    pub key: Option<String>,
    /// The manifest signers file.
    pub signers: Option<PathBuf>,
    /// The dev CA root (DER).
    pub dev_root: Option<PathBuf>,
    /// The witness policy file.
    pub witnesses: Option<PathBuf>,
    /// Whether manifests pinning the dev root are accepted (a `dev` build).
    pub allow_dev_root: bool,
}

/// The trust a replay runs under.
#[derive(Debug)]
pub struct Trust {
    /// The log's origin (its key's name).
    pub origin: String,
    /// The log's verifier key.
    pub verifier: NoteVerifier,
    /// The node's append policy, with the pinned signers and roots, empty.
    pub policy: Arc<IdentityPolicy>,
    /// The witness policy, if any.
    pub witnesses: Option<WitnessPolicy>,
}

/// Parse a manifest signers file's text ([`SignersFile`]).
///
/// # Errors
/// A message naming what is wrong.
pub fn parse_manifest_signers(text: &str) -> Result<ManifestSigners, String> {
    let file: SignersFile = toml::from_str(text).map_err(|e| e.to_string())?;
    ManifestSigners::from_file(&file)
}

/// Read a witness policy file (TOML: `quorum = k` and `[[witness]]` tables of `vkey` and
/// `url`), checked to hold together.
///
/// # Errors
/// A message naming the file.
pub fn read_witness_policy(path: &Path) -> Result<PolicyFile, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let file: PolicyFile = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    WitnessPolicy::from_file(&file).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(file)
}

/// The witness policy of a replay: the pinned one, else the export's.
fn witness_policy(
    dir: &Path,
    pins: &Pins,
    info: &serde_json::Value,
    observer: &mut dyn Observer,
) -> Result<Option<WitnessPolicy>, Error> {
    let path = pins
        .witnesses
        .clone()
        .unwrap_or_else(|| dir.join(layout::TRUST_WITNESSES));
    if pins.witnesses.is_some() || path.exists() {
        if pins.witnesses.is_none() {
            observer.note(&format!(
                "trusting the export's witness policy (pass --witnesses to pin your own): {}",
                path.display()
            ));
        }
        let file = read_witness_policy(&path)?;
        return Ok(Some(WitnessPolicy::from_file(&file)?));
    }
    let Some(w) = info.get("witnesses").filter(|w| !w.is_null()) else {
        return Ok(None);
    };
    let announced: govern_client::wire::WitnessesInfo =
        serde_json::from_value(w.clone()).map_err(|e| format!("v1/log witnesses: {e}"))?;
    observer.note(
        "trusting the witness policy the export's v1/log names (pass --witnesses to pin your own)",
    );
    Ok(Some(
        govern_client::witness::announced_policy(announced)
            .map_err(|e| format!("v1/log witnesses: {e}"))?,
    ))
}

impl Trust {
    /// The trust to replay the export at `dir` under: `pins`, and the export's own files for
    /// what they leave out.
    ///
    /// # Errors
    /// A file missing or malformed, a pinned key other than the export's.
    pub fn resolve(dir: &Path, pins: &Pins, observer: &mut dyn Observer) -> Result<Self, Error> {
        let info: serde_json::Value = serde_json::from_slice(&read(dir, layout::LOG_INFO)?)
            .map_err(|e| format!("v1/log: {e}"))?;
        let exported = info["verifier_key"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let vkey = match &pins.key {
            Some(k) => k.clone(),
            None => {
                observer.note(&format!(
                    "trusting the export's verifier key (pass --key to pin your own): {exported}"
                ));
                exported.clone()
            }
        };
        if !exported.is_empty() && exported != vkey {
            return Err(
                format!("v1/log: the export names verifier key {exported}, not {vkey}").into(),
            );
        }
        let verifier = NoteVerifier::parse(&vkey).map_err(|e| format!("verifier key: {e}"))?;
        let origin = verifier.name().to_string();
        if info["origin"].as_str() != Some(origin.as_str()) {
            return Err(format!(
                "v1/log: origin {} is not the key's name {origin}",
                info["origin"]
            )
            .into());
        }
        let signers_path = pins
            .signers
            .clone()
            .unwrap_or_else(|| dir.join(layout::TRUST_SIGNERS));
        let text = match std::fs::read_to_string(&signers_path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && pins.signers.is_none() => {
                return Err(format!(
                    "{}: no such file: an export made with --url carries no trust/; pass --signers FILE (the operator's manifest-signers.toml) and, for a dev log, --dev-root FILE",
                    signers_path.display()
                )
                .into());
            }
            Err(e) => return Err(format!("{}: {e}", signers_path.display()).into()),
        };
        if pins.signers.is_none() {
            observer.note(&format!(
                "trusting the export's manifest signers (pass --signers to pin your own): {}",
                signers_path.display()
            ));
        }
        let signers = parse_manifest_signers(&text)
            .map_err(|e| format!("{}: {e}", signers_path.display()))?;
        let dev_root_path = pins
            .dev_root
            .clone()
            .unwrap_or_else(|| dir.join(layout::TRUST_DEV_ROOT));
        let dev_root = match std::fs::read(&dev_root_path) {
            Ok(der) => Some({
                if pins.dev_root.is_none() {
                    observer.note(&format!(
                        "using the export's dev CA root (a manifest that pins the dev root names its SHA-256): {}",
                        dev_root_path.display()
                    ));
                }
                TrustAnchor::from_der(&der)
                    .map_err(|e| format!("{}: {e}", dev_root_path.display()))?
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && pins.dev_root.is_none() => {
                if pins.allow_dev_root
                    && let Some(file) = crate::read::pins_dev_root(dir)
                {
                    return Err(format!(
                        "{file} pins a dev CA root and {} is missing: pass --dev-root FILE (the operator's dev-ca/root.der)",
                        dev_root_path.display()
                    )
                    .into());
                }
                None
            }
            Err(e) => return Err(format!("{}: {e}", dev_root_path.display()).into()),
        };
        let log_key = PublicKey(*verifier.verifying_key().as_bytes());
        let policy = Arc::new(IdentityPolicy::new(
            signers,
            log_key,
            pins.allow_dev_root,
            dev_root,
        ));
        let witnesses = witness_policy(dir, pins, &info, observer)?;
        Ok(Self {
            origin,
            verifier,
            policy,
            witnesses,
        })
    }
}
