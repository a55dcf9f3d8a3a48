//! A verified follower of a log: trust nothing the node says that can be recomputed.
//!
//! [`Follower::follow`] fetches the log's latest checkpoint (`/checkpoint`) and checks its
//! signature under the log's key and, under a witness policy, its cosignatures; refuses a
//! checkpoint smaller than the position it remembers (a rollback); reads every new entry
//! bundle and the hash tiles, checks each entry is a canonical, validly signed event whose
//! leaf hash is the one in the level-0 tile, recomputes every tree node and compares it with
//! the tiles above, and recomputes the root and compares it with the checkpoint's; checks the
//! remembered root is the new tree's at the remembered size (a fork otherwise), and checks
//! the node's consistency proof when it serves one. It hands every new entry, in order, to
//! the caller's fold; an entry the fold sees is under a checkpoint whose checks have passed
//! up to that entry, and [`Follower::follow`] returns an error, naming the index or tile, at
//! the first that fails, before the position moves.
//!
//! A follower starts from the empty log ([`Follower::new`]), from a remembered position it
//! holds the log to while reading it all again ([`Follower::anchored`]: what
//! `govern verify log` does, its state file keeping no more than size, root and note), or
//! from a position it resumes after without reading again what came before
//! ([`Follower::resume`]): the tree's frontier at that size, read from the hash tiles, must
//! hash to the remembered root.

use std::collections::BTreeMap;

use govern_core::checkpoint::Checkpoint;
use govern_core::event::SignedEvent;
use govern_core::ids::{Hash, LeafIndex, RootHash, TreeSize};
use govern_core::merkle::{self, Frontier, NodeSource};
use govern_core::note::NoteVerifier;
use govern_core::tiles::{TILE_HEIGHT, TILE_WIDTH, Tile, decode_bundle};
use govern_core::witness::{Cosigners, QuorumError, WitnessPolicy};

use crate::http::{Client, ClientError};

/// Where a follower is: the last checkpoint it verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    /// Its tree size.
    pub size: u64,
    /// Its root.
    pub root: RootHash,
    /// The signed note, as served.
    pub checkpoint: String,
}

/// Why a follower stopped, naming where.
#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    /// The node could not be read.
    #[error(transparent)]
    Client(Box<ClientError>),
    /// An entry is not what the log's tiles and checkpoint say.
    #[error("entry {index}: {reason}")]
    Entry {
        /// Its index.
        index: u64,
        /// Why.
        reason: String,
    },
    /// A tile is not what the entries hash to, or does not read.
    #[error("tile {tile}: {reason}")]
    Tile {
        /// Its path.
        tile: String,
        /// Why.
        reason: String,
    },
    /// The checkpoint does not open under the log's key, or its root is not the entries'.
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    /// The checkpoint falls short of the witness policy.
    #[error("witness policy ({source_name}): {error}")]
    Witness {
        /// Where the policy came from.
        source_name: String,
        /// How it falls short.
        error: QuorumError,
    },
    /// The log now shows a smaller tree than the remembered position: a rollback.
    #[error(
        "consistency with the checkpoint seen before (size {old_size}): the log now shows size {size}: a rollback"
    )]
    Rollback {
        /// The remembered size.
        old_size: u64,
        /// The checkpoint's.
        size: u64,
    },
    /// The log's first `old_size` entries no longer hash to the remembered root: a fork.
    #[error(
        "consistency with the checkpoint seen before (size {old_size}): the first {old_size} entries now hash to {found}, not {remembered}"
    )]
    Fork {
        /// The remembered size.
        old_size: u64,
        /// The root they hash to now.
        found: RootHash,
        /// The remembered root.
        remembered: RootHash,
    },
    /// The node's consistency proof from the remembered position does not verify.
    #[error("consistency with the checkpoint seen before (size {old_size}): {reason}")]
    Consistency {
        /// The remembered size.
        old_size: u64,
        /// Why.
        reason: String,
    },
    /// The caller's fold refused an entry.
    #[error("entry {index}: {source}")]
    Fold {
        /// The entry's index.
        index: u64,
        /// The fold's error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl From<ClientError> for FollowError {
    fn from(e: ClientError) -> Self {
        Self::Client(Box::new(e))
    }
}

