//! Reopening a stored log: its right edge, its latest checkpoints, its tracked entries.

#[allow(clippy::wildcard_imports)]
use super::*;

pub(super) fn sign_checkpoint(
    signer: &NoteSigner,
    origin: &str,
    size: TreeSize,
    root: RootHash,
) -> Result<String, StorageError> {
    let cp = Checkpoint {
        origin: origin.to_string(),
        size,
        root,
        extensions: Vec::new(),
    };
    cp.sign(signer)
        .map_err(|e| StorageError::Backend(format!("cannot sign checkpoint: {e}")))
}

/// The body of a checkpoint this log stored.
pub(super) fn note_body(note: &str) -> Result<Checkpoint, StorageError> {
    let body = note.split("\n\n").next().unwrap_or("");
    Checkpoint::parse_body(&format!("{body}\n"))
        .map_err(|e| StorageError::Corrupt(format!("stored checkpoint: {e}")))
}

/// The right edge and latest checkpoint of a stored log, `None` if the store is empty.
/// The checkpoint must describe the stored tree: the chain is asserted on read too.
pub(super) fn recover<S: Storage>(storage: &S) -> Result<Option<(Frontier, String)>, StorageError> {
    let Some(raw) = storage.get(keys::META_SIZE)? else {
        return Ok(None);
    };
    let size = keys::trailing_u64(&raw)
        .filter(|_| raw.len() == 8)
        .ok_or_else(|| StorageError::Corrupt("size is not 8 bytes".into()))?;
    let frontier = Frontier::from_source(&StoredNodes(storage, None), TreeSize(size)).map_err(
        |e| match e {
            ProofError::Source(s) => s,
            other => StorageError::Corrupt(other.to_string()),
        },
    )?;
    let note = storage
        .get(&keys::checkpoint(size))?
        .ok_or_else(|| StorageError::Corrupt(format!("no checkpoint at the stored size {size}")))?;
    let note = String::from_utf8(note)
        .map_err(|_| StorageError::Corrupt("checkpoint is not UTF-8".into()))?;
    let body = note_body(&note)?;
    let root = frontier.root();
    if body.size.0 != size || body.root != root {
        return Err(StorageError::Corrupt(format!(
            "checkpoint says size {} root {} but the stored tree has size {size} root {root}",
            body.size, body.root
        )));
    }
    Ok(Some((frontier, note)))
}

/// The last [`NONCE_WINDOW_CHECKPOINTS`] checkpoints (size, root) of a stored log of `size`,
/// oldest first. Checkpoints are keyed by size, so the scan walks back from `size` over a
/// span that doubles until it holds enough of them (or reaches size 0).
pub(super) fn recent_checkpoints<S: Storage>(
    storage: &S,
    size: TreeSize,
) -> Result<VecDeque<(TreeSize, RootHash)>, StorageError> {
    let want = NONCE_WINDOW_CHECKPOINTS;
    let mut span = want as u64;
    loop {
        let from = size.0.saturating_sub(span);
        let end = keys::checkpoint(size.0.saturating_add(1));
        let found = storage.scan(&keys::checkpoint(from), &end, usize::MAX)?;
        if found.len() >= want || from == 0 {
            let skip = found.len().saturating_sub(want);
            return found
                .into_iter()
                .skip(skip)
                .map(|(_, note)| {
                    let note = String::from_utf8(note)
                        .map_err(|_| StorageError::Corrupt("checkpoint is not UTF-8".into()))?;
                    let body = note_body(&note)?;
                    Ok((body.size, body.root))
                })
                .collect();
        }
        span = span.saturating_mul(4);
    }
}

/// Hand the stored entries of the tracked kinds ([`is_tracked`]) to `policy`, in log order, so a policy
/// with state (manifests, identities) resumes where it stopped.
pub(super) fn replay_tracked<S: Storage>(
    storage: &S,
    policy: &dyn AppendPolicy,
    from: TreeSize,
    size: TreeSize,
) -> Result<(), StorageError> {
    for_each_tracked(storage, from, size, &mut |event, index| {
        policy.accepted(&event, index)
    })?;
    policy.finish(true);
    policy.resumed(size);
    Ok(())
}

/// Every stored entry of a tracked kind from `start` to below `size`, in log order.
pub(super) fn for_each_tracked<S: Storage>(
    storage: &S,
    start: TreeSize,
    size: TreeSize,
    f: &mut dyn FnMut(SignedEvent, LeafIndex),
) -> Result<(), StorageError> {
    const PAGE: usize = 256;
    let end = keys::tracked(size.0);
    let mut from = keys::tracked(start.0);
    loop {
        let page = storage.scan(&from, &end, PAGE)?;
        for (key, _) in &page {
            let index = keys::trailing_u64(key)
                .ok_or_else(|| StorageError::Corrupt("tracked key is not 9 bytes".into()))?;
            let bytes = storage.get(&keys::entry(index))?.ok_or_else(|| {
                StorageError::Corrupt(format!("tracked entry {index} is missing"))
            })?;
            let event = SignedEvent::from_bytes(&bytes)
                .map_err(|e| StorageError::Corrupt(format!("entry {index} does not parse: {e}")))?;
            f(event, LeafIndex(index));
        }
        match page.last() {
            Some((key, _)) if page.len() == PAGE => {
                let next = keys::trailing_u64(key)
                    .unwrap_or(u64::MAX)
                    .saturating_add(1);
                from = keys::tracked(next);
            }
            _ => break,
        }
    }
    Ok(())
}
