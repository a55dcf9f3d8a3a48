//! Reads of the log: entries, tiles, checkpoints and proofs from O(log n) stored hashes.

#[allow(clippy::wildcard_imports)]
use super::*;

pub(super) struct Shared<S> {
    pub(super) storage: S,
    /// The size of the policy snapshot the log resumed from when it opened, if any.
    pub(super) restored: RwLock<Option<TreeSize>>,
    pub(super) cache: NodeCache,
    pub(super) latest: RwLock<Arc<Published>>,
    /// Every new latest checkpoint, for those who wait on it (the witness submitter).
    pub(super) published: tokio::sync::watch::Sender<Arc<Published>>,
    pub(super) origin: String,
    /// Set once the log must not append any more ([`LogReader::fence`]).
    pub(super) fenced: RwLock<Option<String>>,
    /// Set once another node took the store over ([`LogReader::depose`]).
    pub(super) deposed: RwLock<Option<String>>,
}

impl<S> Shared<S> {
    pub(super) fn new(storage: S, published: Published, origin: String) -> Self {
        let published = Arc::new(published);
        Self {
            fenced: RwLock::new(None),
            deposed: RwLock::new(None),
            storage,
            restored: RwLock::new(None),
            cache: NodeCache::new(),
            latest: RwLock::new(Arc::clone(&published)),
            published: tokio::sync::watch::Sender::new(published),
            origin,
        }
    }

    pub(super) fn set_latest(&self, published: Arc<Published>) {
        *self.latest.write() = Arc::clone(&published);
        self.published.send_replace(published);
    }
}

/// Reads of the log: entries, tiles, checkpoints and proofs. Cheap to clone.
pub struct LogReader<S> {
    pub(super) shared: Arc<Shared<S>>,
}

impl<S> Clone for LogReader<S> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S> std::fmt::Debug for LogReader<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogReader")
            .field("origin", &self.shared.origin)
            .finish_non_exhaustive()
    }
}

/// Node hashes from storage, through the cache when there is one.
pub(super) struct StoredNodes<'a, S>(pub(super) &'a S, pub(super) Option<&'a NodeCache>);

impl<S: Storage> NodeSource for StoredNodes<'_, S> {
    type Error = StorageError;
    fn node(&self, level: u8, index: u64) -> Result<Hash, StorageError> {
        if let Some(hash) = self.1.and_then(|c| c.get(level, index)) {
            return Ok(hash);
        }
        let hash = self.read(level, index)?;
        if let Some(c) = self.1 {
            c.put(level, index, hash);
        }
        Ok(hash)
    }
}

impl<S: Storage> StoredNodes<'_, S> {
    pub(super) fn read(&self, level: u8, index: u64) -> Result<Hash, StorageError> {
        node_hash(level, index, self.0.get(&keys::node(level, index))?)
    }
}

pub(super) fn node_hash(
    level: u8,
    index: u64,
    value: Option<Vec<u8>>,
) -> Result<Hash, StorageError> {
    let bytes = value.ok_or_else(|| {
        StorageError::Corrupt(format!("tree node level {level} index {index} is missing"))
    })?;
    Hash::from_slice(&bytes).map_err(|_| {
        StorageError::Corrupt(format!(
            "tree node level {level} index {index} is not 32 bytes"
        ))
    })
}

/// A node source that answers zeros and remembers what was asked.
#[derive(Default)]
pub(super) struct Recorder(pub(super) std::cell::RefCell<Vec<(u8, u64)>>);

impl NodeSource for Recorder {
    type Error = StorageError;
    fn node(&self, level: u8, index: u64) -> Result<Hash, StorageError> {
        self.0.borrow_mut().push((level, index));
        Ok(Hash::default())
    }
}

/// The nodes a [`Recorder`] listed, with their hashes.
pub(super) struct Fetched(pub(super) Vec<(u8, u64, Hash)>);

impl NodeSource for Fetched {
    type Error = StorageError;
    fn node(&self, level: u8, index: u64) -> Result<Hash, StorageError> {
        self.0
            .iter()
            .find(|(l, i, _)| *l == level && *i == index)
            .map(|(_, _, h)| *h)
            .ok_or_else(|| StorageError::Backend(format!("proof plan missed node {level}/{index}")))
    }
}

