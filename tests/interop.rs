//! Interoperability: a real `govern node` process, checked over plain HTTP by independent
//! implementations of the formats it serves: Cloudflare's `tlog_tiles` (a port of Go's
//! `sumdb/tlog`) for tiles, tree hashes, inclusion and consistency proofs and checkpoints,
//! and `signed_note` (a port of Go's `sumdb/note`) for the checkpoint signature.
//!
//! The HTTP client is a few lines over `std::net::TcpStream`, so nothing of govern's own
//! client code is trusted either.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::SigningKey;
use govern_core::ids::LeafHash;
use govern_core::note::NoteSigner;
use serde_json::Value;
use signed_note::{Note, StandardVerifier, VerifierList};
use tlog_tiles::{TileHashReader, TileReader};

const EVENTS: usize = 600;
const MORE_EVENTS: usize = 70;
/// Tile height: tlog-tiles is `sumdb/tlog` with H = 8.
const H: u8 = 8;

// ---------------------------------------------------------------------------------------
// The node process

struct NodeProcess {
    child: Child,
    addr: SocketAddr,
    _stdout: BufReader<ChildStdout>,
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_node(data_dir: &std::path::Path) -> NodeProcess {
    let mut child = Command::new(env!("CARGO_BIN_EXE_govern"))
        .arg("node")
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--listen", "127.0.0.1:0"])
        .env("GOVERN_LOG", "warn")
        .env_remove("GOVERN_CONFIG")
        .env_remove("GOVERN_ORIGIN")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn govern node");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let prefix = "govern node listening on http://";
    let mut line = String::new();
    let addr = loop {
        line.clear();
        let n = stdout.read_line(&mut line).expect("read node stdout");
        if n == 0 {
            let status = child.wait();
            panic!("govern node exited before listening: {status:?}");
        }
        if let Some(rest) = line.strip_prefix(prefix) {
            let addr = rest.split_whitespace().next().expect("address");
            break addr.parse::<SocketAddr>().expect("socket address");
        }
    };
    NodeProcess {
        child,
        addr,
        _stdout: stdout,
    }
}

// ---------------------------------------------------------------------------------------
// A minimal HTTP/1.1 client

struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let at = body
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("chunk size line");
        let size_line = std::str::from_utf8(&body[..at]).expect("ascii");
        let size = usize::from_str_radix(size_line.split(';').next().expect("size").trim(), 16)
            .expect("hex size");
        body = &body[at + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&body[..size]);
        body = &body[size + 2..];
    }
}

fn http(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> Answer {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\nContent-Type: application/json\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).expect("write");
    s.write_all(body).expect("write");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of headers");
    let head = std::str::from_utf8(&raw[..split]).expect("ascii headers");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("status line");
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status code");
    let headers: Vec<(String, String)> = lines
        .map(|l| {
            let (k, v) = l.split_once(':').expect("header");
            (k.trim().to_string(), v.trim().to_string())
        })
        .collect();
    let mut answer = Answer {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    };
    if answer
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        answer.body = dechunk(&answer.body);
    } else if let Some(len) = answer.header("content-length") {
        assert_eq!(
            answer.body.len(),
            len.parse::<usize>().expect("length"),
            "{method} {path}: truncated body"
        );
    }
    answer
}

fn get_ok(addr: SocketAddr, path: &str) -> Answer {
    let a = http(addr, "GET", path, b"");
    assert_eq!(
        a.status,
        200,
        "GET {path}: {}",
        String::from_utf8_lossy(&a.body)
    );
    a
}

// ---------------------------------------------------------------------------------------
// Mapping between sumdb/tlog tile paths and C2SP tlog-tiles paths.
//
// sumdb names a tile `tile/<H>/<L>/<N>[.p/<W>]` and an entry tile `tile/<H>/data/<N>...`;
// C2SP fixes H = 8, drops it, and calls data tiles `entries`. Everything after is the same.

fn c2sp_path(t: &tlog_tiles::Tile) -> String {
    let p = t.path();
    let rest = p
        .strip_prefix("tile/8/")
        .unwrap_or_else(|| panic!("height 8 expected: {p}"));
    match rest.strip_prefix("data/") {
        Some(n) => format!("tile/entries/{n}"),
        None => format!("tile/{rest}"),
    }
}

