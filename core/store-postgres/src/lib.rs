//! # govern-store-postgres
//!
//! The log's storage trait ([`govern_store::Storage`]) on PostgreSQL, for a log past one
//! machine (docs/design.md §10). A batch is one transaction; `write(batch, sync = true)`
//! returns only once PostgreSQL committed it with `synchronous_commit = on` for that
//! transaction: on a server with a synchronous standby configured (Patroni's
//! `synchronous_mode`), that is once the standby has flushed it too, so an acknowledged
//! append survives the loss of the primary. An unsynced write commits with
//! `synchronous_commit = off`, as the trait allows (it may be lost with the batches after
//! it, never a synced one).
//!
//! The schema is versioned (`migrations/`, applied in order under an advisory lock, recorded
//! in `govern_schema`); a database whose schema is newer than this build knows is refused.
//!
//! **One writer.** [`PgStorage::connect`] opens the store to write: it takes the next writer
//! epoch, and each batch it writes checks, in its own transaction, that the epoch is still
//! its own, so a writer another one took over from writes nothing from then on (its writes
//! fail as [`StorageError::Backend`] naming both epochs, and the log answers its clients
//! 503). [`PgStorage::connect_reader`] opens it to read only.
//!
//! The `postgres` client blocks on a runtime of its own, which must not run inside the
//! node's tokio runtime, so each connection lives on a thread of its own and the trait's
//! calls wait on it, as they wait on RocksDB's I/O.

use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use govern_store::{Batch, Pairs, Storage, StorageError};
use postgres::{Client, NoTls};

/// The migrations, in order: (version, SQL).
const MIGRATIONS: &[(i32, &str)] = &[
    (1, include_str!("../migrations/0001_kv.sql")),
    (2, include_str!("../migrations/0002_writer.sql")),
    (3, include_str!("../migrations/0003_lease.sql")),
    (4, include_str!("../migrations/0004_passkeys.sql")),
];

/// The advisory lock migrations run under (any fixed number: "govern" in ASCII).
const MIGRATION_LOCK: i64 = 0x676f_7665_726e;

/// Connections per store.
const CONNECTIONS: usize = 4;

/// Work for one of a store's connections; it sends its own reply ([`PgStorage::run`]).
type Job = Box<dyn FnOnce(&mut Client) + Send>;

/// The log's store in a PostgreSQL database.
pub struct PgStorage {
    /// The writer epoch this store took (`None`: opened to read only).
    epoch: Option<i64>,
    jobs: Option<SyncSender<Job>>,
    threads: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for PgStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStorage")
            .field("connections", &self.threads.len())
            .finish()
    }
}

/// How long the server lets a session sit idle inside a transaction before it ends it. A
/// batch's transaction takes milliseconds; a writer paused or cut off in the middle of one
/// would otherwise hold the writer row's lock, and the node taking over would wait for it.
const IDLE_IN_TRANSACTION: &str = "2s";

/// A connection with this store's session settings.
fn connect_client(url: &str) -> Result<Client, postgres::Error> {
    let mut client = Client::connect(url, NoTls)?;
    client.batch_execute(&format!(
        "SET idle_in_transaction_session_timeout = '{IDLE_IN_TRANSACTION}'; \
         SET client_min_messages = warning"
    ))?;
    Ok(client)
}

fn backend(what: &str, e: &postgres::Error) -> StorageError {
    StorageError::Backend(format!("postgres: {what}: {e}"))
}

