//! Newtypes for the numbers and hashes the log deals in, so that a hash of one kind can't be
//! passed where another is expected, and an index can't be confused with a size.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

/// Error for a hash given in text that is not 32 bytes of hex or base64.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HashParseError {
    /// Not valid hexadecimal.
    #[error("not hexadecimal: {0}")]
    Hex(String),
    /// Not valid standard base64.
    #[error("not standard base64: {0}")]
    Base64(String),
    /// Decoded, but not 32 bytes.
    #[error("a hash is 32 bytes, got {0}")]
    Length(usize),
}

/// A SHA-256 value of a node of the Merkle tree (RFC 9162 §2.1): a leaf hash, an interior
/// node hash, or a root.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    /// The raw bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lower-case hexadecimal.
    #[must_use]
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Standard base64 with padding (the encoding of checkpoints and proofs).
    #[must_use]
    pub fn to_base64(&self) -> String {
        B64.encode(self.0)
    }

    /// From exactly 32 bytes.
    ///
    /// # Errors
    /// [`HashParseError::Length`] when `bytes` is not 32 bytes long.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, HashParseError> {
        <[u8; 32]>::try_from(bytes)
            .map(Self)
            .map_err(|_| HashParseError::Length(bytes.len()))
    }

    /// From hexadecimal (either case).
    ///
    /// # Errors
    /// When the text is not hexadecimal or not 32 bytes.
    pub fn from_hex(text: &str) -> Result<Self, HashParseError> {
        let bytes = hex::decode(text).map_err(|e| HashParseError::Hex(e.to_string()))?;
        Self::from_slice(&bytes)
    }

    /// From standard base64.
    ///
    /// # Errors
    /// When the text is not standard base64 or not 32 bytes.
    pub fn from_base64(text: &str) -> Result<Self, HashParseError> {
        let bytes = B64
            .decode(text)
            .map_err(|e| HashParseError::Base64(e.to_string()))?;
        Self::from_slice(&bytes)
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({})", self.to_hex())
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

macro_rules! hash_newtype {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(pub Hash);

        impl $name {
            /// The tree node hash this is.
            #[must_use]
            pub fn hash(&self) -> Hash {
                self.0
            }
            /// Lower-case hexadecimal.
            #[must_use]
            pub fn to_hex(&self) -> String {
                self.0.to_hex()
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self.0.to_hex())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0.to_hex())
            }
        }

        impl TryFrom<String> for $name {
            type Error = HashParseError;
            fn try_from(text: String) -> Result<Self, Self::Error> {
                Hash::from_hex(&text).map(Self)
            }
        }

        impl From<$name> for String {
            fn from(h: $name) -> String {
                h.0.to_hex()
            }
        }
    };
}

hash_newtype!(
    /// SHA-256(0x00 || leaf data): how an event is named in the log (`parents`, receipts).
    /// In JSON: lower-case hex.
    LeafHash
);
hash_newtype!(
    /// The root hash of the tree at some size. In JSON: lower-case hex.
    RootHash
);

/// The position of an entry in the log, from 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LeafIndex(pub u64);

/// A number of entries in the log: a tree size. Size `n` holds indices `0..n`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TreeSize(pub u64);

impl LeafIndex {
    /// The index as a plain number.
    #[must_use]
    pub fn get(self) -> u64 {
        self.0
    }
}

impl TreeSize {
    /// The size as a plain number.
    #[must_use]
    pub fn get(self) -> u64 {
        self.0
    }

    /// Whether `index` is inside a tree of this size.
    #[must_use]
    pub fn contains(self, index: LeafIndex) -> bool {
        index.0 < self.0
    }
}

impl fmt::Display for LeafIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for TreeSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}