fn sumdb_path(c2sp: &str) -> String {
    let rest = c2sp.strip_prefix("tile/").expect("tile/ prefix");
    match rest.strip_prefix("entries/") {
        Some(n) => format!("tile/8/data/{n}"),
        None => format!("tile/8/{rest}"),
    }
}

/// Reads hash tiles from the node, by tlog_tiles' own tile coordinates.
struct HttpTiles {
    addr: SocketAddr,
    fetched: std::cell::RefCell<Vec<String>>,
}

impl TileReader for HttpTiles {
    fn height(&self) -> u8 {
        H
    }

    fn read_tiles(&self, tiles: &[tlog_tiles::Tile]) -> Result<Vec<Vec<u8>>, tlog_tiles::Error> {
        tiles
            .iter()
            .map(|t| {
                let path = format!("/{}", c2sp_path(t));
                let a = http(self.addr, "GET", &path, b"");
                self.fetched.borrow_mut().push(path.clone());
                if a.status != 200 || a.body.len() != t.width() as usize * tlog_tiles::HASH_SIZE {
                    return Err(tlog_tiles::Error::InvalidTile);
                }
                Ok(a.body)
            })
            .collect()
    }

    fn save_tiles(&self, _tiles: &[tlog_tiles::Tile], _data: &[Vec<u8>]) {}
}

fn tlog_hash(b64: &str) -> tlog_tiles::Hash {
    tlog_tiles::Hash::parse_hash(b64).expect("base64 hash")
}

fn hashes_of(v: &Value) -> Vec<tlog_tiles::Hash> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|h| tlog_hash(h.as_str().expect("string")))
        .collect()
}

/// Opens a checkpoint note with signed_note and tlog_tiles only.
fn open_checkpoint(note: &[u8], verifier_key: &str) -> tlog_tiles::Checkpoint {
    let verifiers = VerifierList::new(vec![Box::new(
        StandardVerifier::new(verifier_key).expect("verifier key"),
    )]);
    let note = Note::from_bytes(note).expect("signed note");
    let (verified, unverified) = note
        .verify(&verifiers)
        .expect("the log key signed the checkpoint");
    assert_eq!((verified.len(), unverified.len()), (1, 0));
    tlog_tiles::Checkpoint::from_bytes(note.text()).expect("C2SP checkpoint")
}

// ---------------------------------------------------------------------------------------
// Events

fn event(key: &SigningKey, attestation: LeafHash, message: &str) -> Vec<u8> {
    let mut body = serde_json::Map::new();
    body.insert("message".into(), message.into());
    support::edge_event(key, attestation, body).into_bytes()
}

/// The edge's current attestation, from `GET /v1/services`.
fn edge_attestation(addr: SocketAddr) -> LeafHash {
    support::leaf_of(&get_ok(addr, "/v1/services").json(), "edge")
}

struct Appended {
    bytes: Vec<u8>,
    receipt: Value,
}

/// Append `count` events from `threads` concurrent clients; index → (bytes, receipt).
fn append_many(
    addr: SocketAddr,
    key: &SigningKey,
    count: usize,
    threads: usize,
    tag: &str,
) -> BTreeMap<u64, Appended> {
    let per = count.div_ceil(threads);
    let attestation = edge_attestation(addr);
    let results: Vec<Vec<Appended>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    (0..per)
                        .filter(|i| t * per + i < count)
                        .map(|i| {
                            let bytes = event(key, attestation, &format!("{tag} {t}/{i}"));
                            let a = http(addr, "POST", "/v1/entries", &bytes);
                            assert_eq!(
                                a.status,
                                200,
                                "append: {}",
                                String::from_utf8_lossy(&a.body)
                            );
                            Appended {
                                bytes,
                                receipt: a.json(),
                            }
                        })
                        .collect()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("client thread"))
            .collect()
    });
    let mut by_index = BTreeMap::new();
    for a in results.into_iter().flatten() {
        let index = a.receipt["index"].as_u64().expect("index");
        assert!(
            by_index.insert(index, a).is_none(),
            "index {index} given twice"
        );
    }
    assert_eq!(by_index.len(), count);
    by_index
}

// ---------------------------------------------------------------------------------------

