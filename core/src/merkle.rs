//! RFC 9162 §2.1 Merkle tree hashing, inclusion and consistency proofs, over SHA-256.
//!
//! The tree is the left-balanced one of RFC 9162 (identical to RFC 6962's and to the C2SP
//! `tlog-tiles` tree): leaves hash as `SHA-256(0x00 || data)`, interior nodes as
//! `SHA-256(0x01 || left || right)`, and the empty tree as `SHA-256("")`.
//!
//! Nothing here walks the whole tree. Hashes are read from a [`NodeSource`] holding the
//! *complete* subtrees that an append-only log stores once and never rewrites; every
//! incomplete subtree a proof needs is folded from `O(log n)` of them. This is what lets
//! a store serve proofs for a log of billions of entries, and the [`Frontier`] lets the
//! sequencer append with `O(log n)` memory.
//!
//! Proof generation and verification deliberately share no code: the verifiers are the
//! bit-twiddling algorithms of RFC 9162 §2.1.3.2 and §2.1.4.2, the provers follow the
//! recursive definitions of §2.1.3.1 and §2.1.4.1, so a mistake in one is not mirrored
//! in the other.

use std::convert::Infallible;

use sha2::{Digest, Sha256};

use crate::ids::{Hash, LeafHash, LeafIndex, RootHash, TreeSize};

const LEAF_PREFIX: u8 = 0x00;
const NODE_PREFIX: u8 = 0x01;

/// `SHA-256(0x00 || data)`: the hash of a leaf (RFC 9162 §2.1.1).
#[must_use]
pub fn hash_leaf(data: &[u8]) -> LeafHash {
    let mut h = Sha256::new();
    h.update([LEAF_PREFIX]);
    h.update(data);
    LeafHash(Hash(h.finalize().into()))
}

/// `SHA-256(0x01 || left || right)`: the hash of an interior node (RFC 9162 §2.1.1).
#[must_use]
pub fn hash_children(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([NODE_PREFIX]);
    h.update(left.0);
    h.update(right.0);
    Hash(h.finalize().into())
}

/// The root of the empty tree: `SHA-256("")` (RFC 9162 §2.1.1).
#[must_use]
pub fn empty_root() -> RootHash {
    RootHash(Hash(Sha256::digest([]).into()))
}

/// Hashes of *complete* subtrees: node `(level, index)` covers leaves
/// `[index << level, (index + 1) << level)`. Level 0 holds the leaf hashes.
///
/// An append-only log never changes a complete subtree, so a store can write each node
/// once, when its last leaf arrives (see [`Frontier::push`]). The functions of this module
/// only ask for nodes that are complete in the tree size they were given; asking a source
/// for a node it does not hold means the caller passed a size larger than the log.
pub trait NodeSource {
    /// Why a node could not be read.
    type Error;

    /// The hash of the complete subtree at `(level, index)`.
    ///
    /// # Errors
    /// When the node cannot be read (I/O, corruption, or a node the source does not hold).
    fn node(&self, level: u8, index: u64) -> Result<Hash, Self::Error>;
}

impl<T: NodeSource + ?Sized> NodeSource for &T {
    type Error = T::Error;

    fn node(&self, level: u8, index: u64) -> Result<Hash, Self::Error> {
        (**self).node(level, index)
    }
}

/// Why a root or proof could not be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProofError<E> {
    /// An inclusion proof was asked for a leaf the tree does not hold.
    #[error("leaf index {index} is not in a tree of size {size}")]
    IndexOutOfRange {
        /// The leaf asked for.
        index: u64,
        /// The tree size asked for.
        size: u64,
    },
    /// A consistency proof from a larger tree to a smaller one, or a range whose end is
    /// before its beginning.
    #[error("size {from} is larger than size {to}")]
    SizeOrder {
        /// The smaller size expected (or the beginning of a range).
        from: u64,
        /// The larger size expected (or the end of a range).
        to: u64,
    },
    /// An empty tree or range where a nonempty one is needed: a consistency proof from
    /// size 0, which RFC 9162 §2.1.4 does not define (`0 < m <= n`) and which would prove
    /// nothing, or [`range_root`] of an empty range.
    #[error("the tree or range is empty")]
    EmptyTree,
    /// [`range_root`] of a range that is not a sequence of aligned complete subtrees, so
    /// that its hash cannot be folded from stored nodes.
    #[error(
        "leaves [{begin}, {end}) do not start on a multiple of the largest power of two <= their count"
    )]
    UnalignedRange {
        /// First leaf of the range.
        begin: u64,
        /// One past the last leaf.
        end: u64,
    },
    /// The [`NodeSource`] failed.
    #[error("reading a tree node: {0}")]
    Source(E),
}

