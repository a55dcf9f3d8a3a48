//! The node's HTTP surface, driven in process through `tower::ServiceExt::oneshot`:
//! receipts and their proofs, every problem kind, pushback, byte-exact C2SP reads, and a
//! seeded property test that no request makes the node answer 5xx or anything but 2xx or
//! `application/problem+json`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::SigningKey;
use govern_admission::ProducerAllowList;
use govern_api::{AppState, DataDir, router};
use govern_core::checkpoint::Checkpoint;
use govern_core::event::{
    Event, EventSignature, Kind, Producer, PublicKey, RequestId, Role, SignedEvent, TenantId,
    Timestamp,
};
use govern_core::ids::{Hash, LeafHash, LeafIndex, RootHash, TreeSize};
use govern_core::merkle::{self, empty_root, hash_children, hash_leaf};
use govern_core::note::{NoteSigner, NoteVerifier};
use govern_store::{
    AppendError, AppendPolicy, Log, LogConfig, LogView, MemoryStorage, SystemClock,
};
use http_body_util::BodyExt as _;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use tower::ServiceExt as _;

// ---------------------------------------------------------------------------------------
// Harness

/// A node in process. Field order is drop order: the log closes before its directory goes.
struct Node {
    app: Router,
    log: Arc<Log<MemoryStorage>>,
    verifier_key: String,
    origin: String,
    edge: SigningKey,
    _tmp: tempfile::TempDir,
}

/// The HTTP surface over a log (on the in-memory store) whose policy is the allow-list of
/// the edge key: these
/// tests are about transport, proofs and problem types; identities, manifests and routing
/// are api/tests/identity.rs and api/tests/routing.rs.
fn node() -> Node {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = DataDir::open(tmp.path(), None).expect("data dir");
    let edge = dir.edge_key().expect("edge key");
    let mut allow = ProducerAllowList::default();
    allow.insert(
        Role::new("edge").expect("role"),
        PublicKey::from(&edge.verifying_key()),
    );
    let log = Arc::new(
        Log::open(
            MemoryStorage::new(),
            NoteSigner::from_private_key(dir_log_key(tmp.path()).trim()).expect("log key"),
            LogConfig::new(dir.origin()),
            Arc::new(allow),
            Arc::new(SystemClock),
        )
        .expect("open log"),
    );
    let verifier_key = dir.verifier_key();
    let app = router(AppState::new(Arc::clone(&log), &verifier_key));
    Node {
        app,
        log,
        verifier_key,
        origin: dir.origin().to_string(),
        edge,
        _tmp: tmp,
    }
}

fn dir_log_key(dir: &std::path::Path) -> String {
    std::fs::read_to_string(dir.join("log.key")).expect("log.key")
}

