//! The witness protocol (c2sp.org/tlog-witness): the `add-checkpoint` wire format, the
//! witness's decision with the specification's status codes, and witness policies.

#![allow(clippy::unwrap_used)]

use ed25519_dalek::SigningKey;
use govern_core::checkpoint::{Checkpoint, CosignatureSigner};
use govern_core::ids::{LeafHash, RootHash, TreeSize};
use govern_core::merkle::{self, MemoryTree};
use govern_core::note::{Note, NoteSigner};
use govern_core::witness::{
    AddCheckpoint, FollowedLog, PROOF_LINES_MAX, PolicyFile, PolicyWitness, Refusal, RequestError,
    WitnessPolicy, Witnessed, add_cosignatures, decide,
};

const ORIGIN: &str = "example.com/log";

fn log_key(seed: u8) -> NoteSigner {
    NoteSigner::new(ORIGIN, SigningKey::from_bytes(&[seed; 32])).unwrap()
}

fn tree(n: u64, salt: u8) -> MemoryTree {
    (0..n)
        .map(|i| merkle::hash_leaf(&[&i.to_be_bytes()[..], &[salt]].concat()))
        .collect::<Vec<LeafHash>>()
        .into_iter()
        .collect()
}

fn signed(key: &NoteSigner, t: &MemoryTree) -> Vec<u8> {
    Checkpoint::new(ORIGIN, t.size(), t.root())
        .sign(key)
        .unwrap()
        .into_bytes()
}

fn request(old: u64, t: &MemoryTree, key: &NoteSigner) -> AddCheckpoint {
    let proof = if old == 0 || old >= t.size().0 {
        Vec::new()
    } else {
        merkle::consistency_proof(t, TreeSize(old), t.size()).unwrap()
    };
    AddCheckpoint {
        old_size: TreeSize(old),
        proof,
        checkpoint: signed(key, t),
    }
}

fn logs() -> Vec<FollowedLog> {
    vec![FollowedLog {
        origin: ORIGIN.into(),
        verifiers: vec![log_key(1).verifier()],
    }]
}

fn at(t: &MemoryTree) -> Option<Witnessed> {
    Some(Witnessed {
        size: t.size(),
        root: t.root(),
    })
}

#[test]
fn requests_round_trip_to_the_specifications_shape() {
    let t = tree(20, 0);
    let req = request(7, &t, &log_key(1));
    let body = req.encode();
    let text = String::from_utf8(body.clone()).unwrap();
    assert!(text.starts_with("old 7\n"), "{text}");
    let lines: Vec<&str> = text.split('\n').collect();
    // old line, the proof lines, an empty line, then the checkpoint's origin.
    assert_eq!(lines[1 + req.proof.len()], "");
    assert_eq!(lines[2 + req.proof.len()], ORIGIN);
    assert_eq!(AddCheckpoint::parse(&body).unwrap(), req);
    // The old size 0 with no proof: the empty line follows the old line at once.
    let zero = request(0, &t, &log_key(1)).encode();
    assert!(zero.starts_with(b"old 0\n\nexample.com/log\n20\n"));
    assert_eq!(AddCheckpoint::parse(&zero).unwrap().proof, vec![]);
}

