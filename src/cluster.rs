//! `govern node --storage postgres://…`: one of several nodes over one PostgreSQL database
//! (docs/deployment.md). Every node serves the log's reads from the database; the one that
//! holds the sequencer's lease (a row the database times) also sequences, and serves the
//! edge and the key service. The others answer those 503 `not-the-sequencer` with where the
//! sequencer is, and take the lease over when it expires.
//!
//! Why answer 503 rather than forward: a forward makes the standby a proxy whose clients
//! wait on a node that may be the one dying, and hides from them which node acknowledged
//! their append; a client that goes straight to the sequencer gets its receipt from the
//! node that wrote it, and learns of a failover at its next request.
//!
//! Fencing does not rest on the lease: the node that takes the lease then takes the
//! database's writer epoch ([`PgStorage::connect`]), and every batch a deposed sequencer
//! tries afterwards fails in its own transaction, answered 503, never with a receipt. The
//! lease only keeps two nodes from fighting over the epoch, and a sequencer that cannot
//! renew it in time stops by itself.

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use govern_api::preflight::Found;
use govern_api::{AppState, NodeHandle, RouterSwitch, router};
use govern_core::event::TenantId;
use govern_store::{Follower, Storage as _, SystemClock};

use govern_store_postgres::{PgLease, PgPasskeys, PgStorage};

use crate::config::{Config, ServerArgs};
use crate::error::Result;
use crate::run::{Prepared, open_for_start, prepare, serving_state, until_signal};

/// The lease's default time to live: a sequencer that stops renewing it is replaced within
/// about this long, plus a poll and the new sequencer's start.
pub const LEASE_MS: u64 = 5_000;

/// How often the followers catch up with the database.
const REFRESH: Duration = Duration::from_millis(100);

/// The exit status of a node that stops because another took the log over: a supervisor
/// restarts it, as a standby (EX_TEMPFAIL).
pub const DEPOSED_EXIT: u8 = 75;

#[derive(Debug, Args)]
pub struct NodeArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// Keep the log in this PostgreSQL database (`postgres://…` or a libpq connection
    /// string, several hosts with `target_session_attrs=read-write` behind Patroni) instead
    /// of the data dir's RocksDB. Several nodes may share it: one sequences, all serve reads.
    #[arg(long, env = "GOVERN_STORAGE", value_name = "URL")]
    pub storage: Option<String>,
    /// The URL clients reach this node at, told to them by the others while it sequences
    /// [default: http:// and the listening address].
    #[arg(long, env = "GOVERN_ADVERTISE", value_name = "URL")]
    pub advertise: Option<String>,
    /// The sequencer's lease, in milliseconds: renewed every fifth of it; another node takes
    /// over once it has expired.
    #[arg(long, default_value_t = LEASE_MS, value_parser = clap::value_parser!(u64).range(500..=600_000))]
    pub lease_ms: u64,
}

/// Whether `storage` holds anything (a log, once a sequencer opened it).
fn holds_log(storage: &PgStorage) -> std::result::Result<bool, govern_store::StorageError> {
    Ok(!storage.scan(&[], &[0xff; 16], 1)?.is_empty())
}

/// The store at `url` opened to read, if it holds a log.
async fn log_store(url: &str) -> std::result::Result<Option<PgStorage>, String> {
    let url = url.to_owned();
    blocking(move || {
        let storage = PgStorage::connect_reader(&url)?;
        Ok(holds_log(&storage)?.then_some(storage))
    })
    .await
}

/// Open the PostgreSQL store at `url` to write, refusing one that holds a log already
/// (`govern replay --storage`).
///
/// # Errors
/// When the database cannot be reached, or holds a log.
pub fn open_empty(url: &str) -> std::result::Result<PgStorage, govern_archive::Error> {
    let storage = PgStorage::connect(url)?;
    if holds_log(&storage)? {
        return Err(
            "the database holds a log already: replay into a new database (or drop its govern \
             tables)"
                .into(),
        );
    }
    Ok(storage)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::result::Result<T, govern_store::StorageError> + Send + 'static,
) -> std::result::Result<T, String> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
}

/// What this node does now.
enum Part {
    /// Serving reads; `follower` once the database holds a log.
    Standby {
        follower: Option<Arc<Follower<PgStorage>>>,
    },
    /// Sequencing.
    Sequencer {
        services: govern_api::Services<PgStorage>,
    },
}

