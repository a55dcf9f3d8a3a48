//! C2SP `tlog-proof` (<https://c2sp.org/tlog-proof>): an offline receipt that an entry is in
//! the log — the entry's index, its RFC 9162 inclusion proof, and the signed checkpoint the
//! proof is for. Anyone holding the entry and the log's verifier key checks it with no node.
//!
//! ```text
//! c2sp.org/tlog-proof@v1
//! [extra <base64>]
//! index <decimal>
//! <base64 hash>            (zero or more: the audit path, leaf's sibling first)
//!
//! <the signed checkpoint, verbatim>
//! ```

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use crate::checkpoint::{Checkpoint, CheckpointError};
use crate::ids::{Hash, LeafIndex};
use crate::merkle::{VerifyError, hash_leaf, verify_inclusion};
use crate::note::NoteVerifier;

/// The first line of a proof.
pub const HEADER: &str = "c2sp.org/tlog-proof@v1";
/// The largest proof text accepted (a checkpoint with many cosignatures and a 64-hash path
/// fit well within it).
pub const PROOF_BYTES_MAX: usize = 64 * 1024;

/// Why a proof was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TlogProofError {
    /// The text is not a `tlog-proof`.
    #[error("not a c2sp.org/tlog-proof@v1: {0}")]
    Format(String),
    /// The checkpoint does not verify under the key, or is malformed.
    #[error("{0}")]
    Checkpoint(#[from] CheckpointError),
    /// The entry is not at that index in the checkpointed tree.
    #[error("the entry is not included: {0}")]
    Inclusion(#[from] VerifyError),
}

/// A parsed proof.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlogProof {
    /// Unauthenticated extra data, if any.
    pub extra: Option<Vec<u8>>,
    /// The entry's index.
    pub index: u64,
    /// The audit path.
    pub hashes: Vec<Hash>,
    /// The signed checkpoint, verbatim.
    pub checkpoint: String,
}

impl TlogProof {
    /// The proof text.
    #[must_use]
    pub fn to_text(&self) -> String {
        let mut out = format!("{HEADER}\n");
        if let Some(extra) = &self.extra {
            out.push_str(&format!("extra {}\n", B64.encode(extra)));
        }
        out.push_str(&format!("index {}\n", self.index));
        for h in &self.hashes {
            out.push_str(&h.to_base64());
            out.push('\n');
        }
        out.push('\n');
        out.push_str(&self.checkpoint);
        out
    }

    /// Parse a proof text.
    ///
    /// # Errors
    /// [`TlogProofError::Format`].
    pub fn parse(text: &[u8]) -> Result<Self, TlogProofError> {
        let bad = |m: &str| TlogProofError::Format(m.to_string());
        if text.len() > PROOF_BYTES_MAX {
            return Err(bad("larger than 64 KiB"));
        }
        let text = std::str::from_utf8(text).map_err(|_| bad("not UTF-8"))?;
        let (head, checkpoint) = text
            .split_once("\n\n")
            .ok_or_else(|| bad("no empty line before the checkpoint"))?;
        let mut lines = head.split('\n');
        if lines.next() != Some(HEADER) {
            return Err(bad("the first line is not c2sp.org/tlog-proof@v1"));
        }
        let mut line = lines.next().ok_or_else(|| bad("no index line"))?;
        let mut extra = None;
        if let Some(e) = line.strip_prefix("extra ") {
            extra = Some(B64.decode(e).map_err(|_| bad("extra is not base64"))?);
            line = lines.next().ok_or_else(|| bad("no index line"))?;
        }
        let index = line
            .strip_prefix("index ")
            .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
            .filter(|d| *d == "0" || !d.starts_with('0'))
            .and_then(|d| d.parse::<u64>().ok())
            .ok_or_else(|| bad("the index line is not `index <decimal>`"))?;
        let hashes = lines
            .map(|l| {
                Hash::from_base64(l).map_err(|_| bad("a proof line is not a base64 SHA-256 hash"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if hashes.len() > 64 {
            return Err(bad("more than 64 proof hashes"));
        }
        Ok(Self {
            extra,
            index,
            hashes,
            checkpoint: checkpoint.to_string(),
        })
    }

    /// Check the proof offline: the checkpoint verifies under `verifier` (its origin being
    /// the key's name), and `entry` (the leaf data, as `GET /v1/entries/{index}` answers it)
    /// is at `index` in that tree. Returns the checkpoint.
    ///
    /// # Errors
    /// [`TlogProofError`].
    pub fn verify(
        &self,
        entry: &[u8],
        verifier: &NoteVerifier,
    ) -> Result<Checkpoint, TlogProofError> {
        let (cp, _) = Checkpoint::open(self.checkpoint.as_bytes(), verifier.name(), verifier)?;
        verify_inclusion(
            &hash_leaf(entry),
            LeafIndex(self.index),
            cp.size,
            &self.hashes,
            &cp.root,
        )?;
        Ok(cp)
    }
}
