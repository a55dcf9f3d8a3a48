//! `govern_core::merkle` against the RFC 6962 reference vectors, `rs_merkle`, and the
//! `tlog_tiles` port of Go's `golang.org/x/mod/sumdb/tlog`, plus attacks on the verifiers
//! and bounds on how many nodes the provers read.
#![allow(clippy::unwrap_used)]

use std::cell::Cell;
use std::collections::HashSet;

use govern_core::ids::{Hash, LeafHash, LeafIndex, RootHash, TreeSize};
use govern_core::merkle::{
    Frontier, MemoryTree, NodeSource, ProofError, VerifyError, consistency_proof,
    consistency_proof_len, empty_root, hash_children, hash_leaf, inclusion_proof,
    inclusion_proof_len, range_root, tree_root, verify_consistency, verify_inclusion,
};
use rand::{Rng, SeedableRng, rngs::StdRng};
use sha2::{Digest, Sha256};
use tlog_tiles as tlog;

fn leaf(i: u64) -> LeafHash {
    hash_leaf(format!("leaf {i}").as_bytes())
}

fn tree(n: u64) -> MemoryTree {
    (0..n).map(leaf).collect()
}

fn node(tree: &MemoryTree, level: u8, index: u64) -> Hash {
    tree.node(level, index)
        .unwrap_or_else(|never| match never {})
}

fn root(tree: &MemoryTree, size: u64) -> RootHash {
    tree_root(tree, TreeSize(size)).unwrap()
}

fn flip(h: &Hash, bit: usize) -> Hash {
    let mut b = h.0;
    b[(bit / 8) % 32] ^= 1 << (bit % 8);
    Hash(b)
}

fn hx(text: &str) -> Hash {
    Hash::from_hex(text).unwrap()
}

/// Serves a bigger tree's nodes, refusing those not complete at `size`: a prover asking for
/// one would be reading past the tree it was told about.
struct Bounded<'a> {
    tree: &'a MemoryTree,
    size: u64,
}

impl NodeSource for Bounded<'_> {
    type Error = String;

    fn node(&self, level: u8, index: u64) -> Result<Hash, String> {
        if (u128::from(index) + 1) << level > u128::from(self.size) {
            return Err(format!(
                "node ({level}, {index}) is not complete at size {}",
                self.size
            ));
        }
        Ok(node(self.tree, level, index))
    }
}

/// Counts reads.
struct Counting<'a> {
    tree: &'a MemoryTree,
    reads: Cell<usize>,
}

impl NodeSource for Counting<'_> {
    type Error = std::convert::Infallible;

    fn node(&self, level: u8, index: u64) -> Result<Hash, Self::Error> {
        self.reads.set(self.reads.get() + 1);
        self.tree.node(level, index)
    }
}

