//! The sequencer thread: batches, the group commit, and answering each append.

#[allow(clippy::wildcard_imports)]
use super::*;

/// The leaf hashes of the log's latest entries, for the sequencer's check that an event is
/// new without a storage read on its own thread. [`Log::submit`] looks the event up in storage
/// first, on the submitter's thread, and answers at once an event whose entry is published;
/// what it cannot have seen is an entry written after that look-up and before the sequencer
/// takes the event: at most the batch then being written, the events queued ahead of it and
/// the log's follow-ups to both. `Recent` remembers at least that many entries.
pub(super) struct Recent {
    pub(super) order: VecDeque<LeafHash>,
    pub(super) index: HashMap<LeafHash, LeafIndex>,
    pub(super) keep: usize,
}

impl Recent {
    pub(super) fn new(config: &LogConfig) -> Self {
        // Entries written between a submitter's look-up and its event's turn: the batch in
        // flight and every queued event ahead, each with at most one follow-up.
        let keep = 2 * (config.queue_events_max + config.batch_events_max.max(1));
        Self {
            order: VecDeque::with_capacity(keep),
            index: HashMap::with_capacity(keep),
            keep,
        }
    }

    pub(super) fn get(&self, leaf: &LeafHash) -> Option<LeafIndex> {
        self.index.get(leaf).copied()
    }

    pub(super) fn insert(&mut self, leaf: LeafHash, at: LeafIndex) {
        if self.order.len() >= self.keep
            && let Some(old) = self.order.pop_front()
        {
            self.index.remove(&old);
        }
        self.order.push_back(leaf);
        self.index.insert(leaf, at);
    }
}

pub(super) struct Pending {
    pub(super) event: SignedEvent,
    /// `None` for the log's own follow-up events.
    pub(super) reply: Option<oneshot::Sender<Result<Appended, AppendError>>>,
}

impl Pending {
    pub(super) fn answer(self, result: Result<Appended, AppendError>) {
        match self.reply {
            Some(reply) => {
                let _ = reply.send(result);
            }
            None => match result {
                Ok(a) => {
                    tracing::info!(index = %a.index, kind = %self.event.event().kind, "the log appended its own event")
                }
                Err(e) => {
                    tracing::error!(error = %e, kind = %self.event.event().kind, "the log's own event was not appended")
                }
            },
        }
    }
}

pub(super) struct Sequencer<S> {
    pub(super) shared: Arc<Shared<S>>,
    pub(super) frontier: Frontier,
    pub(super) signer: NoteSigner,
    pub(super) config: LogConfig,
    pub(super) policy: Arc<dyn AppendPolicy>,
    pub(super) clock: Arc<dyn Clock>,
    /// The last [`NONCE_WINDOW_CHECKPOINTS`] checkpoints, oldest first.
    pub(super) window: VecDeque<(TreeSize, RootHash)>,
    /// The latest entries' leaf hashes.
    pub(super) recent: Recent,
}

impl<S: Storage> Sequencer<S> {
    pub(super) fn run(mut self, rx: Receiver<Pending>) {
        let max = self.config.batch_events_max.max(1);
        let wait = Duration::from_millis(self.config.batch_wait_ms);
        let mut batch: Vec<Pending> = Vec::with_capacity(max);
        while let Ok(first) = rx.recv() {
            batch.push(first);
            let deadline = Instant::now() + wait;
            while batch.len() < max {
                match rx.try_recv() {
                    Ok(p) => batch.push(p),
                    Err(_) => {
                        let left = deadline.saturating_duration_since(Instant::now());
                        if left.is_zero() {
                            break;
                        }
                        match rx.recv_timeout(left) {
                            Ok(p) => batch.push(p),
                            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {
                                break;
                            }
                        }
                    }
                }
            }
            self.commit(&mut batch);
        }
    }

    /// Sign the policy's follow-up events with the log's key and put them first in line.
    pub(super) fn queue_followups(&self, queue: &mut VecDeque<Pending>) {
        let followups = self.policy.followups();
        for event in followups.into_iter().rev() {
            match event.sign(self.signer.signing_key()) {
                Ok(event) => queue.push_front(Pending { event, reply: None }),
                Err(e) => tracing::error!(error = %e, "cannot sign the log's own event"),
            }
        }
    }

