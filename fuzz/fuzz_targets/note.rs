#![no_main]
// A note that parses encodes back to the same bytes.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(n) = govern_core::note::Note::parse(data) {
        assert_eq!(n.encode().as_bytes(), data)
    }
});
