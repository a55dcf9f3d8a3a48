//! # govern-witness
//!
//! The c2sp.org/tlog-witness witness that `govern witness` runs: an independent party, with
//! its own key, data dir and list of the logs it follows, that cosigns a log's checkpoint
//! only if it is consistent with the last one it cosigned for that log.
//!
//! This crate owns the witness's I/O shell: its key file, its state file, and its HTTP
//! routes. The decision itself is pure and lives in govern-core
//! ([`govern_core::witness::decide`]), with the wire format and witness policies; the
//! `govern witness` command (its flags, its start-up lines) is the CLI's.
//!
//! `POST /add-checkpoint` takes the specification's body. The check of the old size and the
//! write of the new state happen under one lock, and the state is on disk (temporary file,
//! fsync, rename, fsync of the directory: `govern_workers::durable`) before the cosignature
//! leaves, so no crash and no race can roll the witness back.
//!
//! The data dir holds `witness.key` (its Ed25519 key and name, 0600) and `state.json` (the
//! latest checkpoint cosigned per origin). Both are made together on first start. A key
//! whose state is gone is refused at start: a witness that forgot what it cosigned would
//! cosign a rollback. Starting over means a new data dir, hence a new key that no policy
//! trusts until its operators list it.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use ed25519_dalek::SigningKey;
use govern_core::checkpoint::CosignatureSigner;
use govern_core::note::NoteVerifier;
use govern_core::witness::{
    ADD_CHECKPOINT_BYTES_MAX, AddCheckpoint, FollowedLog, Refusal, SIZE_CONTENT_TYPE, Witnessed,
    decide,
};
use serde::{Deserialize, Serialize};

/// The witness's key file.
pub const KEY_FILE: &str = "witness.key";
/// The witness's state file.
pub const STATE_FILE: &str = "state.json";

