//! Stratum blobs: when the 256 nodes of tree level `8·s` under one tile are complete, the
//! sequencer also writes every node of levels `8·s .. 8·s + 7` under that tile as one value
//! (510 hashes, 16,320 bytes), in level order. A random inclusion proof then reads one value
//! per eight tree levels instead of one per level, which matters once the log outgrows the
//! caches and each read is a disk read. The individual node keys stay: they serve tiles, the
//! right edge and proofs inside tiles that are not complete yet.

use govern_core::ids::Hash;
use govern_core::tiles::{TILE_HEIGHT, TILE_WIDTH};

use crate::keys;
use crate::storage::{Storage, StorageError};

/// Hashes in one stratum blob: 256 + 128 + … + 2.
pub const STRATUM_HASHES: usize = 2 * TILE_WIDTH as usize - 2;
/// Bytes in one stratum blob.
pub const STRATUM_BYTES: usize = STRATUM_HASHES * 32;

/// Where node (`level`, `index`) lives in a blob: `(stratum, tile, byte offset)`.
pub(crate) fn locate(level: u8, index: u64) -> (u8, u64, usize) {
    let stratum = level / TILE_HEIGHT;
    let j = u32::from(level % TILE_HEIGHT);
    let per_tile = TILE_WIDTH >> j;
    let tile = index >> (u32::from(TILE_HEIGHT) - j);
    // Levels below j come first: 256 + 128 + … = 512 - (512 >> j) hashes.
    let before = (2 * TILE_WIDTH - ((2 * TILE_WIDTH) >> j)) as usize;
    let within = (index - tile * per_tile) as usize;
    (stratum, tile, (before + within) * 32)
}

/// Whether the blob (`stratum`, `tile`) exists in a tree of `size` leaves.
pub(crate) fn complete(stratum: u8, tile: u64, size: u64) -> bool {
    let shift = u32::from(stratum + 1) * u32::from(TILE_HEIGHT);
    shift < 64
        && tile
            .checked_add(1)
            .and_then(|t| t.checked_mul(1 << shift))
            .is_some_and(|end| end <= size)
}

/// The blob (`stratum`, `tile`), assembled from stored node keys and `fresh` nodes of the
/// batch being written (which storage does not hold yet).
pub(crate) fn assemble<S: Storage>(
    storage: &S,
    stratum: u8,
    tile: u64,
    fresh: &std::collections::HashMap<(u8, u64), Hash>,
) -> Result<Vec<u8>, StorageError> {
    let mut blob = Vec::with_capacity(STRATUM_BYTES);
    for j in 0..TILE_HEIGHT {
        let level = stratum * TILE_HEIGHT + j;
        let width = TILE_WIDTH >> j;
        let start = tile * width;
        let stored = storage.scan(
            &keys::node(level, start),
            &keys::node(level, start + width),
            width as usize,
        )?;
        let mut stored = stored.into_iter().peekable();
        for i in start..start + width {
            let hash = match stored.peek() {
                Some((k, _)) if keys::trailing_u64(k) == Some(i) => stored.next().map(|(_, v)| v),
                _ => fresh.get(&(level, i)).map(|h| h.as_bytes().to_vec()),
            };
            let hash = hash.filter(|h| h.len() == 32).ok_or_else(|| {
                StorageError::Corrupt(format!(
                    "stratum {stratum} tile {tile}: node {level}/{i} is missing"
                ))
            })?;
            blob.extend_from_slice(&hash);
        }
    }
    Ok(blob)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_cover_the_blob_once() {
        let mut seen = vec![false; STRATUM_HASHES];
        for j in 0..TILE_HEIGHT {
            let width = TILE_WIDTH >> j;
            for i in 3 * width..4 * width {
                let (s, t, off) = locate(8 + j, i);
                assert_eq!((s, t), (1, 3));
                assert!(!seen[off / 32], "offset {off} twice");
                seen[off / 32] = true;
            }
        }
        assert!(seen.iter().all(|s| *s));
    }

    #[test]
    fn completeness_follows_the_size() {
        assert!(!complete(0, 0, 255));
        assert!(complete(0, 0, 256));
        assert!(!complete(0, 1, 511));
        assert!(complete(1, 0, 65_536));
        assert!(!complete(1, 0, 65_535));
        assert!(!complete(7, 0, u64::MAX));
        assert!(!complete(0, u64::MAX, u64::MAX));
    }
}
