//! C2SP `tlog-tiles` coordinates: which tree nodes a tile holds, and the paths that name
//! tiles (`tile/<L>/<N>[.p/<W>]`, `tile/entries/<N>[.p/<W>]`).
//!
//! A tile at level `L` holds the hashes of tree level `8·L`; tile `N` holds the nodes
//! `256·N .. 256·N + W` of that level. Entry bundle `N` holds entries `256·N .. 256·N + W`.

use std::fmt;

use crate::ids::TreeSize;

/// Tree levels per tile.
pub const TILE_HEIGHT: u8 = 8;
/// Hashes (or entries) in a full tile.
pub const TILE_WIDTH: u64 = 1 << TILE_HEIGHT;
/// The highest tile level a path may name (C2SP: 0–63).
pub const TILE_LEVEL_MAX: u8 = 63;

/// What a tile path names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Tile {
    /// Hashes of tree level `8·level`.
    Hashes {
        /// Tile level.
        level: u8,
        /// Tile index within the level.
        index: u64,
        /// `None` for a full tile, else the partial width 1..=255.
        partial: Option<u8>,
    },
    /// An entry bundle.
    Entries {
        /// Bundle index.
        index: u64,
        /// `None` for a full bundle, else the partial width 1..=255.
        partial: Option<u8>,
    },
}

/// Why a tile path is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TilePathError {
    /// The path is not of the C2SP form.
    #[error("not a C2SP tile path: {0}")]
    Malformed(String),
}

impl Tile {
    /// The number of items (hashes or entries) the path asks for.
    #[must_use]
    pub fn width(&self) -> u64 {
        match self {
            Tile::Hashes { partial, .. } | Tile::Entries { partial, .. } => {
                partial.map_or(TILE_WIDTH, u64::from)
            }
        }
    }

    /// The index of the tile within its level (or of the bundle).
    #[must_use]
    pub fn index(&self) -> u64 {
        match self {
            Tile::Hashes { index, .. } | Tile::Entries { index, .. } => *index,
        }
    }

    /// Whether a tree of `size` already holds every item this tile names. Tiles never
    /// change once they exist, so a partial tile narrower than what the tree holds is
    /// served too (it is a prefix of the wider one).
    #[must_use]
    pub fn exists_at(&self, size: TreeSize) -> bool {
        let available = match self {
            Tile::Hashes { level, .. } => {
                let shift = u32::from(*level) * u32::from(TILE_HEIGHT);
                if shift >= 64 { 0 } else { size.0 >> shift }
            }
            Tile::Entries { .. } => size.0,
        };
        self.index()
            .checked_mul(TILE_WIDTH)
            .and_then(|start| start.checked_add(self.width()))
            .is_some_and(|end| end <= available)
    }

    /// Parse the part of a URL path after `tile/`.
    ///
    /// # Errors
    /// [`TilePathError::Malformed`] for anything that is not exactly the C2SP form:
    /// level 0–63 without leading zeros, index in 3-digit elements with `x` on all but the
    /// last, optional `.p/<W>` with W in 1–255 without leading zeros.
    pub fn parse(path: &str) -> Result<Tile, TilePathError> {
        let bad = || TilePathError::Malformed(path.chars().take(128).collect());
        let mut parts: Vec<&str> = path.split('/').collect();
        if parts.len() < 2 || parts.len() > 12 {
            return Err(bad());
        }
        let head = parts.remove(0);
        let mut partial = None;
        if parts.len() >= 2 && parts[parts.len() - 2].ends_with(".p") {
            let w = parts.pop().ok_or_else(bad)?;
            let w = parse_decimal(w).ok_or_else(bad)?;
            partial = Some(u8::try_from(w).ok().filter(|w| *w >= 1).ok_or_else(bad)?);
            let last = parts.len() - 1;
            parts[last] = parts[last].strip_suffix(".p").ok_or_else(bad)?;
        }
        let index = parse_index(&parts).ok_or_else(bad)?;
        if head == "entries" {
            return Ok(Tile::Entries { index, partial });
        }
        let level = parse_decimal(head)
            .and_then(|l| u8::try_from(l).ok())
            .filter(|l| *l <= TILE_LEVEL_MAX)
            .ok_or_else(bad)?;
        Ok(Tile::Hashes {
            level,
            index,
            partial,
        })
    }
}

