//! `govern replay DIR --data-dir FRESH`: re-verify an export (`govern export`) entry by
//! entry into a fresh data dir, rebuild every projection, and print the tree size and the
//! state root, which equal the source's (`govern status`).
//!
//! What it checks, in order, stopping at the first failure with its index:
//! - `v1/log` names the log (origin and verifier key; `--key` pins your own);
//! - every checkpoint in `checkpoints/` and the latest `checkpoint` verify under that key,
//!   sizes only grow, and no two checkpoints of one size name different roots (a fork);
//! - every entry parses as a canonical event whose producer signature verifies (on every
//!   core), then passes the node's append policy as of its place in the log (govern-store's
//!   [`Replay`]): identities at each event's recorded time, manifests and their quorum, the
//!   routing graph, uniqueness keys, user signatures and their anchor distance;
//! - each checkpoint names exactly the tree its entries make;
//! - every hash tile and manifest file of the export equals what the entries give;
//! - every checkpoint given with `--checkpoint` (from a witness, an earlier `verify log`)
//!   is consistent with the replayed log.
//!
//! The trust it needs and where it comes from: the log's verifier key (`--key`, else the
//! export's `v1/log`), the manifest signers (`--signers`, else the export's
//! `trust/manifest-signers.toml`), and for a dev log the dev CA root (`--dev-root`, else
//! `trust/dev-root.der`; the manifest pins its SHA-256, so it cannot be swapped).

use std::collections::BTreeMap;
use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use govern_core::attestation::TrustAnchor;
use govern_core::checkpoint::Checkpoint;
use govern_core::event::{KeyCache, PublicKey, SignedEvent};
use govern_core::ids::TreeSize;
use govern_core::note::NoteVerifier;
use govern_core::tiles::{TILE_WIDTH, Tile, decode_bundle, tiles_at};
use govern_core::witness::WitnessPolicy;
use govern_store::replay::open_checkpoint;
use govern_store::{
    AppendPolicy, IdentityPolicy, LogReader, Replay, ReplayError, RocksStorage, TIME_SKEW_MS,
};

use crate::demo::Result;

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The export (`govern export DIR`).
    pub dir: PathBuf,
    /// The fresh data dir to build (must not exist, or be empty).
    #[arg(long)]
    pub data_dir: PathBuf,
    /// The log's verifier key [default: the export's `v1/log`].
    #[arg(long)]
    pub key: Option<String>,
    /// The manifest signers to pin (`manifest-signers.toml`) [default: the export's
    /// `trust/manifest-signers.toml`].
    #[arg(long)]
    pub signers: Option<PathBuf>,
    /// The dev CA root (DER) a dev log's attestations chain to [default: the export's
    /// `trust/dev-root.der`].
    #[arg(long)]
    pub dev_root: Option<PathBuf>,
    /// A signed checkpoint of this log seen elsewhere (a witness, an earlier `verify log`):
    /// the replay must agree with it. Repeatable.
    #[arg(long = "checkpoint")]
    pub checkpoints: Vec<PathBuf>,
    /// Print JSON at the end.
    #[arg(long)]
    pub json: bool,
    /// The witness policy whose cosignatures the checkpoints are checked under (TOML:
    /// `quorum`, `[[witness]]` `vkey`s) [default: the export's `trust/witnesses.toml`, else
    /// the policy its `v1/log` names, else none].
    #[arg(long)]
    pub witnesses: Option<PathBuf>,
}

/// What a replay reached.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub origin: String,
    pub size: u64,
    pub root: String,
    pub state_root: String,
    pub batches: u64,
    pub elapsed: Duration,
    /// Who cosigned what, under the witness policy (none: no policy).
    pub witnessed: Option<Witnessed>,
}

/// The export's checkpoints under a witness policy.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Witnessed {
    /// k and n.
    pub quorum: usize,
    pub witnesses: usize,
    /// The largest checkpoint with a quorum, and who cosigned it.
    pub latest_size: Option<u64>,
    pub latest_cosigners: Vec<String>,
    /// Per witness of the policy: how many checkpoints it cosigned and the largest size.
    pub by_witness: BTreeMap<String, (u64, Option<u64>)>,
}