/// The node's consistency proof from the remembered position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProofCheck {
    /// Nothing to prove: no position, an empty one, or no growth.
    NotNeeded,
    /// Served and verified.
    Verified,
    /// Not served (a static copy of an export serves none): consistency rests on the
    /// remembered root recomputed from the entries.
    NotServed,
}

/// A checkpoint opened under the log's key and checked under the witness policy.
#[derive(Debug)]
pub struct Latest {
    /// The note, as served.
    pub note: Vec<u8>,
    /// What it says.
    pub checkpoint: Checkpoint,
    /// The note parsed, cosignatures and all.
    pub parsed: govern_core::note::Note,
    /// Who cosigned it, under a witness policy.
    pub cosigners: Option<Cosigners>,
}

/// What one [`Follower::follow`] verified.
#[derive(Debug)]
pub struct Update {
    /// The checkpoint now verified (the follower's new position).
    pub latest: Latest,
    /// The size of the position before, if any.
    pub previous: Option<u64>,
    /// How many entries the fold was handed.
    pub folded: u64,
    /// The node's consistency proof from the position before.
    pub proof: ProofCheck,
}

/// How a follower starts.
#[derive(Debug, Clone)]
enum Start {
    /// From the empty log, or after its last position.
    After(Option<Position>),
    /// From the empty log, holding it to a position on the way.
    Anchored(Position),
}

/// A verified follower of one log (see the module's documentation).
#[derive(Debug)]
pub struct Follower {
    client: Client,
    verifier: NoteVerifier,
    policy: Option<(WitnessPolicy, String)>,
    start: Start,
}

impl Follower {
    /// A follower of the log at `client` signed with `verifier`'s key, from its first entry.
    #[must_use]
    pub fn new(client: Client, verifier: NoteVerifier) -> Self {
        Self {
            client,
            verifier,
            policy: None,
            start: Start::After(None),
        }
    }

    /// Checkpoints must also meet `policy`; `source` says where it came from, for errors.
    #[must_use]
    pub fn witnessed(mut self, policy: WitnessPolicy, source: impl Into<String>) -> Self {
        self.policy = Some((policy, source.into()));
        self
    }

    /// Resume after `position` (as [`Follower::position`] gave it): the fold is handed only
    /// the entries after it, and the log must extend it.
    #[must_use]
    pub fn resume(mut self, position: Position) -> Self {
        self.start = Start::After(Some(position));
        self
    }

    /// Read the log from its first entry, holding it to `position` on the way (a rollback
    /// or a fork is an error): for a caller that keeps no fold state between runs.
    #[must_use]
    pub fn anchored(mut self, position: Position) -> Self {
        self.start = Start::Anchored(position);
        self
    }

    /// After a first [`Follower::anchored`] walk, for a caller that keeps its fold state in
    /// memory from then on (a worker): later calls hand the fold only the entries after the
    /// position, as [`Follower::resume`] does.
    pub fn continue_after_position(&mut self) {
        if let Start::Anchored(p) = &self.start {
            self.start = Start::After(Some(p.clone()));
        }
    }

    /// The last verified position, if any: persist it, and [`Follower::resume`] from it.
    #[must_use]
    pub fn position(&self) -> Option<&Position> {
        match &self.start {
            Start::After(p) => p.as_ref(),
            Start::Anchored(p) => Some(p),
        }
    }

    /// The client it reads with.
    #[must_use]
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The log's latest checkpoint, opened under its key and checked under the witness
    /// policy, without reading any entry.
    ///
    /// # Errors
    /// [`FollowError::Client`], [`FollowError::Checkpoint`] or [`FollowError::Witness`].
    pub async fn checkpoint(&self) -> Result<Latest, FollowError> {
        let note = self.client.get_required("/checkpoint").await?;
        let (checkpoint, parsed) = Checkpoint::open(&note, self.verifier.name(), &self.verifier)
            .map_err(|e| FollowError::Checkpoint(e.to_string()))?;
        let cosigners = match &self.policy {
            Some((policy, source)) => {
                Some(
                    policy
                        .check(&parsed)
                        .map_err(|error| FollowError::Witness {
                            source_name: source.clone(),
                            error,
                        })?,
                )
            }
            None => None,
        };
        Ok(Latest {
            note,
            checkpoint,
            parsed,
            cosigners,
        })
    }

