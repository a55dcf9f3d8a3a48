#![no_main]
// A c2sp.org/tlog-witness add-checkpoint body from outside bytes: parsing never panics, a
// parsed request encodes back to bytes that parse to the same request, and the witness's
// decision never panics and never cosigns a checkpoint its log's key did not sign.
use govern_core::note::NoteSigner;
use govern_core::witness::{AddCheckpoint, FollowedLog, decide};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(request) = AddCheckpoint::parse(data) else {
        return;
    };
    assert_eq!(AddCheckpoint::parse(&request.encode()), Ok(request.clone()));
    let signer = NoteSigner::new(
        "example.com/log",
        ed25519_dalek::SigningKey::from_bytes(&[3; 32]),
    )
    .expect("a key");
    let logs = [FollowedLog {
        origin: "example.com/log".into(),
        verifiers: vec![signer.verifier()],
    }];
    assert!(decide(&logs, |_| None, &request).is_err());
});
