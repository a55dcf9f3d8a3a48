//! The offline user-action verifier: a software authenticator built here (P-256 and Ed25519
//! passkeys, Ed25519 and P-256 API keys) signs real challenge objects; every tampering is
//! refused with its own error.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use govern_core::action::{
    ACTION_DOMAIN, ActionError, Anchor, ChallengeObject, Credential, CredentialKey, CredentialType,
    LOGIN_DOMAIN, UserSignature, body_commitment, verify_user_action, verify_user_action_body,
};
use p256::ecdsa::signature::Signer as _;
use serde_json::json;
use sha2::{Digest as _, Sha256};

const RP: &str = "localhost";
const ORIGIN: &str = "http://localhost:8080";

fn object() -> ChallengeObject {
    ChallengeObject {
        domain: ACTION_DOMAIN.into(),
        tenant: "0193f0a0-0000-7000-8000-000000000001".into(),
        user: "0193f0a0-0000-7000-8000-000000000002".into(),
        credential: "Y3JlZC0x".into(),
        kind: "transfer.requested".into(),
        request: "0193f0a0-0000-7000-8000-000000000003".into(),
        rp_id: RP.into(),
        method: "POST".into(),
        path: "/v1/wallets/w1/transfers".into(),
        body_commitment: body_commitment(&[7; 32], &json!({"to": "0xabc", "amount": "1000"}))
            .unwrap(),
        nonce: "bm9uY2UtMQ".into(),
        anchor: Anchor {
            size: 42,
            root: "ab".repeat(32),
        },
    }
}

enum Key {
    P256(p256::ecdsa::SigningKey),
    Ed25519(ed25519_dalek::SigningKey),
}

impl Key {
    fn p256() -> Self {
        Self::P256(p256::ecdsa::SigningKey::from_slice(&[3; 32]).unwrap())
    }
    fn ed25519() -> Self {
        Self::Ed25519(ed25519_dalek::SigningKey::from_bytes(&[5; 32]))
    }
    fn public(&self) -> CredentialKey {
        match self {
            Self::P256(k) => CredentialKey::P256(*k.verifying_key()),
            Self::Ed25519(k) => CredentialKey::Ed25519(k.verifying_key()),
        }
    }
    fn sign(&self, message: &[u8]) -> Vec<u8> {
        match self {
            Self::P256(k) => {
                let s: p256::ecdsa::Signature = k.sign(message);
                s.to_der().as_bytes().to_vec()
            }
            Self::Ed25519(k) => {
                use ed25519_dalek::Signer as _;
                k.sign(message).to_bytes().to_vec()
            }
        }
    }
    fn credential(&self, kind: CredentialType) -> Credential {
        let o = object();
        Credential {
            id: o.credential,
            kind,
            key: self.public(),
            tenant: o.tenant,
            user: o.user,
        }
    }
}

fn auth_data(rp_id: &str, flags: u8, counter: u32) -> Vec<u8> {
    let mut a = Sha256::digest(rp_id.as_bytes()).to_vec();
    a.push(flags);
    a.extend_from_slice(&counter.to_be_bytes());
    a
}

fn client_data(kind: &str, challenge: &[u8], origin: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "type": kind,
        "challenge": B64URL.encode(challenge),
        "origin": origin,
        "crossOrigin": false,
    }))
    .unwrap()
}

/// What a browser's authenticator returns for `o`.
fn assertion_with(key: &Key, auth: Vec<u8>, client: Vec<u8>) -> UserSignature {
    let mut message = auth.clone();
    message.extend_from_slice(&Sha256::digest(&client));
    UserSignature::Passkey {
        authenticator_data: B64URL.encode(&auth),
        client_data_json: B64URL.encode(&client),
        signature: B64URL.encode(key.sign(&message)),
    }
}

fn assertion(key: &Key, o: &ChallengeObject, counter: u32) -> UserSignature {
    assertion_with(
        key,
        auth_data(RP, 0x05, counter),
        client_data("webauthn.get", &o.challenge().unwrap(), ORIGIN),
    )
}

fn key_signature(key: &Key, o: &ChallengeObject) -> UserSignature {
    let client = client_data("key.get", &o.challenge().unwrap(), ORIGIN);
    UserSignature::Key {
        client_data: B64URL.encode(&client),
        signature: B64URL.encode(key.sign(&client)),
    }
}