/// Bring the database's schema to this build's, or refuse a newer one.
fn migrate(client: &mut Client) -> Result<i32, StorageError> {
    let mut tx = client.transaction().map_err(|e| backend("begin", &e))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .map_err(|e| backend("migration lock", &e))?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS govern_schema (version integer PRIMARY KEY, \
         applied timestamptz NOT NULL DEFAULT now())",
    )
    .map_err(|e| backend("schema table", &e))?;
    let current: i32 = tx
        .query_one("SELECT coalesce(max(version), 0) FROM govern_schema", &[])
        .map_err(|e| backend("schema version", &e))?
        .get(0);
    let known = MIGRATIONS.last().map_or(0, |m| m.0);
    if current > known {
        return Err(StorageError::Backend(format!(
            "the database's govern schema is version {current}, newer than this build's {known}: \
             run a newer govern"
        )));
    }
    for (version, sql) in MIGRATIONS.iter().filter(|m| m.0 > current) {
        tx.batch_execute(sql)
            .map_err(|e| backend(&format!("migration {version}"), &e))?;
        tx.execute(
            "INSERT INTO govern_schema (version) VALUES ($1)",
            &[version],
        )
        .map_err(|e| backend("schema version", &e))?;
    }
    tx.commit().map_err(|e| backend("commit migrations", &e))?;
    Ok(known)
}

fn serve(url: &str, mut client: Client, jobs: &Mutex<Receiver<Job>>) {
    loop {
        let job = match jobs.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else { return };
        // A connection the server closed (a restart, or a failover to a standby that the URL
        // also names) is opened again before the job; if that fails, the job fails on the
        // closed one and the next job tries again.
        if client.is_closed() {
            match connect_client(url) {
                Ok(c) => client = c,
                Err(e) => tracing::warn!(error = %e, "postgres: cannot reconnect"),
            }
        }
        job(&mut client);
    }
}

/// One batch, one transaction: all of it or none, and only while `epoch` is still the
/// writer's. A key put twice keeps its last value.
fn write(
    client: &mut Client,
    batch: &Batch,
    sync: bool,
    epoch: Option<i64>,
) -> Result<(), StorageError> {
    let Some(epoch) = epoch else {
        return Err(StorageError::Backend(
            "this PostgreSQL store was opened to read only".into(),
        ));
    };
    let mut last: std::collections::BTreeMap<&[u8], &[u8]> = std::collections::BTreeMap::new();
    for (k, v) in batch.puts() {
        last.insert(k, v);
    }
    let keys: Vec<&[u8]> = last.keys().copied().collect();
    let values: Vec<&[u8]> = last.values().copied().collect();
    fenced(client, epoch, sync, "the batch", |tx| {
        if !keys.is_empty() {
            tx.execute(
                "INSERT INTO govern_kv (key, value) SELECT * FROM unnest($1::bytea[], $2::bytea[]) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                &[&keys, &values],
            )?;
        }
        Ok(())
    })
}

impl PgStorage {
    /// Connect to `url` (a libpq connection string or `postgres://` URL), bring the schema
    /// to this build's, and open the connections.
    ///
    /// # Errors
    /// [`StorageError::Backend`] when the database cannot be reached or migrated.
    pub fn connect(url: &str) -> Result<Self, StorageError> {
        Self::open(url, true)
    }

    /// Connect to read only: every write is refused.
    ///
    /// # Errors
    /// As [`PgStorage::connect`].
    pub fn connect_reader(url: &str) -> Result<Self, StorageError> {
        Self::open(url, false)
    }

    /// The writer epoch this store holds, if it was opened to write.
    #[must_use]
    pub fn epoch(&self) -> Option<i64> {
        self.epoch
    }

    fn open(url: &str, writer: bool) -> Result<Self, StorageError> {
        Self::open_with(url, writer, CONNECTIONS)
    }

