//! Witnesses: the C2SP [`tlog-witness`](https://c2sp.org/tlog-witness) protocol's
//! `add-checkpoint` request, the decision a witness takes on one, and the witness policy a
//! verifier holds (which cosigners it trusts, and how many of them must have cosigned a
//! checkpoint, k of n) with the check of a cosigned checkpoint under it.
//!
//! A single sequencer key can sign two histories (a split view). A witness cosigns a
//! checkpoint only if it is consistent with the last one it cosigned for that log, so two
//! histories can never both gather a quorum of honest witnesses. Everything here is pure: the
//! witness process ([`govern-workers`]) keeps the state and answers HTTP, the node submits.
//!
//! No crate on the registries this project reaches implements the `add-checkpoint` wire
//! format or a witness (Cloudflare's `tlog_witness` is unpublished), so it is written here,
//! to the byte of the specification, and tested against its examples.

use std::collections::BTreeSet;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

use crate::checkpoint::{Checkpoint, CheckpointError, CosignatureVerifier};
use crate::ids::{Hash, RootHash, TreeSize};
use crate::merkle::{self, VerifyError};
use crate::note::{KeyError, NOTE_BYTES_MAX, Note, NoteError, NoteVerifier};

/// The most consistency proof lines an `add-checkpoint` request may carry (the spec's 63).
pub const PROOF_LINES_MAX: usize = 63;

/// The largest `add-checkpoint` body accepted: a note of the largest size, plus the old size
/// line and 63 proof lines.
pub const ADD_CHECKPOINT_BYTES_MAX: usize = NOTE_BYTES_MAX + 32 + PROOF_LINES_MAX * 45;

/// The `Content-Type` of a 409 answer's body (the witness's latest size).
pub const SIZE_CONTENT_TYPE: &str = "text/x.tlog.size";

/// An `add-checkpoint` request body that is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// Larger than [`ADD_CHECKPOINT_BYTES_MAX`].
    #[error("the request is {len} bytes, more than the {max} accepted")]
    TooLarge {
        /// Its length.
        len: usize,
        /// The bound.
        max: usize,
    },
    /// No empty line between the proof and the checkpoint.
    #[error("no empty line ends the old size and proof lines")]
    NoBlankLine,
    /// The lines before the checkpoint are not UTF-8.
    #[error("the old size and proof lines are not UTF-8")]
    NotUtf8,
    /// The first line is not `old <decimal>`.
    #[error(
        "the first line must be \"old <size>\" in decimal without leading zeroes, not {found:?}"
    )]
    OldLine {
        /// The line.
        found: String,
    },
    /// More than [`PROOF_LINES_MAX`] proof lines.
    #[error("more than {max} consistency proof lines")]
    TooManyProofLines {
        /// The bound.
        max: usize,
    },
    /// A proof line is not one base64 SHA-256 hash.
    #[error("consistency proof line {line} is not a base64 32-byte hash: {reason}")]
    ProofLine {
        /// Its number, from 1 for the first proof line.
        line: usize,
        /// Why.
        reason: String,
    },
}

/// An `add-checkpoint` request: the size of the previous checkpoint (the witness's latest, as
/// the submitter believes), a consistency proof from it, and the new checkpoint (a signed
/// note, possibly with several signatures).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddCheckpoint {
    /// The old size.
    pub old_size: TreeSize,
    /// The RFC 6962 §2.1.2 consistency proof from `old_size` to the checkpoint's size.
    pub proof: Vec<Hash>,
    /// The checkpoint's signed note, verbatim.
    pub checkpoint: Vec<u8>,
}

