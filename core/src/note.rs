//! C2SP [signed notes](https://c2sp.org/signed-note) with Ed25519 keys (signature type
//! `0x01`), compatible with Go's `golang.org/x/mod/sumdb/note`.
//!
//! A signed note is a text ending in a newline, a blank line, then one or more lines
//! `— <key name> base64(key ID || signature)`. Checkpoints ([`crate::checkpoint`]) are notes.
//!
//! Parsing is stricter than the specification in a few places, because an auditor gains
//! nothing from accepting odd notes and a log never needs to produce them:
//! - every Unicode control character (category Cc: C0, DEL and C1) other than newline is
//!   refused, not only the ASCII ones below U+0020, and so is U+FEFF (a byte order mark
//!   hides in the text and makes two notes that print the same hash differently);
//! - base64 must be canonical (padding and zero trailing bits), so that one signature has
//!   exactly one spelling;
//! - every signature by a known key must verify, including repeated ones, where Go checks
//!   only the first signature of each key.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use rand_core::CryptoRngCore;
use sha2::{Digest, Sha256};

/// Signature type byte of plain Ed25519 note signatures.
pub const ALG_ED25519: u8 = 0x01;

/// The largest note [`Note::parse`] accepts, in bytes.
///
/// The specification asks verifiers to accept at least 16 signatures and warns that
/// post-quantum ones approach 5 kB (6.7 kB in base64): 16 of those plus a checkpoint fit in
/// 128 KiB, while anything bigger is not something a log or witness would ever send.
pub const NOTE_BYTES_MAX: usize = 128 * 1024;

/// The most signature lines [`Note::parse`] accepts (Go's limit).
pub const SIGNATURES_MAX: usize = 100;

/// Length of a key ID in bytes.
pub const KEY_ID_LEN: usize = 4;

const SIGNATURE_PREFIX: &str = "\u{2014} ";
const EM_DASH: char = '\u{2014}';
const PRIVATE_KEY_PREFIX: &str = "PRIVATE+KEY+";
const BYTE_ORDER_MARK: char = '\u{FEFF}';

/// Why a key name is refused (c2sp.org/signed-note: non-empty, no Unicode space, no `+`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// The name is empty.
    #[error("key name is empty")]
    Empty,
    /// The name contains a Unicode white space character.
    #[error("key name contains white space {ch:?}")]
    Whitespace {
        /// The offending character.
        ch: char,
    },
    /// The name contains `+`, the separator of key strings.
    #[error("key name contains '+'")]
    Plus,
    /// The name contains a control character (which no note may carry anyway).
    #[error("key name contains control character {ch:?}")]
    ControlCharacter {
        /// The offending character.
        ch: char,
    },
}

/// Error for a key string or key that can't be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The key name is not a valid note key name.
    #[error("invalid key name {name:?}: {reason}")]
    InvalidName {
        /// The refused name.
        name: String,
        /// Why it was refused.
        #[source]
        reason: NameError,
    },
    /// A `+`-separated field of the key string is missing.
    #[error("key string has no {field} field (expected `name+keyid+base64key`)")]
    MissingField {
        /// The missing field.
        field: &'static str,
    },
    /// A signer key string does not start with `PRIVATE+KEY+`.
    #[error("signer key does not start with \"PRIVATE+KEY+\"")]
    NotPrivateKey,
    /// The key ID field is not exactly 8 hexadecimal digits.
    #[error("key ID {found:?} is not 8 hexadecimal digits")]
    KeyIdNotHex {
        /// The key ID field as found.
        found: String,
    },
    /// The key field is not canonical standard base64.
    #[error("key is not standard base64: {reason}")]
    KeyNotBase64 {
        /// The decoder's complaint.
        reason: String,
    },
    /// The key field decodes to nothing, not even an algorithm byte.
    #[error("key is empty")]
    EmptyKey,
    /// The key's signature type byte is not the one expected.
    #[error("key has signature type {found:#04x}, expected {expected:#04x}")]
    WrongAlgorithm {
        /// The type byte found.
        found: u8,
        /// The type byte expected.
        expected: u8,
    },
    /// The Ed25519 key (after the type byte) is not 32 bytes.
    #[error("Ed25519 key is {found} bytes, expected 32")]
    KeyLength {
        /// Its length.
        found: usize,
    },
    /// The key ID in the string is not the one computed from name and key.
    #[error("key ID {claimed} does not match the key, which has ID {computed}")]
    KeyIdMismatch {
        /// The key ID written in the string, in hex.
        claimed: String,
        /// The key ID of the name and key, in hex.
        computed: String,
    },
    /// The public key is not a valid Ed25519 point.
    #[error("not an Ed25519 public key: {reason}")]
    InvalidPublicKey {
        /// The decoder's complaint.
        reason: String,
    },
    /// The public key is a point of small order, for which any signature can be forged.
    #[error("Ed25519 public key is weak (of small order)")]
    WeakPublicKey,
}

