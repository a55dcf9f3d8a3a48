//! Manifests: the tracked templates, quorum signatures, the routing graph and uniqueness
//! keys, each refusal asserted exactly.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use ed25519_dalek::SigningKey;
use govern_core::event::{Event, Kind, Producer, PublicKey, RequestId, Role, TenantId, Timestamp};
use govern_core::manifest::{
    KmsKeyArn, KmsPin, KmsPinError, MANIFEST_PUBLISHED_KIND, Manifest, ManifestError,
    ManifestSigners, Measurement, RoleSet, SignedManifest, TrustedRoot, ValidationError,
};
use serde_json::{Value, json};
use uuid::Uuid;

const ROLES: [&str; 12] = [
    "log",
    "edge",
    "keys",
    "policy",
    "signer-1",
    "signer-2",
    "signer-3",
    "signer-4",
    "signer-5",
    "witness-1",
    "witness-2",
    "witness-3",
];

/// The kind of the demo entry `govern up` appends: declared by the dev manifest only.
const DEV_ONLY_KIND: &str = "demo.hello";

/// docs/design.md §4's first set of kinds, and the policy worker's rejections of policy
/// changes and its decisions on wallet requests (docs/formats.md, "Policies and the policy
/// worker").
const KINDS: [&str; 33] = [
    "manifest.published",
    "service.attested",
    "service.quarantined",
    "tenant.created",
    "user.invited",
    "user.registered",
    "user.role_changed",
    "credential.registered",
    "credential.revoked",
    "wallet.requested",
    "transfer.requested",
    "policy.changed",
    "approval.decided",
    "policy.evaluated",
    "transfer.approved",
    "transfer.rejected",
    "policy.activated",
    "policy.rejected",
    "wallet.approved",
    "wallet.rejected",
    "mpc.join",
    "mpc.message",
    "mpc.aborted",
    "aux.join",
    "aux.ready",
    "wallet.created",
    "transfer.signed",
    "transfer.quarantined",
    "keys.rotated",
    "keys.shredded",
    "keys.audit",
    "reads.audit",
    // Not a kind: the count check below keeps this list and the manifest in step.
    "",
];

fn template(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../manifests")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn role(name: &str) -> Role {
    Role::new(name).unwrap()
}

fn kind(name: &str) -> Kind {
    Kind::new(name).unwrap()
}

fn pcr(byte: u8) -> String {
    hex::encode([byte; 48])
}

/// A KMS key ARN of the accepted form.
const PINNED_KEY: &str =
    "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";

fn kms_pin(key_arn: &str, region: &str) -> KmsPin {
    KmsPin {
        key_arn: key_arn.into(),
        region: region.into(),
    }
}

/// The dev template with every role pinned and the dev root's fingerprint set.
fn pinned_dev() -> Manifest {
    let mut m = Manifest::from_json(&template("dev.json")).unwrap();
    for (i, spec) in m.roles.values_mut().enumerate() {
        spec.measurements = vec![Measurement {
            pcr0: pcr(u8::try_from(i).unwrap() + 1),
            pcr1: None,
            pcr2: None,
        }];
    }
    m.trusted_root = TrustedRoot::Dev {
        sha256: hex::encode([0xab; 32]),
    };
    m.serial = 1;
    m
}

fn keys() -> [SigningKey; 4] {
    [1u8, 2, 3, 9].map(|b| SigningKey::from_bytes(&[b; 32]))
}

/// Keys 0, 1 and 2 pinned, two of them required; key 3 is not pinned.
fn signers() -> ManifestSigners {
    ManifestSigners {
        keys: keys()[..3].iter().map(SigningKey::verifying_key).collect(),
        threshold: 2,
    }
}

fn signed_by(m: &Manifest, which: &[usize]) -> SignedManifest {
    let keys = keys();
    let mut s = SignedManifest::new(m.clone());
    for &i in which {
        s.sign(&keys[i]).unwrap();
    }
    s
}

fn event(kind_name: &str, body: Value) -> Event {
    Event {
        v: 1,
        kind: kind(kind_name),
        tenant: TenantId(Uuid::from_u128(7)),
        request: RequestId(Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0001)),
        parents: vec![],
        producer: Producer {
            role: role("edge"),
            key: PublicKey([0x11; 32]),
        },
        attestation: None,
        time: Timestamp::from_unix_ms(1_764_000_000_000).unwrap(),
        body: body.as_object().unwrap().clone(),
        sealed: None,
        sig: None,
    }
}

// ---- the templates ----

