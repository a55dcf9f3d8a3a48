//! `govern manifest`: pin dev measurements, sign, show and verify manifests, and make
//! manifest-signer keys. Every check is `govern_core::manifest`'s; this reads and writes the
//! files.
//!
//! Files:
//!
//! ```text
//! <data-dir>/manifest.json                 the signed manifest in force (`manifest pin`)
//! <data-dir>/manifest-signers.toml         the pinned signers: threshold = N, keys = [base64…]
//! <data-dir>/manifest-signers/dev-N.key    dev mode: three signer keys (C2SP private key strings, 0600)
//! <data-dir>/dev-ca/root.der               the dev attestation root (govern-workers' simulated NSM)
//! ```

use std::collections::BTreeMap;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use ed25519_dalek::Signature;
use govern_core::event::PublicKey;
use govern_core::manifest::{
    MANIFEST_TEXT_BYTES_MAX, ManifestSigners, RoleSet, SignedManifest, TrustedRoot,
};
use govern_core::note::NoteSigner;

use govern_api::devpin::write_manifest as write_manifest_file;

use crate::config::DEFAULT_DATA_DIR;
use crate::error::Result;

/// Whether this build accepts manifests that pin the dev root.
pub(crate) const ALLOW_DEV_ROOT: bool = cfg!(feature = "dev");
/// The longest signers file or key file read.
const SMALL_FILE_BYTES_MAX: u64 = 64 * 1024;

#[derive(Debug, Subcommand)]
pub enum ManifestCommand {
    /// Dev mode: pin this executable's measurements (PCR0 = SHA-384(executable || role)) and
    /// the data dir's dev root into <data-dir>/manifest.json, signed by two of three dev
    /// manifest signers (made once, with <data-dir>/manifest-signers.toml).
    Pin(PinArgs),
    /// Add a signature to a manifest file (bare or signed).
    Sign(SignArgs),
    /// Print a manifest: roles, measurements, kinds, signatures and its hash.
    Show(ShowArgs),
    /// Check a signed manifest against pinned signers; exit non-zero on refusal.
    Verify(VerifyArgs),
    /// Make a manifest-signer key (a C2SP private key string, mode 0600).
    Keygen(KeygenArgs),
}

