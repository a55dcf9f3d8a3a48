//! The simulated NSM against govern-core's verifier: its documents verify against the dev
//! root with PCR0 pinned, a modified copy of a real executable is refused, the AWS root
//! refuses them, the dev CA is kept and reused, and its keys are private.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use ciborium::value::Value;
use coset::{CborSerializable as _, CoseSign1};
use govern_core::attestation::{
    AttestationDocument, AttestationError, CertPosition, TrustAnchor, Verifier, parse_unverified,
};
use govern_core::event::{Role, Timestamp};
use govern_workers::nsm::{
    AttestationRequest, DEV_LEAF_MIN_REMAINING, DEV_LEAF_VALIDITY, Nsm, NsmError, SimulatedNsm,
    dev_measurement, dev_pcrs, dev_root_der,
};
use x509_cert::Certificate;
use x509_cert::der::Decode as _;

fn role() -> Role {
    Role::new("signer-3").unwrap()
}

fn exe() -> PathBuf {
    std::env::current_exe().unwrap()
}

fn request() -> AttestationRequest {
    AttestationRequest::new(vec![0x30; 270], vec![1; 106], vec![7; 32])
}

fn open(dir: &Path) -> SimulatedNsm {
    SimulatedNsm::open(dir, &exe(), role()).unwrap()
}

/// Pinned to the dev root in `dir` (read from the file a manifest would pin) and to PCR0.
fn verifier(dir: &Path, pcr0: [u8; 48]) -> Verifier {
    let root = std::fs::read(dir.join("root.der")).unwrap();
    Verifier::new(TrustAnchor::from_der(&root).unwrap()).expect_pcr(0, pcr0.to_vec())
}

fn unverified(document: &[u8]) -> AttestationDocument {
    parse_unverified(document).unwrap()
}

fn leaf(document: &AttestationDocument) -> Certificate {
    Certificate::from_der(&document.certificate).unwrap()
}

fn leaf_validity_ms(document: &AttestationDocument) -> (i64, i64) {
    let validity = leaf(document).tbs_certificate.validity;
    let ms = |t: x509_cert::time::Time| i64::try_from(t.to_unix_duration().as_millis()).unwrap();
    (ms(validity.not_before), ms(validity.not_after))
}

fn at(ms: i64) -> Timestamp {
    Timestamp::from_unix_ms(ms).unwrap()
}

#[test]
fn document_verifies_against_the_dev_root_with_pcr0_pinned_and_carries_the_request() {
    let dir = tempfile::tempdir().unwrap();
    let nsm = open(dir.path());
    let document = nsm.attest(request()).unwrap();
    let pcr0 = dev_measurement(&exe(), &role()).unwrap();
    let fields = unverified(&document);
    let (not_before, not_after) = leaf_validity_ms(&fields);
    assert_eq!(
        not_after - not_before,
        i64::try_from(DEV_LEAF_VALIDITY.as_millis()).unwrap()
    );

    // At the document's own time and at both ends of the leaf's validity.
    let verifier = verifier(dir.path(), pcr0);
    let verified = verifier.verify(&document, fields.timestamp).unwrap();
    for t in [not_before, not_after] {
        assert_eq!(verifier.verify(&document, at(t)).unwrap(), verified);
    }
    // And not after it: the leaf is the short-lived part.
    assert!(matches!(
        verifier.verify(&document, at(not_after + 1000)),
        Err(AttestationError::CertificateExpired {
            position: CertPosition::Leaf,
            ..
        })
    ));

    let asked = request();
    assert_eq!(verified.public_key, asked.public_key);
    assert_eq!(verified.user_data, asked.user_data);
    assert_eq!(verified.nonce, asked.nonce);
    assert_eq!(verified.digest.to_string(), "SHA384");
    assert!(verified.module_id.starts_with("dev-signer-3-enc"));
    assert_eq!(verified.certificate, nsm.leaf_der());

    // PCR0 is the executable's measurement; PCR1 and PCR2 are role-bound and non-zero;
    // the rest are zero; describe_pcrs says the same.
    assert_eq!(verified.pcrs, dev_pcrs(&exe(), &role()).unwrap());
    assert_eq!(verified.pcrs, nsm.describe_pcrs().unwrap());
    assert_eq!(
        verified.pcrs.keys().copied().collect::<Vec<_>>(),
        (0..16).collect::<Vec<u8>>()
    );
    assert_eq!(verified.pcrs[&0], pcr0);
    for i in 1..3 {
        assert!(verified.pcrs[&i].iter().any(|&b| b != 0), "PCR{i}");
    }
    for i in 3..16 {
        assert_eq!(verified.pcrs[&i], vec![0; 48], "PCR{i}");
    }
    let other_role = dev_pcrs(&exe(), &Role::new("policy").unwrap()).unwrap();
    for i in 0..3 {
        assert_ne!(other_role[&i], verified.pcrs[&i], "PCR{i} is role-bound");
    }

    // Absent fields are nil, as in Nitro's documents.
    let bare = nsm.attest(AttestationRequest::default()).unwrap();
    let bare = verifier.verify(&bare, Timestamp::now()).unwrap();
    assert_eq!(
        (bare.public_key, bare.user_data, bare.nonce),
        (None, None, None)
    );
}