    fn open_with(url: &str, writer: bool, connections: usize) -> Result<Self, StorageError> {
        // The client's own runtime must not start on a thread of the caller's runtime (the
        // node calls this from async code): connect and migrate on a thread of their own.
        let connect_url = url.to_owned();
        let clients = std::thread::Builder::new()
            .name("govern-pg-connect".into())
            .spawn(
                move || -> Result<(Vec<Client>, Option<i64>), StorageError> {
                    let url = connect_url;
                    let mut first = connect_client(&url).map_err(|e| backend("connect", &e))?;
                    migrate(&mut first)?;
                    // Taking the next epoch waits for the batches of the writer before to commit.
                    let epoch = if writer {
                        let e: i64 = first
                            .query_one(
                                "UPDATE govern_writer SET epoch = epoch + 1 RETURNING epoch",
                                &[],
                            )
                            .map_err(|e| backend("take the writer epoch", &e))?
                            .get(0);
                        Some(e)
                    } else {
                        None
                    };
                    let mut clients = vec![first];
                    for _ in 1..connections {
                        clients.push(connect_client(&url).map_err(|e| backend("connect", &e))?);
                    }
                    Ok((clients, epoch))
                },
            )
            .map_err(|e| StorageError::Backend(format!("cannot start a thread: {e}")))?
            .join()
            .map_err(|_| StorageError::Backend("the connecting thread panicked".into()))??;
        let (clients, epoch) = clients;
        let (tx, rx) = sync_channel::<Job>(connections * 4);
        let rx = Arc::new(Mutex::new(rx));
        let threads = clients
            .into_iter()
            .enumerate()
            .map(|(i, client)| {
                let rx = Arc::clone(&rx);
                let url = url.to_owned();
                std::thread::Builder::new()
                    .name(format!("govern-pg-{i}"))
                    .spawn(move || serve(&url, client, &rx))
                    .map_err(|e| StorageError::Backend(format!("cannot start a thread: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            epoch,
            jobs: Some(tx),
            threads,
        })
    }

    /// Run `f` on one of the store's connections and wait for its answer.
    fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Client) -> Result<T, StorageError> + Send + 'static,
    ) -> Result<T, StorageError> {
        let (tx, rx) = sync_channel(1);
        self.jobs
            .as_ref()
            .ok_or(StorageError::Gone)?
            .send(Box::new(move |client: &mut Client| {
                let _ = tx.send(f(client));
            }))
            .map_err(|_| StorageError::Gone)?;
        rx.recv().map_err(|_| StorageError::Gone)?
    }
}

impl Drop for PgStorage {
    fn drop(&mut self) {
        self.jobs.take();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Storage for PgStorage {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        let key = key.to_vec();
        self.run(move |client| {
            client
                .query_opt("SELECT value FROM govern_kv WHERE key = $1", &[&key])
                .map(|row| row.map(|r| r.get::<_, Vec<u8>>(0)))
                .map_err(|e| backend("get", &e))
        })
    }

    fn multi_get(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>, StorageError> {
        let keys = keys.to_vec();
        self.run(move |client| {
            client
                .query(
                    "SELECT k.i, v.value FROM unnest($1::bytea[]) WITH ORDINALITY AS k(key, i) \
                     LEFT JOIN govern_kv v ON v.key = k.key ORDER BY k.i",
                    &[&keys],
                )
                .map(|rows| {
                    rows.iter()
                        .map(|r| r.get::<_, Option<Vec<u8>>>(1))
                        .collect()
                })
                .map_err(|e| backend("multi-get", &e))
        })
    }

    fn write(&self, batch: Batch, sync: bool) -> Result<(), StorageError> {
        let epoch = self.epoch;
        self.run(move |client| write(client, &batch, sync, epoch))
    }

    fn scan(&self, start: &[u8], end: &[u8], limit: usize) -> Result<Pairs, StorageError> {
        let (start, end) = (start.to_vec(), end.to_vec());
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.run(move |client| {
            client
                .query(
                    "SELECT key, value FROM govern_kv WHERE key >= $1 AND key < $2 \
                     ORDER BY key LIMIT $3",
                    &[&start, &end, &limit],
                )
                .map(|rows| rows.iter().map(|r| (r.get(0), r.get(1))).collect())
                .map_err(|e| backend("scan", &e))
        })
    }
}

/// Who holds the sequencer's lease, as they advertised themselves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The holder's name (unique per node process).
    pub holder: String,
    /// Where clients reach the holder.
    pub url: String,
    /// Bumped at every change of holder.
    pub term: i64,
}

/// The sequencer's lease (schema version 3), on a connection of its own so that a renewal
/// never waits behind the log's reads and writes. The database's clock times it: the
/// nodes need not agree on the time.
pub struct PgLease {
    store: PgStorage,
}

impl std::fmt::Debug for PgLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgLease").finish_non_exhaustive()
    }
}