/// Why a proof was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The leaf index is not below the tree size.
    #[error("leaf index {index} is not in a tree of size {size}")]
    IndexOutOfRange {
        /// The claimed index.
        index: u64,
        /// The claimed tree size.
        size: u64,
    },
    /// The proof does not have the number of hashes the sizes and index imply; checked
    /// before any hashing so that a truncated or padded proof gets a precise answer.
    #[error("the proof should have {expected} hashes, it has {got}")]
    WrongProofLength {
        /// How many hashes the index and sizes imply.
        expected: usize,
        /// How many the proof has.
        got: usize,
    },
    /// The proof, run from the leaf (or old root), does not lead to the root(s) given.
    #[error("the proof does not lead to the given root")]
    RootMismatch,
    /// The old size is larger than the new one.
    #[error("old size {from} is larger than new size {to}")]
    SizeOrder {
        /// The claimed old size.
        from: u64,
        /// The claimed new size.
        to: u64,
    },
    /// A consistency proof from the empty tree. RFC 9162 §2.1.4 requires `0 < m`: every
    /// tree extends the empty one, so there is nothing to verify, and accepting it would
    /// let a caller believe something was checked.
    #[error("a consistency proof from the empty tree proves nothing and is refused")]
    EmptyTree,
}

/// The largest power of two strictly below `n`: the `k` of RFC 9162's recursion.
/// Only called with `n >= 2`.
fn split_point(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (n - 1).ilog2()
}

/// Hash of the leaves `[begin, end)` as RFC 9162's `MTH(D[begin:end])`, for the ranges that
/// occur in RFC 9162's recursion: `begin` a multiple of the largest power of two `<=
/// end - begin`. Such a range is a run of aligned complete subtrees, one per set bit of its
/// length, largest first; its hash is theirs folded from the right, so this reads one node
/// per set bit (at most 64).
///
/// # Errors
/// [`ProofError::SizeOrder`] if `begin > end`, [`ProofError::EmptyTree`] if they are equal,
/// [`ProofError::UnalignedRange`] if `begin` is not aligned, [`ProofError::Source`] if a node
/// cannot be read.
pub fn range_root<S: NodeSource>(
    src: &S,
    begin: u64,
    end: u64,
) -> Result<Hash, ProofError<S::Error>> {
    if begin > end {
        return Err(ProofError::SizeOrder {
            from: begin,
            to: end,
        });
    }
    let n = end - begin;
    if n == 0 {
        return Err(ProofError::EmptyTree);
    }
    let top = n.ilog2();
    if begin.trailing_zeros() < top {
        return Err(ProofError::UnalignedRange { begin, end });
    }
    // Reading the smallest subtree first lets the right fold run without a buffer.
    let mut pos = end;
    let mut acc: Option<Hash> = None;
    for level in 0..64u8 {
        if n & (1 << level) == 0 {
            continue;
        }
        pos -= 1 << level;
        let h = src.node(level, pos >> level).map_err(ProofError::Source)?;
        acc = Some(match acc {
            None => h,
            Some(right) => hash_children(&h, &right),
        });
    }
    // n > 0 has a set bit, so the loop assigned `acc`.
    acc.ok_or(ProofError::EmptyTree)
}

/// The root of the tree of `size` leaves: `MTH(D[0:size])`, reading one node per set bit of
/// `size`; [`empty_root`] for size 0.
///
/// # Errors
/// [`ProofError::Source`] if a node cannot be read.
pub fn tree_root<S: NodeSource>(src: &S, size: TreeSize) -> Result<RootHash, ProofError<S::Error>> {
    if size.0 == 0 {
        return Ok(empty_root());
    }
    range_root(src, 0, size.0).map(RootHash)
}

/// The audit path of leaf `index` in the tree of `size` leaves (RFC 9162 §2.1.3.1
/// `PATH(m, D[n])`), in RFC order: the leaf's sibling first, the root's child last.
/// Reads at most `2 * ceil(log2(size))` nodes: one per step down, except the first step
/// whose sibling is not a complete subtree, which costs one per set bit of its size.
///
/// # Errors
/// [`ProofError::IndexOutOfRange`] if `index >= size`, [`ProofError::Source`] if a node
/// cannot be read.
pub fn inclusion_proof<S: NodeSource>(
    src: &S,
    index: LeafIndex,
    size: TreeSize,
) -> Result<Vec<Hash>, ProofError<S::Error>> {
    let (m, n) = (index.0, size.0);
    if m >= n {
        return Err(ProofError::IndexOutOfRange { index: m, size: n });
    }
    // The recursion descends from the root, but the proof lists hashes from the leaf up,
    // so collect top-down and reverse. Every range [lo, hi) visited keeps lo a multiple of
    // a power of two >= hi - lo, which is what `range_root` needs.
    let mut path = Vec::with_capacity(inclusion_proof_len(m, n));
    let (mut lo, mut hi) = (0, n);
    while hi - lo > 1 {
        let k = split_point(hi - lo);
        if m < lo + k {
            path.push(range_root(src, lo + k, hi)?);
            hi = lo + k;
        } else {
            path.push(range_root(src, lo, lo + k)?);
            lo += k;
        }
    }
    path.reverse();
    Ok(path)
}

