//! C2SP [checkpoints](https://c2sp.org/tlog-checkpoint): the signed tree heads the log
//! publishes, and the Ed25519 witness [cosignatures](https://c2sp.org/tlog-cosignature)
//! (signature type `0x04`) that others add to them.
//!
//! A checkpoint is a signed note whose text is
//!
//! ```text
//! <origin>
//! <tree size in decimal>
//! <root hash in base64>
//! [extension lines]
//! ```
//!
//! Parsing accepts exactly what [`Checkpoint::body`] produces, so a parsed checkpoint
//! re-encodes to the very bytes that were signed.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};

use crate::ids::{Hash, RootHash, TreeSize};
use crate::note::{
    self, KEY_ID_LEN, KeyError, Note, NoteError, NoteSignature, NoteSigner, NoteVerifier,
};

/// Signature type byte of timestamped Ed25519 cosignatures (c2sp.org/tlog-cosignature).
pub const ALG_COSIGNATURE_V1: u8 = 0x04;

/// The largest cosignature timestamp the specification allows (2^63 - 1).
pub const COSIGNATURE_TIMESTAMP_MAX: u64 = i64::MAX as u64;

const COSIGNATURE_HEADER: &str = "cosignature/v1\n";
const TIMESTAMP_LEN: usize = 8;
const ED25519_SIGNATURE_LEN: usize = 64;

/// Error for a checkpoint that can't be parsed, signed, opened or cosigned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// The signed note around the checkpoint is malformed or does not verify.
    #[error("checkpoint note: {0}")]
    Note(#[from] NoteError),
    /// The checkpoint text is empty.
    #[error("checkpoint is empty")]
    Empty,
    /// The checkpoint text does not end with a newline.
    #[error("checkpoint does not end with a newline")]
    MissingFinalNewline,
    /// The origin line is empty.
    #[error("checkpoint origin line is empty")]
    EmptyOrigin,
    /// The text stops after the origin line.
    #[error("checkpoint has no tree size line")]
    MissingSize,
    /// The tree size is not a plain decimal number (a sign, a space, a letter, or nothing).
    #[error("checkpoint tree size {found:?} is not a decimal number")]
    SizeNotDecimal {
        /// The size line.
        found: String,
    },
    /// The tree size has leading zeros.
    #[error("checkpoint tree size {found:?} has a leading zero")]
    SizeLeadingZero {
        /// The size line.
        found: String,
    },
    /// The tree size does not fit in 64 bits.
    #[error("checkpoint tree size {found:?} does not fit in 64 bits")]
    SizeOverflow {
        /// The size line.
        found: String,
    },
    /// The text stops after the tree size line.
    #[error("checkpoint has no root hash line")]
    MissingRoot,
    /// The root hash is not canonical standard base64.
    #[error("checkpoint root hash {found:?} is not standard base64: {reason}")]
    RootNotBase64 {
        /// The root line.
        found: String,
        /// The decoder's complaint.
        reason: String,
    },
    /// The root hash is not 32 bytes.
    #[error("checkpoint root hash is {len} bytes, expected 32")]
    RootLength {
        /// Its decoded length.
        len: usize,
    },
    /// An extension line is empty.
    #[error("checkpoint extension line {line} is empty")]
    EmptyExtension {
        /// 1-based line number in the checkpoint.
        line: usize,
    },
    /// The origin or an extension to sign contains a newline, which would change the lines.
    #[error("checkpoint {field} contains a newline")]
    NewlineInField {
        /// `origin` or `extension`.
        field: &'static str,
    },
    /// The checkpoint is for another log than the one expected.
    #[error("checkpoint origin is {found:?}, expected {expected:?}")]
    WrongOrigin {
        /// The origin the caller expects.
        expected: String,
        /// The origin in the checkpoint.
        found: String,
    },
    /// A cosignature timestamp above [`COSIGNATURE_TIMESTAMP_MAX`].
    #[error("cosignature timestamp {timestamp} exceeds 2^63 - 1")]
    TimestampTooLarge {
        /// The timestamp.
        timestamp: u64,
    },
    /// The note has no signature line by this cosigner.
    #[error("no cosignature by {name}+{key_id}")]
    NoCosignature {
        /// Cosigner name.
        name: String,
        /// Cosigner key ID in hex.
        key_id: String,
    },
    /// A cosignature by this cosigner is not 8 + 64 bytes after its key ID.
    #[error("cosignature by {name} is {len} bytes after its key ID, expected 72")]
    CosignatureLength {
        /// Cosigner name.
        name: String,
        /// Length found.
        len: usize,
    },
    /// A cosignature by this cosigner does not verify.
    #[error("cosignature by {name}+{key_id} does not verify")]
    InvalidCosignature {
        /// Cosigner name.
        name: String,
        /// Cosigner key ID in hex.
        key_id: String,
    },
}