#[test]
fn dev_template_parses_and_validates() {
    let m = Manifest::from_json(&template("dev.json")).unwrap();
    m.validate().unwrap();
    let roles: Vec<&str> = m.roles.keys().map(Role::as_str).collect();
    let mut expected = ROLES.to_vec();
    expected.sort_unstable();
    assert_eq!(roles, expected);
    for k in KINDS.iter().filter(|k| !k.is_empty()) {
        assert!(m.kind(&kind(k)).is_some(), "{k} not declared");
    }
    // The design's kinds (docs/design.md §4), and the one dev-only kind `govern up` appends.
    assert!(m.kind(&kind(DEV_ONLY_KIND)).is_some());
    assert_eq!(m.kinds.len(), KINDS.len() - 1 + 1);
    // A template is not a manifest in use: the dev root and the measurements are pinned
    // into the data dir by `govern manifest pin`.
    assert!(m.trusted_root.is_dev());
    assert_eq!(m.validate_pinned(), Err(ValidationError::DevRootUnpinned));
    let mut rooted = m.clone();
    rooted.trusted_root = TrustedRoot::Dev {
        sha256: hex::encode([1; 32]),
    };
    assert_eq!(
        rooted.validate_pinned(),
        Err(ValidationError::Unpinned { role: role("edge") })
    );
    pinned_dev().validate_pinned().unwrap();
    // The canonical form, with its measurements, fits an event.
    let size = pinned_dev().canonical_bytes().unwrap().len();
    assert!(size < 20_000, "{size}");
}

#[test]
fn production_template_is_refused_until_its_measurements_are_real() {
    let m = Manifest::from_json(&template("production.json")).unwrap();
    assert_eq!(m.trusted_root, TrustedRoot::AwsNitroRootG1);
    let placeholder = ValidationError::MeasurementPlaceholder {
        role: role("edge"),
        index: 0,
        pcr: 0,
        value: "<pcr0 of the signed enclave image>".into(),
    };
    assert_eq!(m.validate(), Err(placeholder.clone()));
    // Signed by a quorum, in a production build: still refused.
    assert_eq!(
        signed_by(&m, &[0, 1]).verify(&signers(), false),
        Err(ManifestError::Invalid(placeholder))
    );
    // With real measurements, the KMS key's placeholder is still refused.
    let mut real = m.clone();
    for (i, spec) in real.roles.values_mut().enumerate() {
        spec.measurements[0].pcr0 = pcr(u8::try_from(i).unwrap() + 0x40);
    }
    assert_eq!(
        signed_by(&real, &[0, 1]).verify(&signers(), false),
        Err(ManifestError::Invalid(ValidationError::Kms {
            role: role("keys"),
            error: KmsPinError::Placeholder {
                field: "key_arn",
                value: "<arn:aws:kms:REGION:ACCOUNT:key/KEY-ID of the master's KMS key>".into(),
            },
        }))
    );
    // With real values it takes effect, in a production build too.
    real.roles.get_mut(&role("keys")).unwrap().kms = Some(kms_pin(PINNED_KEY, "eu-west-1"));
    let signed = signed_by(&real, &[0, 2]);
    assert_eq!(signed.verify(&signers(), false), Ok(&real));
    // Only role keys pins a KMS key.
    assert!(
        real.roles
            .iter()
            .all(|(r, spec)| spec.kms.is_some() == (r.as_str() == "keys"))
    );
    // Same routing graph as the dev manifest, less the dev-only demo kind.
    let mut dev = Manifest::from_json(&template("dev.json")).unwrap();
    assert!(dev.kinds.remove(&kind(DEV_ONLY_KIND)).is_some());
    assert_eq!(real.kinds, dev.kinds);
}

// ---- quorum ----

#[test]
fn two_of_three_is_accepted() {
    let m = pinned_dev();
    for pair in [[0, 1], [1, 2], [2, 0]] {
        assert_eq!(signed_by(&m, &pair).verify(&signers(), true), Ok(&m));
    }
    assert_eq!(signed_by(&m, &[0, 1, 2]).verify(&signers(), true), Ok(&m));
}

#[test]
fn one_of_three_is_under_signed() {
    let m = pinned_dev();
    assert_eq!(
        signed_by(&m, &[1]).verify(&signers(), true),
        Err(ManifestError::UnderSigned {
            valid: 1,
            threshold: 2
        })
    );
}

#[test]
fn unsigned_is_refused() {
    assert_eq!(
        SignedManifest::new(pinned_dev()).verify(&signers(), true),
        Err(ManifestError::UnderSigned {
            valid: 0,
            threshold: 2
        })
    );
}

#[test]
fn an_invalid_signature_from_a_pinned_key_is_refused() {
    let mut s = signed_by(&pinned_dev(), &[0, 1, 2]);
    s.signatures[1].sig.0[5] ^= 1;
    assert_eq!(
        s.verify(&signers(), true),
        Err(ManifestError::BadSignature {
            key: PublicKey::from(&keys()[1].verifying_key()).to_base64()
        })
    );
    // A pinned key's signature over another message (no domain) is as bad.
    let mut s = signed_by(&pinned_dev(), &[0, 1]);
    let jcs = s.manifest.canonical_bytes().unwrap();
    s.signatures[0].sig.0 = ed25519_dalek::Signer::sign(&keys()[0], &jcs).to_bytes();
    assert!(matches!(
        s.verify(&signers(), true),
        Err(ManifestError::BadSignature { .. })
    ));
}