/// Check every checkpoint's cosignatures under `policy`: a cosignature line of one of its
/// witnesses that does not verify stops the replay, naming the checkpoint.
fn witnessed(
    policy: &WitnessPolicy,
    all: &BTreeMap<u64, (Vec<u8>, Checkpoint)>,
) -> std::result::Result<Witnessed, Failure> {
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
        let file = || format!("checkpoints/{size}");
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

/// The witness policy of a replay: `--witnesses`, else the export's.
fn witness_policy(args: &ReplayArgs, info: &serde_json::Value) -> Result<Option<WitnessPolicy>> {
    let path = args
        .witnesses
        .clone()
        .unwrap_or_else(|| args.dir.join("trust/witnesses.toml"));
    if args.witnesses.is_some() || path.exists() {
        if args.witnesses.is_none() {
            eprintln!(
                "trusting the export's witness policy (pass --witnesses to pin your own): {}",
                path.display()
            );
        }
        let file = crate::witness::read_policy(&path).map_err(|e| e.to_string())?;
        return Ok(Some(WitnessPolicy::from_file(&file)?));
    }
    let Some(w) = info.get("witnesses").filter(|w| !w.is_null()) else {
        return Ok(None);
    };
    let announced: govern_client::wire::WitnessesInfo =
        serde_json::from_value(w.clone()).map_err(|e| format!("v1/log witnesses: {e}"))?;
    eprintln!(
        "trusting the witness policy the export's v1/log names (pass --witnesses to pin your own)"
    );
    Ok(Some(
        govern_client::witness::announced_policy(announced)
            .map_err(|e| format!("v1/log witnesses: {e}"))?,
    ))
}

/// Why a replay stopped: the index (or size) first, for the message.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error(transparent)]
    Replay(#[from] ReplayError),
    #[error("entry {index}: {reason}")]
    Entry { index: u64, reason: String },
    #[error("{file}: {reason}")]
    File { file: String, reason: String },
}

fn read(dir: &Path, rel: &str) -> std::result::Result<Vec<u8>, Failure> {
    std::fs::read(dir.join(rel)).map_err(|e| Failure::File {
        file: rel.to_string(),
        reason: if e.kind() == std::io::ErrorKind::NotFound {
            "missing: the export is incomplete (truncated?)".into()
        } else {
            e.to_string()
        },
    })
}

/// The checkpoint a signed note states, unverified (each is verified where it is used: as a
/// batch's end by the replay, or before it is called a fork).
fn stated(note: &[u8], size: u64) -> std::result::Result<Checkpoint, ReplayError> {
    let text = std::str::from_utf8(note).map_err(|_| ReplayError::Checkpoint {
        size,
        reason: "not UTF-8".into(),
    })?;
    let body = text.split("\n\n").next().unwrap_or_default();
    Checkpoint::parse_body(&format!("{body}\n")).map_err(|e| ReplayError::Checkpoint {
        size,
        reason: e.to_string(),
    })
}

/// Every `checkpoints/<size>` of the export, by size (their signatures are checked as the
/// replay reaches them).
fn checkpoints(
    dir: &Path,
    origin: &str,
) -> std::result::Result<BTreeMap<u64, (Vec<u8>, Checkpoint)>, Failure> {
    let mut out = BTreeMap::new();
    let listing = std::fs::read_dir(dir.join("checkpoints")).map_err(|e| Failure::File {
        file: "checkpoints/".into(),
        reason: e.to_string(),
    })?;
    for entry in listing {
        let entry = entry.map_err(|e| Failure::File {
            file: "checkpoints/".into(),
            reason: e.to_string(),
        })?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let rel = format!("checkpoints/{name}");
        let size: u64 = name.parse().map_err(|_| Failure::File {
            file: rel.clone(),
            reason: "not named by a size".into(),
        })?;
        let note = read(dir, &rel)?;
        let cp = stated(&note, size)?;
        if cp.origin != origin {
            return Err(ReplayError::Checkpoint {
                size,
                reason: format!("of origin {}, not {origin}", cp.origin),
            }
            .into());
        }
        if cp.size.0 != size {
            return Err(Failure::File {
                file: rel,
                reason: format!("holds the checkpoint of size {}", cp.size),
            });
        }
        out.insert(size, (note, cp));
    }
    Ok(out)
}

/// The trust a replay needs, from flags or the export.
struct Trust {
    origin: String,
    verifier: NoteVerifier,
    policy: Arc<IdentityPolicy>,
    witnesses: Option<WitnessPolicy>,
}

fn trust(args: &ReplayArgs) -> Result<Trust> {
    let info: serde_json::Value =
        serde_json::from_slice(&read(&args.dir, "v1/log")?).map_err(|e| format!("v1/log: {e}"))?;
    let exported = info["verifier_key"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let vkey = match &args.key {
        Some(k) => k.clone(),
        None => {
            eprintln!(
                "trusting the export's verifier key (pass --key to pin your own): {exported}"
            );
            exported.clone()
        }
    };
    if !exported.is_empty() && exported != vkey {
        return Err(format!("v1/log: the export names verifier key {exported}, not {vkey}").into());
    }
    let verifier = NoteVerifier::parse(&vkey).map_err(|e| format!("verifier key: {e}"))?;
    let origin = verifier.name().to_string();
    if info["origin"].as_str() != Some(origin.as_str()) {
        return Err(format!(
            "v1/log: origin {} is not the key's name {origin}",
            info["origin"]
        )
        .into());
    }
    let signers_path = args
        .signers
        .clone()
        .unwrap_or_else(|| args.dir.join("trust/manifest-signers.toml"));
    let text = match std::fs::read_to_string(&signers_path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && args.signers.is_none() => {
            return Err(format!(
                "{}: no such file: an export made with --url carries no trust/; pass --signers FILE (the operator's manifest-signers.toml) and, for a dev log, --dev-root FILE",
                signers_path.display()
            )
            .into());
        }
        Err(e) => return Err(format!("{}: {e}", signers_path.display()).into()),
    };
    if args.signers.is_none() {
        eprintln!(
            "trusting the export's manifest signers (pass --signers to pin your own): {}",
            signers_path.display()
        );
    }
    let signers = govern_api::datadir::parse_manifest_signers(&text)
        .map_err(|e| format!("{}: {e}", signers_path.display()))?;
    let dev_root_path = args
        .dev_root
        .clone()
        .unwrap_or_else(|| args.dir.join("trust/dev-root.der"));
    let dev_root = match std::fs::read(&dev_root_path) {
        Ok(der) => Some({
            if args.dev_root.is_none() {
                eprintln!(
                    "using the export's dev CA root (a manifest that pins the dev root names its SHA-256): {}",
                    dev_root_path.display()
                );
            }
            TrustAnchor::from_der(&der).map_err(|e| format!("{}: {e}", dev_root_path.display()))?
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && args.dev_root.is_none() => {
            if crate::manifest::ALLOW_DEV_ROOT
                && let Some(file) = pins_dev_root(&args.dir)
            {
                return Err(format!(
                    "{file} pins a dev CA root and {} is missing: pass --dev-root FILE (the operator's dev-ca/root.der)",
                    dev_root_path.display()
                )
                .into());
            }
            None
        }
        Err(e) => return Err(format!("{}: {e}", dev_root_path.display()).into()),
    };
    let log_key = PublicKey(*verifier.verifying_key().as_bytes());
    let policy = Arc::new(IdentityPolicy::new(
        signers,
        log_key,
        crate::manifest::ALLOW_DEV_ROOT,
        dev_root,
    ));
    let witnesses = witness_policy(args, &info)?;
    Ok(Trust {
        origin,
        verifier,
        policy,
        witnesses,
    })
}

/// The first of the export's `manifests/<serial>.json` that pins a dev CA root, if any: a
/// dev log, which a replay cannot check without that root. (A hint only: the replay checks
/// every manifest file against the log.)
fn pins_dev_root(dir: &Path) -> Option<String> {
    let mut serials: Vec<u64> = std::fs::read_dir(dir.join("manifests"))
        .ok()?
        .filter_map(|e| {
            e.ok()?
                .file_name()
                .to_str()?
                .strip_suffix(".json")?
                .parse()
                .ok()
        })
        .collect();
    serials.sort_unstable();
    serials.into_iter().find_map(|serial| {
        let file = format!("manifests/{serial}.json");
        let body: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join(&file)).ok()?).ok()?;
        let root: govern_core::manifest::TrustedRoot =
            serde_json::from_value(body["manifest"]["trusted_root"].clone()).ok()?;
        root.is_dev().then_some(file)
    })
}

/// Progress on a terminal (a bar with rate and ETA), plain lines otherwise.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    total: u64,
    next_line: u64,
    start: Instant,
}

impl Progress {
    fn new(total: u64, quiet: bool) -> Self {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = indicatif::ProgressBar::new(total);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "replay {bar:40} {pos}/{len} entries  {per_sec}  ETA {eta}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar
        });
        Self {
            bar,
            total,
            next_line: if quiet { u64::MAX } else { total / 10 },
            start: Instant::now(),
        }
    }

    fn at(&mut self, done: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(done);
        } else if done >= self.next_line && done < self.total {
            let secs = self.start.elapsed().as_secs_f64().max(1e-9);
            eprintln!(
                "replay: {done}/{} entries ({:.0}/s)",
                self.total,
                done as f64 / secs
            );
            self.next_line = done + (self.total / 10).max(1);
        }
    }

    fn done(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// The entries of one bundle, parsed and their producer signatures verified (or why not).
type Parsed = Vec<std::result::Result<SignedEvent, (u64, String)>>;

/// How many bundles the parsing workers may run ahead of the replay.
const AHEAD_BUNDLES: u64 = 16;

/// Every entry bundle of the export read, decoded and its entries parsed (so their producer
/// signatures verified) by one worker per core, ahead of the sequential checks, and handed
/// over in log order.
struct Bundles {
    rx: std::sync::mpsc::Receiver<(u64, std::result::Result<Parsed, Failure>)>,
    ready: BTreeMap<u64, std::result::Result<Parsed, Failure>>,
    next: u64,
    consumed: Arc<(std::sync::Mutex<u64>, std::sync::Condvar)>,
    workers: Vec<std::thread::JoinHandle<()>>,
}

impl Bundles {
    fn start(dir: &Path, size: u64) -> Self {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let bundles = size.div_ceil(TILE_WIDTH);
        let (tx, rx) = std::sync::mpsc::channel();
        let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let consumed = Arc::new((std::sync::Mutex::new(0u64), std::sync::Condvar::new()));
        let cache = Arc::new(KeyCache::new());
        let workers = (0..threads)
            .map(|_| {
                let (tx, next, consumed, cache, dir) = (
                    tx.clone(),
                    Arc::clone(&next),
                    Arc::clone(&consumed),
                    Arc::clone(&cache),
                    dir.to_path_buf(),
                );
                std::thread::spawn(move || {
                    loop {
                        let b = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if b >= bundles {
                            return;
                        }
                        {
                            let (lock, cv) = &*consumed;
                            let mut done = lock
                                .lock()
                                .unwrap_or_else(std::sync::PoisonError::into_inner);
                            while b >= *done + AHEAD_BUNDLES {
                                done = cv
                                    .wait(done)
                                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                            }
                        }
                        if tx.send((b, parse_bundle(&dir, size, b, &cache))).is_err() {
                            return;
                        }
                    }
                })
            })
            .collect();
        Self {
            rx,
            ready: BTreeMap::new(),
            next: 0,
            consumed,
            workers,
        }
    }

    /// The next bundle in log order (`None` after the last).
    fn next(&mut self) -> Option<std::result::Result<Parsed, Failure>> {
        loop {
            if let Some(b) = self.ready.remove(&self.next) {
                self.next += 1;
                let (lock, cv) = &*self.consumed;
                *lock
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = self.next;
                cv.notify_all();
                return Some(b);
            }
            let (n, b) = self.rx.recv().ok()?;
            self.ready.insert(n, b);
        }
    }
}

impl Drop for Bundles {
    fn drop(&mut self) {
        // Let every waiting worker through, and stop them at their next send.
        {
            let (lock, cv) = &*self.consumed;
            *lock
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = u64::MAX / 2;
            cv.notify_all();
        }
        let (_, rx) = std::sync::mpsc::channel();
        drop(std::mem::replace(&mut self.rx, rx));
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

/// Bundle `b` of a tree of `size`: read, decoded, every entry parsed.
fn parse_bundle(
    dir: &Path,
    size: u64,
    b: u64,
    cache: &KeyCache,
) -> std::result::Result<Parsed, Failure> {
    let width = (size - b * TILE_WIDTH).min(TILE_WIDTH);
    let tile = Tile::Entries {
        index: b,
        partial: (width < TILE_WIDTH).then(|| u8::try_from(width).unwrap_or(u8::MAX)),
    };
    let first = b * TILE_WIDTH;
    let bytes = match read(dir, &tile.to_string()) {
        Ok(bytes) => bytes,
        Err(Failure::File { reason, .. }) => {
            return Err(Failure::Entry {
                index: first,
                reason: format!("{tile}: {reason}"),
            });
        }
        Err(e) => return Err(e),
    };
    let entries = match decode_bundle(&bytes) {
        Ok(e) if e.len() as u64 == width => e,
        Ok(e) => {
            return Err(Failure::Entry {
                index: first + (e.len() as u64).min(width),
                reason: format!("{tile} holds {} entries, not {width}", e.len()),
            });
        }
        Err(e) => {
            return Err(Failure::Entry {
                index: first,
                reason: format!("{tile} does not decode: {e}"),
            });
        }
    };
    Ok((first..)
        .zip(entries)
        .map(|(i, raw)| SignedEvent::from_bytes_with(&raw, cache).map_err(|e| (i, e.to_string())))
        .collect())
}

/// Replay `args.dir` into `args.data_dir`.
pub fn replay(
    args: &ReplayArgs,
    quiet: bool,
) -> std::result::Result<Outcome, Box<dyn std::error::Error + Send + Sync>> {
    let start = Instant::now();
    let trust = trust(args).map_err(|e| e.to_string())?;
    let latest_note = read(&args.dir, "checkpoint")?;
    let latest = open_checkpoint(&latest_note, &trust.origin, &trust.verifier, 0).map_err(|e| {
        Failure::File {
            file: "checkpoint".into(),
            reason: e.to_string(),
        }
    })?;
    let size = latest.size.0;
    let all = checkpoints(&args.dir, &trust.origin)?;
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
            file: format!("checkpoints/{beyond}"),
            reason: format!(
                "the log signed size {beyond} but the export's checkpoint is of size {size}: truncated or rolled back"
            ),
        }
        .into());
    }
    if !all.contains_key(&size) {
        return Err(Failure::File {
            file: format!("checkpoints/{size}"),
            reason: "missing: the latest checkpoint is not among the signed checkpoints".into(),
        }
        .into());
    }
    let witnessed = trust
        .witnesses
        .as_ref()
        .map(|policy| witnessed(policy, &all))
        .transpose()?;
    let seen = args
        .checkpoints
        .iter()
        .map(|p| -> Result<(PathBuf, Checkpoint)> {
            let note = std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))?;
            let cp = open_checkpoint(&note, &trust.origin, &trust.verifier, 0)
                .map_err(|e| format!("{}: {e}", p.display()))?;
            Ok((p.clone(), cp))
        })
        .collect::<Result<Vec<_>>>()
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

    if args.data_dir.exists()
        && std::fs::read_dir(&args.data_dir)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        return Err(format!(
            "{} is not empty: replay into a fresh data dir",
            args.data_dir.display()
        )
        .into());
    }
    std::fs::create_dir_all(&args.data_dir)
        .map_err(|e| format!("{}: {e}", args.data_dir.display()))?;
    let storage = RocksStorage::open(&args.data_dir.join("db"))?;
    let genesis = all
        .get(&0)
        .map(|(n, _)| n.clone())
        .ok_or_else(|| Failure::File {
            file: "checkpoints/0".into(),
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
    let mut bundles = Bundles::start(&args.dir, size);
    let mut progress = Progress::new(size, quiet);
    let mut pending: std::collections::VecDeque<std::result::Result<SignedEvent, (u64, String)>> =
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
        progress.at(next);
    }
    drop(bundles);
    progress.done();
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
    check_files(&args.dir, &reader, latest.size, &manifests)?;
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
        eprintln!("consistent with {} (size {})", path.display(), cp.size);
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
    for (src, dst) in [
        (
            args.dir.join("trust/manifest-signers.toml"),
            "manifest-signers.toml",
        ),
        (args.dir.join("trust/dev-root.der"), "dev-ca/root.der"),
    ] {
        let src = match (dst, &args.signers, &args.dev_root) {
            ("manifest-signers.toml", Some(p), _) | ("dev-ca/root.der", _, Some(p)) => p.clone(),
            _ => src,
        };
        if src.exists() {
            let to = args.data_dir.join(dst);
            if let Some(parent) = to.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::copy(&src, &to).map_err(|e| format!("{}: {e}", to.display()))?;
        }
    }
    Ok(Outcome {
        origin: trust.origin,
        size,
        root: latest.root.to_hex(),
        state_root,
        batches,
        elapsed: start.elapsed(),
        witnessed,
    })
}