/// Error for a note that can't be parsed, signed or verified.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NoteError {
    /// The note (or text to sign) is larger than [`NOTE_BYTES_MAX`].
    #[error("note is {len} bytes, more than the {max} accepted")]
    TooLarge {
        /// Its length in bytes.
        len: usize,
        /// [`NOTE_BYTES_MAX`].
        max: usize,
    },
    /// The note is not valid UTF-8.
    #[error("note is not UTF-8 (valid up to byte {valid_up_to})")]
    NotUtf8 {
        /// Length of the valid prefix.
        valid_up_to: usize,
    },
    /// The note contains a control character other than newline.
    #[error("control character {ch:?} at byte {offset}")]
    ControlCharacter {
        /// Byte offset of the character.
        offset: usize,
        /// The character.
        ch: char,
    },
    /// The note contains U+FEFF.
    #[error("byte order mark (U+FEFF) at byte {offset}")]
    ByteOrderMark {
        /// Byte offset of the character.
        offset: usize,
    },
    /// The text to sign is empty.
    #[error("note text is empty")]
    EmptyText,
    /// The note (or text to sign) does not end with a newline.
    #[error("note does not end with a newline")]
    MissingFinalNewline,
    /// No blank line separates the text from the signatures.
    #[error("no blank line separates the text from the signatures")]
    NoBlankLine,
    /// The blank line is the end of the note: there are no signature lines.
    #[error("note has no signature lines")]
    NoSignatures,
    /// More signature lines than [`SIGNATURES_MAX`].
    #[error("note has more than {max} signatures")]
    TooManySignatures {
        /// [`SIGNATURES_MAX`].
        max: usize,
    },
    /// A signature line does not start with an em dash (U+2014).
    #[error("line {line}: signature line does not start with an em dash (U+2014)")]
    MissingEmDash {
        /// 1-based line number in the note.
        line: usize,
    },
    /// The em dash of a signature line is not followed by a single space.
    #[error("line {line}: no space after the em dash")]
    MissingSpaceAfterDash {
        /// 1-based line number in the note.
        line: usize,
    },
    /// No space separates the key name from the signature.
    #[error("line {line}: no space between key name and signature")]
    MissingSpaceBeforeSignature {
        /// 1-based line number in the note.
        line: usize,
    },
    /// The key name of a signature line is refused.
    #[error("line {line}: invalid key name {name:?}: {reason}")]
    InvalidName {
        /// 1-based line number in the note.
        line: usize,
        /// The refused name.
        name: String,
        /// Why it was refused.
        #[source]
        reason: NameError,
    },
    /// The signature is not canonical standard base64.
    #[error("line {line}: signature is not standard base64: {reason}")]
    SignatureNotBase64 {
        /// 1-based line number in the note.
        line: usize,
        /// The decoder's complaint.
        reason: String,
    },
    /// The decoded signature has no room for a key ID and at least one byte of signature.
    #[error("line {line}: signature is {len} bytes, fewer than the 5 of a key ID and a signature")]
    SignatureTooShort {
        /// 1-based line number in the note.
        line: usize,
        /// Decoded length.
        len: usize,
    },
    /// A signature by a known key does not verify: the note is forged or damaged.
    #[error("signature {index} by known key {name}+{key_id} does not verify")]
    InvalidSignature {
        /// 0-based index of the signature in the note.
        index: usize,
        /// Key name.
        name: String,
        /// Key ID in hex.
        key_id: String,
    },
    /// Several of the verifiers given have the same name and key ID.
    #[error("several verifiers have the key {name}+{key_id}")]
    AmbiguousVerifier {
        /// Key name.
        name: String,
        /// Key ID in hex.
        key_id: String,
    },
    /// None of the note's signatures is by a known key.
    #[error("no known signature among the note's {signatures}")]
    NoKnownSignature {
        /// How many signatures the note has.
        signatures: usize,
    },
}