    /// Verify the log up to its latest checkpoint and hand `fold` every entry after the
    /// position, in order; then move the position there.
    ///
    /// # Errors
    /// A [`FollowError`] at the first check that fails; the position does not move.
    pub async fn follow<F, E>(&mut self, mut fold: F) -> Result<Update, FollowError>
    where
        F: FnMut(LeafIndex, &SignedEvent) -> Result<(), E>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let latest = self.checkpoint().await?;
        let cp = &latest.checkpoint;
        let (old, anchored) = match &self.start {
            Start::After(p) => (p.clone(), false),
            Start::Anchored(p) => (Some(p.clone()), true),
        };
        if let Some(old) = &old
            && old.size > cp.size.0
        {
            return Err(FollowError::Rollback {
                old_size: old.size,
                size: cp.size.0,
            });
        }
        let folded = match &old {
            Some(old) if !anchored && old.size == cp.size.0 => {
                if old.root != cp.root {
                    return Err(FollowError::Fork {
                        old_size: old.size,
                        found: cp.root,
                        remembered: old.root,
                    });
                }
                0
            }
            _ => {
                let mut walk = Walk::new(&self.client, cp.size.0);
                match &old {
                    Some(old) if anchored => walk.anchor = Some((old.size, old.root)),
                    Some(old) if old.size > 0 => walk.resume(old).await?,
                    _ => {}
                }
                let folded = walk.run(&mut fold).await?;
                let walked = walk.frontier.root();
                if walked != cp.root {
                    return Err(FollowError::Checkpoint(format!(
                        "the entries hash to root {walked}, but the checkpoint says {}",
                        cp.root
                    )));
                }
                folded
            }
        };
        let proof = match &old {
            Some(old) if old.size > 0 && old.size < cp.size.0 => {
                self.served_consistency(old, cp).await?
            }
            _ => ProofCheck::NotNeeded,
        };
        let position = Position {
            size: cp.size.0,
            root: cp.root,
            checkpoint: String::from_utf8_lossy(&latest.note).into(),
        };
        self.start = match self.start {
            Start::After(_) => Start::After(Some(position)),
            Start::Anchored(_) => Start::Anchored(position),
        };
        Ok(Update {
            latest,
            previous: old.map(|o| o.size),
            folded,
            proof,
        })
    }

    /// The node's consistency proof from `old` to `cp`, checked. The walk recomputed the old
    /// root from the entries already; the served proof is a second check, which a static
    /// copy of an export cannot give.
    async fn served_consistency(
        &self,
        old: &Position,
        cp: &Checkpoint,
    ) -> Result<ProofCheck, FollowError> {
        let old_size = old.size;
        let proof = match self.client.consistency(old_size, cp.size.0).await {
            Ok(p) => p,
            Err(e) if e.status() == Some(404) => return Ok(ProofCheck::NotServed),
            Err(e) => return Err(e.into()),
        };
        let hashes = proof
            .hashes
            .iter()
            .map(|h| Hash::from_base64(h))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| FollowError::Consistency {
                old_size,
                reason: e.to_string(),
            })?;
        merkle::verify_consistency(TreeSize(old_size), cp.size, &hashes, &old.root, &cp.root)
            .map_err(|e| FollowError::Consistency {
                old_size,
                reason: format!("served proof: {e}"),
            })?;
        Ok(ProofCheck::Verified)
    }
}

/// The hash tile of `level`, `index` and `width` hashes.
fn tile_of(level: u8, index: u64, width: u64) -> Tile {
    let partial = (width < TILE_WIDTH).then(|| u8::try_from(width).unwrap_or(u8::MAX));
    Tile::Hashes {
        level,
        index,
        partial,
    }
}

/// How many hashes tile `n` of tile level `tl` holds in a tree of `size` leaves.
fn tile_width(tl: u8, n: u64, size: u64) -> u64 {
    let nodes = size >> (u32::from(tl) * u32::from(TILE_HEIGHT));
    nodes.saturating_sub(n * TILE_WIDTH).min(TILE_WIDTH)
}

/// A hash tile's bytes as hashes, `width` of them.
fn tile_hashes(tile: &Tile, bytes: &[u8], width: u64) -> Result<Vec<Hash>, FollowError> {
    if bytes.len() as u64 != width * 32 {
        return Err(FollowError::Tile {
            tile: tile.to_string(),
            reason: format!("is {} bytes", bytes.len()),
        });
    }
    Ok(bytes
        .chunks_exact(32)
        .map(|c| {
            let mut h = [0u8; 32];
            h.copy_from_slice(c);
            Hash(h)
        })
        .collect())
}

