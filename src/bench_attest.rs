//! `govern bench attest`: attestation documents verified per second, on one thread, for the
//! genuine AWS document (at its own time) and for dev documents from the simulated NSM.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;
use govern_core::attestation::{TrustAnchor, UserData, Verifier};
use govern_core::event::{Role, Timestamp};
use govern_workers::nsm::{AttestationRequest, SimulatedNsm, dev_measurement};

use crate::demo::Result;

#[derive(Debug, Args)]
pub struct AttestArgs {
    /// Seconds to spend on each measurement.
    #[arg(long, default_value_t = 3)]
    pub seconds: u64,
    /// A genuine Nitro document to measure as well (verified at its own timestamp against
    /// AWS's root).
    #[arg(long, default_value = "../shared/fixtures/nitro/real-2024-07-16.cose")]
    pub genuine: PathBuf,
}

fn rate(secs: Duration, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < secs {
        f()?;
        n += 1;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

/// `govern bench attest`.
pub async fn attest(args: AttestArgs) -> Result<()> {
    let secs = Duration::from_secs(args.seconds);
    tokio::task::spawn_blocking(move || -> Result<()> {
        println!(
            "govern bench attest: one thread, {} s per figure",
            secs.as_secs()
        );
        match std::fs::read(&args.genuine) {
            Ok(doc) => {
                let verifier = Verifier::new(TrustAnchor::aws_nitro_root_g1());
                let at = verifier.verify(&doc, Timestamp::now()).err().map(|_| {
                    // The genuine document's certificates expired long ago: verify at its
                    // own time, which the parse gives.
                    govern_core::attestation::parse_unverified(&doc).map(|d| d.timestamp)
                });
                let at = match at {
                    Some(t) => t?,
                    None => Timestamp::now(),
                };
                let r = rate(secs, || Ok(verifier.verify(&doc, at).map(|_| ())?))?;
                println!(
                    "genuine AWS document:   {r:.0} verified/s ({} bytes, chain of 5)",
                    doc.len()
                );
            }
            Err(e) => println!(
                "genuine AWS document:   not measured ({}: {e})",
                args.genuine.display()
            ),
        }
        let dir = tempfile::tempdir()?;
        let exe = std::env::current_exe()?;
        let role = Role::new("policy")?;
        let nsm = SimulatedNsm::open(dir.path(), &exe, role.clone())?;
        let binding = UserData {
            role: role.clone(),
            manifest_hash: [1; 32],
            ed25519: [2; 32],
            x25519: [3; 32],
        };
        let request = AttestationRequest::new(vec![0x30; 294], binding.encode(), vec![4; 32]);
        let now = Timestamp::now();
        let doc = nsm.attest_at(request.clone(), now)?;
        let verifier = Verifier::new(TrustAnchor::from_der(nsm.root_der())?)
            .expect_pcr(0, dev_measurement(&exe, &role)?.to_vec());
        let r = rate(secs, || Ok(verifier.verify(&doc, now).map(|_| ())?))?;
        println!(
            "dev document:           {r:.0} verified/s ({} bytes, chain of 3)",
            doc.len()
        );
        let r = rate(secs, || {
            Ok(nsm.attest_at(request.clone(), now).map(|_| ())?)
        })?;
        println!("dev document issued:    {r:.0} /s (simulated NSM, ES384)");
        Ok(())
    })
    .await?
}
