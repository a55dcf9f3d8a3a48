//! # govern-replay-tests
//!
//! - **Golden logs** (`goldens/<name>/`, each an export by `govern export`, with
//!   `goldens/<name>.json` recording the seed that made it, the log's verifier key, and the
//!   tree size, tree root and state root it must replay to). CI replays every one of them
//!   for ever, through the library ([`replay_golden`], into each store) and through
//!   `govern replay` (the root crate's `tests/replay.rs`). A golden's recorded roots change
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

use std::path::{Path, PathBuf};
use std::sync::Arc;

use govern_core::attestation::TrustAnchor;
use govern_core::event::{PublicKey, SignedEvent};
use govern_core::note::NoteVerifier;
use govern_core::tiles::{TILE_WIDTH, Tile, decode_bundle, tiles_at};
use govern_store::replay::open_checkpoint;
use govern_store::{AppendPolicy, LogReader, Replay, Storage, TIME_SKEW_MS};
use govern_admission::{IdentityPolicy};
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

fn read(dir: &Path, rel: &str) -> Result<Vec<u8>, String> {
    std::fs::read(dir.join(rel)).map_err(|e| format!("{rel}: {e}"))
}

/// Replay the golden `golden` into `storage` under the node's append policy, batch by batch
/// at its signed checkpoints, with its recorded verifier key pinned; then check the store
/// serves every tile of the export byte for byte.
///
/// # Errors
/// The first failure, with the index or file.
pub fn replay_golden<S: Storage>(golden: &Golden, storage: S) -> Result<Reached, String> {
    let dir = &golden.dir;
    let vkey = golden.recorded["verifier_key"]
        .as_str()
        .ok_or("the golden records no verifier_key")?;
    let verifier = NoteVerifier::parse(vkey).map_err(|e| e.to_string())?;
    let origin = verifier.name().to_string();
    let signers = govern_api::datadir::parse_manifest_signers(
        &String::from_utf8(read(dir, "trust/manifest-signers.toml")?).map_err(|e| e.to_string())?,
    )?;
    let dev_root =
        TrustAnchor::from_der(&read(dir, "trust/dev-root.der")?).map_err(|e| e.to_string())?;
    let policy = Arc::new(IdentityPolicy::new(
        signers,
        PublicKey(*verifier.verifying_key().as_bytes()),
        true,
        Some(dev_root),
    ));
    let latest = open_checkpoint(&read(dir, "checkpoint")?, &origin, &verifier, 0)
        .map_err(|e| e.to_string())?;
    let size = latest.size.0;
    let mut entries = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    for b in 0..size.div_ceil(TILE_WIDTH) {
        let width = (size - b * TILE_WIDTH).min(TILE_WIDTH);
        let tile = Tile::Entries {
            index: b,
            partial: (width < TILE_WIDTH).then(|| u8::try_from(width).unwrap_or(u8::MAX)),
        };
        for (i, raw) in decode_bundle(&read(dir, &tile.to_string())?)
            .map_err(|e| format!("{tile}: {e}"))?
            .into_iter()
            .enumerate()
        {
            let index = b * TILE_WIDTH + i as u64;
            entries.push(SignedEvent::from_bytes(&raw).map_err(|e| format!("entry {index}: {e}"))?);
        }
    }
    let mut sizes: Vec<u64> = std::fs::read_dir(dir.join("checkpoints"))
        .map_err(|e| e.to_string())?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    sizes.sort_unstable();
    let mut replay = Replay::new(
        storage,
        origin.clone(),
        verifier.clone(),
        Arc::clone(&policy) as Arc<dyn AppendPolicy>,
        TIME_SKEW_MS,
        &read(dir, "checkpoints/0")?,
    )
    .map_err(|e| e.to_string())?;
    let mut from = 0usize;
    for s in sizes.into_iter().filter(|s| *s > 0) {
        let to = usize::try_from(s).map_err(|e| e.to_string())?;
        let batch = entries
            .get(from..to)
            .ok_or(format!("checkpoint {s} is beyond the entries"))?;
        replay
            .batch(batch, &read(dir, &format!("checkpoints/{s}"))?)
            .map_err(|e| e.to_string())?;
        from = to;
    }
    let storage = replay.finish().map_err(|e| e.to_string())?;
    let reader = LogReader::open(storage).map_err(|e| e.to_string())?;
    for tile in tiles_at(latest.size) {
        let served = reader.tile(tile).map_err(|e| format!("{tile}: {e}"))?;
        if served != read(dir, &tile.to_string())? {
            return Err(format!(
                "{tile}: the store serves other bytes than the export"
            ));
        }
    }
    let (state_size, state) = policy.state();
    if state_size != latest.size {
        return Err(format!(
            "projections at {state_size}, log at {}",
            latest.size
        ));
    }
    Ok(Reached {
        size,
        root: reader.latest().root.to_hex(),
        state_root: state.root().map_err(|e| e.to_string())?.to_hex(),
    })
}
