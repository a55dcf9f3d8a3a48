#![no_main]
// A bundle that decodes re-encodes to the same bytes.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(es) = govern_core::tiles::decode_bundle(data) {
        assert_eq!(
            govern_core::tiles::encode_bundle(es.iter().map(Vec::as_slice)),
            data
        )
    }
});
