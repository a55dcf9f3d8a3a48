//! The node's data directory:
//!
//! ```text
//! <data-dir>/log.key          the log's checkpoint key (C2SP private key string), mode 0600
//! <data-dir>/edge.key         dev mode: the edge role's Ed25519 key, mode 0600
//! <data-dir>/db/              RocksDB: entries, tree nodes, every checkpoint
//! <data-dir>/manifest.json    the signed manifest to publish (`govern manifest pin`)
//! <data-dir>/manifest-signers.toml  the pinned manifest signers: `threshold = N`,
//!                             `keys = ["<base64 Ed25519 key>", …]`
//! <data-dir>/dev-ca/          dev mode: the simulated NSM's CA
//! ```
//!
//! The node enforces attested identities, manifests and the routing graph at append
//! ([`govern_admission::IdentityPolicy`]); `manifest.json` must verify against the pinned
//! signers or the node does not start. See [`crate::boot`] for what a node writes first.
//!
//! The keys are plain files: dev mode has no enclave to hold them (see docs/threat-model.md).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ed25519_dalek::SigningKey;
use govern_admission::IdentityPolicy;
use govern_core::attestation::TrustAnchor;
use govern_core::event::PublicKey;
use govern_core::manifest::{
    Manifest, ManifestError, ManifestSigners, SignedManifest, SignersFile,
};
use govern_core::note::NoteSigner;
use govern_store::{Clock, Log, LogConfig, RocksStorage, StorageError};
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
    /// The data dir has no manifest.
    #[error("{}: no manifest; run `govern manifest pin` (dev) or install a signed manifest", path.display())]
    NoManifest {
        /// Where it should be.
        path: PathBuf,
    },
    /// Starting the node's services failed.
    #[error("{0}")]
    Boot(String),
    /// The manifest in the data dir is unreadable or does not verify against the pinned
    /// signers.
    #[error("{path}: {source}")]
    Manifest {
        /// The file.
        path: PathBuf,
        /// Why it is refused.
        source: ManifestError,
    },
    /// The pinned manifest signers file is malformed or missing.
    #[error("{path}: {reason}")]
    Signers {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// RocksDB failed (for example: another node has this data dir open).
    #[error("log store: {0}")]
    Storage(#[from] StorageError),
    /// The directory a reading command was given is not a node's data dir.
    #[error("{} is not a govern data dir: {reason}", path.display())]
    NotADataDir {
        /// The directory.
        path: PathBuf,
        /// What it lacks.
        reason: String,
    },
    /// A data dir holds a log but lacks files a node needs to serve it (a replayed or
    /// partly restored copy); nothing was written.
    #[error(
        "{} holds a log of {size} entries but not all of its node's files (a replayed or partly restored copy?): \
         install {} from the original data dir's backup, then start again; nothing was written \
         (docs/operations.md, \"Restore\", lists what a data dir holds)",
        path.display(), missing.join(", ")
    )]
    Incomplete {
        /// The directory.
        path: PathBuf,
        /// The log's size.
        size: u64,
        /// What to install, each with what it is.
        missing: Vec<String>,
    },
}

/// The store of the data dir at `root`, which must exist and hold a log: what every reading
/// command opens (read-only), creating nothing.
///
/// # Errors
/// [`DataDirError::NotADataDir`] naming what is missing.
pub fn existing_db(root: &Path) -> Result<PathBuf, DataDirError> {
    let not = |reason: &str| DataDirError::NotADataDir {
        path: root.to_path_buf(),
        reason: reason.to_owned(),
    };
    match std::fs::metadata(root) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(not("it does not exist"));
        }
        Err(e) => return Err(io(root)(e)),
        Ok(m) if !m.is_dir() => return Err(not("it is not a directory")),
        Ok(_) => {}
    }
    let db = root.join("db");
    if !db.is_dir() {
        return Err(not("no db/"));
    }
    if !db.join("CURRENT").is_file() {
        return Err(not("db/ holds no log (no db/CURRENT)"));
    }
    Ok(db)
}

/// The log's store at `root` opened read-only ([`existing_db`]), beside a node that may be
/// running on it.
///
/// # Errors
/// [`DataDirError::NotADataDir`]; [`DataDirError::Storage`] when RocksDB cannot open it.
pub fn open_read_only(root: &Path) -> Result<RocksStorage, DataDirError> {
    Ok(RocksStorage::open_read_only(&existing_db(root)?)?)
}

