//! Attacks on Nitro attestation documents, each asserting the exact refusal.
//!
//! The genuine document is `core/tests/fixtures/nitro/real-2024-07-16.cose` (its README says
//! where it comes from). Everything else is made here: P-384 chains built with x509-cert's builder and
//! documents signed with p384, so an attack differs from an accepted document in one thing.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr as _;
use std::time::Duration;

use ciborium::value::Value;
use coset::{
    CborSerializable as _, CoseSign1, CoseSign1Builder, HeaderBuilder, ProtectedHeader, iana,
};
use govern_core::attestation::{
    AWS_NITRO_ROOT_G1_DER, AttestationError, CertPosition, TrustAnchor, UserData, UserDataError,
    Verifier, parse_unverified,
};
use govern_core::event::{Role, Timestamp};
use p384::ecdsa::signature::{Signer as _, Verifier as _};
use p384::ecdsa::{DerSignature, Signature, SigningKey, VerifyingKey};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use x509_cert::Certificate;
use x509_cert::builder::{Builder as _, CertificateBuilder, Profile};
use x509_cert::der::asn1::{BitString, GeneralizedTime, OctetString};
use x509_cert::der::oid::ObjectIdentifier;
use x509_cert::der::oid::db::rfc5280;
use x509_cert::der::{Decode as _, Encode as _};
use x509_cert::ext::Extension;
use x509_cert::ext::pkix::{BasicConstraints, KeyUsage, KeyUsages};
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::SubjectPublicKeyInfoOwned;
use x509_cert::time::{Time, Validity};

// ---- the genuine document ----

/// The fixture's own `timestamp`: 2024-07-16T19:53:07.239Z.
const FIXTURE_TIME_MS: i64 = 1_721_159_587_239;
/// The fixture leaf's notBefore (2024-07-16T18:58:36Z) and notAfter (21:58:39Z).
const LEAF_NOT_BEFORE_MS: i64 = 1_721_156_316_000;
const LEAF_NOT_AFTER_MS: i64 = 1_721_167_119_000;
const FIXTURE_PCR0: &str = "c8275c3e3cd96b3cb256ae55ef8ce52b2dac4601bbd7698efbb76717b4a77c9473d9fc6b2ea93d7d4cff0fb800e675bf";

fn fixture() -> Vec<u8> {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/nitro/real-2024-07-16.cose");
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn at(ms: i64) -> Timestamp {
    Timestamp::from_unix_ms(ms).unwrap()
}

fn aws() -> Verifier {
    Verifier::new(TrustAnchor::aws_nitro_root_g1())
}

fn aws_pinned() -> Verifier {
    aws().expect_pcr(0, hex::decode(FIXTURE_PCR0).unwrap())
}

/// The fixture's payload map entries, decoded.
fn fixture_payload() -> Vec<(Value, Value)> {
    let cose = CoseSign1::from_slice(&fixture()).unwrap();
    let Value::Map(entries) = ciborium::de::from_reader(cose.payload.unwrap().as_slice()).unwrap()
    else {
        panic!("payload is a map")
    };
    entries
}

fn field<'a>(entries: &'a [(Value, Value)], name: &str) -> &'a Value {
    &entries
        .iter()
        .find(|(k, _)| k.as_text() == Some(name))
        .unwrap()
        .1
}

/// The fixture's certificates: cabundle[0..4], then the leaf.
fn fixture_certs() -> Vec<Certificate> {
    let entries = fixture_payload();
    let mut certs: Vec<Certificate> = field(&entries, "cabundle")
        .as_array()
        .unwrap()
        .iter()
        .map(|v| Certificate::from_der(v.as_bytes().unwrap()).unwrap())
        .collect();
    certs.push(Certificate::from_der(field(&entries, "certificate").as_bytes().unwrap()).unwrap());
    certs
}

// ---- making chains and documents ----

fn key(seed: u64) -> SigningKey {
    SigningKey::random(&mut StdRng::seed_from_u64(seed))
}

/// Valid a day either side of the fixture's time.
fn validity() -> Validity {
    let secs = |ms: i64| Duration::from_secs(u64::try_from(ms / 1000).unwrap());
    let t = |ms| Time::GeneralTime(GeneralizedTime::from_unix_duration(secs(ms)).unwrap());
    Validity {
        not_before: t(FIXTURE_TIME_MS - 86_400_000),
        not_after: t(FIXTURE_TIME_MS + 86_400_000),
    }
}

fn issue(
    profile: Profile,
    subject: Name,
    subject_key: &SigningKey,
    issuer_key: &SigningKey,
    serial: u32,
) -> Certificate {
    let spki = SubjectPublicKeyInfoOwned::from_key(*subject_key.verifying_key()).unwrap();
    CertificateBuilder::new(
        profile,
        SerialNumber::from(serial),
        validity(),
        subject,
        spki,
        issuer_key,
    )
    .unwrap()
    .build::<DerSignature>()
    .unwrap()
}

/// Sign `cert` again after a test changed it.
fn resign(mut cert: Certificate, issuer_key: &SigningKey) -> Certificate {
    let tbs = cert.tbs_certificate.to_der().unwrap();
    let sig: DerSignature = issuer_key.sign(&tbs);
    cert.signature = BitString::from_bytes(sig.as_bytes()).unwrap();
    cert
}

