//! The replay driver: an export's entries into fresh storage through the node's append
//! policy (govern-store's [`Replay`]), batch by batch at its signed checkpoints, checking
//! everything `govern replay` promises (docs/auditor-guide.md), in order, stopping at the
//! first failure with its index:
//! - `v1/log` names the log (origin and verifier key; a pinned key must be the export's);
//! - every checkpoint in `checkpoints/` and the latest `checkpoint` verify under that key,
//!   sizes only grow, and no two checkpoints of one size name different roots (a fork);
//! - every entry parses as a canonical event whose producer signature verifies (on every
//!   core), then passes the node's append policy as of its place in the log: identities at
//!   each event's recorded time, manifests and their quorum, the routing graph, uniqueness
//!   keys, user signatures and their anchor distance;
//! - each checkpoint names exactly the tree its entries make;
//! - every hash tile and manifest file of the export equals what the entries give;
//! - every checkpoint seen elsewhere (a witness, an earlier `verify log`) is consistent with
//!   the replayed log.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use govern_core::checkpoint::Checkpoint;
use govern_core::event::SignedEvent;
use govern_core::witness::WitnessPolicy;
use govern_store::replay::open_checkpoint;
use govern_store::{
    AppendPolicy, LogReader, Replay, ReplayError, RocksStorage, Storage, TIME_SKEW_MS,
};

use crate::read::{Bundles, Failure, check_files, checkpoints, read};
use crate::trust::{Pins, Trust};
use crate::{Error, Observer, layout};

/// What a replay reached.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The log's origin.
    pub origin: String,
    /// Its tree size.
    pub size: u64,
    /// Its tree root, hex.
    pub root: String,
    /// The state root of its projections, hex.
    pub state_root: String,
    /// How many batches (signed checkpoints past the first) it was replayed in.
    pub batches: u64,
    /// How long the replay took, reading the trust included.
    pub elapsed: Duration,
    /// Who cosigned what, under the witness policy (none: no policy).
    pub witnessed: Option<Witnessed>,
}

/// The export's checkpoints under a witness policy.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Witnessed {
    /// k.
    pub quorum: usize,
    /// n.
    pub witnesses: usize,
    /// The largest checkpoint with a quorum.
    pub latest_size: Option<u64>,
    /// Who cosigned it.
    pub latest_cosigners: Vec<String>,
    /// Per witness of the policy: how many checkpoints it cosigned and the largest size.
    pub by_witness: BTreeMap<String, (u64, Option<u64>)>,
}

/// Check every checkpoint's cosignatures under `policy`: a cosignature line of one of its
/// witnesses that does not verify stops the replay, naming the checkpoint.
fn witnessed(
    policy: &WitnessPolicy,
    all: &BTreeMap<u64, (Vec<u8>, Checkpoint)>,
) -> Result<Witnessed, Failure> {
    let mut out = Witnessed {
        quorum: policy.quorum(),
        witnesses: policy.witnesses().len(),
        latest_size: None,
        latest_cosigners: Vec::new(),
        by_witness: policy
            .witnesses()
            .iter()
            .map(|w| (w.name().to_owned(), (0, None)))
            .collect(),
    };
    for (&size, (note, _)) in all {
        let file = || layout::checkpoint(size);
        let parsed = govern_core::note::Note::parse(note).map_err(|e| Failure::File {
            file: file(),
            reason: e.to_string(),
        })?;
        let c = policy.cosigners(&parsed);
        if let Some((name, reason)) = c.invalid.first() {
            return Err(Failure::File {
                file: file(),
                reason: format!("witness {name}'s cosignature does not verify: {reason}"),
            });
        }
        for (name, _) in &c.signed {
            if let Some((n, max)) = out.by_witness.get_mut(name) {
                *n += 1;
                *max = Some(size);
            }
        }
        if policy.quorum() > 0 && c.has_quorum() {
            out.latest_size = Some(size);
            out.latest_cosigners = c.signed.iter().map(|(n, _)| n.clone()).collect();
        }
    }
    Ok(out)
}

/// What [`replay`] needs beside an [`Observer`].
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The export.
    pub dir: PathBuf,
    /// The fresh data dir to build (must not exist, or be empty).
    pub data_dir: PathBuf,
    /// What the caller pins in place of the export's own trust.
    pub pins: Pins,
    /// Signed checkpoints of this log seen elsewhere (a witness, an earlier `verify log`),
    /// as files: the replay must agree with each.
    pub checkpoints: Vec<PathBuf>,
}

/// An export replayed into a store.
pub struct Replayed<S: Storage> {
    /// The store, read.
    pub reader: LogReader<S>,
    /// The tree size.
    pub size: u64,
    /// The tree root, hex.
    pub root: String,
    /// The state root of the projections, hex.
    pub state_root: String,
    /// How many batches.
    pub batches: u64,
    /// Who cosigned what, under the trust's witness policy (none: no policy).
    pub witnessed: Option<Witnessed>,
}

