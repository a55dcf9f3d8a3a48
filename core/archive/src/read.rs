//! Reading an export ([`crate::layout`]) and checking it: its files, its checkpoints by size
//! (each verified where it is used), its entry bundles (read, decoded and parsed ahead of the
//! replay by one worker per core), and, once replayed, its hash tiles and manifest files
//! against what the entries give.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use govern_core::checkpoint::Checkpoint;
use govern_core::event::{KeyCache, SignedEvent};
use govern_core::ids::TreeSize;
use govern_core::tiles::{TILE_WIDTH, Tile, decode_bundle, tiles_at};
use govern_store::{LogReader, ReplayError, Storage};

use crate::Error;

/// Why a replay stopped: the index (or size) first, for the message.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// The replay refused an entry or a checkpoint.
    #[error(transparent)]
    Replay(#[from] ReplayError),
    /// An entry (by index) that cannot be read or parsed.
    #[error("entry {index}: {reason}")]
    Entry {
        /// Its index in the log.
        index: u64,
        /// Why.
        reason: String,
    },
    /// A file of the export that is missing or wrong.
    #[error("{file}: {reason}")]
    File {
        /// The file, relative to the export.
        file: String,
        /// Why.
        reason: String,
    },
}

/// The export's file `rel`; a missing one is named as such.
///
/// # Errors
/// [`Failure::File`].
pub fn read(dir: &Path, rel: &str) -> Result<Vec<u8>, Failure> {
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
///
/// # Errors
/// [`ReplayError::Checkpoint`] when it does not parse.
pub fn stated(note: &[u8], size: u64) -> Result<Checkpoint, ReplayError> {
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
///
/// # Errors
/// A file not named by its size, of another origin or size, unreadable.
pub fn checkpoints(
    dir: &Path,
    origin: &str,
) -> Result<BTreeMap<u64, (Vec<u8>, Checkpoint)>, Failure> {
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

/// The first of the export's `manifests/<serial>.json` that pins a dev CA root, if any: a
/// dev log, which a replay cannot check without that root. (A hint only: the replay checks
/// every manifest file against the log.)
#[must_use]
pub fn pins_dev_root(dir: &Path) -> Option<String> {
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

/// The entries of one bundle, parsed and their producer signatures verified (or why not).
pub(crate) type Parsed = Vec<Result<SignedEvent, (u64, String)>>;

/// How many bundles the parsing workers may run ahead of the replay.
const AHEAD_BUNDLES: u64 = 16;

/// Every entry bundle of the export read, decoded and its entries parsed (so their producer
/// signatures verified) by one worker per core, ahead of the sequential checks, and handed
/// over in log order.
pub(crate) struct Bundles {
    rx: std::sync::mpsc::Receiver<(u64, Result<Parsed, Failure>)>,
    ready: BTreeMap<u64, Result<Parsed, Failure>>,
    next: u64,
    consumed: Arc<(std::sync::Mutex<u64>, std::sync::Condvar)>,
    workers: Vec<std::thread::JoinHandle<()>>,
}

impl Bundles {
    /// Start the workers on the bundles of the export at `dir` holding a tree of `size`.
    pub(crate) fn start(dir: &Path, size: u64) -> Self {
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
    pub(crate) fn next(&mut self) -> Option<Result<Parsed, Failure>> {
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
///
/// # Errors
/// [`Failure::Entry`] naming the bundle's first entry when it is missing or does not decode.
fn parse_bundle(dir: &Path, size: u64, b: u64, cache: &KeyCache) -> Result<Parsed, Failure> {
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

/// Every hash tile and manifest file of the export against what the replayed entries give.
/// `logged` holds the `manifest.published` bodies of the log by serial.
///
/// # Errors
/// [`Failure::Entry`] naming the first entry a differing hash covers; [`Failure::File`] for
/// a manifest file missing, misnamed or differing.
pub fn check_files<S: Storage>(
    dir: &Path,
    reader: &LogReader<S>,
    size: TreeSize,
    logged: &BTreeMap<u64, serde_json::Value>,
) -> Result<(), Error> {
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