/// The genuine Nitro document of govern-core's tests, for the shape comparison.
fn genuine() -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../core/tests/fixtures/nitro/real-2024-07-16.cose");
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The CBOR shape of a value: its type, with byte-string lengths where they are fixed.
fn shape(name: &str, value: &Value) -> String {
    match value {
        Value::Integer(_) => "uint".into(),
        Value::Text(_) => "text".into(),
        Value::Null => "nil".into(),
        Value::Bytes(b) if name == "pcr" => format!("bstr({})", b.len()),
        Value::Bytes(_) => "bstr".into(),
        Value::Array(items) => format!(
            "[{}]",
            items
                .iter()
                .map(|v| shape(name, v))
                .collect::<Vec<_>>()
                .join(",")
        ),
        Value::Map(entries) => format!(
            "{{{}}}",
            entries
                .iter()
                .map(|(k, v)| format!("{}:{}", shape(name, k), shape("pcr", v)))
                .collect::<Vec<_>>()
                .join(",")
        ),
        other => format!("{other:?}"),
    }
}

fn payload_shape(document: &[u8]) -> Vec<(String, String)> {
    let cose = CoseSign1::from_slice(document).unwrap();
    let Value::Map(entries) = ciborium::de::from_reader(cose.payload.unwrap().as_slice()).unwrap()
    else {
        panic!("payload is a map")
    };
    entries
        .iter()
        .map(|(k, v)| {
            let name = k.as_text().unwrap().to_owned();
            let s = shape(&name, v);
            (name, s)
        })
        .collect()
}

#[test]
fn document_has_the_shape_of_a_genuine_nitro_document() {
    let dir = tempfile::tempdir().unwrap();
    let nsm = open(dir.path());
    // The genuine one has a public_key and user_data and no nonce; ask for the same.
    let document = nsm
        .attest(AttestationRequest {
            nonce: None,
            ..request()
        })
        .unwrap();
    let genuine = genuine();
    // Untagged array of 4, protected header bstr {1: -35}, empty unprotected map, and a
    // payload long enough for a two-byte length.
    assert_eq!(document[..8], genuine[..8]);
    assert_eq!(
        &genuine[..8],
        &[0x84, 0x44, 0xa1, 0x01, 0x38, 0x22, 0xa0, 0x59]
    );
    // The signature: the last item, a 96-byte string.
    assert_eq!(document[document.len() - 98..][..2], [0x58, 0x60]);
    assert_eq!(genuine[genuine.len() - 98..][..2], [0x58, 0x60]);
    // The same fields in the same order with the same CBOR types; the cabundle is shorter
    // (root and intermediate; AWS's has four certificates).
    let mut ours = payload_shape(&document);
    let mut theirs = payload_shape(&genuine);
    for shapes in [&mut ours, &mut theirs] {
        let cabundle = shapes.iter_mut().find(|(k, _)| k == "cabundle").unwrap();
        cabundle.1 = "[bstr...]".into();
    }
    assert_eq!(ours, theirs);
    let bundle = unverified(&document);
    assert_eq!(bundle.pcrs.len(), unverified(&genuine).pcrs.len());
}

