//! Before a node touches its data dir: every file it will use is checked, reading only, so a
//! start that fails for a setting or a missing file leaves the directory byte for byte as it
//! was (docs/operations.md). What it checks:
//!
//! - the directory is new (absent or empty), or a govern data dir: it holds something a
//!   node or `govern manifest pin` writes;
//! - no other process has its store open (RocksDB's lock; the holder's PID when the system
//!   says);
//! - a store that holds a log comes with the files a node needs to serve it (`log.key`, the
//!   manifest signers, the manifest or, in dev, the dev CA and dev signer keys, the key
//!   service's `keys/`), all named in one message when any is missing (a replayed or partly
//!   restored copy); `log.key` signs the stored checkpoints, and the origin is the log's;
//! - the manifest verifies against the pinned signers (in dev: the dev signer keys that will
//!   sign the re-pinned manifest are among the pinned signers), and the dev CA root has its
//!   key.

use std::path::Path;

use govern_core::checkpoint::Checkpoint;
use govern_store::{LogReader, RocksStorage};

use crate::datadir::{DataDirError, read_key, read_manifest_signers, read_signed_manifest};

/// What a start will find.
#[derive(Debug)]
pub enum Found {
    /// Nothing yet: the node makes a new data dir (and a new log).
    Fresh,
    /// A data dir with no log yet (`govern manifest pin` ran, the node never started).
    NoLog,
    /// A data dir whose log has this many entries.
    Log {
        /// Its size.
        size: u64,
        /// The store, opened read-only to check it: what the start's witness check reads
        /// too, before the node opens it for writing.
        reader: LogReader<RocksStorage>,
    },
}

/// What a node or `manifest pin` writes into a data dir: a non-empty directory holding none
/// of these is someone else's.
const OURS: &[&str] = &[
    "db",
    "log.key",
    "edge.key",
    "manifest.json",
    "manifest-signers.toml",
    "manifest-signers",
    "dev-ca",
    "keys",
    "operator.token",
    "passkeys",
    "witnesses.toml",
    "witnesses",
];

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DataDirError + '_ {
    move |source| DataDirError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Check `root` for a node with checkpoint origin `origin` (none: the default or the log's),
/// a dev build when `dev`. Reads only.
///
/// # Errors
/// [`DataDirError`] naming what is wrong and what to do.
pub fn check(root: &Path, origin: Option<&str>, dev: bool) -> Result<Found, DataDirError> {
    let not = |reason: String| DataDirError::NotADataDir {
        path: root.to_path_buf(),
        reason,
    };
    match std::fs::metadata(root) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Found::Fresh),
        Err(e) => return Err(io(root)(e)),
        Ok(m) if !m.is_dir() => return Err(not("it is not a directory".into())),
        Ok(_) => {}
    }
    let names: Vec<String> = std::fs::read_dir(root)
        .map_err(io(root))?
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    if names.is_empty() {
        return Ok(Found::Fresh);
    }
    if !names.iter().any(|n| OURS.contains(&n.as_str())) {
        return Err(not(format!(
            "it holds other files ({}) and nothing of a node's: give a new or empty directory",
            names.len()
        )));
    }
    let db = root.join("db");
    if let Some(pid) = RocksStorage::in_use(&db) {
        return Err(DataDirError::Storage(govern_store::StorageError::Locked {
            path: db.display().to_string(),
            pid,
        }));
    }
    let key_path = root.join("log.key");
    let log_key = read_key(&key_path)?;
    if let (Some(key), Some(o)) = (&log_key, origin)
        && key.name() != o
    {
        return Err(DataDirError::OriginMismatch {
            existing: key.name().into(),
            configured: o.into(),
        });
    }
    let found = if db.join("CURRENT").is_file() {
        let reader = LogReader::open(RocksStorage::open_read_only(&db)?)?;
        let latest = reader.latest();
        if let Some(key) = &log_key
            && Checkpoint::open(latest.note.as_bytes(), reader.origin(), &key.verifier()).is_err()
        {
            return Err(DataDirError::Storage(
                govern_store::StorageError::NotThisLog(format!(
                    "{}: the stored log's latest checkpoint is not signed by this key ({}): install the log's own log.key",
                    key_path.display(),
                    key.verifier()
                )),
            ));
        }
        Found::Log {
            size: latest.size.0,
            reader,
        }
    } else {
        Found::NoLog
    };
    // What a node serving this log needs beside the store.
    let mut missing = Vec::new();
    let exists = |rel: &str| root.join(rel).exists();
    if let Found::Log { size, .. } = found {
        if log_key.is_none() {
            missing.push("log.key (the log's signing key)".to_owned());
        }
        if !exists("manifest-signers.toml") {
            missing.push("manifest-signers.toml (the pinned manifest signers)".to_owned());
        }
        if dev {
            if !exists("dev-ca/root.der") || !exists("dev-ca/root.key") {
                missing.push("dev-ca/ (the dev CA, root.der and root.key)".to_owned());
            }
            if !exists("manifest-signers") {
                missing.push("manifest-signers/ (the dev manifest-signer keys)".to_owned());
            }
        } else if !exists("manifest.json") {
            missing.push("manifest.json (the signed manifest)".to_owned());
        }
        if !exists("keys/master.json") {
            missing
                .push("keys/ (the key service: its sealed master and tenants' seeds)".to_owned());
        }
        if !missing.is_empty() {
            return Err(DataDirError::Incomplete {
                path: root.to_path_buf(),
                size,
                missing,
            });
        }
    }
    check_manifest(root, dev)?;
    Ok(found)
}

/// The manifest the node will publish verifies against the pinned signers, when both are
/// there (a new data dir gets both from the dev pin).
fn check_manifest(root: &Path, dev: bool) -> Result<(), DataDirError> {
    let signers_path = root.join("manifest-signers.toml");
    if !signers_path.exists() {
        return Ok(());
    }
    let signers = read_manifest_signers(root)?;
    if !dev {
        read_signed_manifest(root, false)?;
        return Ok(());
    }
    // Dev: the node re-pins the manifest with the dev signer keys of manifest-signers/ when
    // the executable changed; enough of those must be pinned.
    let mut pinned = 0usize;
    for i in 1..=crate::devpin::DEV_SIGNERS {
        let path = root.join(format!("manifest-signers/dev-{i}.key"));
        if let Some(key) = read_key(&path)?
            && signers.keys.contains(&key.verifying_key())
        {
            pinned += 1;
        }
    }
    if pinned < signers.threshold {
        return Err(DataDirError::Signers {
            path: signers_path,
            reason: format!(
                "only {pinned} of the dev manifest-signer keys in manifest-signers/ are pinned here \
                 (threshold {}): a manifest they sign would not verify; install the original \
                 data dir's manifest-signers/ and manifest-signers.toml together",
                signers.threshold
            ),
        });
    }
    let root_der = root.join("dev-ca/root.der");
    if root_der.exists() && !root.join("dev-ca/root.key").exists() {
        return Err(DataDirError::BadKey {
            path: root.join("dev-ca/root.key"),
            reason: "dev-ca/root.der is there but its key is not: install the original data dir's dev-ca/".into(),
        });
    }
    Ok(())
}
