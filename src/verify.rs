//! `govern verify log`: trust nothing the node says that can be recomputed.
//!
//! It fetches the checkpoint and checks its signature; fetches every entry bundle and the
//! hash tiles; checks every entry is a canonical event with a valid signature and that its
//! leaf hash is the one in the level-0 tile; recomputes every tree node and compares it with
//! the tiles above; recomputes the root and compares it with the checkpoint; and checks the
//! new checkpoint against the last one it saw from this log (remembered in a state file),
//! both by recomputing the old root and through the node's consistency proof. The first
//! mismatch stops it, naming the index. The state file also pins the log's key and the
//! witness policy the checkpoint was checked under: a later run refuses another key, and a
//! weaker announced policy unless `--witnesses` names one. `govern verify request` reads the
//! same state ([`pinned`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::Args;
use govern_core::checkpoint::Checkpoint;
use govern_core::event::SignedEvent;
use govern_core::ids::{Hash, RootHash, TreeSize};
use govern_core::merkle::{self, Frontier};
use govern_core::note::NoteVerifier;
use govern_core::tiles::{TILE_HEIGHT, TILE_WIDTH, Tile, decode_bundle};
use govern_core::witness::{PolicyFile, WitnessPolicy};
use serde::{Deserialize, Serialize};

use crate::client::Client;
use crate::error::Result;

#[derive(Debug, Args)]
pub struct LogArgs {
    /// The log's base URL: a node (`http://localhost:7600`), or any static file server
    /// serving an export (`govern export`), under a path if need be.
    #[arg(long, env = "GOVERN_URL")]
    pub url: String,
    /// The log's verifier key; default: the one remembered for this URL, else the one the
    /// node announces at /v1/log (trust on first use, then remembered).
    #[arg(long)]
    pub key: Option<String>,
    /// Where the last verified checkpoint is remembered [default:
    /// $XDG_STATE_HOME/govern/verify-<host>_<port>.json, else
    /// ~/.local/state/govern/verify-<host>_<port>.json, named after the URL's host, port and
    /// any path, every character but a letter, digit, `.` or `-` written `_`: `localhost`
    /// and `127.0.0.1` are separate files].
    #[arg(long)]
    pub state: Option<PathBuf>,
    /// The witness policy the checkpoint must meet (TOML: `quorum`, `[[witness]]` `vkey`s),
    /// remembered from then on [default: the policy the node announces at /v1/log, if any,
    /// refused when weaker than the one remembered for this URL].
    #[arg(long)]
    pub witnesses: Option<PathBuf>,
}

/// What `verify log` remembers of a log between runs.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Remembered {
    verifier_key: String,
    size: u64,
    root: String,
    checkpoint: String,
    /// The witness policy the checkpoint was checked under; absent when none was (or in a
    /// state file written before policies were remembered).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    witnesses: Option<PolicyFile>,
}

/// The state file: `--state`, else the default for `url` (a checked base URL,
/// [`Client::base`]).
pub(crate) fn state_path(state: Option<&Path>, url: &str) -> PathBuf {
    state.map_or_else(|| default_state(url), Path::to_path_buf)
}

/// What `verify log` remembered at `path`, if it ran before.
pub(crate) fn remembered(path: &Path) -> Result<Option<Remembered>> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(
            serde_json::from_slice(&b).map_err(|e| format!("{}: {e}", path.display()))?,
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", path.display()).into()),
    }
}