/// The longest manifest signers file read.
const SIGNERS_FILE_BYTES_MAX: u64 = 64 * 1024;

/// Parse a manifest signers file's text (`threshold = N`, `keys = ["<base64>", …]`:
/// [`SignersFile`]).
///
/// # Errors
/// A message naming what is wrong (not TOML of that shape, a key not base64 of an Ed25519
/// key).
pub fn parse_manifest_signers(text: &str) -> Result<ManifestSigners, String> {
    let file: SignersFile = toml::from_str(text).map_err(|e| e.to_string())?;
    ManifestSigners::from_file(&file)
}

/// Read a file of at most `max` bytes.
fn read_limited(path: &Path, max: u64) -> Result<Vec<u8>, DataDirError> {
    use std::io::Read as _;
    let f = std::fs::File::open(path).map_err(io(path))?;
    let mut out = Vec::new();
    f.take(max + 1).read_to_end(&mut out).map_err(io(path))?;
    if out.len() as u64 > max {
        return Err(DataDirError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::other(format!("larger than {max} bytes")),
        });
    }
    Ok(out)
}

/// The pinned manifest signers of the data dir at `root` (`manifest-signers.toml`).
///
/// # Errors
/// [`DataDirError::Signers`] when the file is missing or malformed.
pub fn read_manifest_signers(root: &Path) -> Result<ManifestSigners, DataDirError> {
    let signers_path = root.join("manifest-signers.toml");
    let signers_text = read_limited(&signers_path, SIGNERS_FILE_BYTES_MAX)?;
    String::from_utf8(signers_text)
        .map_err(|_| "not UTF-8".to_string())
        .and_then(|t| parse_manifest_signers(&t))
        .map_err(|reason| DataDirError::Signers {
            path: signers_path.clone(),
            reason,
        })
}