#[test]
fn malformed_requests_get_typed_errors() {
    let note = signed(&log_key(1), &tree(3, 0));
    let with = |head: &str| [head.as_bytes(), &note].concat();
    let h = govern_core::ids::Hash([9; 32]).to_base64();
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"old 1\n".to_vec(), "no empty line"),
        (with("old 007\n\n"), "old <size>"),
        (with("old +1\n\n"), "old <size>"),
        (with("old -1\n\n"), "old <size>"),
        (with("old\n\n"), "old <size>"),
        (with("old  1\n\n"), "old <size>"),
        (with("Old 1\n\n"), "old <size>"),
        (with("old 18446744073709551616\n\n"), "old <size>"),
        (with(&format!("old 1\n{}\n\n", &h[..20])), "line 1"),
        (with("old 1\nAAAA\n\n"), "line 1"),
        (
            with(&format!(
                "old 1\n{}\n\n",
                format!("{h}\n").repeat(PROOF_LINES_MAX + 1).trim_end()
            )),
            "more than 63",
        ),
        (vec![b'x'; 200_000], "more than"),
        ([b"old 1\n\xff\n\n".as_slice(), &note].concat(), "UTF-8"),
    ];
    for (body, expect) in cases {
        let err = AddCheckpoint::parse(&body).unwrap_err();
        assert!(
            err.to_string().contains(expect),
            "{:?}: {err}",
            String::from_utf8_lossy(&body[..body.len().min(60)])
        );
    }
    // Exactly 63 lines are fine.
    let ok = with(&format!(
        "old 1\n{}\n",
        format!("{h}\n").repeat(PROOF_LINES_MAX)
    ));
    assert_eq!(
        AddCheckpoint::parse(&ok).unwrap().proof.len(),
        PROOF_LINES_MAX
    );
    assert!(matches!(
        AddCheckpoint::parse(b"old 1\n"),
        Err(RequestError::NoBlankLine)
    ));
}

#[test]
fn the_witness_decides_with_the_specifications_codes() {
    let key = log_key(1);
    let logs = logs();
    let t10 = tree(10, 0);
    let t25 = tree(25, 0);

    // First contact: old 0, empty proof.
    let (i, cp) = decide(&logs, |_| None, &request(0, &t10, &key)).unwrap();
    assert_eq!((i, cp.size, cp.root), (0, TreeSize(10), t10.root()));
    // Then a consistent growth from what was cosigned.
    let (_, cp) = decide(&logs, |_| at(&t10), &request(10, &t25, &key)).unwrap();
    assert_eq!(cp.size, TreeSize(25));
    // The same checkpoint again (old = new, same root) is cosigned again.
    assert!(decide(&logs, |_| at(&t25), &request(25, &t25, &key)).is_ok());

    let code = |latest: Option<Witnessed>, req: &AddCheckpoint| {
        decide(&logs, |_| latest, req).unwrap_err()
    };
    // 404: unknown origin.
    let other = NoteSigner::new("other.example/log", SigningKey::from_bytes(&[1; 32])).unwrap();
    let mut req = request(0, &t10, &key);
    req.checkpoint = Checkpoint::new("other.example/log", t10.size(), t10.root())
        .sign(&other)
        .unwrap()
        .into_bytes();
    let r = code(None, &req);
    assert_eq!(r.status(), 404, "{r}");
    // 403: signed by another key for the same origin; or a known key's signature tampered.
    let r = code(None, &request(0, &t10, &log_key(2)));
    assert_eq!(r.status(), 403, "{r}");
    let mut req = request(0, &t10, &key);
    let n = req.checkpoint.len();
    req.checkpoint[n - 5] ^= 1;
    assert_eq!(code(None, &req).status(), 403);
    // 400: old size greater than the checkpoint's.
    let r = code(at(&t25), &request(26, &t25, &key));
    assert!(
        matches!(r, Refusal::OldSizeTooLarge { old: 26, size: 25 }),
        "{r}"
    );
    assert_eq!(r.status(), 400);
    // 409: the old size is not the witness's, with its size as the body.
    let r = code(at(&t25), &request(10, &tree(30, 0), &key));
    assert_eq!(r.status(), 409);
    assert_eq!(r.size_body().as_deref(), Some("25\n"));
    let r = code(None, &request(10, &t25, &key));
    assert_eq!((r.status(), r.size_body().as_deref()), (409, Some("0\n")));
    // 409: a split view, the same size with another root.
    let fork = tree(25, 1);
    let r = code(at(&t25), &request(25, &fork, &key));
    assert!(matches!(r, Refusal::RootMismatch { size: 25, .. }), "{r}");
    assert_eq!((r.status(), r.size_body().as_deref()), (409, Some("25\n")));
    // 422: a fork that grew, with a proof from its own history; a proof from nowhere.
    let fork30 = tree(30, 1);
    let r = code(at(&t25), &request(25, &fork30, &key));
    assert_eq!(r.status(), 422, "{r}");
    let mut req = request(10, &t25, &key);
    req.proof[0].0[0] ^= 1;
    assert_eq!(code(at(&t10), &req).status(), 422);
    req.proof.pop();
    assert_eq!(code(at(&t10), &req).status(), 422);
    let mut req = request(0, &t10, &key);
    req.proof.push(t10.root().0);
    assert_eq!(code(None, &req).status(), 422);
    // 400: a note that is not a checkpoint.
    let mut req = request(0, &t10, &key);
    req.checkpoint = b"hello\n".to_vec();
    assert_eq!(code(None, &req).status(), 400);
}