/// The trust a log is checked under.
pub(crate) struct Pinned {
    /// The log's verifier key.
    pub vkey: String,
    /// Whether that key is only the node's word (no `--key`, nothing remembered).
    pub key_announced: bool,
    /// The witness policy and where it came from, if any.
    pub policy: Option<(WitnessPolicy, &'static str)>,
}

impl Pinned {
    /// The node's latest checkpoint (`/checkpoint`), opened under the pinned key: its bytes,
    /// what it says and its note (for the witness policy's check).
    pub(crate) async fn checkpoint(
        &self,
        client: &Client,
    ) -> Result<(Vec<u8>, Checkpoint, govern_core::note::Note)> {
        let verifier = NoteVerifier::parse(&self.vkey).map_err(|e| format!("verifier key: {e}"))?;
        let note = client.get_required("/checkpoint").await?;
        let (cp, parsed) = Checkpoint::open(&note, verifier.name(), &verifier)
            .map_err(|e| VerifyFailure::Checkpoint(e.to_string()))?;
        Ok((note, cp, parsed))
    }
}

/// A log that shows another key than the one pinned.
#[derive(Debug, thiserror::Error)]
pub enum PinnedKeyError {
    /// `--key` is not the key remembered for this log.
    #[error("the log's key was {remembered} when last verified, not {given}")]
    Given {
        /// The remembered key.
        remembered: String,
        /// `--key`.
        given: String,
    },
    /// The node announces another key than the pinned one (`--key`, else remembered).
    #[error("the node announces the log key {announced}, not the pinned {pinned}")]
    Announced {
        /// What `/v1/log` says.
        announced: String,
        /// `--key`, else the remembered key.
        pinned: String,
    },
}

/// The log's key and witness policy. The key: `--key`, else the remembered one, else the
/// one the node announces; `--key` must be the remembered one, and the announced one, when
/// read, the pinned one. The policy: `--witnesses`, else the announced one if it is at least
/// as strong as the remembered one ([`crate::witness::announced_or_remembered`]). `/v1/log`
/// is read unless the key is pinned and `--witnesses` given.
pub(crate) async fn pinned(
    client: &Client,
    key: Option<&str>,
    witnesses: Option<&Path>,
    remembered: Option<&Remembered>,
) -> Result<Pinned> {
    let pinned_key = key
        .map(str::to_owned)
        .or_else(|| remembered.map(|r| r.verifier_key.clone()));
    if let (Some(r), Some(given)) = (remembered, key)
        && r.verifier_key != given
    {
        return Err(PinnedKeyError::Given {
            remembered: r.verifier_key.clone(),
            given: given.to_owned(),
        }
        .into());
    }
    let announced = if pinned_key.is_some() && witnesses.is_some() {
        None
    } else {
        Some(client.log_info().await?)
    };
    let (vkey, key_announced) = match (pinned_key, &announced) {
        (Some(k), Some(info)) if info.verifier_key != k => {
            return Err(PinnedKeyError::Announced {
                announced: info.verifier_key.clone(),
                pinned: k,
            }
            .into());
        }
        (Some(k), _) => (k, false),
        (None, Some(info)) => (info.verifier_key.clone(), true),
        (None, None) => return Err("no verifier key: pass --key".into()),
    };
    let policy = match witnesses {
        Some(path) => Some((
            WitnessPolicy::from_file(&crate::witness::read_policy(path)?)?,
            "pinned",
        )),
        None => {
            let remembered_policy = remembered
                .and_then(|r| r.witnesses.as_ref())
                .map(WitnessPolicy::from_file)
                .transpose()
                .map_err(|e| format!("state file witness policy: {e}"))?;
            crate::witness::announced_or_remembered(
                announced.and_then(|info| info.witnesses),
                remembered_policy.as_ref(),
            )?
        }
    };
    Ok(Pinned {
        vkey,
        key_announced,
        policy,
    })
}

/// `$XDG_STATE_HOME/govern/verify-<host>_<port>.json` (else under `~/.local/state`): the
/// base URL without its scheme, every character but ASCII letters, digits, `.` and `-` as `_`.
fn default_state(url: &str) -> PathBuf {
    let base = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
        .unwrap_or_else(|| PathBuf::from("."));
    let name: String = url
        .trim_start_matches("http://")
        .trim_start_matches("https://")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    base.join("govern").join(format!("verify-{name}.json"))
}

/// A verification failure, naming where.
#[derive(Debug, thiserror::Error)]
pub enum VerifyFailure {
    #[error("entry {index}: {reason}")]
    Entry { index: u64, reason: String },
    #[error("tile {tile}: {reason}")]
    Tile { tile: String, reason: String },
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    #[error("consistency with the checkpoint seen before (size {old_size}): {reason}")]
    Consistency { old_size: u64, reason: String },
}

/// `govern verify log`.
pub async fn log(args: LogArgs) -> Result<()> {
    let client = Client::for_log(&args.url)?;
    let state_path = state_path(args.state.as_deref(), client.base());
    let remembered = remembered(&state_path)?;
    let pinned = pinned(
        &client,
        args.key.as_deref(),
        args.witnesses.as_deref(),
        remembered.as_ref(),
    )
    .await?;
    if pinned.key_announced {
        eprintln!(
            "trusting the verifier key the node announces (first use): {}",
            pinned.vkey
        );
    }
    let (note, cp, parsed) = pinned.checkpoint(&client).await?;
    let witnessed = match &pinned.policy {
        Some((policy, source)) => Some(
            crate::witness::check(policy, &parsed, source)
                .map_err(|e| VerifyFailure::Checkpoint(e.to_string()))?,
        ),
        None => None,
    };
    let old = remembered.as_ref().map(|r| -> Result<(u64, RootHash)> {
        Ok((
            r.size,
            RootHash(Hash::from_hex(&r.root).map_err(|e| format!("state file root: {e}"))?),
        ))
    });
    let old = old.transpose()?;
    if let Some((old_size, _)) = old
        && old_size > cp.size.0
    {
        return Err(VerifyFailure::Consistency {
            old_size,
            reason: format!("the log now shows size {}: a rollback", cp.size),
        }
        .into());
    }
    let walked = walk(&client, cp.size, old).await?;
    if walked != cp.root {
        return Err(VerifyFailure::Checkpoint(format!(
            "the entries hash to root {walked}, but the checkpoint says {}",
            cp.root
        ))
        .into());
    }
    if let Some((old_size, old_root)) = old
        && old_size > 0
        && old_size < cp.size.0
    {
        // The walk recomputed the old root from the entries already; the served proof is a
        // second check, which a static copy of an export cannot give.
        let proof = match client.consistency(old_size, cp.size.0).await {
            Ok(p) => Some(p),
            Err(e) if e.status() == Some(404) => {
                println!(
                    "no consistency proof served (a static copy?): consistency checked by recomputing the old root"
                );
                None
            }
            Err(e) => return Err(e.into()),
        };
        if let Some(proof) = proof {
            let hashes = proof
                .hashes
                .iter()
                .map(|h| Hash::from_base64(h))
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| VerifyFailure::Consistency {
                    old_size,
                    reason: e.to_string(),
                })?;
            merkle::verify_consistency(TreeSize(old_size), cp.size, &hashes, &old_root, &cp.root)
                .map_err(|e| VerifyFailure::Consistency {
                old_size,
                reason: format!("served proof: {e}"),
            })?;
        }
    }
    let remember = Remembered {
        verifier_key: pinned.vkey.clone(),
        size: cp.size.0,
        root: cp.root.to_hex(),
        checkpoint: String::from_utf8_lossy(&note).into(),
        witnesses: pinned.policy.as_ref().map(|(p, _)| p.to_file()),
    };
    if let Some(dir) = state_path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = state_path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(&remember)?)?;
    std::fs::rename(&tmp, &state_path)?;
    println!(
        "log {} verified: size {} root {}",
        cp.origin, cp.size, cp.root
    );
    if let Some((old_size, _)) = old {
        println!("consistent with the checkpoint of size {old_size} seen before");
    }
    if let Some(w) = witnessed {
        println!("{w}");
    }
    Ok(())
}

