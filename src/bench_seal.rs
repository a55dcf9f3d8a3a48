//! `govern bench seal`: sealed payloads (docs/design.md §7) — seals and opens per second of a
//! payload (1 KiB by default) on one thread and on every core; the latency of a key release
//! (signed request, identity and scope checks, HKDF of every scope key, HPKE to the
//! requester, and its `keys.audit` appended durably); and durable appends per second with
//! sealing on beside sealing off, in the same run on the same node.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use clap::Args;
use govern_api::{Attestor, DataDir};
use govern_core::event::{Event, Kind, RequestId, TenantId, Timestamp};
use govern_core::seal::{open, seal};
use govern_store::LogConfig;
use rand_core::RngCore as _;
use serde_json::{Map, Value};

use crate::error::Result;

#[derive(Debug, Args)]
pub struct SealArgs {
    /// Seconds each seal and open figure runs.
    #[arg(long, default_value_t = 3)]
    pub seconds: u64,
    /// Bytes of each payload.
    #[arg(long, default_value_t = 1024)]
    pub bytes: usize,
    /// Key releases timed (one after another).
    #[arg(long, default_value_t = 300)]
    pub releases: usize,
    /// Appends per mode in the append comparison (0 skips it).
    #[arg(long, default_value_t = 30_000)]
    pub appends: usize,
    /// Concurrent appenders in the append comparison.
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
}

fn sample_event(tenant: TenantId) -> Result<Event> {
    let mut producer_key = [0u8; 32];
    rand_core::OsRng.fill_bytes(&mut producer_key);
    let key = ed25519_dalek::SigningKey::from_bytes(&producer_key);
    Ok(Event::new(
        Kind::new("demo.hello")?,
        tenant,
        RequestId::new_v7(),
        govern_core::event::Producer::new(
            govern_core::event::Role::new("edge")?,
            &key.verifying_key(),
        ),
        Timestamp::now(),
        Map::new(),
    ))
}

/// Operations per second of `f` on `threads` threads for `secs`.
fn rate(threads: usize, secs: Duration, f: impl Fn() -> Result<()> + Sync) -> Result<f64> {
    let done = AtomicUsize::new(0);
    let start = Instant::now();
    std::thread::scope(|s| -> Result<()> {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| -> std::result::Result<(), String> {
                    while start.elapsed() < secs {
                        f().map_err(|e| e.to_string())?;
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(())
                })
            })
            .collect();
        for h in handles {
            h.join().map_err(|_| "a bench thread panicked")??;
        }
        Ok(())
    })?;
    Ok(done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64())
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

