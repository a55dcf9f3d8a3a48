//! The verified follower against logs served by a tiny HTTP server: it hands a fold every
//! entry in order, resumes after a saved position with only the new ones, and fails loudly,
//! naming where, at a rollback, a fork, and a tampered entry or tile.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use govern_client::follower::{FollowError, Follower, ProofCheck};
use govern_client::{Client, wire::ConsistencyProof};
use govern_core::checkpoint::Checkpoint;
use govern_core::event::{
    Event, Kind, Producer, RequestId, Role, SignedEvent, TenantId, Timestamp,
};
use govern_core::ids::{LeafIndex, TreeSize};
use govern_core::merkle::{self, MemoryTree, NodeSource};
use govern_core::note::{NoteSigner, NoteVerifier};
use govern_core::tiles::{TILE_HEIGHT, TILE_WIDTH, Tile, encode_bundle, tiles_at};

const ORIGIN: &str = "example.org/log";

/// A log's files as a C2SP tlog-tiles server holds them, and its tree.
#[derive(Default)]
struct Served {
    files: HashMap<String, Vec<u8>>,
    tree: MemoryTree,
}

type Shared = Arc<Mutex<Served>>;

/// `count` signed events of the `tag`ged history.
fn events(tag: &str, from: usize, count: usize) -> Vec<Vec<u8>> {
    let key = ed25519_dalek::SigningKey::from_bytes(&[3; 32]);
    (from..from + count)
        .map(|i| {
            let mut body = serde_json::Map::new();
            body.insert("n".into(), i.into());
            body.insert("tag".into(), tag.into());
            Event::new(
                Kind::new("transfer.requested").unwrap(),
                TenantId(uuid::Uuid::now_v7()),
                RequestId::new_v7(),
                Producer::new(Role::new("edge").unwrap(), &key.verifying_key()),
                Timestamp::now(),
                body,
            )
            .sign(&key)
            .unwrap()
            .into_bytes()
        })
        .collect()
}

/// `served` holding `entries`, signed by `signer`: every tile and `/checkpoint`.
fn publish(served: &Shared, signer: &NoteSigner, entries: &[Vec<u8>]) {
    let tree: MemoryTree = entries
        .iter()
        .map(|e| SignedEvent::from_bytes(e).unwrap().leaf_hash())
        .collect();
    let size = TreeSize(entries.len() as u64);
    let mut files = HashMap::new();
    for tile in tiles_at(size) {
        let bytes = match tile {
            Tile::Entries { index, .. } => {
                let from = usize::try_from(index * TILE_WIDTH).unwrap();
                let to = from + usize::try_from(tile.width()).unwrap();
                encode_bundle(entries[from..to].iter().map(Vec::as_slice))
            }
            Tile::Hashes { level, index, .. } => (0..tile.width())
                .flat_map(|i| {
                    tree.node(level * TILE_HEIGHT, index * TILE_WIDTH + i)
                        .unwrap()
                        .0
                })
                .collect(),
        };
        files.insert(format!("/{tile}"), bytes);
    }
    let note = Checkpoint::new(ORIGIN, size, tree.root())
        .sign(signer)
        .unwrap();
    files.insert("/checkpoint".into(), note.into_bytes());
    *served.lock().unwrap() = Served { files, tree };
}

#[derive(serde::Deserialize)]
struct Sizes {
    from: u64,
    to: u64,
}