/// Replace (or add) extension `oid` of `cert` and sign it again.
fn set_extension(
    mut cert: Certificate,
    oid: ObjectIdentifier,
    critical: bool,
    value: Vec<u8>,
    issuer_key: &SigningKey,
) -> Certificate {
    let ext = Extension {
        extn_id: oid,
        critical,
        extn_value: OctetString::new(value).unwrap(),
    };
    let exts = cert.tbs_certificate.extensions.get_or_insert_with(Vec::new);
    exts.retain(|e| e.extn_id != oid);
    exts.push(ext);
    resign(cert, issuer_key)
}

/// root → intermediates → leaf, every key P-384, every signature ECDSA-SHA-384.
struct Chain {
    root: Certificate,
    /// (key, certificate), top first.
    intermediates: Vec<(SigningKey, Certificate)>,
    leaf_key: SigningKey,
    leaf: Certificate,
}

impl Chain {
    /// `names`: root, intermediates..., leaf.
    fn new(names: &[Name], seed: u64) -> Self {
        let root_key = key(seed);
        let root = issue(Profile::Root, names[0].clone(), &root_key, &root_key, 1);
        let inner = &names[1..names.len() - 1];
        let mut intermediates: Vec<(SigningKey, Certificate)> = Vec::new();
        for (i, name) in inner.iter().enumerate() {
            let k = key(seed + 1 + i as u64);
            let (issuer_key, issuer_name) = match intermediates.last() {
                Some((ik, ic)) => (ik.clone(), ic.tbs_certificate.subject.clone()),
                None => (root_key.clone(), names[0].clone()),
            };
            let below = u8::try_from(inner.len() - 1 - i).unwrap();
            let profile = Profile::SubCA {
                issuer: issuer_name,
                path_len_constraint: Some(below),
            };
            intermediates.push((
                k.clone(),
                issue(profile, name.clone(), &k, &issuer_key, 2 + i as u32),
            ));
        }
        let leaf_key = key(seed + 100);
        let (last_key, last) = intermediates.last().unwrap();
        let profile = Profile::Leaf {
            issuer: last.tbs_certificate.subject.clone(),
            enable_key_agreement: false,
            enable_key_encipherment: false,
        };
        let leaf = issue(
            profile,
            names[names.len() - 1].clone(),
            &leaf_key,
            last_key,
            99,
        );
        Self {
            root,
            intermediates,
            leaf_key,
            leaf,
        }
    }

    /// Our own names: root, two intermediates, leaf.
    fn own(seed: u64) -> Self {
        let names: Vec<Name> = [
            "CN=govern test root",
            "CN=govern test region",
            "CN=govern test zone",
            "CN=govern test enclave",
        ]
        .iter()
        .map(|n| Name::from_str(n).unwrap())
        .collect();
        Self::new(&names, seed)
    }

    fn anchor(&self) -> TrustAnchor {
        TrustAnchor::from_der(&self.root.to_der().unwrap()).unwrap()
    }

    fn verifier(&self) -> Verifier {
        Verifier::new(self.anchor())
    }

    /// The root as cabundle[0], as Nitro does, then the intermediates.
    fn cabundle(&self) -> Vec<Vec<u8>> {
        std::iter::once(self.root.to_der().unwrap())
            .chain(self.intermediates.iter().map(|(_, c)| c.to_der().unwrap()))
            .collect()
    }

    fn document(&self) -> Doc {
        Doc::new(self.leaf.to_der().unwrap(), self.cabundle())
    }

    fn sign(&self, doc: &Doc) -> Vec<u8> {
        sign_payload(doc.payload(), &self.leaf_key)
    }
}

/// A document's payload entries, in AWS's order, for tests to change.
#[derive(Clone)]
struct Doc {
    entries: Vec<(Value, Value)>,
}

fn measured_pcrs() -> Value {
    Value::Map(
        (0u8..16)
            .map(|i| {
                (
                    Value::from(i),
                    Value::Bytes(if i < 3 { vec![i + 1; 48] } else { vec![0; 48] }),
                )
            })
            .collect(),
    )
}

impl Doc {
    fn new(certificate: Vec<u8>, cabundle: Vec<Vec<u8>>) -> Self {
        let entries = vec![
            (
                Value::from("module_id"),
                Value::from("i-0123456789abcdef0-enc0123456789abcdef"),
            ),
            (Value::from("digest"), Value::from("SHA384")),
            (Value::from("timestamp"), Value::from(FIXTURE_TIME_MS)),
            (Value::from("pcrs"), measured_pcrs()),
            (Value::from("certificate"), Value::Bytes(certificate)),
            (
                Value::from("cabundle"),
                Value::Array(cabundle.into_iter().map(Value::Bytes).collect()),
            ),
            (Value::from("public_key"), Value::Null),
            (Value::from("user_data"), Value::Null),
            (Value::from("nonce"), Value::Null),
        ];
        Self { entries }
    }

    fn set(mut self, name: &str, value: Value) -> Self {
        match self
            .entries
            .iter_mut()
            .find(|(k, _)| k.as_text() == Some(name))
        {
            Some(entry) => entry.1 = value,
            None => self.entries.push((Value::from(name), value)),
        }
        self
    }