impl PgLease {
    /// Connect to `url` (migrating the schema as [`PgStorage::connect`] does).
    ///
    /// # Errors
    /// [`StorageError::Backend`] when the database cannot be reached or migrated.
    pub fn connect(url: &str) -> Result<Self, StorageError> {
        Ok(Self {
            store: PgStorage::open_with(url, false, 1)?,
        })
    }

    /// Take the lease for `holder` (reached at `url`) if it is free or expired, or renew it
    /// if `holder` has it: held for `ttl` from now by the database's clock. Returns the term
    /// when `holder` holds it now, `None` when another does.
    ///
    /// # Errors
    /// [`StorageError::Backend`] when the database fails; whether the lease is held is then
    /// unknown.
    pub fn claim(
        &self,
        holder: &str,
        url: &str,
        ttl: std::time::Duration,
    ) -> Result<Option<i64>, StorageError> {
        let (holder, url) = (holder.to_owned(), url.to_owned());
        let ttl_s = ttl.as_secs_f64();
        self.store.run(move |client| {
            client
                .query_opt(
                    "UPDATE govern_lease SET \
                       term = CASE WHEN holder = $1 THEN term ELSE term + 1 END, \
                       holder = $1, url = $2, \
                       expires = clock_timestamp() + make_interval(secs => $3) \
                     WHERE holder = $1 OR expires <= clock_timestamp() \
                     RETURNING term",
                    &[&holder, &url, &ttl_s],
                )
                .map(|row| row.map(|r| r.get::<_, i64>(0)))
                .map_err(|e| backend("claim the lease", &e))
        })
    }

    /// The lease's holder, if it has not expired.
    ///
    /// # Errors
    /// [`StorageError::Backend`] when the database fails.
    pub fn current(&self) -> Result<Option<Lease>, StorageError> {
        self.store.run(|client| {
            client
                .query_opt(
                    "SELECT holder, url, term FROM govern_lease WHERE expires > clock_timestamp()",
                    &[],
                )
                .map(|row| {
                    row.map(|r| Lease {
                        holder: r.get(0),
                        url: r.get(1),
                        term: r.get(2),
                    })
                })
                .map_err(|e| backend("read the lease", &e))
        })
    }

    /// Give the lease up now if `holder` has it (a node stopping cleanly), so another takes
    /// over without waiting for it to expire.
    ///
    /// # Errors
    /// [`StorageError::Backend`] when the database fails.
    pub fn release(&self, holder: &str) -> Result<(), StorageError> {
        let holder = holder.to_owned();
        self.store.run(move |client| {
            client
                .execute(
                    "UPDATE govern_lease SET expires = '-infinity' WHERE holder = $1",
                    &[&holder],
                )
                .map(|_| ())
                .map_err(|e| backend("release the lease", &e))
        })
    }
}

/// The edge's passkey state in the database (schema version 4), written only while
/// `epoch` is the writer's: a deposed node's edge changes no passkey (a counter it wrote
/// late could roll a newer one back).
pub struct PgPasskeys {
    store: PgStorage,
    epoch: i64,
}

impl std::fmt::Debug for PgPasskeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgPasskeys")
            .field("epoch", &self.epoch)
            .finish_non_exhaustive()
    }
}