#[test]
fn duplicate_signatures_by_one_key_count_once() {
    let mut s = signed_by(&pinned_dev(), &[0]);
    s.signatures.push(s.signatures[0].clone());
    s.signatures.push(s.signatures[0].clone());
    assert_eq!(
        s.verify(&signers(), true),
        Err(ManifestError::UnderSigned {
            valid: 1,
            threshold: 2
        })
    );
    // Signing again with the same key replaces its signature rather than adding one.
    let mut s = signed_by(&pinned_dev(), &[0]);
    s.sign(&keys()[0]).unwrap();
    assert_eq!(s.signatures.len(), 1);
    // A pinned key listed twice does not lower the bar either.
    let doubled = ManifestSigners {
        keys: vec![keys()[0].verifying_key(), keys()[0].verifying_key()],
        threshold: 2,
    };
    assert!(matches!(
        signed_by(&pinned_dev(), &[0]).verify(&doubled, true),
        Err(ManifestError::Signers { .. })
    ));
}

#[test]
fn unknown_keys_are_ignored() {
    let m = pinned_dev();
    // Key 3 is not pinned: its signature neither counts nor harms, valid or not.
    assert_eq!(signed_by(&m, &[0, 3, 1]).verify(&signers(), true), Ok(&m));
    let mut s = signed_by(&m, &[3, 0]);
    s.signatures[0].sig.0[0] ^= 1;
    assert_eq!(
        s.verify(&signers(), true),
        Err(ManifestError::UnderSigned {
            valid: 1,
            threshold: 2
        })
    );
    s.sign(&keys()[2]).unwrap();
    assert_eq!(s.verify(&signers(), true), Ok(&m));
}

#[test]
fn signer_sets_are_checked() {
    let s = signed_by(&pinned_dev(), &[0, 1]);
    for threshold in [0, 4] {
        let bad = ManifestSigners {
            threshold,
            ..signers()
        };
        assert!(matches!(
            s.verify(&bad, true),
            Err(ManifestError::Signers { .. })
        ));
    }
}

#[test]
fn a_manifest_changed_after_signing_is_refused() {
    let s = signed_by(&pinned_dev(), &[0, 1]);
    // One meaningful change, through the file text.
    let text = serde_json::to_string(&s).unwrap();
    let changed = text.replacen("\"max_age_s\":7200", "\"max_age_s\":7201", 1);
    assert_ne!(text, changed);
    let parsed = SignedManifest::from_json(changed.as_bytes()).unwrap();
    assert_eq!(
        parsed.verify(&signers(), true),
        Err(ManifestError::BadSignature {
            key: PublicKey::from(&keys()[0].verifying_key()).to_base64()
        })
    );
    // Every single-bit change of the compact file, anywhere, is refused: by the parser, or
    // by the signature check (no byte of compact JSON is insignificant).
    let bytes = text.as_bytes();
    for i in 0..bytes.len() {
        let mut b = bytes.to_vec();
        b[i] ^= 0x01;
        let verdict =
            SignedManifest::from_json(&b).and_then(|p| p.verify(&signers(), true).cloned());
        assert!(verdict.is_err(), "flip at byte {i} accepted");
    }
}

#[test]
fn the_dev_root_is_refused_by_a_production_build() {
    let m = pinned_dev();
    let s = signed_by(&m, &[0, 1]);
    assert_eq!(
        s.verify(&signers(), false),
        Err(ManifestError::DevRootRefused)
    );
    assert_eq!(s.verify(&signers(), true), Ok(&m));
    // The signature check comes first: an under-signed dev manifest is under-signed.
    assert!(matches!(
        signed_by(&m, &[0]).verify(&signers(), false),
        Err(ManifestError::UnderSigned { .. })
    ));
}

#[test]
fn a_successor_needs_a_greater_serial() {
    let prev = pinned_dev();
    let mut next = prev.clone();
    assert_eq!(
        next.verify_successor(&prev),
        Err(ManifestError::NotSuccessor {
            serial: 1,
            previous: 1
        })
    );
    next.serial = 0;
    assert!(next.verify_successor(&prev).is_err());
    next.serial = 2;
    assert_eq!(next.verify_successor(&prev), Ok(()));
}

// ---- hash and published body ----