/// A checkpoint: the log identified by `origin` has a tree of `size` leaves with root `root`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's identity, e.g. `example.com/log`.
    pub origin: String,
    /// The number of leaves.
    pub size: TreeSize,
    /// The RFC 9162 root hash at `size`.
    pub root: RootHash,
    /// Opaque, non-empty extension lines (without newlines); the specification advises
    /// against them.
    pub extensions: Vec<String>,
}

impl Checkpoint {
    /// A checkpoint without extension lines.
    #[must_use]
    pub fn new(origin: impl Into<String>, size: TreeSize, root: RootHash) -> Self {
        Self {
            origin: origin.into(),
            size,
            root,
            extensions: Vec::new(),
        }
    }

    /// The note text: origin, size, base64 root, extension lines, each ending in a newline.
    ///
    /// Does not check anything; [`Checkpoint::sign`] does.
    #[must_use]
    pub fn body(&self) -> String {
        let mut out = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size.get(),
            self.root.hash().to_base64()
        );
        for line in &self.extensions {
            out.push_str(line);
            out.push('\n');
        }
        out
    }

    /// Parses a checkpoint note text, refusing anything [`Checkpoint::body`] would not produce.
    ///
    /// # Errors
    /// A [`CheckpointError`] naming the line and rule broken; text a note can't carry
    /// (control characters, oversize) gives [`CheckpointError::Note`].
    pub fn parse_body(text: &str) -> Result<Self, CheckpointError> {
        if text.is_empty() {
            return Err(CheckpointError::Empty);
        }
        let Some(content) = text.strip_suffix('\n') else {
            return Err(CheckpointError::MissingFinalNewline);
        };
        note::check_text(text)?;
        let mut lines = content.split('\n');
        // `split` yields at least one item, even for "".
        let origin = lines.next().unwrap_or_default();
        if origin.is_empty() {
            return Err(CheckpointError::EmptyOrigin);
        }
        let size = parse_size(lines.next().ok_or(CheckpointError::MissingSize)?)?;
        let root = parse_root(lines.next().ok_or(CheckpointError::MissingRoot)?)?;
        let mut extensions = Vec::new();
        for (i, line) in lines.enumerate() {
            if line.is_empty() {
                return Err(CheckpointError::EmptyExtension { line: 4 + i });
            }
            extensions.push(line.to_owned());
        }
        Ok(Self {
            origin: origin.to_owned(),
            size,
            root,
            extensions,
        })
    }

    /// Checks that [`Checkpoint::body`] gives a checkpoint that parses back to `self`.
    ///
    /// # Errors
    /// [`CheckpointError::NewlineInField`] for a newline in the origin or an extension, else
    /// the error [`Checkpoint::parse_body`] gives for the body.
    pub fn validate(&self) -> Result<(), CheckpointError> {
        if self.origin.contains('\n') {
            return Err(CheckpointError::NewlineInField { field: "origin" });
        }
        if self.extensions.iter().any(|line| line.contains('\n')) {
            return Err(CheckpointError::NewlineInField { field: "extension" });
        }
        Self::parse_body(&self.body()).map(|_| ())
    }

    /// The signed note of this checkpoint, signed by `signer` (whose name SHOULD be the
    /// origin; that is the caller's choice).
    ///
    /// # Errors
    /// The error of [`Checkpoint::validate`] if the checkpoint can't be encoded, or
    /// [`CheckpointError::Note`] if the note would be too large.
    pub fn sign(&self, signer: &NoteSigner) -> Result<String, CheckpointError> {
        self.validate()?;
        Ok(signer.sign(&self.body())?)
    }

    /// Parses a signed checkpoint, verifies `verifier`'s signature on it, and checks that its
    /// origin is `origin`. Other signatures (witnesses, other keys) are ignored.
    ///
    /// # Errors
    /// [`CheckpointError::Note`] if the note is malformed or `verifier` did not validly sign
    /// it, a parse error if the text is not a checkpoint, and
    /// [`CheckpointError::WrongOrigin`] if it is another log's.
    pub fn open(
        note_bytes: &[u8],
        origin: &str,
        verifier: &NoteVerifier,
    ) -> Result<(Self, Note), CheckpointError> {
        let note = Note::parse(note_bytes)?;
        note.verify(std::slice::from_ref(verifier))?;
        let checkpoint = Self::parse_body(&note.text)?;
        if checkpoint.origin != origin {
            return Err(CheckpointError::WrongOrigin {
                expected: origin.to_owned(),
                found: checkpoint.origin,
            });
        }
        Ok((checkpoint, note))
    }
}