/// The key ID of c2sp.org/signed-note: the first 4 bytes of
/// SHA-256(name || 0x0A || signature type || public key).
#[must_use]
pub fn key_id(name: &str, alg: u8, public_key: &[u8]) -> [u8; KEY_ID_LEN] {
    let digest = Sha256::new()
        .chain_update(name.as_bytes())
        .chain_update([b'\n', alg])
        .chain_update(public_key)
        .finalize();
    let mut id = [0u8; KEY_ID_LEN];
    id.copy_from_slice(&digest[..KEY_ID_LEN]);
    id
}

/// Checks a key name: non-empty, without Unicode white space, `+` or control characters.
///
/// # Errors
/// The [`NameError`] for the first rule broken.
pub fn check_key_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    for ch in name.chars() {
        if ch.is_whitespace() {
            return Err(NameError::Whitespace { ch });
        }
        if ch == '+' {
            return Err(NameError::Plus);
        }
        if ch.is_control() {
            return Err(NameError::ControlCharacter { ch });
        }
    }
    Ok(())
}

fn checked_name(name: String) -> Result<String, KeyError> {
    match check_key_name(&name) {
        Ok(()) => Ok(name),
        Err(reason) => Err(KeyError::InvalidName { name, reason }),
    }
}

/// Refuses control characters other than newline, and U+FEFF, anywhere in `s`.
fn check_characters(s: &str) -> Result<(), NoteError> {
    for (offset, ch) in s.char_indices() {
        if ch == '\n' {
            continue;
        }
        if ch.is_control() {
            return Err(NoteError::ControlCharacter { offset, ch });
        }
        if ch == BYTE_ORDER_MARK {
            return Err(NoteError::ByteOrderMark { offset });
        }
    }
    Ok(())
}

/// Checks that `text` can be the text of a note: at most [`NOTE_BYTES_MAX`] bytes, non-empty,
/// newline-terminated, free of control characters other than newline and of U+FEFF.
///
/// # Errors
/// The [`NoteError`] for the first rule broken.
pub fn check_text(text: &str) -> Result<(), NoteError> {
    if text.len() > NOTE_BYTES_MAX {
        return Err(NoteError::TooLarge {
            len: text.len(),
            max: NOTE_BYTES_MAX,
        });
    }
    if text.is_empty() {
        return Err(NoteError::EmptyText);
    }
    if !text.ends_with('\n') {
        return Err(NoteError::MissingFinalNewline);
    }
    check_characters(text)
}

fn key_id_hex(id: [u8; KEY_ID_LEN]) -> String {
    hex::encode(id)
}

/// `name+<hex key ID>+base64(alg || public key)`.
pub(crate) fn format_verifier_key(name: &str, alg: u8, key: &VerifyingKey) -> String {
    let mut material = Vec::with_capacity(33);
    material.push(alg);
    material.extend_from_slice(key.as_bytes());
    format!(
        "{name}+{}+{}",
        key_id_hex(key_id(name, alg, key.as_bytes())),
        B64.encode(material)
    )
}