#[test]
fn the_challenge_is_sha256_of_the_objects_jcs() {
    let o = object();
    let jcs = serde_json_canonicalizer::to_vec(&serde_json::to_value(&o).unwrap()).unwrap();
    assert!(jcs.starts_with(b"{\"anchor\":{\"root\":\""));
    assert_eq!(
        o.challenge().unwrap(),
        <[u8; 32]>::from(Sha256::digest(&jcs))
    );
    // The commitment is salted: the same body under another salt commits differently.
    let body = json!({"amount": "1000", "to": "0xabc"});
    assert_ne!(
        body_commitment(&[7; 32], &body).unwrap(),
        body_commitment(&[8; 32], &body).unwrap()
    );
    assert_eq!(
        body_commitment(&[7; 32], &body).unwrap(),
        o.body_commitment,
        "key order does not matter"
    );
}

/// RFC 8785 writes 2^53 + 1 as 2^53, so a commitment to one would be a commitment to the
/// other: both are refused (and floats), ±(2^53 − 1) commit.
#[test]
fn a_body_commitment_refuses_integers_jcs_cannot_write_exactly() {
    for text in ["9007199254740993", "9007199254740992", "-9007199254740992"] {
        let body: serde_json::Value =
            serde_json::from_str(&format!(r#"{{"policy":{{"max":{text}}}}}"#)).unwrap();
        let err = body_commitment(&[7; 32], &body).unwrap_err();
        assert!(matches!(err, ActionError::Number(_)), "{err:?}");
        assert_eq!(
            err.to_string(),
            format!(
                "the integer {text} at $.policy.max is outside ±(2^53 − 1), which RFC 8785 cannot write exactly; write it as a decimal string"
            )
        );
    }
    let err = body_commitment(&[7; 32], &json!({"amount": 0.5})).unwrap_err();
    assert_eq!(
        err.to_string(),
        "a floating-point number at $.amount; amounts are decimal strings"
    );
    let safe = |n: i64| body_commitment(&[7; 32], &json!({"policy": {"max": n}})).unwrap();
    assert_ne!(safe(9_007_199_254_740_991), safe(9_007_199_254_740_990));
    assert_ne!(safe(-9_007_199_254_740_991), safe(9_007_199_254_740_991));
}

#[test]
fn passkeys_and_keys_of_both_algorithms_verify() {
    let o = object();
    for key in [Key::p256(), Key::ed25519()] {
        let v = verify_user_action(
            &o,
            &assertion(&key, &o, 9),
            &key.credential(CredentialType::Passkey),
        )
        .unwrap();
        assert_eq!(v.counter, 9);
        assert_eq!(v.challenge, o.challenge().unwrap());
        verify_user_action(
            &o,
            &key_signature(&key, &o),
            &key.credential(CredentialType::Key),
        )
        .unwrap();
    }
    // From an event body.
    let key = Key::p256();
    let mut body = serde_json::Map::new();
    body.insert("action".into(), serde_json::to_value(&o).unwrap());
    body.insert(
        "signature".into(),
        serde_json::to_value(assertion(&key, &o, 1)).unwrap(),
    );
    verify_user_action_body(&body, &key.credential(CredentialType::Passkey)).unwrap();
}

#[test]
fn any_change_to_the_action_breaks_the_signature() {
    let key = Key::p256();
    let cred = key.credential(CredentialType::Passkey);
    let o = object();
    let sig = assertion(&key, &o, 1);
    type Change = (&'static str, fn(&mut ChallengeObject));
    let changes: [Change; 8] = [
        ("kind", |o| o.kind = "wallet.requested".into()),
        ("request", |o| o.request.push('0')),
        ("method", |o| o.method = "PUT".into()),
        ("path", |o| o.path = "/v1/wallets/w2/transfers".into()),
        ("body", |o| o.body_commitment = "00".repeat(32)),
        ("nonce", |o| o.nonce = "bm9uY2UtMg".into()),
        ("anchor size", |o| o.anchor.size = 43),
        ("anchor root", |o| o.anchor.root = "cd".repeat(32)),
    ];
    for (what, change) in changes {
        let mut changed = o.clone();
        change(&mut changed);
        assert_eq!(
            verify_user_action(&changed, &sig, &cred),
            Err(ActionError::ChallengeMismatch),
            "{what}"
        );
    }
}

#[test]
fn a_login_challenge_is_not_an_action() {
    let key = Key::p256();
    let mut o = object();
    o.domain = LOGIN_DOMAIN.into();
    let sig = assertion(&key, &o, 1);
    assert!(matches!(
        verify_user_action(&o, &sig, &key.credential(CredentialType::Passkey)),
        Err(ActionError::Domain { .. })
    ));
}

#[test]
fn another_users_credential_is_refused() {
    let key = Key::p256();
    let o = object();
    let sig = assertion(&key, &o, 1);
    for (what, change) in [
        (
            "credential",
            (|c: &mut Credential| c.id = "b3RoZXI".into()) as fn(&mut Credential),
        ),
        ("user", |c| c.user = "someone else".into()),
        ("tenant", |c| c.tenant = "another tenant".into()),
    ] {
        let mut cred = key.credential(CredentialType::Passkey);
        change(&mut cred);
        match verify_user_action(&o, &sig, &cred) {
            Err(ActionError::NotTheCredential { what: w, .. }) => assert_eq!(w, what),
            other => panic!("{what}: {other:?}"),
        }
    }
    // Another key under the right ids.
    let mut cred = key.credential(CredentialType::Passkey);
    cred.key = Key::ed25519().public();
    assert_eq!(
        verify_user_action(&o, &sig, &cred),
        Err(ActionError::BadSignature)
    );
    // A key's signature against a passkey credential, and the reverse.
    assert!(matches!(
        verify_user_action(
            &o,
            &key_signature(&key, &o),
            &key.credential(CredentialType::Passkey)
        ),
        Err(ActionError::WrongCredentialType { .. })
    ));
    assert!(matches!(
        verify_user_action(&o, &sig, &key.credential(CredentialType::Key)),
        Err(ActionError::WrongCredentialType { .. })
    ));
}

#[test]
fn origin_rp_id_flags_and_type_are_checked() {
    let key = Key::p256();
    let cred = key.credential(CredentialType::Passkey);
    let o = object();
    let ch = o.challenge().unwrap();
    let good_client = client_data("webauthn.get", &ch, ORIGIN);
    for origin in [
        "http://evil.example",
        "https://localhost.evil.example",
        "http://127.0.0.1:8080",
        "localhost",
        "http://localhost:8080/path",
        "ftp://localhost",
    ] {
        let sig = assertion_with(
            &key,
            auth_data(RP, 0x05, 1),
            client_data("webauthn.get", &ch, origin),
        );
        assert!(
            matches!(
                verify_user_action(&o, &sig, &cred),
                Err(ActionError::Origin { .. })
            ),
            "{origin}"
        );
    }
    let sig = assertion_with(
        &key,
        auth_data("evil.example", 0x05, 1),
        good_client.clone(),
    );
    assert!(matches!(
        verify_user_action(&o, &sig, &cred),
        Err(ActionError::RpIdHash { .. })
    ));
    for flags in [0x00, 0x01, 0x04] {
        let sig = assertion_with(&key, auth_data(RP, flags, 1), good_client.clone());
        assert_eq!(
            verify_user_action(&o, &sig, &cred),
            Err(ActionError::Flags { flags })
        );
    }
    let sig = assertion_with(
        &key,
        auth_data(RP, 0x05, 1),
        client_data("webauthn.create", &ch, ORIGIN),
    );
    assert!(matches!(
        verify_user_action(&o, &sig, &cred),
        Err(ActionError::ClientDataType { .. })
    ));
    let mut cross = serde_json::from_slice::<serde_json::Value>(&good_client).unwrap();
    cross["crossOrigin"] = json!(true);
    let sig = assertion_with(
        &key,
        auth_data(RP, 0x05, 1),
        serde_json::to_vec(&cross).unwrap(),
    );
    assert!(matches!(
        verify_user_action(&o, &sig, &cred),
        Err(ActionError::Origin { .. })
    ));
    // https on a subdomain of the rp_id is an origin of it.
    let mut o2 = object();
    o2.rp_id = "govern.example".into();
    let sig = assertion_with(
        &key,
        auth_data("govern.example", 0x05, 1),
        client_data(
            "webauthn.get",
            &o2.challenge().unwrap(),
            "https://app.govern.example",
        ),
    );
    verify_user_action(&o2, &sig, &cred).unwrap();
}

#[test]
fn malformed_encodings_and_tampered_bytes_are_refused() {
    let key = Key::ed25519();
    let cred = key.credential(CredentialType::Passkey);
    let o = object();
    let UserSignature::Passkey {
        authenticator_data,
        client_data_json,
        signature,
    } = assertion(&key, &o, 1)
    else {
        unreachable!()
    };
    let with = |a: &str, c: &str, s: &str| UserSignature::Passkey {
        authenticator_data: a.into(),
        client_data_json: c.into(),
        signature: s.into(),
    };
    for (bad, field) in [
        (
            with("***", &client_data_json, &signature),
            "authenticator_data",
        ),
        (
            with(&authenticator_data, "a+b/", &signature),
            "client_data_json",
        ),
        (
            with(&authenticator_data, &client_data_json, &"A".repeat(400)),
            "signature",
        ),
    ] {
        match verify_user_action(&o, &bad, &cred) {
            Err(ActionError::Encoding { field: f, .. }) => assert_eq!(f, field),
            other => panic!("{field}: {other:?}"),
        }
    }
    let not_json = B64URL.encode(b"{not json");
    assert!(matches!(
        verify_user_action(&o, &with(&authenticator_data, &not_json, &signature), &cred),
        Err(ActionError::ClientData(_))
    ));
    let short = B64URL.encode([0u8; 36]);
    assert!(matches!(
        verify_user_action(&o, &with(&short, &client_data_json, &signature), &cred),
        Err(ActionError::AuthenticatorDataShort { len: 36 })
    ));
    // Every byte of authenticatorData and of the signature matters.
    let auth = B64URL.decode(&authenticator_data).unwrap();
    for i in 33..auth.len() {
        let mut t = auth.clone();
        t[i] ^= 0x40;
        let r = verify_user_action(
            &o,
            &with(&B64URL.encode(&t), &client_data_json, &signature),
            &cred,
        );
        assert_eq!(
            r,
            Err(ActionError::BadSignature),
            "authenticatorData byte {i}"
        );
    }
    let sig = B64URL.decode(&signature).unwrap();
    for i in 0..sig.len() {
        let mut t = sig.clone();
        t[i] ^= 0x01;
        let r = verify_user_action(
            &o,
            &with(&authenticator_data, &client_data_json, &B64URL.encode(&t)),
            &cred,
        );
        assert_eq!(r, Err(ActionError::BadSignature), "signature byte {i}");
    }
    // A body without the action.
    assert!(matches!(
        verify_user_action_body(&serde_json::Map::new(), &cred),
        Err(ActionError::Body(_))
    ));
}

#[test]
fn credential_keys_come_from_cose_keys() {
    use coset::{CborSerializable as _, CoseKeyBuilder, iana};
    let Key::P256(p) = Key::p256() else {
        unreachable!()
    };
    let point = p.verifying_key().to_encoded_point(false);
    let ec2 = CoseKeyBuilder::new_ec2_pub_key(
        iana::EllipticCurve::P_256,
        point.x().unwrap().to_vec(),
        point.y().unwrap().to_vec(),
    )
    .algorithm(iana::Algorithm::ES256)
    .build()
    .to_vec()
    .unwrap();
    assert_eq!(
        CredentialKey::from_cose(&ec2).unwrap(),
        Key::p256().public()
    );
    let Key::Ed25519(e) = Key::ed25519() else {
        unreachable!()
    };
    let okp = CoseKeyBuilder::new_okp_key()
        .param(
            -1,
            ciborium::Value::from(iana::EllipticCurve::Ed25519 as i64),
        )
        .param(
            -2,
            ciborium::Value::Bytes(e.verifying_key().to_bytes().to_vec()),
        )
        .algorithm(iana::Algorithm::EdDSA)
        .build()
        .to_vec()
        .unwrap();
    assert_eq!(
        CredentialKey::from_cose(&okp).unwrap(),
        Key::ed25519().public()
    );
    // Refused: another curve, another algorithm, a point off the curve, garbage.
    let p384 =
        CoseKeyBuilder::new_ec2_pub_key(iana::EllipticCurve::P_384, vec![1; 48], vec![2; 48])
            .build()
            .to_vec()
            .unwrap();
    let rs256 = CoseKeyBuilder::new_ec2_pub_key(
        iana::EllipticCurve::P_256,
        point.x().unwrap().to_vec(),
        point.y().unwrap().to_vec(),
    )
    .algorithm(iana::Algorithm::RS256)
    .build()
    .to_vec()
    .unwrap();
    let off_curve =
        CoseKeyBuilder::new_ec2_pub_key(iana::EllipticCurve::P_256, vec![1; 32], vec![2; 32])
            .build()
            .to_vec()
            .unwrap();
    for bad in [
        p384,
        rs256,
        off_curve,
        b"\xa1garbage".to_vec(),
        ec2[..ec2.len() - 3].to_vec(),
    ] {
        assert!(matches!(
            CredentialKey::from_cose(&bad),
            Err(ActionError::CoseKey(_))
        ));
    }
}
