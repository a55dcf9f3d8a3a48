//! Offline receipts: `govern receipt INDEX` prints an entry's C2SP `tlog-proof` (its index,
//! inclusion proof and the signed checkpoint it is for), and `govern verify receipt FILE
//! --entry EVENT --key VKEY [--witnesses FILE]` checks one with no node: the checkpoint
//! under the log's key, the entry at that index in that tree, and with `--witnesses` the
//! checkpoint's cosignatures under that policy (without, it says how many it did not check).

use std::path::PathBuf;

use clap::Args;
use govern_core::ids::Hash;
use govern_core::note::{Note, NoteVerifier};
use govern_core::proof::TlogProof;
use govern_core::witness::WitnessPolicy;

use crate::error::Result;
use govern_client::Client;

#[derive(Debug, Args)]
pub struct ReceiptArgs {
    /// The entry's index.
    pub index: u64,
    /// The node.
    #[arg(long, env = "GOVERN_URL", default_value = "http://localhost:7600")]
    pub url: String,
    /// Also write the entry (its leaf data, what the proof is of) to this file.
    #[arg(long)]
    pub entry_out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct VerifyReceiptArgs {
    /// The `tlog-proof` file.
    pub file: PathBuf,
    /// The entry it is for: its leaf data, as `GET /v1/entries/{index}` answers.
    #[arg(long)]
    pub entry: PathBuf,
    /// The log's C2SP verifier key: best from the operator, out of band; else the
    /// `verifier key:` line `govern node` and `govern up` print, or `verifier_key` in the
    /// node's `/v1/log`.
    #[arg(long)]
    pub key: String,
    /// The witness policy the checkpoint's cosignatures must meet (TOML: `quorum`,
    /// `[[witness]]` `vkey`s, as for `verify log`); without it cosignatures are counted, not
    /// checked.
    #[arg(long)]
    pub witnesses: Option<PathBuf>,
}

/// `govern receipt INDEX`.
pub async fn receipt(args: ReceiptArgs) -> Result<()> {
    let client = Client::new(&args.url)?;
    let checkpoint = String::from_utf8(client.get_required("/checkpoint").await?)
        .map_err(|_| "the checkpoint is not UTF-8")?;
    let size = checkpoint
        .lines()
        .nth(1)
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or("the checkpoint has no size line")?;
    if args.index >= size {
        return Err(format!("entry {} is not in the log (size {size})", args.index).into());
    }
    let proof: govern_client::wire::InclusionProof = client
        .get_json(&format!(
            "/v1/proofs/inclusion?index={}&size={size}",
            args.index
        ))
        .await?;
    let hashes = proof
        .hashes
        .iter()
        .map(|h| Hash::from_base64(h))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| format!("the node's proof: {e}"))?;
    let entry = client
        .get_required(&format!("/v1/entries/{}", args.index))
        .await?;
    let receipt = TlogProof {
        extra: None,
        index: args.index,
        hashes,
        checkpoint,
    };
    // Check it before handing it out: the node's key as it announces it.
    let info = client.log_info().await?;
    receipt.verify(&entry, &NoteVerifier::parse(&info.verifier_key)?)?;
    if let Some(path) = &args.entry_out {
        std::fs::write(path, &entry).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    print!("{}", receipt.to_text());
    Ok(())
}

/// `govern verify receipt FILE --entry EVENT --key VKEY`.
pub fn verify(args: VerifyReceiptArgs) -> Result<()> {
    let text = std::fs::read(&args.file).map_err(|e| format!("{}: {e}", args.file.display()))?;
    let entry = std::fs::read(&args.entry).map_err(|e| format!("{}: {e}", args.entry.display()))?;
    let verifier = NoteVerifier::parse(args.key.trim())?;
    let proof = TlogProof::parse(&text)?;
    let cp = proof.verify(&entry, &verifier)?;
    let note = Note::parse(proof.checkpoint.as_bytes())?;
    let witnessed = match &args.witnesses {
        Some(path) => {
            let policy = WitnessPolicy::from_file(&crate::witness::read_policy(path)?)?;
            crate::witness::check(&policy, &note, "pinned")?
        }
        None => {
            let cosignatures = note
                .signatures
                .iter()
                .filter(|s| s.name != verifier.name() || s.key_id != verifier.key_id())
                .count();
            if cosignatures == 0 {
                "cosignatures: none".into()
            } else {
                format!(
                    "cosignatures: {cosignatures} present, not checked: pass --witnesses FILE to check them"
                )
            }
        }
    };
    println!(
        "receipt verified: entry {} is in {} at size {} (root {})",
        proof.index,
        cp.origin,
        cp.size.0,
        cp.root.to_hex()
    );
    println!("{witnessed}");
    Ok(())
}