fn tile_of(level: u8, index: u64, width: u64) -> Tile {
    let partial = (width < TILE_WIDTH).then(|| u8::try_from(width).unwrap_or(u8::MAX));
    Tile::Hashes {
        level,
        index,
        partial,
    }
}

/// Walk every entry of a tree of `size`, checking entries, leaf hashes and every hash tile;
/// returns the recomputed root. `old` is checked on the way: the root at its size.
async fn walk(client: &Client, size: TreeSize, old: Option<(u64, RootHash)>) -> Result<RootHash> {
    let mut frontier = Frontier::new();
    let mut completed = Vec::new();
    // Computed hashes of levels 8, 16, ... waiting for their tile to be full (or the end):
    // at most 256 per tile level, so memory stays flat.
    let mut pending: BTreeMap<u8, (u64, Vec<Hash>)> = BTreeMap::new();
    let bundles = size.0.div_ceil(TILE_WIDTH);
    for n in 0..bundles {
        let width = (size.0 - n * TILE_WIDTH).min(TILE_WIDTH);
        let partial = (width < TILE_WIDTH).then(|| u8::try_from(width).unwrap_or(u8::MAX));
        let entries_tile = Tile::Entries { index: n, partial };
        let bundle = client.get_required(&entries_tile.to_string()).await?;
        let entries = decode_bundle(&bundle).map_err(|e| VerifyFailure::Tile {
            tile: entries_tile.to_string(),
            reason: e.to_string(),
        })?;
        if entries.len() as u64 != width {
            return Err(VerifyFailure::Tile {
                tile: entries_tile.to_string(),
                reason: format!("holds {} entries, expected {width}", entries.len()),
            }
            .into());
        }
        let leaf_tile = tile_of(0, n, width);
        let leaves = client.get_required(&leaf_tile.to_string()).await?;
        if leaves.len() as u64 != width * 32 {
            return Err(VerifyFailure::Tile {
                tile: leaf_tile.to_string(),
                reason: format!("is {} bytes", leaves.len()),
            }
            .into());
        }
        for (i, entry) in entries.iter().enumerate() {
            let index = n * TILE_WIDTH + i as u64;
            let event = SignedEvent::from_bytes(entry).map_err(|e| VerifyFailure::Entry {
                index,
                reason: e.to_string(),
            })?;
            let served = &leaves[i * 32..i * 32 + 32];
            if event.leaf_hash().hash().as_bytes() != served {
                return Err(VerifyFailure::Entry {
                    index,
                    reason: format!(
                        "its leaf hash is {} but the level-0 tile says {}",
                        event.leaf_hash(),
                        hex::encode(served)
                    ),
                }
                .into());
            }
            completed.clear();
            frontier.push(event.leaf_hash(), &mut completed);
            for (level, idx, hash) in &completed {
                if *level > 0 && level % TILE_HEIGHT == 0 {
                    let tl = level / TILE_HEIGHT;
                    let slot = pending
                        .entry(tl)
                        .or_insert_with(|| (idx / TILE_WIDTH, Vec::new()));
                    slot.1.push(*hash);
                    if slot.1.len() as u64 == TILE_WIDTH {
                        let (tn, hashes) = std::mem::take(slot);
                        check_tile(client, tile_of(tl, tn, TILE_WIDTH), &hashes).await?;
                        slot.0 = tn + 1;
                    }
                }
            }
            if let Some((old_size, old_root)) = old
                && frontier.size().0 == old_size
                && frontier.root() != old_root
            {
                return Err(VerifyFailure::Consistency {
                    old_size,
                    reason: format!(
                        "the first {old_size} entries now hash to {}, not {old_root}",
                        frontier.root()
                    ),
                }
                .into());
            }
        }
    }
    for (tl, (tn, hashes)) in pending {
        if !hashes.is_empty() {
            check_tile(client, tile_of(tl, tn, hashes.len() as u64), &hashes).await?;
        }
    }
    Ok(frontier.root())
}

async fn check_tile(client: &Client, tile: Tile, computed: &[Hash]) -> Result<()> {
    let served = client.get_required(&tile.to_string()).await?;
    let expect: Vec<u8> = computed.iter().flat_map(|h| h.0).collect();
    if served != expect {
        let first = served
            .chunks(32)
            .zip(computed)
            .position(|(s, c)| s != c.as_bytes())
            .unwrap_or(computed.len());
        return Err(VerifyFailure::Tile {
            tile: tile.to_string(),
            reason: format!("hash {first} differs from the entries"),
        }
        .into());
    }
    Ok(())
}
