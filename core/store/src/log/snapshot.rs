//! Snapshots of the append policy's state (`m/snapshot`), checked before they are used.

#[allow(clippy::wildcard_imports)]
use super::*;

pub(super) const SNAPSHOT_MAGIC: &[u8] = b"govern-snapshot/v1\n";

/// A stored snapshot: magic ‖ size (u64 BE) ‖ tree root ‖ SHA-256(state) ‖ state.
pub(super) fn snapshot_value(size: TreeSize, root: RootHash, state: &[u8]) -> Vec<u8> {
    use sha2::Digest as _;
    let mut v = Vec::with_capacity(SNAPSHOT_MAGIC.len() + 72 + state.len());
    v.extend_from_slice(SNAPSHOT_MAGIC);
    v.extend_from_slice(&size.0.to_be_bytes());
    v.extend_from_slice(root.hash().as_bytes());
    v.extend_from_slice(&sha2::Sha256::digest(state));
    v.extend_from_slice(state);
    v
}

/// Hand the stored snapshot to `policy` if it names a size of this log with this log's root
/// at that size and its checksum holds; the size to replay tracked entries from. `None`
/// (replay from zero) when there is none or any check fails.
pub(super) fn restore_snapshot<S: Storage>(
    shared: &Arc<Shared<S>>,
    policy: &dyn AppendPolicy,
    size: TreeSize,
) -> Option<TreeSize> {
    use sha2::Digest as _;
    let value = match shared.storage.get(keys::META_SNAPSHOT) {
        Ok(Some(v)) => v,
        Ok(None) => return None,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the policy snapshot; replaying from zero");
            return None;
        }
    };
    let refuse = |why: &str| {
        tracing::warn!(why, "the policy snapshot is not used; replaying from zero");
        None
    };
    let Some(rest) = value.strip_prefix(SNAPSHOT_MAGIC) else {
        return refuse("unknown format");
    };
    if rest.len() < 72 {
        return refuse("truncated");
    }
    let (head, state) = rest.split_at(72);
    let at = TreeSize(u64::from_be_bytes(head[..8].try_into().unwrap_or_default()));
    if at > size {
        return refuse("it is of a size beyond the log");
    }
    let reader = LogReader {
        shared: Arc::clone(shared),
    };
    match reader.root_at(at) {
        Ok(r) if r.hash().as_bytes() == &head[8..40] => {}
        _ => return refuse("the log's root at its size is not the one it names"),
    }
    if sha2::Sha256::digest(state).as_slice() != &head[40..72] {
        return refuse("its checksum does not hold");
    }
    match policy.restore(state) {
        Ok(()) => {
            tracing::info!(size = %at, "policy state restored from its snapshot");
            Some(at)
        }
        Err(e) => refuse(&e),
    }
}