fn witness(i: u8) -> CosignatureSigner {
    CosignatureSigner::new(
        format!("example.com/w{i}"),
        SigningKey::from_bytes(&[100 + i; 32]),
    )
    .unwrap()
}

#[test]
fn a_policy_counts_distinct_valid_cosigners() {
    let key = log_key(1);
    let t = tree(12, 0);
    let cp = Checkpoint::new(ORIGIN, t.size(), t.root());
    let note = String::from_utf8(signed(&key, &t)).unwrap();
    let ws: Vec<CosignatureSigner> = (1..=3).map(witness).collect();
    let file = PolicyFile {
        quorum: 2,
        witnesses: ws
            .iter()
            .map(|w| PolicyWitness {
                vkey: w.verifier_key(),
                url: Some("http://127.0.0.1:1".into()),
            })
            .collect(),
    };
    let policy = WitnessPolicy::from_file(&file).unwrap();
    assert_eq!(policy.to_file().witnesses[0].vkey, ws[0].verifier_key());

    let one = add_cosignatures(&note, &[ws[0].sign(&cp, 1_700_000_000).unwrap()]).unwrap();
    let c = policy
        .check(&Note::parse(one.as_bytes()).unwrap())
        .unwrap_err();
    assert!(c.to_string().contains("1 of the 2"), "{c}");
    // The same witness twice is still one.
    let twice = add_cosignatures(&one, &[ws[0].sign(&cp, 1_700_000_001).unwrap()]).unwrap();
    assert!(
        policy
            .check(&Note::parse(twice.as_bytes()).unwrap())
            .is_err()
    );
    // A stranger's cosignature does not count.
    let stranger = witness(9).sign(&cp, 1).unwrap();
    let three = add_cosignatures(&one, &[stranger]).unwrap();
    assert!(
        policy
            .check(&Note::parse(three.as_bytes()).unwrap())
            .is_err()
    );
    // Two distinct witnesses: a quorum, with their timestamps.
    let two = add_cosignatures(&one, &[ws[2].sign(&cp, 1_700_000_002).unwrap()]).unwrap();
    let c = policy.check(&Note::parse(two.as_bytes()).unwrap()).unwrap();
    assert_eq!(
        c.signed,
        vec![
            ("example.com/w1".to_string(), 1_700_000_000),
            ("example.com/w3".to_string(), 1_700_000_002)
        ]
    );
    assert_eq!(c.names(), "example.com/w1, example.com/w3");
    // Adding the lines again changes nothing.
    assert_eq!(
        add_cosignatures(&two, &[ws[2].sign(&cp, 1_700_000_002).unwrap()]).unwrap(),
        two
    );
    // A cosignature over another checkpoint (another root) does not verify: refused, not
    // merely uncounted.
    let other = Checkpoint::new(ORIGIN, t.size(), RootHash(govern_core::ids::Hash([1; 32])));
    let bad = add_cosignatures(&two, &[ws[1].sign(&other, 5).unwrap()]).unwrap();
    let err = policy
        .check(&Note::parse(bad.as_bytes()).unwrap())
        .unwrap_err();
    assert!(err.to_string().contains("example.com/w2"), "{err}");
    // The log's own signature still verifies on the cosigned note.
    assert!(Checkpoint::open(two.as_bytes(), ORIGIN, &key.verifier()).is_ok());

    // Policies that cannot hold.
    let mut dup = file.clone();
    dup.witnesses.push(dup.witnesses[0].clone());
    assert!(WitnessPolicy::from_file(&dup).is_err());
    let mut high = file.clone();
    high.quorum = 4;
    assert!(WitnessPolicy::from_file(&high).is_err());
    let mut bad_key = file;
    bad_key.witnesses[1].vkey = key.verifier_key();
    assert!(WitnessPolicy::from_file(&bad_key).is_err());
    // The empty policy asks for nothing.
    assert!(
        WitnessPolicy::default()
            .check(&Note::parse(note.as_bytes()).unwrap())
            .is_ok()
    );
}

