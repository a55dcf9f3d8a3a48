//! The verifier against a real software passkey: webauthn-rs registers it, its
//! `attestationObject` gives the credential key the log would record, and the passkey signs
//! an action's challenge as a browser's authenticator would.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::Engine as _;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD as B64URL};
use govern_core::action::{
    ACTION_DOMAIN, ActionError, Anchor, ChallengeObject, Credential, CredentialType, UserSignature,
    registered_credential, verify_user_action,
};
use serde_json::Value;
use webauthn_authenticator_rs::prelude::WebauthnAuthenticator;
use webauthn_authenticator_rs::softpasskey::SoftPasskey;
use webauthn_rs::prelude::*;

/// Base64url with or without padding, as either side may write it.
fn b64(v: &Value) -> Vec<u8> {
    let s = v.as_str().expect("a base64url string");
    B64URL
        .decode(s.trim_end_matches('='))
        .or_else(|_| URL_SAFE.decode(s))
        .expect("base64url")
}

#[test]
fn a_software_passkey_signs_an_action_the_verifier_accepts() {
    let origin = Url::parse("http://localhost:8080").unwrap();
    let rp = WebauthnBuilder::new("localhost", &origin)
        .unwrap()
        .build()
        .unwrap();
    let mut token = SoftPasskey::new(true);
    let (ccr, reg_state) = rp
        .start_passkey_registration(Uuid::from_bytes([7; 16]), "alice", "Alice", None)
        .unwrap();
    let reg = token.do_registration(origin.clone(), ccr).unwrap();
    let reg_json = serde_json::to_value(&reg).unwrap();
    let passkey = rp.finish_passkey_registration(&reg, &reg_state).unwrap();

    // The credential as the log records it, from the registration alone.
    let (id, key) = registered_credential(
        &b64(&reg_json["response"]["attestationObject"]),
        "localhost",
    )
    .unwrap();
    let expected: &[u8] = passkey.cred_id().as_ref();
    assert_eq!(id, expected.to_vec());
    assert!(matches!(
        registered_credential(
            &b64(&reg_json["response"]["attestationObject"]),
            "evil.example"
        ),
        Err(ActionError::RpIdHash { .. })
    ));
    let credential = Credential {
        id: B64URL.encode(&id),
        kind: CredentialType::Passkey,
        key,
        tenant: "tenant-1".into(),
        user: "alice".into(),
    };
    let object = ChallengeObject {
        domain: ACTION_DOMAIN.into(),
        tenant: "tenant-1".into(),
        user: "alice".into(),
        credential: credential.id.clone(),
        kind: "transfer.requested".into(),
        request: "0193f0a0-0000-7000-8000-000000000003".into(),
        rp_id: "localhost".into(),
        method: "POST".into(),
        path: "/v1/wallets/w1/transfers".into(),
        body_commitment: "11".repeat(32),
        nonce: "bm9uY2U".into(),
        anchor: Anchor {
            size: 7,
            root: "22".repeat(32),
        },
    };

    // The relying party's request, with the action's challenge in place of its random one.
    let (rcr, _) = rp.start_passkey_authentication(&[passkey]).unwrap();
    let mut rcr_json = serde_json::to_value(&rcr).unwrap();
    rcr_json["publicKey"]["challenge"] = B64URL.encode(object.challenge().unwrap()).into();
    let rcr: RequestChallengeResponse = serde_json::from_value(rcr_json).unwrap();
    let assertion = token.do_authentication(origin, rcr).unwrap();
    let a = serde_json::to_value(&assertion).unwrap();
    let signature = UserSignature::Passkey {
        authenticator_data: B64URL.encode(b64(&a["response"]["authenticatorData"])),
        client_data_json: B64URL.encode(b64(&a["response"]["clientDataJSON"])),
        signature: B64URL.encode(b64(&a["response"]["signature"])),
    };
    let verified = verify_user_action(&object, &signature, &credential).unwrap();
    assert_eq!(verified.challenge, object.challenge().unwrap());

    // The same assertion over another path is refused.
    let mut other = object.clone();
    other.path = "/v1/wallets/w2/transfers".into();
    assert_eq!(
        verify_user_action(&other, &signature, &credential),
        Err(ActionError::ChallengeMismatch)
    );
}