impl AddCheckpoint {
    /// Parses a request body. The checkpoint is kept as bytes: [`decide`] parses and checks
    /// it.
    ///
    /// # Errors
    /// A [`RequestError`] naming the rule broken.
    pub fn parse(body: &[u8]) -> Result<Self, RequestError> {
        if body.len() > ADD_CHECKPOINT_BYTES_MAX {
            return Err(RequestError::TooLarge {
                len: body.len(),
                max: ADD_CHECKPOINT_BYTES_MAX,
            });
        }
        // The control block never holds an empty line, so the first "\n\n" ends it.
        let split = body
            .windows(2)
            .position(|w| w == b"\n\n")
            .ok_or(RequestError::NoBlankLine)?;
        let control = std::str::from_utf8(&body[..split]).map_err(|_| RequestError::NotUtf8)?;
        let mut lines = control.split('\n');
        let old = lines.next().unwrap_or_default();
        let old_size = old
            .strip_prefix("old ")
            .filter(|d| {
                !d.is_empty()
                    && d.bytes().all(|b| b.is_ascii_digit())
                    && (d.len() == 1 || !d.starts_with('0'))
            })
            .and_then(|d| d.parse::<u64>().ok())
            .ok_or_else(|| RequestError::OldLine {
                found: old.chars().take(64).collect(),
            })?;
        let mut proof = Vec::new();
        for (i, line) in lines.enumerate() {
            if i == PROOF_LINES_MAX {
                return Err(RequestError::TooManyProofLines {
                    max: PROOF_LINES_MAX,
                });
            }
            let bytes = B64.decode(line).map_err(|e| RequestError::ProofLine {
                line: i + 1,
                reason: e.to_string(),
            })?;
            proof.push(
                Hash::from_slice(&bytes).map_err(|e| RequestError::ProofLine {
                    line: i + 1,
                    reason: e.to_string(),
                })?,
            );
        }
        Ok(Self {
            old_size: TreeSize(old_size),
            proof,
            checkpoint: body[split + 2..].to_vec(),
        })
    }

    /// The request body: `old <size>\n`, one base64 hash a line, an empty line, the note.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut out = format!("old {}\n", self.old_size.0).into_bytes();
        for h in &self.proof {
            out.extend_from_slice(h.to_base64().as_bytes());
            out.push(b'\n');
        }
        out.push(b'\n');
        out.extend_from_slice(&self.checkpoint);
        out
    }
}

/// A log a witness follows: its origin and the keys it trusts for it.
#[derive(Debug, Clone)]
pub struct FollowedLog {
    /// The checkpoint origin.
    pub origin: String,
    /// The log's checkpoint keys.
    pub verifiers: Vec<NoteVerifier>,
}

/// What a witness remembers of a log: the latest checkpoint it cosigned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Witnessed {
    /// Its size.
    pub size: TreeSize,
    /// Its root.
    pub root: RootHash,
}

/// Why a witness does not cosign: each carries the HTTP status the specification assigns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The body is not an `add-checkpoint` request, or its note not a checkpoint (400).
    #[error("malformed request: {0}")]
    Malformed(String),
    /// The checkpoint's origin is no log this witness follows (404).
    #[error("unknown log origin {0:?}")]
    UnknownOrigin(String),
    /// No signature by a key the witness trusts for the origin verifies (403).
    #[error("no valid signature by the log's key: {0}")]
    Signature(String),
    /// The old size is larger than the checkpoint's (400).
    #[error("old size {old} is larger than the checkpoint's size {size}")]
    OldSizeTooLarge {
        /// The old size.
        old: u64,
        /// The checkpoint's.
        size: u64,
    },
    /// The old size is not the size of the latest checkpoint the witness cosigned (409).
    #[error("old size {old} is not the size of the latest checkpoint cosigned, {latest}")]
    SizeMismatch {
        /// The old size sent.
        old: u64,
        /// The witness's latest size.
        latest: u64,
    },
    /// A checkpoint of the size last cosigned, with another root: a split view (409).
    #[error(
        "a checkpoint of size {size} with root {found}, but root {latest} was cosigned at that size"
    )]
    RootMismatch {
        /// The size.
        size: u64,
        /// The root cosigned.
        latest: RootHash,
        /// The root sent.
        found: RootHash,
    },
    /// The consistency proof does not verify (422).
    #[error("the consistency proof from size {old} to {size} does not verify: {reason}")]
    Proof {
        /// The old size.
        old: u64,
        /// The checkpoint's.
        size: u64,
        /// Why.
        reason: String,
    },
}