    fn remove(mut self, name: &str) -> Self {
        self.entries.retain(|(k, _)| k.as_text() != Some(name));
        self
    }

    fn push(mut self, name: &str, value: Value) -> Self {
        self.entries.push((Value::from(name), value));
        self
    }

    fn payload(&self) -> Vec<u8> {
        let mut out = Vec::new();
        ciborium::ser::into_writer(&Value::Map(self.entries.clone()), &mut out).unwrap();
        out
    }
}

/// An untagged COSE_Sign1 with protected header {1: -35}, as the Nitro hypervisor makes it.
fn sign_payload(payload: Vec<u8>, key: &SigningKey) -> Vec<u8> {
    CoseSign1Builder::new()
        .protected(
            HeaderBuilder::new()
                .algorithm(iana::Algorithm::ES384)
                .build(),
        )
        .payload(payload)
        .create_signature(b"", |tbs| {
            let sig: Signature = key.sign(tbs);
            sig.to_bytes().to_vec()
        })
        .build()
        .to_vec()
        .unwrap()
}

fn now() -> Timestamp {
    at(FIXTURE_TIME_MS)
}

// ---- the genuine document ----

#[test]
fn genuine_document_is_accepted_at_its_own_time_with_its_pcr0_pinned() {
    let doc = aws_pinned().verify(&fixture(), now()).unwrap();
    assert_eq!(doc.module_id, "i-059e862454f4a8d8f-enc0190a2f1964172e6");
    assert_eq!(doc.timestamp, now());
    assert_eq!(doc.digest.to_string(), "SHA384");
    assert_eq!(doc.pcrs.len(), 16);
    assert_eq!(hex::encode(&doc.pcrs[&0]), FIXTURE_PCR0);
    assert_eq!(doc.public_key.as_ref().map(Vec::len), Some(130));
    assert_eq!(doc.user_data.as_ref().map(Vec::len), Some(32));
    assert_eq!(doc.nonce, None);
    assert_eq!(doc.certificate, fixture_certs()[4].to_der().unwrap());
    // The leaf's validity bounds are inclusive.
    aws_pinned()
        .verify(&fixture(), at(LEAF_NOT_BEFORE_MS))
        .unwrap();
    aws_pinned()
        .verify(&fixture(), at(LEAF_NOT_AFTER_MS))
        .unwrap();
    // Parsing without verifying gives the same fields.
    assert_eq!(parse_unverified(&fixture()).unwrap(), doc);
}

#[test]
fn built_in_root_is_the_fixtures_cabundle_0_and_aws_fingerprint() {
    let root = TrustAnchor::aws_nitro_root_g1();
    assert_eq!(
        hex::encode(root.sha256()),
        "641a0321a3e244efe456463195d606317ed7cdcc3c1756e09893f3c68f79bb5b"
    );
    assert_eq!(AWS_NITRO_ROOT_G1_DER, fixture_certs()[0].to_der().unwrap());
}

#[test]
fn tagged_cose_sign1_is_accepted_too() {
    let mut tagged = vec![0xd2]; // tag 18
    tagged.extend(fixture());
    aws_pinned().verify(&tagged, now()).unwrap();
    let mut other_tag = vec![0xd1]; // tag 17, COSE_Mac0
    other_tag.extend(fixture());
    assert_eq!(
        aws().verify(&other_tag, now()),
        Err(AttestationError::UnexpectedTag { tag: 17 })
    );
}

// ---- byte flips ----

/// Positions to flip in a region of `len` bytes: every 97th, and the first and last 16.
fn sample(len: usize) -> Vec<usize> {
    let mut p: Vec<usize> = (0..len)
        .step_by(97)
        .chain(0..16.min(len))
        .chain(len.saturating_sub(16)..len)
        .collect();
    p.sort_unstable();
    p.dedup();
    p
}

#[test]
fn every_sampled_byte_flip_in_the_payload_is_refused() {
    let doc = fixture();
    let payload = CoseSign1::from_slice(&doc).unwrap().payload.unwrap();
    let start = doc
        .windows(payload.len())
        .position(|w| w == payload.as_slice())
        .unwrap();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for offset in sample(payload.len()) {
        let mut bad = doc.clone();
        bad[start + offset] ^= 0x01;
        let err = aws_pinned().verify(&bad, now()).unwrap_err();
        // A flip either breaks the payload's format, or leaves it well formed and then the
        // signature over it fails: nothing reaches the chain or PCR checks.
        assert!(
            matches!(
                err,
                AttestationError::MalformedPayload { .. }
                    | AttestationError::TrailingBytes {
                        part: "payload",
                        ..
                    }
                    | AttestationError::UnknownField { .. }
                    | AttestationError::FieldType { .. }
                    | AttestationError::FieldSize { .. }
                    | AttestationError::UnsupportedDigest { .. }
                    | AttestationError::PcrIndex { .. }
                    | AttestationError::DuplicatePcr { .. }
                    | AttestationError::PcrLength { .. }
                    | AttestationError::CertificateDecode {
                        position: CertPosition::Leaf,
                        ..
                    }
                    | AttestationError::UnsupportedKey {
                        position: CertPosition::Leaf,
                        ..
                    }
                    | AttestationError::DocumentSignature { .. }
            ),
            "flip at payload offset {offset}: {err:?}"
        );
        let name = format!("{err:?}");
        *seen
            .entry(name.split([' ', '{', '(']).next().unwrap().to_owned())
            .or_default() += 1;
    }
    eprintln!("payload flips by refusal: {seen:?}");
    assert!(seen["DocumentSignature"] > 40, "{seen:?}");
}