impl<S> LogReader<S> {
    /// Refuse every append from now on ([`AppendError::Fenced`] with `reason`): a witness
    /// has cosigned a larger tree of this log than this copy holds. The first reason stays.
    pub fn fence(&self, reason: String) {
        let mut fenced = self.shared.fenced.write();
        if fenced.is_none() {
            tracing::error!(%reason, "the log refuses every append from now on");
            *fenced = Some(reason);
        }
    }

    /// Why the log refuses appends, if it does ([`LogReader::fence`]).
    #[must_use]
    pub fn fenced(&self) -> Option<String> {
        self.shared.fenced.read().clone()
    }

    /// Sequence nothing more: another node took the shared store over (its writer epoch, or
    /// the sequencer's lease). Every append from now on is refused as
    /// [`StorageError::Deposed`], which clients are told to retry at the sequencer. The
    /// first reason stays.
    pub fn depose(&self, reason: String) {
        let mut deposed = self.shared.deposed.write();
        if deposed.is_none() {
            tracing::error!(%reason, "deposed: this node sequences the log no more");
            *deposed = Some(reason);
        }
    }

    /// Why this node sequences no more, if it was deposed ([`LogReader::depose`]).
    #[must_use]
    pub fn deposed(&self) -> Option<String> {
        self.shared.deposed.read().clone()
    }
}

impl<S: Storage> LogReader<S> {
    /// Read a log's state without a sequencer (beside a running node, on a read-only
    /// store). The origin comes from the latest checkpoint.
    ///
    /// # Errors
    /// [`StorageError`] when the store is empty, unreadable, or its tree does not match its
    /// latest checkpoint.
    pub fn open(storage: S) -> Result<Self, StorageError> {
        let (frontier, note) = recover(&storage)?
            .ok_or_else(|| StorageError::Corrupt("the store holds no log".into()))?;
        let body = note_body(&note)?;
        let published = Published {
            size: frontier.size(),
            root: frontier.root(),
            note,
        };
        Ok(Self {
            shared: Arc::new(Shared::new(storage, published, body.origin)),
        })
    }

    /// Catch up with a store another process writes (a node that does not sequence, over
    /// the sequencer's database): when the stored size grew, re-read the tree's right edge
    /// and the checkpoint stored at that size (checked to be the tree's root, as at opening)
    /// and publish it as the latest. Returns whether it grew. The stored checkpoint carries
    /// the cosignatures the sequencer added to it, if any.
    ///
    /// # Errors
    /// [`StorageError`] when storage fails or its tree does not match its checkpoint.
    pub fn refresh(&self) -> Result<bool, StorageError> {
        let size = self
            .shared
            .storage
            .get(keys::META_SIZE)?
            .as_deref()
            .and_then(keys::index_value);
        if size.is_none_or(|s| s <= self.latest().size.0) {
            return Ok(false);
        }
        let Some((frontier, note)) = recover(&self.shared.storage)? else {
            return Ok(false);
        };
        if frontier.size() <= self.latest().size {
            return Ok(false);
        }
        self.shared.set_latest(Arc::new(Published {
            size: frontier.size(),
            root: frontier.root(),
            note,
        }));
        Ok(true)
    }

    /// The latest checkpoint.
    #[must_use]
    pub fn latest(&self) -> Arc<Published> {
        Arc::clone(&self.shared.latest.read())
    }

    /// A receiver that sees every new latest checkpoint (it starts at the current one).
    #[must_use]
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<Arc<Published>> {
        self.shared.published.subscribe()
    }

    /// Store `note`, the log's checkpoint of `size` with witness cosignatures added, in
    /// place of the checkpoint stored at that size, and remember `size` as the latest
    /// cosigned one when it is larger than the one before. The log's own signature stays the
    /// first line, so every reader of checkpoints (proofs, exports, replays) carries the
    /// cosignatures. Unsynced: it becomes durable with the log's next synced batch.
    ///
    /// # Errors
    /// [`ReadError::Invalid`] when no checkpoint of `size` was signed, or `note` is not that
    /// checkpoint; [`ReadError::Storage`].
    pub fn put_cosigned(&self, size: TreeSize, note: &str) -> Result<(), ReadError> {
        let stored = self.checkpoint_at(size)?.ok_or_else(|| {
            ReadError::Invalid(format!("no checkpoint was signed at size {size}"))
        })?;
        let parse = |n: &str| {
            govern_core::note::Note::parse(n.as_bytes())
                .map_err(|e| ReadError::Invalid(format!("checkpoint {size}: {e}")))
        };
        let (stored, cosigned) = (parse(&stored)?, parse(note)?);
        if stored.text != cosigned.text || !cosigned.signatures.starts_with(&stored.signatures) {
            return Err(ReadError::Invalid(format!(
                "the cosigned note is not the log's checkpoint of size {size} with lines added"
            )));
        }
        let mut batch = Batch::new();
        batch.put(keys::checkpoint(size.0).to_vec(), note.as_bytes().to_vec());
        if self.latest_cosigned_size()?.is_none_or(|s| s < size) {
            batch.put(keys::META_COSIGNED.to_vec(), size.0.to_be_bytes().to_vec());
        }
        self.shared.storage.write(batch, false)?;
        Ok(())
    }