impl Refusal {
    /// The HTTP status code of c2sp.org/tlog-witness.
    #[must_use]
    pub fn status(&self) -> u16 {
        match self {
            Self::Malformed(_) | Self::OldSizeTooLarge { .. } => 400,
            Self::Signature(_) => 403,
            Self::UnknownOrigin(_) => 404,
            Self::SizeMismatch { .. } | Self::RootMismatch { .. } => 409,
            Self::Proof { .. } => 422,
        }
    }

    /// For a 409, the body the spec requires (the latest cosigned size, a newline, of
    /// [`SIZE_CONTENT_TYPE`]); `None` for the others, whose body is free text.
    #[must_use]
    pub fn size_body(&self) -> Option<String> {
        match self {
            Self::SizeMismatch { latest, .. } => Some(format!("{latest}\n")),
            Self::RootMismatch { size, .. } => Some(format!("{size}\n")),
            _ => None,
        }
    }
}

impl From<RequestError> for Refusal {
    fn from(e: RequestError) -> Self {
        Self::Malformed(e.to_string())
    }
}

/// The checks of `add-checkpoint`, in the specification's order: the note parses and is a
/// checkpoint; its origin is a followed log's (else 404); a trusted key of that log signed it
/// (else 403); the old size is at most the new (else 400); the old size is the latest size
/// cosigned, 0 when never (else 409); at equal sizes the roots are equal (else 409); the proof
/// is empty from 0 and at equal sizes, and otherwise verifies from the latest root cosigned
/// (else 422).
///
/// `latest` gives what the witness last cosigned for an origin. On success: the index of the
/// log in `logs` and the checkpoint to cosign (and to remember, atomically with the check).
///
/// # Errors
/// The [`Refusal`].
pub fn decide(
    logs: &[FollowedLog],
    latest: impl Fn(&str) -> Option<Witnessed>,
    request: &AddCheckpoint,
) -> Result<(usize, Checkpoint), Refusal> {
    let note = Note::parse(&request.checkpoint).map_err(|e| Refusal::Malformed(e.to_string()))?;
    let checkpoint =
        Checkpoint::parse_body(&note.text).map_err(|e| Refusal::Malformed(e.to_string()))?;
    let log = logs
        .iter()
        .position(|l| l.origin == checkpoint.origin)
        .ok_or_else(|| Refusal::UnknownOrigin(checkpoint.origin.clone()))?;
    note.verify(&logs[log].verifiers)
        .map_err(|e| Refusal::Signature(e.to_string()))?;
    let (old, size) = (request.old_size.0, checkpoint.size.0);
    if old > size {
        return Err(Refusal::OldSizeTooLarge { old, size });
    }
    let known = latest(&checkpoint.origin);
    let latest_size = known.map_or(0, |w| w.size.0);
    if old != latest_size {
        return Err(Refusal::SizeMismatch {
            old,
            latest: latest_size,
        });
    }
    let proof_err = |reason: String| Refusal::Proof { old, size, reason };
    match known {
        // Never cosigned (or only the empty tree): every tree extends the empty one.
        None => {
            if !request.proof.is_empty() {
                return Err(proof_err("the proof from size 0 must be empty".into()));
            }
        }
        Some(w) if w.size == checkpoint.size => {
            if w.root != checkpoint.root {
                return Err(Refusal::RootMismatch {
                    size,
                    latest: w.root,
                    found: checkpoint.root,
                });
            }
            if !request.proof.is_empty() {
                return Err(proof_err(
                    "the proof between equal sizes must be empty".into(),
                ));
            }
        }
        Some(w) if w.size.0 == 0 => {
            if !request.proof.is_empty() {
                return Err(proof_err("the proof from size 0 must be empty".into()));
            }
        }
        Some(w) => merkle::verify_consistency(
            w.size,
            checkpoint.size,
            &request.proof,
            &w.root,
            &checkpoint.root,
        )
        .map_err(|e: VerifyError| proof_err(e.to_string()))?,
    }
    Ok((log, checkpoint))
}

