#![no_main]
// A policy change and a transfer's parameters from outside bytes (a user's sealed action, as
// the edge, the policy worker and the verifiers parse it): parsing never panics, a parsed
// policy serializes back to what parses to the same policy, and a fold of a log whose
// subjects carry these parameters never panics either.
use govern_projections::policy::{PolicyChange, parse_change, parse_transfer};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(serde_json::Value::Object(params)) = serde_json::from_slice(data) else {
        return;
    };
    let _ = parse_transfer(&params);
    if let Ok(PolicyChange::Set(policy)) = parse_change(&params) {
        let again = serde_json::to_value(&policy).expect("a parsed policy serializes");
        let mut wrapped = serde_json::Map::new();
        wrapped.insert("policy".into(), again);
        match parse_change(&wrapped) {
            Ok(PolicyChange::Set(p)) => assert_eq!(p, policy),
            other => panic!("a parsed policy does not parse back: {other:?}"),
        }
    }
});