/// Every tile of a tree of `size`, as a C2SP `tlog-tiles` server holds them: for each hash
/// level with any hash, its full tiles and its partial right edge; and the entry bundles
/// likewise. Hash levels first, bottom up, then the bundles.
#[must_use]
pub fn tiles_at(size: TreeSize) -> Vec<Tile> {
    fn widths(count: u64) -> impl Iterator<Item = (u64, Option<u8>)> {
        let full = count / TILE_WIDTH;
        let rest = count % TILE_WIDTH;
        (0..full)
            .map(|i| (i, None))
            .chain((rest > 0).then(|| (full, u8::try_from(rest).ok())))
    }
    let mut out = Vec::new();
    for level in 0u8.. {
        let shift = u32::from(level) * u32::from(TILE_HEIGHT);
        let count = if shift >= 64 { 0 } else { size.0 >> shift };
        if count == 0 {
            break;
        }
        out.extend(widths(count).map(|(index, partial)| Tile::Hashes {
            level,
            index,
            partial,
        }));
    }
    out.extend(widths(size.0).map(|(index, partial)| Tile::Entries { index, partial }));
    out
}

impl fmt::Display for Tile {
    /// The path relative to the log's prefix, e.g. `tile/0/x001/x234/067.p/8`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (head, index, partial) = match self {
            Tile::Hashes {
                level,
                index,
                partial,
            } => (level.to_string(), *index, *partial),
            Tile::Entries { index, partial } => ("entries".to_string(), *index, *partial),
        };
        write!(f, "tile/{head}/{}", format_index(index))?;
        if let Some(w) = partial {
            write!(f, ".p/{w}")?;
        }
        Ok(())
    }
}

/// `1234067` → `x001/x234/067`.
#[must_use]
pub fn format_index(mut n: u64) -> String {
    let mut groups = vec![format!("{:03}", n % 1000)];
    n /= 1000;
    while n > 0 {
        groups.push(format!("x{:03}", n % 1000));
        n /= 1000;
    }
    groups.reverse();
    groups.join("/")
}

fn parse_index(parts: &[&str]) -> Option<u64> {
    let (last, init) = parts.split_last()?;
    let mut n: u64 = 0;
    for (i, p) in init.iter().enumerate() {
        let digits = p.strip_prefix('x')?;
        let d = three_digits(digits)?;
        // No leading all-zero group: the encoding of a number is unique.
        if i == 0 && d == 0 {
            return None;
        }
        n = n.checked_mul(1000)?.checked_add(d)?;
    }
    n.checked_mul(1000)?.checked_add(three_digits(last)?)
}

fn three_digits(s: &str) -> Option<u64> {
    (s.len() == 3 && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok())?
}

fn parse_decimal(s: &str) -> Option<u64> {
    let ok = !s.is_empty()
        && s.len() <= 20
        && s.bytes().all(|b| b.is_ascii_digit())
        && (s == "0" || !s.starts_with('0'));
    ok.then(|| s.parse().ok())?
}

/// The entry bundle format: each entry prefixed by its length as a big-endian `u16`.
#[must_use]
pub fn encode_bundle<'a>(entries: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        // Events are at most EVENT_BYTES_MAX = u16::MAX bytes, checked at append.
        let len = u16::try_from(e.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(e);
    }
    out
}