fn parse_size(line: &str) -> Result<TreeSize, CheckpointError> {
    // `u64::from_str` would take a leading '+'.
    if line.is_empty() || !line.bytes().all(|b| b.is_ascii_digit()) {
        return Err(CheckpointError::SizeNotDecimal {
            found: line.to_owned(),
        });
    }
    if line.len() > 1 && line.starts_with('0') {
        return Err(CheckpointError::SizeLeadingZero {
            found: line.to_owned(),
        });
    }
    line.parse::<u64>()
        .map(TreeSize)
        .map_err(|_| CheckpointError::SizeOverflow {
            found: line.to_owned(),
        })
}

fn parse_root(line: &str) -> Result<RootHash, CheckpointError> {
    let bytes = B64
        .decode(line)
        .map_err(|e| CheckpointError::RootNotBase64 {
            found: line.to_owned(),
            reason: e.to_string(),
        })?;
    Hash::from_slice(&bytes)
        .map(RootHash)
        .map_err(|_| CheckpointError::RootLength { len: bytes.len() })
}

/// The message an Ed25519 cosignature signs: `cosignature/v1\ntime <timestamp>\n` + body.
fn cosigned_message(body: &str, timestamp: u64) -> String {
    format!("{COSIGNATURE_HEADER}time {timestamp}\n{body}")
}

fn check_timestamp(timestamp: u64) -> Result<(), CheckpointError> {
    if timestamp > COSIGNATURE_TIMESTAMP_MAX {
        Err(CheckpointError::TimestampTooLarge { timestamp })
    } else {
        Ok(())
    }
}

/// A witness key making timestamped Ed25519 cosignatures (c2sp.org/tlog-cosignature v1).
///
/// The v1 signed message does not include the cosigner name, so one key must serve one
/// cosigner name only.
#[derive(Clone)]
pub struct CosignatureSigner {
    name: String,
    key: SigningKey,
    key_id: [u8; KEY_ID_LEN],
}

impl fmt::Debug for CosignatureSigner {
    // Never the secret key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CosignatureSigner")
            .field("name", &self.name)
            .field("key_id", &hex::encode(self.key_id))
            .finish_non_exhaustive()
    }
}

impl CosignatureSigner {
    /// A cosigner named `name` with `key`.
    ///
    /// # Errors
    /// [`KeyError::InvalidName`] if `name` is not a valid note key name.
    pub fn new(name: impl Into<String>, key: SigningKey) -> Result<Self, KeyError> {
        let name = name.into();
        note::check_key_name(&name).map_err(|reason| KeyError::InvalidName {
            name: name.clone(),
            reason,
        })?;
        let key_id = note::key_id(&name, ALG_COSIGNATURE_V1, key.verifying_key().as_bytes());
        Ok(Self { name, key, key_id })
    }

    /// The cosigner name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key ID (computed with type byte `0x04`).
    #[must_use]
    pub fn key_id(&self) -> [u8; KEY_ID_LEN] {
        self.key_id
    }

    /// The matching verifier.
    #[must_use]
    pub fn verifier(&self) -> CosignatureVerifier {
        CosignatureVerifier {
            name: self.name.clone(),
            key_id: self.key_id,
            key: self.key.verifying_key(),
        }
    }

    /// The verifier key string `name+<hex key ID>+base64(0x04 || public key)`.
    #[must_use]
    pub fn verifier_key(&self) -> String {
        note::format_verifier_key(&self.name, ALG_COSIGNATURE_V1, &self.key.verifying_key())
    }

    /// The cosignature line for `checkpoint` at `timestamp` (POSIX seconds), to append to
    /// the checkpoint's signed note.
    ///
    /// # Errors
    /// [`CheckpointError::TimestampTooLarge`] above 2^63 - 1, or the error of
    /// [`Checkpoint::validate`].
    pub fn sign(&self, checkpoint: &Checkpoint, timestamp: u64) -> Result<String, CheckpointError> {
        check_timestamp(timestamp)?;
        checkpoint.validate()?;
        let message = cosigned_message(&checkpoint.body(), timestamp);
        let mut signature = Vec::with_capacity(TIMESTAMP_LEN + ED25519_SIGNATURE_LEN);
        signature.extend_from_slice(&timestamp.to_be_bytes());
        signature.extend_from_slice(&self.key.sign(message.as_bytes()).to_bytes());
        Ok(NoteSignature {
            name: self.name.clone(),
            key_id: self.key_id,
            signature,
        }
        .to_line())
    }
}