    /// When this batch crossed a multiple of `snapshot_every`, store the policy's state as
    /// the snapshot (unsynced: a lost snapshot costs a longer restart, nothing else).
    pub(super) fn maybe_snapshot(&self, size: TreeSize, root: RootHash, before: TreeSize) {
        let every = self.config.snapshot_every;
        if every == 0 || size.0 / every == before.0 / every {
            return;
        }
        let Some(state) = self.policy.snapshot() else {
            return;
        };
        let mut batch = Batch::new();
        batch.put(
            keys::META_SNAPSHOT.to_vec(),
            snapshot_value(size, root, &state),
        );
        if let Err(e) = self.shared.storage.write(batch, false) {
            tracing::warn!(error = %e, "cannot store the policy snapshot");
        }
    }

    pub(super) fn remember_checkpoint(&mut self, size: TreeSize, root: RootHash) {
        if self.window.len() >= NONCE_WINDOW_CHECKPOINTS {
            self.window.pop_front();
        }
        self.window.push_back((size, root));
    }

    pub(super) fn commit(&mut self, pending: &mut Vec<Pending>) {
        // A fence set while these waited in the queue: none of them is written.
        if let Some(reason) = self.shared.fenced.read().clone() {
            for p in pending.drain(..) {
                p.answer(Err(AppendError::Fenced {
                    reason: reason.clone(),
                }));
            }
            return;
        }
        let now = self.clock.now();
        let before = self.frontier.clone();
        let mut staged = Staged::new();
        let mut accepted: Vec<(Pending, LeafIndex)> = Vec::with_capacity(pending.len());
        let mut queue: VecDeque<Pending> = pending.drain(..).collect();
        let mut refused: Vec<(Pending, AppendError)> = Vec::new();
        // Events the log held already, answered with their original entry once this batch
        // is durable (an entry of this batch is not acknowledged before that).
        let mut held: Vec<(Pending, LeafIndex)> = Vec::new();
        while let Some(p) = queue.pop_front() {
            // A re-sent event gets its original receipt, whatever its time: a client that
            // lost an answer may retry, and nothing is appended twice.
            let leaf = p.event.leaf_hash();
            let checked = match staged.in_batch(&leaf).or_else(|| self.recent.get(&leaf)) {
                Some(index) => Err(AppendError::AlreadyHeld { index }),
                None => Ok(()),
            }
            .and_then(|()| {
                check_time(p.event.event().time, now, self.config.time_skew_ms)
                    .map_err(AppendError::from)
            })
            .and_then(|()| {
                staged.check(
                    &self.shared.storage,
                    self.policy.as_ref(),
                    &p.event,
                    self.frontier.size().0,
                    &self.window,
                )
            });
            let claimed = match checked {
                Ok(claimed) => claimed,
                Err(AppendError::AlreadyHeld { index }) => {
                    held.push((p, index));
                    continue;
                }
                Err(e) => {
                    // Answered once the batch is written: a refusal that made the log append
                    // something (a quarantine) is answered after that is durable.
                    refused.push((p, e));
                    self.queue_followups(&mut queue);
                    continue;
                }
            };
            debug_assert_eq!(
                self.frontier.size().0,
                before.size().0 + accepted.len() as u64
            );
            let index = staged.accept(&mut self.frontier, self.policy.as_ref(), &p.event, claimed);
            accepted.push((p, index));
            self.queue_followups(&mut queue);
        }
        if accepted.is_empty() {
            self.policy.finish(true);
            answer_held(held, &self.shared.latest.read());
            answer_refused(refused);
            return;
        }
        let size = self.frontier.size();
        let root = self.frontier.root();
        if let Err(e) = add_strata(&self.shared.storage, &mut staged.write, &staged.written) {
            tracing::error!(error = %e, "cannot assemble a stratum blob; the batch is refused");
            self.frontier = before;
            self.policy.finish(false);
            for (p, _) in accepted {
                p.answer(Err(AppendError::Storage(e.clone())));
            }
            answer_held_unless_beyond(held, &self.shared.latest.read(), &e);
            answer_refused(refused);
            return;
        }
        let result =
            sign_checkpoint(&self.signer, &self.config.origin, size, root).and_then(|note| {
                let mut write = std::mem::take(&mut staged.write);
                write.put(keys::checkpoint(size.0).to_vec(), note.clone().into_bytes());
                write.put(keys::META_SIZE.to_vec(), size.0.to_be_bytes().to_vec());
                self.shared.storage.write(write, true)?;
                Ok(note)
            });
        match result {
            Ok(note) => {
                // Durable now: the new nodes may enter the cache, where every receipt's
                // proof will look for them.
                for (level, index, hash) in &staged.written {
                    self.shared.cache.put(*level, *index, *hash);
                }
                let published = Arc::new(Published { size, root, note });
                self.shared.set_latest(Arc::clone(&published));
                self.policy.finish(true);
                self.maybe_snapshot(size, root, before.size());
                self.remember_checkpoint(size, root);
                for (p, index) in accepted {
                    let leaf_hash = p.event.leaf_hash();
                    self.recent.insert(leaf_hash, index);
                    p.answer(Ok(Appended {
                        index,
                        leaf_hash,
                        checkpoint: Arc::clone(&published),
                    }));
                }
                answer_held(held, &published);
            }
            Err(StorageError::Deposed(reason)) => {
                // Another node holds the store now: nothing of this batch was written, and
                // what the store holds past `before` is the other node's, not this batch.
                self.policy.finish(false);
                self.frontier = before;
                LogReader {
                    shared: Arc::clone(&self.shared),
                }
                .depose(reason.clone());
                let e = StorageError::Deposed(reason);
                for (p, _) in accepted {
                    p.answer(Err(AppendError::Storage(e.clone())));
                }
                answer_held_unless_beyond(held, &self.shared.latest.read(), &e);
            }
            Err(e) => {
                tracing::error!(error = %e, "batch write failed; nothing in it is acknowledged");
                self.policy.finish(false);
                // A failed write may still have landed (a WAL record written before a failed
                // fsync is replayed on reopen), so the next batch must continue from what
                // storage holds, never from the assumption that nothing landed.
                let before_size = before.size();
                self.frontier = before;
                if let Ok(Some((frontier, note))) = recover(&self.shared.storage)
                    && frontier.size() > self.frontier.size()
                {
                    tracing::warn!(size = %frontier.size(), "the failed batch is in storage after all; continuing after it");
                    let published = Published {
                        size: frontier.size(),
                        root: frontier.root(),
                        note,
                    };
                    self.shared.set_latest(Arc::new(published));
                    self.frontier = frontier;
                    // What landed must reach the policy too: rebuild it from storage.
                    // The policy holds the state as of `before` (the batch was forgotten):
                    // what follows it must reach the policy.
                    if let Err(e) = replay_tracked(
                        &self.shared.storage,
                        self.policy.as_ref(),
                        before_size,
                        self.frontier.size(),
                    ) {
                        tracing::error!(error = %e, "cannot rebuild the append policy's state");
                    }
                    if let Ok(window) =
                        recent_checkpoints(&self.shared.storage, self.frontier.size())
                    {
                        self.window = window;
                    }
                }
                let landed = self.frontier.size();
                for (p, index) in accepted {
                    if index.0 < landed.0 {
                        // It is in storage after all: never appended again.
                        self.recent.insert(p.event.leaf_hash(), index);
                    }
                    p.answer(Err(AppendError::Storage(e.clone())));
                }
                answer_held_unless_beyond(held, &self.shared.latest.read(), &e);
            }
        }
        answer_refused(refused);
    }
}

/// Answer events the log held already with their entry under `checkpoint`.
pub(super) fn answer_held(held: Vec<(Pending, LeafIndex)>, checkpoint: &Arc<Published>) {
    for (p, index) in held {
        let leaf_hash = p.event.leaf_hash();
        p.answer(Ok(Appended {
            index,
            leaf_hash,
            checkpoint: Arc::clone(checkpoint),
        }));
    }
}

/// After a failed write: events held by earlier batches still get their receipt; those
/// that were first sent in the failed batch get its error.
pub(super) fn answer_held_unless_beyond(
    held: Vec<(Pending, LeafIndex)>,
    checkpoint: &Arc<Published>,
    error: &StorageError,
) {
    let (durable, lost): (Vec<_>, Vec<_>) = held
        .into_iter()
        .partition(|(_, index)| index.0 < checkpoint.size.0);
    answer_held(durable, checkpoint);
    for (p, _) in lost {
        p.answer(Err(AppendError::Storage(error.clone())));
    }
}

pub(super) fn answer_refused(refused: Vec<(Pending, AppendError)>) {
    for (p, e) in refused {
        p.answer(Err(e));
    }
}
