//! The dev allow-list of producer keys, kept in the data dir until attested identities
//! (the next issue) replace it. One line per producer: `<role> <base64 Ed25519 key>`;
//! `#` starts a comment.

use std::collections::HashSet;
use std::path::Path;

use govern_core::event::{PublicKey, Role};

/// Why the allow-list file could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AllowListError {
    /// The file could not be read or written.
    #[error("allow-list {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What failed.
        source: std::io::Error,
    },
    /// A line is not `<role> <base64 key>`.
    #[error("allow-list {path} line {line}: {reason}")]
    Syntax {
        /// The file.
        path: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
}

/// The producers that may append, by role and key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProducerAllowList {
    entries: HashSet<(Role, PublicKey)>,
}

impl ProducerAllowList {
    /// Whether `role` may append with `key`.
    #[must_use]
    pub fn allows(&self, role: &Role, key: &PublicKey) -> bool {
        self.entries.contains(&(role.clone(), *key))
    }

    /// Allow `role` to append with `key`.
    pub fn insert(&mut self, role: Role, key: PublicKey) {
        self.entries.insert((role, key));
    }

    /// Parse the file's text.
    ///
    /// # Errors
    /// [`AllowListError::Syntax`] naming the first bad line.
    pub fn parse(text: &str, path: &str) -> Result<Self, AllowListError> {
        let mut list = Self::default();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let syntax = |reason: String| AllowListError::Syntax {
                path: path.into(),
                line: i + 1,
                reason,
            };
            let mut words = line.split_whitespace();
            let (Some(role), Some(key), None) = (words.next(), words.next(), words.next()) else {
                return Err(syntax("expected `<role> <base64 key>`".into()));
            };
            let role = Role::new(role).map_err(|e| syntax(e.to_string()))?;
            let key = PublicKey::try_from(key.to_string()).map_err(|e| syntax(e.to_string()))?;
            key.verifying_key().map_err(|e| syntax(e.to_string()))?;
            list.insert(role, key);
        }
        Ok(list)
    }

    /// Read the file; a missing file is an empty list.
    ///
    /// # Errors
    /// [`AllowListError`] when it cannot be read or parsed.
    pub fn load(path: &Path) -> Result<Self, AllowListError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&text, &path.display().to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(source) => Err(AllowListError::Io {
                path: path.display().to_string(),
                source,
            }),
        }
    }

    /// Add one producer to the file (creating it), unless already there.
    ///
    /// # Errors
    /// [`AllowListError`] when the file cannot be read or written.
    pub fn add_to_file(path: &Path, role: &Role, key: &PublicKey) -> Result<(), AllowListError> {
        let mut list = Self::load(path)?;
        if list.allows(role, key) {
            return Ok(());
        }
        list.insert(role.clone(), *key);
        let io = |source| AllowListError::Io {
            path: path.display().to_string(),
            source,
        };
        let mut text = std::fs::read_to_string(path).unwrap_or_else(|_| {
            "# Dev allow-list of producer keys: `<role> <base64 Ed25519 key>` per line.\n".into()
        });
        text.push_str(&format!("{role} {}\n", key.to_base64()));
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text).map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    }
}