/// The consistency proof between the trees of `from` and `to` leaves (RFC 9162 §2.1.4.1
/// `PROOF(m, D[n])`), in RFC order. Empty when `from == to`. Reads at most
/// `2 * ceil(log2(to))` nodes, for the same reason as [`inclusion_proof`].
///
/// # Errors
/// [`ProofError::EmptyTree`] if `from == 0` (RFC 9162 requires `0 < m`; every tree extends
/// the empty one), [`ProofError::SizeOrder`] if `from > to`, [`ProofError::Source`] if a node
/// cannot be read.
pub fn consistency_proof<S: NodeSource>(
    src: &S,
    from: TreeSize,
    to: TreeSize,
) -> Result<Vec<Hash>, ProofError<S::Error>> {
    let (m, n) = (from.0, to.0);
    if m == 0 {
        return Err(ProofError::EmptyTree);
    }
    if m > n {
        return Err(ProofError::SizeOrder { from: m, to: n });
    }
    let mut proof = Vec::with_capacity(consistency_proof_len(m, n));
    let (mut lo, mut hi) = (0, n);
    // RFC 9162's flag `b`: whether the subtree being descended is still the old tree's
    // prefix starting at leaf 0, whose hash the verifier already has.
    let mut whole_old_tree = true;
    while m != hi {
        let k = split_point(hi - lo);
        if m <= lo + k {
            proof.push(range_root(src, lo + k, hi)?);
            hi = lo + k;
        } else {
            proof.push(range_root(src, lo, lo + k)?);
            lo += k;
            whole_old_tree = false;
        }
    }
    if !whole_old_tree {
        proof.push(range_root(src, lo, hi)?);
    }
    proof.reverse();
    Ok(proof)
}

/// How many hashes the inclusion proof of `index` in a tree of `size` leaves has; 0 when
/// `index >= size` (there is no such proof).
#[must_use]
pub fn inclusion_proof_len(index: u64, size: u64) -> usize {
    if index >= size {
        return 0;
    }
    let (mut lo, mut hi, mut len) = (0, size, 0);
    while hi - lo > 1 {
        let k = split_point(hi - lo);
        if index < lo + k {
            hi = lo + k;
        } else {
            lo += k;
        }
        len += 1;
    }
    len
}

/// How many hashes the consistency proof from `from` to `to` leaves has; 0 when
/// `from == to`, and also when there is no such proof (`from == 0` or `from > to`).
#[must_use]
pub fn consistency_proof_len(from: u64, to: u64) -> usize {
    if from == 0 || from >= to {
        return 0;
    }
    let (mut lo, mut hi, mut len) = (0, to, 0);
    let mut whole_old_tree = true;
    while from != hi {
        let k = split_point(hi - lo);
        if from <= lo + k {
            hi = lo + k;
        } else {
            lo += k;
            whole_old_tree = false;
        }
        len += 1;
    }
    len + usize::from(!whole_old_tree)
}