    /// The size of the latest checkpoint stored with a witness quorum ([`LogReader::put_cosigned`]).
    ///
    /// # Errors
    /// [`ReadError::Storage`].
    pub fn latest_cosigned_size(&self) -> Result<Option<TreeSize>, ReadError> {
        let raw = self.shared.storage.get(keys::META_COSIGNED)?;
        Ok(raw.as_deref().and_then(keys::index_value).map(TreeSize))
    }

    /// The checkpoint origin.
    #[must_use]
    pub fn origin(&self) -> &str {
        &self.shared.origin
    }

    /// The size of the policy snapshot the log resumed from when it opened (`None`: it
    /// replayed every tracked entry).
    #[must_use]
    pub fn restored_snapshot(&self) -> Option<TreeSize> {
        *self.shared.restored.read()
    }

    /// Hand every stored entry of a tracked kind ([`is_tracked`]) up to the latest
    /// checkpoint to `fold`, in order, and return that checkpoint: how `govern status` and
    /// `GET /v1/state` fold the projections from a store without a node's policy.
    ///
    /// # Errors
    /// [`StorageError`] when storage fails or holds an entry that does not parse.
    pub fn fold_tracked(
        &self,
        fold: &mut dyn FnMut(SignedEvent, LeafIndex),
    ) -> Result<Arc<Published>, StorageError> {
        let latest = self.latest();
        for_each_tracked(&self.shared.storage, TreeSize(0), latest.size, fold)?;
        Ok(latest)
    }

    /// Read `missing` nodes: those under complete stratum tiles from their blobs (one read
    /// per blob), the rest one key each, all in one multi-get. A blob that is absent (a log
    /// written before blobs existed) falls back to the node keys.
    pub(super) fn fetch(
        &self,
        missing: &[(u8, u64)],
        out: &mut Vec<(u8, u64, Hash)>,
    ) -> Result<(), StorageError> {
        let size = self.latest().size.0;
        let mut blobs: Vec<(u8, u64)> = Vec::new();
        let mut singles: Vec<(u8, u64)> = Vec::new();
        for &(level, i) in missing {
            let (s, t, _) = strata::locate(level, i);
            if strata::complete(s, t, size) {
                if !blobs.contains(&(s, t)) {
                    blobs.push((s, t));
                }
            } else {
                singles.push((level, i));
            }
        }
        let mut wanted: Vec<Vec<u8>> = blobs
            .iter()
            .map(|&(s, t)| keys::stratum(s, t).to_vec())
            .collect();
        wanted.extend(singles.iter().map(|&(l, i)| keys::node(l, i).to_vec()));
        let mut values = self.shared.storage.multi_get(&wanted)?.into_iter();
        let blob_values: Vec<Option<Vec<u8>>> = values.by_ref().take(blobs.len()).collect();
        for (&(level, i), value) in singles.iter().zip(values) {
            let hash = node_hash(level, i, value)?;
            self.shared.cache.put(level, i, hash);
            out.push((level, i, hash));
        }
        for &(level, i) in missing {
            let (s, t, offset) = strata::locate(level, i);
            let Some(b) = blobs.iter().position(|&x| x == (s, t)) else {
                continue;
            };
            let hash = match &blob_values[b] {
                Some(blob) if blob.len() == strata::STRATUM_BYTES => {
                    Hash::from_slice(&blob[offset..offset + 32])
                        .map_err(|_| StorageError::Corrupt(format!("stratum {s} tile {t}")))?
                }
                Some(blob) => {
                    return Err(StorageError::Corrupt(format!(
                        "stratum {s} tile {t} is {} bytes, not {}",
                        blob.len(),
                        strata::STRATUM_BYTES
                    )));
                }
                None => self.nodes().node(level, i)?,
            };
            out.push((level, i, hash));
        }
        Ok(())
    }