#[test]
fn cabundle_is_root_first_then_the_intermediate() {
    let dir = tempfile::tempdir().unwrap();
    let nsm = open(dir.path());
    let document = nsm.attest(request()).unwrap();
    let cose = CoseSign1::from_slice(&document).unwrap();
    let Value::Map(entries) = ciborium::de::from_reader(cose.payload.unwrap().as_slice()).unwrap()
    else {
        panic!("payload is a map")
    };
    let cabundle: Vec<Vec<u8>> = entries
        .iter()
        .find(|(k, _)| k.as_text() == Some("cabundle"))
        .unwrap()
        .1
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_bytes().unwrap().clone())
        .collect();
    assert_eq!(cabundle.len(), 2);
    assert_eq!(cabundle[0], nsm.root_der());
    assert_eq!(
        cabundle[1],
        std::fs::read(dir.path().join("intermediate.der")).unwrap()
    );
    let intermediate = Certificate::from_der(&cabundle[1]).unwrap();
    let leaf = Certificate::from_der(&nsm.leaf_der()).unwrap();
    assert_eq!(
        leaf.tbs_certificate.issuer,
        intermediate.tbs_certificate.subject
    );
}

const CHILD_DIR_ENV: &str = "GOVERN_NSM_TEST_CHILD_DIR";

/// Not a test of its own: `modified_executable_gets_another_pcr0_and_is_refused` runs a
/// modified copy of this binary with only this function selected; it attests as the
/// executable it runs from and writes the document where the parent reads it.
#[test]
fn child_attests_as_its_own_executable() {
    let Ok(dir) = std::env::var(CHILD_DIR_ENV) else {
        return;
    };
    let dir = PathBuf::from(dir);
    let nsm = SimulatedNsm::open(&dir, &exe(), role()).unwrap();
    std::fs::write(dir.join("child.cose"), nsm.attest(request()).unwrap()).unwrap();
}

/// Run `program`, retrying while the kernel still sees it open for writing (a copy just
/// written can be busy for a moment if another thread forked meanwhile).
fn run(program: &Path, dir: &Path) -> std::process::Output {
    for _ in 0..50 {
        match Command::new(program)
            .args([
                "--exact",
                "child_attests_as_its_own_executable",
                "--nocapture",
            ])
            .env(CHILD_DIR_ENV, dir)
            .output()
        {
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy => {
                std::thread::sleep(Duration::from_millis(20));
            }
            other => return other.unwrap(),
        }
    }
    panic!("{} stayed busy", program.display())
}

#[test]
fn modified_executable_gets_another_pcr0_and_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let original_pcr0 = dev_measurement(&exe(), &role()).unwrap();
    let verifier = verifier_for_new_ca(dir.path(), original_pcr0);

    // A real changed executable: this test binary, copied, with one byte appended (an ELF
    // file still runs with bytes after its sections).
    let modified = dir.path().join("modified-test-binary");
    std::fs::copy(exe(), &modified).unwrap();
    {
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&modified)
            .unwrap();
        file.write_all(&[0x5a]).unwrap();
        file.sync_all().unwrap();
    }
    std::fs::set_permissions(&modified, std::fs::Permissions::from_mode(0o755)).unwrap();
    let modified_pcr0 = dev_measurement(&modified, &role()).unwrap();
    assert_ne!(modified_pcr0, original_pcr0);

    // The modified binary runs and attests as itself, from the same dev CA.
    let output = run(&modified, dir.path());
    assert!(
        output.status.success(),
        "child failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let document = std::fs::read(dir.path().join("child.cose")).unwrap();
    let fields = unverified(&document);
    assert_eq!(fields.pcrs[&0], modified_pcr0);

    // Pinned to the original's PCR0, the verifier refuses it for exactly that.
    assert_eq!(
        verifier.verify(&document, fields.timestamp),
        Err(AttestationError::PcrMismatch {
            index: 0,
            expected: hex::encode(original_pcr0),
            found: hex::encode(modified_pcr0),
        })
    );
    // Everything else about it is sound: pinned to its own PCR0 it verifies.
    let root = std::fs::read(dir.path().join("root.der")).unwrap();
    Verifier::new(TrustAnchor::from_der(&root).unwrap())
        .expect_pcr(0, modified_pcr0.to_vec())
        .verify(&document, fields.timestamp)
        .unwrap();
    // And the unmodified binary, with the same CA, is accepted by the same verifier.
    let original = open(dir.path()).attest(request()).unwrap();
    verifier.verify(&original, Timestamp::now()).unwrap();
}

