//! The node's data directory:
//!
//! ```text
//! <data-dir>/log.key          the log's checkpoint key (C2SP private key string), mode 0600
//! <data-dir>/edge.key         dev mode: the edge role's producer key, mode 0600
//! <data-dir>/producers.allow  dev mode: producers that may append (`<role> <base64 key>`)
//! <data-dir>/db/              RocksDB: entries, tree nodes, every checkpoint
//! ```
//!
//! The keys are plain files: dev mode has no enclave to hold them (see docs/threat-model.md).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ed25519_dalek::SigningKey;
use govern_core::event::{PublicKey, Role};
use govern_core::note::NoteSigner;
use govern_store::{
    AllowListError, Log, LogConfig, ProducerAllowList, RocksStorage, StorageError, SystemClock,
};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::routes::{AppState, router};

/// The checkpoint origin of a new log when none is configured.
pub const DEFAULT_ORIGIN: &str = "govern.localhost/log";

/// Why the data directory could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataDirError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// A key file does not hold a key.
    #[error("{path}: {reason}")]
    BadKey {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The configured origin differs from the one the log was created with.
    #[error("this log's origin is {existing:?}; it cannot be served as {configured:?}")]
    OriginMismatch {
        /// In the key file.
        existing: String,
        /// Asked for.
        configured: String,
    },
    /// The allow-list is malformed.
    #[error(transparent)]
    AllowList(#[from] AllowListError),
    /// RocksDB failed (for example: another node has this data dir open).
    #[error("log store: {0}")]
    Storage(#[from] StorageError),
}

/// An opened data directory.
#[derive(Debug)]
pub struct DataDir {
    root: PathBuf,
    log_key: NoteSigner,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DataDirError + '_ {
    move |source| DataDirError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Write a secret file readable by its owner only, atomically.
fn write_secret(path: &Path, text: &str) -> Result<(), DataDirError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io(&tmp))?;
    f.write_all(text.as_bytes()).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// Read a C2SP private key file, or make one named `name`.
fn load_or_create_key(path: &Path, name: &str) -> Result<NoteSigner, DataDirError> {
    match std::fs::read_to_string(path) {
        Ok(text) => NoteSigner::from_private_key(text.trim()).map_err(|e| DataDirError::BadKey {
            path: path.to_path_buf(),
            reason: e.to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = SigningKey::generate(&mut rand_core::OsRng);
            let signer = NoteSigner::new(name, key).map_err(|e| DataDirError::BadKey {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
            write_secret(path, &format!("{}\n", signer.to_private_key()))?;
            Ok(signer)
        }
        Err(e) => Err(io(path)(e)),
    }
}

impl DataDir {
    /// Open `root`, creating it, the log key (named `origin`, or [`DEFAULT_ORIGIN`]) and the
    /// dev edge key on first use. An existing log keeps its origin; asking for another is an
    /// error.
    ///
    /// # Errors
    /// [`DataDirError`] when a file cannot be read, written or parsed.
    pub fn open(root: &Path, origin: Option<&str>) -> Result<Self, DataDirError> {
        std::fs::create_dir_all(root).map_err(io(root))?;
        let key_path = root.join("log.key");
        let log_key = load_or_create_key(&key_path, origin.unwrap_or(DEFAULT_ORIGIN))?;
        if let Some(o) = origin
            && o != log_key.name()
        {
            return Err(DataDirError::OriginMismatch {
                existing: log_key.name().into(),
                configured: o.into(),
            });
        }
        let dir = Self {
            root: root.to_path_buf(),
            log_key,
        };
        let edge = dir.edge_key()?;
        let role = Role::new("edge").map_err(|e| DataDirError::BadKey {
            path: root.into(),
            reason: e.to_string(),
        })?;
        ProducerAllowList::add_to_file(
            &dir.allow_list_path(),
            &role,
            &PublicKey::from(&edge.verifying_key()),
        )?;
        Ok(dir)
    }

    /// The directory.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// The log's checkpoint origin (its key's name).
    #[must_use]
    pub fn origin(&self) -> &str {
        self.log_key.name()
    }

    /// The C2SP verifier key string of the log's checkpoint key.
    #[must_use]
    pub fn verifier_key(&self) -> String {
        self.log_key.verifier_key()
    }

    /// The RocksDB directory.
    #[must_use]
    pub fn db_path(&self) -> PathBuf {
        self.root.join("db")
    }

    /// The dev allow-list file.
    #[must_use]
    pub fn allow_list_path(&self) -> PathBuf {
        self.root.join("producers.allow")
    }

    /// The dev edge producer key (created on first use).
    ///
    /// # Errors
    /// [`DataDirError`] when the key file cannot be read or written.
    pub fn edge_key(&self) -> Result<SigningKey, DataDirError> {
        let signer = load_or_create_key(&self.root.join("edge.key"), "edge")?;
        Ok(signer.signing_key().clone())
    }

    /// Open the log store and start the sequencer.
    ///
    /// # Errors
    /// [`DataDirError`] when the allow-list or the store cannot be opened.
    pub fn open_log(&self, config: LogConfig) -> Result<Log<RocksStorage>, DataDirError> {
        let allow = ProducerAllowList::load(&self.allow_list_path())?;
        let storage = RocksStorage::open(&self.db_path())?;
        Ok(Log::open(
            storage,
            self.log_key.clone(),
            config,
            Arc::new(allow),
            Arc::new(SystemClock),
        )?)
    }

    /// The log's store opened read-only, beside a node that may be running on it.
    ///
    /// # Errors
    /// [`DataDirError::Storage`] when RocksDB cannot open it.
    pub fn open_read_only(&self) -> Result<RocksStorage, DataDirError> {
        Ok(RocksStorage::open_read_only(&self.db_path())?)
    }
}

/// A node serving in this process (for `govern up`, benchmarks and tests).
#[derive(Debug)]
pub struct NodeHandle {
    /// Where it listens.
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl NodeHandle {
    /// Serve `state` on `listener` until [`NodeHandle::shutdown`].
    ///
    /// # Errors
    /// When the listener has no local address.
    pub fn spawn(state: AppState, listener: TcpListener) -> std::io::Result<Self> {
        let addr = listener.local_addr()?;
        let (tx, rx) = oneshot::channel::<()>();
        let app = router(state);
        // Receipts are small writes answered at once: without TCP_NODELAY, Nagle's algorithm
        // meets the client's delayed ACK and a response can wait 40 ms.
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "cannot set TCP_NODELAY");
            }
        });
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await
        });
        Ok(Self {
            addr,
            shutdown: Some(tx),
            task: Some(task),
        })
    }

    /// Stop accepting, finish requests in flight, and return.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }

    /// Wait until the server stops by itself (an accept error).
    ///
    /// # Errors
    /// The server's error.
    pub async fn wait(mut self) -> std::io::Result<()> {
        match self.task.take() {
            Some(t) => t.await.map_err(std::io::Error::other)?,
            None => Ok(()),
        }
    }
}
