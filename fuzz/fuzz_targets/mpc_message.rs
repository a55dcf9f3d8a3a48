#![no_main]
// What a signer reads from another signer (an `mpc.message` body, and its sealed bytes) and
// what it builds a transaction from (a transfer's opened parameters), from outside bytes:
// nothing panics; a parsed message's body parses back to the same message; a sealed
// message does not open under another session; a transaction that builds encodes.
use govern_workers::signer::eth::Eip1559;
use govern_workers::signer::mpc::{Wire, open, seal_info};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(serde_json::Value::Object(body)) = serde_json::from_slice(data) {
        if let Ok(wire) = Wire::parse(&body) {
            assert_eq!(Wire::parse(&wire.body()).as_ref(), Ok(&wire));
        }
        if let Ok(tx) = Eip1559::from_transfer(&body) {
            let unsigned = tx.unsigned();
            assert_eq!(unsigned.first(), Some(&0x02));
        }
    }
    let secret = x25519_dalek::StaticSecret::from([7u8; 32]);
    let _ = open(&secret, &seal_info(&[1; 32], 0, 1, 2), data);
});
