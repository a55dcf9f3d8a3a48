//! How a batch checks and stores an entry (shared by the sequencer and `replay`), and the
//! [`LogView`] the append policy sees while it does.

#[allow(clippy::wildcard_imports)]
use super::*;

/// The sequencer's [`LogView`]: storage, then what the current batch accepted so far.
pub(super) struct BatchView<'a, S> {
    pub(super) storage: &'a S,
    pub(super) leaves: &'a HashMap<LeafHash, ParentInfo>,
    pub(super) unique: &'a HashMap<String, LeafIndex>,
    pub(super) next: u64,
    pub(super) window: &'a VecDeque<(TreeSize, RootHash)>,
}

impl<S: Storage> LogView for BatchView<'_, S> {
    fn parent(&self, leaf: &LeafHash) -> Result<Option<ParentInfo>, StorageError> {
        if let Some(p) = self.leaves.get(leaf) {
            return Ok(Some(p.clone()));
        }
        stored_parent(self.storage, leaf)
    }

    fn unique_taken(&self, key: &str) -> Result<Option<LeafIndex>, StorageError> {
        if let Some(i) = self.unique.get(key) {
            return Ok(Some(*i));
        }
        stored_index(self.storage, &keys::unique(key), &key)
    }

    fn next_index(&self) -> LeafIndex {
        LeafIndex(self.next)
    }

    fn recent_checkpoint(&self, root: &RootHash) -> Option<TreeSize> {
        self.window
            .iter()
            .rev()
            .find(|(_, r)| r == root)
            .map(|(size, _)| *size)
    }
}

/// What a batch has accepted so far and will write: the sequencer's, and a replay's
/// ([`crate::replay`]), so both check and store an entry the same way.
pub(crate) struct Staged {
    /// The writes of the batch so far.
    pub(crate) write: Batch,
    /// Every tree node the batch completed.
    pub(crate) written: Vec<(u8, u64, Hash)>,
    pub(super) leaves: HashMap<LeafHash, ParentInfo>,
    pub(super) unique: HashMap<String, LeafIndex>,
    pub(super) completed: Vec<(u8, u64, Hash)>,
}

impl Staged {
    pub(crate) fn new() -> Self {
        Self {
            write: Batch::new(),
            written: Vec::new(),
            leaves: HashMap::new(),
            unique: HashMap::new(),
            completed: Vec::new(),
        }
    }

    /// Check `event` as the entry at `next`: the policy, then its uniqueness claims against
    /// storage and the batch. Its claims on success.
    pub(crate) fn check<S: Storage>(
        &self,
        storage: &S,
        policy: &dyn AppendPolicy,
        event: &SignedEvent,
        next: u64,
        window: &VecDeque<(TreeSize, RootHash)>,
    ) -> Result<Vec<String>, AppendError> {
        let view = BatchView {
            storage,
            leaves: &self.leaves,
            unique: &self.unique,
            next,
            window,
        };
        let claims = policy.check(event, &view)?;
        for k in &claims {
            if let Some(index) = view.unique_taken(k)? {
                return Err(AppendError::Duplicate {
                    key: k.clone(),
                    index,
                });
            }
        }
        Ok(claims)
    }

    /// Whether the log (storage, or this batch) holds `event` already: one event is one
    /// entry, so a re-posted `service.attested` cannot revive an identity and a re-posted
    /// audit cannot count twice. (The sequencer checks storage on the submitter's thread
    /// instead, and the batch and its recent entries here: [`Recent`].)
    ///
    /// # Errors
    /// [`AppendError::AlreadyHeld`] naming where it is; [`AppendError::Storage`].
    pub(crate) fn check_new<S: Storage>(
        &self,
        storage: &S,
        event: &SignedEvent,
    ) -> Result<(), AppendError> {
        let leaf = event.leaf_hash();
        let held = match self.in_batch(&leaf) {
            Some(index) => Some(index),
            None => stored_index(storage, &keys::leaf(leaf.hash().as_bytes()), &leaf)?,
        };
        match held {
            Some(index) => Err(AppendError::AlreadyHeld { index }),
            None => Ok(()),
        }
    }

    /// Where this batch put the entry with leaf hash `leaf`, if it did.
    pub(super) fn in_batch(&self, leaf: &LeafHash) -> Option<LeafIndex> {
        self.leaves.get(leaf).map(|p| p.index)
    }

    /// Stage a checked `event` as the next entry of `frontier`: the entry, its leaf-hash and
    /// uniqueness index, its tracked mark, the tree nodes it completes; and tell `policy`.
    pub(crate) fn accept(
        &mut self,
        frontier: &mut Frontier,
        policy: &dyn AppendPolicy,
        event: &SignedEvent,
        claimed: Vec<String>,
    ) -> LeafIndex {
        let index = frontier.size().0;
        let leaf_hash = event.leaf_hash();
        self.completed.clear();
        frontier.push(leaf_hash, &mut self.completed);
        self.write
            .put(keys::entry(index).to_vec(), event.bytes().to_vec());
        let index_bytes = index.to_be_bytes().to_vec();
        self.write.put(
            keys::leaf(leaf_hash.hash().as_bytes()).to_vec(),
            index_bytes.clone(),
        );
        for k in claimed {
            self.write
                .put(keys::unique(&k).to_vec(), index_bytes.clone());
            self.unique.insert(k, LeafIndex(index));
        }
        let e = event.event();
        if is_tracked(e.kind.as_str()) {
            self.write.put(keys::tracked(index).to_vec(), Vec::new());
        }
        policy.accepted(event, LeafIndex(index));
        self.leaves.insert(
            leaf_hash,
            ParentInfo {
                index: LeafIndex(index),
                kind: e.kind.clone(),
                tenant: e.tenant,
                request: e.request,
            },
        );
        for (level, i, hash) in &self.completed {
            self.write
                .put(keys::node(*level, *i).to_vec(), hash.as_bytes().to_vec());
        }
        self.written.extend_from_slice(&self.completed);
        LeafIndex(index)
    }
}

/// A completed node at level `8·(s+1)` completes the stratum-`s` tile below it: write its
/// blob in the same batch.
pub(crate) fn add_strata<S: Storage>(
    storage: &S,
    write: &mut Batch,
    written: &[(u8, u64, Hash)],
) -> Result<(), StorageError> {
    let tops: Vec<(u8, u64)> = written
        .iter()
        .filter(|(level, _, _)| *level > 0 && level % TILE_HEIGHT == 0)
        .map(|(level, index, _)| (level / TILE_HEIGHT - 1, *index))
        .collect();
    if tops.is_empty() {
        return Ok(());
    }
    let fresh: HashMap<(u8, u64), Hash> = written.iter().map(|(l, i, h)| ((*l, *i), *h)).collect();
    for (stratum, tile) in tops {
        let blob = strata::assemble(storage, stratum, tile, &fresh)?;
        write.put(keys::stratum(stratum, tile).to_vec(), blob);
    }
    Ok(())
}
