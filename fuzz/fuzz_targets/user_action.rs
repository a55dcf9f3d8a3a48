#![no_main]
// An action event's body (the challenge object and a passkey assertion or key signature)
// from outside bytes: parsing and verifying never panic, and nothing forged verifies.
use govern_core::action::{Credential, CredentialKey, CredentialType, verify_user_action_body};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(serde_json::Value::Object(body)) = serde_json::from_slice::<serde_json::Value>(data)
    else {
        return;
    };
    for (kind, key) in [
        (
            CredentialType::Passkey,
            CredentialKey::Ed25519(ed25519_dalek::SigningKey::from_bytes(&[5; 32]).verifying_key()),
        ),
        (
            CredentialType::Key,
            CredentialKey::Ed25519(ed25519_dalek::SigningKey::from_bytes(&[5; 32]).verifying_key()),
        ),
    ] {
        let credential = Credential {
            id: "Y3JlZC0x".into(),
            kind,
            key,
            tenant: "t".into(),
            user: "u".into(),
        };
        // The fuzzer holds no private key: a pass would be a forgery.
        assert!(verify_user_action_body(&body, &credential).is_err());
    }
});