#[derive(Debug)]
struct Resp {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Resp {
    fn content_type(&self) -> &str {
        self.headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

async fn send(app: &Router, method: Method, uri: &str, body: impl Into<Body>) -> Resp {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .body(body.into())
        .expect("request");
    let resp = app
        .clone()
        .oneshot(req)
        .await
        .expect("the router is infallible");
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    Resp {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

async fn get(app: &Router, uri: &str) -> Resp {
    send(app, Method::GET, uri, Body::empty()).await
}

async fn post(app: &Router, body: Vec<u8>) -> Resp {
    send(app, Method::POST, "/v1/entries", body).await
}

#[track_caller]
fn assert_problem(r: &Resp, status: u16, kind: &str) {
    assert_eq!(
        r.status.as_u16(),
        status,
        "expected {status} {kind}, got {}: {}",
        r.status,
        r.text()
    );
    assert_eq!(
        r.content_type(),
        "application/problem+json",
        "{kind}: {}",
        r.text()
    );
    let p = r.json();
    assert_eq!(
        p["type"],
        format!("urn:govern:problem:{kind}"),
        "{}",
        r.text()
    );
    assert_eq!(p["status"], status, "{}", r.text());
    assert!(
        p["title"].as_str().is_some_and(|t| !t.is_empty()),
        "{}",
        r.text()
    );
    assert!(p["detail"].is_string(), "{}", r.text());
}

// ---------------------------------------------------------------------------------------
// Events

fn event_at(key: &SigningKey, message: &str, time: Timestamp) -> Event {
    let mut body = serde_json::Map::new();
    body.insert("message".into(), message.into());
    Event {
        v: 1,
        kind: Kind::new("demo.hello").expect("kind"),
        tenant: TenantId::SYSTEM,
        request: RequestId::new_v7(),
        parents: vec![],
        producer: Producer {
            role: Role::new("edge").expect("role"),
            key: PublicKey::from(&key.verifying_key()),
        },
        attestation: None,
        time,
        body,
        sealed: None,
        sig: None,
    }
}

fn signed(key: &SigningKey, message: &str) -> SignedEvent {
    event_at(key, message, Timestamp::now())
        .sign(key)
        .expect("sign")
}

fn skewed(key: &SigningKey, offset_ms: i64) -> Vec<u8> {
    let t = Timestamp::from_unix_ms(Timestamp::now().unix_ms() + offset_ms).expect("time");
    event_at(key, "skewed", t)
        .sign(key)
        .expect("sign")
        .into_bytes()
}

fn b64_hashes(hashes: &[Hash]) -> Vec<String> {
    hashes.iter().map(Hash::to_base64).collect()
}

fn hashes_of(v: &Value) -> Vec<Hash> {
    v.as_array()
        .expect("hashes array")
        .iter()
        .map(|h| Hash::from_base64(h.as_str().expect("string")).expect("base64 hash"))
        .collect()
}

// ---------------------------------------------------------------------------------------
// An independent RFC 9162 §2.1 reference, straight from the recursive definitions over the
// leaf list (the product computes them from O(log n) stored nodes instead).

fn split(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

fn mth(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root().0,
        1 => leaves[0],
        n => {
            let k = split(n);
            hash_children(&mth(&leaves[..k]), &mth(&leaves[k..]))
        }
    }
}

fn path(m: usize, leaves: &[Hash]) -> Vec<Hash> {
    if leaves.len() <= 1 {
        return vec![];
    }
    let k = split(leaves.len());
    let (mut p, other) = if m < k {
        (path(m, &leaves[..k]), mth(&leaves[k..]))
    } else {
        (path(m - k, &leaves[k..]), mth(&leaves[..k]))
    };
    p.push(other);
    p
}

fn subproof(m: usize, leaves: &[Hash], whole: bool) -> Vec<Hash> {
    let n = leaves.len();
    if m == n {
        return if whole { vec![] } else { vec![mth(leaves)] };
    }
    let k = split(n);
    let (mut p, other) = if m <= k {
        (subproof(m, &leaves[..k], whole), mth(&leaves[k..]))
    } else {
        (subproof(m - k, &leaves[k..], false), mth(&leaves[..k]))
    };
    p.push(other);
    p
}

fn bundle(entries: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        let len = u16::try_from(e.len()).expect("an event fits a u16 length");
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(e);
    }
    out
}

// ---------------------------------------------------------------------------------------
// Appends and receipts

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn append_answers_a_receipt_whose_proof_verifies_under_the_signed_checkpoint() {
    let n = node();
    let verifier = NoteVerifier::parse(&n.verifier_key).expect("verifier key");
    let mut leaves = Vec::new();
    for i in 0..5u64 {
        let event = signed(&n.edge, &format!("receipt {i}"));
        let r = post(&n.app, event.bytes().to_vec()).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert_eq!(r.content_type(), "application/json");
        let receipt = r.json();
        let mut keys: Vec<&str> = receipt
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(keys, ["checkpoint", "inclusion", "index", "leaf_hash"]);
        assert_eq!(receipt["index"], i);
        assert_eq!(receipt["leaf_hash"], hash_leaf(event.bytes()).to_hex());
        assert_eq!(receipt["leaf_hash"], event.leaf_hash().to_hex());
        let inc = receipt["inclusion"].as_object().expect("inclusion");
        assert!(
            !inc.contains_key("index"),
            "a receipt's inclusion proof does not repeat the index"
        );
        let size = inc["size"].as_u64().expect("size");
        assert!(size > i);

        let note = receipt["checkpoint"].as_str().expect("checkpoint");
        let (cp, _) =
            Checkpoint::open(note.as_bytes(), &n.origin, &verifier).expect("checkpoint verifies");
        assert_eq!(cp.size, TreeSize(size));
        let proof = hashes_of(&receipt["inclusion"]["hashes"]);
        merkle::verify_inclusion(&event.leaf_hash(), LeafIndex(i), cp.size, &proof, &cp.root)
            .expect("proof verifies");
        // A tampered proof does not.
        if let Some(first) = proof.first() {
            let mut bad = proof.clone();
            bad[0] = hash_children(first, first);
            assert!(
                merkle::verify_inclusion(&event.leaf_hash(), LeafIndex(i), cp.size, &bad, &cp.root)
                    .is_err()
            );
        }
        leaves.push(event.leaf_hash().0);
        assert_eq!(
            cp.root.0,
            mth(&leaves[..usize::try_from(size).expect("size")])
        );

        // The entry reads back byte for byte.
        let e = get(&n.app, &format!("/v1/entries/{i}")).await;
        assert_eq!(e.status, StatusCode::OK);
        assert_eq!(e.content_type(), "application/json");
        assert_eq!(&e.body[..], event.bytes());
    }
    // The same event twice is one entry: the second answer is the first's receipt (a
    // client that lost its answer may retry), under the latest checkpoint.
    let event = signed(&n.edge, "twice");
    let a = post(&n.app, event.bytes().to_vec()).await.json();
    let size = a["inclusion"]["size"].as_u64().expect("size");
    let b = post(&n.app, event.bytes().to_vec()).await.json();
    assert_eq!(a["leaf_hash"], b["leaf_hash"]);
    assert_eq!(b["index"], a["index"]);
    assert_eq!(
        b["inclusion"]["size"].as_u64(),
        Some(size),
        "nothing was appended"
    );
    let (cp, _) = Checkpoint::open(
        b["checkpoint"].as_str().expect("checkpoint").as_bytes(),
        &n.origin,
        &verifier,
    )
    .expect("checkpoint verifies");
    let hashes = hashes_of(&b["inclusion"]["hashes"]);
    merkle::verify_inclusion(
        &event.leaf_hash(),
        LeafIndex(a["index"].as_u64().expect("index")),
        cp.size,
        &hashes,
        &cp.root,
    )
    .expect("the original receipt's proof verifies");
}

// ---------------------------------------------------------------------------------------
// Every problem kind

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_kind_answers_its_problem_type_and_status() {
    let n = node();
    let app = &n.app;
    let first = signed(&n.edge, "hello");
    assert_eq!(
        post(app, first.bytes().to_vec()).await.status,
        StatusCode::OK
    );
    let valid = signed(&n.edge, "hello world").into_bytes();

    // Size: the limit is the bundle's u16 length prefix.
    assert_problem(&post(app, vec![b'x'; 65_536]).await, 413, "event-too-large");
    assert_problem(
        &post(app, vec![b' '; 1 << 20]).await,
        413,
        "event-too-large",
    );
    assert_problem(&post(app, vec![b'x'; 65_535]).await, 400, "event-not-json");

    // Not JSON / not an object.
    for body in [
        &b""[..],
        b"nope",
        b"{",
        b"[1,2]",
        b"\"s\"",
        b"1",
        b"null",
        b"\xff\xfe{}",
    ] {
        assert_problem(&post(app, body.to_vec()).await, 400, "event-not-json");
    }
    // Floats anywhere, even where the envelope would refuse the field anyway.
    for body in [
        &br#"{"v":1.5}"#[..],
        br#"{"a":{"b":[1e3]}}"#,
        br#"{"v":1.0}"#,
    ] {
        assert_problem(&post(app, body.to_vec()).await, 400, "event-float");
    }
    let with_float = {
        let mut v: Value = serde_json::from_slice(&valid).expect("json");
        v["body"]["amount"] = json!(0.5);
        serde_json::to_vec(&v).expect("json")
    };
    assert_problem(&post(app, with_float).await, 400, "event-float");

    // Envelope: JSON objects that are not envelopes.
    let envelope_cases: Vec<Vec<u8>> = vec![
        br#"{}"#.to_vec(),
        br#"{"v":1}"#.to_vec(),
        {
            let mut v: Value = serde_json::from_slice(&valid).expect("json");
            v["extra"] = json!("field");
            govern_core::canonical::to_vec(&v).expect("jcs")
        },
        {
            let mut v: Value = serde_json::from_slice(&valid).expect("json");
            v["kind"] = json!("NotAKind");
            govern_core::canonical::to_vec(&v).expect("jcs")
        },
        {
            let mut v: Value = serde_json::from_slice(&valid).expect("json");
            v["time"] = json!("2026-01-01T00:00:00Z");
            govern_core::canonical::to_vec(&v).expect("jcs")
        },
        {
            let mut v: Value = serde_json::from_slice(&valid).expect("json");
            v["sig"] = json!("not base64!");
            govern_core::canonical::to_vec(&v).expect("jcs")
        },
        {
            let mut v: Value = serde_json::from_slice(&valid).expect("json");
            v["producer"]["key"] = json!(B64.encode([1u8; 31]));
            govern_core::canonical::to_vec(&v).expect("jcs")
        },
    ];
    for body in envelope_cases {
        assert_problem(&post(app, body).await, 400, "event-envelope");
    }

    // Not canonical: a valid, signed envelope with one space added, or reordered members.
    let mut spaced = b"{ ".to_vec();
    spaced.extend_from_slice(&valid[1..]);
    assert_problem(&post(app, spaced).await, 400, "event-not-canonical");
    let pretty = serde_json::to_vec_pretty(&serde_json::from_slice::<Value>(&valid).expect("json"))
        .expect("json");
    assert_problem(&post(app, pretty).await, 400, "event-not-canonical");
    let mut escaped = String::from_utf8(valid.clone()).expect("utf8");
    escaped = escaped.replacen(
        "\"message\":\"hello world\"",
        "\"message\":\"hello\\u0020world\"",
        1,
    );
    assert_problem(
        &post(app, escaped.into_bytes()).await,
        400,
        "event-not-canonical",
    );

    // Unsigned: canonical, no sig.
    let unsigned = govern_core::canonical::to_vec(&event_at(&n.edge, "unsigned", Timestamp::now()))
        .expect("jcs");
    assert_problem(&post(app, unsigned).await, 400, "event-unsigned");

    // Version 2, properly signed.
    let mut v2 = event_at(&n.edge, "v2", Timestamp::now());
    v2.v = 2;
    assert_problem(
        &post(app, v2.sign(&n.edge).expect("sign").into_bytes()).await,
        400,
        "event-version",
    );

    // Bad signature. A byte changed inside a string value keeps the bytes canonical JSON of a
    // well-formed envelope, so only the Ed25519 check can catch it: the signed message is the
    // JCS of the envelope without `sig`, which now differs.
    let text = String::from_utf8(valid.clone()).expect("utf8");
    let flipped = text.replacen("hello world", "hello worle", 1);
    assert_ne!(flipped, text);
    assert_problem(
        &post(app, flipped.into_bytes()).await,
        400,
        "event-bad-signature",
    );
    // ... and so is a changed signature (first base64 character: still 64 valid bytes).
    let sig_at = text.find("\"sig\":\"").expect("sig") + 7;
    let mut bytes = valid.clone();
    bytes[sig_at] = if bytes[sig_at] == b'A' { b'B' } else { b'A' };
    assert_problem(&post(app, bytes).await, 400, "event-bad-signature");
    // ... and a signature by another key than the producer's.
    let other = SigningKey::from_bytes(&[9; 32]);
    let mut e = event_at(&n.edge, "stolen", Timestamp::now());
    let theirs = {
        let mut e2 = e.clone();
        e2.producer.key = PublicKey::from(&other.verifying_key());
        e2.sign(&other).expect("sign").event().sig
    };
    e.sig = theirs;
    assert_problem(
        &post(app, govern_core::canonical::to_vec(&e).expect("jcs")).await,
        400,
        "event-bad-signature",
    );

    // A producer key that is no curve point.
    let not_a_point = (0u8..=255)
        .map(|b| {
            let mut k = [b; 32];
            k[31] &= 0x7f;
            k
        })
        .find(|k| ed25519_dalek::VerifyingKey::from_bytes(k).is_err())
        .expect("some 32-byte string is not a point");
    let mut e = event_at(&n.edge, "bad key", Timestamp::now());
    e.producer.key = PublicKey(not_a_point);
    e.sig = Some(EventSignature([0; 64]));
    assert_problem(
        &post(app, govern_core::canonical::to_vec(&e).expect("jcs")).await,
        400,
        "event-bad-key",
    );

    // Too many parents.
    let mut e = event_at(&n.edge, "parents", Timestamp::now());
    e.parents = (0..65u8).map(|i| LeafHash(Hash([i; 32]))).collect();
    assert_problem(
        &post(app, e.sign(&n.edge).expect("sign").into_bytes()).await,
        400,
        "event-too-many-parents",
    );

    // A producer the allow-list does not know: 403.
    let stranger = SigningKey::from_bytes(&[7; 32]);
    assert_problem(
        &post(app, signed(&stranger, "who am I").into_bytes()).await,
        403,
        "unknown-producer",
    );
    // The right key under another role is a stranger too.
    let mut e = event_at(&n.edge, "wrong role", Timestamp::now());
    e.producer.role = Role::new("policy").expect("role");
    assert_problem(
        &post(app, e.sign(&n.edge).expect("sign").into_bytes()).await,
        403,
        "unknown-producer",
    );

    // Time ten minutes off either way.
    assert_problem(&post(app, skewed(&n.edge, 600_000)).await, 400, "time-skew");
    assert_problem(
        &post(app, skewed(&n.edge, -600_000)).await,
        400,
        "time-skew",
    );
    // ... while a few seconds is fine.
    assert_eq!(
        post(app, skewed(&n.edge, -5_000)).await.status,
        StatusCode::OK
    );

    // Nothing refused above entered the log.
    assert_eq!(n.log.latest().size, TreeSize(2));

    // Reads.
    assert_problem(&get(app, "/v1/entries/2").await, 404, "entry-not-found");
    assert_problem(
        &get(app, "/v1/entries/18446744073709551615").await,
        404,
        "entry-not-found",
    );
    for p in [
        "/v1/entries/abc",
        "/v1/entries/-1",
        "/v1/entries/18446744073709551616",
        "/v1/entries/1.0",
        "/v1/entries/%20",
    ] {
        assert_problem(&get(app, p).await, 400, "bad-path");
    }
    for p in [
        "/v1/proofs/inclusion?index=0&size=3",
        "/v1/proofs/inclusion?index=0&size=18446744073709551615",
        "/v1/proofs/consistency?from=1&to=3",
    ] {
        assert_problem(&get(app, p).await, 400, "beyond-log");
    }
    for p in [
        "/v1/proofs/inclusion?index=2&size=2",
        "/v1/proofs/inclusion?index=0&size=0",
        "/v1/proofs/consistency?from=0&to=2",
        "/v1/proofs/consistency?from=2&to=1",
        "/v1/proofs/consistency?from=0&to=0",
    ] {
        assert_problem(&get(app, p).await, 400, "invalid-proof-request");
    }
    for p in [
        "/v1/proofs/inclusion",
        "/v1/proofs/inclusion?index=0",
        "/v1/proofs/inclusion?size=1",
        "/v1/proofs/inclusion?index=a&size=1",
        "/v1/proofs/inclusion?index=0&size=-1",
        "/v1/proofs/inclusion?index=0&size=1.5",
        "/v1/proofs/inclusion?index=0&size=18446744073709551616",
        "/v1/proofs/consistency",
        "/v1/proofs/consistency?from=1",
        "/v1/proofs/consistency?from=1&to=x",
        "/v1/proofs/consistency?from=&to=1",
    ] {
        assert_problem(&get(app, p).await, 400, "bad-query");
    }
    for p in [
        "/tile/0/000",
        "/tile/0/000.p/3",
        "/tile/0/001.p/1",
        "/tile/1/000.p/1",
        "/tile/entries/000",
        "/tile/entries/000.p/3",
        "/tile/0/x001/000",
        "/tile/63/000.p/1",
        "/tile/0/000.p/0",
        "/tile/0/000.p/256",
        "/tile/64/000",
        "/tile/0/0",
        "/tile/0/x000/001",
        "/tile/bogus",
        "/tile/entries/000.p/",
        "/tile/0/000/",
        "/tile/0/x018/x446/x744/x073/x709/x551/616",
    ] {
        assert_problem(&get(app, p).await, 404, "tile-not-found");
    }
    for p in [
        "/nope",
        "/ui/nope.js",
        "/ui/",
        "/v1",
        "/v1/nope",
        "/v1/entries/0/extra",
        "/tile",
        "/checkpoint/x",
        "/v2/log",
    ] {
        assert_problem(&get(app, p).await, 404, "not-found");
    }
    for (m, p) in [
        (Method::GET, "/v1/entries"),
        (Method::PUT, "/v1/entries"),
        (Method::POST, "/checkpoint"),
        (Method::DELETE, "/v1/entries/0"),
        (Method::PUT, "/tile/0/000.p/1"),
        (Method::POST, "/v1/proofs/inclusion?index=0&size=1"),
        (Method::PATCH, "/v1/log"),
    ] {
        assert_problem(
            &send(app, m, p, Body::empty()).await,
            405,
            "method-not-allowed",
        );
    }
}

/// RFC 8785 writes numbers as IEEE doubles, so 2^53 + 1 and 2^53 share one canonical form.
/// An event signed over exactly its bytes (by hand: `Event::sign` refuses to) holding an
/// integer outside ±(2^53 − 1) is refused at append with its own problem type, naming the
/// integer; ±(2^53 − 1) are appended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn integers_beyond_two_to_the_53_are_refused_at_append() {
    use ed25519_dalek::Signer as _;
    let n = node();
    let hand_signed = |amount: &str| -> Vec<u8> {
        let unsigned = String::from_utf8(
            govern_core::canonical::to_vec(&event_at(&n.edge, "big", Timestamp::now()))
                .expect("jcs"),
        )
        .expect("utf-8")
        .replacen("\"body\":{", &format!("\"body\":{{\"amount\":{amount},"), 1);
        let mut message = govern_core::event::EVENT_SIGNATURE_DOMAIN.to_vec();
        message.push(0);
        message.extend_from_slice(unsigned.as_bytes());
        let sig = B64.encode(n.edge.sign(&message).to_bytes());
        unsigned
            .replacen(
                ",\"tenant\":",
                &format!(",\"sig\":\"{sig}\",\"tenant\":"),
                1,
            )
            .into_bytes()
    };
    for amount in ["9007199254740991", "-9007199254740991"] {
        let r = post(&n.app, hand_signed(amount)).await;
        assert_eq!(r.status, StatusCode::OK, "{amount}: {}", r.text());
    }
    for amount in [
        "9007199254740992",
        "9007199254740993",
        "-9007199254740992",
        "-9007199254740993",
        "18446744073709551615",
    ] {
        let r = post(&n.app, hand_signed(amount)).await;
        assert_problem(&r, 400, "event-integer-out-of-range");
        assert_eq!(
            r.json()["detail"],
            format!(
                "event holds the integer {amount} at $.body.amount, outside ±(2^53 − 1); write it as a decimal string"
            )
        );
    }
}

// ---------------------------------------------------------------------------------------
// Pushback

/// A policy that admits everything, but holds the sequencer inside the first check until
/// released: with a one-slot queue the log is then full, deterministically.
struct Gate {
    entered: Mutex<Option<mpsc::Sender<()>>>,
    release: Mutex<mpsc::Receiver<()>>,
}

impl AppendPolicy for Gate {
    fn check(&self, _event: &SignedEvent, _view: &dyn LogView) -> Result<Vec<String>, AppendError> {
        let first = self.entered.lock().expect("lock").take();
        if let Some(tx) = first {
            tx.send(()).expect("test listening");
            self.release
                .lock()
                .expect("lock")
                .recv_timeout(Duration::from_secs(30))
                .expect("released");
        }
        Ok(Vec::new())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_503_pushback_with_retry_after() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = DataDir::open(tmp.path(), None).expect("data dir");
    let key_text = std::fs::read_to_string(tmp.path().join("log.key")).expect("log.key");
    let signer = NoteSigner::from_private_key(key_text.trim()).expect("log key");
    let (entered_tx, entered_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel();
    let gate = Gate {
        entered: Mutex::new(Some(entered_tx)),
        release: Mutex::new(release_rx),
    };
    let config = LogConfig {
        queue_events_max: 1,
        batch_events_max: 1,
        batch_wait_ms: 0,
        ..LogConfig::new(dir.origin())
    };
    let storage = MemoryStorage::new();
    let log = Arc::new(
        Log::open(
            storage,
            signer,
            config,
            Arc::new(gate),
            Arc::new(SystemClock),
        )
        .expect("log"),
    );
    let app = router(AppState::new(Arc::clone(&log), &dir.verifier_key()));
    let edge = dir.edge_key().expect("edge");

    // 1: taken by the sequencer, which then blocks in the policy.
    let first = tokio::spawn({
        let app = app.clone();
        let body = signed(&edge, "one").into_bytes();
        async move { post(&app, body).await }
    });
    tokio::task::spawn_blocking(move || entered_rx.recv_timeout(Duration::from_secs(30)))
        .await
        .expect("join")
        .expect("the sequencer reached the policy");
    // 2: fills the one-slot queue.
    let second = log.submit(signed(&edge, "two")).expect("one slot is free");
    // 3: refused, over HTTP and directly.
    let r = post(&app, signed(&edge, "three").into_bytes()).await;
    assert_problem(&r, 503, "pushback");
    assert_eq!(
        r.headers
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );
    assert!(matches!(
        log.submit(signed(&edge, "four")),
        Err(AppendError::Pushback { retry_after_s: 1 })
    ));
    // Nothing waiting was lost: release, and both queued appends complete in order.
    release_tx.send(()).expect("gate waiting");
    let r1 = first.await.expect("join");
    assert_eq!(r1.status, StatusCode::OK, "{}", r1.text());
    assert_eq!(r1.json()["index"], 0);
    let a2 = second.await.expect("answered").expect("appended");
    assert_eq!(a2.index, LeafIndex(1));
    // And the log takes appends again.
    let r = post(&app, signed(&edge, "five").into_bytes()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["index"], 2);
    drop(app);
    drop(log);
}

// ---------------------------------------------------------------------------------------
// Byte-exact reads

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoint_tiles_bundles_and_proofs_are_byte_exact() {
    const N: usize = 300;
    let n = node();
    let app = &n.app;
    let verifier = NoteVerifier::parse(&n.verifier_key).expect("verifier key");

    // The empty log already has a signed checkpoint.
    let r = get(app, "/checkpoint").await;
    assert_eq!(r.status, StatusCode::OK);
    let (cp0, _) = Checkpoint::open(&r.body, &n.origin, &verifier).expect("empty checkpoint");
    assert_eq!((cp0.size, cp0.root), (TreeSize(0), empty_root()));

    // 300 events: two full-and-partial tiles at level 0, one at level 1.
    let events: Vec<SignedEvent> = (0..N)
        .map(|i| signed(&n.edge, &format!("entry {i}")))
        .collect();
    let pending: Vec<_> = events
        .iter()
        .map(|e| n.log.submit(e.clone()).expect("queued"))
        .collect();
    for (i, rx) in pending.into_iter().enumerate() {
        assert_eq!(
            rx.await.expect("answered").expect("appended").index,
            LeafIndex(i as u64)
        );
    }
    let entries: Vec<Vec<u8>> = events.iter().map(|e| e.bytes().to_vec()).collect();
    let leaves: Vec<Hash> = entries.iter().map(|e| hash_leaf(e).0).collect();
    let root = mth(&leaves);

    // /checkpoint: a note signed by the log key over exactly the C2SP body.
    let r = get(app, "/checkpoint").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.content_type(), "text/plain; charset=utf-8");
    assert_eq!(
        r.headers
            .get(header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok()),
        Some("no-cache")
    );
    let (cp, note) = Checkpoint::open(&r.body, &n.origin, &verifier).expect("checkpoint verifies");
    assert_eq!(
        note.text,
        format!("{}\n{N}\n{}\n", n.origin, B64.encode(root.0))
    );
    assert_eq!((cp.size, cp.root), (TreeSize(N as u64), RootHash(root)));
    assert_eq!(r.text(), n.log.latest().note);
    assert!(cp.extensions.is_empty());

    // /v1/log.
    let r = get(app, "/v1/log").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.json(),
        json!({"origin": n.origin, "verifier_key": n.verifier_key, "size": N})
    );

    // Hash tiles: concatenated 32-byte hashes.
    let cat = |hs: &[Hash]| hs.iter().flat_map(|h| h.0).collect::<Vec<u8>>();
    let tile_cases: Vec<(&str, Vec<u8>)> = vec![
        ("/tile/0/000", cat(&leaves[..256])),
        ("/tile/0/000.p/1", cat(&leaves[..1])),
        ("/tile/0/000.p/255", cat(&leaves[..255])),
        ("/tile/0/001.p/44", cat(&leaves[256..300])),
        ("/tile/0/001.p/7", cat(&leaves[256..263])),
        ("/tile/1/000.p/1", mth(&leaves[..256]).0.to_vec()),
        ("/tile/entries/000", bundle(&entries[..256])),
        ("/tile/entries/000.p/3", bundle(&entries[..3])),
        ("/tile/entries/001.p/44", bundle(&entries[256..300])),
    ];
    for (p, want) in tile_cases {
        let r = get(app, p).await;
        assert_eq!(r.status, StatusCode::OK, "{p}: {}", r.text());
        assert_eq!(r.content_type(), "application/octet-stream", "{p}");
        assert_eq!(
            r.headers
                .get(header::CACHE_CONTROL)
                .and_then(|v| v.to_str().ok()),
            Some("public, max-age=31536000, immutable"),
            "{p}"
        );
        assert!(
            r.body[..] == want[..],
            "{p}: {} bytes, want {}",
            r.body.len(),
            want.len()
        );
    }
    // The bundle really is u16 BE length-prefixed, and decodes back to the entries.
    let b = get(app, "/tile/entries/000.p/2").await.body;
    let len0 = usize::from(u16::from_be_bytes([b[0], b[1]]));
    assert_eq!(&b[2..2 + len0], &entries[0][..]);
    assert_eq!(
        usize::from(u16::from_be_bytes([b[2 + len0], b[3 + len0]])),
        entries[1].len()
    );
    assert_eq!(
        govern_core::tiles::decode_bundle(&get(app, "/tile/entries/001.p/44").await.body)
            .expect("decodes"),
        entries[256..]
    );
    // Not yet there.
    for p in [
        "/tile/0/001",
        "/tile/0/001.p/45",
        "/tile/1/000.p/2",
        "/tile/2/000.p/1",
        "/tile/entries/001",
        "/tile/entries/001.p/45",
    ] {
        assert_problem(&get(app, p).await, 404, "tile-not-found");
    }

    // Entries.
    for i in [0, 1, 255, 256, N - 1] {
        let r = get(app, &format!("/v1/entries/{i}")).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(&r.body[..], &entries[i][..]);
    }

    // Inclusion proofs: exactly RFC 9162 PATH(m, D[n]).
    for (index, size) in [
        (0, 1),
        (0, N),
        (5, 6),
        (255, 256),
        (256, 300),
        (257, 300),
        (299, 300),
        (128, 200),
    ] {
        let r = get(
            app,
            &format!("/v1/proofs/inclusion?index={index}&size={size}"),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert_eq!(r.content_type(), "application/json");
        let want = path(index, &leaves[..size]);
        assert_eq!(
            r.json(),
            json!({"index": index, "size": size, "hashes": b64_hashes(&want)})
        );
        merkle::verify_inclusion(
            &LeafHash(leaves[index]),
            LeafIndex(index as u64),
            TreeSize(size as u64),
            &want,
            &RootHash(mth(&leaves[..size])),
        )
        .expect("reference proof verifies");
    }

    // Consistency proofs: exactly RFC 9162 PROOF(m, D[n]).
    for (from, to) in [
        (1, 1),
        (1, 2),
        (1, N),
        (100, N),
        (256, N),
        (255, 257),
        (299, 300),
        (N, N),
        (7, 8),
        (3, 200),
    ] {
        let r = get(app, &format!("/v1/proofs/consistency?from={from}&to={to}")).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let want = subproof(from, &leaves[..to], true);
        assert_eq!(
            r.json(),
            json!({"from": from, "to": to, "hashes": b64_hashes(&want)})
        );
        merkle::verify_consistency(
            TreeSize(from as u64),
            TreeSize(to as u64),
            &want,
            &RootHash(mth(&leaves[..from])),
            &RootHash(mth(&leaves[..to])),
        )
        .expect("reference proof verifies");
    }

    // Health.
    let r = get(app, "/healthz").await;
    assert_eq!((r.status, r.text().as_str()), (StatusCode::OK, "ok\n"));
}

// ---------------------------------------------------------------------------------------
// Property: no request gets a 5xx, and every non-2xx is a problem

const PATHS: &[&str] = &[
    "/",
    "/ui/app.js",
    "/ui/nope",
    "/ui/%BB",
    "/v1/leaves/00",
    "/healthz",
    "/v1/log",
    "/v1/entries",
    "/v1/entries/0",
    "/v1/entries/1",
    "/v1/entries/99999",
    "/v1/proofs/inclusion?index=0&size=1",
    "/v1/proofs/inclusion?index=1&size=3",
    "/v1/proofs/consistency?from=1&to=2",
    "/v1/proofs/consistency?from=2&to=3",
    "/checkpoint",
    "/tile/0/000",
    "/tile/0/000.p/1",
    "/tile/0/000.p/2",
    "/tile/1/000.p/1",
    "/tile/entries/000.p/1",
    "/tile/entries/000.p/3",
    "/tile/0/x001/x234/067.p/8",
    "/tile/63/x018/x446/x744/x073/x709/x551/615",
];

const SAFE: &[u8] = b"abcxyzABCXYZ0123456789-._~/?&=%+:,;@!$'()*";

fn random_number(rng: &mut StdRng) -> String {
    match rng.gen_range(0..8) {
        0 => "0".into(),
        1 => rng.gen_range(0..5u64).to_string(),
        2 => rng.r#gen::<u64>().to_string(),
        3 => "18446744073709551616".into(),
        4 => format!("-{}", rng.gen_range(0..10u64)),
        5 => format!("{}.5", rng.gen_range(0..10u64)),
        6 => format!("0{}", rng.gen_range(0..10u64)),
        _ => String::new(),
    }
}

fn random_uri(rng: &mut StdRng) -> String {
    let mut s = if rng.gen_bool(0.15) {
        // Proof queries around the log's (small) size: in, at and beyond it.
        let (a, b) = (rng.gen_range(0..48u64), rng.gen_range(0..48u64));
        if rng.gen_bool(0.5) {
            format!("/v1/proofs/inclusion?index={a}&size={b}")
        } else {
            format!("/v1/proofs/consistency?from={a}&to={b}")
        }
    } else {
        PATHS[rng.gen_range(0..PATHS.len())].to_string()
    };
    for _ in 0..rng.gen_range(0..4) {
        match rng.gen_range(0..9) {
            // Replace a run of digits with another number.
            0 => {
                let digits: Vec<usize> = s
                    .char_indices()
                    .filter(|(_, c)| c.is_ascii_digit())
                    .map(|(i, _)| i)
                    .collect();
                if let Some(&at) = digits.get(rng.gen_range(0..digits.len().max(1))) {
                    let end = s[at..]
                        .find(|c: char| !c.is_ascii_digit())
                        .map_or(s.len(), |e| at + e);
                    s.replace_range(at..end, &random_number(rng));
                }
            }
            // Insert a safe character.
            1 => {
                let at = rng.gen_range(1..=s.len());
                let c = SAFE[rng.gen_range(0..SAFE.len())] as char;
                if s.is_char_boundary(at) {
                    s.insert(at, c);
                }
            }
            // Delete a character (never the leading slash).
            2 if s.len() > 1 => {
                let at = rng.gen_range(1..s.len());
                if s.is_char_boundary(at) && s.is_char_boundary(at + 1) {
                    s.remove(at);
                }
            }
            // A percent-encoded random byte.
            3 => s.push_str(&format!("%{:02X}", rng.r#gen::<u8>())),
            // A random or repeated query parameter.
            4 => {
                let sep = if s.contains('?') { '&' } else { '?' };
                let keys = ["index", "size", "from", "to", "x", "", "index[]"];
                s.push_str(&format!(
                    "{sep}{}={}",
                    keys[rng.gen_range(0..keys.len())],
                    random_number(rng)
                ));
            }
            // Another segment.
            5 => s.push_str(&format!("/{}", random_number(rng))),
            6 => s.push_str(".p/"),
            7 => s = s.replacen("/tile/", &format!("/tile/{}/", random_number(rng)), 1),
            _ => s.push_str(["x", "/x000", "/..", "//", "?", "#frag"][rng.gen_range(0..6)]),
        }
    }
    s
}

fn random_body(rng: &mut StdRng, valid: &[u8], key: &SigningKey) -> Vec<u8> {
    let mut b = valid.to_vec();
    match rng.gen_range(0..12) {
        0 => return signed(key, &format!("fresh {}", rng.r#gen::<u32>())).into_bytes(),
        1 => {
            let at = rng.gen_range(0..b.len());
            b[at] ^= 1 << rng.gen_range(0..8);
        }
        2 => {
            let at = rng.gen_range(0..b.len());
            b[at] = rng.r#gen();
        }
        3 => {
            let at = rng.gen_range(0..b.len());
            b.remove(at);
        }
        4 => {
            let at = rng.gen_range(0..=b.len());
            b.insert(at, SAFE[rng.gen_range(0..SAFE.len())]);
        }
        5 => b.truncate(rng.gen_range(0..b.len())),
        6 => {
            // Change one member to a value of another type, re-canonicalized.
            let mut v: Value = serde_json::from_slice(valid).expect("json");
            let fields = [
                "v",
                "kind",
                "tenant",
                "request",
                "parents",
                "producer",
                "time",
                "body",
                "sig",
                "sealed",
                "attestation",
                "zz",
            ];
            let values = [
                json!(null),
                json!(true),
                json!(0),
                json!(-1),
                json!(u64::MAX),
                json!(""),
                json!("x"),
                json!([]),
                json!({}),
                json!(["00"]),
                json!({"role": "edge"}),
                json!(1.5),
            ];
            v[fields[rng.gen_range(0..fields.len())]] =
                values[rng.gen_range(0..values.len())].clone();
            b = govern_core::canonical::to_vec(&v)
                .unwrap_or_else(|_| serde_json::to_vec(&v).expect("json"));
        }
        7 => b = (0..rng.gen_range(0..200)).map(|_| rng.r#gen()).collect(),
        8 => b = skewed(key, rng.gen_range(-3_600_000..3_600_000)),
        9 => b.extend(std::iter::repeat_n(b' ', rng.gen_range(0..70_000))),
        10 => b = Vec::new(),
        _ => {} // the valid event again: appended again
    }
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_requests_never_get_a_5xx_and_errors_are_always_problems() {
    const REQUESTS: usize = 3000;
    let n = node();
    let app = &n.app;
    let valid = signed(&n.edge, "seed").into_bytes();
    assert_eq!(post(app, valid.clone()).await.status, StatusCode::OK);
    let mut rng = StdRng::seed_from_u64(0x9e37_79b9_7f4a_7c15);
    let methods = [
        Method::GET,
        Method::GET,
        Method::GET,
        Method::POST,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::HEAD,
        Method::PATCH,
        Method::OPTIONS,
    ];
    let (mut ok, mut problems, mut skipped) = (0usize, 0usize, 0usize);
    let mut kinds = std::collections::BTreeSet::new();
    for i in 0..REQUESTS {
        let method = methods[rng.gen_range(0..methods.len())].clone();
        let (uri, body) = if method == Method::POST && rng.gen_bool(0.8) {
            (
                "/v1/entries".to_string(),
                random_body(&mut rng, &valid, &n.edge),
            )
        } else {
            let body = if rng.gen_bool(0.1) {
                random_body(&mut rng, &valid, &n.edge)
            } else {
                Vec::new()
            };
            (random_uri(&mut rng), body)
        };
        let Ok(req) = Request::builder()
            .method(method.clone())
            .uri(&uri)
            .body(Body::from(body.clone()))
        else {
            skipped += 1;
            continue;
        };
        let resp = app.clone().oneshot(req).await.expect("infallible");
        let (parts, rbody) = resp.into_parts();
        let rbody = rbody.collect().await.expect("body").to_bytes();
        let ctx = || {
            format!(
                "request {i}: {method} {uri} ({} body bytes) -> {}: {}",
                body.len(),
                parts.status,
                String::from_utf8_lossy(&rbody[..rbody.len().min(300)])
            )
        };
        assert!(!parts.status.is_server_error(), "{}", ctx());
        if parts.status.is_success() {
            ok += 1;
            continue;
        }
        let ct = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        assert_eq!(ct, "application/problem+json", "{}", ctx());
        problems += 1;
        if method == Method::HEAD {
            continue; // no body
        }
        let p: Value = serde_json::from_slice(&rbody).unwrap_or_else(|_| panic!("{}", ctx()));
        let kind = p["type"].as_str().unwrap_or_default();
        assert!(kind.starts_with("urn:govern:problem:"), "{}", ctx());
        assert_eq!(p["status"], parts.status.as_u16(), "{}", ctx());
        kinds.insert(kind.to_string());
    }
    eprintln!("{ok} ok, {problems} problems, {skipped} unbuildable URIs; kinds: {kinds:?}");
    assert!(
        skipped < REQUESTS / 10,
        "too many URIs were not even requests: {skipped}"
    );
    assert!(
        ok > 100 && problems > 1000,
        "the generator should reach both: {ok} ok, {problems} problems"
    );
    for kind in [
        "event-not-json",
        "event-envelope",
        "event-bad-signature",
        "beyond-log",
        "invalid-proof-request",
        "bad-query",
        "bad-path",
        "tile-not-found",
        "not-found",
        "method-not-allowed",
    ] {
        assert!(
            kinds.contains(&format!("urn:govern:problem:{kind}")),
            "{kind} never reached: {kinds:?}"
        );
    }
    // The log is still whole: its checkpoint verifies and covers every entry.
    let r = get(app, "/checkpoint").await;
    let (cp, _) = Checkpoint::open(
        &r.body,
        &n.origin,
        &NoteVerifier::parse(&n.verifier_key).expect("vkey"),
    )
    .expect("checkpoint");
    let mut leaves = Vec::new();
    for i in 0..cp.size.0 {
        leaves.push(hash_leaf(&get(app, &format!("/v1/entries/{i}")).await.body).0);
    }
    assert_eq!(cp.root.0, mth(&leaves));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_signed_checkpoint_is_listed_by_size_in_pages() {
    let n = node();
    for i in 0..3 {
        let r = post(&n.app, signed(&n.edge, &format!("cp {i}")).bytes().to_vec()).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    }
    let all = get(&n.app, "/v1/checkpoints").await;
    assert_eq!(all.status, StatusCode::OK, "{}", all.text());
    let all = all.json();
    let list = all["checkpoints"].as_array().unwrap();
    assert!(!list.is_empty());
    let verifier = NoteVerifier::parse(&n.verifier_key).unwrap();
    let mut last = None;
    for c in list {
        let (cp, _) =
            Checkpoint::open(c["note"].as_str().unwrap().as_bytes(), &n.origin, &verifier).unwrap();
        assert_eq!(cp.size.0, c["size"].as_u64().unwrap());
        assert!(last < Some(cp.size.0), "not by size");
        last = Some(cp.size.0);
    }
    assert_eq!(last, Some(n.log.latest().size.0));
    assert_eq!(all["next"], Value::Null);
    // One at a time: the first page points at the rest.
    let page = get(&n.app, "/v1/checkpoints?limit=1").await.json();
    assert_eq!(page["checkpoints"][0], list[0]);
    let next = page["next"].as_u64().unwrap();
    let rest = get(&n.app, &format!("/v1/checkpoints?from={next}"))
        .await
        .json();
    assert_eq!(rest["checkpoints"].as_array().unwrap()[..], list[1..]);
    // Beyond the tree: none. Bad limits: refused.
    let beyond = get(&n.app, "/v1/checkpoints?from=1000000").await.json();
    assert_eq!(beyond["checkpoints"], json!([]));
    assert_problem(
        &get(&n.app, "/v1/checkpoints?limit=0").await,
        400,
        "bad-query",
    );
    assert_problem(
        &get(&n.app, "/v1/checkpoints?limit=x").await,
        400,
        "bad-query",
    );
}