#[test]
fn every_byte_flip_in_the_signature_is_refused() {
    let doc = fixture();
    let sig_start = doc.len() - 96;
    let leaf = fixture_certs()[4].tbs_certificate.subject.to_string();
    for offset in 0..96 {
        let mut bad = doc.clone();
        bad[sig_start + offset] ^= 0x01;
        assert_eq!(
            aws_pinned().verify(&bad, now()),
            Err(AttestationError::DocumentSignature {
                subject: leaf.clone()
            }),
            "signature byte {offset}"
        );
    }
    // Every sampled bit of every sampled byte, too.
    for offset in sample(96) {
        for bit in 1..8 {
            let mut bad = doc.clone();
            bad[sig_start + offset] ^= 1 << bit;
            assert!(matches!(
                aws().verify(&bad, now()),
                Err(AttestationError::DocumentSignature { .. })
            ));
        }
    }
}

// ---- the chain ----

#[test]
fn a_different_pinned_root_is_refused() {
    let other = Chain::own(1);
    let err = other.verifier().verify(&fixture(), now()).unwrap_err();
    assert_eq!(
        err,
        AttestationError::IssuerMismatch {
            position: CertPosition::Bundle(1),
            issuer: "CN=aws.nitro-enclaves,OU=AWS,O=Amazon,C=US".into(),
            expected: "CN=govern test root".into(),
        }
    );
}

#[test]
fn a_self_made_chain_copying_aws_subject_names_is_refused() {
    // Same subject DNs as every certificate of the genuine chain, our own keys; cabundle[0]
    // is AWS's genuine root, byte for byte. A verifier that trusted the bundle's first
    // certificate, or matched names, would accept this.
    let names: Vec<Name> = fixture_certs()
        .iter()
        .map(|c| c.tbs_certificate.subject.clone())
        .collect();
    let fake = Chain::new(&names, 7);
    let mut cabundle = fake.cabundle();
    cabundle[0] = AWS_NITRO_ROOT_G1_DER.to_vec();
    let entries = fixture_payload();
    let doc = Doc::new(fake.leaf.to_der().unwrap(), cabundle)
        .set("module_id", field(&entries, "module_id").clone())
        .set("pcrs", field(&entries, "pcrs").clone())
        .set("public_key", field(&entries, "public_key").clone())
        .set("user_data", field(&entries, "user_data").clone());
    let signed = fake.sign(&doc);

    // Well made: it verifies under its own root.
    fake.verifier()
        .expect_pcr(0, hex::decode(FIXTURE_PCR0).unwrap())
        .verify(&signed, now())
        .unwrap();
    // Under AWS's root, the first certificate below the root fails AWS's key.
    assert_eq!(
        aws_pinned().verify(&signed, now()),
        Err(AttestationError::CertificateSignature {
            position: CertPosition::Bundle(1),
            subject: names[1].to_string(),
            issuer: names[0].to_string(),
        })
    );
}

#[test]
fn now_before_the_leaf_is_valid_is_refused() {
    let err = aws_pinned()
        .verify(&fixture(), at(LEAF_NOT_BEFORE_MS - 1000))
        .unwrap_err();
    assert!(
        matches!(err, AttestationError::CertificateNotYetValid { position: CertPosition::Leaf, not_before, .. } if not_before == at(LEAF_NOT_BEFORE_MS)),
        "{err:?}"
    );
}

#[test]
fn now_after_the_leaf_expired_is_refused() {
    let err = aws_pinned()
        .verify(&fixture(), at(LEAF_NOT_AFTER_MS + 1000))
        .unwrap_err();
    assert!(
        matches!(err, AttestationError::CertificateExpired { position: CertPosition::Leaf, not_after, .. } if not_after == at(LEAF_NOT_AFTER_MS)),
        "{err:?}"
    );
}