#[derive(Debug, Args)]
pub struct PinArgs {
    /// Data directory [default: ./.govern].
    #[arg(long, env = "GOVERN_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// The template to pin [default: manifests/dev.json, built into this binary].
    #[arg(long)]
    pub template: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct SignArgs {
    /// The manifest file.
    pub file: PathBuf,
    /// The signer's key file (from `govern manifest keygen`).
    #[arg(long)]
    pub key: PathBuf,
    /// Where to write the signed manifest [default: FILE, replaced].
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The manifest file.
    pub file: PathBuf,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The signed manifest file.
    pub file: PathBuf,
    /// The pinned signers: TOML with `threshold = N` and `keys = ["<base64 Ed25519>", ...]`.
    #[arg(long)]
    pub signers: PathBuf,
    /// The manifest in force: the new one must have a greater serial.
    #[arg(long)]
    pub previous: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// The key file to create (refused if it exists).
    #[arg(long)]
    pub out: PathBuf,
    /// The key's name (shown with its signatures).
    #[arg(long, default_value = "govern-manifest-signer")]
    pub name: String,
}

/// `govern manifest …`.
pub fn run(command: ManifestCommand, config_data_dir: Option<PathBuf>) -> Result<()> {
    match command {
        ManifestCommand::Pin(args) => {
            let data_dir = args
                .data_dir
                .or(config_data_dir)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
            pin(&data_dir, args.template.as_deref())
        }
        ManifestCommand::Sign(args) => sign(&args),
        ManifestCommand::Show(args) => show(&args.file),
        ManifestCommand::Verify(args) => verify(&args),
        ManifestCommand::Keygen(args) => keygen(&args),
    }
}

// ---- files ----

fn read_limited(path: &Path, max: u64) -> Result<Vec<u8>> {
    let len = std::fs::metadata(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .len();
    if len > max {
        return Err(format!("{}: {len} bytes; the limit is {max}", path.display()).into());
    }
    Ok(std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?)
}

fn read_manifest(path: &Path) -> Result<SignedManifest> {
    let text = read_limited(path, MANIFEST_TEXT_BYTES_MAX as u64)?;
    Ok(SignedManifest::from_json(&text).map_err(|e| format!("{}: {e}", path.display()))?)
}

/// Create a secret file readable by its owner only; refuse to replace one.
fn create_secret(path: &Path, text: &str) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(())
}

fn read_key(path: &Path) -> Result<NoteSigner> {
    let text = read_limited(path, SMALL_FILE_BYTES_MAX)?;
    let text = String::from_utf8(text).map_err(|_| format!("{}: not UTF-8", path.display()))?;
    Ok(
        NoteSigner::from_private_key(text.trim())
            .map_err(|e| format!("{}: {e}", path.display()))?,
    )
}

/// The signers file: `threshold = N` and `keys = ["<base64 Ed25519 key>", ...]`.
/// The signers file, parsed by the same function the node uses.
fn read_signers(path: &Path) -> Result<ManifestSigners> {
    let text = read_limited(path, SMALL_FILE_BYTES_MAX)?;
    let text = String::from_utf8(text).map_err(|_| format!("{}: not UTF-8", path.display()))?;
    Ok(govern_api::datadir::parse_manifest_signers(&text)
        .map_err(|e| format!("{}: {e}", path.display()))?)
}

// ---- pin ----

fn pin(data_dir: &Path, template: Option<&Path>) -> Result<()> {
    if !ALLOW_DEV_ROOT {
        return Err(
            "`govern manifest pin` makes a dev manifest, which this production build \
                    (without feature `dev`) refuses"
                .into(),
        );
    }
    let template = template.map(read_manifest).transpose()?.map(|s| s.manifest);
    // Measurements: the executable running now, once per role.
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this executable: {e}"))?;
    let pinned = govern_api::devpin::pin_dev_manifest(data_dir, template, &exe)?;
    let (signed, signers_path) = (&pinned.signed, &pinned.signers_path);
    let m = &signed.manifest;
    println!(
        "DEV MODE: measurements are of this executable ({}) and the root is the data dir's dev CA; \
         dev documents prove nothing against whoever controls this machine.",
        exe.display()
    );
    println!(
        "{:<12} {} ({})",
        "manifest",
        pinned.path.display(),
        if pinned.changed {
            "written"
        } else {
            "unchanged"
        }
    );
    println!("{:<12} {}", "serial", m.serial);
    println!("{:<12} {}", "hash", hex::encode(m.manifest_hash()?));
    println!(
        "{:<12} {} (sha256 {})",
        "root",
        pinned.ca_dir.join("root.der").display(),
        hex::encode(pinned.root.sha256())
    );
    println!("{:<12} {} roles pinned", "measured", m.roles.len());
    println!("{:<12} {}", "signers", signers_path.display());

    // The data dir now holds a manifest its own signers file accepts; say so or fail.
    let accepted = read_signers(signers_path)?;
    match signed.verify(&accepted, ALLOW_DEV_ROOT) {
        Ok(_) => {
            println!("{:<12} ACCEPTED by {}", "verdict", signers_path.display());
            Ok(())
        }
        Err(e) => Err(format!(
            "the pinned manifest is refused by {}: {e} (it no longer pins the dev signers?)",
            signers_path.display()
        )
        .into()),
    }
}

// ---- sign ----

fn sign(args: &SignArgs) -> Result<()> {
    let mut signed = read_manifest(&args.file)?;
    let key = read_key(&args.key)?;
    signed.manifest.validate_pinned().map_err(|e| {
        format!(
            "{}: refusing to sign a manifest that cannot take effect: {e}",
            args.file.display()
        )
    })?;
    signed.sign(key.signing_key())?;
    let out = args.out.as_deref().unwrap_or(&args.file);
    write_manifest_file(out, &signed)?;
    println!(
        "signed {} as {} ({})",
        out.display(),
        key.name(),
        PublicKey::from(&key.verifying_key()).to_base64()
    );
    println!("hash {}", hex::encode(signed.manifest.manifest_hash()?));
    println!("{} signature(s)", signed.signatures.len());
    Ok(())
}

// ---- keygen ----

fn keygen(args: &KeygenArgs) -> Result<()> {
    let key = NoteSigner::generate(args.name.clone(), &mut rand_core::OsRng)?;
    create_secret(&args.out, &format!("{}\n", key.to_private_key()))?;
    println!("wrote {} (mode 0600; keep it offline)", args.out.display());
    println!(
        "public key, for a signers file's `keys`: {}",
        PublicKey::from(&key.verifying_key()).to_base64()
    );
    Ok(())
}

// ---- show ----

/// Roles as a short list: `signer-1..5` for a run of numbered roles.
fn roles_text(set: &RoleSet) -> String {
    let RoleSet::Only(roles) = set else {
        return "*".into();
    };
    if roles.is_empty() {
        return "-".into();
    }
    let mut groups: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
    let mut plain = Vec::new();
    for r in roles {
        match r
            .as_str()
            .rsplit_once('-')
            .map(|(p, n)| (p, n.parse::<u32>()))
        {
            Some((prefix, Ok(n))) => groups.entry(prefix).or_default().push(n),
            _ => plain.push(r.as_str().to_string()),
        }
    }
    for (prefix, mut numbers) in groups {
        numbers.sort_unstable();
        let mut i = 0;
        while i < numbers.len() {
            let start = numbers[i];
            let mut end = start;
            while i + 1 < numbers.len() && numbers[i + 1] == end + 1 {
                i += 1;
                end = numbers[i];
            }
            plain.push(if end > start {
                format!("{prefix}-{start}..{end}")
            } else {
                format!("{prefix}-{start}")
            });
            i += 1;
        }
    }
    plain.join(",")
}

fn list_text<T: std::fmt::Display>(items: &[T]) -> String {
    if items.is_empty() {
        "-".into()
    } else {
        items
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",")
    }
}

fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let last = cells.len().saturating_sub(1);
        let text: Vec<String> = cells
            .into_iter()
            .enumerate()
            .map(|(i, c)| {
                if i == last {
                    c
                } else {
                    format!("{c:<w$}", w = widths[i])
                }
            })
            .collect();
        println!("  {}", text.join("  ").trim_end());
    };
    line(header.iter().map(|h| (*h).to_string()).collect());
    for row in rows {
        line(row.clone());
    }
}

fn root_text(root: &TrustedRoot) -> String {
    match root {
        TrustedRoot::AwsNitroRootG1 => format!(
            "aws-nitro-root-g1 (sha256 {})",
            govern_core::attestation::AWS_NITRO_ROOT_G1_SHA256
        ),
        TrustedRoot::Dev { sha256 } if sha256.is_empty() => "dev (not pinned yet)".into(),
        TrustedRoot::Dev { sha256 } => format!("dev (sha256 {sha256})"),
    }
}

fn show(path: &Path) -> Result<()> {
    let signed = read_manifest(path)?;
    let m = &signed.manifest;
    println!("{:<12} {}", "file", path.display());
    println!("{:<12} {}", "name", m.name);
    println!("{:<12} {}", "version", m.version);
    println!("{:<12} {}", "serial", m.serial);
    println!("{:<12} {}", "hash", hex::encode(m.manifest_hash()?));
    println!("{:<12} {}", "root", root_text(&m.trusted_root));
    let kms: Vec<String> = m
        .roles
        .iter()
        .filter_map(|(role, spec)| {
            let pin = spec.kms.as_ref()?;
            Some(format!("{} in {} (role {role})", pin.key_arn, pin.region))
        })
        .collect();
    println!(
        "{:<12} {}",
        "kms",
        if kms.is_empty() {
            "(none pinned: an enclave build's key service refuses to start)".to_string()
        } else {
            kms.join("; ")
        }
    );
    println!(
        "{:<12} {}",
        "debug",
        if m.allow_debug {
            "ALLOWED (debug enclaves' memory is the host's)"
        } else {
            "refused"
        }
    );
    let status = match (m.validate(), m.validate_pinned()) {
        (Err(e), _) => format!("INVALID: {e}"),
        (Ok(()), Err(e)) => format!("a template, not usable yet: {e}"),
        (Ok(()), Ok(())) => "well-formed and pinned".into(),
    };
    println!("{:<12} {status}", "status");

    println!("\nroles");
    let rows: Vec<Vec<String>> = m
        .roles
        .iter()
        .map(|(role, spec)| {
            let measurements = if spec.measurements.is_empty() {
                "(none)".to_string()
            } else {
                spec.measurements
                    .iter()
                    .map(|x| {
                        let mut text = format!("pcr0={}", x.pcr0);
                        if let Some(p) = &x.pcr1 {
                            text.push_str(&format!(" pcr1={p}"));
                        }
                        if let Some(p) = &x.pcr2 {
                            text.push_str(&format!(" pcr2={p}"));
                        }
                        text
                    })
                    .collect::<Vec<_>>()
                    .join(" | ")
            };
            vec![
                role.to_string(),
                format!("{}s", spec.reattest_s),
                format!("{}s", spec.max_age_s),
                list_text(&spec.scopes),
                measurements,
            ]
        })
        .collect();
    print_table(
        &["ROLE", "REATTEST", "MAX AGE", "SCOPES", "MEASUREMENTS"],
        &rows,
    );

    println!("\nkinds");
    let rows: Vec<Vec<String>> = m
        .kinds
        .iter()
        .map(|(kind, spec)| {
            vec![
                kind.to_string(),
                roles_text(&spec.producers),
                roles_text(&spec.consumers),
                if spec.same_request { "yes" } else { "no" }.into(),
                list_text(&spec.unique),
                list_text(&spec.parents),
            ]
        })
        .collect();
    print_table(
        &[
            "KIND",
            "PRODUCERS",
            "CONSUMERS",
            "SAME REQUEST",
            "UNIQUE",
            "PARENTS",
        ],
        &rows,
    );

    println!("\nsignatures");
    if signed.signatures.is_empty() {
        println!("  (none)");
    }
    let message = m.signing_bytes()?;
    for s in &signed.signatures {
        let valid = s.key.verifying_key().is_ok_and(|k| {
            k.verify_strict(&message, &Signature::from_bytes(&s.sig.0))
                .is_ok()
        });
        println!(
            "  {}  {}",
            s.key.to_base64(),
            if valid {
                "valid over this manifest"
            } else {
                "INVALID over this manifest"
            }
        );
    }
    Ok(())
}

