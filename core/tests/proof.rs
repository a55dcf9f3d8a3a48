//! C2SP tlog-proof: text round trip, offline verification, and every refusal typed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use govern_core::checkpoint::Checkpoint;
use govern_core::ids::{Hash, TreeSize};
use govern_core::merkle::{hash_children, hash_leaf};
use govern_core::note::NoteSigner;
use govern_core::proof::{TlogProof, TlogProofError};

/// A signed tree of two entries and the proof of the second.
fn two_entries() -> (NoteSigner, TlogProof, Vec<u8>) {
    let signer = NoteSigner::new(
        "example.com/log",
        ed25519_dalek::SigningKey::from_bytes(&[7; 32]),
    )
    .unwrap();
    let (a, b) = (b"first entry".to_vec(), b"second entry".to_vec());
    let (la, lb) = (hash_leaf(&a), hash_leaf(&b));
    let root = hash_children(&la.0, &lb.0);
    let note = Checkpoint::new(
        "example.com/log",
        TreeSize(2),
        govern_core::ids::RootHash(root),
    )
    .sign(&signer)
    .unwrap();
    let proof = TlogProof {
        extra: None,
        index: 1,
        hashes: vec![la.0],
        checkpoint: note,
    };
    (signer, proof, b)
}

#[test]
fn a_proof_round_trips_and_verifies_offline() {
    let (signer, proof, entry) = two_entries();
    let text = proof.to_text();
    assert!(text.starts_with("c2sp.org/tlog-proof@v1\nindex 1\n"));
    let parsed = TlogProof::parse(text.as_bytes()).unwrap();
    assert_eq!(parsed, proof);
    let cp = parsed.verify(&entry, &signer.verifier()).unwrap();
    assert_eq!(cp.size, TreeSize(2));
    // With extra data too.
    let mut with_extra = proof.clone();
    with_extra.extra = Some(b"context".to_vec());
    let parsed = TlogProof::parse(with_extra.to_text().as_bytes()).unwrap();
    assert_eq!(parsed, with_extra);
    parsed.verify(&entry, &signer.verifier()).unwrap();
}

#[test]
fn a_tampered_proof_entry_index_or_key_is_refused() {
    let (signer, proof, entry) = two_entries();
    // Another entry, or one byte of it changed.
    let mut other = entry.clone();
    other[0] ^= 1;
    assert!(matches!(
        proof.verify(&other, &signer.verifier()),
        Err(TlogProofError::Inclusion(_))
    ));
    // Another index.
    let mut moved = proof.clone();
    moved.index = 0;
    assert!(matches!(
        moved.verify(&entry, &signer.verifier()),
        Err(TlogProofError::Inclusion(_))
    ));
    // A changed proof hash.
    let mut bent = proof.clone();
    bent.hashes[0] = Hash([9; 32]);
    assert!(matches!(
        bent.verify(&entry, &signer.verifier()),
        Err(TlogProofError::Inclusion(_))
    ));
    // Another key; a changed checkpoint byte.
    let stranger = NoteSigner::new(
        "example.com/log",
        ed25519_dalek::SigningKey::from_bytes(&[8; 32]),
    )
    .unwrap();
    assert!(matches!(
        proof.verify(&entry, &stranger.verifier()),
        Err(TlogProofError::Checkpoint(_))
    ));
    let mut forged = proof.clone();
    forged.checkpoint = forged.checkpoint.replacen("\n2\n", "\n3\n", 1);
    assert!(matches!(
        forged.verify(&entry, &signer.verifier()),
        Err(TlogProofError::Checkpoint(_))
    ));
}

#[test]
fn malformed_proof_texts_get_typed_errors() {
    let (_, proof, _) = two_entries();
    let good = proof.to_text();
    for bad in [
        String::new(),
        good.replacen("c2sp.org/tlog-proof@v1", "c2sp.org/tlog-proof@v2", 1),
        good.replacen("index 1", "index 01", 1),
        good.replacen("index 1", "index -1", 1),
        good.replacen("index 1", "idx 1", 1),
        good.replacen("index 1\n", "index 1\nnot base64!\n", 1),
        good.replacen("\n\n", "\n", 1),
        good.replacen("index 1", "extra %%%\nindex 1", 1),
    ] {
        assert!(
            matches!(
                TlogProof::parse(bad.as_bytes()),
                Err(TlogProofError::Format(_))
            ),
            "{bad:?}"
        );
    }
    assert!(matches!(
        TlogProof::parse(&[0xff, 0xfe]),
        Err(TlogProofError::Format(_))
    ));
    assert!(matches!(
        TlogProof::parse(&vec![b'a'; 70_000]),
        Err(TlogProofError::Format(_))
    ));
}