#[test]
fn hash_is_sha256_of_jcs_and_the_published_body_round_trips() {
    use sha2::{Digest as _, Sha256};
    let m = pinned_dev();
    let jcs = m.canonical_bytes().unwrap();
    assert_eq!(
        m.manifest_hash().unwrap(),
        <[u8; 32]>::from(Sha256::digest(&jcs))
    );
    let mut domain = b"govern/manifest/v1\x00".to_vec();
    domain.extend_from_slice(&jcs);
    assert_eq!(m.signing_bytes().unwrap(), domain);
    // A change anywhere changes the hash.
    let mut other = m.clone();
    other.allow_debug = true;
    assert_ne!(other.manifest_hash().unwrap(), m.manifest_hash().unwrap());

    let s = signed_by(&m, &[0, 1]);
    let body = s.published_body().unwrap();
    assert_eq!(
        body.get("hash"),
        Some(&Value::String(hex::encode(m.manifest_hash().unwrap())))
    );
    assert_eq!(SignedManifest::from_published_body(&body), Ok(s.clone()));
    let back = SignedManifest::from_published_body(&body).unwrap();
    assert_eq!(back.verify(&signers(), true), Ok(&m));
    // The body is the body of a manifest.published event.
    assert_eq!(MANIFEST_PUBLISHED_KIND, "manifest.published");
    assert_eq!(
        m.uniqueness_key(&event(MANIFEST_PUBLISHED_KIND, Value::Object(body.clone())))
            .unwrap(),
        Some("manifest.published:[1]".into())
    );

    let mut wrong = body.clone();
    wrong.insert("hash".into(), Value::String(hex::encode([0; 32])));
    assert!(matches!(
        SignedManifest::from_published_body(&wrong),
        Err(ManifestError::HashMismatch { .. })
    ));
    let mut extra = body.clone();
    extra.insert("note".into(), json!("x"));
    assert!(matches!(
        SignedManifest::from_published_body(&extra),
        Err(ManifestError::PublishedBody { .. })
    ));
    let mut missing = body;
    missing.remove("signatures");
    assert!(matches!(
        SignedManifest::from_published_body(&missing),
        Err(ManifestError::PublishedBody { .. })
    ));
}

// ---- parsing ----

#[test]
fn parsing_is_strict() {
    let text = String::from_utf8(template("dev.json")).unwrap();
    // An unknown field.
    let unknown = text.replacen("\"allow_debug\"", "\"debug\": true, \"allow_debug\"", 1);
    assert!(matches!(
        Manifest::from_json(unknown.as_bytes()),
        Err(ManifestError::Json { .. })
    ));
    // A role declared twice: serde would keep the second silently.
    let m = pinned_dev();
    let compact = serde_json::to_string(&m).unwrap();
    let log = serde_json::to_string(&m.roles[&role("log")]).unwrap();
    let twice = compact.replacen("\"roles\":{", &format!("\"roles\":{{\"log\":{log},"), 1);
    assert_ne!(twice, compact);
    let err = Manifest::from_json(twice.as_bytes()).unwrap_err();
    assert!(
        matches!(&err, ManifestError::Json { reason } if reason.contains("duplicate key log")),
        "{err}"
    );
    let err = SignedManifest::from_json(twice.as_bytes()).unwrap_err();
    assert!(matches!(&err, ManifestError::Json { .. }), "{err}");
    // null for an absent PCR: parses as absent, so it would not be what was signed.
    let mut m = pinned_dev();
    m.roles.get_mut(&role("log")).unwrap().measurements[0].pcr1 = Some(pcr(7));
    let with_null = serde_json::to_string(&m).unwrap().replacen(
        &format!("\"pcr1\":\"{}\"", pcr(7)),
        "\"pcr1\":null",
        1,
    );
    assert_eq!(
        Manifest::from_json(with_null.as_bytes()),
        Err(ManifestError::NotRoundTrip)
    );
    // A float where a number belongs.
    let float = text.replacen("\"serial\": 0", "\"serial\": 0.5", 1);
    assert!(Manifest::from_json(float.as_bytes()).is_err());
    // A bare manifest reads as unsigned.
    let s = SignedManifest::from_json(text.as_bytes()).unwrap();
    assert!(s.signatures.is_empty());
    // Too large.
    assert!(matches!(
        Manifest::from_json(&vec![b' '; 300 * 1024]),
        Err(ManifestError::TooLarge { .. })
    ));
}

// ---- validation ----

