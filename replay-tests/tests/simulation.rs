//! A seeded, in-process simulation of the scenario, on the in-memory store, with a manual
//! clock and seeded generators: genesis (a manifest pinning the simulation's image, signed by
//! two of its signers); the log, the edge and the key service attesting through the
//! simulated NSM; then `govern scenario`'s own driver (govern-client's) over loopback HTTP
//! against the node's own routes: tenants, passkey registrations and logins, API keys,
//! invitations, role changes, revocations, policies, wallets, sealed transfers and
//! approvals, scoped reads, a key rotation and a shredding; last, a service presenting a
//! genuine document of an unpinned measurement, which the log refuses and quarantines.
//!
//! Every time and every random byte that reaches the log comes from the simulation
//! ([`Manual`], [`Seeded`], [`SeededPasskey`]), so two runs of one seed write the same log
//! byte for byte, and its root is a golden: a change to any format, any signed body or any
//! rule that changes what the log holds changes it (`goldens/simulation-root.txt`; update it
//! on purpose, with the change that explains it). webauthn-rs draws its ceremonies'
//! challenges itself; they never reach the log (a registration records its
//! `attestationObject`, and a signed action's challenge is the challenge object's hash).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use ed25519_dalek::SigningKey;
use govern_admission::{IdentityPolicy, StateView as _};
use govern_api::edge::{Edge, EdgeConfig};
use govern_api::keys::KeyService;
use govern_api::{AppState, LocalService};
use govern_client::scenario::{self, Driver, NewPasskey, Params, Passkey};
use govern_core::action::UserSignature;
use govern_core::append::{AppendError, Clock, Entropy, IdentityError};
use govern_core::attestation::TrustAnchor;
use govern_core::event::{Event, Kind, Producer, PublicKey, RequestId, Role, TenantId, Timestamp};
use govern_core::ids::{LeafIndex, RootHash};
use govern_core::manifest::{Measurement, SignedManifest, TrustedRoot};
use govern_core::note::NoteSigner;
use govern_store::{Appender, Log, LogConfig, MemoryStorage};
use govern_workers::identity::{ServiceIdentity, ServiceKeys};
use govern_workers::nsm::SimulatedNsm;
use rand::SeedableRng as _;
use rand::rngs::StdRng;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

/// The simulation's clock: it moves only when the simulation moves it.
#[derive(Debug)]
struct Manual(AtomicI64);

impl Clock for Manual {
    fn now(&self) -> Timestamp {
        Timestamp::from_unix_ms(self.0.load(Ordering::SeqCst)).unwrap()
    }
}

impl Manual {
    fn advance_s(&self, s: i64) {
        self.advance_ms(s * 1000);
    }