impl<S: Storage> std::fmt::Debug for Replayed<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replayed")
            .field("size", &self.size)
            .field("root", &self.root)
            .field("state_root", &self.state_root)
            .field("batches", &self.batches)
            .field("witnessed", &self.witnessed)
            .finish_non_exhaustive()
    }
}

/// Replay the export `options.dir` into a fresh data dir, `options.data_dir` (its store in
/// `db/`, and the trust it was replayed under beside it: `manifest-signers.toml`,
/// `dev-ca/root.der`).
///
/// # Errors
/// The first failure: a [`Failure`], a [`ReplayError`] or a message.
pub fn replay(options: &Options, observer: &mut dyn Observer) -> Result<Outcome, Error> {
    let db = options.data_dir.join("db");
    replay_to(options, observer, move || Ok(RocksStorage::open(&db)?))
}

/// [`replay`] with the log's store opened by `open` (called once the data dir is made, and
/// only then): `govern replay --storage postgres://…` restores into a database, whose
/// opener must refuse one that holds a log already. The data dir gets the trust files as
/// [`replay`] writes them.
///
/// # Errors
/// As [`replay`].
pub fn replay_to<S: Storage>(
    options: &Options,
    observer: &mut dyn Observer,
    open: impl FnOnce() -> Result<S, Error>,
) -> Result<Outcome, Error> {
    let start = Instant::now();
    let trust = Trust::resolve(&options.dir, &options.pins, observer).map_err(|e| e.to_string())?;
    let data_dir = &options.data_dir;
    let replayed = replay_into(
        &options.dir,
        &trust,
        &options.checkpoints,
        || {
            if data_dir.exists()
                && std::fs::read_dir(data_dir)
                    .map(|mut d| d.next().is_some())
                    .unwrap_or(true)
            {
                return Err(format!(
                    "{} is not empty: replay into a fresh data dir",
                    data_dir.display()
                )
                .into());
            }
            std::fs::create_dir_all(data_dir)
                .map_err(|e| format!("{}: {e}", data_dir.display()))?;
            open()
        },
        observer,
    )?;
    let pins = &options.pins;
    for (src, dst) in [
        (
            options.dir.join(layout::TRUST_SIGNERS),
            "manifest-signers.toml",
        ),
        (options.dir.join(layout::TRUST_DEV_ROOT), "dev-ca/root.der"),
    ] {
        let src = match (dst, &pins.signers, &pins.dev_root) {
            ("manifest-signers.toml", Some(p), _) | ("dev-ca/root.der", _, Some(p)) => p.clone(),
            _ => src,
        };
        if src.exists() {
            let to = data_dir.join(dst);
            if let Some(parent) = to.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::copy(&src, &to).map_err(|e| format!("{}: {e}", to.display()))?;
        }
    }
    Ok(Outcome {
        origin: trust.origin,
        size: replayed.size,
        root: replayed.root,
        state_root: replayed.state_root,
        batches: replayed.batches,
        elapsed: start.elapsed(),
        witnessed: replayed.witnessed,
    })
}