#[test]
fn validation_refusals_are_typed() {
    let base = pinned_dev();
    let check = |f: &dyn Fn(&mut Manifest), expected: ValidationError| {
        let mut m = base.clone();
        f(&mut m);
        assert_eq!(m.validate(), Err(expected));
    };
    check(&|m| m.version = 2, ValidationError::Version { found: 2 });
    check(
        &|m| m.serial = 1 << 53,
        ValidationError::IntegerTooLarge {
            field: "serial".into(),
            value: 1 << 53,
        },
    );
    check(
        &|m| m.name = String::new(),
        ValidationError::Name {
            name: String::new(),
        },
    );
    check(
        &|m| {
            m.trusted_root = TrustedRoot::Dev {
                sha256: "AB".repeat(32),
            }
        },
        ValidationError::RootFingerprint {
            found: "AB".repeat(32),
        },
    );
    // The edge role no longer lists credential.revoked, which names edge as its producer.
    check(
        &|m| {
            m.roles
                .get_mut(&role("edge"))
                .unwrap()
                .produces
                .retain(|k| k.as_str() != "credential.revoked");
        },
        ValidationError::Routing {
            kind: kind("credential.revoked"),
            role: role("edge"),
            list: "producers",
            kind_says: true,
        },
    );
    // The policy role claims a kind whose producers do not name it.
    check(
        &|m| {
            m.roles
                .get_mut(&role("policy"))
                .unwrap()
                .produces
                .push(kind("transfer.requested"));
        },
        ValidationError::Routing {
            kind: kind("transfer.requested"),
            role: role("policy"),
            list: "producers",
            kind_says: false,
        },
    );
    // A consumer that does not list the kind.
    check(
        &|m| {
            m.roles
                .get_mut(&role("policy"))
                .unwrap()
                .consumes
                .retain(|k| k.as_str() != "credential.revoked");
        },
        ValidationError::Routing {
            kind: kind("credential.revoked"),
            role: role("policy"),
            list: "consumers",
            kind_says: true,
        },
    );
    check(
        &|m| {
            m.kinds
                .get_mut(&kind("policy.evaluated"))
                .unwrap()
                .parents
                .push(kind("no.such"));
        },
        ValidationError::UndeclaredParent {
            kind: kind("policy.evaluated"),
            parent: kind("no.such"),
        },
    );
    // keys.rotated (the first kind in order) and keys.shredded may name tenant.created; keys
    // stops consuming tenant.created (and the kind stops naming keys as a consumer), so keys
    // could never have read that parent.
    check(
        &|m| {
            m.roles
                .get_mut(&role("keys"))
                .unwrap()
                .consumes
                .retain(|k| k.as_str() != "tenant.created");
            if let RoleSet::Only(c) =
                &mut m.kinds.get_mut(&kind("tenant.created")).unwrap().consumers
            {
                c.retain(|r| r.as_str() != "keys");
            }
        },
        ValidationError::ParentUnreadable {
            kind: kind("keys.rotated"),
            parent: kind("tenant.created"),
            role: role("keys"),
        },
    );
    check(
        &|m| {
            m.roles
                .get_mut(&role("edge"))
                .unwrap()
                .produces
                .push(kind("no.such"));
        },
        ValidationError::UndeclaredKind {
            role: role("edge"),
            list: "produces",
            kind: kind("no.such"),
        },
    );
    check(
        &|m| {
            m.kinds.get_mut(&kind("keys.audit")).unwrap().producers =
                RoleSet::Only(vec![role("keys"), role("auditor")]);
        },
        ValidationError::UndeclaredRole {
            kind: kind("keys.audit"),
            list: "producers",
            role: role("auditor"),
        },
    );
    check(
        &|m| {
            m.kinds.get_mut(&kind("keys.audit")).unwrap().producers = RoleSet::Only(vec![]);
            m.roles
                .get_mut(&role("keys"))
                .unwrap()
                .produces
                .retain(|k| k.as_str() != "keys.audit");
        },
        ValidationError::NoProducer {
            kind: kind("keys.audit"),
        },
    );
    check(
        &|m| {
            let r = m.roles.get_mut(&role("witness-2")).unwrap();
            r.reattest_s = r.max_age_s;
        },
        ValidationError::Timing {
            role: role("witness-2"),
            reattest_s: 7200,
            max_age_s: 7200,
        },
    );
    check(
        &|m| {
            m.roles.get_mut(&role("log")).unwrap().measurements[0].pcr0 = "AB".repeat(48);
        },
        ValidationError::Measurement {
            role: role("log"),
            index: 0,
            pcr: 0,
            value: "AB".repeat(48),
        },
    );
    check(
        &|m| {
            m.roles.get_mut(&role("log")).unwrap().measurements[0].pcr2 = Some("ab".into());
        },
        ValidationError::Measurement {
            role: role("log"),
            index: 0,
            pcr: 2,
            value: "ab".into(),
        },
    );
    check(
        &|m| {
            m.roles.get_mut(&role("log")).unwrap().measurements[0].pcr0 = pcr(0);
        },
        ValidationError::DebugMeasurement {
            role: role("log"),
            index: 0,
        },
    );
    check(
        &|m| {
            let r = m.roles.get_mut(&role("log")).unwrap();
            r.measurements.push(r.measurements[0].clone());
        },
        ValidationError::Duplicate {
            owner: "role log".into(),
            list: "measurements",
            // log is the third role in name order (edge, keys, log).
            entry: pcr(3),
        },
    );
    check(
        &|m| {
            m.roles
                .get_mut(&role("edge"))
                .unwrap()
                .scopes
                .push("Bad Scope".into());
        },
        ValidationError::Scope {
            role: role("edge"),
            scope: "Bad Scope".into(),
        },
    );
    check(
        &|m| {
            m.roles
                .get_mut(&role("edge"))
                .unwrap()
                .scopes
                .push("users".into());
        },
        ValidationError::Duplicate {
            owner: "role edge".into(),
            list: "scopes",
            entry: "users".into(),
        },
    );
    check(
        &|m| {
            m.kinds
                .get_mut(&kind("approval.decided"))
                .unwrap()
                .unique
                .push("time".into());
        },
        ValidationError::UniquePath {
            kind: kind("approval.decided"),
            path: "time".into(),
        },
    );
    // A debug measurement is fine where the manifest allows debug.
    let mut debug = base.clone();
    debug.allow_debug = true;
    debug.roles.get_mut(&role("log")).unwrap().measurements[0].pcr0 = pcr(0);
    debug.validate().unwrap();
}