async fn file(
    State(served): State<Shared>,
    uri: Uri,
    sizes: Result<Query<Sizes>, QueryRejection>,
) -> Response {
    let served = served.lock().unwrap();
    if uri.path() == "/v1/proofs/consistency" {
        let Ok(Query(q)) = sizes else {
            return StatusCode::BAD_REQUEST.into_response();
        };
        let hashes = merkle::consistency_proof(&served.tree, TreeSize(q.from), TreeSize(q.to))
            .unwrap()
            .iter()
            .map(|h| h.to_base64())
            .collect();
        return axum::Json(ConsistencyProof {
            from: q.from,
            to: q.to,
            hashes,
        })
        .into_response();
    }
    match served.files.get(uri.path()) {
        Some(bytes) => bytes.clone().into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// A server of an empty log, and its base URL.
async fn serve() -> (Shared, String) {
    let served = Shared::default();
    let app = axum::Router::new()
        .fallback(file)
        .with_state(Arc::clone(&served));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (served, url)
}

fn signer() -> NoteSigner {
    NoteSigner::new(ORIGIN, ed25519_dalek::SigningKey::from_bytes(&[9; 32])).unwrap()
}

fn follower(url: &str) -> Follower {
    let verifier = NoteVerifier::parse(&signer().verifier_key()).unwrap();
    Follower::new(Client::for_log(url).unwrap(), verifier)
}

/// Follow once, folding the indices seen.
async fn follow(f: &mut Follower) -> Result<(Vec<u64>, ProofCheck), FollowError> {
    let mut seen = Vec::new();
    let update = f
        .follow(|index: LeafIndex, _: &SignedEvent| {
            seen.push(index.0);
            Ok::<(), std::convert::Infallible>(())
        })
        .await?;
    assert_eq!(update.folded, seen.len() as u64);
    Ok((seen, update.proof))
}

#[tokio::test]
async fn resuming_folds_only_the_new_entries() {
    let (served, url) = serve().await;
    let a = events("a", 0, 900);
    // 600 = 2 full bundles and 88: a resume inside a level-0 and a level-1 tile.
    publish(&served, &signer(), &a[..600]);
    let mut f = follower(&url);
    let (seen, proof) = follow(&mut f).await.unwrap();
    assert_eq!(seen, (0..600).collect::<Vec<_>>(), "every entry, in order");
    assert_eq!(proof, ProofCheck::NotNeeded);
    let saved = f.position().unwrap().clone();
    assert_eq!(saved.size, 600);

    // The log grows; a new follower resumes from the saved position.
    publish(&served, &signer(), &a);
    let mut f = follower(&url).resume(saved.clone());
    let (seen, proof) = follow(&mut f).await.unwrap();
    assert_eq!(seen, (600..900).collect::<Vec<_>>(), "only the new entries");
    assert_eq!(proof, ProofCheck::Verified);
    assert_eq!(f.position().unwrap().size, 900);
    // Nothing new: nothing folded.
    let (seen, _) = follow(&mut f).await.unwrap();
    assert!(seen.is_empty());

    // Anchored, it reads everything again and holds the log to the position.
    let mut f = follower(&url).anchored(saved);
    let (seen, _) = follow(&mut f).await.unwrap();
    assert_eq!(seen.len(), 900);
}

#[tokio::test]
async fn a_rollback_is_refused() {
    let (served, url) = serve().await;
    let a = events("a", 0, 300);
    publish(&served, &signer(), &a);
    let mut f = follower(&url);
    follow(&mut f).await.unwrap();
    publish(&served, &signer(), &a[..200]);
    let err = follow(&mut f).await.unwrap_err();
    assert!(
        matches!(
            err,
            FollowError::Rollback {
                old_size: 300,
                size: 200
            }
        ),
        "{err}"
    );
    assert!(err.to_string().ends_with("a rollback"), "{err}");
    assert_eq!(f.position().unwrap().size, 300, "the position did not move");
}

#[tokio::test]
async fn a_fork_is_refused() {
    let (served, url) = serve().await;
    publish(&served, &signer(), &events("a", 0, 300));
    let mut f = follower(&url);
    follow(&mut f).await.unwrap();
    let saved = f.position().unwrap().clone();
    // Another history under the same key, of the same size.
    publish(&served, &signer(), &events("b", 0, 300));
    let err = follow(&mut f).await.unwrap_err();
    assert!(
        matches!(err, FollowError::Fork { old_size: 300, .. }),
        "{err}"
    );
    // And longer: resumed, the frontier the tiles give does not hash to the saved root;
    // anchored, the first 300 entries do not.
    publish(&served, &signer(), &events("b", 0, 700));
    for mut f in [
        follower(&url).resume(saved.clone()),
        follower(&url).anchored(saved.clone()),
    ] {
        let mut seen = 0;
        let err = f
            .follow(|_, _| {
                seen += 1;
                Ok::<(), std::convert::Infallible>(())
            })
            .await
            .unwrap_err();
        assert!(
            matches!(err, FollowError::Fork { old_size: 300, .. }),
            "{err}"
        );
        assert!(
            err.to_string()
                .contains("the first 300 entries now hash to"),
            "{err}"
        );
        assert_eq!(f.position(), Some(&saved));
    }
}

/// A copy of `served`'s file `path` with byte `at` flipped.
fn flip(served: &Shared, path: &str, at: usize) {
    let mut s = served.lock().unwrap();
    let bytes = s.files.get_mut(path).unwrap();
    bytes[at] ^= 1;
}

#[tokio::test]
async fn a_tampered_entry_or_tile_names_where() {
    let (served, url) = serve().await;
    let a = events("a", 0, 600);
    publish(&served, &signer(), &a[..300]);
    let mut f = follower(&url);
    follow(&mut f).await.unwrap();
    let saved = f.position().unwrap().clone();

    // An entry's byte (entry 520's signature, in the last bundle, of 88).
    publish(&served, &signer(), &a);
    let offset: usize =
        a[512..520].iter().map(|e| e.len() + 2).sum::<usize>() + 2 + a[520].len() - 5;
    flip(&served, "/tile/entries/002.p/88", offset);
    let err = follow(&mut follower(&url).resume(saved.clone()))
        .await
        .unwrap_err();
    assert!(
        matches!(err, FollowError::Entry { index: 520, .. }),
        "{err}"
    );

    // A leaf hash in the level-0 tile.
    publish(&served, &signer(), &a);
    flip(&served, "/tile/0/001", 32 * 77);
    let err = follow(&mut follower(&url).resume(saved.clone()))
        .await
        .unwrap_err();
    assert!(
        matches!(err, FollowError::Entry { index: 333, .. }),
        "{err}"
    );
    assert!(
        err.to_string().starts_with("entry 333: its leaf hash is"),
        "{err}"
    );

    // A hash of the level-1 tile.
    publish(&served, &signer(), &a);
    flip(&served, "/tile/1/000.p/2", 32 + 4);
    let err = follow(&mut follower(&url).resume(saved.clone()))
        .await
        .unwrap_err();
    match &err {
        FollowError::Tile { tile, reason } => {
            assert_eq!(tile, "tile/1/000.p/2");
            assert_eq!(reason, "hash 1 differs from the entries");
        }
        other => panic!("{other}"),
    }
    // The root a checkpoint names.
    publish(&served, &signer(), &a);
    let wrong = Checkpoint::new(
        ORIGIN,
        TreeSize(600),
        govern_core::ids::RootHash(govern_core::ids::Hash([1; 32])),
    );
    served.lock().unwrap().files.insert(
        "/checkpoint".into(),
        wrong.sign(&signer()).unwrap().into_bytes(),
    );
    let err = follow(&mut follower(&url).resume(saved.clone()))
        .await
        .unwrap_err();
    assert!(matches!(err, FollowError::Checkpoint(_)), "{err}");
    // A checkpoint under another key.
    let impostor =
        NoteSigner::new(ORIGIN, ed25519_dalek::SigningKey::from_bytes(&[8; 32])).unwrap();
    publish(&served, &impostor, &a);
    let err = follow(&mut follower(&url).resume(saved)).await.unwrap_err();
    assert!(matches!(err, FollowError::Checkpoint(_)), "{err}");
}
