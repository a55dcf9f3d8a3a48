#![no_main]
// Never panics; an accepted document reads the same unverified, and a UserData that decodes re-encodes to the same bytes.
static AWS: std::sync::LazyLock<govern_core::attestation::Verifier> =
    std::sync::LazyLock::new(|| {
        govern_core::attestation::Verifier::new(
            govern_core::attestation::TrustAnchor::aws_nitro_root_g1(),
        )
    });
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let at = govern_core::event::Timestamp::from_unix_ms(1_721_159_587_239).expect("in range");
    if let Ok(d) = AWS.verify(data, at) {
        assert_eq!(
            govern_core::attestation::parse_unverified(data).ok(),
            Some(d)
        )
    }
    if let Ok(u) = govern_core::attestation::UserData::decode(data) {
        assert_eq!(u.encode(), data)
    }
});
