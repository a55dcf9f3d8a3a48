//! Makes `tests/fixtures/aux-info.test-only.json`: aux info for five signers (safe primes and
//! the aux-info protocol, all five parties in this process), so the tests never generate
//! primes. TEST ONLY: it holds every signer's Paillier secret in clear, so anyone who has it
//! can read the signers' protocol secrets. `govern up` on a fresh data dir generates real
//! aux info inside the signers instead.
//!
//! Run it (≈ 8 minutes on 2 cores) with:
//! `cargo test -p govern-workers --release --test aux_fixture -- --ignored`

use cggmp24::security_level::SecurityLevel128;
use cggmp24::{ExecutionId, PregeneratedPrimes};
use rand_core::{OsRng, SeedableRng as _};

#[test]
#[ignore = "makes the fixture (minutes of prime generation)"]
fn make_the_test_only_aux_info_fixture() {
    let primes: Vec<PregeneratedPrimes<SecurityLevel128>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..5)
            .map(|_| {
                s.spawn(|| {
                    let mut rng = rand_chacha::ChaCha20Rng::from_rng(OsRng).expect("rng");
                    PregeneratedPrimes::<SecurityLevel128>::generate(&mut rng)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("primes"))
            .collect()
    });
    let aux = round_based::sim::run_with_setup(primes, |i, party, pr| {
        let mut rng = rand_chacha::ChaCha20Rng::from_rng(OsRng).expect("rng");
        async move {
            cggmp24::aux_info_gen(ExecutionId::new(b"govern-test-only-aux-info"), i, 5, pr)
                .start(&mut rng, party)
                .await
        }
    })
    .expect("sim")
    .expect_ok()
    .into_vec();
    let out = serde_json::json!({
        "warning": "TEST ONLY: every signer's aux info with its Paillier secret, in clear. Never use it outside tests.",
        "aux": aux,
    });
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/aux-info.test-only.json");
    std::fs::write(&path, serde_json::to_vec(&out).expect("json")).expect("write");
}
