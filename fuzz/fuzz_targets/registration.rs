#![no_main]
// A passkey registration's attestationObject and a credential's COSE_Key, from outside
// bytes (the edge and the log both parse them): never a panic; a key that parses survives
// its own round trip.
use govern_core::action::{CredentialKey, registered_credential};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok((_, key)) = registered_credential(data, "localhost") {
        assert_eq!(CredentialKey::from_cose(&key.to_cose()).ok(), Some(key));
    }
    if let Ok(key) = CredentialKey::from_cose(data) {
        assert_eq!(CredentialKey::from_cose(&key.to_cose()).ok(), Some(key));
    }
});