/// `govern node --storage postgres://…`.
pub async fn node(config: &Config, args: NodeArgs) -> Result<()> {
    let server = config.server(&args.server);
    let Some(url) = args.storage else {
        return crate::run::node(server).await;
    };
    let prepared = prepare(&server, false).await?;
    let Prepared {
        listener,
        edge_config,
        witnesses,
        found,
    } = prepared;
    if let Found::Log { .. } = found {
        return Err(format!(
            "{} holds a log in RocksDB (db/): a node on PostgreSQL keeps its log in the database; \
             move it there with `govern export` and `govern replay --storage`, or give another \
             data dir",
            server.data_dir.display()
        )
        .into());
    }
    let (dir, log_config, attestor) = open_for_start(&server)?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("the listener has no address: {e}"))?;
    let advertise = args
        .advertise
        .clone()
        .unwrap_or_else(|| format!("http://{addr}"));
    let ttl = Duration::from_millis(args.lease_ms);
    let poll = ttl / 5;
    // Unique per process: a restarted node is a new holder.
    let holder = format!(
        "{advertise} pid {} {}",
        std::process::id(),
        uuid::Uuid::now_v7()
    );
    let lease = {
        let url = url.clone();
        Arc::new(blocking(move || PgLease::connect(&url)).await?)
    };
    let verifier_key = dir.verifier_key();

    let sequencer_url = Arc::new(parking_lot::RwLock::new(None::<String>));
    let waiting = {
        let sequencer_url = Arc::clone(&sequencer_url);
        move |path: &str| {
            govern_api::problem::Problem::not_sequencer(match sequencer_url.read().clone() {
                Some(u) => format!(
                    "this node follows a database that holds no log yet; {path} is served by the \
                     sequencer, now {u}"
                ),
                None => format!(
                    "this node follows a database that holds no log yet, and no node holds the \
                     sequencer's lease: retry {path} shortly"
                ),
            })
        }
    };
    let switch = RouterSwitch::new(axum::Router::new().fallback(move |uri: axum::http::Uri| {
        let answer = waiting.clone();
        async move { answer(uri.path()) }
    }));
    let node = NodeHandle::spawn_switched(&switch, listener)?;
    tracing::warn!("{}", crate::run::DEV_WARNING);
    println!(
        "govern node listening on http://{} (origin {}, data dir {}, log in PostgreSQL)",
        node.addr,
        dir.origin(),
        server.data_dir.display()
    );
    println!("verifier key: {verifier_key}");

    let mut lease_state = keep_lease(Arc::clone(&lease), holder.clone(), advertise.clone(), ttl);
    let mut part = Part::Standby { follower: None };
    let mut edge_config = Some(edge_config);
    let signal = until_signal();
    tokio::pin!(signal);
    let outcome: Result<()> = loop {
        tokio::select! {
            () = &mut signal => break Ok(()),
            _ = lease_state.changed() => {}
            () = tokio::time::sleep(poll) => {}
        }
        let now = lease_state.borrow().clone();
        match (&mut part, now) {
            (Part::Standby { .. }, Held::Ours { term, .. }) => {
                let Some(edge_config) = edge_config.take() else {
                    break Err("a node sequences once per process".into());
                };
                // As on one machine, a database restored from a copy the witnesses have
                // seen go further gets nothing appended.
                if let Some((path, file)) = &witnesses
                    && let Some(storage) = log_store(&url).await?
                {
                    let reader = blocking(move || govern_store::LogReader::open(storage)).await?;
                    govern_api::witnessing::check_not_behind(&reader, file)
                        .await
                        .map_err(|e| format!("{}: {e}", path.display()))?;
                }
                // The writer epoch: from here on a deposed sequencer writes nothing. The
                // lease is renewed meanwhile by its own task.
                let storage = {
                    let url = url.clone();
                    blocking(move || PgStorage::connect(&url)).await?
                };
                let epoch = storage.epoch();
                let passkeys = {
                    let (url, files) = (url.clone(), dir.passkeys_path());
                    let epoch = epoch.unwrap_or_default();
                    blocking(move || {
                        let store = PgPasskeys::connect(&url, epoch)?;
                        import_passkeys(&store, &files)?;
                        Ok(store)
                    })
                    .await?
                };
                let services = dir
                    .boot_on(
                        storage,
                        log_config.clone(),
                        cfg!(feature = "dev"),
                        &attestor,
                        Arc::new(SystemClock),
                    )
                    .await?;
                let state = serving_state(
                    &services,
                    &dir,
                    edge_config,
                    witnesses.as_ref(),
                    Some(Arc::new(DbPasskeys(passkeys))),
                )?;
                switch.set(router(state));
                let size = services.log.latest().size;
                tracing::info!(term, ?epoch, %size, "took the sequencer's lease; sequencing");
                println!("govern node sequencing (lease term {term}, size {size})");
                part = Part::Sequencer { services };
            }
            (Part::Standby { follower }, Held::Other { url: now } | Held::Unknown { url: now }) => {
                *sequencer_url.write() = now;
                if follower.is_none()
                    && let Some(f) = follow(
                        &url,
                        &verifier_key,
                        &switch,
                        &sequencer_url,
                        witnesses.as_ref().map(|(_, file)| file),
                    )
                    .await
                {
                    *follower = Some(f);
                }
            }
            (Part::Sequencer { services }, Held::Ours { deadline, .. }) => {
                let log = &services.log;
                // Stop before the lease can have passed to another: one poll of margin.
                if Instant::now() + poll >= deadline {
                    break Err(
                        depose(log, "the sequencer's lease could not be renewed in time").await,
                    );
                }
                if let Some(reason) = log.deposed() {
                    break Err(depose(log, &reason).await);
                }
            }
            (Part::Sequencer { services }, Held::Other { .. } | Held::Unknown { .. }) => {
                break Err(depose(&services.log, "another node holds the sequencer's lease").await);
            }
        }
    };
    if outcome.is_ok() {
        tracing::info!("shutting down");
        if let Part::Sequencer { .. } = part {
            // Let a standby take over at once rather than when the lease expires.
            let (lease, holder) = (Arc::clone(&lease), holder.clone());
            if let Err(e) = blocking(move || lease.release(&holder)).await {
                tracing::warn!(error = %e, "cannot release the sequencer's lease");
            }
        }
    }
    node.shutdown().await;
    drop(part);
    outcome
}