/// Run `f` (writing `what`) in one transaction, committed with `synchronous_commit` on
/// (`sync`) or off, only while `epoch` is still the writer's: the epoch is read `FOR SHARE`
/// first, so a writer taking over waits for this transaction, and this one fails whole once
/// another took over.
fn fenced<T>(
    client: &mut Client,
    epoch: i64,
    sync: bool,
    what: &str,
    f: impl FnOnce(&mut postgres::Transaction<'_>) -> Result<T, postgres::Error>,
) -> Result<T, StorageError> {
    let mut tx = client.transaction().map_err(|e| backend("begin", &e))?;
    tx.batch_execute(if sync {
        "SET LOCAL synchronous_commit = on"
    } else {
        "SET LOCAL synchronous_commit = off"
    })
    .map_err(|e| backend("synchronous_commit", &e))?;
    let current: i64 = tx
        .query_one("SELECT epoch FROM govern_writer FOR SHARE", &[])
        .map_err(|e| backend("writer epoch", &e))?
        .get(0);
    if current != epoch {
        return Err(StorageError::Deposed(format!(
            "another writer took this log over (epoch {current}; this one is {epoch}); \
             nothing of {what} was written"
        )));
    }
    let out = f(&mut tx).map_err(|e| backend(&format!("write {what}"), &e))?;
    tx.commit().map_err(|e| backend("commit", &e))?;
    Ok(out)
}

impl PgPasskeys {
    /// Connect to `url` as the writer of `epoch` ([`PgStorage::epoch`] of the store the
    /// node sequences on).
    ///
    /// # Errors
    /// [`StorageError::Backend`] when the database cannot be reached or migrated.
    pub fn connect(url: &str, epoch: i64) -> Result<Self, StorageError> {
        Ok(Self {
            store: PgStorage::open_with(url, false, 2)?,
            epoch,
        })
    }

    /// The state of `credential` in `tenant`.
    ///
    /// # Errors
    /// [`StorageError::Backend`].
    pub fn load(&self, tenant: &str, credential: &str) -> Result<Option<Vec<u8>>, StorageError> {
        let (tenant, credential) = (tenant.to_owned(), credential.to_owned());
        self.store.run(move |client| {
            client
                .query_opt(
                    "SELECT state FROM govern_passkeys WHERE tenant = $1 AND credential = $2",
                    &[&tenant, &credential],
                )
                .map(|row| row.map(|r| r.get(0)))
                .map_err(|e| backend("load a passkey", &e))
        })
    }

    /// Store `state` unless the credential has one: whether it was stored.
    ///
    /// # Errors
    /// [`StorageError::Deposed`] once another node writes; [`StorageError::Backend`].
    pub fn claim(
        &self,
        tenant: &str,
        credential: &str,
        state: &[u8],
    ) -> Result<bool, StorageError> {
        self.put(tenant, credential, state, "ON CONFLICT DO NOTHING")
            .map(|rows| rows == 1)
    }

    /// Store `state` in place of the credential's.
    ///
    /// # Errors
    /// As [`PgPasskeys::claim`].
    pub fn save(&self, tenant: &str, credential: &str, state: &[u8]) -> Result<(), StorageError> {
        self.put(
            tenant,
            credential,
            state,
            "ON CONFLICT (tenant, credential) DO UPDATE SET state = excluded.state",
        )
        .map(|_| ())
    }

    /// Insert `state` under the writer epoch, `on_conflict` saying what a stored one does;
    /// the rows written.
    fn put(
        &self,
        tenant: &str,
        credential: &str,
        state: &[u8],
        on_conflict: &'static str,
    ) -> Result<u64, StorageError> {
        let (tenant, credential, state, epoch) = (
            tenant.to_owned(),
            credential.to_owned(),
            state.to_vec(),
            self.epoch,
        );
        self.store.run(move |client| {
            fenced(client, epoch, true, "the passkey", |tx| {
                tx.execute(
                    &format!(
                        "INSERT INTO govern_passkeys (tenant, credential, state) VALUES ($1, $2, $3) \
                         {on_conflict}"
                    ),
                    &[&tenant, &credential, &state],
                )
            })
        })
    }

    /// Remove the credential's state.
    ///
    /// # Errors
    /// As [`PgPasskeys::claim`].
    pub fn remove(&self, tenant: &str, credential: &str) -> Result<(), StorageError> {
        let (tenant, credential, epoch) = (tenant.to_owned(), credential.to_owned(), self.epoch);
        self.store.run(move |client| {
            fenced(client, epoch, true, "the passkey", |tx| {
                tx.execute(
                    "DELETE FROM govern_passkeys WHERE tenant = $1 AND credential = $2",
                    &[&tenant, &credential],
                )
                .map(|_| ())
            })
        })
    }
}