fn parse_key_id(field: &str) -> Result<[u8; KEY_ID_LEN], KeyError> {
    let mut id = [0u8; KEY_ID_LEN];
    // Refuses any length but 8 digits; either case is accepted, as Go does.
    hex::decode_to_slice(field, &mut id).map_err(|_| KeyError::KeyIdNotHex {
        found: field.to_owned(),
    })?;
    Ok(id)
}

/// Decodes `base64(alg || 32 bytes)`, checking the type byte.
fn parse_key_material(field: &str, alg: u8) -> Result<[u8; 32], KeyError> {
    let material = B64.decode(field).map_err(|e| KeyError::KeyNotBase64 {
        reason: e.to_string(),
    })?;
    let (&found, key) = material.split_first().ok_or(KeyError::EmptyKey)?;
    if found != alg {
        return Err(KeyError::WrongAlgorithm {
            found,
            expected: alg,
        });
    }
    <[u8; 32]>::try_from(key).map_err(|_| KeyError::KeyLength { found: key.len() })
}

fn checked_verifying_key(bytes: &[u8; 32]) -> Result<VerifyingKey, KeyError> {
    let key = VerifyingKey::from_bytes(bytes).map_err(|e| KeyError::InvalidPublicKey {
        reason: e.to_string(),
    })?;
    check_not_weak(&key)?;
    Ok(key)
}

fn check_not_weak(key: &VerifyingKey) -> Result<(), KeyError> {
    if key.is_weak() {
        Err(KeyError::WeakPublicKey)
    } else {
        Ok(())
    }
}

fn check_claimed_id(claimed: [u8; KEY_ID_LEN], computed: [u8; KEY_ID_LEN]) -> Result<(), KeyError> {
    if claimed == computed {
        Ok(())
    } else {
        Err(KeyError::KeyIdMismatch {
            claimed: key_id_hex(claimed),
            computed: key_id_hex(computed),
        })
    }
}

/// Parses `name+<hex key ID>+base64(alg || Ed25519 public key)` for signature type `alg`.
pub(crate) fn parse_verifier_key(
    vkey: &str,
    alg: u8,
) -> Result<(String, [u8; KEY_ID_LEN], VerifyingKey), KeyError> {
    let (name, rest) = vkey
        .split_once('+')
        .ok_or(KeyError::MissingField { field: "key ID" })?;
    // Base64 has '+' in its alphabet, so only the first two '+' separate fields.
    let (id, material) = rest
        .split_once('+')
        .ok_or(KeyError::MissingField { field: "key" })?;
    let name = checked_name(name.to_owned())?;
    let claimed = parse_key_id(id)?;
    let bytes = parse_key_material(material, alg)?;
    check_claimed_id(claimed, key_id(&name, alg, &bytes))?;
    let key = checked_verifying_key(&bytes)?;
    Ok((name, claimed, key))
}

/// One signature line of a note. Whether it verifies is [`Note::verify`]'s business.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteSignature {
    /// Key name.
    pub name: String,
    /// Key ID (the first 4 decoded bytes).
    pub key_id: [u8; KEY_ID_LEN],
    /// The signature proper (the decoded bytes after the key ID).
    pub signature: Vec<u8>,
}

impl NoteSignature {
    /// The signature line `— <name> base64(key ID || signature)\n`.
    #[must_use]
    pub fn to_line(&self) -> String {
        let mut bytes = Vec::with_capacity(KEY_ID_LEN + self.signature.len());
        bytes.extend_from_slice(&self.key_id);
        bytes.extend_from_slice(&self.signature);
        format!("{SIGNATURE_PREFIX}{} {}\n", self.name, B64.encode(bytes))
    }