#[test]
fn an_empty_role_is_refused() {
    let mut m = pinned_dev();
    let spec = m.roles.get_mut(&role("witness-1")).unwrap();
    spec.produces.clear();
    spec.consumes.clear();
    // Roles are checked before kinds, so this is named before the kinds with "*" complain.
    assert_eq!(
        m.validate(),
        Err(ValidationError::EmptyRole {
            role: role("witness-1")
        })
    );
}

// ---- the KMS key of role keys ----

#[test]
fn a_kms_pin_is_one_key_of_role_keys() {
    let base = pinned_dev();
    // Pinned on role keys: the key's own ARN in its own region, a multi-Region key, other
    // partitions.
    for (arn, region) in [
        (PINNED_KEY, "eu-west-1"),
        (
            "arn:aws:kms:us-east-1:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab",
            "us-east-1",
        ),
        (
            "arn:aws-us-gov:kms:us-gov-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
            "us-gov-west-1",
        ),
        (
            "arn:aws-cn:kms:cn-north-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
            "cn-north-1",
        ),
    ] {
        let mut m = base.clone();
        m.roles.get_mut(&role("keys")).unwrap().kms = Some(kms_pin(arn, region));
        assert_eq!(m.validate_pinned(), Ok(()), "{arn}");
    }
    assert_eq!(
        kms_pin(PINNED_KEY, "eu-west-1").key(),
        Ok(KmsKeyArn {
            partition: "aws",
            region: "eu-west-1",
            account: "111122223333",
            key_id: "1234abcd-12ab-34cd-56ef-1234567890ab",
        })
    );
    // On another role: refused.
    let mut m = base.clone();
    m.roles.get_mut(&role("edge")).unwrap().kms = Some(kms_pin(PINNED_KEY, "eu-west-1"));
    assert_eq!(
        m.validate(),
        Err(ValidationError::KmsRole { role: role("edge") })
    );
    // Each malformed pin, with its error.
    let refused = |key_arn: &str, region: &str| {
        let mut m = base.clone();
        m.roles.get_mut(&role("keys")).unwrap().kms = Some(kms_pin(key_arn, region));
        match m.validate() {
            Err(ValidationError::Kms { role: r, error }) if r == role("keys") => error,
            other => panic!("{key_arn} {region}: {other:?}"),
        }
    };
    for alias in [
        "alias/govern-keys",
        "arn:aws:kms:eu-west-1:111122223333:alias/govern-keys",
    ] {
        assert_eq!(
            refused(alias, "eu-west-1"),
            KmsPinError::Alias {
                found: alias.into()
            }
        );
    }
    for bad in [
        // A bare key id, not an ARN.
        "1234abcd-12ab-34cd-56ef-1234567890ab",
        // Another service, partition, account form, resource type, key id form.
        "arn:aws:iam:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
        "arn:evil:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
        "arn:aws:kms:eu-west-1:11112222333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
        "arn:aws:kms:eu-west-1:111122223333:grant/1234abcd-12ab-34cd-56ef-1234567890ab",
        "arn:aws:kms:eu-west-1:111122223333:key/1234ABCD-12AB-34CD-56EF-1234567890AB",
        "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab/x",
        "arn:aws:kms:eu-west-1:111122223333:key/mrk-1234",
        "arn:aws:kms:Eu-West-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
        "arn:aws:kms::111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
        "arn:aws:kms:eu-west-1:111122223333",
    ] {
        assert_eq!(
            refused(bad, "eu-west-1"),
            KmsPinError::KeyArn { found: bad.into() },
            "{bad}"
        );
    }
    assert_eq!(
        refused(PINNED_KEY, "us-east-1"),
        KmsPinError::Region {
            region: "us-east-1".into(),
            arn_region: "eu-west-1".into(),
        }
    );
    assert_eq!(
        refused(PINNED_KEY, "<the key's region>"),
        KmsPinError::Placeholder {
            field: "region",
            value: "<the key's region>".into(),
        }
    );
    assert_eq!(
        refused("", "eu-west-1"),
        KmsPinError::Placeholder {
            field: "key_arn",
            value: String::new(),
        }
    );
}