/// Why a witness cannot start or persist.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WitnessError {
    /// A file could not be read or written.
    #[error("{path}: {reason}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The key exists but the state does not.
    #[error(
        "{key} exists but {state} does not: this witness has lost the record of what it cosigned, and would cosign a rollback. Restore {state} from a backup, or start a new witness (a new data dir, so a new key) and list that in the logs' witness policies"
    )]
    StateLost {
        /// The key file.
        key: String,
        /// The missing state file.
        state: String,
    },
    /// A file holds something else.
    #[error("{path}: {reason}")]
    Corrupt {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The configuration does not hold.
    #[error("{0}")]
    Config(String),
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> WitnessError + '_ {
    move |e| WitnessError::Io {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

/// Write `bytes` to `path` durably ([`govern_workers::durable::write`]).
///
/// # Errors
/// [`WitnessError::Io`].
pub fn write_durable(path: &Path, bytes: &[u8]) -> Result<(), WitnessError> {
    govern_workers::durable::write(path, bytes).map_err(|e| WitnessError::Io {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

/// The logs a witness follows, from their checkpoint verifier keys (`origin+<hex id>+base64`,
/// as `--log` gives them): one [`FollowedLog`] per origin (the key's name), with every key
/// given for it.
///
/// # Errors
/// [`WitnessError::Config`] naming the first key that does not parse.
pub fn followed_logs(vkeys: &[String]) -> Result<Vec<FollowedLog>, WitnessError> {
    let mut logs: Vec<FollowedLog> = Vec::new();
    for vkey in vkeys {
        let verifier = NoteVerifier::parse(vkey)
            .map_err(|e| WitnessError::Config(format!("--log {vkey}: {e}")))?;
        let origin = verifier.name().to_owned();
        match logs.iter_mut().find(|l| l.origin == origin) {
            Some(l) => l.verifiers.push(verifier),
            None => logs.push(FollowedLog {
                origin,
                verifiers: vec![verifier],
            }),
        }
    }
    Ok(logs)
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    name: String,
    /// The Ed25519 seed, hex.
    seed: String,
}

/// `state.json`: the latest checkpoint cosigned, by origin.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateFile {
    logs: BTreeMap<String, Witnessed>,
}

/// A witness: its key, the logs it follows and what it last cosigned for each.
#[derive(Debug)]
pub struct Witness {
    signer: CosignatureSigner,
    logs: Vec<FollowedLog>,
    state_path: PathBuf,
    state: parking_lot::Mutex<StateFile>,
}

/// What `GET /` answers: who the witness is and what it has cosigned.
#[derive(Debug, Serialize)]
pub struct WitnessInfo {
    /// Its cosigner name.
    pub name: String,
    /// Its verifier key (`name+id+base64(0x04 || key)`).
    pub vkey: String,
    /// The latest size cosigned per followed origin (absent: never).
    pub logs: BTreeMap<String, Option<u64>>,
}

impl Witness {
    /// Open (or, when `data_dir` holds neither file, create) the witness named `name` in
    /// `data_dir`, following `logs`.
    ///
    /// # Errors
    /// [`WitnessError::StateLost`] when the key is there and the state is not; a
    /// [`WitnessError`] for unreadable or foreign files, or a name other than the key's.
    pub fn open(data_dir: &Path, name: &str, logs: Vec<FollowedLog>) -> Result<Self, WitnessError> {
        if logs.is_empty() {
            return Err(WitnessError::Config(
                "a witness follows at least one log (--log VKEY)".into(),
            ));
        }
        std::fs::create_dir_all(data_dir).map_err(io(data_dir))?;
        let key_path = data_dir.join(KEY_FILE);
        let state_path = data_dir.join(STATE_FILE);
        let key_exists = key_path.exists();
        let state = match std::fs::read(&state_path) {
            Ok(bytes) => {
                serde_json::from_slice::<StateFile>(&bytes).map_err(|e| WitnessError::Corrupt {
                    path: state_path.display().to_string(),
                    reason: e.to_string(),
                })?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if key_exists {
                    return Err(WitnessError::StateLost {
                        key: key_path.display().to_string(),
                        state: state_path.display().to_string(),
                    });
                }
                // A new witness: the state first, so a key never exists without one.
                let fresh = StateFile::default();
                write_durable(&state_path, &state_bytes(&fresh)?)?;
                fresh
            }
            Err(e) => return Err(io(&state_path)(e)),
        };
        let signer = if key_exists {
            let text = std::fs::read_to_string(&key_path).map_err(io(&key_path))?;
            let corrupt = |reason: String| WitnessError::Corrupt {
                path: key_path.display().to_string(),
                reason,
            };
            let file: KeyFile = serde_json::from_str(&text).map_err(|e| corrupt(e.to_string()))?;
            if file.name != name {
                return Err(WitnessError::Config(format!(
                    "{} is the key of witness {:?}, not {name:?}",
                    key_path.display(),
                    file.name
                )));
            }
            let seed: [u8; 32] = hex::decode(&file.seed)
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| corrupt("the seed is not 32 bytes of hex".into()))?;
            CosignatureSigner::new(name, SigningKey::from_bytes(&seed))
                .map_err(|e| WitnessError::Config(e.to_string()))?
        } else {
            let key = SigningKey::generate(&mut rand_core::OsRng);
            let signer = CosignatureSigner::new(name, key.clone())
                .map_err(|e| WitnessError::Config(e.to_string()))?;
            let file = KeyFile {
                name: name.to_owned(),
                seed: hex::encode(key.to_bytes()),
            };
            let text =
                serde_json::to_vec(&file).map_err(|e| WitnessError::Config(e.to_string()))?;
            write_durable(&key_path, &text)?;
            signer
        };
        Ok(Self {
            signer,
            logs,
            state_path,
            state: parking_lot::Mutex::new(state),
        })
    }

    /// Its verifier key.
    #[must_use]
    pub fn verifier_key(&self) -> String {
        self.signer.verifier_key()
    }

    /// Who it is and what it cosigned.
    #[must_use]
    pub fn info(&self) -> WitnessInfo {
        let state = self.state.lock();
        WitnessInfo {
            name: self.signer.name().to_owned(),
            vkey: self.verifier_key(),
            logs: self
                .logs
                .iter()
                .map(|l| {
                    (
                        l.origin.clone(),
                        state.logs.get(&l.origin).map(|w| w.size.0),
                    )
                })
                .collect(),
        }
    }

    /// Handle one `add-checkpoint` body: the cosignature line, or why not. The state is
    /// durable before this returns a line.
    ///
    /// # Errors
    /// [`Answer::Refused`] with the specification's status; [`Answer::Failed`] when the new
    /// state cannot be written (nothing is cosigned then).
    pub fn add_checkpoint(&self, body: &[u8], now_s: u64) -> Result<String, Answer> {
        let request = AddCheckpoint::parse(body).map_err(|e| Answer::Refused(e.into()))?;
        let mut state = self.state.lock();
        let (_, checkpoint) = decide(&self.logs, |o| state.logs.get(o).copied(), &request)
            .map_err(Answer::Refused)?;
        let witnessed = Witnessed {
            size: checkpoint.size,
            root: checkpoint.root,
        };
        if state.logs.get(&checkpoint.origin) != Some(&witnessed) {
            let mut next = state.clone();
            next.logs.insert(checkpoint.origin.clone(), witnessed);
            let bytes = state_bytes(&next).map_err(|e| Answer::Failed(e.to_string()))?;
            write_durable(&self.state_path, &bytes).map_err(|e| Answer::Failed(e.to_string()))?;
            *state = next;
        }
        drop(state);
        self.signer
            .sign(&checkpoint, now_s)
            .map_err(|e| Answer::Failed(e.to_string()))
    }
}

fn state_bytes(state: &StateFile) -> Result<Vec<u8>, WitnessError> {
    serde_json::to_vec_pretty(state).map_err(|e| WitnessError::Config(e.to_string()))
}

/// Why `add-checkpoint` gives no cosignature.
#[derive(Debug)]
pub enum Answer {
    /// The checks refused it (4xx).
    Refused(Refusal),
    /// The state could not be persisted (503).
    Failed(String),
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        match self {
            Self::Refused(r) => {
                let status = StatusCode::from_u16(r.status()).unwrap_or(StatusCode::BAD_REQUEST);
                match r.size_body() {
                    Some(body) => (
                        status,
                        [(
                            header::CONTENT_TYPE,
                            HeaderValue::from_static(SIZE_CONTENT_TYPE),
                        )],
                        body,
                    )
                        .into_response(),
                    None => (
                        status,
                        [(
                            header::CONTENT_TYPE,
                            HeaderValue::from_static("text/plain; charset=utf-8"),
                        )],
                        format!("{r}\n"),
                    )
                        .into_response(),
                }
            }
            Self::Failed(reason) => {
                tracing::error!(%reason, "cannot persist the witness state; nothing cosigned");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("the witness cannot persist its state: {reason}\n"),
                )
                    .into_response()
            }
        }
    }
}

fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

async fn add_checkpoint(State(w): State<Arc<Witness>>, body: Bytes) -> Response {
    // The fsync blocks: off the async threads.
    let result = tokio::task::spawn_blocking(move || w.add_checkpoint(&body, now_s())).await;
    match result {
        Ok(Ok(line)) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            )],
            line,
        )
            .into_response(),
        Ok(Err(answer)) => answer.into_response(),
        Err(e) => Answer::Failed(e.to_string()).into_response(),
    }
}

async fn info(State(w): State<Arc<Witness>>) -> Response {
    axum::Json(w.info()).into_response()
}

/// The witness's routes: `POST /add-checkpoint`, `GET /` (its name, key and sizes).
pub fn router(witness: Arc<Witness>) -> Router {
    Router::new()
        .route(
            "/add-checkpoint",
            post(add_checkpoint).layer(DefaultBodyLimit::max(ADD_CHECKPOINT_BYTES_MAX)),
        )
        .route("/", get(info))
        .with_state(witness)
}

/// Serve `witness` on `listener` until `shutdown` resolves.
///
/// # Errors
/// The server's I/O error.
pub async fn serve(
    witness: Arc<Witness>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(witness))
        .with_graceful_shutdown(shutdown)
        .await
}