    fn advance_ms(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

/// The simulation's randomness: one seeded ChaCha generator for every role.
#[derive(Debug)]
struct Seeded(parking_lot::Mutex<StdRng>);

impl Entropy for Seeded {
    fn fill(&self, buf: &mut [u8]) {
        rand::RngCore::fill_bytes(&mut *self.0.lock(), buf);
    }
}

/// A software passkey whose key and credential id come from the simulation's seed: WebAuthn
/// registration with a `none` attestation, assertions signed with ES256 (RFC 6979, so the
/// same key signs the same bytes the same way), user presence and verification set. The
/// node checks both with webauthn-rs at the edge and govern-core's verifier in the log.
struct SeededPasskey {
    key: p256::ecdsa::SigningKey,
    id: [u8; 16],
    counter: u32,
}

impl SeededPasskey {
    fn new(rng: &mut StdRng) -> Self {
        let mut id = [0u8; 16];
        rand::RngCore::fill_bytes(rng, &mut id);
        Self {
            key: p256::ecdsa::SigningKey::random(rng),
            id,
            counter: 0,
        }
    }

    fn client_data(options: &Value, origin: &str) -> Vec<u8> {
        json!({
            "type": "webauthn.create",
            "challenge": options["publicKey"]["challenge"],
            "origin": origin,
            "crossOrigin": false,
        })
        .to_string()
        .into_bytes()
    }

    fn cose_key(&self) -> Vec<u8> {
        use ciborium::value::{Integer, Value as Cbor};
        let point = self.key.verifying_key().to_encoded_point(false);
        let int = |i: i64| Cbor::Integer(Integer::from(i));
        let map = Cbor::Map(vec![
            (int(1), int(2)),
            (int(3), int(-7)),
            (int(-1), int(1)),
            (int(-2), Cbor::Bytes(point.x().unwrap().to_vec())),
            (int(-3), Cbor::Bytes(point.y().unwrap().to_vec())),
        ]);
        let mut out = Vec::new();
        ciborium::into_writer(&map, &mut out).unwrap();
        out
    }
}

impl Passkey for SeededPasskey {
    fn register(&mut self, origin: &str, options: Value) -> scenario::Result<Value> {
        use ciborium::value::Value as Cbor;
        let rp_id = options["publicKey"]["rp"]["id"]
            .as_str()
            .unwrap_or_default();
        let client_data = Self::client_data(&options, origin);
        let mut auth = Sha256::digest(rp_id.as_bytes()).to_vec();
        auth.push(0x45); // user present, user verified, attested credential data
        auth.extend_from_slice(&self.counter.to_be_bytes());
        auth.extend_from_slice(&[0u8; 16]); // AAGUID
        auth.extend_from_slice(&16u16.to_be_bytes());
        auth.extend_from_slice(&self.id);
        auth.extend_from_slice(&self.cose_key());
        let object = Cbor::Map(vec![
            (Cbor::Text("fmt".into()), Cbor::Text("none".into())),
            (Cbor::Text("attStmt".into()), Cbor::Map(Vec::new())),
            (Cbor::Text("authData".into()), Cbor::Bytes(auth)),
        ]);
        let mut attestation = Vec::new();
        ciborium::into_writer(&object, &mut attestation)?;
        Ok(json!({
            "id": B64URL.encode(self.id),
            "rawId": B64URL.encode(self.id),
            "type": "public-key",
            "response": {
                "attestationObject": B64URL.encode(attestation),
                "clientDataJSON": B64URL.encode(client_data),
            },
            "extensions": {},
        }))
    }

    fn authenticate(&mut self, origin: &str, options: Value) -> scenario::Result<Value> {
        let rp_id = options["publicKey"]["rpId"].as_str().unwrap_or_default();
        let challenge = options["publicKey"]["challenge"]
            .as_str()
            .unwrap_or_default();
        self.counter += 1;
        let UserSignature::Passkey {
            authenticator_data,
            client_data_json,
            signature,
        } = govern_client::action::es256_assertion(
            &self.key,
            rp_id,
            origin,
            challenge,
            self.counter,
        )
        else {
            return Err("an ES256 assertion is a passkey signature".into());
        };
        Ok(json!({
            "id": B64URL.encode(self.id),
            "rawId": B64URL.encode(self.id),
            "type": "public-key",
            "response": {
                "authenticatorData": authenticator_data,
                "clientDataJSON": client_data_json,
                "signature": signature,
                "userHandle": null,
            },
            "extensions": {},
        }))
    }
}

/// 2026-01-01T00:00:00Z.
const START_MS: i64 = 1_767_225_600_000;
const ORIGIN: &str = "simulation.govern.example/log";
const RP_ID: &str = "localhost";
const WEB_ORIGIN: &str = "http://localhost:7600";
const OPERATOR: &str = "simulation-operator-token";

/// The log one run of `seed` wrote: every entry's bytes, and its root.
struct Run {
    entries: Vec<Vec<u8>>,
    root: RootHash,
}

fn role(name: &str) -> Role {
    Role::new(name).unwrap()
}

async fn simulate(seed: u64, dir: &Path) -> Run {
    let clock = Arc::new(Manual(AtomicI64::new(START_MS)));
    let mut rng = StdRng::seed_from_u64(seed);
    let image = dir.join("image");
    std::fs::write(&image, b"govern simulation image v1").unwrap();
    let ca = dir.join("dev-ca");

    // The services' NSMs (one dev CA, made on first use) and keys, all from the seed.
    let roles = ["log", "edge", "keys"];
    let nsms: Vec<SimulatedNsm> = roles
        .iter()
        .map(|r| SimulatedNsm::open_with(&ca, &image, role(r), clock.now(), &mut rng).unwrap())
        .collect();
    let root = TrustAnchor::from_der(nsms[0].root_der()).unwrap();
    let log_key = SigningKey::generate(&mut rng);
    let keys: Vec<ServiceKeys> = roles
        .iter()
        .map(|r| {
            let ed = if *r == "log" {
                log_key.clone()
            } else {
                SigningKey::generate(&mut rng)
            };
            ServiceKeys::from_rng(role(r), ed, &mut rng).unwrap()
        })
        .collect();

    // The manifest: the dev template, pinning this image for every role, signed by two of
    // the simulation's three signers.
    let signers: Vec<NoteSigner> = (1..=3)
        .map(|i| {
            NoteSigner::new(format!("sim-signer-{i}"), SigningKey::generate(&mut rng)).unwrap()
        })
        .collect();
    let mut manifest = SignedManifest::from_json(govern_api::devpin::DEV_TEMPLATE.as_bytes())
        .unwrap()
        .manifest;
    let pinned: Vec<Role> = manifest.roles.keys().cloned().collect();
    let measured = govern_workers::nsm::dev_measurements(&image, &pinned).unwrap();
    for (r, pcr0) in pinned.iter().zip(measured) {
        manifest.roles.get_mut(r).unwrap().measurements = vec![Measurement {
            pcr0: hex::encode(pcr0),
            pcr1: None,
            pcr2: None,
        }];
    }
    manifest.trusted_root = TrustedRoot::Dev {
        sha256: hex::encode(root.sha256()),
    };
    manifest.serial = 1;
    let mut signed = SignedManifest::new(manifest);
    for s in signers.iter().take(2) {
        signed.sign(s.signing_key()).unwrap();
    }
    let vkeys: Vec<_> = signers.iter().map(NoteSigner::verifying_key).collect();
    let manifest_signers =
        govern_api::datadir::parse_manifest_signers(&govern_api::devpin::signers_toml(&vkeys, 2))
            .unwrap();

    // The log, on the in-memory store, under the node's own policy.
    let policy = Arc::new(IdentityPolicy::new(
        manifest_signers,
        PublicKey::from(&log_key.verifying_key()),
        true,
        Some(root),
    ));
    let note_signer = NoteSigner::new(ORIGIN, log_key.clone()).unwrap();
    let verifier_key = note_signer.verifier_key();
    let log = Arc::new(
        Log::open(
            MemoryStorage::new(),
            note_signer,
            LogConfig::new(ORIGIN),
            Arc::clone(&policy) as _,
            Arc::clone(&clock) as _,
        )
        .unwrap(),
    );
    let entropy = Arc::new(Seeded(parking_lot::Mutex::new(StdRng::seed_from_u64(
        seed ^ 0x5eed,
    ))));

    // Genesis.
    let mut genesis = Event::new(
        Kind::new("manifest.published").unwrap(),
        TenantId::SYSTEM,
        RequestId::v7(clock.now(), entropy.as_ref()),
        Producer {
            role: role("log"),
            key: PublicKey::from(&log_key.verifying_key()),
        },
        clock.now(),
        signed.published_body().unwrap(),
    );
    genesis.parents = Vec::new();
    log.append(genesis.sign(&log_key).unwrap()).await.unwrap();
    let manifest_leaf = policy.committed().manifest().unwrap().leaf;
    let manifest_hash = policy.committed().manifest().unwrap().hash;

    // The log, the edge and the key service attest.
    let mut services = Vec::new();
    let attested = |k: &ServiceKeys, nsm: &SimulatedNsm, root: RootHash| {
        let request = k.attestation_request(manifest_hash, root);
        let document = nsm.attest_at(request, clock.now()).unwrap();
        k.attested_event_for(
            &document,
            vec![manifest_leaf],
            clock.now(),
            RequestId::v7(clock.now(), entropy.as_ref()),
        )
        .unwrap()
    };
    for (k, nsm) in keys.into_iter().zip(nsms) {
        clock.advance_s(1);
        let event = attested(&k, &nsm, log.latest().root);
        let leaf = event.leaf_hash();
        log.append(event).await.unwrap();
        let identity = ServiceIdentity::new(k);
        identity.set_current(leaf);
        services.push(Arc::new(LocalService::new(identity, Box::new(nsm))));
    }
    let keys_service = services.pop().unwrap();
    let edge_service = services.pop().unwrap();

    // The key service (its master from the seed too) and the edge, on the log's clock and
    // the simulation's entropy, served by the node's own routes.
    let keys_dir = dir.join("keys");
    std::fs::create_dir_all(keys_dir.join("seeds")).unwrap();
    let mut master = zeroize::Zeroizing::new([0u8; 32]);
    entropy.fill(master.as_mut());
    let key_service = Arc::new(
        KeyService::new(
            keys_dir,
            master,
            keys_service,
            Arc::clone(&log) as _,
            Arc::clone(&policy) as _,
            Arc::clone(&clock) as _,
        )
        .unwrap()
        .with_entropy(Arc::clone(&entropy) as _),
    );
    let edge = Edge::new(
        EdgeConfig::new(RP_ID, WEB_ORIGIN).unwrap(),
        Arc::clone(&log) as _,
        Arc::clone(&policy) as _,
        edge_service,
        Arc::clone(&key_service) as _,
        OPERATOR.into(),
        dir.join("passkeys"),
    )
    .unwrap()
    .with_sources(Arc::clone(&clock) as _, Arc::clone(&entropy) as _);
    let app = govern_api::routes::router(
        AppState::new(Arc::clone(&log), &verifier_key)
            .with_identities(Arc::clone(&policy))
            .with_keys(key_service)
            .with_edge(Arc::new(edge)),
    );

    // The scenario `govern scenario` runs (govern-client's driver, its choices from the
    // seed), over loopback HTTP, its users' passkeys deterministic software authenticators
    // whose keys come from the seed too.
    // Time moves 100 ms before each request the driver makes (it makes them one at a
    // time), as it would between a person's clicks: two release requests of the edge are
    // then never the same bytes, which the key service would refuse as a replay.
    let ticking = Arc::clone(&clock);
    let app = app.layer(axum::middleware::from_fn(
        move |req: axum::extract::Request, next: axum::middleware::Next| {
            ticking.advance_ms(100);
            next.run(req)
        },
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let passkey_seeds = Arc::new(parking_lot::Mutex::new(StdRng::seed_from_u64(seed ^ 0xa11)));
    let new_passkey: NewPasskey = Arc::new(move || {
        let mut rng = passkey_seeds.lock();
        Box::new(SeededPasskey::new(&mut rng)) as Box<dyn Passkey>
    });
    let mut driver = Driver::new(
        govern_client::Client::new(&url).unwrap(),
        Some(WEB_ORIGIN.into()),
        OPERATOR.into(),
        seed,
        Some(new_passkey),
    )
    .unwrap();
    scenario::run(
        &mut driver,
        &Params {
            seed,
            tenants: 3,
            wallets: 2,
            transfers: 3,
            policies: false,
        },
    )
    .await
    .unwrap();
    server.abort();

    // A genuine document of an image the manifest does not pin, presented by the key it
    // binds: refused, and the measurement quarantined by the log.
    clock.advance_s(3);
    let rogue_image = dir.join("rogue-image");
    std::fs::write(&rogue_image, b"an image nobody pinned").unwrap();
    let rogue_nsm =
        SimulatedNsm::open_with(&ca, &rogue_image, role("edge"), clock.now(), &mut rng).unwrap();
    let rogue =
        ServiceKeys::from_rng(role("edge"), SigningKey::generate(&mut rng), &mut rng).unwrap();
    match log
        .append(attested(&rogue, &rogue_nsm, log.latest().root))
        .await
    {
        Err(AppendError::Identity(IdentityError::MeasurementNotPinned { .. })) => {}
        other => panic!("an unpinned measurement must be refused, got {other:?}"),
    }

    let latest = log.latest();
    let entries = (0..latest.size.0)
        .map(|i| log.entry(LeafIndex(i)).unwrap())
        .collect();
    Run {
        entries,
        root: latest.root,
    }
}

const GOLDEN: &str = include_str!("../goldens/simulation-root.txt");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seeded_simulation_writes_the_same_log_twice_and_its_root_is_the_golden() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let first = simulate(7, a.path()).await;
    let second = simulate(7, b.path()).await;
    let kinds: Vec<String> = first
        .entries
        .iter()
        .map(|e| {
            govern_core::event::SignedEvent::from_bytes(e)
                .unwrap()
                .event()
                .kind
                .to_string()
        })
        .collect();
    for kind in [
        "manifest.published",
        "service.attested",
        "tenant.created",
        "user.registered",
        "credential.registered",
        "credential.revoked",
        "user.invited",
        "user.role_changed",
        "wallet.requested",
        "transfer.requested",
        "policy.changed",
        "approval.decided",
        "keys.audit",
        "reads.audit",
        "keys.rotated",
        "keys.shredded",
        "service.quarantined",
    ] {
        assert!(kinds.iter().any(|k| k == kind), "no {kind} in {kinds:?}");
    }
    assert_eq!(first.entries.len(), second.entries.len(), "{kinds:?}");
    for (i, (x, y)) in first.entries.iter().zip(&second.entries).enumerate() {
        assert_eq!(
            String::from_utf8_lossy(x),
            String::from_utf8_lossy(y),
            "entry {i} ({}) differs between two runs of one seed",
            kinds[i]
        );
    }
    assert_eq!(first.root, second.root);
    assert_eq!(
        first.root.to_hex(),
        GOLDEN.trim(),
        "the simulation's root moved: if a format or a rule changed on purpose, update \
         replay-tests/goldens/simulation-root.txt (entries: {kinds:?})"
    );
    // Another seed, another log.
    let c = tempfile::tempdir().unwrap();
    assert_ne!(simulate(8, c.path()).await.root, first.root);
}