/// The edge's passkeys in the database, shared by the nodes over it.
#[derive(Debug)]
struct DbPasskeys(PgPasskeys);

impl govern_api::edge::PasskeyStore for DbPasskeys {
    fn load(
        &self,
        tenant: &TenantId,
        credential: &str,
    ) -> std::result::Result<Option<Vec<u8>>, String> {
        self.0
            .load(&tenant.0.to_string(), credential)
            .map_err(|e| e.to_string())
    }

    fn claim(
        &self,
        tenant: &TenantId,
        credential: &str,
        state: &[u8],
    ) -> std::result::Result<bool, String> {
        self.0
            .claim(&tenant.0.to_string(), credential, state)
            .map_err(|e| e.to_string())
    }

    fn save(
        &self,
        tenant: &TenantId,
        credential: &str,
        state: &[u8],
    ) -> std::result::Result<(), String> {
        self.0
            .save(&tenant.0.to_string(), credential, state)
            .map_err(|e| e.to_string())
    }

    fn remove(&self, tenant: &TenantId, credential: &str) -> std::result::Result<(), String> {
        self.0
            .remove(&tenant.0.to_string(), credential)
            .map_err(|e| e.to_string())
    }
}

/// Bring the data dir's passkey files (`<tenant>/<credential>.json`, a node that ran on
/// RocksDB) into the database, each only where the database has none for that credential:
/// a log restored with `govern replay --storage` keeps its users' passkeys.
fn import_passkeys(
    store: &PgPasskeys,
    dir: &std::path::Path,
) -> std::result::Result<(), govern_store::StorageError> {
    let files = govern_api::edge::PasskeyFiles::open(dir.to_path_buf())
        .map_err(govern_store::StorageError::Backend)?;
    let mut imported = 0usize;
    for (tenant, credential, state) in files.stored() {
        if store.claim(&tenant, &credential, &state)? {
            imported += 1;
        }
    }
    if imported > 0 {
        tracing::info!(
            imported,
            "brought the data dir's passkeys into the database"
        );
    }
    Ok(())
}

/// The sequencer's lease as this node last learnt it.
#[derive(Debug, Clone)]
enum Held {
    /// Not known yet, or the database does not answer (with where the sequencer was last).
    Unknown { url: Option<String> },
    /// This node holds it until `deadline` at the latest (its last renewal's start plus the
    /// lease's length: the database's expiry is later than that).
    Ours { term: i64, deadline: Instant },
    /// Another node (at `url`) or none holds it.
    Other { url: Option<String> },
}