/// A witness policy as written in a file: how many must cosign, and the cosigners' verifier
/// keys (`name+<hex key ID>+base64(0x04 || key)`), with where to reach each (for a log that
/// submits to them; a verifier ignores `url`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    /// k: how many distinct witnesses of the list must have cosigned.
    pub quorum: usize,
    /// The witnesses.
    #[serde(default, rename = "witness")]
    pub witnesses: Vec<PolicyWitness>,
}

/// One witness of a [`PolicyFile`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyWitness {
    /// Its cosignature verifier key.
    pub vkey: String,
    /// Its submission prefix (`POST <url>/add-checkpoint`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// A witness policy that does not hold together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// A verifier key does not parse.
    #[error("witness {index}: {source}")]
    Key {
        /// Its position in the list, from 0.
        index: usize,
        /// Why.
        source: KeyError,
    },
    /// Two entries name the same cosigner or key.
    #[error("witness {name:?} is listed twice (by name or by key)")]
    Duplicate {
        /// The name.
        name: String,
    },
    /// More must cosign than are listed.
    #[error("a quorum of {quorum} out of {n} witnesses can never be met")]
    Quorum {
        /// k.
        quorum: usize,
        /// n.
        n: usize,
    },
}

/// k of n: the witnesses a verifier trusts and how many of them must have cosigned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WitnessPolicy {
    witnesses: Vec<CosignatureVerifier>,
    quorum: usize,
}

/// Who cosigned one checkpoint, under a policy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Cosigners {
    /// The policy's witnesses that validly cosigned it: name and (latest) timestamp.
    pub signed: Vec<(String, u64)>,
    /// The policy's witnesses whose cosignature line is there but does not verify.
    pub invalid: Vec<(String, String)>,
    /// k.
    pub quorum: usize,
}

impl Cosigners {
    /// Whether at least k distinct witnesses validly cosigned and none of the policy's lines
    /// is invalid.
    #[must_use]
    pub fn has_quorum(&self) -> bool {
        self.invalid.is_empty() && self.signed.len() >= self.quorum
    }

    /// `w1, w2` (the names that cosigned), or `none`.
    #[must_use]
    pub fn names(&self) -> String {
        if self.signed.is_empty() {
            "none".into()
        } else {
            self.signed
                .iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        }
    }
}

/// A cosigned checkpoint that a policy does not accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QuorumError {
    /// A cosignature by one of the policy's witnesses does not verify.
    #[error("witness {name}'s cosignature does not verify: {reason}")]
    Invalid {
        /// The witness.
        name: String,
        /// Why.
        reason: String,
    },
    /// Fewer than k of the policy's witnesses cosigned.
    #[error("{have} of the {quorum} witness cosignatures the policy needs ({names})")]
    NoQuorum {
        /// How many cosigned.
        have: usize,
        /// k.
        quorum: usize,
        /// Who did.
        names: String,
    },
}

impl WitnessPolicy {
    /// k of the `witnesses`.
    ///
    /// # Errors
    /// [`PolicyError::Duplicate`] or [`PolicyError::Quorum`] (k > n).
    pub fn new(witnesses: Vec<CosignatureVerifier>, quorum: usize) -> Result<Self, PolicyError> {
        let mut names = BTreeSet::new();
        let mut keys = BTreeSet::new();
        for w in &witnesses {
            if !names.insert(w.name().to_owned()) || !keys.insert(w.key_id()) {
                return Err(PolicyError::Duplicate {
                    name: w.name().to_owned(),
                });
            }
        }
        if quorum > witnesses.len() {
            return Err(PolicyError::Quorum {
                quorum,
                n: witnesses.len(),
            });
        }
        Ok(Self { witnesses, quorum })
    }