/// Split an entry bundle back into entries.
///
/// # Errors
/// [`TilePathError::Malformed`] when a length runs past the end.
pub fn decode_bundle(mut bytes: &[u8]) -> Result<Vec<Vec<u8>>, TilePathError> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let (len, rest) = bytes
            .split_first_chunk::<2>()
            .ok_or_else(|| TilePathError::Malformed("bundle ends inside a length".into()))?;
        let len = usize::from(u16::from_be_bytes(*len));
        if rest.len() < len {
            return Err(TilePathError::Malformed(
                "bundle ends inside an entry".into(),
            ));
        }
        let (entry, rest) = rest.split_at(len);
        out.push(entry.to_vec());
        bytes = rest;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_round_trip() {
        for (tile, path) in [
            (
                Tile::Hashes {
                    level: 0,
                    index: 1_234_067,
                    partial: None,
                },
                "tile/0/x001/x234/067",
            ),
            (
                Tile::Hashes {
                    level: 1,
                    index: 0,
                    partial: Some(8),
                },
                "tile/1/000.p/8",
            ),
            (
                Tile::Entries {
                    index: 1000,
                    partial: None,
                },
                "tile/entries/x001/000",
            ),
            (
                Tile::Entries {
                    index: 5,
                    partial: Some(255),
                },
                "tile/entries/005.p/255",
            ),
        ] {
            assert_eq!(tile.to_string(), path);
            assert_eq!(
                Tile::parse(path.strip_prefix("tile/").expect("prefix")),
                Ok(tile)
            );
        }
    }

    #[test]
    fn malformed_paths_are_refused() {
        for bad in [
            "0",
            "0/1",
            "0/01",
            "0/0001",
            "0/x000/001",
            "00/000",
            "64/000",
            "0/000.p/0",
            "0/000.p/256",
            "0/000.p/08",
            "0/000.p",
            "entries/000.p/",
            "x/000",
            "0/x1/000",
            "0/000/",
            "-1/000",
            "0/00a",
            "0/000.q/8",
            "entries/x000/000",
        ] {
            assert!(Tile::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn existence_follows_the_tree_size() {
        let full0 = Tile::Hashes {
            level: 0,
            index: 0,
            partial: None,
        };
        assert!(!full0.exists_at(TreeSize(255)));
        assert!(full0.exists_at(TreeSize(256)));
        let p = Tile::Hashes {
            level: 0,
            index: 1,
            partial: Some(3),
        };
        assert!(!p.exists_at(TreeSize(258)));
        assert!(p.exists_at(TreeSize(259)));
        let l1 = Tile::Hashes {
            level: 1,
            index: 0,
            partial: Some(1),
        };
        assert!(!l1.exists_at(TreeSize(255)));
        assert!(l1.exists_at(TreeSize(256)));
        let huge = Tile::Entries {
            index: u64::MAX,
            partial: None,
        };
        assert!(!huge.exists_at(TreeSize(u64::MAX)));
    }

    #[test]
    fn bundles_round_trip_and_refuse_truncation() {
        let entries: Vec<&[u8]> = vec![b"a", b"", b"hello"];
        let bundle = encode_bundle(entries.iter().copied());
        assert_eq!(bundle, b"\x00\x01a\x00\x00\x00\x05hello");
        assert_eq!(
            decode_bundle(&bundle).expect("decodes"),
            vec![b"a".to_vec(), vec![], b"hello".to_vec()]
        );
        assert!(decode_bundle(&bundle[..bundle.len() - 1]).is_err());
        assert!(decode_bundle(&[0]).is_err());
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tiles_at_tests {
    use super::*;

    fn names(size: u64) -> Vec<String> {
        tiles_at(TreeSize(size))
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn every_tile_of_a_tree_and_no_other() {
        assert!(names(0).is_empty());
        assert_eq!(names(1), ["tile/0/000.p/1", "tile/entries/000.p/1"]);
        assert_eq!(
            names(256),
            ["tile/0/000", "tile/1/000.p/1", "tile/entries/000"]
        );
        let big = 256 * 256 + 3;
        let all = tiles_at(TreeSize(big));
        assert!(all.iter().all(|t| t.exists_at(TreeSize(big))));
        // 256 full level-0 tiles and a partial one, one full level-1 tile, a partial
        // level-2 tile of one hash, and the bundles as level 0.
        assert_eq!(all.len(), 257 + 1 + 1 + 257);
        assert!(names(big).contains(&"tile/0/256.p/3".to_string()));
        assert!(names(big).contains(&"tile/2/000.p/1".to_string()));
    }
}
