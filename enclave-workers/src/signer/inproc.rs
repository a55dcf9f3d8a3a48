//! The protocols with every party in this process, one thread, no log: the yardstick
//! `govern bench e2e` prints beside the signers' end-to-end figures (docs/operations.md).

use std::time::{Duration, Instant};

use cggmp24::key_share::AuxInfo;
use cggmp24::security_level::SecurityLevel128;
use cggmp24::supported_curves::Secp256k1;
use cggmp24::{DataToSign, ExecutionId, KeyShare};
use rand_core::{OsRng, SeedableRng as _};

/// How long each protocol took, all parties on one thread.
#[derive(Debug, Clone, Copy)]
pub struct Timings {
    /// Key generation, 3-of-5, five parties.
    pub keygen: Duration,
    /// Presignature generation, three parties.
    pub presign: Duration,
    /// Partial signatures and their combination, three parties.
    pub partials: Duration,
    /// The whole signing protocol, three parties.
    pub sign: Duration,
}

fn rng() -> Result<rand_chacha::ChaCha20Rng, String> {
    rand_chacha::ChaCha20Rng::from_rng(OsRng).map_err(|e| e.to_string())
}

/// Run key generation among five with `aux` (one per party), then sign `message` by
/// parties 1, 3 and 5 both ways: presignature then partial signatures, and the whole
/// protocol. Each signature is checked against the key.
///
/// # Errors
/// A protocol that fails, or a signature that does not verify.
pub fn timings(aux: Vec<AuxInfo<SecurityLevel128>>, message: &[u8]) -> Result<Timings, String> {
    let n = u16::try_from(aux.len()).map_err(|e| e.to_string())?;
    let started = Instant::now();
    let incomplete = round_based::sim::run(n, |i, party| {
        let rng = rng();
        async move {
            let mut rng = rng?;
            cggmp24::keygen::<Secp256k1>(ExecutionId::new(b"govern-bench-keygen"), i, n)
                .set_threshold(3)
                .start(&mut rng, party)
                .await
                .map_err(|e| format!("{e:?}"))
        }
    })
    .map_err(|e| format!("{e:?}"))?
    .expect_ok()
    .into_vec();
    let keygen = started.elapsed();
    let shares: Vec<KeyShare<Secp256k1>> = incomplete
        .into_iter()
        .zip(aux)
        .map(|(k, a)| KeyShare::from_parts((k, a)).map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    let signers: [u16; 3] = [0, 2, 4];
    let data = DataToSign::<Secp256k1>::digest::<sha3::Keccak256>(message);
    let pk = shares[0].shared_public_key;

    let started = Instant::now();
    let presigs = round_based::sim::run(3, |j, party| {
        let share = &shares[usize::from(signers[usize::from(j)])];
        let rng = rng();
        async move {
            let mut rng = rng?;
            cggmp24::signing(
                ExecutionId::new(b"govern-bench-presign"),
                j,
                &signers,
                share,
            )
            .generate_presignature(&mut rng, party)
            .await
            .map_err(|e| format!("{e:?}"))
        }
    })
    .map_err(|e| format!("{e:?}"))?
    .expect_ok()
    .into_vec();
    let presign = started.elapsed();
    let started = Instant::now();
    let public = presigs[0].1.clone();
    let partials: Vec<_> = presigs
        .into_iter()
        .map(|(p, _)| p.issue_partial_signature(data))
        .collect();
    let sig = cggmp24::PartialSignature::combine(&partials, &public, data)
        .ok_or("the partial signatures do not combine")?;
    let partials = started.elapsed();
    sig.verify(&pk, &data).map_err(|e| format!("{e:?}"))?;

    let started = Instant::now();
    let sigs = round_based::sim::run(3, |j, party| {
        let share = &shares[usize::from(signers[usize::from(j)])];
        let rng = rng();
        async move {
            let mut rng = rng?;
            cggmp24::signing(ExecutionId::new(b"govern-bench-sign"), j, &signers, share)
                .sign(&mut rng, party, &data)
                .await
                .map_err(|e| format!("{e:?}"))
        }
    })
    .map_err(|e| format!("{e:?}"))?
    .expect_ok()
    .into_vec();
    let sign = started.elapsed();
    sigs[0].verify(&pk, &data).map_err(|e| format!("{e:?}"))?;
    Ok(Timings {
        keygen,
        presign,
        partials,
        sign,
    })
}