#[test]
fn an_expired_intermediate_is_refused() {
    // A week later the zonal certificate (valid to 2024-07-22T02:39:43Z) has expired too;
    // the first expired certificate from the top is named.
    let err = aws()
        .verify(&fixture(), at(FIXTURE_TIME_MS + 7 * 86_400_000))
        .unwrap_err();
    assert!(
        matches!(
            err,
            AttestationError::CertificateExpired {
                position: CertPosition::Bundle(2),
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn a_pinned_root_outside_its_validity_is_refused() {
    let err = aws().verify(&fixture(), at(2_600_000_000_000)).unwrap_err();
    assert!(
        matches!(
            err,
            AttestationError::CertificateExpired {
                position: CertPosition::PinnedRoot,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn a_leaf_that_is_a_ca_is_refused() {
    let mut chain = Chain::own(10);
    let ca = BasicConstraints {
        ca: true,
        path_len_constraint: None,
    }
    .to_der()
    .unwrap();
    chain.leaf = set_extension(
        chain.leaf,
        rfc5280::ID_CE_BASIC_CONSTRAINTS,
        true,
        ca,
        &chain.intermediates[1].0,
    );
    assert_eq!(
        chain
            .verifier()
            .verify(&chain.sign(&chain.document()), now()),
        Err(AttestationError::LeafIsCa {
            subject: "CN=govern test enclave".into()
        })
    );
}

#[test]
fn an_intermediate_that_is_not_a_ca_is_refused() {
    let mut chain = Chain::own(11);
    let not_ca = BasicConstraints {
        ca: false,
        path_len_constraint: None,
    }
    .to_der()
    .unwrap();
    let (k, c) = chain.intermediates.remove(0);
    let root_key = key(11);
    chain.intermediates.insert(
        0,
        (
            k,
            set_extension(c, rfc5280::ID_CE_BASIC_CONSTRAINTS, true, not_ca, &root_key),
        ),
    );
    assert_eq!(
        chain
            .verifier()
            .verify(&chain.sign(&chain.document()), now()),
        Err(AttestationError::NotCa {
            position: CertPosition::Bundle(1),
            subject: "CN=govern test region".into()
        })
    );
}

#[test]
fn an_intermediate_without_key_cert_sign_is_refused() {
    let mut chain = Chain::own(12);
    let usage = KeyUsage(KeyUsages::DigitalSignature.into())
        .to_der()
        .unwrap();
    let (k, c) = chain.intermediates.remove(1);
    let issuer_key = chain.intermediates[0].0.clone();
    chain.intermediates.push((
        k,
        set_extension(c, rfc5280::ID_CE_KEY_USAGE, true, usage, &issuer_key),
    ));
    assert_eq!(
        chain
            .verifier()
            .verify(&chain.sign(&chain.document()), now()),
        Err(AttestationError::KeyUsage {
            position: CertPosition::Bundle(2),
            subject: "CN=govern test zone".into(),
            missing: "keyCertSign",
        })
    );
}

#[test]
fn a_leaf_without_digital_signature_is_refused() {
    let mut chain = Chain::own(13);
    let usage = KeyUsage(KeyUsages::KeyAgreement.into()).to_der().unwrap();
    chain.leaf = set_extension(
        chain.leaf,
        rfc5280::ID_CE_KEY_USAGE,
        true,
        usage,
        &chain.intermediates[1].0,
    );
    assert_eq!(
        chain
            .verifier()
            .verify(&chain.sign(&chain.document()), now()),
        Err(AttestationError::KeyUsage {
            position: CertPosition::Leaf,
            subject: "CN=govern test enclave".into(),
            missing: "digitalSignature",
        })
    );
}

#[test]
fn a_path_length_constraint_exceeded_is_refused() {
    let mut chain = Chain::own(14);
    let zero = BasicConstraints {
        ca: true,
        path_len_constraint: Some(0),
    }
    .to_der()
    .unwrap();
    let (k, c) = chain.intermediates.remove(0);
    chain.intermediates.insert(
        0,
        (
            k,
            set_extension(c, rfc5280::ID_CE_BASIC_CONSTRAINTS, true, zero, &key(14)),
        ),
    );
    assert_eq!(
        chain
            .verifier()
            .verify(&chain.sign(&chain.document()), now()),
        Err(AttestationError::PathLength {
            position: CertPosition::Bundle(1),
            subject: "CN=govern test region".into(),
            path_len: 0,
            below: 1,
        })
    );
}

#[test]
fn an_unknown_critical_extension_is_refused() {
    let mut chain = Chain::own(15);
    let oid = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.55555.1");
    chain.leaf = set_extension(
        chain.leaf,
        oid,
        true,
        vec![0x05, 0x00],
        &chain.intermediates[1].0,
    );
    assert_eq!(
        chain
            .verifier()
            .verify(&chain.sign(&chain.document()), now()),
        Err(AttestationError::UnknownCriticalExtension {
            position: CertPosition::Leaf,
            subject: "CN=govern test enclave".into(),
            oid: oid.to_string(),
        })
    );
    // The same extension, not critical, is ignored.
    let mut chain = Chain::own(15);
    chain.leaf = set_extension(
        chain.leaf,
        oid,
        false,
        vec![0x05, 0x00],
        &chain.intermediates[1].0,
    );
    chain
        .verifier()
        .verify(&chain.sign(&chain.document()), now())
        .unwrap();
}

#[test]
fn a_certificate_signed_with_another_algorithm_is_refused() {
    let mut chain = Chain::own(16);
    let sha256 = x509_cert::der::oid::db::rfc5912::ECDSA_WITH_SHA_256;
    chain.leaf.tbs_certificate.signature.oid = sha256;
    chain.leaf.signature_algorithm.oid = sha256;
    chain.leaf = resign(chain.leaf, &chain.intermediates[1].0);
    assert_eq!(
        chain
            .verifier()
            .verify(&chain.sign(&chain.document()), now()),
        Err(AttestationError::CertificateAlgorithm {
            position: CertPosition::Leaf,
            subject: "CN=govern test enclave".into(),
            oid: sha256.to_string(),
        })
    );
}

#[test]
fn a_document_timestamp_outside_the_leaf_validity_is_refused() {
    let chain = Chain::own(17);
    let early = FIXTURE_TIME_MS - 2 * 86_400_000;
    let doc = chain.document().set("timestamp", Value::from(early));
    let err = chain
        .verifier()
        .verify(&chain.sign(&doc), now())
        .unwrap_err();
    assert!(
        matches!(err, AttestationError::TimestampOutsideLeaf { timestamp, .. } if timestamp == at(early)),
        "{err:?}"
    );
}

// ---- PCRs ----

#[test]
fn a_wrong_expected_pcr0_is_refused() {
    let mut wrong = hex::decode(FIXTURE_PCR0).unwrap();
    wrong[47] ^= 1;
    assert_eq!(
        aws().expect_pcr(0, wrong.clone()).verify(&fixture(), now()),
        Err(AttestationError::PcrMismatch {
            index: 0,
            expected: hex::encode(&wrong),
            found: FIXTURE_PCR0.into()
        })
    );
}

#[test]
fn a_pinned_pcr_the_document_lacks_is_refused() {
    assert_eq!(
        aws().expect_pcr(16, vec![0; 48]).verify(&fixture(), now()),
        Err(AttestationError::PcrMissing { index: 16 })
    );
}

#[test]
fn all_zero_pcr0_to_2_is_refused_unless_debug_is_allowed() {
    let chain = Chain::own(20);
    let zeros = Value::Map(
        (0u8..16)
            .map(|i| (Value::from(i), Value::Bytes(vec![0; 48])))
            .collect(),
    );
    let signed = chain.sign(&chain.document().set("pcrs", zeros));
    assert_eq!(
        chain.verifier().verify(&signed, now()),
        Err(AttestationError::DebugEnclave)
    );
    chain
        .verifier()
        .dangerous_allow_debug(true)
        .verify(&signed, now())
        .unwrap();
    // One measured register among the three is not a debug enclave.
    let mut one = (0u8..16)
        .map(|i| (Value::from(i), Value::Bytes(vec![0; 48])))
        .collect::<Vec<_>>();
    one[2].1 = Value::Bytes(vec![9; 48]);
    chain
        .verifier()
        .verify(
            &chain.sign(&chain.document().set("pcrs", Value::Map(one))),
            now(),
        )
        .unwrap();
}

// ---- the envelope ----

#[test]
fn a_wrong_cose_algorithm_is_refused_before_the_signature() {
    let mut cose = CoseSign1::from_slice(&fixture()).unwrap();
    cose.protected = ProtectedHeader {
        original_data: None,
        header: HeaderBuilder::new()
            .algorithm(iana::Algorithm::ES256)
            .build(),
    };
    let es256 = cose.clone().to_vec().unwrap();
    // The signature no longer covers this header either...
    let leaf = VerifyingKey::from_sec1_bytes(
        fixture_certs()[4]
            .tbs_certificate
            .subject_public_key_info
            .subject_public_key
            .raw_bytes(),
    )
    .unwrap();
    let sig = Signature::from_slice(&cose.signature).unwrap();
    assert!(
        leaf.verify(&CoseSign1::from_slice(&es256).unwrap().tbs_data(b""), &sig)
            .is_err()
    );
    // ...but the algorithm is what is named.
    assert_eq!(
        aws().verify(&es256, now()),
        Err(AttestationError::UnsupportedAlgorithm {
            found: "ES256".into()
        })
    );
}

#[test]
fn a_missing_algorithm_is_refused() {
    let mut cose = CoseSign1::from_slice(&fixture()).unwrap();
    cose.protected = ProtectedHeader::default();
    // An algorithm in the unprotected header does not count: anyone could have put it there.
    cose.unprotected = HeaderBuilder::new()
        .algorithm(iana::Algorithm::ES384)
        .build();
    assert_eq!(
        aws().verify(&cose.to_vec().unwrap(), now()),
        Err(AttestationError::MissingAlgorithm)
    );
}

#[test]
fn truncated_cbor_is_refused() {
    let doc = fixture();
    for len in 0..doc.len() {
        let err = aws().verify(&doc[..len], now()).unwrap_err();
        assert!(
            matches!(err, AttestationError::MalformedCbor { .. }),
            "truncated to {len}: {err:?}"
        );
    }
}

#[test]
fn garbage_cbor_is_refused() {
    let mut rng = StdRng::seed_from_u64(0x6172_6261);
    let mut inputs: Vec<Vec<u8>> = vec![
        vec![0xff],
        vec![0x1c],
        vec![0x5f, 0x41],
        b"\x84\x44garbage".to_vec(),
    ];
    // Random bytes under a definite-length array header that promises more than follows.
    for _ in 0..100 {
        let mut g = vec![0x9a, 0xff, 0xff, 0xff, 0xff];
        g.extend((0..rng.gen_range(0..64)).map(|_| rng.r#gen::<u8>()));
        inputs.push(g);
    }
    for g in inputs {
        let err = aws().verify(&g, now()).unwrap_err();
        assert!(
            matches!(err, AttestationError::MalformedCbor { .. }),
            "{g:02x?}: {err:?}"
        );
    }
}

#[test]
fn cbor_that_is_not_a_cose_sign1_is_refused() {
    for value in [
        Value::Map(vec![(Value::from(1), Value::from(2))]),
        Value::Array(vec![Value::Null; 3]),
        Value::Array(vec![
            Value::Bytes(vec![0xa0]),
            Value::Map(vec![]),
            Value::Bytes(vec![]),
            Value::from(1),
        ]),
    ] {
        let mut bytes = Vec::new();
        ciborium::ser::into_writer(&value, &mut bytes).unwrap();
        let err = aws().verify(&bytes, now()).unwrap_err();
        assert!(
            matches!(err, AttestationError::NotCoseSign1 { .. }),
            "{value:?}: {err:?}"
        );
    }
}

#[test]
fn a_payload_that_is_not_cbor_is_refused() {
    let chain = Chain::own(30);
    let err = chain
        .verifier()
        .verify(
            &sign_payload(b"\x5agarbage".to_vec(), &chain.leaf_key),
            now(),
        )
        .unwrap_err();
    assert!(
        matches!(err, AttestationError::MalformedPayload { .. }),
        "{err:?}"
    );
}

#[test]
fn trailing_bytes_are_refused() {
    let mut doc = fixture();
    doc.push(0x00);
    assert_eq!(
        aws().verify(&doc, now()),
        Err(AttestationError::TrailingBytes {
            part: "document",
            extra: 1
        })
    );
    // Inside the signed payload as well.
    let chain = Chain::own(31);
    let mut payload = chain.document().payload();
    payload.extend([0xf6, 0xf6]);
    assert_eq!(
        chain
            .verifier()
            .verify(&sign_payload(payload, &chain.leaf_key), now()),
        Err(AttestationError::TrailingBytes {
            part: "payload",
            extra: 2
        })
    );
}

#[test]
fn an_oversized_document_is_refused() {
    let mut doc = fixture();
    doc.resize(16 * 1024 + 1, 0);
    assert_eq!(
        aws().verify(&doc, now()),
        Err(AttestationError::TooLarge {
            size: 16 * 1024 + 1,
            max: 16 * 1024
        })
    );
}

// ---- the payload's fields ----

#[test]
fn optional_fields_over_their_limits_are_refused() {
    let chain = Chain::own(40);
    let cases = [
        ("public_key", 1025, 1, 1024),
        ("public_key", 0, 1, 1024),
        ("user_data", 513, 0, 512),
        ("nonce", 513, 0, 512),
    ];
    for (name, len, min, max) in cases {
        let signed = chain.sign(&chain.document().set(name, Value::Bytes(vec![7; len])));
        assert_eq!(
            chain.verifier().verify(&signed, now()),
            Err(AttestationError::FieldSize {
                field: name,
                len,
                min,
                max
            }),
            "{name} of {len} bytes"
        );
    }
    // At the limits they are accepted.
    let doc = chain
        .document()
        .set("public_key", Value::Bytes(vec![7; 1024]))
        .set("user_data", Value::Bytes(vec![7; 512]))
        .set("nonce", Value::Bytes(vec![7; 512]));
    let got = chain.verifier().verify(&chain.sign(&doc), now()).unwrap();
    assert_eq!(
        (
            got.public_key.unwrap().len(),
            got.user_data.unwrap().len(),
            got.nonce.unwrap().len()
        ),
        (1024, 512, 512)
    );
}

#[test]
fn malformed_fields_are_refused() {
    let chain = Chain::own(41);
    let cases: Vec<(Doc, AttestationError)> = vec![
        (
            chain.document().remove("certificate"),
            AttestationError::MissingField {
                field: "certificate",
            },
        ),
        (
            chain.document().push("digest", Value::from("SHA384")),
            AttestationError::DuplicateField { field: "digest" },
        ),
        (
            chain.document().push("extra", Value::Null),
            AttestationError::UnknownField {
                field: "Text(\"extra\")".into(),
            },
        ),
        (
            chain.document().set("digest", Value::from("SHA256")),
            AttestationError::UnsupportedDigest {
                found: "SHA256".into(),
            },
        ),
        (
            chain.document().set("module_id", Value::from("")),
            AttestationError::FieldSize {
                field: "module_id",
                len: 0,
                min: 1,
                max: 256,
            },
        ),
        (
            chain.document().set("timestamp", Value::from("now")),
            AttestationError::FieldType {
                field: "timestamp",
                expected: "an unsigned integer",
            },
        ),
        (
            chain.document().set("timestamp", Value::from(0)),
            AttestationError::TimestampOutOfRange {
                found: "Integer(Integer(0))".into(),
            },
        ),
        (
            chain.document().set("cabundle", Value::Array(vec![])),
            AttestationError::FieldSize {
                field: "cabundle",
                len: 0,
                min: 1,
                max: 8,
            },
        ),
        (
            chain.document().set(
                "pcrs",
                Value::Map(vec![(Value::from(32), Value::Bytes(vec![0; 48]))]),
            ),
            AttestationError::PcrIndex {
                found: "Integer(Integer(32))".into(),
            },
        ),
        (
            chain.document().set(
                "pcrs",
                Value::Map(vec![(Value::from(0), Value::Bytes(vec![1; 32]))]),
            ),
            AttestationError::PcrLength { index: 0, len: 32 },
        ),
        (
            chain.document().set(
                "pcrs",
                Value::Map(vec![
                    (Value::from(0), Value::Bytes(vec![1; 48])),
                    (Value::from(0), Value::Bytes(vec![1; 48])),
                ]),
            ),
            AttestationError::DuplicatePcr { index: 0 },
        ),
    ];
    for (doc, expected) in cases {
        assert_eq!(
            chain.verifier().verify(&chain.sign(&doc), now()),
            Err(expected)
        );
    }
}

// ---- the binding ----

#[test]
fn a_user_data_binding_round_trips_through_a_signed_document() {
    let chain = Chain::own(50);
    let binding = UserData {
        role: Role::new("signer-2").unwrap(),
        manifest_hash: [0x11; 32],
        ed25519: [0x22; 32],
        x25519: [0x33; 32],
    };
    let doc = chain
        .document()
        .set("user_data", Value::Bytes(binding.encode()));
    let verified = chain.verifier().verify(&chain.sign(&doc), now()).unwrap();
    assert_eq!(verified.user_data_binding(), Ok(binding));
    // The genuine document's user_data is someone else's 32 bytes, not this layout.
    let genuine = aws_pinned().verify(&fixture(), now()).unwrap();
    assert_eq!(
        genuine.user_data_binding(),
        Err(UserDataError::Version { found: Some(0x63) })
    );
    assert_eq!(
        chain
            .verifier()
            .verify(&chain.sign(&chain.document()), now())
            .unwrap()
            .user_data_binding(),
        Err(UserDataError::Missing)
    );
}

// ---- never a panic ----

/// One random change: flip bits, overwrite, insert, delete, duplicate a range, or cut.
fn mutate(doc: &[u8], rng: &mut StdRng) -> Vec<u8> {
    let mut m = doc.to_vec();
    for _ in 0..rng.gen_range(1..=3) {
        let len = m.len();
        if len == 0 {
            m.push(rng.r#gen());
            continue;
        }
        let at = rng.gen_range(0..len);
        match rng.gen_range(0..7) {
            0 => m[at] ^= 1 << rng.gen_range(0..8),
            1 => m[at] = rng.r#gen(),
            2 => {
                let n = rng.gen_range(1..=8);
                let bytes: Vec<u8> = (0..n).map(|_| rng.r#gen()).collect();
                m.splice(at..at, bytes);
            }
            3 => {
                let end = (at + rng.gen_range(1..=64)).min(len);
                m.drain(at..end);
            }
            4 => {
                let end = (at + rng.gen_range(1..=64)).min(len);
                let copy = m[at..end].to_vec();
                let to = rng.gen_range(0..=m.len());
                m.splice(to..to, copy);
            }
            5 => m.truncate(at),
            // CBOR headers that claim huge lengths or deep nesting.
            _ => m[at] = [0x5b, 0x7b, 0x9b, 0xbb, 0x9f, 0xbf, 0xdb, 0xff][rng.gen_range(0..8)],
        }
    }
    m
}

#[test]
fn two_thousand_seeded_random_mutations_never_panic() {
    const SEED: u64 = 0x6e69_7472_6f00;
    let mut rng = StdRng::seed_from_u64(SEED);

    // 1,000 changes to the genuine document's bytes: most stop at the format or the
    // signature.
    let doc = fixture();
    let genuine = aws_pinned().verify(&doc, now()).unwrap();
    let mut accepted = 0;
    for i in 0..1_000 {
        let m = mutate(&doc, &mut rng);
        let result = std::panic::catch_unwind(|| aws_pinned().verify(&m, now()));
        let Ok(result) = result else {
            panic!("seed {SEED:#x}, mutation {i} panicked on {m:02x?}")
        };
        // Only a change outside the signed bytes (say, a tag in front) can be accepted, and
        // then it says exactly what the genuine document says.
        if let Ok(d) = result {
            assert_eq!(d, genuine, "seed {SEED:#x}, mutation {i}");
            accepted += 1;
        }
    }

    // 1,000 changes to one certificate of a self-made chain, the document signed again by
    // the leaf's key, so the certificate and chain checks see the damage.
    let chain = Chain::own(60);
    let (bundle, leaf) = (chain.cabundle(), chain.leaf.to_der().unwrap());
    let mut reached_chain = 0;
    for i in 1_000..2_000 {
        let which = rng.gen_range(0..bundle.len() + 1);
        let (mut cabundle, mut certificate) = (bundle.clone(), leaf.clone());
        let target = if which < bundle.len() {
            &mut cabundle[which]
        } else {
            &mut certificate
        };
        let original = target.clone();
        *target = mutate(&original, &mut rng);
        let changed = *target != original;
        let signed = chain.sign(&Doc::new(certificate, cabundle));
        let result = std::panic::catch_unwind(|| chain.verifier().verify(&signed, now()));
        let Ok(result) = result else {
            panic!("seed {SEED:#x}, mutation {i} panicked on {signed:02x?}")
        };
        match result {
            // cabundle[0] is never read: any change to it is accepted.
            Ok(_) => assert!(
                !changed || which == 0,
                "seed {SEED:#x}, mutation {i} of certificate {which} accepted"
            ),
            Err(AttestationError::DocumentSignature { .. }) => {}
            Err(_) => reached_chain += 1,
        }
    }
    eprintln!(
        "2000 mutations: genuine document {accepted} accepted unchanged; {reached_chain} certificate changes refused past the signature"
    );
}