#[test]
fn a_kms_pin_is_signed_and_absent_when_none_is_pinned() {
    // No pin: no `kms` in the bytes, so manifests from before the field keep their hash.
    let m = pinned_dev();
    let jcs = String::from_utf8(m.canonical_bytes().unwrap()).unwrap();
    assert!(!jcs.contains("\"kms\""), "{jcs}");
    // A pin is part of what the quorum signs.
    let mut pinned = m.clone();
    pinned.roles.get_mut(&role("keys")).unwrap().kms = Some(kms_pin(PINNED_KEY, "eu-west-1"));
    assert_ne!(pinned.manifest_hash().unwrap(), m.manifest_hash().unwrap());
    let signed = signed_by(&pinned, &[0, 1]);
    assert_eq!(signed.verify(&signers(), true), Ok(&pinned));
    // Attack: the pin swapped, after signing, for a key in the operator's own account.
    let mut swapped = signed.clone();
    swapped.manifest.roles.get_mut(&role("keys")).unwrap().kms = Some(kms_pin(
        "arn:aws:kms:eu-west-1:444455556666:key/0987dcba-09fe-87dc-65ba-ab0987654321",
        "eu-west-1",
    ));
    assert!(matches!(
        swapped.verify(&signers(), true),
        Err(ManifestError::BadSignature { .. })
    ));
    // Attack: the pin removed after signing.
    let mut removed = signed.clone();
    removed.manifest.roles.get_mut(&role("keys")).unwrap().kms = None;
    assert!(matches!(
        removed.verify(&signers(), true),
        Err(ManifestError::BadSignature { .. })
    ));
    // Through the published body and back.
    let body = signed.published_body().unwrap();
    assert_eq!(SignedManifest::from_published_body(&body), Ok(signed));
    // Strict parsing: `null` for an absent pin, and an unknown field in the pin.
    let mut value = serde_json::to_value(&m).unwrap();
    value["roles"]["keys"]["kms"] = Value::Null;
    assert_eq!(
        Manifest::from_json(&serde_json::to_vec(&value).unwrap()),
        Err(ManifestError::NotRoundTrip)
    );
    value["roles"]["keys"]["kms"] =
        json!({"key_arn": PINNED_KEY, "region": "eu-west-1", "endpoint": "http://x"});
    assert!(matches!(
        Manifest::from_json(&serde_json::to_vec(&value).unwrap()),
        Err(ManifestError::Json { reason }) if reason.contains("endpoint")
    ));
}

// ---- queries ----

#[test]
fn routing_queries() {
    let m = pinned_dev();
    assert!(m.role_may_produce(&role("edge"), &kind("transfer.requested")));
    assert!(!m.role_may_produce(&role("edge"), &kind("policy.evaluated")));
    assert!(!m.role_may_produce(&role("signer-1"), &kind("transfer.requested")));
    assert!(m.role_may_produce(&role("policy"), &kind("policy.evaluated")));
    assert!(m.role_may_produce(&role("signer-4"), &kind("mpc.message")));
    assert!(!m.role_may_produce(&role("witness-1"), &kind("mpc.message")));
    // "*": every declared role, and only those.
    for r in ROLES {
        assert!(
            m.role_may_produce(&role(r), &kind("service.attested")),
            "{r}"
        );
    }
    assert!(!m.role_may_produce(&role("signer-6"), &kind("service.attested")));
    assert!(!m.role_may_produce(&role("edge"), &kind("no.such")));
    assert!(m.role_may_consume(&role("signer-2"), &kind("approval.decided")));
    assert!(!m.role_may_consume(&role("witness-2"), &kind("approval.decided")));

    assert!(m.allowed_parent(&kind("policy.evaluated"), &kind("transfer.requested")));
    assert!(m.allowed_parent(&kind("policy.evaluated"), &kind("wallet.requested")));
    assert!(m.allowed_parent(&kind("policy.evaluated"), &kind("policy.changed")));
    assert!(!m.allowed_parent(&kind("policy.evaluated"), &kind("mpc.message")));
    assert!(!m.allowed_parent(&kind("tenant.created"), &kind("tenant.created")));
    assert!(!m.allowed_parent(&kind("no.such"), &kind("tenant.created")));
    let spec = m.kind(&kind("approval.decided")).unwrap();
    assert!(spec.same_request);
    assert_eq!(spec.unique, ["request", "body.user"]);
    assert!(m.kind(&kind("no.such")).is_none());
    assert_eq!(m.role(&role("keys")).unwrap().scopes, Vec::<String>::new());
}