// ---- verify ----

fn verify(args: &VerifyArgs) -> Result<()> {
    let signed = read_manifest(&args.file)?;
    let signers = read_signers(&args.signers)?;
    let m = &signed.manifest;
    println!(
        "{:<12} {} serial {} hash {}",
        "manifest",
        m.name,
        m.serial,
        hex::encode(m.manifest_hash()?)
    );
    println!(
        "{:<12} {} of {} ({})",
        "signers",
        signers.threshold,
        signers.keys.len(),
        args.signers.display()
    );
    let message = m.signing_bytes()?;
    for s in &signed.signatures {
        let pinned = signers.keys.iter().any(|k| k.as_bytes() == &s.key.0);
        let valid = s.key.verifying_key().is_ok_and(|k| {
            k.verify_strict(&message, &Signature::from_bytes(&s.sig.0))
                .is_ok()
        });
        println!(
            "{:<12} {} {}",
            "signature",
            s.key.to_base64(),
            match (pinned, valid) {
                (true, true) => "pinned, valid",
                (true, false) => "pinned, INVALID",
                (false, _) => "not pinned (ignored)",
            }
        );
    }
    println!(
        "{:<12} {}",
        "build",
        if ALLOW_DEV_ROOT {
            "dev (accepts the dev root)"
        } else {
            "production (refuses the dev root)"
        }
    );
    let mut verdict = signed.verify(&signers, ALLOW_DEV_ROOT).map(|_| ());
    if let (Ok(()), Some(previous)) = (&verdict, &args.previous) {
        let previous = read_manifest(previous)?;
        verdict = m.verify_successor(&previous.manifest);
    }
    match verdict {
        Ok(()) => {
            println!("{:<12} ACCEPTED", "verdict");
            Ok(())
        }
        Err(e) => {
            println!("{:<12} REFUSED: {e}", "verdict");
            Err(format!("manifest refused: {e}").into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use govern_api::devpin::DEV_TEMPLATE;
    use govern_core::event::Role;
    use govern_core::manifest::Manifest;

    #[test]
    fn numbered_roles_are_shortened() {
        let set = |names: &[&str]| {
            RoleSet::Only(names.iter().map(|n| Role::new(*n).expect("role")).collect())
        };
        assert_eq!(
            roles_text(&set(&[
                "edge", "signer-1", "signer-2", "signer-3", "signer-5", "policy"
            ])),
            "edge,policy,signer-1..3,signer-5"
        );
        assert_eq!(roles_text(&RoleSet::Any), "*");
        assert_eq!(roles_text(&set(&[])), "-");
    }

    #[test]
    fn the_built_in_template_is_the_dev_manifest() {
        let m = Manifest::from_json(DEV_TEMPLATE.as_bytes()).expect("parses");
        m.validate().expect("validates");
        assert!(m.trusted_root.is_dev());
    }
}