/// Create the CA in `dir` first (as `govern manifest pin` would) and pin its root.
fn verifier_for_new_ca(dir: &Path, pcr0: [u8; 48]) -> Verifier {
    let root = dev_root_der(dir).unwrap();
    assert_eq!(root, std::fs::read(dir.join("root.der")).unwrap());
    verifier(dir, pcr0)
}

#[test]
fn aws_root_refuses_a_dev_document() {
    let dir = tempfile::tempdir().unwrap();
    let document = open(dir.path()).attest(request()).unwrap();
    let now = unverified(&document).timestamp;
    let err = Verifier::new(TrustAnchor::aws_nitro_root_g1())
        .verify(&document, now)
        .unwrap_err();
    assert!(
        matches!(
            err,
            AttestationError::IssuerMismatch {
                position: CertPosition::Bundle(1),
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn another_dev_ca_with_the_same_names_is_refused() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let _ = open(a.path());
    let from_b = open(b.path()).attest(request()).unwrap();
    let pcr0 = dev_measurement(&exe(), &role()).unwrap();
    let err = verifier(a.path(), pcr0)
        .verify(&from_b, unverified(&from_b).timestamp)
        .unwrap_err();
    assert!(
        matches!(
            err,
            AttestationError::CertificateSignature {
                position: CertPosition::Bundle(1),
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn dev_ca_is_reused_across_boots_with_a_fresh_leaf_each() {
    let dir = tempfile::tempdir().unwrap();
    let first = open(dir.path());
    let files = |d: &Path| -> BTreeMap<String, Vec<u8>> {
        std::fs::read_dir(d)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.file_name().into_string().unwrap(),
                    std::fs::read(e.path()).unwrap(),
                )
            })
            .collect()
    };
    let before = files(dir.path());
    let second = open(dir.path());
    // Nothing on disk changed: same root, same intermediate, same keys; no leaf anywhere.
    assert_eq!(files(dir.path()), before);
    assert_eq!(
        before.keys().map(String::as_str).collect::<Vec<_>>(),
        [
            "ca.lock",
            "intermediate.der",
            "intermediate.key",
            "root.der",
            "root.key"
        ]
    );
    assert_eq!(first.root_der(), second.root_der());
    assert_eq!(first.root_der(), before["root.der"]);
    assert_ne!(first.leaf_der(), second.leaf_der());

    let pcr0 = dev_measurement(&exe(), &role()).unwrap();
    let verifier = verifier(dir.path(), pcr0);
    let (d1, d2) = (
        first.attest(request()).unwrap(),
        second.attest(request()).unwrap(),
    );
    let now = Timestamp::now();
    let (v1, v2) = (
        verifier.verify(&d1, now).unwrap(),
        verifier.verify(&d2, now).unwrap(),
    );
    assert_ne!(v1.certificate, v2.certificate);
    assert_ne!(v1.module_id, v2.module_id);
    // Different leaf keys, not just different certificates for one key.
    let key = |d: &AttestationDocument| {
        leaf(d)
            .tbs_certificate
            .subject_public_key_info
            .subject_public_key
            .raw_bytes()
            .to_vec()
    };
    assert_ne!(key(&v1), key(&v2));
}

#[test]
fn private_keys_are_owner_only_and_a_widened_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _ = open(dir.path());
    let mode = |name: &str| {
        std::fs::metadata(dir.path().join(name))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("root.key"), 0o600);
    assert_eq!(mode("intermediate.key"), 0o600);
    assert_eq!(mode("root.der"), 0o644);

    let key = dir.path().join("intermediate.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
    match SimulatedNsm::open(dir.path(), &exe(), role()) {
        Err(NsmError::KeyPermissions { path, mode }) => {
            assert_eq!((path, mode), (key, 0o640));
        }
        other => panic!("expected KeyPermissions, got {other:?}"),
    }
}

#[test]
fn a_root_without_its_key_is_refused_not_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let root = open(dir.path()).root_der().to_vec();
    std::fs::remove_file(dir.path().join("root.key")).unwrap();
    assert!(matches!(
        SimulatedNsm::open(dir.path(), &exe(), role()),
        Err(NsmError::DevCa { .. })
    ));
    assert_eq!(std::fs::read(dir.path().join("root.der")).unwrap(), root);
}

#[test]
fn a_lost_intermediate_is_reissued_under_the_same_root() {
    let dir = tempfile::tempdir().unwrap();
    let first = open(dir.path());
    let old = std::fs::read(dir.path().join("intermediate.der")).unwrap();
    std::fs::remove_file(dir.path().join("intermediate.key")).unwrap();
    let second = open(dir.path());
    assert_eq!(second.root_der(), first.root_der());
    assert_ne!(
        std::fs::read(dir.path().join("intermediate.der")).unwrap(),
        old
    );
    let pcr0 = dev_measurement(&exe(), &role()).unwrap();
    let verifier = verifier(dir.path(), pcr0);
    // Both boots' documents chain to the one root.
    for nsm in [&first, &second] {
        verifier
            .verify(&nsm.attest(request()).unwrap(), Timestamp::now())
            .unwrap();
    }
}

#[test]
fn a_long_running_nsm_rotates_its_leaf_before_it_runs_out() {
    let dir = tempfile::tempdir().unwrap();
    let nsm = open(dir.path());
    let verifier = verifier(dir.path(), dev_measurement(&exe(), &role()).unwrap());
    let first = nsm.leaf_der();
    let now = Timestamp::now().unix_ms();
    let (_, not_after) = leaf_validity_ms(&unverified(&nsm.attest(request()).unwrap()));

    // Just before the minimum remaining time: same leaf.
    let margin = i64::try_from(DEV_LEAF_MIN_REMAINING.as_millis()).unwrap();
    let late = at(not_after - margin);
    let document = nsm.attest_at(request(), late).unwrap();
    assert_eq!(nsm.leaf_der(), first);
    verifier.verify(&document, late).unwrap();

    // Past it: a fresh leaf, and the document verifies hours after the first boot.
    let later = at(now + i64::try_from(DEV_LEAF_VALIDITY.as_millis()).unwrap());
    let document = nsm.attest_at(request(), later).unwrap();
    assert_ne!(nsm.leaf_der(), first);
    let fields = verifier.verify(&document, later).unwrap();
    assert_eq!(fields.timestamp, later);
}

#[test]
fn oversized_request_fields_are_refused_before_signing() {
    let dir = tempfile::tempdir().unwrap();
    let nsm = open(dir.path());
    let cases = [
        (
            AttestationRequest {
                user_data: Some(vec![0; 513]),
                ..AttestationRequest::default()
            },
            "user_data",
        ),
        (
            AttestationRequest {
                nonce: Some(vec![0; 513]),
                ..AttestationRequest::default()
            },
            "nonce",
        ),
        (
            AttestationRequest {
                public_key: Some(vec![]),
                ..AttestationRequest::default()
            },
            "public_key",
        ),
        (
            AttestationRequest {
                public_key: Some(vec![0; 1025]),
                ..AttestationRequest::default()
            },
            "public_key",
        ),
    ];
    for (request, expected) in cases {
        match nsm.attest(request) {
            Err(NsmError::RequestField { field, .. }) => assert_eq!(field, expected),
            other => panic!("{expected}: {other:?}"),
        }
    }
    // The largest allowed fields still make a document the verifier accepts.
    let max = AttestationRequest::new(vec![1; 1024], vec![2; 512], vec![3; 512]);
    let document = nsm.attest(max).unwrap();
    verifier(dir.path(), dev_measurement(&exe(), &role()).unwrap())
        .verify(&document, Timestamp::now())
        .unwrap();
}

#[test]
fn nsms_opening_together_on_a_fresh_dir_agree_on_one_root() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("dev-ca");
    let roots: Vec<Vec<u8>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| s.spawn(|| open(&ca).root_der().to_vec()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(roots.iter().all(|r| *r == roots[0]));
    assert_eq!(std::fs::read(ca.join("root.der")).unwrap(), roots[0]);
    // The directory it made is the owner's only.
    let mode = std::fs::metadata(&ca).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
}