/// Every hash tile and manifest file of the export against what the replayed entries give.
fn check_files(
    dir: &Path,
    reader: &LogReader<RocksStorage>,
    size: TreeSize,
    logged: &BTreeMap<u64, serde_json::Value>,
) -> std::result::Result<(), Box<dyn std::error::Error + Send + Sync>> {
    for tile in tiles_at(size) {
        let Tile::Hashes { level, index, .. } = tile else {
            continue;
        };
        let exported = read(dir, &tile.to_string())?;
        let mine = reader.tile(tile)?;
        if exported != mine {
            let k = exported
                .chunks(32)
                .zip(mine.chunks(32))
                .position(|(a, b)| a != b)
                .unwrap_or(mine.len().min(exported.len()) / 32) as u64;
            // Hash k of a level-L tile covers 256^L entries from this one.
            let span = 1u64 << (8 * u32::from(level));
            let first = (index * TILE_WIDTH + k).saturating_mul(span);
            return Err(Failure::Entry {
                index: first,
                reason: format!("{tile}: hash {k} (entries from {first}) differs from the entries"),
            }
            .into());
        }
    }
    for serial in logged.keys() {
        let rel = format!("manifests/{serial}.json");
        if !dir.join(&rel).exists() {
            return Err(Failure::File {
                file: rel,
                reason: "missing: the log published this manifest".into(),
            }
            .into());
        }
    }
    let manifests = dir.join("manifests");
    if manifests.exists() {
        for entry in std::fs::read_dir(&manifests)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let rel = format!("manifests/{name}");
            let body: serde_json::Value =
                serde_json::from_slice(&read(dir, &rel)?).map_err(|e| Failure::File {
                    file: rel.clone(),
                    reason: e.to_string(),
                })?;
            let serial = body["manifest"]["serial"].as_u64();
            if name != format!("{}.json", serial.unwrap_or(u64::MAX)) {
                return Err(Failure::File {
                    file: rel,
                    reason: "its serial is not its name".into(),
                }
                .into());
            }
            let found = serial.and_then(|s| logged.get(&s));
            if found != Some(&body) {
                return Err(Failure::File {
                    file: rel,
                    reason: "differs from the manifest.published in the log".into(),
                }
                .into());
            }
        }
    }
    Ok(())
}