/// Nodes of a tree read from its hash tiles: node `(level, index)` folded from the hashes
/// of the tile level at or below it.
struct TileNodes(BTreeMap<(u8, u64), Vec<Hash>>);

impl NodeSource for TileNodes {
    type Error = String;

    fn node(&self, level: u8, index: u64) -> Result<Hash, String> {
        let (tl, r) = (level / TILE_HEIGHT, level % TILE_HEIGHT);
        let first = index << r;
        let n = first / TILE_WIDTH;
        let hashes = self
            .0
            .get(&(tl, n))
            .ok_or_else(|| format!("no tile for node {level}/{index}"))?;
        let offset = usize::try_from(first % TILE_WIDTH).unwrap_or(usize::MAX);
        let mut row: Vec<Hash> = hashes
            .get(offset..offset + (1usize << r))
            .ok_or_else(|| format!("tile too short for node {level}/{index}"))?
            .to_vec();
        while row.len() > 1 {
            row = row
                .chunks_exact(2)
                .map(|p| merkle::hash_children(&p[0], &p[1]))
                .collect();
        }
        Ok(row[0])
    }
}

/// One pass over the entries of a tree of `size`, from `frontier`'s size.
struct Walk<'c> {
    client: &'c Client,
    size: u64,
    frontier: Frontier,
    /// A remembered `(size, root)` the walk must pass through.
    anchor: Option<(u64, RootHash)>,
    /// Computed hashes of levels 8, 16, … waiting for their tile to be full (or the end),
    /// from the hash `offset` of tile `index`: at most 256 per tile level, so memory stays
    /// flat.
    pending: BTreeMap<u8, Pending>,
}

/// Hashes of one tile computed so far.
#[derive(Default)]
struct Pending {
    index: u64,
    /// Hashes before these already held (and authenticated) when the walk started.
    offset: u64,
    hashes: Vec<Hash>,
}

impl<'c> Walk<'c> {
    fn new(client: &'c Client, size: u64) -> Self {
        Self {
            client,
            size,
            frontier: Frontier::new(),
            anchor: None,
            pending: BTreeMap::new(),
        }
    }

    /// Start after `old`: its frontier read from the hash tiles of the tree of `self.size`,
    /// which must hash to `old.root`.
    async fn resume(&mut self, old: &Position) -> Result<(), FollowError> {
        let levels: Vec<(u8, u64)> = (0..64u8)
            .rev()
            .filter(|l| old.size & (1 << l) != 0)
            .map(|l| (l, (old.size >> l) - 1))
            .collect();
        let mut tiles = BTreeMap::new();
        for (level, index) in levels {
            let tl = level / TILE_HEIGHT;
            let n = (index << (level % TILE_HEIGHT)) / TILE_WIDTH;
            if tiles.contains_key(&(tl, n)) {
                continue;
            }
            let width = tile_width(tl, n, self.size);
            let tile = tile_of(tl, n, width);
            let bytes = self.client.get_required(&tile.to_string()).await?;
            tiles.insert((tl, n), tile_hashes(&tile, &bytes, width)?);
        }
        let nodes = TileNodes(tiles);
        let frontier =
            Frontier::from_source(&nodes, TreeSize(old.size)).map_err(|e| FollowError::Tile {
                tile: format!("frontier at size {}", old.size),
                reason: format!("{e:?}"),
            })?;
        if frontier.root() != old.root {
            return Err(FollowError::Fork {
                old_size: old.size,
                found: frontier.root(),
                remembered: old.root,
            });
        }
        // The tiles above level 0 are checked from where the remembered tree ends: what
        // they hold before is authenticated by the frontier just checked.
        for &(tl, n) in nodes.0.keys() {
            let held = tile_width(tl, n, old.size);
            if tl > 0 && held > 0 && held < TILE_WIDTH {
                self.pending.insert(
                    tl,
                    Pending {
                        index: n,
                        offset: held,
                        hashes: Vec::new(),
                    },
                );
            }
        }
        self.frontier = frontier;
        Ok(())
    }