#[test]
fn uniqueness_keys() {
    let m = pinned_dev();
    let key = |kind_name: &str, body: Value| m.uniqueness_key(&event(kind_name, body));
    let a = key(
        "approval.decided",
        json!({"user": "u1", "decision": "approve"}),
    )
    .unwrap();
    assert_eq!(
        a.as_deref(),
        Some(r#"approval.decided:["01900000-0000-7000-8000-000000000001","u1"]"#)
    );
    // Another user's approval of the same request is another key; the same user's second
    // decision (whatever it says) is the same key.
    let b = key(
        "approval.decided",
        json!({"user": "u2", "decision": "approve"}),
    )
    .unwrap();
    let again = key(
        "approval.decided",
        json!({"user": "u1", "decision": "deny"}),
    )
    .unwrap();
    assert_ne!(a, b);
    assert_eq!(a, again);
    // The kind prefixes the key: the same request under two kinds is two keys.
    let evaluated = key("policy.evaluated", json!({})).unwrap().unwrap();
    let approved = key("transfer.approved", json!({})).unwrap().unwrap();
    assert_ne!(evaluated, approved);
    assert!(evaluated.starts_with("policy.evaluated:"));
    // Five fields, in order; values of any JSON type, canonically encoded.
    let msg = |to: u64| {
        key(
            "mpc.message",
            json!({"session": "s1", "round": 2, "from": "signer-1", "to": to, "part": 0, "payload": "x"}),
        )
        .unwrap()
        .unwrap()
    };
    assert_eq!(msg(3), r#"mpc.message:["s1",2,"signer-1",3,0]"#);
    assert_ne!(msg(3), msg(4));
    // Nested body fields and envelope fields.
    let published = m
        .uniqueness_key(&event(
            MANIFEST_PUBLISHED_KIND,
            json!({"manifest": {"serial": 9}}),
        ))
        .unwrap();
    assert_eq!(published.as_deref(), Some("manifest.published:[9]"));
    assert_eq!(
        key("tenant.created", json!({})).unwrap().as_deref(),
        Some(r#"tenant.created:["00000000-0000-0000-0000-000000000007"]"#)
    );
    let mut join = event("mpc.join", json!({"session": "s1"}));
    join.producer.role = role("signer-2");
    assert_eq!(
        m.uniqueness_key(&join).unwrap().as_deref(),
        Some(r#"mpc.join:["s1","signer-2"]"#)
    );
    // No key declared.
    assert_eq!(key("keys.audit", json!({})).unwrap(), None);
    // A missing (or null) field of the key is refused, not skipped.
    for body in [json!({"decision": "approve"}), json!({"user": null})] {
        assert_eq!(
            key("approval.decided", body),
            Err(ManifestError::UniqueFieldMissing {
                kind: kind("approval.decided"),
                path: "body.user".into()
            })
        );
    }
    assert_eq!(
        key("no.such", json!({})),
        Err(ManifestError::UnknownKind {
            kind: kind("no.such")
        })
    );
}

#[test]
fn measurements_are_matched() {
    let mut m = pinned_dev();
    let log = role("log");
    let pcr0 = m.roles[&log].measurements[0].pcr0.clone();
    let doc =
        |entries: &[(u8, Vec<u8>)]| entries.iter().cloned().collect::<BTreeMap<u8, Vec<u8>>>();
    let ok = doc(&[
        (0, hex::decode(&pcr0).unwrap()),
        (1, vec![1; 48]),
        (2, vec![2; 48]),
    ]);
    assert!(m.measurement_pinned(&log, &ok));
    assert!(!m.measurement_pinned(&role("edge"), &ok));
    assert!(!m.measurement_pinned(&role("nobody"), &ok));
    assert!(!m.measurement_pinned(&log, &doc(&[(0, vec![9; 48])])));
    assert!(!m.measurement_pinned(&log, &doc(&[(1, vec![1; 48])])));
    // Pinning PCR1 too: it must be present and equal.
    m.roles.get_mut(&log).unwrap().measurements[0].pcr1 = Some(pcr(1));
    m.validate().unwrap();
    assert!(m.measurement_pinned(&log, &ok));
    assert!(!m.measurement_pinned(&log, &doc(&[(0, hex::decode(&pcr0).unwrap())])));
    assert!(!m.measurement_pinned(
        &log,
        &doc(&[(0, hex::decode(&pcr0).unwrap()), (1, vec![7; 48])])
    ));
    // A second accepted image.
    m.roles
        .get_mut(&log)
        .unwrap()
        .measurements
        .push(Measurement {
            pcr0: pcr(0x77),
            pcr1: None,
            pcr2: None,
        });
    m.validate().unwrap();
    assert!(m.measurement_pinned(&log, &doc(&[(0, vec![0x77; 48])])));
    // An unpinned role matches nothing.
    m.roles.get_mut(&log).unwrap().measurements.clear();
    assert!(!m.measurement_pinned(&log, &ok));
}