    /// Parses one signature line, without its newline. `line` is only for error messages.
    fn parse_line(text: &str, line: usize) -> Result<Self, NoteError> {
        let Some(rest) = text.strip_prefix(SIGNATURE_PREFIX) else {
            return Err(if text.starts_with(EM_DASH) {
                NoteError::MissingSpaceAfterDash { line }
            } else {
                NoteError::MissingEmDash { line }
            });
        };
        let (name, b64) = rest
            .split_once(' ')
            .ok_or(NoteError::MissingSpaceBeforeSignature { line })?;
        check_key_name(name).map_err(|reason| NoteError::InvalidName {
            line,
            name: name.to_owned(),
            reason,
        })?;
        let bytes = B64.decode(b64).map_err(|e| NoteError::SignatureNotBase64 {
            line,
            reason: e.to_string(),
        })?;
        if bytes.len() <= KEY_ID_LEN {
            return Err(NoteError::SignatureTooShort {
                line,
                len: bytes.len(),
            });
        }
        let (id, signature) = bytes.split_at(KEY_ID_LEN);
        let mut key_id = [0u8; KEY_ID_LEN];
        key_id.copy_from_slice(id);
        Ok(Self {
            name: name.to_owned(),
            key_id,
            signature: signature.to_vec(),
        })
    }
}

/// A signed note: its text and its signature lines, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// The signed text, ending with a newline (without the blank line).
    pub text: String,
    /// The signature lines, in the note's order.
    pub signatures: Vec<NoteSignature>,
}

impl Note {
    /// Parses a signed note, checking its syntax but no signature.
    ///
    /// # Errors
    /// A [`NoteError`] naming the rule broken: size, UTF-8, control characters, missing final
    /// newline or blank line, no or too many signatures, malformed signature lines.
    pub fn parse(bytes: &[u8]) -> Result<Self, NoteError> {
        if bytes.len() > NOTE_BYTES_MAX {
            return Err(NoteError::TooLarge {
                len: bytes.len(),
                max: NOTE_BYTES_MAX,
            });
        }
        let msg = std::str::from_utf8(bytes).map_err(|e| NoteError::NotUtf8 {
            valid_up_to: e.valid_up_to(),
        })?;
        check_characters(msg)?;
        if !msg.ends_with('\n') {
            return Err(NoteError::MissingFinalNewline);
        }
        // The text may hold blank lines itself; signature lines never do.
        let split = msg.rfind("\n\n").ok_or(NoteError::NoBlankLine)?;
        let text = &msg[..=split];
        let block = &msg[split + 2..];
        if block.is_empty() {
            return Err(NoteError::NoSignatures);
        }
        let first_line = text.matches('\n').count() + 2;
        let mut signatures = Vec::new();
        // `block` ends with '\n', so `split_terminator` yields exactly its lines.
        for (i, line) in block.split_terminator('\n').enumerate() {
            if i == SIGNATURES_MAX {
                return Err(NoteError::TooManySignatures {
                    max: SIGNATURES_MAX,
                });
            }
            signatures.push(NoteSignature::parse_line(line, first_line + i)?);
        }
        Ok(Self {
            text: text.to_owned(),
            signatures,
        })
    }

    /// The note in signed-note form: text, blank line, signature lines.
    ///
    /// Does not check anything: a note built by hand with an invalid text or name encodes
    /// to something [`Note::parse`] refuses.
    #[must_use]
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(self.text.len() + 1 + 100 * self.signatures.len());
        out.push_str(&self.text);
        out.push('\n');
        for sig in &self.signatures {
            out.push_str(&sig.to_line());
        }
        out
    }

    /// Verifies the note against the known keys `verifiers`, and returns the indices in
    /// `verifiers` of those that signed it (ascending, each once).
    ///
    /// Signatures whose (name, key ID) matches no verifier are ignored, as the specification
    /// requires; every signature whose (name, key ID) matches one must verify.
    ///
    /// # Errors
    /// - [`NoteError::InvalidSignature`] if a signature by a known key does not verify
    ///   (Ed25519 `verify_strict`);
    /// - [`NoteError::AmbiguousVerifier`] if a signature matches several verifiers;
    /// - [`NoteError::NoKnownSignature`] if no signature is by a known key.
    pub fn verify(&self, verifiers: &[NoteVerifier]) -> Result<Vec<usize>, NoteError> {
        let mut signed = Vec::new();
        for (index, sig) in self.signatures.iter().enumerate() {
            let mut matching = verifiers
                .iter()
                .enumerate()
                .filter(|(_, v)| v.key_id == sig.key_id && v.name == sig.name);
            let Some((v_index, verifier)) = matching.next() else {
                continue;
            };
            if matching.next().is_some() {
                return Err(NoteError::AmbiguousVerifier {
                    name: sig.name.clone(),
                    key_id: key_id_hex(sig.key_id),
                });
            }
            if !verifier.verifies(self.text.as_bytes(), &sig.signature) {
                return Err(NoteError::InvalidSignature {
                    index,
                    name: sig.name.clone(),
                    key_id: key_id_hex(sig.key_id),
                });
            }
            signed.push(v_index);
        }
        if signed.is_empty() {
            return Err(NoteError::NoKnownSignature {
                signatures: self.signatures.len(),
            });
        }
        signed.sort_unstable();
        signed.dedup();
        Ok(signed)
    }
}

