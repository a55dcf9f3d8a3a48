//! `govern bench attest`: attestation documents verified per second, on one thread, for the
//! genuine AWS document (at its own time) and for dev documents from the simulated NSM; then
//! durable appends per second in process, on RocksDB, with the identity policy (identities,
//! manifest, routing graph) beside the foundation's producer allow-list, in the same run.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clap::Args;
use govern_admission::ProducerAllowList;
use govern_api::{Attestor, DataDir};
use govern_core::attestation::{TrustAnchor, UserData, Verifier};
use govern_core::event::{PublicKey, Role, Timestamp};
use govern_core::note::NoteSigner;
use govern_store::{Log, LogConfig, RocksStorage, SystemClock};
use govern_workers::nsm::{AttestationRequest, SimulatedNsm, dev_measurement};

use crate::error::Result;

/// The genuine AWS Nitro document of govern-core's tests (its README says where it comes
/// from), so the bench measures it from any directory.
const GENUINE: &[u8] = include_bytes!("../core/tests/fixtures/nitro/real-2024-07-16.cose");

#[derive(Debug, Args)]
pub struct AttestArgs {
    /// Seconds to spend on each measurement.
    #[arg(long, default_value_t = 3)]
    pub seconds: u64,
    /// A genuine Nitro document to measure as well (verified at its own timestamp against
    /// AWS's root) [default: the one built in, core/tests/fixtures/nitro/].
    #[arg(long)]
    pub genuine: Option<PathBuf>,
    /// Appends per policy in the append comparison (0 skips it).
    #[arg(long, default_value_t = 100_000)]
    pub appends: usize,
    /// Concurrent appenders in the append comparison.
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
}

/// `count` demo events of the edge, under `attestation`, signed before timing (the events
/// of `govern bench append`, unpadded).
fn events(
    key: &ed25519_dalek::SigningKey,
    attestation: govern_core::ids::LeafHash,
    count: usize,
) -> Result<Vec<govern_core::event::SignedEvent>> {
    (0..count)
        .map(|i| crate::bench::make_event(key, attestation, "", i))
        .collect()
}

/// Durable appends per second of `events` by `clients` concurrent appenders.
async fn append_rate(
    log: &Arc<Log<RocksStorage>>,
    events: Vec<govern_core::event::SignedEvent>,
    clients: usize,
) -> Result<f64> {
    let events = Arc::new(events);
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..clients.max(1))
        .map(|_| {
            let (log, events, next) = (Arc::clone(log), Arc::clone(&events), Arc::clone(&next));
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(e) = events.get(i) else {
                        return Ok::<(), String>(());
                    };
                    log.append(e.clone()).await.map_err(|e| e.to_string())?;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await?.map_err(|e| format!("append failed: {e}"))?;
    }
    Ok(events.len() as f64 / start.elapsed().as_secs_f64())
}

/// The append comparison: the same events through the foundation's allow-list and through
/// the identity policy of a booted node, each on its own fresh RocksDB.
async fn compare_appends(count: usize, clients: usize) -> Result<()> {
    println!(
        "durable appends in process, RocksDB, {count} events, {clients} concurrent appenders:"
    );
    let exe = std::env::current_exe()?;

    // Foundation: the producer allow-list alone.
    let tmp_a = tempfile::tempdir()?;
    let dir_a = DataDir::open(tmp_a.path(), None)?;
    let edge_a = dir_a.edge_key()?;
    let mut allow = ProducerAllowList::default();
    allow.insert(Role::new("edge")?, PublicKey::from(&edge_a.verifying_key()));
    let log_a = Arc::new(Log::open(
        RocksStorage::open(&dir_a.db_path())?,
        NoteSigner::new(dir_a.origin(), dir_a.log_signing_key())?,
        LogConfig::new(dir_a.origin()),
        Arc::new(allow),
        Arc::new(SystemClock),
    )?);
    let fake = govern_core::ids::LeafHash(govern_core::ids::Hash([0; 32]));
    let ev_a = tokio::task::spawn_blocking(move || events(&edge_a, fake, count)).await??;

    // Identity checks on: a node booted as `govern node` boots.
    let tmp_b = tempfile::tempdir()?;
    govern_api::devpin::pin_dev_manifest(tmp_b.path(), None, &exe)?;
    let dir_b = DataDir::open(tmp_b.path(), None)?;
    let services = dir_b
        .boot(
            LogConfig::new(dir_b.origin()),
            true,
            &Attestor::Simulated { executable: exe },
        )
        .await?;
    let edge_b = services.edge.identity.keys().signing_key().clone();
    let leaf = services
        .edge
        .identity
        .current()
        .ok_or("the edge is not attested")?;
    let ev_b = tokio::task::spawn_blocking(move || events(&edge_b, leaf, count)).await??;

    // Alternate, so drift in the machine (page cache, compactions) falls on both alike.
    const ROUNDS: usize = 3;
    let chunk = count.div_ceil(ROUNDS).max(1);
    let (mut ev_a, mut ev_b) = (ev_a.into_iter(), ev_b.into_iter());
    let (mut sum_a, mut sum_b) = (0.0, 0.0);
    for round in 1..=ROUNDS {
        let a = append_rate(&log_a, ev_a.by_ref().take(chunk).collect(), clients).await?;
        let b = append_rate(&services.log, ev_b.by_ref().take(chunk).collect(), clients).await?;
        println!(
            "  round {round}: foundation (producer allow-list) {a:.0}/s, identity policy (identity, manifest, routing) {b:.0}/s"
        );
        sum_a += a;
        sum_b += b;
    }
    let (a, b) = (sum_a / ROUNDS as f64, sum_b / ROUNDS as f64);
    println!(
        "  mean: foundation {a:.0}/s, identity checks on {b:.0}/s ({:+.1}%)",
        (b / a - 1.0) * 100.0
    );
    Ok(())
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
    let (appends, clients) = (args.appends, args.clients);
    tokio::task::spawn_blocking(move || -> Result<()> {
        println!(
            "govern bench attest: one thread, {} s per figure",
            secs.as_secs()
        );
        let genuine = match &args.genuine {
            Some(path) => std::fs::read(path).map_err(|e| format!("{}: {e}", path.display())),
            None => Ok(GENUINE.to_vec()),
        };
        match genuine {
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
            Err(e) => println!("genuine AWS document:   not measured ({e})"),
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
    .await??;
    if appends > 0 {
        compare_appends(appends, clients).await?;
    }
    Ok(())
}
