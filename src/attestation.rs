//! `govern attestation verify`: check a Nitro attestation document against a pinned root
//! and print what it says. Every check is `govern_core::attestation`'s; this reads the file,
//! the clock and the flags.

use std::collections::BTreeMap;
use std::path::PathBuf;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use clap::Args;
use govern_core::attestation::{AttestationDocument, TrustAnchor, Verifier, parse_unverified};
use govern_core::event::Timestamp;

use crate::config::DEFAULT_DATA_DIR;
use crate::error::Result;

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The document: COSE_Sign1 bytes as the NSM returns them, or their standard base64.
    pub file: PathBuf,
    /// The time to verify at, RFC 3339 (e.g. 2024-07-16T19:53:07Z) [default: now].
    #[arg(long)]
    pub at: Option<String>,
    /// The pinned root: `aws` (AWS Nitro Enclaves Root-G1, built in), `dev` (the data
    /// dir's dev CA), or the path of a DER certificate.
    #[arg(long, default_value = "aws")]
    pub root: String,
    /// A PCR the document must carry, as INDEX=HEX; repeat for more.
    #[arg(long = "pcr", value_name = "N=HEX")]
    pub pcrs: Vec<String>,
    /// Accept a debug enclave (PCR0, PCR1 and PCR2 all zero): its memory is the host's to read.
    #[arg(long)]
    pub allow_debug: bool,
    /// Data directory, for `--root dev` [default: ./.govern].
    #[arg(long, env = "GOVERN_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
}

/// The longest file read: a document is at most 16 KiB, its base64 a third more.
const FILE_BYTES_MAX: u64 = 64 * 1024;

fn read_document(path: &PathBuf) -> Result<Vec<u8>> {
    let len = std::fs::metadata(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .len();
    if len > FILE_BYTES_MAX {
        return Err(format!(
            "{}: {len} bytes; an attestation document is at most 16 KiB",
            path.display()
        )
        .into());
    }
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    // A COSE_Sign1 starts with an array header (0x84) or tag 18 (0xd2), neither of which is
    // base64 text; anything else that is base64 is decoded.
    if !matches!(bytes.first(), Some(0x84 | 0xd2))
        && let Ok(text) = std::str::from_utf8(&bytes)
        && let Ok(decoded) = B64.decode(text.split_whitespace().collect::<String>())
    {
        return Ok(decoded);
    }
    Ok(bytes)
}

fn parse_at(at: Option<&str>) -> Result<Timestamp> {
    let Some(text) = at else {
        return Ok(Timestamp::now());
    };
    let t = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("--at {text:?}: not RFC 3339: {e}"))?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000)
        .ok()
        .and_then(Timestamp::from_unix_ms)
        .ok_or_else(|| format!("--at {text:?}: out of range").into())
}

fn parse_pcr(spec: &str) -> Result<(u8, Vec<u8>)> {
    let (index, value) = spec
        .split_once('=')
        .ok_or_else(|| format!("--pcr {spec:?}: expected N=HEX"))?;
    let index: u8 = index
        .trim()
        .parse()
        .map_err(|_| format!("--pcr {spec:?}: {index:?} is not a PCR index"))?;
    let value = hex::decode(value.trim()).map_err(|e| format!("--pcr {spec:?}: {e}"))?;
    Ok((index, value))
}

fn load_root(root: &str, data_dir: Option<PathBuf>) -> Result<TrustAnchor> {
    match root {
        "aws" => Ok(TrustAnchor::aws_nitro_root_g1()),
        "dev" => {
            // The data dir's dev CA root, read only (a reading command creates nothing).
            let dir = data_dir.unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
            let path = dir.join("dev-ca/root.der");
            let der = std::fs::read(&path).map_err(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    format!(
                        "--root dev: {} does not exist: is {} a dev node's data dir? (--data-dir)",
                        path.display(),
                        dir.display()
                    )
                } else {
                    format!("--root dev: {}: {e}", path.display())
                }
            })?;
            Ok(TrustAnchor::from_der(&der).map_err(|e| format!("{}: {e}", path.display()))?)
        }
        path => {
            let der = std::fs::read(path).map_err(|e| format!("--root {path}: {e}"))?;
            Ok(TrustAnchor::from_der(&der).map_err(|e| format!("--root {path}: {e}"))?)
        }
    }
}

fn optional(name: &str, field: Option<&Vec<u8>>) {
    match field {
        None => println!("{name:<12} none"),
        Some(b) => println!("{name:<12} {} bytes {}", b.len(), hex::encode(b)),
    }
}

fn print_fields(doc: &AttestationDocument) {
    println!("{:<12} {}", "module id", doc.module_id);
    println!("{:<12} {}", "time", doc.timestamp);
    println!("{:<12} {}", "digest", doc.digest);
    for (index, value) in &doc.pcrs {
        println!("{:<12} {}", format!("PCR{index}"), hex::encode(value));
    }
    optional("public key", doc.public_key.as_ref());
    optional("user data", doc.user_data.as_ref());
    optional("nonce", doc.nonce.as_ref());
    println!("{:<12} {} bytes", "leaf cert", doc.certificate.len());
}

/// `govern attestation verify`.
pub fn verify(args: VerifyArgs) -> Result<()> {
    let document = read_document(&args.file)?;
    let now = parse_at(args.at.as_deref())?;
    let root = load_root(&args.root, args.data_dir)?;
    let pcrs = args
        .pcrs
        .iter()
        .map(|s| parse_pcr(s))
        .collect::<Result<BTreeMap<_, _>>>()?;
    println!(
        "{:<12} {} (sha256 {})",
        "root",
        root.subject(),
        hex::encode(root.sha256())
    );
    println!("{:<12} {now}", "at");
    let mut verifier = Verifier::new(root).dangerous_allow_debug(args.allow_debug);
    for (index, value) in pcrs {
        verifier = verifier.expect_pcr(index, value);
    }
    match verifier.verify(&document, now) {
        Ok(doc) => {
            print_fields(&doc);
            println!("{:<12} ACCEPTED", "verdict");
            Ok(())
        }
        Err(refusal) => {
            // Show what the document claims, marked as such, so the refusal can be read
            // against it (say, which PCR0 it carries).
            if let Ok(doc) = parse_unverified(&document) {
                println!("(unverified: the fields below are the document's claims)");
                print_fields(&doc);
            }
            println!("{:<12} REFUSED: {refusal}", "verdict");
            Err(format!("attestation document refused: {refusal}").into())
        }
    }
}
