#![no_main]
// parse_body refuses anything body() would not produce.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(c) = std::str::from_utf8(data).map(govern_core::checkpoint::Checkpoint::parse_body) {
        if let Ok(c) = c {
            assert_eq!(c.body().as_bytes(), data)
        }
    }
});