/// Claim or renew the lease every fifth of `ttl`, on a task of its own so that a renewal
/// never waits for the node's start as sequencer; what it learns, on the channel.
fn keep_lease(
    lease: Arc<PgLease>,
    holder: String,
    advertise: String,
    ttl: Duration,
) -> tokio::sync::watch::Receiver<Held> {
    let poll = ttl / 5;
    let (tx, rx) = tokio::sync::watch::channel(Held::Unknown { url: None });
    tokio::spawn(async move {
        loop {
            let sent = Instant::now();
            let claimed = {
                let (lease, holder, advertise) =
                    (Arc::clone(&lease), holder.clone(), advertise.clone());
                tokio::time::timeout(
                    poll,
                    blocking(move || lease.claim(&holder, &advertise, ttl)),
                )
                .await
            };
            let next = match claimed {
                Ok(Ok(Some(term))) => Some(Held::Ours {
                    term,
                    deadline: sent + ttl,
                }),
                Ok(Ok(None)) => {
                    let lease = Arc::clone(&lease);
                    match tokio::time::timeout(poll, blocking(move || lease.current())).await {
                        Ok(Ok(current)) => Some(Held::Other {
                            url: current.map(|l| l.url),
                        }),
                        _ => Some(Held::Other { url: None }),
                    }
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "cannot claim or renew the sequencer's lease");
                    None
                }
                Err(_) => {
                    tracing::warn!("claiming the sequencer's lease takes too long");
                    None
                }
            };
            // Unanswered: what this node held stays until its deadline; a standby no longer
            // knows where the sequencer is.
            let next = next.or_else(|| match &*tx.borrow() {
                Held::Ours { .. } => None,
                Held::Other { url } | Held::Unknown { url } => {
                    Some(Held::Unknown { url: url.clone() })
                }
            });
            if let Some(next) = next
                && tx.send(next).is_err()
            {
                return;
            }
            tokio::time::sleep(poll.saturating_sub(sent.elapsed())).await;
        }
    });
    rx
}

/// Refuse every append from now on and say why the process stops.
async fn depose(
    log: &govern_store::LogReader<PgStorage>,
    reason: &str,
) -> Box<dyn std::error::Error + Send + Sync> {
    log.depose(reason.to_string());
    // Appends in flight are answered (503) before the server stops.
    tokio::time::sleep(Duration::from_millis(200)).await;
    Box::new(Deposed(reason.to_string()))
}

/// This node sequences no more; `main` exits with [`DEPOSED_EXIT`].
#[derive(Debug, thiserror::Error)]
#[error("deposed: {0}; this node stops (restart it to serve as a standby)")]
pub struct Deposed(String);

/// Serve the database's log as a standby, once it holds one, caught up every [`REFRESH`].
async fn follow(
    url: &str,
    verifier_key: &str,
    switch: &RouterSwitch,
    sequencer_url: &Arc<parking_lot::RwLock<Option<String>>>,
    witnesses: Option<&govern_core::witness::PolicyFile>,
) -> Option<Arc<Follower<PgStorage>>> {
    let sequencer = Arc::clone(sequencer_url);
    let opened = match log_store(url).await {
        Ok(Some(storage)) => blocking(move || Follower::open(storage, sequencer)).await,
        Ok(None) => return None,
        Err(e) => Err(e),
    };
    let follower = match opened {
        Ok(f) => Arc::new(f),
        Err(e) => {
            tracing::warn!(error = %e, "cannot follow the database's log");
            return None;
        }
    };
    let f = Arc::clone(&follower);
    let mut state =
        AppState::over(Arc::clone(&follower) as _, verifier_key).as_standby(move || f.sequencer());
    // Under a witness policy, `/checkpoint` serves what the sequencer had cosigned, as the
    // sequencer does.
    if let Some(file) = witnesses {
        match govern_api::witnessing::Witnessing::observe(follower.reader().clone(), file, REFRESH)
        {
            Ok(w) => state = state.with_witnessing(w),
            Err(e) => {
                tracing::warn!(error = %e, "cannot follow the witnesses' cosignatures");
                return None;
            }
        }
    }
    switch.set(router(state));
    let weak = Arc::downgrade(&follower);
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(REFRESH).await;
            let Some(f) = weak.upgrade() else { return };
            if let Err(e) = blocking(move || f.refresh()).await {
                tracing::warn!(error = %e, "cannot catch up with the database's log");
            }
        }
    });
    Some(follower)
}