/// The certificate-transparency / Trillian reference vectors for RFC 6962 (the same hashing
/// as RFC 9162).
#[test]
fn rfc6962_reference_vectors() {
    let data: [&[u8]; 8] = [
        b"",
        b"\x00",
        b"\x10",
        b"\x20\x21",
        b"\x30\x31",
        b"\x40\x41\x42\x43",
        b"\x50\x51\x52\x53\x54\x55\x56\x57",
        b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
    ];
    let roots = [
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];
    let t: MemoryTree = data.iter().map(|d| hash_leaf(d)).collect();
    assert_eq!(empty_root(), RootHash(hx(roots[0])));
    for (size, expected) in roots.iter().enumerate() {
        assert_eq!(root(&t, size as u64), RootHash(hx(expected)), "size {size}");
    }

    let inclusions: [(u64, [&str; 3]); 2] = [
        (
            0,
            [
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            5,
            [
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
    ];
    for (index, path) in inclusions {
        let path: Vec<Hash> = path.iter().map(|h| hx(h)).collect();
        assert_eq!(
            inclusion_proof(&t, LeafIndex(index), TreeSize(8)).unwrap(),
            path
        );
        let leaf = hash_leaf(data[index as usize]);
        verify_inclusion(&leaf, LeafIndex(index), TreeSize(8), &path, &root(&t, 8)).unwrap();
    }

    let consistencies: [(u64, u64, &[&str]); 4] = [
        (1, 1, &[]),
        (
            1,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            6,
            8,
            &[
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            2,
            5,
            &[
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
    ];
    for (m, n, proof) in consistencies {
        let proof: Vec<Hash> = proof.iter().map(|h| hx(h)).collect();
        assert_eq!(
            consistency_proof(&t, TreeSize(m), TreeSize(n)).unwrap(),
            proof
        );
        verify_consistency(TreeSize(m), TreeSize(n), &proof, &root(&t, m), &root(&t, n)).unwrap();
    }
}

/// `rs_merkle` builds its tree bottom-up, pairing neighbours level by level. Its default
/// `concat_and_hash` already promotes a node with no right sibling unchanged, which is what
/// makes a bottom-up tree equal RFC 9162's left-balanced one; the domain separation is
/// what must be added: the leaves are given pre-hashed and interior nodes get the 0x01
/// prefix, computed here with sha2 directly rather than with `hash_children`.
#[derive(Clone)]
struct Rfc9162;

impl rs_merkle::Hasher for Rfc9162 {
    type Hash = [u8; 32];

    fn hash(data: &[u8]) -> [u8; 32] {
        Sha256::digest(data).into()
    }

    fn concat_and_hash(left: &[u8; 32], right: Option<&[u8; 32]>) -> [u8; 32] {
        match right {
            Some(right) => {
                let mut h = Sha256::new();
                h.update([1]);
                h.update(left);
                h.update(right);
                h.finalize().into()
            }
            None => *left,
        }
    }
}

#[test]
fn roots_match_rs_merkle_and_memory_tree_frontier_and_tree_root_agree() {
    const N: u64 = 600;
    let leaves: Vec<[u8; 32]> = (0..N).map(|i| leaf(i).0.0).collect();
    let mut mem = MemoryTree::new();
    let mut frontier = Frontier::new();
    let mut completed = Vec::new();
    assert_eq!(mem.root(), empty_root());
    assert_eq!(frontier.root(), empty_root());
    assert_eq!(tree_root(&mem, TreeSize(0)).unwrap(), empty_root());
    for size in 1..=N {
        mem.push(leaf(size - 1));
        frontier.push(leaf(size - 1), &mut completed);
        let reference =
            rs_merkle::MerkleTree::<Rfc9162>::from_leaves(&leaves[..size as usize]).root();
        let reference = RootHash(Hash(reference.unwrap()));
        assert_eq!(mem.root(), reference, "MemoryTree at size {size}");
        assert_eq!(frontier.root(), reference, "Frontier at size {size}");
        assert_eq!(root(&mem, size), reference, "tree_root at size {size}");
        assert_eq!(mem.size(), TreeSize(size));
        assert_eq!(frontier.size(), TreeSize(size));
    }
}

#[test]
fn every_inclusion_proof_up_to_300_verifies() {
    const N: u64 = 300;
    let t = tree(N);
    for size in 1..=N {
        let src = Bounded { tree: &t, size };
        let r = root(&t, size);
        for index in 0..size {
            let proof = inclusion_proof(&src, LeafIndex(index), TreeSize(size)).unwrap();
            assert_eq!(proof.len(), inclusion_proof_len(index, size));
            verify_inclusion(&leaf(index), LeafIndex(index), TreeSize(size), &proof, &r)
                .unwrap_or_else(|e| panic!("({index}, {size}): {e}"));
        }
    }
}

#[test]
fn every_consistency_proof_up_to_300_verifies() {
    const N: u64 = 300;
    let t = tree(N);
    let roots: Vec<RootHash> = (0..=N).map(|size| root(&t, size)).collect();
    for to in 1..=N {
        let src = Bounded { tree: &t, size: to };
        for from in 1..=to {
            let proof = consistency_proof(&src, TreeSize(from), TreeSize(to)).unwrap();
            assert_eq!(proof.len(), consistency_proof_len(from, to));
            verify_consistency(
                TreeSize(from),
                TreeSize(to),
                &proof,
                &roots[from as usize],
                &roots[to as usize],
            )
            .unwrap_or_else(|e| panic!("({from}, {to}): {e}"));
        }
    }
}

/// tlog's hash storage, filled by tlog itself: its proofs owe nothing to our code.
struct TlogStore(Vec<tlog::Hash>);

impl tlog::HashReader for TlogStore {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<tlog::Hash>, tlog::Error> {
        indexes
            .iter()
            .map(|&i| {
                self.0
                    .get(i as usize)
                    .copied()
                    .ok_or(tlog::Error::IndexesNotInTree)
            })
            .collect()
    }
}

fn to_tlog(h: &Hash) -> tlog::Hash {
    tlog::Hash(h.0)
}

fn from_tlog(h: &tlog::Hash) -> Hash {
    Hash(h.0)
}

#[test]
fn cross_check_with_tlog_tiles() {
    const N: u64 = 1025;
    let mut store = TlogStore(Vec::new());
    for i in 0..N {
        // tlog hashes the leaf data itself, so its roots check hash_leaf too.
        let new = tlog::stored_hashes(i, format!("leaf {i}").as_bytes(), &store).unwrap();
        store.0.extend(new);
    }
    let t = tree(N);
    // Sizes around the edges of 256-wide C2SP tiles, and every small size.
    let sizes = (1..=70).chain([
        127, 128, 129, 255, 256, 257, 300, 511, 512, 513, 1000, 1023, 1024, 1025,
    ]);
    for size in sizes {
        let th = tlog::tree_hash(size, &store).unwrap();
        let r = root(&t, size);
        assert_eq!(r.0, from_tlog(&th), "root at {size}");

        for index in 0..size {
            let theirs: Vec<Hash> = tlog::prove_record(size, index, &store)
                .unwrap()
                .iter()
                .map(from_tlog)
                .collect();
            verify_inclusion(&leaf(index), LeafIndex(index), TreeSize(size), &theirs, &r)
                .unwrap_or_else(|e| panic!("tlog's proof of ({index}, {size}): {e}"));
            let ours = inclusion_proof(&t, LeafIndex(index), TreeSize(size)).unwrap();
            let ours_tlog: Vec<tlog::Hash> = ours.iter().map(to_tlog).collect();
            tlog::check_record(&ours_tlog, size, th, index, to_tlog(&leaf(index).0))
                .unwrap_or_else(|e| panic!("our proof of ({index}, {size}): {e}"));
            assert_eq!(ours, theirs);
        }

        for from in 1..=size {
            let old = tlog::tree_hash(from, &store).unwrap();
            let theirs: Vec<Hash> = tlog::prove_tree(size, from, &store)
                .unwrap()
                .iter()
                .map(from_tlog)
                .collect();
            verify_consistency(
                TreeSize(from),
                TreeSize(size),
                &theirs,
                &RootHash(from_tlog(&old)),
                &r,
            )
            .unwrap_or_else(|e| panic!("tlog's proof of ({from}, {size}): {e}"));
            let ours = consistency_proof(&t, TreeSize(from), TreeSize(size)).unwrap();
            let ours_tlog: Vec<tlog::Hash> = ours.iter().map(to_tlog).collect();
            tlog::check_tree(&ours_tlog, size, th, from, old)
                .unwrap_or_else(|e| panic!("our proof of ({from}, {size}): {e}"));
            assert_eq!(ours, theirs);
        }
    }
}

#[test]
fn inclusion_attacks_are_refused_with_the_precise_error() {
    let t = tree(300);
    for (index, size) in [
        (0, 8),
        (5, 8),
        (6, 7),
        (123, 256),
        (257, 300),
        (299, 300),
        (0, 300),
    ] {
        let proof = inclusion_proof(&t, LeafIndex(index), TreeSize(size)).unwrap();
        let r = root(&t, size);
        let check = |leaf: &LeafHash, index: u64, size: u64, proof: &[Hash], root: &RootHash| {
            verify_inclusion(leaf, LeafIndex(index), TreeSize(size), proof, root)
        };
        check(&leaf(index), index, size, &proof, &r).unwrap();

        for position in 0..proof.len() {
            for bit in [0, 77, 255] {
                let mut bad = proof.clone();
                bad[position] = flip(&bad[position], bit);
                assert_eq!(
                    check(&leaf(index), index, size, &bad, &r),
                    Err(VerifyError::RootMismatch),
                    "({index}, {size}) position {position} bit {bit}"
                );
            }
        }
        assert_eq!(
            check(&LeafHash(flip(&leaf(index).0, 3)), index, size, &proof, &r),
            Err(VerifyError::RootMismatch)
        );
        assert_eq!(
            check(
                &leaf(index),
                index,
                size,
                &proof,
                &RootHash(flip(&r.0, 200))
            ),
            Err(VerifyError::RootMismatch)
        );
        let expected = proof.len();
        assert_eq!(
            check(&leaf(index), index, size, &[], &r),
            Err(VerifyError::WrongProofLength { expected, got: 0 })
        );
        let mut longer = proof.clone();
        longer.push(proof[0]);
        assert_eq!(
            check(&leaf(index), index, size, &longer, &r),
            Err(VerifyError::WrongProofLength {
                expected,
                got: expected + 1
            })
        );
        assert_eq!(
            check(&leaf(index), index, size, &proof[1..], &r),
            Err(VerifyError::WrongProofLength {
                expected,
                got: expected - 1
            })
        );
        assert_eq!(
            check(&leaf(index), size, size, &proof, &r),
            Err(VerifyError::IndexOutOfRange { index: size, size })
        );
    }

    let (p5, r8) = (
        inclusion_proof(&t, LeafIndex(5), TreeSize(8)).unwrap(),
        root(&t, 8),
    );
    // Another leaf's hash at the claimed index, and the right leaf at another index.
    let at = |l: u64, i: u64, s: u64, p: &[Hash], r: &RootHash| {
        verify_inclusion(&leaf(l), LeafIndex(i), TreeSize(s), p, r)
    };
    assert_eq!(at(4, 5, 8, &p5, &r8), Err(VerifyError::RootMismatch));
    assert_eq!(at(5, 4, 8, &p5, &r8), Err(VerifyError::RootMismatch));
    assert_eq!(at(5, 7, 8, &p5, &r8), Err(VerifyError::RootMismatch));
    // Wrong size: with the same proof length the hashes disagree; otherwise the length does.
    assert_eq!(
        at(5, 5, 7, &p5, &root(&t, 7)),
        Err(VerifyError::RootMismatch)
    );
    // But a proof does not bind the size on its own: leaf 5's path has the same shape in
    // trees of 7 and 8 leaves, so RFC 9162's algorithm (and tlog's) accepts size 7 with
    // the size-8 root. The signed checkpoint is what ties a root to its size.
    assert_eq!(at(5, 5, 7, &p5, &r8), Ok(()));
    assert_eq!(
        at(5, 5, 6, &p5, &root(&t, 6)),
        Err(VerifyError::WrongProofLength {
            expected: 2,
            got: 3
        })
    );
    assert_eq!(
        at(5, 5, 16, &p5, &root(&t, 16)),
        Err(VerifyError::WrongProofLength {
            expected: 4,
            got: 3
        })
    );
    // A single-leaf tree: the root is the leaf, the proof empty and nothing else.
    assert_eq!(at(0, 0, 1, &[], &RootHash(leaf(0).0)), Ok(()));
    assert_eq!(
        at(0, 0, 1, &[leaf(1).0], &RootHash(leaf(0).0)),
        Err(VerifyError::WrongProofLength {
            expected: 0,
            got: 1
        })
    );
    assert_eq!(
        at(0, 0, 0, &[], &empty_root()),
        Err(VerifyError::IndexOutOfRange { index: 0, size: 0 })
    );
}

#[test]
fn consistency_attacks_are_refused_with_the_precise_error() {
    let t = tree(300);
    let check = |from: u64, to: u64, proof: &[Hash], a: &RootHash, b: &RootHash| {
        verify_consistency(TreeSize(from), TreeSize(to), proof, a, b)
    };
    // Both the case where the old root is prepended (a power of two) and where it is not.
    for (from, to) in [
        (1, 8),
        (4, 8),
        (6, 8),
        (2, 5),
        (255, 257),
        (256, 300),
        (100, 300),
    ] {
        let proof = consistency_proof(&t, TreeSize(from), TreeSize(to)).unwrap();
        let (a, b) = (root(&t, from), root(&t, to));
        check(from, to, &proof, &a, &b).unwrap();

        for position in 0..proof.len() {
            for bit in [0, 77, 255] {
                let mut bad = proof.clone();
                bad[position] = flip(&bad[position], bit);
                assert_eq!(
                    check(from, to, &bad, &a, &b),
                    Err(VerifyError::RootMismatch),
                    "({from}, {to}) position {position} bit {bit}"
                );
            }
        }
        assert_eq!(
            check(from, to, &proof, &b, &a),
            Err(VerifyError::RootMismatch)
        );
        assert_eq!(
            check(from, to, &proof, &RootHash(flip(&a.0, 9)), &b),
            Err(VerifyError::RootMismatch)
        );
        assert_eq!(
            check(from, to, &proof, &a, &RootHash(flip(&b.0, 9))),
            Err(VerifyError::RootMismatch)
        );
        let expected = proof.len();
        assert_eq!(
            check(from, to, &[], &a, &b),
            Err(VerifyError::WrongProofLength { expected, got: 0 })
        );
        let mut longer = proof.clone();
        longer.push(proof[0]);
        assert_eq!(
            check(from, to, &longer, &a, &b),
            Err(VerifyError::WrongProofLength {
                expected,
                got: expected + 1
            })
        );
        assert_eq!(
            check(to, from, &proof, &b, &a),
            Err(VerifyError::SizeOrder { from: to, to: from })
        );
        assert_eq!(
            check(0, to, &proof, &empty_root(), &b),
            Err(VerifyError::EmptyTree)
        );
        assert_eq!(
            check(0, to, &[], &empty_root(), &b),
            Err(VerifyError::EmptyTree)
        );
    }

    // The proof from 6 to 8 presented for other sizes.
    let p = consistency_proof(&t, TreeSize(6), TreeSize(8)).unwrap();
    let r = |n: u64| root(&t, n);
    assert_eq!(
        check(6, 7, &p, &r(6), &r(7)),
        Err(VerifyError::RootMismatch)
    );
    // As with inclusion, the new size is bound by the checkpoint, not by the proof.
    assert_eq!(check(6, 7, &p, &r(6), &r(8)), Ok(()));
    assert_eq!(
        check(5, 8, &p, &r(5), &r(8)),
        Err(VerifyError::WrongProofLength {
            expected: 4,
            got: 3
        })
    );
    // A log that rewrote its history: same sizes, a different leaf 3.
    let forked: MemoryTree = (0..8)
        .map(|i| {
            if i == 3 {
                hash_leaf(b"rewritten")
            } else {
                leaf(i)
            }
        })
        .collect();
    assert_eq!(
        check(6, 8, &p, &r(6), &forked.root()),
        Err(VerifyError::RootMismatch)
    );
    assert_eq!(
        check(6, 8, &p, &root(&forked, 6), &r(8)),
        Err(VerifyError::RootMismatch)
    );
    // Equal sizes: nothing to prove but that the roots are equal.
    assert_eq!(check(8, 8, &[], &r(8), &r(8)), Ok(()));
    assert_eq!(
        check(8, 8, &[], &r(8), &forked.root()),
        Err(VerifyError::RootMismatch)
    );
    assert_eq!(
        check(8, 8, &[p[0]], &r(8), &r(8)),
        Err(VerifyError::WrongProofLength {
            expected: 0,
            got: 1
        })
    );
    assert_eq!(
        check(0, 0, &[], &empty_root(), &empty_root()),
        Err(VerifyError::EmptyTree)
    );
}

#[test]
fn provers_refuse_bad_arguments_and_pass_on_source_errors() {
    let t = tree(10);
    assert_eq!(
        inclusion_proof(&t, LeafIndex(10), TreeSize(10)),
        Err(ProofError::IndexOutOfRange {
            index: 10,
            size: 10
        })
    );
    assert_eq!(
        inclusion_proof(&t, LeafIndex(0), TreeSize(0)),
        Err(ProofError::IndexOutOfRange { index: 0, size: 0 })
    );
    assert_eq!(
        consistency_proof(&t, TreeSize(0), TreeSize(5)),
        Err(ProofError::EmptyTree)
    );
    assert_eq!(
        consistency_proof(&t, TreeSize(6), TreeSize(5)),
        Err(ProofError::SizeOrder { from: 6, to: 5 })
    );
    assert_eq!(consistency_proof(&t, TreeSize(7), TreeSize(7)), Ok(vec![]));
    assert_eq!(range_root(&t, 4, 4), Err(ProofError::EmptyTree));
    assert_eq!(
        range_root(&t, 5, 3),
        Err(ProofError::SizeOrder { from: 5, to: 3 })
    );
    assert_eq!(
        range_root(&t, 3, 5),
        Err(ProofError::UnalignedRange { begin: 3, end: 5 })
    );
    assert_eq!(
        range_root(&t, 4, 10),
        Ok(hash_children(&node(&t, 2, 1), &node(&t, 1, 4)))
    );

    let short = Bounded { tree: &t, size: 6 };
    let Err(ProofError::Source(message)) = inclusion_proof(&short, LeafIndex(0), TreeSize(8))
    else {
        panic!("a source error must come back as ProofError::Source");
    };
    assert_eq!(message, "node (2, 1) is not complete at size 6");
    assert!(matches!(
        tree_root(&short, TreeSize(7)),
        Err(ProofError::Source(_))
    ));
    assert!(matches!(
        Frontier::from_source(&short, TreeSize(8)),
        Err(ProofError::Source(_))
    ));
}

#[test]
fn frontier_from_source_equals_pushed_and_push_reports_every_node_once() {
    const N: u64 = 600;
    let t = tree(N);
    let mut frontier = Frontier::new();
    let mut completed = Vec::new();
    let mut seen = HashSet::new();
    for size in 0..=N {
        assert_eq!(
            Frontier::from_source(&Bounded { tree: &t, size }, TreeSize(size)).unwrap(),
            frontier,
            "size {size}"
        );
        let nodes: Vec<(u8, u64, Hash)> = frontier.nodes().collect();
        assert_eq!(nodes.len(), size.count_ones() as usize);
        // Largest first, and together they tile [0, size) without gaps.
        let mut start = 0;
        for &(level, index, hash) in &nodes {
            assert_eq!(index << level, start, "size {size}");
            start += 1 << level;
            assert_eq!(hash, node(&t, level, index));
        }
        assert_eq!(start, size);

        if size == N {
            break;
        }
        completed.clear();
        frontier.push(leaf(size), &mut completed);
        assert_eq!(completed[0], (0, size, leaf(size).0));
        // A leaf completes one node per trailing 1 bit of the old size, each the parent of
        // the one before.
        assert_eq!(completed.len(), size.trailing_ones() as usize + 1);
        for (k, &(level, index, hash)) in completed.iter().enumerate() {
            assert_eq!(usize::from(level), k);
            assert_eq!(index, size >> level);
            assert_eq!(hash, node(&t, level, index));
            assert!(
                seen.insert((level, index)),
                "({level}, {index}) reported twice"
            );
        }
    }
    // Every complete node of a tree of N leaves: N leaves, N - popcount(N) interior nodes.
    assert_eq!(seen.len() as u64, 2 * N - u64::from(N.count_ones()));
}

#[test]
fn provers_read_logarithmically_many_nodes() {
    const N: u64 = 70_000;
    let t = tree(N);
    let counting = Counting {
        tree: &t,
        reads: Cell::new(0),
    };
    let bound = |n: u64| 3 * n.next_power_of_two().ilog2() as usize + 3;
    let reads = || counting.reads.replace(0);
    let mut rng = StdRng::seed_from_u64(9162);

    // Random pairs, and the sizes around 65536 where the tree gains a level.
    let mut inclusions: Vec<(u64, u64)> = (0..300)
        .map(|_| {
            let size = rng.gen_range(1..=N);
            (rng.gen_range(0..size), size)
        })
        .collect();
    for size in [65_535, 65_536, 65_537, N] {
        inclusions.extend([
            (0, size),
            (size / 2, size),
            (size - 1, size),
            (65_534, size),
        ]);
    }
    for (index, size) in inclusions {
        reads();
        let proof = inclusion_proof(&counting, LeafIndex(index), TreeSize(size)).unwrap();
        let n = reads();
        assert!(n <= bound(size), "inclusion ({index}, {size}) read {n}");
        verify_inclusion(
            &leaf(index),
            LeafIndex(index),
            TreeSize(size),
            &proof,
            &root(&t, size),
        )
        .unwrap();
    }

    let mut consistencies: Vec<(u64, u64)> = (0..300)
        .map(|_| {
            let to = rng.gen_range(1..=N);
            (rng.gen_range(1..=to), to)
        })
        .collect();
    consistencies.extend([
        (65_535, 65_536),
        (65_536, 65_537),
        (65_535, 65_537),
        (1, N),
        (N - 1, N),
        (32_769, 65_537),
        (65_536, N),
    ]);
    for (from, to) in consistencies {
        reads();
        let proof = consistency_proof(&counting, TreeSize(from), TreeSize(to)).unwrap();
        let n = reads();
        assert!(n <= bound(to), "consistency ({from}, {to}) read {n}");
        verify_consistency(
            TreeSize(from),
            TreeSize(to),
            &proof,
            &root(&t, from),
            &root(&t, to),
        )
        .unwrap();
    }

    for size in [1, 65_535, 65_536, N] {
        reads();
        tree_root(&counting, TreeSize(size)).unwrap();
        assert_eq!(reads(), size.count_ones() as usize);
        Frontier::from_source(&counting, TreeSize(size)).unwrap();
        assert_eq!(reads(), size.count_ones() as usize);
    }
}

/// Deterministic, unrelated node hashes for a tree too big to build, refusing incomplete
/// nodes. Only checks whose hashes all come from stored nodes (never recomputed from
/// children) can expect equality on it.
struct Synthetic {
    size: u64,
}

impl NodeSource for Synthetic {
    type Error = String;

    fn node(&self, level: u8, index: u64) -> Result<Hash, String> {
        if (u128::from(index) + 1) << level > u128::from(self.size) {
            return Err(format!("({level}, {index}) is not complete"));
        }
        let mut h = Sha256::new();
        h.update([level]);
        h.update(index.to_be_bytes());
        Ok(Hash(h.finalize().into()))
    }
}

#[test]
fn the_largest_sizes_do_not_overflow() {
    const MAX: u64 = u64::MAX;
    let src = Synthetic { size: MAX };
    let r = tree_root(&src, TreeSize(MAX)).unwrap();
    let full = Frontier::from_source(&src, TreeSize(MAX)).unwrap();
    assert_eq!(full.nodes().count(), 64);
    assert_eq!(full.root(), r);

    // The last leaf sits alone at the frontier's end: its path is the other 63 frontier
    // nodes, so verification folds the same stored nodes tree_root does.
    let last = LeafHash(src.node(0, MAX - 1).unwrap());
    let proof = inclusion_proof(&src, LeafIndex(MAX - 1), TreeSize(MAX)).unwrap();
    assert_eq!(proof.len(), 63);
    assert_eq!(inclusion_proof_len(MAX - 1, MAX), 63);
    verify_inclusion(&last, LeafIndex(MAX - 1), TreeSize(MAX), &proof, &r).unwrap();

    let proof = inclusion_proof(&src, LeafIndex(0), TreeSize(MAX)).unwrap();
    assert_eq!(proof.len(), 64);
    assert_eq!(inclusion_proof_len(0, MAX), 64);
    let first = LeafHash(src.node(0, 0).unwrap());
    assert_eq!(
        verify_inclusion(&first, LeafIndex(0), TreeSize(MAX), &proof, &r),
        Err(VerifyError::RootMismatch)
    );

    let old = tree_root(&src, TreeSize(MAX - 1)).unwrap();
    let proof = consistency_proof(&src, TreeSize(MAX - 1), TreeSize(MAX)).unwrap();
    assert_eq!(proof.len(), consistency_proof_len(MAX - 1, MAX));
    verify_consistency(TreeSize(MAX - 1), TreeSize(MAX), &proof, &old, &r).unwrap();
    let proof = consistency_proof(&src, TreeSize(1), TreeSize(MAX)).unwrap();
    assert_eq!(proof.len(), consistency_proof_len(1, MAX));
    assert_eq!(
        verify_consistency(TreeSize(1), TreeSize(MAX), &proof, &RootHash(first.0), &r),
        Err(VerifyError::RootMismatch)
    );

    let mut frontier = Frontier::from_source(&src, TreeSize(MAX - 1)).unwrap();
    let mut completed = Vec::new();
    frontier.push(last, &mut completed);
    assert_eq!(completed, [(0, MAX - 1, last.0)]);
    assert_eq!(frontier, full);
}