    /// The policy of a file.
    ///
    /// # Errors
    /// A [`PolicyError`].
    pub fn from_file(file: &PolicyFile) -> Result<Self, PolicyError> {
        let witnesses = file
            .witnesses
            .iter()
            .enumerate()
            .map(|(index, w)| {
                CosignatureVerifier::parse(&w.vkey)
                    .map_err(|source| PolicyError::Key { index, source })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(witnesses, file.quorum)
    }

    /// The policy as a file (without URLs).
    #[must_use]
    pub fn to_file(&self) -> PolicyFile {
        PolicyFile {
            quorum: self.quorum,
            witnesses: self
                .witnesses
                .iter()
                .map(|w| PolicyWitness {
                    vkey: w.to_string(),
                    url: None,
                })
                .collect(),
        }
    }

    /// k.
    #[must_use]
    pub fn quorum(&self) -> usize {
        self.quorum
    }

    /// The witnesses.
    #[must_use]
    pub fn witnesses(&self) -> &[CosignatureVerifier] {
        &self.witnesses
    }

    /// Whether the policy asks for nothing (k = 0): every log-signed checkpoint passes.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.quorum == 0
    }

    /// Whether every set of witnesses whose cosignatures meet this policy also meets `other`:
    /// then a checkpoint this policy accepts has a quorum under `other` too (who validly
    /// cosigned is what counts; each policy refuses invalid lines of its own witnesses).
    ///
    /// With k′ of W′ (this policy) and k of W (`other`): at least k′ − |W′ \ W| of any k′
    /// witnesses of W′ are in W, and k′ witnesses of W′ can be chosen with no more in W than
    /// that, so the condition is exactly k′ ≥ k + |W′ \ W|. A witness is its name and key
    /// together: the same name under another key is another witness. Hence: equal policies,
    /// a higher quorum, or dropped witnesses with the quorum kept are at least as strong;
    /// a lower quorum, an added or replaced witness without a quorum raised as much, or no
    /// policy (k′ = 0) after one with k ≥ 1 are not. Every policy is at least as strong as
    /// one with k = 0.
    #[must_use]
    pub fn at_least_as_strong_as(&self, other: &WitnessPolicy) -> bool {
        let outside = self
            .witnesses
            .iter()
            .filter(|w| !other.witnesses.contains(w))
            .count();
        other.quorum == 0 || self.quorum >= other.quorum.saturating_add(outside)
    }

    /// Who of the policy's witnesses cosigned `note`; lines of other keys are ignored.
    #[must_use]
    pub fn cosigners(&self, note: &Note) -> Cosigners {
        let mut out = Cosigners {
            quorum: self.quorum,
            ..Cosigners::default()
        };
        for w in &self.witnesses {
            match w.verify(note) {
                Ok(t) => out.signed.push((w.name().to_owned(), t)),
                Err(CheckpointError::NoCosignature { .. }) => {}
                Err(e) => out.invalid.push((w.name().to_owned(), e.to_string())),
            }
        }
        out
    }

    /// [`WitnessPolicy::cosigners`], required to meet the quorum with no invalid line.
    ///
    /// # Errors
    /// A [`QuorumError`].
    pub fn check(&self, note: &Note) -> Result<Cosigners, QuorumError> {
        let c = self.cosigners(note);
        if let Some((name, reason)) = c.invalid.first() {
            return Err(QuorumError::Invalid {
                name: name.clone(),
                reason: reason.clone(),
            });
        }
        if c.signed.len() < self.quorum {
            return Err(QuorumError::NoQuorum {
                have: c.signed.len(),
                quorum: self.quorum,
                names: c.names(),
            });
        }
        Ok(c)
    }
}

/// `note` with the cosignature `lines` added after its own signatures (each a `— name sig\n`
/// line); lines already present are not repeated.
///
/// # Errors
/// [`NoteError`] when `note` or a line does not parse.
pub fn add_cosignatures(note: &str, lines: &[String]) -> Result<String, NoteError> {
    let mut parsed = Note::parse(note.as_bytes())?;
    for line in lines {
        let with = Note::parse(format!("{}\n{line}", parsed.text).as_bytes())?;
        for sig in with.signatures {
            if !parsed.signatures.contains(&sig) {
                parsed.signatures.push(sig);
            }
        }
    }
    Ok(parsed.encode())
}