    pub(super) fn nodes(&self) -> StoredNodes<'_, S> {
        StoredNodes(&self.shared.storage, Some(&self.shared.cache))
    }

    pub(super) fn within(
        &self,
        what: &'static str,
        value: u64,
        inclusive: bool,
    ) -> Result<(), ReadError> {
        let size = self.latest().size.0;
        let ok = if inclusive {
            value <= size
        } else {
            value < size
        };
        if ok {
            Ok(())
        } else {
            Err(ReadError::Beyond { what, value, size })
        }
    }

    /// The leaf data at `index`.
    ///
    /// # Errors
    /// [`ReadError::Beyond`] past the end; [`ReadError::Storage`] when storage fails.
    pub fn entry(&self, index: LeafIndex) -> Result<Vec<u8>, ReadError> {
        self.within("index", index.0, false)?;
        self.shared
            .storage
            .get(&keys::entry(index.0))?
            .ok_or_else(|| {
                ReadError::Storage(StorageError::Corrupt(format!("entry {index} is missing")))
            })
    }

    /// The index of the entry with leaf hash `leaf` (the latest, should one leaf have been
    /// appended twice), if the log holds it.
    ///
    /// # Errors
    /// [`ReadError::Storage`].
    pub fn index_of(&self, leaf: &LeafHash) -> Result<Option<LeafIndex>, ReadError> {
        let index = stored_index(
            &self.shared.storage,
            &keys::leaf(leaf.hash().as_bytes()),
            leaf,
        )?;
        // An index written by a batch whose checkpoint is not yet published is not served.
        Ok(index.filter(|i| i.0 < self.latest().size.0))
    }

    /// The contents of a C2SP tile or entry bundle, if the log holds all of it.
    ///
    /// # Errors
    /// [`ReadError::Beyond`] when the tree is not that large yet; [`ReadError::Storage`].
    pub fn tile(&self, tile: Tile) -> Result<Vec<u8>, ReadError> {
        let size = self.latest().size;
        if !tile.exists_at(size) {
            return Err(ReadError::Beyond {
                what: "tile",
                value: tile.index(),
                size: size.0,
            });
        }
        let start = tile.index() * TILE_WIDTH;
        let width = tile.width();
        let (from, to) = match tile {
            Tile::Hashes { level, .. } => {
                let l = level * TILE_HEIGHT;
                (
                    keys::node(l, start).to_vec(),
                    keys::node(l, start + width).to_vec(),
                )
            }
            Tile::Entries { .. } => (
                keys::entry(start).to_vec(),
                keys::entry(start + width).to_vec(),
            ),
        };
        let rows =
            self.shared
                .storage
                .scan(&from, &to, usize::try_from(width).unwrap_or(usize::MAX))?;
        if rows.len() as u64 != width {
            return Err(StorageError::Corrupt(format!(
                "{tile} has {} of {width} items",
                rows.len()
            ))
            .into());
        }
        for (i, (k, _)) in rows.iter().enumerate() {
            if keys::trailing_u64(k) != Some(start + i as u64) {
                return Err(StorageError::Corrupt(format!("{tile} has a gap at item {i}")).into());
            }
        }
        Ok(match tile {
            Tile::Hashes { .. } => rows.into_iter().flat_map(|(_, v)| v).collect(),
            Tile::Entries { .. } => {
                govern_core::tiles::encode_bundle(rows.iter().map(|(_, v)| v.as_slice()))
            }
        })
    }

    /// The inclusion proof of `index` in the tree of `size`.
    ///
    /// # Errors
    /// [`ReadError::Beyond`] when `size` is beyond the log; [`ReadError::Invalid`] when
    /// `index >= size`; [`ReadError::Storage`].
    pub fn inclusion_proof(
        &self,
        index: LeafIndex,
        size: TreeSize,
    ) -> Result<Vec<Hash>, ReadError> {
        self.within("size", size.0, true)?;
        // Which nodes the proof reads depends only on (index, size), not on their hashes: a
        // first pass with a recording source lists them, the cache answers what it can, and
        // storage answers the rest in one multi-get.
        let plan = Recorder::default();
        merkle::inclusion_proof(&plan, index, size)?;
        let wanted = plan.0.into_inner();
        let mut fetched = Vec::with_capacity(wanted.len());
        let mut missing = Vec::new();
        for &(level, i) in &wanted {
            match self.shared.cache.get(level, i) {
                Some(h) => fetched.push((level, i, h)),
                None => missing.push((level, i)),
            }
        }
        if !missing.is_empty() {
            self.fetch(&missing, &mut fetched)?;
        }
        Ok(merkle::inclusion_proof(&Fetched(fetched), index, size)?)
    }

    /// The consistency proof between the trees of sizes `from` and `to`.
    ///
    /// # Errors
    /// [`ReadError::Beyond`] when `to` is beyond the log; [`ReadError::Invalid`] unless
    /// `0 < from <= to`; [`ReadError::Storage`].
    pub fn consistency_proof(&self, from: TreeSize, to: TreeSize) -> Result<Vec<Hash>, ReadError> {
        self.within("size", to.0, true)?;
        Ok(merkle::consistency_proof(&self.nodes(), from, to)?)
    }

    /// The root of the tree of `size`, from stored hashes.
    ///
    /// # Errors
    /// [`ReadError::Beyond`]; [`ReadError::Storage`].
    pub fn root_at(&self, size: TreeSize) -> Result<RootHash, ReadError> {
        self.within("size", size.0, true)?;
        Ok(merkle::tree_root(&self.nodes(), size)?)
    }

    /// The checkpoint signed at exactly `size`, if a batch ended there.
    ///
    /// # Errors
    /// [`ReadError::Storage`].
    pub fn checkpoint_at(&self, size: TreeSize) -> Result<Option<String>, ReadError> {
        let raw = self.shared.storage.get(&keys::checkpoint(size.0))?;
        raw.map(|b| {
            String::from_utf8(b).map_err(|_| {
                StorageError::Corrupt(format!("checkpoint {size} is not UTF-8")).into()
            })
        })
        .transpose()
    }

    /// Signed checkpoints with sizes in `[from, to)`, at most `limit`, by size.
    ///
    /// # Errors
    /// [`ReadError::Storage`].
    pub fn checkpoints(
        &self,
        from: TreeSize,
        to: TreeSize,
        limit: usize,
    ) -> Result<Vec<(TreeSize, String)>, ReadError> {
        let rows =
            self.shared
                .storage
                .scan(&keys::checkpoint(from.0), &keys::checkpoint(to.0), limit)?;
        rows.into_iter()
            .map(|(k, v)| {
                let size = keys::trailing_u64(&k)
                    .ok_or_else(|| StorageError::Corrupt("checkpoint key".into()))?;
                let note = String::from_utf8(v).map_err(|_| {
                    StorageError::Corrupt(format!("checkpoint {size} is not UTF-8"))
                })?;
                Ok((TreeSize(size), note))
            })
            .collect()
    }
}