/// `govern replay`.
pub async fn run(args: ReplayArgs) -> Result<()> {
    let json = args.json;
    let outcome = tokio::task::spawn_blocking(move || replay(&args, false))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let rate = outcome.size as f64 / outcome.elapsed.as_secs_f64().max(1e-9);
    if json {
        println!(
            "{}",
            serde_json::json!({
                "origin": outcome.origin, "size": outcome.size, "root": outcome.root,
                "state_root": outcome.state_root, "checkpoints": outcome.batches,
                "witnessed": outcome.witnessed,
            })
        );
    } else {
        eprintln!(
            "replayed {} entries in {} batches in {:.1} s ({rate:.0} entries/s); every check passed",
            outcome.size,
            outcome.batches,
            outcome.elapsed.as_secs_f64()
        );
        println!(
            "origin {}\nsize {}\nroot {}\nstate {}",
            outcome.origin, outcome.size, outcome.root, outcome.state_root
        );
        if let Some(w) = &outcome.witnessed {
            match w.latest_size {
                Some(s) => println!(
                    "witnessed up to size {s} by {} ({} of {}, quorum {})",
                    w.latest_cosigners.join(", "),
                    w.latest_cosigners.len(),
                    w.witnesses,
                    w.quorum
                ),
                None => println!(
                    "witnessed: no checkpoint has {} of the {} witnesses' cosignatures",
                    w.quorum, w.witnesses
                ),
            }
            for (name, (n, max)) in &w.by_witness {
                let max = max.map_or_else(|| "-".into(), |m| m.to_string());
                println!("  {name}: cosigned {n} checkpoints, the largest of size {max}");
            }
        }
    }
    Ok(())
}
