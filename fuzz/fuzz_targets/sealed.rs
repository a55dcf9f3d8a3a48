#![no_main]
// A sealed event from outside bytes (an entry as the log serves it): parsing the envelope and
// its `sealed` member, and opening it as a payload and as a user action, never panic, and
// nothing opens under a key the fuzzer does not hold.
use govern_core::event::SignedEvent;
use govern_core::seal::{open, open_action, sealed_scope};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(signed) = SignedEvent::from_bytes(data) else {
        // Unsigned envelopes too: readers parse `sealed` before they trust anything.
        if let Ok(event) = serde_json::from_slice::<govern_core::event::Event>(data) {
            let _ = sealed_scope(&event);
            assert!(open(&event, &[9; 32]).is_err());
            assert!(open_action(&event, &[9; 32]).is_err());
        }
        return;
    };
    let event = signed.event();
    let _ = sealed_scope(event);
    assert!(open(event, &[9; 32]).is_err());
    assert!(open_action(event, &[9; 32]).is_err());
});