#[test]
fn tile_paths_match_tlog_tiles_both_ways() {
    use govern_core::tiles::Tile as Ours;
    let indexes = [
        0u64,
        1,
        7,
        999,
        1000,
        1001,
        65_535,
        1_234_067,
        999_999_999,
        u64::MAX / 256,
        u64::MAX,
    ];
    for level in [0u8, 1, 2, 5, 63] {
        for &n in &indexes {
            for w in [1u32, 2, 128, 255, 256] {
                let theirs = tlog_tiles::Tile::new(H, level, n, w, false);
                let partial = (w < 256).then(|| u8::try_from(w).expect("w < 256"));
                let ours = Ours::Hashes {
                    level,
                    index: n,
                    partial,
                };
                assert_eq!(ours.to_string(), c2sp_path(&theirs));
                let rest = ours.to_string();
                assert_eq!(
                    Ours::parse(rest.strip_prefix("tile/").expect("prefix")),
                    Ok(ours),
                    "{rest}"
                );
                if sumdb_path(&rest).len() <= 52 {
                    let back =
                        tlog_tiles::Tile::from_path(&sumdb_path(&rest)).expect("tlog parses ours");
                    assert_eq!(back, theirs);
                }
                if level == 0 {
                    let mut data = theirs;
                    data.set_is_data();
                    let ours = Ours::Entries { index: n, partial };
                    assert_eq!(ours.to_string(), c2sp_path(&data));
                    let rest = ours.to_string();
                    assert_eq!(
                        Ours::parse(rest.strip_prefix("tile/").expect("prefix")),
                        Ok(ours)
                    );
                }
            }
        }
    }
    // Every tile tlog_tiles says a log publishes, for sizes around the tile boundaries.
    for (old, new) in [
        (0, 1),
        (0, 255),
        (0, 256),
        (0, 257),
        (255, 65_537),
        (65_536, 16_777_219),
        (1 << 40, (1 << 40) + 300),
    ] {
        for t in tlog_tiles::Tile::new_tiles(H, old, new) {
            let p = c2sp_path(&t);
            let ours = Ours::parse(p.strip_prefix("tile/").expect("prefix"))
                .unwrap_or_else(|e| panic!("{p}: {e}"));
            assert_eq!(ours.to_string(), p);
            assert_eq!(ours.width(), u64::from(t.width()));
            assert!(
                ours.exists_at(govern_core::ids::TreeSize(new)),
                "{p} at {new}"
            );
        }
    }
    // What tlog_tiles refuses, we refuse. (Not `.p/0`: tlog_tiles 0.2 accepts W = 0 in
    // `from_path` and then panics in `Tile::new`; ours refuses it, see the unit tests.)
    for bad in [
        "tile/0/0001",
        "tile/0/x000/001",
        "tile/0/000.p/256",
        "tile/0/01",
        "tile/0/000.p/08",
        "tile/0/x1/000",
    ] {
        assert!(
            Ours::parse(bad.strip_prefix("tile/").expect("prefix")).is_err(),
            "{bad}"
        );
        assert!(
            tlog_tiles::Tile::from_path(&sumdb_path(bad)).is_err(),
            "{bad} (tlog)"
        );
    }
}