/// A note signing key: an Ed25519 key and the name it signs under.
#[derive(Clone)]
pub struct NoteSigner {
    name: String,
    key: SigningKey,
    key_id: [u8; KEY_ID_LEN],
}

impl fmt::Debug for NoteSigner {
    // Never the secret key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NoteSigner")
            .field("name", &self.name)
            .field("key_id", &key_id_hex(self.key_id))
            .finish_non_exhaustive()
    }
}

impl NoteSigner {
    /// A signer for `name` with `key`.
    ///
    /// # Errors
    /// [`KeyError::InvalidName`] if `name` is not a valid key name.
    pub fn new(name: impl Into<String>, key: SigningKey) -> Result<Self, KeyError> {
        let name = checked_name(name.into())?;
        let key_id = key_id(&name, ALG_ED25519, key.verifying_key().as_bytes());
        Ok(Self { name, key, key_id })
    }

    /// A signer for `name` with a new key drawn from `rng`.
    ///
    /// # Errors
    /// [`KeyError::InvalidName`] if `name` is not a valid key name.
    pub fn generate<R: CryptoRngCore + ?Sized>(
        name: impl Into<String>,
        rng: &mut R,
    ) -> Result<Self, KeyError> {
        Self::new(name, SigningKey::generate(rng))
    }

    /// Parses Go's signer key string `PRIVATE+KEY+name+<hex key ID>+base64(0x01 || seed)`.
    ///
    /// # Errors
    /// A [`KeyError`] if the string is malformed, the name invalid, the type byte not
    /// `0x01`, the seed not 32 bytes, or the key ID not that of the derived public key.
    pub fn from_private_key(skey: &str) -> Result<Self, KeyError> {
        let rest = skey
            .strip_prefix(PRIVATE_KEY_PREFIX)
            .ok_or(KeyError::NotPrivateKey)?;
        let (name, rest) = rest
            .split_once('+')
            .ok_or(KeyError::MissingField { field: "key ID" })?;
        let (id, material) = rest
            .split_once('+')
            .ok_or(KeyError::MissingField { field: "key" })?;
        let claimed = parse_key_id(id)?;
        let seed = parse_key_material(material, ALG_ED25519)?;
        let signer = Self::new(name, SigningKey::from_bytes(&seed))?;
        check_claimed_id(claimed, signer.key_id)?;
        Ok(signer)
    }

    /// Go's signer key string `PRIVATE+KEY+name+<hex key ID>+base64(0x01 || seed)`, for key
    /// files. It is the secret key: keep it out of logs.
    #[must_use]
    pub fn to_private_key(&self) -> String {
        let mut material = Vec::with_capacity(33);
        material.push(ALG_ED25519);
        material.extend_from_slice(self.key.as_bytes());
        format!(
            "{PRIVATE_KEY_PREFIX}{}+{}+{}",
            self.name,
            key_id_hex(self.key_id),
            B64.encode(material)
        )
    }

    /// The key name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key ID.
    #[must_use]
    pub fn key_id(&self) -> [u8; KEY_ID_LEN] {
        self.key_id
    }