/// The signed manifest of the data dir at `root` (`manifest.json`), verified against its
/// pinned signers (`allow_dev_root`: whether a manifest pinning the dev root is accepted).
///
/// # Errors
/// [`DataDirError::NoManifest`]; [`DataDirError::Manifest`] when it is unreadable or does not
/// verify; [`DataDirError::Signers`].
pub fn read_signed_manifest(
    root: &Path,
    allow_dev_root: bool,
) -> Result<SignedManifest, DataDirError> {
    let path = root.join("manifest.json");
    if !path.exists() {
        return Err(DataDirError::NoManifest { path });
    }
    let text = read_limited(&path, govern_core::manifest::MANIFEST_TEXT_BYTES_MAX as u64)?;
    let manifest_err = |source| DataDirError::Manifest {
        path: path.clone(),
        source,
    };
    let signed = SignedManifest::from_json(&text).map_err(manifest_err)?;
    signed
        .verify(&read_manifest_signers(root)?, allow_dev_root)
        .map_err(manifest_err)?;
    Ok(signed)
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

/// Write a secret file readable by its owner only, durably (govern_workers::durable: a
/// temporary file, fsync, rename, fsync of the directory), so a key or token the node has
/// used survives a crash.
fn write_secret(path: &Path, text: &str) -> Result<(), DataDirError> {
    govern_workers::durable::write(path, text.as_bytes()).map_err(io(path))
}

/// Read a C2SP private key file: `None` when there is none.
///
/// # Errors
/// [`DataDirError::Io`] when it cannot be read, [`DataDirError::BadKey`] when it holds no key.
pub(crate) fn read_key(path: &Path) -> Result<Option<NoteSigner>, DataDirError> {
    match std::fs::read_to_string(path) {
        Ok(text) => NoteSigner::from_private_key(text.trim())
            .map(Some)
            .map_err(|e| DataDirError::BadKey {
                path: path.to_path_buf(),
                reason: e.to_string(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(path)(e)),
    }
}

/// Read a C2SP private key file, or make one named `name`.
pub(crate) fn load_or_create_key(path: &Path, name: &str) -> Result<NoteSigner, DataDirError> {
    if let Some(key) = read_key(path)? {
        return Ok(key);
    }
    let key = SigningKey::generate(&mut rand_core::OsRng);
    let signer = NoteSigner::new(name, key).map_err(|e| DataDirError::BadKey {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    write_secret(path, &format!("{}\n", signer.to_private_key()))?;
    Ok(signer)
}

impl DataDir {
    /// Open the existing data dir `root` for reading: it must hold a log ([`existing_db`]) and
    /// its `log.key`. Creates nothing.
    ///
    /// # Errors
    /// [`DataDirError::NotADataDir`]; [`DataDirError::BadKey`] for an unreadable key.
    pub fn open_existing(root: &Path) -> Result<Self, DataDirError> {
        existing_db(root)?;
        let log_key = read_key(&root.join("log.key"))?.ok_or_else(|| DataDirError::NotADataDir {
            path: root.to_path_buf(),
            reason: "no log.key (a replayed copy holds none: ask the node for what needs its key, with --url)".into(),
        })?;
        Ok(Self {
            root: root.to_path_buf(),
            log_key,
        })
    }

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
        dir.edge_key()?;
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

    /// The log's checkpoint key, which is also its Ed25519 identity key (role `log`).
    #[must_use]
    pub fn log_signing_key(&self) -> SigningKey {
        self.log_key.signing_key().clone()
    }

    /// The simulated NSM's dev CA directory.
    #[must_use]
    pub fn dev_ca_path(&self) -> PathBuf {
        self.root.join("dev-ca")
    }

    /// The dev edge producer key (created on first use).
    ///
    /// # Errors
    /// [`DataDirError`] when the key file cannot be read or written.
    pub fn edge_key(&self) -> Result<SigningKey, DataDirError> {
        let signer = load_or_create_key(&self.root.join("edge.key"), "edge")?;
        Ok(signer.signing_key().clone())
    }

    /// The operator's bearer token for `POST /v1/tenants` (`operator.token`, 64 hex
    /// characters, mode 0600), made on first use.
    ///
    /// # Errors
    /// [`DataDirError`] when it cannot be read or written.
    pub fn operator_token(&self) -> Result<String, DataDirError> {
        let path = self.root.join("operator.token");
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(text.trim().to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                use rand_core::RngCore as _;
                let mut bytes = [0u8; 32];
                rand_core::OsRng.fill_bytes(&mut bytes);
                let token = hex::encode(bytes);
                write_secret(&path, &format!("{token}\n"))?;
                Ok(token)
            }
            Err(e) => Err(DataDirError::Io { path, source: e }),
        }
    }

    /// The key service's store: the sealed master, the dev key-encryption key, the seeds.
    #[must_use]
    pub fn keys_path(&self) -> PathBuf {
        self.root.join("keys")
    }

    /// Where the edge keeps webauthn-rs's state of each registered passkey.
    #[must_use]
    pub fn passkeys_path(&self) -> PathBuf {
        self.root.join("passkeys")
    }

    /// The signed manifest file (present once `govern manifest pin` ran).
    #[must_use]
    pub fn manifest_path(&self) -> PathBuf {
        self.root.join("manifest.json")
    }

    /// The pinned manifest signers file.
    #[must_use]
    pub fn manifest_signers_path(&self) -> PathBuf {
        self.root.join("manifest-signers.toml")
    }

    /// The pinned manifest signers.
    ///
    /// # Errors
    /// [`DataDirError::Signers`] when the signers file is missing or malformed.
    pub fn manifest_signers(&self) -> Result<ManifestSigners, DataDirError> {
        read_manifest_signers(&self.root)
    }

    /// The data dir's signed manifest, verified against the pinned signers
    /// (`allow_dev_root`: whether a manifest pinning the dev root is accepted; a production
    /// build passes false).
    ///
    /// # Errors
    /// [`DataDirError::NoManifest`]; [`DataDirError::Manifest`] when it is unreadable or
    /// does not verify; [`DataDirError::Signers`].
    pub fn signed_manifest(&self, allow_dev_root: bool) -> Result<SignedManifest, DataDirError> {
        read_signed_manifest(&self.root, allow_dev_root)
    }

    /// The data dir's manifest, verified (see [`DataDir::signed_manifest`]).
    ///
    /// # Errors
    /// As [`DataDir::signed_manifest`].
    pub fn manifest(&self, allow_dev_root: bool) -> Result<Manifest, DataDirError> {
        Ok(self.signed_manifest(allow_dev_root)?.manifest)
    }

    /// The dev CA root, if this data dir has one.
    ///
    /// # Errors
    /// [`DataDirError::BadKey`] when `dev-ca/root.der` is not a usable root.
    pub fn dev_root(&self) -> Result<Option<TrustAnchor>, DataDirError> {
        let path = self.dev_ca_path().join("root.der");
        match std::fs::read(&path) {
            Ok(der) => TrustAnchor::from_der(&der)
                .map(Some)
                .map_err(|e| DataDirError::BadKey {
                    path,
                    reason: e.to_string(),
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(&path)(e)),
        }
    }

    /// Open the log store and start the sequencer under the identity policy
    /// ([`govern_admission::IdentityPolicy`]) of this data dir's signers, log key and dev root.
    /// Nothing is appended: [`DataDir::boot`] does that.
    ///
    /// # Errors
    /// [`DataDirError`] when the signers, the dev root or the store cannot be opened.
    pub fn open_identity_log(
        &self,
        config: LogConfig,
        allow_dev_root: bool,
        clock: Arc<dyn Clock>,
    ) -> Result<(Log<RocksStorage>, Arc<IdentityPolicy>), DataDirError> {
        let storage = RocksStorage::open(&self.db_path())?;
        self.open_identity_log_on(storage, config, allow_dev_root, clock)
    }

    /// [`DataDir::open_identity_log`] on `storage`.
    ///
    /// # Errors
    /// As [`DataDir::open_identity_log`].
    pub fn open_identity_log_on<S: govern_store::Storage>(
        &self,
        storage: S,
        config: LogConfig,
        allow_dev_root: bool,
        clock: Arc<dyn Clock>,
    ) -> Result<(Log<S>, Arc<IdentityPolicy>), DataDirError> {
        let dev_root = if allow_dev_root {
            self.dev_root()?
        } else {
            None
        };
        let policy = Arc::new(
            IdentityPolicy::new(
                self.manifest_signers()?,
                PublicKey::from(&self.log_key.signing_key().verifying_key()),
                allow_dev_root,
                dev_root,
            )
            .with_time_skew(config.time_skew_ms)
            .with_anchor_distance(config.anchor_distance_max),
        );
        let log = Log::open(
            storage,
            self.log_key.clone(),
            config,
            Arc::clone(&policy) as Arc<dyn govern_store::AppendPolicy>,
            clock,
        )?;
        Ok((log, policy))
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

/// The routes a node serves, replaced in place when its part changes: a node over a shared
/// store serves the log's reads while another sequences, and everything once it takes the
/// sequencer's lease.
#[derive(Clone)]
pub struct RouterSwitch(Arc<parking_lot::RwLock<axum::Router>>);

impl std::fmt::Debug for RouterSwitch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouterSwitch").finish_non_exhaustive()
    }
}

impl RouterSwitch {
    /// Serve `routes` first.
    #[must_use]
    pub fn new(routes: axum::Router) -> Self {
        Self(Arc::new(parking_lot::RwLock::new(routes)))
    }

    /// Serve `routes` from now on (requests in flight finish on the old ones).
    pub fn set(&self, routes: axum::Router) {
        *self.0.write() = routes;
    }
}

impl NodeHandle {
    /// Serve `state` on `listener` until [`NodeHandle::shutdown`].
    ///
    /// # Errors
    /// When the listener has no local address.
    pub fn spawn(state: AppState, listener: TcpListener) -> std::io::Result<Self> {
        Self::serve(router(state), listener)
    }

    /// Serve whatever `switch` holds at each request, on `listener`.
    ///
    /// # Errors
    /// When the listener has no local address.
    pub fn spawn_switched(switch: &RouterSwitch, listener: TcpListener) -> std::io::Result<Self> {
        let current = Arc::clone(&switch.0);
        let app = axum::Router::new().fallback_service(tower::service_fn(
            move |req: axum::extract::Request| {
                let routes = current.read().clone();
                tower::ServiceExt::oneshot(routes, req)
            },
        ));
        Self::serve(app, listener)
    }

    fn serve(app: axum::Router, listener: TcpListener) -> std::io::Result<Self> {
        let addr = listener.local_addr()?;
        let (tx, rx) = oneshot::channel::<()>();
        // Receipts are small writes answered at once: without TCP_NODELAY, Nagle's algorithm
        // meets the client's delayed ACK and a response can wait 40 ms.
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "cannot set TCP_NODELAY");
            }
        });
        // The peer's address reaches the handlers (the edge bounds login ceremonies per
        // source).
        let app = app.into_make_service_with_connect_info::<SocketAddr>();
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
