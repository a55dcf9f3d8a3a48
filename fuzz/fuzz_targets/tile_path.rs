#![no_main]
// A tile has one path: what parses prints back the same.
libfuzzer_sys::fuzz_target!(|path: &str| {
    if let Ok(t) = govern_core::tiles::Tile::parse(path) {
        assert_eq!(t.to_string(), format!("tile/{path}"))
    }
});