    /// The secret key, for a holder that signs other things with the same key (the dev
    /// producer keys are kept in this file format).
    #[must_use]
    pub fn signing_key(&self) -> &SigningKey {
        &self.key
    }

    /// The Ed25519 public key.
    #[must_use]
    pub fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// The matching verifier.
    #[must_use]
    pub fn verifier(&self) -> NoteVerifier {
        NoteVerifier {
            name: self.name.clone(),
            key_id: self.key_id,
            key: self.key.verifying_key(),
        }
    }

    /// The verifier key string `name+<hex key ID>+base64(0x01 || public key)`.
    #[must_use]
    pub fn verifier_key(&self) -> String {
        format_verifier_key(&self.name, ALG_ED25519, &self.key.verifying_key())
    }

    /// This key's signature line for `text`: `— <name> base64(key ID || signature)\n`,
    /// to append after a note's other signature lines.
    ///
    /// # Errors
    /// The [`NoteError`] of [`check_text`] if `text` can't be a note's text.
    pub fn signature_line(&self, text: &str) -> Result<String, NoteError> {
        check_text(text)?;
        Ok(NoteSignature {
            name: self.name.clone(),
            key_id: self.key_id,
            signature: self.key.sign(text.as_bytes()).to_bytes().to_vec(),
        }
        .to_line())
    }

    /// The signed note of `text` with this key's signature only.
    ///
    /// # Errors
    /// The [`NoteError`] of [`check_text`] if `text` can't be a note's text, or
    /// [`NoteError::TooLarge`] if the signed note would exceed [`NOTE_BYTES_MAX`].
    pub fn sign(&self, text: &str) -> Result<String, NoteError> {
        let line = self.signature_line(text)?;
        let note = format!("{text}\n{line}");
        if note.len() > NOTE_BYTES_MAX {
            return Err(NoteError::TooLarge {
                len: note.len(),
                max: NOTE_BYTES_MAX,
            });
        }
        Ok(note)
    }
}

/// A known note key: name, key ID and Ed25519 public key.
#[derive(Clone, PartialEq, Eq)]
pub struct NoteVerifier {
    name: String,
    key_id: [u8; KEY_ID_LEN],
    key: VerifyingKey,
}

impl fmt::Debug for NoteVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("NoteVerifier")
            .field(&self.to_string())
            .finish()
    }
}

impl NoteVerifier {
    /// Parses a verifier key `name+<hex key ID>+base64(0x01 || public key)`.
    ///
    /// # Errors
    /// A [`KeyError`] if the string is malformed, the name invalid, the type byte not
    /// `0x01`, the key not a usable Ed25519 public key, or the key ID not that of the key.
    pub fn parse(vkey: &str) -> Result<Self, KeyError> {
        let (name, key_id, key) = parse_verifier_key(vkey, ALG_ED25519)?;
        Ok(Self { name, key_id, key })
    }

    /// The verifier for `name` and `key`, with the key ID computed as recommended.
    ///
    /// # Errors
    /// [`KeyError::InvalidName`] for an invalid name, [`KeyError::WeakPublicKey`] for a key
    /// of small order.
    pub fn from_key(name: impl Into<String>, key: VerifyingKey) -> Result<Self, KeyError> {
        let name = checked_name(name.into())?;
        check_not_weak(&key)?;
        let key_id = key_id(&name, ALG_ED25519, key.as_bytes());
        Ok(Self { name, key_id, key })
    }

    /// The key name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key ID.
    #[must_use]
    pub fn key_id(&self) -> [u8; KEY_ID_LEN] {
        self.key_id
    }

    /// The Ed25519 public key.
    #[must_use]
    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.key
    }

    fn verifies(&self, text: &[u8], signature: &[u8]) -> bool {
        Signature::from_slice(signature).is_ok_and(|sig| self.key.verify_strict(text, &sig).is_ok())
    }
}

/// The verifier key string `name+<hex key ID>+base64(0x01 || public key)`.
impl fmt::Display for NoteVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_verifier_key(&self.name, ALG_ED25519, &self.key))
    }
}

impl FromStr for NoteVerifier {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}