/// Checks that `proof` proves leaf `leaf` at `index` in the tree of `size` leaves whose root
/// is `root`, by RFC 9162 §2.1.3.2. The proof must have exactly
/// [`inclusion_proof_len`]`(index, size)` hashes.
///
/// # Errors
/// [`VerifyError::IndexOutOfRange`], [`VerifyError::WrongProofLength`] or
/// [`VerifyError::RootMismatch`].
pub fn verify_inclusion(
    leaf: &LeafHash,
    index: LeafIndex,
    size: TreeSize,
    proof: &[Hash],
    root: &RootHash,
) -> Result<(), VerifyError> {
    let (index, size) = (index.0, size.0);
    if index >= size {
        return Err(VerifyError::IndexOutOfRange { index, size });
    }
    let expected = inclusion_proof_len(index, size);
    let wrong_length = VerifyError::WrongProofLength {
        expected,
        got: proof.len(),
    };
    if proof.len() != expected {
        return Err(wrong_length);
    }
    // RFC 9162 §2.1.3.2, step by step. Its own length checks (sn reaching 0 early or late)
    // cannot fire after the check above; they stay as the RFC's defence in depth.
    let mut f_n = index;
    let mut s_n = size - 1;
    let mut r = leaf.0;
    for p in proof {
        if s_n == 0 {
            return Err(wrong_length);
        }
        if f_n & 1 == 1 || f_n == s_n {
            r = hash_children(p, &r);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            r = hash_children(&r, p);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    if s_n != 0 {
        return Err(wrong_length);
    }
    if r != root.0 {
        return Err(VerifyError::RootMismatch);
    }
    Ok(())
}

/// Checks that `proof` proves the tree of `to` leaves with root `to_root` extends the tree
/// of `from` leaves with root `from_root`, by RFC 9162 §2.1.4.2. When `from == to` the proof
/// must be empty and the roots equal. A proof from size 0 is refused
/// ([`VerifyError::EmptyTree`]).
///
/// # Errors
/// [`VerifyError::EmptyTree`], [`VerifyError::SizeOrder`], [`VerifyError::WrongProofLength`]
/// or [`VerifyError::RootMismatch`].
pub fn verify_consistency(
    from: TreeSize,
    to: TreeSize,
    proof: &[Hash],
    from_root: &RootHash,
    to_root: &RootHash,
) -> Result<(), VerifyError> {
    let (first, second) = (from.0, to.0);
    if first == 0 {
        return Err(VerifyError::EmptyTree);
    }
    if first > second {
        return Err(VerifyError::SizeOrder {
            from: first,
            to: second,
        });
    }
    let expected = consistency_proof_len(first, second);
    let wrong_length = VerifyError::WrongProofLength {
        expected,
        got: proof.len(),
    };
    if proof.len() != expected {
        return Err(wrong_length);
    }
    if first == second {
        return if from_root == to_root {
            Ok(())
        } else {
            Err(VerifyError::RootMismatch)
        };
    }
    // RFC 9162 §2.1.4.2. Step 1 (empty proof) is covered by the length check, since
    // first < second implies a nonempty proof. Step 2 prepends first_hash when first is a
    // power of two; splitting off the seed avoids copying the proof to do so.
    let (seed, rest) = if first.is_power_of_two() {
        (from_root.0, proof)
    } else {
        match proof.split_first() {
            Some((seed, rest)) => (*seed, rest),
            None => return Err(wrong_length),
        }
    };
    let mut f_n = first - 1;
    let mut s_n = second - 1;
    while f_n & 1 == 1 {
        f_n >>= 1;
        s_n >>= 1;
    }
    let mut fr = seed;
    let mut sr = seed;
    for c in rest {
        if s_n == 0 {
            return Err(wrong_length);
        }
        if f_n & 1 == 1 || f_n == s_n {
            fr = hash_children(c, &fr);
            sr = hash_children(c, &sr);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            sr = hash_children(&sr, c);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    if s_n != 0 {
        return Err(wrong_length);
    }
    if fr != from_root.0 || sr != to_root.0 {
        return Err(VerifyError::RootMismatch);
    }
    Ok(())
}

/// Folds subtree hashes, largest (leftmost) first, into the root of the tree they make up.
fn fold_from_right(nodes: impl DoubleEndedIterator<Item = Hash>) -> RootHash {
    nodes
        .rev()
        .reduce(|right, left| hash_children(&left, &right))
        .map_or_else(empty_root, RootHash)
}

/// The right edge of the tree: hashes of the maximal complete subtrees of `[0, size)`, one
/// per set bit of `size` (so at most 64), largest first.
///
/// This is all the state needed to append and to compute the root, so memory stays
/// `O(log n)` however long the log grows. The sequencer appends through it and writes the
/// nodes [`Frontier::push`] reports to its store.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    nodes: Vec<Hash>,
}

impl Frontier {
    /// The frontier of the empty tree.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// How many leaves have been appended.
    #[must_use]
    pub fn size(&self) -> TreeSize {
        TreeSize(self.size)
    }

    /// `(level, index, hash)` of each frontier node, largest first, in the coordinates of
    /// [`NodeSource`].
    pub fn nodes(&self) -> impl Iterator<Item = (u8, u64, Hash)> + '_ {
        frontier_levels(self.size)
            .zip(&self.nodes)
            .map(|((level, index), hash)| (level, index, *hash))
    }

    /// The frontier of the tree of `size` leaves, read from a store of its complete nodes.
    ///
    /// # Errors
    /// [`ProofError::Source`] if a node cannot be read.
    pub fn from_source<S: NodeSource>(
        src: &S,
        size: TreeSize,
    ) -> Result<Self, ProofError<S::Error>> {
        let nodes = frontier_levels(size.0)
            .map(|(level, index)| src.node(level, index).map_err(ProofError::Source))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            size: size.0,
            nodes,
        })
    }

    /// Appends a leaf. Pushes onto `completed`, as `(level, index, hash)`, every node that
    /// this leaf completes: the leaf itself at level 0 first, then each parent up to the
    /// largest new complete subtree. A store that writes these holds every complete node.
    ///
    /// # Panics
    /// If the tree already holds `u64::MAX` leaves.
    pub fn push(&mut self, leaf: LeafHash, completed: &mut Vec<(u8, u64, Hash)>) {
        let old = self.size;
        self.size = old
            .checked_add(1)
            .expect("a log of u64::MAX leaves cannot grow: sizes are u64");
        let mut hash = leaf.0;
        let mut index = old;
        completed.push((0, index, hash));
        // Each trailing 1 bit of the old size is a complete subtree, at the end of the
        // frontier, that the new leaf's subtree now pairs with.
        let mut level = 0u8;
        while (old >> level) & 1 == 1 {
            // A set bit of `old` means a node at that level is on the frontier.
            let Some(left) = self.nodes.pop() else {
                unreachable!("frontier of size {old} lacks a node at level {level}")
            };
            hash = hash_children(&left, &hash);
            index >>= 1;
            level += 1;
            completed.push((level, index, hash));
        }
        self.nodes.push(hash);
    }

    /// The root of the tree: the frontier folded from the right; [`empty_root`] when empty.
    #[must_use]
    pub fn root(&self) -> RootHash {
        fold_from_right(self.nodes.iter().copied())
    }
}