#[test]
fn a_running_node_agrees_with_tlog_tiles_and_signed_note() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data_dir = tmp.path().join("node");
    let node = start_node(&data_dir);
    let addr = node.addr;
    let edge_text = std::fs::read_to_string(data_dir.join("edge.key")).expect("edge.key");
    let edge = NoteSigner::from_private_key(edge_text.trim())
        .expect("edge key")
        .signing_key()
        .clone();

    let info = get_ok(addr, "/v1/log").json();
    let verifier_key = info["verifier_key"]
        .as_str()
        .expect("verifier key")
        .to_string();
    let origin = info["origin"].as_str().expect("origin").to_string();
    // A node's first entries: the genesis manifest, the log's, the edge's and the key service's attestations.
    let boot = info["size"].as_u64().expect("size");
    assert_eq!(boot, 4);
    let mut bytes_at: BTreeMap<u64, Vec<u8>> = (0..boot)
        .map(|i| (i, get_ok(addr, &format!("/v1/entries/{i}")).body))
        .collect();

    let appended = append_many(addr, &edge, EVENTS, 6, "first");
    bytes_at.extend(appended.iter().map(|(i, a)| (*i, a.bytes.clone())));
    let mut sizes = std::collections::BTreeSet::new();

    // The checkpoint: signed_note verifies it, tlog_tiles parses it.
    let cp_answer = get_ok(addr, "/checkpoint");
    assert!(
        cp_answer
            .header("content-type")
            .is_some_and(|c| c.starts_with("text/plain"))
    );
    let cp = open_checkpoint(&cp_answer.body, &verifier_key);
    assert_eq!(cp.origin(), origin);
    assert_eq!(cp.size(), boot + EVENTS as u64);
    assert_eq!(cp.extension(), "");
    assert_eq!(get_ok(addr, "/v1/log").json()["size"], boot + EVENTS as u64);
    let (size, root) = (cp.size(), *cp.hash());

    // tlog_tiles reads the tree through the node's tiles (authenticating each one against the
    // checkpoint) and computes the same root.
    let tiles = HttpTiles {
        addr,
        fetched: std::cell::RefCell::new(Vec::new()),
    };
    let reader = TileHashReader::new(size, root, &tiles);
    assert_eq!(
        tlog_tiles::tree_hash(size, &reader).expect("tree hash from tiles"),
        root
    );
    assert!(
        tiles
            .fetched
            .borrow()
            .iter()
            .any(|p| p == "/tile/1/000.p/2"),
        "{:?}",
        tiles.fetched.borrow()
    );

    // Every tile a log of this size publishes, as tlog_tiles derives it from the stored
    // hashes, is byte for byte what the node serves; and every entry bundle holds entries
    // whose record hashes are the level-0 tile.
    for t in tlog_tiles::Tile::new_tiles(H, 0, size) {
        let served = get_ok(addr, &format!("/{}", c2sp_path(&t))).body;
        assert_eq!(
            served,
            t.read_data(&reader).expect("tile data from tlog_tiles"),
            "{}",
            c2sp_path(&t)
        );
        if t.level() == 0 {
            let mut data = t;
            data.set_is_data();
            let bundle = get_ok(addr, &format!("/{}", c2sp_path(&data))).body;
            let mut rest = &bundle[..];
            let mut i = t.level_index() * 256;
            while !rest.is_empty() {
                let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
                let entry = &rest[2..2 + len];
                rest = &rest[2 + len..];
                assert_eq!(entry, &bytes_at[&i][..], "entry {i}");
                let h = tlog_tiles::record_hash(entry);
                let k = usize::try_from(i - t.level_index() * 256).expect("small");
                assert_eq!(&served[k * 32..(k + 1) * 32], &h.0[..], "leaf hash {i}");
                if let Some(a) = appended.get(&i) {
                    assert_eq!(a.receipt["leaf_hash"], hex::encode(h.0));
                }
                i += 1;
            }
            assert_eq!(i, t.level_index() * 256 + u64::from(t.width()));
        }
    }

    // Inclusion proofs: the node's equal tlog_tiles' and check with tlog_tiles.
    for i in (0..size)
        .step_by(7)
        .chain([1, 255, 256, 257, 511, 512, size - 1])
    {
        let served = get_ok(addr, &format!("/v1/proofs/inclusion?index={i}&size={size}")).json();
        let served = hashes_of(&served["hashes"]);
        assert_eq!(
            served,
            tlog_tiles::prove_record(size, i, &reader).expect("prove_record"),
            "index {i}"
        );
        let leaf = tlog_tiles::record_hash(&bytes_at[&i]);
        tlog_tiles::check_record(&served, size, root, i, leaf).expect("check_record");
    }

    // Every receipt: its checkpoint verifies with signed_note, its root is what tlog_tiles
    // computes for that size from today's tiles, its inclusion proof checks, and the node's
    // consistency proof from it to now equals tlog_tiles' and checks.
    for (&i, a) in &appended {
        let r = &a.receipt;
        let old = open_checkpoint(
            r["checkpoint"].as_str().expect("note").as_bytes(),
            &verifier_key,
        );
        let n = old.size();
        assert_eq!(r["inclusion"]["size"], n);
        assert!(n > i && n <= size);
        let leaf = tlog_tiles::record_hash(&a.bytes);
        tlog_tiles::check_record(
            &hashes_of(&r["inclusion"]["hashes"]),
            n,
            *old.hash(),
            i,
            leaf,
        )
        .expect("receipt proof");
        if sizes.insert(n) {
            assert_eq!(
                tlog_tiles::tree_hash(n, &reader).expect("old root"),
                *old.hash(),
                "root at {n}"
            );
            let served = get_ok(addr, &format!("/v1/proofs/consistency?from={n}&to={size}")).json();
            assert_eq!(
                (served["from"].as_u64(), served["to"].as_u64()),
                (Some(n), Some(size))
            );
            let served = hashes_of(&served["hashes"]);
            assert_eq!(
                served,
                tlog_tiles::prove_tree(size, n, &reader).expect("prove_tree"),
                "from {n}"
            );
            tlog_tiles::check_tree(&served, size, root, n, *old.hash()).expect("check_tree");
        }
    }
    assert!(
        sizes.len() > 1,
        "six concurrent clients should see several batches"
    );
    // Consistency from sizes that were never a checkpoint too.
    for n in [1, 2, 3, 100, 255, 256, 257, 300, size] {
        let served = hashes_of(
            &get_ok(addr, &format!("/v1/proofs/consistency?from={n}&to={size}")).json()["hashes"],
        );
        assert_eq!(
            served,
            tlog_tiles::prove_tree(size, n, &reader).expect("prove_tree"),
            "from {n}"
        );
        let old = tlog_tiles::tree_hash(n, &reader).expect("old root");
        tlog_tiles::check_tree(&served, size, root, n, old).expect("check_tree");
    }

    // The CLI's own verifier agrees, and remembers the checkpoint ...
    let state = tmp.path().join("verify-state.json");
    let verify = |what: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_govern"))
            .args([
                "verify",
                "log",
                "--url",
                &format!("http://{addr}"),
                "--key",
                &verifier_key,
                "--state",
            ])
            .arg(&state)
            .env("GOVERN_LOG", "warn")
            .output()
            .expect("run govern verify log");
        assert!(
            out.status.success(),
            "verify log ({what}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    verify("first");

    // ... then the log grows; the new checkpoint is consistent with the old one by tlog_tiles.
    let more = append_many(addr, &edge, MORE_EVENTS, 3, "more");
    assert_eq!(more.keys().next(), Some(&(size)));
    let cp2 = open_checkpoint(&get_ok(addr, "/checkpoint").body, &verifier_key);
    assert_eq!(cp2.size(), size + MORE_EVENTS as u64);
    let tiles2 = HttpTiles {
        addr,
        fetched: std::cell::RefCell::new(Vec::new()),
    };
    let reader2 = TileHashReader::new(cp2.size(), *cp2.hash(), &tiles2);
    assert_eq!(
        tlog_tiles::tree_hash(cp2.size(), &reader2).expect("tree hash"),
        *cp2.hash()
    );
    assert_eq!(
        tlog_tiles::tree_hash(size, &reader2).expect("old tree hash"),
        root
    );
    let served = get_ok(
        addr,
        &format!("/v1/proofs/consistency?from={size}&to={}", cp2.size()),
    )
    .json();
    let served = hashes_of(&served["hashes"]);
    tlog_tiles::check_tree(&served, cp2.size(), *cp2.hash(), size, root)
        .expect("consistent growth");
    assert_eq!(
        served,
        tlog_tiles::prove_tree(cp2.size(), size, &reader2).expect("prove_tree")
    );
    verify("after growth");

    // A forged checkpoint (another key, same origin) is refused by signed_note.
    let forger = NoteSigner::new(&origin, SigningKey::from_bytes(&[3; 32])).expect("signer");
    let forged = forger
        .sign(
            std::str::from_utf8(Note::from_bytes(&cp_answer.body).expect("note").text())
                .expect("utf8"),
        )
        .expect("sign");
    let verifiers = VerifierList::new(vec![Box::new(
        StandardVerifier::new(&verifier_key).expect("vkey"),
    )]);
    assert!(
        Note::from_bytes(forged.as_bytes())
            .expect("well-formed")
            .verify(&verifiers)
            .is_err()
    );
    // And the verifier key the node announces is the one in signed_note's format for its
    // name and key (the key ID is SHA-256(name || 0x0A || 0x01 || key)[:4]).
    let (name, rest) = verifier_key.split_once('+').expect("name+id+key");
    let (id_hex, key_b64) = rest.split_once('+').expect("id+key");
    let key_bytes = B64.decode(key_b64).expect("base64");
    assert_eq!(key_bytes[0], 0x01);
    assert_eq!(name, origin);
    assert_eq!(
        u32::from_str_radix(id_hex, 16).expect("hex id"),
        signed_note::key_id(name, &key_bytes)
    );
    drop(node);
}
