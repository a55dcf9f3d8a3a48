//! The key layout. Big-endian numbers, so byte order is numeric order and scans walk tiles.

pub(crate) const META_SIZE: &[u8] = b"m/size";
/// The size of the latest checkpoint stored with a witness quorum of cosignatures.
pub(crate) const META_COSIGNED: &[u8] = b"m/cosigned";
/// The append policy's latest state snapshot (see `log::snapshot_value`).
pub(crate) const META_SNAPSHOT: &[u8] = b"m/snapshot";

pub(crate) fn entry(index: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = b'e';
    k[1..].copy_from_slice(&index.to_be_bytes());
    k
}

pub(crate) fn node(level: u8, index: u64) -> [u8; 10] {
    let mut k = [0u8; 10];
    k[0] = b'n';
    k[1] = level;
    k[2..].copy_from_slice(&index.to_be_bytes());
    k
}

pub(crate) fn checkpoint(size: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = b'c';
    k[1..].copy_from_slice(&size.to_be_bytes());
    k
}

/// The number at the end of a key made above.
pub(crate) fn trailing_u64(key: &[u8]) -> Option<u64> {
    let tail: [u8; 8] = key.get(key.len().checked_sub(8)?..)?.try_into().ok()?;
    Some(u64::from_be_bytes(tail))
}

/// A stratum blob: every node of tree levels `8·stratum .. 8·stratum + 7` under one complete
/// 256-wide tile of level `8·stratum`, so a proof reads its lower eight levels at once.
pub(crate) fn stratum(stratum: u8, tile: u64) -> [u8; 10] {
    let mut k = [0u8; 10];
    k[0] = b'b';
    k[1] = stratum;
    k[2..].copy_from_slice(&tile.to_be_bytes());
    k
}

/// The leaf-hash index: `h` ‖ leaf hash → the index (u64 BE) of the entry with that leaf
/// hash (the latest, should one leaf be appended twice). Written with the entry.
pub(crate) fn leaf(hash: &[u8; 32]) -> [u8; 33] {
    let mut k = [0u8; 33];
    k[0] = b'h';
    k[1..].copy_from_slice(hash);
    k
}

/// The uniqueness index: `u` ‖ SHA-256(uniqueness key) → the index (u64 BE) of the entry
/// that claimed the key. Written with the entry; a second claim is refused.
pub(crate) fn unique(key: &str) -> [u8; 33] {
    use sha2::Digest as _;
    let mut k = [0u8; 33];
    k[0] = b'u';
    k[1..].copy_from_slice(&sha2::Sha256::digest(key.as_bytes()));
    k
}

/// An index stored as the value of [`leaf`] or [`unique`].
pub(crate) fn index_value(value: &[u8]) -> Option<u64> {
    trailing_u64(value).filter(|_| value.len() == 8)
}

/// An entry of a tracked kind (`i` ‖ index, empty value): see [`crate::log::is_tracked`].
pub(crate) fn tracked(index: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = b'i';
    k[1..].copy_from_slice(&index.to_be_bytes());
    k
}