/// `(level, index)` of the frontier nodes of a tree of `size` leaves, largest first.
fn frontier_levels(size: u64) -> impl DoubleEndedIterator<Item = (u8, u64)> {
    (0..64u8)
        .rev()
        .filter(move |level| size & (1 << level) != 0)
        // The node of a set bit is the last complete one at its level.
        .map(move |level| (level, (size >> level) - 1))
}

/// A whole tree in memory: every complete node, level by level. For tests, tools and small
/// logs; a 1 million leaf tree takes 64 MB.
#[derive(Clone, Debug, Default)]
pub struct MemoryTree {
    /// `levels[l][i]` is node `(l, i)`; `levels[0]` are the leaves.
    levels: Vec<Vec<Hash>>,
}

impl MemoryTree {
    /// The empty tree.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a leaf, computing the nodes it completes.
    pub fn push(&mut self, leaf: LeafHash) {
        let mut hash = leaf.0;
        let mut level = 0;
        loop {
            if self.levels.len() == level {
                self.levels.push(Vec::new());
            }
            let row = &mut self.levels[level];
            row.push(hash);
            if row.len() % 2 == 1 {
                break;
            }
            hash = hash_children(&row[row.len() - 2], &hash);
            level += 1;
        }
    }

    /// How many leaves the tree holds.
    #[must_use]
    pub fn size(&self) -> TreeSize {
        TreeSize(self.levels.first().map_or(0, |leaves| leaves.len() as u64))
    }

    /// The root of the whole tree.
    #[must_use]
    pub fn root(&self) -> RootHash {
        let size = self.size().0;
        fold_from_right(frontier_levels(size).map(|(level, index)| {
            self.node(level, index)
                .unwrap_or_else(|never| match never {})
        }))
    }
}

impl FromIterator<LeafHash> for MemoryTree {
    fn from_iter<I: IntoIterator<Item = LeafHash>>(leaves: I) -> Self {
        let mut tree = Self::new();
        tree.extend(leaves);
        tree
    }
}

impl Extend<LeafHash> for MemoryTree {
    fn extend<I: IntoIterator<Item = LeafHash>>(&mut self, leaves: I) {
        for leaf in leaves {
            self.push(leaf);
        }
    }
}

impl NodeSource for MemoryTree {
    type Error = Infallible;

    /// # Panics
    /// If the node is not complete in this tree: the caller asked for a root or proof at a
    /// size larger than the tree, a bug like indexing past the end of a slice.
    fn node(&self, level: u8, index: u64) -> Result<Hash, Infallible> {
        let node = self
            .levels
            .get(usize::from(level))
            .and_then(|row| row.get(usize::try_from(index).ok()?));
        match node {
            Some(hash) => Ok(*hash),
            None => panic!(
                "a MemoryTree of size {} has no complete node at level {level}, index {index}",
                self.size()
            ),
        }
    }
}