/// Replay the export at `dir` under `trust` into the store `storage` opens (called once the
/// export's checkpoints have been checked, before its entries are): check its checkpoints
/// (and `seen`, checkpoints of this log from elsewhere), replay its entries batch by batch,
/// check its hash tiles and manifest files against them, and compute the state root.
///
/// # Errors
/// The first failure: a [`Failure`], a [`ReplayError`] or a message.
pub fn replay_into<S: Storage>(
    dir: &Path,
    trust: &Trust,
    seen: &[PathBuf],
    storage: impl FnOnce() -> Result<S, Error>,
    observer: &mut dyn Observer,
) -> Result<Replayed<S>, Error> {
    let start = Instant::now();
    let latest_note = read(dir, layout::CHECKPOINT)?;
    let latest = open_checkpoint(&latest_note, &trust.origin, &trust.verifier, 0).map_err(|e| {
        Failure::File {
            file: layout::CHECKPOINT.into(),
            reason: e.to_string(),
        }
    })?;
    let size = latest.size.0;
    let all = checkpoints(dir, &trust.origin)?;
    if let Some((note, cp)) = all.get(&size)
        && cp.root != latest.root
    {
        open_checkpoint(note, &trust.origin, &trust.verifier, size)?;
        return Err(ReplayError::Fork {
            size,
            a: cp.root,
            b: latest.root,
        }
        .into());
    }
    if let Some((&beyond, (note, _))) = all.range(size + 1..).next() {
        open_checkpoint(note, &trust.origin, &trust.verifier, beyond)?;
        return Err(Failure::File {
            file: layout::checkpoint(beyond),
            reason: format!(
                "the log signed size {beyond} but the export's checkpoint is of size {size}: truncated or rolled back"
            ),
        }
        .into());
    }
    if !all.contains_key(&size) {
        return Err(Failure::File {
            file: layout::checkpoint(size),
            reason: "missing: the latest checkpoint is not among the signed checkpoints".into(),
        }
        .into());
    }
    let witnessed = trust
        .witnesses
        .as_ref()
        .map(|policy| witnessed(policy, &all))
        .transpose()?;
    let seen = seen
        .iter()
        .map(|p| -> Result<(PathBuf, Checkpoint), Error> {
            let note = std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))?;
            let cp = open_checkpoint(&note, &trust.origin, &trust.verifier, 0)
                .map_err(|e| format!("{}: {e}", p.display()))?;
            Ok((p.clone(), cp))
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    for (path, cp) in &seen {
        if cp.size.0 > size {
            return Err(Failure::File {
                file: path.display().to_string(),
                reason: format!(
                    "the log signed size {} but the export ends at {size}: truncated or rolled back",
                    cp.size
                ),
            }
            .into());
        }
        if let Some((note, mine)) = all.get(&cp.size.0)
            && mine.root != cp.root
        {
            open_checkpoint(note, &trust.origin, &trust.verifier, cp.size.0)?;
            return Err(ReplayError::Fork {
                size: cp.size.0,
                a: mine.root,
                b: cp.root,
            }
            .into());
        }
    }

    let storage = storage()?;
    let genesis = all
        .get(&0)
        .map(|(n, _)| n.clone())
        .ok_or_else(|| Failure::File {
            file: layout::checkpoint(0),
            reason: "missing: the log's first checkpoint".into(),
        })?;
    let mut replay = Replay::new(
        storage,
        trust.origin.clone(),
        trust.verifier.clone(),
        Arc::clone(&trust.policy) as Arc<dyn AppendPolicy>,
        TIME_SKEW_MS,
        &genesis,
    )?;

    tracing::debug!(
        elapsed_ms = start.elapsed().as_millis(),
        "checkpoints verified; replaying entries"
    );
    let mut bundles = Bundles::start(dir, size);
    observer.start(size);
    let mut pending: std::collections::VecDeque<Result<SignedEvent, (u64, String)>> =
        std::collections::VecDeque::new();
    let mut next = 0u64; // the index of pending's front
    let mut batches = 0u64;
    let mut manifests: BTreeMap<u64, serde_json::Value> = BTreeMap::new();
    for (&cp_size, (note, _)) in all.range(1..) {
        while next + (pending.len() as u64) < cp_size {
            let group = bundles.next().ok_or_else(|| Failure::Entry {
                index: next + pending.len() as u64,
                reason: "the export ends before it".into(),
            })??;
            pending.extend(group);
        }
        let take = (cp_size - next) as usize;
        let mut events = Vec::with_capacity(take);
        for parsed in pending.drain(..take) {
            match parsed {
                Ok(e) => events.push(e),
                Err((index, reason)) => {
                    // The entries before it are checked first: the first bad entry is the
                    // one reported.
                    if let Err(e @ ReplayError::Entry { .. }) = replay.batch(&events, note) {
                        return Err(e.into());
                    }
                    return Err(Failure::Entry { index, reason }.into());
                }
            }
        }
        for e in &events {
            let ev = e.event();
            if ev.kind.as_str() == govern_core::manifest::MANIFEST_PUBLISHED_KIND
                && let Some(serial) = ev.body["manifest"]["serial"].as_u64()
            {
                manifests.insert(serial, serde_json::Value::Object(ev.body.clone()));
            }
        }
        replay.batch(&events, note)?;
        next = cp_size;
        batches += 1;
        observer.at(next);
    }
    drop(bundles);
    observer.done();
    let storage = replay.finish()?;
    let reader = LogReader::open(storage)?;
    let published = reader.latest();
    if published.size.0 != size || published.root != latest.root {
        return Err(format!(
            "the replayed log has size {} root {}, not the export's size {size} root {}",
            published.size, published.root, latest.root
        )
        .into());
    }
    tracing::debug!(
        elapsed_ms = start.elapsed().as_millis(),
        "entries replayed; checking tiles and manifests"
    );
    check_files(dir, &reader, latest.size, &manifests)?;
    tracing::debug!(elapsed_ms = start.elapsed().as_millis(), "files checked");
    for (path, cp) in &seen {
        let mine = reader.root_at(cp.size)?;
        if mine != cp.root {
            return Err(ReplayError::Fork {
                size: cp.size.0,
                a: mine,
                b: cp.root,
            }
            .into());
        }
        observer.note(&format!(
            "consistent with {} (size {})",
            path.display(),
            cp.size
        ));
    }
    let (state_size, state) = trust.policy.state();
    if state_size.0 != size {
        return Err(format!("the projections are at size {state_size}, not {size}").into());
    }
    let state_root = state.root()?.to_hex();
    tracing::debug!(
        elapsed_ms = start.elapsed().as_millis(),
        "state root computed"
    );
    Ok(Replayed {
        reader,
        size,
        root: latest.root.to_hex(),
        state_root,
        batches,
        witnessed,
    })
}