/// The index stored under `key` (a [`keys::leaf`] or [`keys::unique`] key).
pub(super) fn stored_index<S: Storage>(
    storage: &S,
    key: &[u8],
    what: &dyn std::fmt::Display,
) -> Result<Option<LeafIndex>, StorageError> {
    storage
        .get(key)?
        .map(|v| {
            keys::index_value(&v).map(LeafIndex).ok_or_else(|| {
                StorageError::Corrupt(format!("the index entry of {what} is not 8 bytes"))
            })
        })
        .transpose()
}

/// The stored event with leaf hash `leaf`, found through the leaf-hash index.
pub(super) fn stored_parent<S: Storage>(
    storage: &S,
    leaf: &LeafHash,
) -> Result<Option<ParentInfo>, StorageError> {
    let Some(index) = stored_index(storage, &keys::leaf(leaf.hash().as_bytes()), leaf)? else {
        return Ok(None);
    };
    let bytes = storage.get(&keys::entry(index.0))?.ok_or_else(|| {
        StorageError::Corrupt(format!(
            "leaf {leaf} is indexed at entry {index}, which is missing"
        ))
    })?;
    let event = SignedEvent::from_bytes(&bytes)
        .map_err(|e| StorageError::Corrupt(format!("entry {index} does not parse: {e}")))?;
    if event.leaf_hash() != *leaf {
        return Err(StorageError::Corrupt(format!(
            "leaf {leaf} is indexed at entry {index}, which holds leaf {}",
            event.leaf_hash()
        )));
    }
    let e = event.event();
    Ok(Some(ParentInfo {
        index,
        kind: e.kind.clone(),
        tenant: e.tenant,
        request: e.request,
    }))
}