    /// Walk every entry from the frontier's size to `self.size`, checking entries, leaf
    /// hashes and every hash tile, handing each entry to `fold`; how many it was handed.
    async fn run<F, E>(&mut self, fold: &mut F) -> Result<u64, FollowError>
    where
        F: FnMut(LeafIndex, &SignedEvent) -> Result<(), E>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let start = self.frontier.size().0;
        let mut completed = Vec::new();
        let mut folded = 0;
        for n in start / TILE_WIDTH..self.size.div_ceil(TILE_WIDTH) {
            let width = (self.size - n * TILE_WIDTH).min(TILE_WIDTH);
            let partial = (width < TILE_WIDTH).then(|| u8::try_from(width).unwrap_or(u8::MAX));
            let entries_tile = Tile::Entries { index: n, partial };
            let bundle = self.client.get_required(&entries_tile.to_string()).await?;
            let entries = decode_bundle(&bundle).map_err(|e| FollowError::Tile {
                tile: entries_tile.to_string(),
                reason: e.to_string(),
            })?;
            if entries.len() as u64 != width {
                return Err(FollowError::Tile {
                    tile: entries_tile.to_string(),
                    reason: format!("holds {} entries, expected {width}", entries.len()),
                });
            }
            let leaf_tile = tile_of(0, n, width);
            let leaves = self.client.get_required(&leaf_tile.to_string()).await?;
            if leaves.len() as u64 != width * 32 {
                return Err(FollowError::Tile {
                    tile: leaf_tile.to_string(),
                    reason: format!("is {} bytes", leaves.len()),
                });
            }
            for (i, entry) in entries.iter().enumerate() {
                let index = n * TILE_WIDTH + i as u64;
                if index < start {
                    continue;
                }
                let event = SignedEvent::from_bytes(entry).map_err(|e| FollowError::Entry {
                    index,
                    reason: e.to_string(),
                })?;
                let served = &leaves[i * 32..i * 32 + 32];
                if event.leaf_hash().hash().as_bytes() != served {
                    return Err(FollowError::Entry {
                        index,
                        reason: format!(
                            "its leaf hash is {} but the level-0 tile says {}",
                            event.leaf_hash(),
                            hex::encode(served)
                        ),
                    });
                }
                completed.clear();
                self.frontier.push(event.leaf_hash(), &mut completed);
                for &(level, idx, hash) in &completed {
                    if level > 0 && level % TILE_HEIGHT == 0 {
                        let tl = level / TILE_HEIGHT;
                        let slot = self.pending.entry(tl).or_insert_with(|| Pending {
                            index: idx / TILE_WIDTH,
                            offset: 0,
                            hashes: Vec::new(),
                        });
                        slot.hashes.push(hash);
                        if slot.offset + slot.hashes.len() as u64 == TILE_WIDTH {
                            let full = std::mem::take(slot);
                            slot.index = full.index + 1;
                            check_tile(self.client, tl, &full).await?;
                        }
                    }
                }
                if let Some((old_size, old_root)) = self.anchor
                    && self.frontier.size().0 == old_size
                    && self.frontier.root() != old_root
                {
                    return Err(FollowError::Fork {
                        old_size,
                        found: self.frontier.root(),
                        remembered: old_root,
                    });
                }
                fold(LeafIndex(index), &event).map_err(|e| FollowError::Fold {
                    index,
                    source: e.into(),
                })?;
                folded += 1;
            }
        }
        for (tl, pending) in std::mem::take(&mut self.pending) {
            if !pending.hashes.is_empty() {
                check_tile(self.client, tl, &pending).await?;
            }
        }
        Ok(folded)
    }
}

/// Check the served tile of `pending` against the hashes computed from the entries (from
/// its offset: what comes before was authenticated when the walk resumed).
async fn check_tile(client: &Client, tl: u8, pending: &Pending) -> Result<(), FollowError> {
    let width = pending.offset + pending.hashes.len() as u64;
    let tile = tile_of(tl, pending.index, width);
    let served = client.get_required(&tile.to_string()).await?;
    let from = usize::try_from(pending.offset * 32).unwrap_or(usize::MAX);
    let expect: Vec<u8> = pending.hashes.iter().flat_map(|h| h.0).collect();
    if served.len() != from + expect.len() || served[from..] != expect[..] {
        let first = served
            .get(from..)
            .unwrap_or_default()
            .chunks(32)
            .zip(&pending.hashes)
            .position(|(s, c)| s != c.as_bytes())
            .unwrap_or(pending.hashes.len());
        return Err(FollowError::Tile {
            tile: tile.to_string(),
            reason: format!(
                "hash {} differs from the entries",
                pending.offset as usize + first
            ),
        });
    }
    Ok(())
}
