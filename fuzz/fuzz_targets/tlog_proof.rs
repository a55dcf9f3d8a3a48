#![no_main]
// A C2SP tlog-proof from outside bytes: parsing never panics, a parsed proof prints back to
// a text that parses to the same proof, and nothing verifies under a key the fuzzer lacks.
use govern_core::note::NoteSigner;
use govern_core::proof::TlogProof;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(proof) = TlogProof::parse(data) else {
        return;
    };
    assert_eq!(
        TlogProof::parse(proof.to_text().as_bytes()),
        Ok(proof.clone())
    );
    let signer = NoteSigner::new(
        "example.com/log",
        ed25519_dalek::SigningKey::from_bytes(&[3; 32]),
    )
    .expect("a key");
    assert!(proof.verify(b"entry", &signer.verifier()).is_err());
});
