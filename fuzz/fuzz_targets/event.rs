#![no_main]
// Accepted bytes are the leaf data unchanged (canonical, so one spelling per event).
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(e) = govern_core::event::SignedEvent::from_bytes(data) {
        assert_eq!(e.bytes(), data)
    }
});