/// A known witness: name, key ID and Ed25519 public key of a v1 cosigner.
#[derive(Clone, PartialEq, Eq)]
pub struct CosignatureVerifier {
    name: String,
    key_id: [u8; KEY_ID_LEN],
    key: VerifyingKey,
}

impl fmt::Debug for CosignatureVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("CosignatureVerifier")
            .field(&self.to_string())
            .finish()
    }
}

impl CosignatureVerifier {
    /// Parses a verifier key `name+<hex key ID>+base64(0x04 || public key)`.
    ///
    /// # Errors
    /// A [`KeyError`] if the string is malformed, the name invalid, the type byte not
    /// `0x04`, the key not a usable Ed25519 public key, or the key ID not that of the key.
    pub fn parse(vkey: &str) -> Result<Self, KeyError> {
        let (name, key_id, key) = note::parse_verifier_key(vkey, ALG_COSIGNATURE_V1)?;
        Ok(Self { name, key_id, key })
    }

    /// The verifier for cosigner `name` with `key`.
    ///
    /// # Errors
    /// [`KeyError::InvalidName`] for an invalid name, [`KeyError::WeakPublicKey`] for a key
    /// of small order.
    pub fn from_key(name: impl Into<String>, key: VerifyingKey) -> Result<Self, KeyError> {
        let name = name.into();
        note::check_key_name(&name).map_err(|reason| KeyError::InvalidName {
            name: name.clone(),
            reason,
        })?;
        if key.is_weak() {
            return Err(KeyError::WeakPublicKey);
        }
        let key_id = note::key_id(&name, ALG_COSIGNATURE_V1, key.as_bytes());
        Ok(Self { name, key_id, key })
    }

    /// The cosigner name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key ID (computed with type byte `0x04`).
    #[must_use]
    pub fn key_id(&self) -> [u8; KEY_ID_LEN] {
        self.key_id
    }

    /// Verifies this cosigner's signatures on `note` (a checkpoint, whose other signatures
    /// are ignored) and returns the timestamp cosigned, the latest if there are several.
    ///
    /// Only the signature is checked: that the note's text is a checkpoint of the right log
    /// is [`Checkpoint::open`]'s business.
    ///
    /// # Errors
    /// [`CheckpointError::NoCosignature`] if no line has this cosigner's name and key ID;
    /// for any line that has, [`CheckpointError::CosignatureLength`],
    /// [`CheckpointError::TimestampTooLarge`] or [`CheckpointError::InvalidCosignature`].
    pub fn verify(&self, note: &Note) -> Result<u64, CheckpointError> {
        let mut latest = None;
        for sig in note
            .signatures
            .iter()
            .filter(|s| s.key_id == self.key_id && s.name == self.name)
        {
            let (stamp, signature) = sig
                .signature
                .split_first_chunk::<TIMESTAMP_LEN>()
                .filter(|(_, rest)| rest.len() == ED25519_SIGNATURE_LEN)
                .ok_or_else(|| CheckpointError::CosignatureLength {
                    name: self.name.clone(),
                    len: sig.signature.len(),
                })?;
            let timestamp = u64::from_be_bytes(*stamp);
            check_timestamp(timestamp)?;
            let message = cosigned_message(&note.text, timestamp);
            let valid = Signature::from_slice(signature)
                .is_ok_and(|s| self.key.verify_strict(message.as_bytes(), &s).is_ok());
            if !valid {
                return Err(CheckpointError::InvalidCosignature {
                    name: self.name.clone(),
                    key_id: hex::encode(self.key_id),
                });
            }
            latest = latest.max(Some(timestamp));
        }
        latest.ok_or_else(|| CheckpointError::NoCosignature {
            name: self.name.clone(),
            key_id: hex::encode(self.key_id),
        })
    }
}

/// The verifier key string `name+<hex key ID>+base64(0x04 || public key)`.
impl fmt::Display for CosignatureVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&note::format_verifier_key(
            &self.name,
            ALG_COSIGNATURE_V1,
            &self.key,
        ))
    }
}