/// `govern bench seal`.
pub async fn seal_bench(args: SealArgs) -> Result<()> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let secs = Duration::from_secs(args.seconds.max(1));
    let mut payload = vec![0u8; args.bytes];
    rand_core::OsRng.fill_bytes(&mut payload);
    let mut key = [0u8; 32];
    rand_core::OsRng.fill_bytes(&mut key);
    println!(
        "govern bench seal ({threads} cores), {} B payloads:",
        args.bytes
    );
    let event = sample_event(TenantId(uuid::Uuid::now_v7()))?;
    let mut sealed = event.clone();
    seal(
        &mut sealed,
        &key,
        "transfers",
        1,
        &payload,
        &govern_store::OsEntropy,
    )?;
    if open(&sealed, &key)? != payload {
        return Err("a sealed payload did not open to itself".into());
    }
    let (payload, event, sealed) = (&payload, &event, &sealed);
    let seal_once = || -> Result<()> {
        let mut e = event.clone();
        seal(
            &mut e,
            &key,
            "transfers",
            1,
            payload,
            &govern_store::OsEntropy,
        )?;
        Ok(())
    };
    let open_once = || -> Result<()> {
        open(sealed, &key)?;
        Ok(())
    };
    println!("  (each: HKDF data key, AES-256-GCM, JCS of the envelope as AAD)");
    for (name, f) in [
        ("seal", &seal_once as &(dyn Fn() -> Result<()> + Sync)),
        ("open", &open_once),
    ] {
        let one = rate(1, secs, f)?;
        let all = rate(threads, secs, f)?;
        println!("  {name}: {one:>9.0}/s on 1 thread, {all:>9.0}/s on {threads}");
    }

    // A node in this process, on a fresh data dir: a tenant, then the edge's releases.
    let tmp = tempfile::tempdir()?;
    let exe = std::env::current_exe()?;
    govern_api::devpin::pin_dev_manifest(tmp.path(), None, &exe)?;
    let dir = DataDir::open(tmp.path(), None)?;
    let services = dir
        .boot(
            LogConfig::new(dir.origin()),
            true,
            &Attestor::Simulated { executable: exe },
        )
        .await?;
    let tenant = TenantId(uuid::Uuid::now_v7());
    let mut body = Map::new();
    for (k, v) in [
        ("name", "bench"),
        ("admin", "bench"),
        ("rp_id", "localhost"),
        ("origin", "http://localhost:7600"),
    ] {
        body.insert(k.into(), v.into());
    }
    body.insert("invite".into(), hex::encode([7u8; 32]).into());
    let created = services.edge.identity.sign(
        Kind::new("tenant.created")?,
        tenant,
        RequestId::new_v7(),
        Vec::new(),
        body,
        govern_core::event::Timestamp::now(),
    )?;
    services.log.append(created).await?;
    let scopes = ["approvals", "policies", "transfers", "users", "wallets"];
    let mut times = Vec::with_capacity(args.releases);
    let mut released = None;
    for _ in 0..args.releases.max(1) {
        let start = Instant::now();
        let req = govern_api::keys::request_release(
            &services.edge,
            &tenant,
            &scopes,
            govern_core::event::Timestamp::now(),
        )?;
        let release = services.keys.release(&req).await?;
        let keys = release.open(&req, services.edge.identity.keys().x25519())?;
        times.push(start.elapsed());
        released = Some(keys);
    }
    times.sort_unstable();
    println!(
        "key release, {} one after another (sign, check identity and scopes, derive {} scope keys, HPKE seal and open, keys.audit appended durably): p50 {:.2} ms, p99 {:.2} ms",
        times.len(),
        scopes.len(),
        pct(&times, 0.5),
        pct(&times, 0.99)
    );
    let wallets = *released
        .as_ref()
        .and_then(|k| k.get("wallets", 1))
        .ok_or("no wallets key released")?;
    if args.appends == 0 {
        return Ok(());
    }

    // Appends: the same events, sealed or with the payload in clear (base64), each made,
    // sealed or not, signed and appended by one of `clients` concurrent appenders.
    let key = services.edge.identity.keys().signing_key().clone();
    let producer = services.edge.identity.keys().producer();
    let attestation = services
        .edge
        .identity
        .current()
        .ok_or("edge not attested")?;
    let clear = base64::engine::general_purpose::STANDARD.encode(payload);
    println!(
        "durable appends in process, RocksDB, {} events per mode, {} concurrent appenders (each event made, sealed or not, signed, appended):",
        args.appends, args.clients
    );
    let log = &services.log;
    let run = |sealing: bool, count: usize| {
        let (log, key, producer, clear, payload) = (
            Arc::clone(log),
            key.clone(),
            producer.clone(),
            clear.clone(),
            payload.clone(),
        );
        async move {
            let next = Arc::new(AtomicUsize::new(0));
            let start = Instant::now();
            let tasks: Vec<_> = (0..args.clients.max(1))
                .map(|_| {
                    let (log, key, producer, clear, payload, next) = (
                        Arc::clone(&log),
                        key.clone(),
                        producer.clone(),
                        clear.clone(),
                        payload.clone(),
                        Arc::clone(&next),
                    );
                    tokio::spawn(async move {
                        while next.fetch_add(1, Ordering::Relaxed) < count {
                            let mut body = Map::new();
                            if !sealing {
                                body.insert("payload".into(), Value::from(clear.as_str()));
                            }
                            let mut e = Event::new(
                                Kind::new("demo.hello").map_err(|e| e.to_string())?,
                                tenant,
                                RequestId::new_v7(),
                                producer.clone(),
                                Timestamp::now(),
                                body,
                            );
                            e.attestation = Some(attestation);
                            if sealing {
                                seal(
                                    &mut e,
                                    &wallets,
                                    "wallets",
                                    1,
                                    &payload,
                                    &govern_store::OsEntropy,
                                )
                                .map_err(|e| e.to_string())?;
                            }
                            let e = e.sign(&key).map_err(|e| e.to_string())?;
                            log.append(e).await.map_err(|e| e.to_string())?;
                        }
                        Ok::<(), String>(())
                    })
                })
                .collect();
            for t in tasks {
                t.await.map_err(|e| e.to_string())??;
            }
            Ok::<f64, String>(count as f64 / start.elapsed().as_secs_f64())
        }
    };
    // Alternate, so drift in the machine falls on both alike.
    const ROUNDS: usize = 3;
    let chunk = args.appends.div_ceil(ROUNDS).max(1);
    let (mut on, mut off) = (0.0, 0.0);
    for round in 1..=ROUNDS {
        let a = run(false, chunk).await?;
        let b = run(true, chunk).await?;
        println!("  round {round}: sealing off {a:.0}/s, sealing on {b:.0}/s");
        off += a;
        on += b;
    }
    let (on, off) = (on / ROUNDS as f64, off / ROUNDS as f64);
    println!(
        "  mean: sealing off {off:.0}/s, sealing on {on:.0}/s ({:+.1}%)",
        (on / off - 1.0) * 100.0
    );
    Ok(())
}
