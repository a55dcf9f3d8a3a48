//! A node that serves a shared store's log without sequencing it: several nodes over one
//! database serve the reads, one sequences (docs/deployment.md).

#[allow(clippy::wildcard_imports)]
use super::*;

/// The log as a node that does not sequence it serves it: every read from the store,
/// caught up with [`Follower::refresh`], and every append refused as
/// [`AppendError::NotSequencer`] naming where the sequencer is.
pub struct Follower<S> {
    reader: LogReader<S>,
    /// Where the sequencer is, as whoever follows the lease last wrote it.
    sequencer: Arc<RwLock<Option<String>>>,
}

impl<S> std::fmt::Debug for Follower<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Follower")
            .field("sequencer", &*self.sequencer.read())
            .finish_non_exhaustive()
    }
}

impl<S: Storage> Follower<S> {
    /// Follow the log in `storage` (which must hold one: the sequencer writes its first
    /// checkpoint when it opens a new store); appends are refused naming what `sequencer`
    /// holds at the time.
    ///
    /// # Errors
    /// As [`LogReader::open`].
    pub fn open(storage: S, sequencer: Arc<RwLock<Option<String>>>) -> Result<Self, StorageError> {
        Ok(Self {
            reader: LogReader::open(storage)?,
            sequencer,
        })
    }

    /// Catch up with the store ([`LogReader::refresh`]).
    ///
    /// # Errors
    /// As [`LogReader::refresh`].
    pub fn refresh(&self) -> Result<bool, StorageError> {
        self.reader.refresh()
    }

    /// Where the sequencer is, as last written (`None`: nobody holds its lease).
    #[must_use]
    pub fn sequencer(&self) -> Option<String> {
        self.sequencer.read().clone()
    }

    /// The reader it serves from.
    #[must_use]
    pub fn reader(&self) -> &LogReader<S> {
        &self.reader
    }
}

impl<S: Storage> Appender for Follower<S> {
    fn append(
        &self,
        _event: SignedEvent,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<Appended, AppendError>> + Send + '_>> {
        let sequencer = self.sequencer();
        Box::pin(async move { Err(AppendError::NotSequencer { sequencer }) })
    }

    fn latest(&self) -> Arc<Published> {
        self.reader.latest()
    }

    fn subscribe(&self) -> tokio::sync::watch::Receiver<Arc<Published>> {
        self.reader.subscribe()
    }

    fn entry(&self, index: LeafIndex) -> Result<Vec<u8>, ReadError> {
        self.reader.entry(index)
    }
}

impl<S: Storage> NodeLog for Follower<S> {
    fn origin(&self) -> &str {
        self.reader.origin()
    }

    fn fold_tracked(
        &self,
        fold: &mut dyn FnMut(SignedEvent, LeafIndex),
    ) -> Result<Arc<Published>, StorageError> {
        self.reader.fold_tracked(fold)
    }

    fn root_at(&self, size: TreeSize) -> Result<RootHash, ReadError> {
        self.reader.root_at(size)
    }

    fn index_of(&self, leaf: &LeafHash) -> Result<Option<LeafIndex>, ReadError> {
        self.reader.index_of(leaf)
    }

    fn inclusion_proof(&self, index: LeafIndex, size: TreeSize) -> Result<Vec<Hash>, ReadError> {
        self.reader.inclusion_proof(index, size)
    }

    fn consistency_proof(&self, from: TreeSize, to: TreeSize) -> Result<Vec<Hash>, ReadError> {
        self.reader.consistency_proof(from, to)
    }

    fn tile(&self, tile: Tile) -> Result<Vec<u8>, ReadError> {
        self.reader.tile(tile)
    }

    fn checkpoints(
        &self,
        from: TreeSize,
        to: TreeSize,
        limit: usize,
    ) -> Result<Vec<(TreeSize, String)>, ReadError> {
        self.reader.checkpoints(from, to, limit)
    }
}
