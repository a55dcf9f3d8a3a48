//! # govern-replay-tests
//!
//! - **Golden logs** (`goldens/<name>/`, each an export by `govern export`, with
//!   `goldens/<name>.json` recording the seed that made it, the log's verifier key, and the
//!   tree size, tree root and state root it must replay to). CI replays every one of them
//!   for ever, through the library ([`replay_golden`]: govern-archive's replay, the one
//!   `govern replay` runs, into each store) and through `govern replay` (the root crate's
//!   `tests/replay.rs`). A golden's recorded roots change
//!   only in a commit of its own that says why (a new state version, a new check); no test
//!   ever writes them.
//! - **The storage conformance suite** ([`conformance`]): the contract of
//!   `govern_store::Storage` every store must keep, and the golden replays into that store,
//!   which must then serve the export's tiles byte for byte.
//!
//! Goldens are made with `govern up`, `govern scenario --seed N` and `govern export`; see
//! `goldens/README.md`.
#![forbid(unsafe_code)]

pub mod conformance;
pub mod postgres;

use std::path::{Path, PathBuf};

use govern_archive::Silent;
use govern_archive::read::read;
use govern_archive::replay::replay_into;
use govern_archive::trust::{Pins, Trust};
use govern_core::ids::TreeSize;
use govern_core::tiles::tiles_at;
use govern_store::Storage;
use serde_json::Value;

/// Where the goldens are.
#[must_use]
pub fn goldens_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("goldens")
}

/// A golden: its export and what it must replay to.
#[derive(Debug, Clone)]
pub struct Golden {
    /// Its name.
    pub name: String,
    /// The export.
    pub dir: PathBuf,
    /// The recorded facts (`<name>.json`).
    pub recorded: Value,
}

/// Every golden, by name.
///
/// # Panics
/// When the goldens directory cannot be read (a broken checkout).
#[must_use]
pub fn goldens() -> Vec<Golden> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(goldens_dir()).unwrap_or_else(|e| panic!("goldens: {e}")) {
        let Ok(entry) = entry else { continue };
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_string();
        let recorded: Value = serde_json::from_slice(
            &std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
        )
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        out.push(Golden {
            dir: goldens_dir().join(&name),
            name,
            recorded,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// What a replay reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reached {
    /// Tree size.
    pub size: u64,
    /// Tree root, hex.
    pub root: String,
    /// State root, hex.
    pub state_root: String,
}

/// Replay the golden `golden` into `storage` with govern-archive's replay (every check
/// `govern replay` makes, under the node's append policy, batch by batch at its signed
/// checkpoints) and its recorded verifier key pinned; then check the store serves every tile
/// of the export, hash tiles and entry bundles, byte for byte.
///
/// # Errors
/// The first failure, with the index or file.
pub fn replay_golden<S: Storage>(golden: &Golden, storage: S) -> Result<Reached, String> {
    let dir = &golden.dir;
    let vkey = golden.recorded["verifier_key"]
        .as_str()
        .ok_or("the golden records no verifier_key")?;
    let pins = Pins {
        key: Some(vkey.to_owned()),
        allow_dev_root: true,
        ..Pins::default()
    };
    let trust = Trust::resolve(dir, &pins, &mut Silent).map_err(|e| e.to_string())?;
    let replayed =
        replay_into(dir, &trust, &[], || Ok(storage), &mut Silent).map_err(|e| e.to_string())?;
    let size = TreeSize(replayed.size);
    for tile in tiles_at(size) {
        let served = replayed
            .reader
            .tile(tile)
            .map_err(|e| format!("{tile}: {e}"))?;
        if served != read(dir, &tile.to_string()).map_err(|e| e.to_string())? {
            return Err(format!(
                "{tile}: the store serves other bytes than the export"
            ));
        }
    }
    Ok(Reached {
        size: replayed.size,
        root: replayed.reader.latest().root.to_hex(),
        state_root: replayed.state_root,
    })
}