/// k of the witnesses `ids` (1..=4 are w1..w4; 11 is another key under w1's name).
fn k_of(k: usize, ids: &[u8]) -> WitnessPolicy {
    WitnessPolicy::new(ids.iter().map(|&i| member(i)).collect(), k).unwrap()
}

fn member(i: u8) -> govern_core::checkpoint::CosignatureVerifier {
    if i == 11 {
        CosignatureSigner::new("example.com/w1", SigningKey::from_bytes(&[211; 32]))
            .unwrap()
            .verifier()
    } else {
        witness(i).verifier()
    }
}

#[test]
fn a_policy_is_at_least_as_strong_only_if_every_quorum_of_it_is_one_of_the_other() {
    let pinned = k_of(2, &[1, 2, 3]);
    // Equal, in another order; a higher quorum; a witness dropped, the quorum kept.
    for stronger in [
        k_of(2, &[3, 1, 2]),
        k_of(3, &[1, 2, 3]),
        k_of(2, &[1, 2]),
        k_of(3, &[1, 2, 3, 4]),
    ] {
        assert!(stronger.at_least_as_strong_as(&pinned), "{stronger:?}");
    }
    // A lower quorum; no policy; a witness added (w4 with w1 is a quorum of it, not of the
    // pinned one); a key replaced under the same name; one the pinned policy does not know.
    for weaker in [
        k_of(1, &[1, 2, 3]),
        WitnessPolicy::default(),
        k_of(0, &[1, 2, 3]),
        k_of(2, &[1, 2, 3, 4]),
        k_of(2, &[11, 2, 3]),
        k_of(1, &[4]),
    ] {
        assert!(!weaker.at_least_as_strong_as(&pinned), "{weaker:?}");
    }
    // Anything is at least as strong as nothing.
    assert!(WitnessPolicy::default().at_least_as_strong_as(&WitnessPolicy::default()));
    assert!(k_of(1, &[4]).at_least_as_strong_as(&WitnessPolicy::default()));

    // Against the definition itself, over every policy of up to four of five witnesses (two
    // of them one name under two keys) and every set of cosigners.
    let universe: [u8; 5] = [1, 2, 3, 4, 11];
    let mut policies = Vec::new();
    for mask in 0u32..32 {
        let ids: Vec<u8> = (0..5)
            .filter(|b| mask & (1 << b) != 0)
            .map(|b| universe[b])
            .collect();
        if ids.contains(&1) && ids.contains(&11) {
            continue; // one name twice: not a policy
        }
        for k in 0..=ids.len() {
            policies.push((ids.clone(), k, k_of(k, &ids)));
        }
    }
    let accepts = |ids: &[u8], k: usize, signed: u32| {
        ids.iter()
            .filter(|i| {
                let b = universe.iter().position(|u| u == *i).unwrap();
                signed & (1 << b) != 0
            })
            .count()
            >= k
    };
    for (new_ids, new_k, new) in &policies {
        for (old_ids, old_k, old) in &policies {
            let by_definition =
                (0u32..32).all(|s| !accepts(new_ids, *new_k, s) || accepts(old_ids, *old_k, s));
            assert_eq!(
                new.at_least_as_strong_as(old),
                by_definition,
                "{new_k} of {new_ids:?} against {old_k} of {old_ids:?}"
            );
        }
    }
}
