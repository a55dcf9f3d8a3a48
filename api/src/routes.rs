//! The node's HTTP surface: append, entries, proofs, and the C2SP `tlog-tiles` reads.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use govern_admission::StateView as _;
use govern_admission::{IdentityPolicy, ServicesView};
use govern_core::event::Timestamp;
use govern_core::event::{EVENT_BYTES_MAX, KeyCache, SignedEvent};
use govern_core::ids::{Hash, LeafIndex, TreeSize};
use govern_core::tiles::Tile;
use govern_store::{Log, NodeLog, StorageError};
use serde::Deserialize;

use crate::problem::Problem;

// The bodies of these endpoints, shared with clients (govern-client), re-exported here.
pub use govern_client::wire::{
    Checkpoints, ConsistencyProof, InclusionProof, LogInfo, Receipt, SignedCheckpoint, StateInfo,
    WitnessesInfo,
};

/// What every handler shares.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The log.
    pub log: Arc<dyn NodeLog>,
    /// The C2SP verifier key of the checkpoint key.
    pub verifier_key: Arc<str>,
    /// Producer keys already decompressed.
    pub keys: Arc<KeyCache>,
    /// The identity policy in force, for `GET /v1/services` (absent on a log without one).
    pub identities: Option<Arc<IdentityPolicy>>,
    /// The edge: tenants, users, credentials and user actions (absent on a bare log).
    pub edge: Option<Arc<crate::edge::Edge>>,
    /// The key service, whose endpoints the node serves beside the edge's.
    pub key_service: Option<Arc<crate::keys::KeyService>>,
    /// The witnesses and the latest checkpoint they cosigned (absent: no witness policy,
    /// `/checkpoint` serves the log's own).
    pub witnessing: Option<Arc<crate::witnessing::Witnessing>>,
    /// The last state root computed for `GET /v1/state`.
    pub state_roots: Arc<StateRoots>,
    /// On a node that does not sequence the log: where the sequencer is now (what it
    /// answers, 503, for everything but the log's reads).
    pub standby: Option<Arc<Standby>>,
}

/// Where a node that does not sequence the log sends its clients ([`AppState::as_standby`]).
pub struct Standby(Box<dyn Fn() -> Option<String> + Send + Sync>);

impl std::fmt::Debug for Standby {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Standby").field(&(self.0)()).finish()
    }
}

/// The least time between two state-root computations of `GET /v1/state`: the state root
/// canonicalizes the whole state, work that grows with it, so an unauthenticated flood of
/// reads computes it at most this often, one at a time, and never on the sequencer's lock.
pub const STATE_ROOT_INTERVAL_MS: u64 = 250;

/// `GET /v1/state`'s cache: the answer for the latest size it computed, and one computation
/// at a time.
#[derive(Debug, Default)]
pub struct StateRoots {
    last: parking_lot::Mutex<Option<(std::time::Instant, StateInfo)>>,
    computing: tokio::sync::Mutex<()>,
}

impl StateRoots {
    /// The cached answer if it is for `size`.
    fn cached(&self, size: u64) -> Option<StateInfo> {
        self.last
            .lock()
            .as_ref()
            .filter(|(_, info)| info.size == size)
            .map(|(_, info)| info.clone())
    }

    /// How long to wait before computing again.
    fn wait(&self) -> std::time::Duration {
        let interval = std::time::Duration::from_millis(STATE_ROOT_INTERVAL_MS);
        self.last
            .lock()
            .as_ref()
            .map_or(std::time::Duration::ZERO, |(at, _)| {
                interval.saturating_sub(at.elapsed())
            })
    }
}

impl AppState {
    /// The state of a node serving `log`.
    #[must_use]
    pub fn new<S: govern_store::Storage>(log: Arc<Log<S>>, verifier_key: &str) -> Self {
        Self::over(log, verifier_key)
    }

    /// The state of a node serving `log`, whatever it is: a log it sequences, or a shared
    /// store's log it follows ([`govern_store::Follower`], with [`AppState::standby`]).
    #[must_use]
    pub fn over(log: Arc<dyn NodeLog>, verifier_key: &str) -> Self {
        Self {
            standby: None,
            log,
            verifier_key: verifier_key.into(),
            keys: Arc::new(KeyCache::new()),
            identities: None,
            edge: None,
            key_service: None,
            witnessing: None,
            state_roots: Arc::new(StateRoots::default()),
        }
    }

    /// Serve at `/checkpoint` the latest checkpoint `witnessing` has a quorum for.
    #[must_use]
    pub fn with_witnessing(mut self, witnessing: Arc<crate::witnessing::Witnessing>) -> Self {
        self.witnessing = Some(witnessing);
        self
    }

    /// Serve the edge's routes.
    #[must_use]
    pub fn with_edge(mut self, edge: Arc<crate::edge::Edge>) -> Self {
        self.edge = Some(edge);
        self
    }

    /// Serve the key service's endpoints (with the edge's: [`AppState::with_edge`]).
    #[must_use]
    pub fn with_keys(mut self, keys: Arc<crate::keys::KeyService>) -> Self {
        self.key_service = Some(keys);
        self
    }

    /// Serve the log's reads only, as a node that does not sequence it: everything else is
    /// answered 503 `not-the-sequencer`, naming where `sequencer` says the sequencer is.
    #[must_use]
    pub fn as_standby(
        mut self,
        sequencer: impl Fn() -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.standby = Some(Arc::new(Standby(Box::new(sequencer))));
        self
    }

    /// Serve `GET /v1/services` from `policy`.
    #[must_use]
    pub fn with_identities(mut self, policy: Arc<IdentityPolicy>) -> Self {
        self.identities = Some(policy);
        self
    }
}

/// The node's routes.
pub fn router(state: AppState) -> Router {
    let keys = match (&state.key_service, &state.edge) {
        (Some(keys), Some(edge)) => Some(crate::tenant_keys::key_routes(
            Arc::clone(keys),
            Arc::clone(edge),
        )),
        _ => None,
    };
    let edge = state.edge.clone().map(crate::edge::routes);
    let standby = state.standby.clone();
    let log = Router::new()
        .route("/healthz", get(healthz))
        .route("/openapi.json", get(openapi))
        .route("/v1/log", get(log_info))
        .route("/v1/state", get(state_info))
        .route(
            "/v1/entries",
            post(append).layer(DefaultBodyLimit::max(EVENT_BYTES_MAX)),
        )
        .route("/v1/entries/{index}", get(entry))
        .route("/v1/leaves/{leaf}", get(leaf))
        .route("/", get(crate::ui::index))
        .route("/ui/{file}", get(crate::ui::asset))
        .route("/v1/services", get(services))
        .route("/v1/proofs/inclusion", get(inclusion))
        .route("/v1/proofs/consistency", get(consistency))
        .route("/checkpoint", get(checkpoint))
        .route("/v1/checkpoints", get(checkpoints))
        .route("/tile/{*path}", get(tile))
        .with_state(state);
    let app = match edge {
        Some(edge) => log.merge(edge),
        None => log,
    };
    let app = match keys {
        Some(keys) => app.merge(keys),
        None => app,
    };
    if let Some(sequencer) = standby {
        // The edge's and the key service's routes are the sequencer's: whatever is not a
        // read of the log goes there.
        return app.fallback(move |uri: Uri| async move {
            standby_answer(sequencer.as_ref(), uri.path())
        });
    }
    app.fallback(|uri: Uri| async move { Problem::no_route(uri.path()) })
        .method_not_allowed_fallback(|uri: Uri| async move {
            Problem::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "Method not allowed",
                format!("{} does not accept this method", uri.path()),
            )
        })
}

/// What a node that does not sequence the log answers for what only the sequencer serves.
fn standby_answer(standby: &Standby, path: &str) -> Problem {
    Problem::not_sequencer(match (standby.0)() {
        Some(url) => format!(
            "this node serves the log's reads; {path} is served by the sequencer, now {url}"
        ),
        None => format!(
            "this node serves the log's reads; {path} is served by the sequencer, and no node \
             holds its lease now: retry shortly"
        ),
    })
}

async fn openapi() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        crate::openapi::json(),
    )
        .into_response()
}

#[utoipa::path(get, path = "/healthz", tag = "log",
    responses((status = 200, description = "The node is up", body = String, content_type = "text/plain")))]
pub(crate) async fn healthz() -> &'static str {
    "ok\n"
}

/// `GET /v1/services`: every role's identity (keys, measurements, the manifest it was
/// attested under, last attestation time) and its status now (`live`, `expired`,
/// `quarantined`), the manifest in force, and the quarantined measurements.
#[utoipa::path(get, path = "/v1/services", tag = "log",
    responses((status = 200, description = "Identities, the manifest in force, quarantines", body = Object),
        (status = 404, description = "No identity policy", body = crate::problem::Problem, content_type = "application/problem+json")))]
pub(crate) async fn services(State(state): State<AppState>) -> Result<Json<ServicesView>, Problem> {
    if let (None, Some(sequencer)) = (&state.identities, &state.standby) {
        return Err(standby_answer(sequencer.as_ref(), "/v1/services"));
    }
    let policy = state.identities.as_ref().ok_or_else(|| {
        Problem::new(
            StatusCode::NOT_FOUND,
            "no-identities",
            "No identity policy",
            "this log does not enforce attested identities",
        )
    })?;
    Ok(Json(policy.services(Timestamp::now())))
}

#[utoipa::path(get, path = "/v1/log", tag = "log",
    responses((status = 200, description = "Origin, verifier key, size", body = LogInfo)))]
pub(crate) async fn log_info(State(s): State<AppState>) -> Json<LogInfo> {
    Json(LogInfo {
        origin: s.log.origin().to_string(),
        verifier_key: s.verifier_key.to_string(),
        size: s.log.latest().size.0,
        witnesses: s.witnessing.as_ref().map(|w| WitnessesInfo {
            quorum: w.policy().quorum(),
            vkeys: w
                .policy()
                .witnesses()
                .iter()
                .map(ToString::to_string)
                .collect(),
            witnessed_size: w.latest().map(|l| l.size.0),
        }),
    })
}

/// The tree size, tree root and state root, as `govern status` and `govern replay` print
/// them: a replay of this log's export reaches the same three.
#[utoipa::path(get, path = "/v1/state", tag = "log",
    responses((status = 200, description = "Tree size, tree root and state root", body = StateInfo),
        (status = 503, description = "The store failed", body = crate::problem::Problem, content_type = "application/problem+json")))]
pub(crate) async fn state_info(State(s): State<AppState>) -> Result<Json<StateInfo>, Problem> {
    let size = |s: &AppState| match &s.identities {
        Some(policy) => policy.committed().size.0,
        None => s.log.latest().size.0,
    };
    let cache = Arc::clone(&s.state_roots);
    if let Some(info) = cache.cached(size(&s)) {
        return Ok(Json(info));
    }
    // One computation at a time, at most one per interval; whoever waited gets the answer
    // computed meanwhile if it is still for the latest size.
    let _computing = cache.computing.lock().await;
    if let Some(info) = cache.cached(size(&s)) {
        return Ok(Json(info));
    }
    tokio::time::sleep(cache.wait()).await;
    let work = move || -> Result<StateInfo, StorageError> {
        let (size, state) = match &s.identities {
            Some(policy) => policy.state(),
            None => {
                let mut state = govern_projections::state::State::new();
                let latest = s.log.fold_tracked(&mut |e, i| state.apply(&e, i.0))?;
                (latest.size, state)
            }
        };
        let root = s.log.root_at(size).map_err(|e| match e {
            govern_store::ReadError::Storage(s) => s,
            other => StorageError::Corrupt(other.to_string()),
        })?;
        let state_root = state
            .root()
            .map_err(|e| StorageError::Corrupt(e.to_string()))?;
        Ok(StateInfo {
            size: size.0,
            root: root.to_hex(),
            state_root: state_root.to_hex(),
        })
    };
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => {
            let info = result?;
            *cache.last.lock() = Some((std::time::Instant::now(), info.clone()));
            Ok(Json(info))
        }
        Err(e) => Err(StorageError::Backend(format!("the state task failed: {e}")).into()),
    }
}

fn b64(hashes: Vec<Hash>) -> Vec<String> {
    hashes.iter().map(Hash::to_base64).collect()
}

fn bad_body(e: BytesRejection) -> Problem {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "event-too-large",
            "Event too large",
            format!("an event is at most {EVENT_BYTES_MAX} bytes"),
        )
    } else {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "bad-body",
            "Unreadable request body",
            e.body_text(),
        )
    }
}

/// 400 `bad-query`: a query parameter is missing, unreadable or out of range.
pub(crate) fn bad_query_param(detail: impl Into<String>) -> Problem {
    Problem::new(
        StatusCode::BAD_REQUEST,
        "bad-query",
        "Bad query parameters",
        detail,
    )
}

pub(crate) fn bad_query(e: QueryRejection) -> Problem {
    bad_query_param(e.body_text())
}

/// A page's `limit`: `default` when absent, else 1 to `max` (`bad-query` otherwise).
pub(crate) fn page_limit(
    limit: Option<usize>,
    default: usize,
    max: usize,
) -> Result<usize, Problem> {
    let limit = limit.unwrap_or(default);
    if (1..=max).contains(&limit) {
        Ok(limit)
    } else {
        Err(bad_query_param(format!("limit is 1 to {max}")))
    }
}

fn bad_path(e: PathRejection) -> Problem {
    Problem::new(
        StatusCode::BAD_REQUEST,
        "bad-path",
        "Bad path parameter",
        e.body_text(),
    )
}

#[utoipa::path(post, path = "/v1/entries", tag = "log",
    request_body(content = Object, description = "A signed event (JCS envelope with sig)", content_type = "application/json"),
    responses((status = 200, description = "Appended: the receipt", body = Receipt),
        (status = 400, description = "Malformed event", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 403, description = "Refused by the policy", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 409, description = "Uniqueness key or nonce taken", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 413, description = "Event too large", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 415, description = "Unsupported media type", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 503, description = "Busy or unavailable", body = crate::problem::Problem, content_type = "application/problem+json")))]
pub(crate) async fn append(
    State(s): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Receipt>, Problem> {
    let body = body.map_err(bad_body)?;
    let event = SignedEvent::from_bytes_with(&body, &s.keys)?;
    let appended = s.log.append(event).await?;
    let cp = &appended.checkpoint;
    let hashes = s.log.inclusion_proof(appended.index, cp.size)?;
    Ok(Json(Receipt {
        index: appended.index.0,
        leaf_hash: appended.leaf_hash.to_hex(),
        checkpoint: cp.note.clone(),
        inclusion: InclusionProof {
            index: None,
            size: cp.size.0,
            hashes: b64(hashes),
        },
    }))
}

#[utoipa::path(get, path = "/v1/entries/{index}", tag = "log",
    params(("index" = u64, Path, description = "Leaf index")),
    responses((status = 200, description = "The event's leaf data", body = Object),
        (status = 400, description = "Bad index", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 404, description = "No such entry", body = crate::problem::Problem, content_type = "application/problem+json")))]
pub(crate) async fn entry(
    State(s): State<AppState>,
    index: Result<Path<u64>, PathRejection>,
) -> Result<Response, Problem> {
    let Path(index) = index.map_err(bad_path)?;
    let bytes = s.log.entry(LeafIndex(index))?;
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        bytes,
    )
        .into_response())
}

/// Where an entry is, by its leaf hash.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(crate) struct LeafAt {
    /// Its index in the log.
    index: u64,
    /// The leaf hash asked for (lower-case hex).
    leaf: String,
}

/// `GET /v1/leaves/{leaf}`: the index of the entry with that leaf hash, so a reader holding
/// only a hash (an event's `parents` or `attestation`) can fetch the entry and its proof.
#[utoipa::path(get, path = "/v1/leaves/{leaf}", tag = "log",
    params(("leaf" = String, Path, description = "Leaf hash, 64 hex digits")),
    responses((status = 200, description = "The entry's index", body = LeafAt),
        (status = 400, description = "Not a leaf hash", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 404, description = "The log holds no such entry", body = crate::problem::Problem, content_type = "application/problem+json")))]
pub(crate) async fn leaf(
    State(s): State<AppState>,
    leaf: Result<Path<String>, PathRejection>,
) -> Result<Response, Problem> {
    let Path(text) = leaf.map_err(bad_path)?;
    let hash = govern_core::ids::LeafHash::try_from(text.to_ascii_lowercase()).map_err(|e| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "bad-path",
            "Bad path parameter",
            format!("a leaf hash is 64 hex digits: {e}"),
        )
    })?;
    match s.log.index_of(&hash)? {
        Some(index) => Ok(Json(LeafAt {
            index: index.0,
            leaf: hash.to_hex(),
        })
        .into_response()),
        None => Err(Problem::new(
            StatusCode::NOT_FOUND,
            "not-found",
            "No such resource",
            "the log holds no entry with this leaf hash",
        )),
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct InclusionQuery {
    index: u64,
    size: u64,
}

#[utoipa::path(get, path = "/v1/proofs/inclusion", tag = "log", params(InclusionQuery),
    responses((status = 200, description = "Inclusion proof", body = InclusionProof),
        (status = 400, description = "Bad query", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 404, description = "Out of range", body = crate::problem::Problem, content_type = "application/problem+json")))]
pub(crate) async fn inclusion(
    State(s): State<AppState>,
    q: Result<Query<InclusionQuery>, QueryRejection>,
) -> Result<Json<InclusionProof>, Problem> {
    let Query(q) = q.map_err(bad_query)?;
    let hashes = s
        .log
        .inclusion_proof(LeafIndex(q.index), TreeSize(q.size))?;
    Ok(Json(InclusionProof {
        index: Some(q.index),
        size: q.size,
        hashes: b64(hashes),
    }))
}

/// The most checkpoints one `GET /v1/checkpoints` answers.
pub const CHECKPOINTS_PAGE_MAX: usize = 1000;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct CheckpointsQuery {
    /// The smallest tree size (default 0).
    from: Option<u64>,
    /// At most this many (1..=1000, default 1000).
    limit: Option<usize>,
}

/// Every checkpoint the log signed (one per durable batch), by size: what `govern export`
/// writes beside the tiles, so an auditor holds each signed root, not only the latest.
#[utoipa::path(get, path = "/v1/checkpoints", tag = "log", params(CheckpointsQuery),
    responses((status = 200, description = "Signed checkpoints by size", body = Checkpoints),
        (status = 400, description = "Bad query", body = crate::problem::Problem, content_type = "application/problem+json")))]
pub(crate) async fn checkpoints(
    State(s): State<AppState>,
    q: Result<Query<CheckpointsQuery>, QueryRejection>,
) -> Result<Json<Checkpoints>, Problem> {
    let Query(q) = q.map_err(bad_query)?;
    let limit = page_limit(q.limit, CHECKPOINTS_PAGE_MAX, CHECKPOINTS_PAGE_MAX)?;
    let from = q.from.unwrap_or(0);
    let to = s.log.latest().size.0.saturating_add(1);
    let rows = s
        .log
        .checkpoints(TreeSize(from), TreeSize(to.max(from)), limit)?;
    let next = (rows.len() == limit)
        .then(|| rows.last().map(|(size, _)| size.0 + 1))
        .flatten();
    Ok(Json(Checkpoints {
        checkpoints: rows
            .into_iter()
            .map(|(size, note)| SignedCheckpoint { size: size.0, note })
            .collect(),
        next,
    }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ConsistencyQuery {
    from: u64,
    to: u64,
}

#[utoipa::path(get, path = "/v1/proofs/consistency", tag = "log", params(ConsistencyQuery),
    responses((status = 200, description = "Consistency proof", body = ConsistencyProof),
        (status = 400, description = "Bad query", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 404, description = "Out of range", body = crate::problem::Problem, content_type = "application/problem+json")))]
pub(crate) async fn consistency(
    State(s): State<AppState>,
    q: Result<Query<ConsistencyQuery>, QueryRejection>,
) -> Result<Json<ConsistencyProof>, Problem> {
    let Query(q) = q.map_err(bad_query)?;
    let hashes = s.log.consistency_proof(TreeSize(q.from), TreeSize(q.to))?;
    Ok(Json(ConsistencyProof {
        from: q.from,
        to: q.to,
        hashes: b64(hashes),
    }))
}

/// The longest `GET /checkpoint?after=N&wait_ms=M` waits for a newer checkpoint.
pub const CHECKPOINT_WAIT_MS_MAX: u64 = 30_000;

/// A long poll of `GET /checkpoint`: answer once the checkpoint served is larger than
/// `after`, or after `wait_ms` (at most [`CHECKPOINT_WAIT_MS_MAX`]) with the current one.
/// Without `after` it answers at once, as C2SP's `tlog-tiles` clients expect.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct CheckpointQuery {
    /// Wait for a checkpoint of a size larger than this.
    pub after: Option<u64>,
    /// How long to wait, in milliseconds (default and cap: 30,000).
    pub wait_ms: Option<u64>,
}

/// The size of the checkpoint `/checkpoint` serves now: the latest quorum-cosigned one
/// under a witness policy, else the log's latest.
fn served_size(s: &AppState) -> Option<u64> {
    match &s.witnessing {
        Some(w) if !w.policy().is_empty() => w.latest().map(|l| l.size.0),
        _ => Some(s.log.latest().size.0),
    }
}

/// Wait until the served checkpoint is larger than `after`, or `wait` passes.
async fn wait_for_checkpoint(s: &AppState, after: u64, wait: std::time::Duration) {
    let deadline = tokio::time::Instant::now() + wait;
    let bigger = |s: &AppState| served_size(s).is_some_and(|n| n > after);
    match &s.witnessing {
        Some(w) if !w.policy().is_empty() => {
            let mut rx = w.subscribe();
            while !bigger(s) {
                if tokio::time::timeout_at(deadline, rx.changed())
                    .await
                    .map_or(true, |r| r.is_err())
                {
                    return;
                }
            }
        }
        _ => {
            let mut rx = s.log.subscribe();
            while !bigger(s) {
                if tokio::time::timeout_at(deadline, rx.changed())
                    .await
                    .map_or(true, |r| r.is_err())
                {
                    return;
                }
            }
        }
    }
}

#[utoipa::path(get, path = "/checkpoint", tag = "log", params(CheckpointQuery),
    responses((status = 200, description = "The latest C2SP signed checkpoint; under a witness policy, the latest one cosigned by a quorum of its witnesses. With `after`, answered once one larger than `after` exists or `wait_ms` passed (the current one then)", body = String, content_type = "text/plain"),
        (status = 400, description = "A query that is not two unsigned integers", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 503, description = "No checkpoint has a quorum of witness cosignatures yet", body = crate::problem::Problem, content_type = "application/problem+json")))]
pub(crate) async fn checkpoint(
    State(s): State<AppState>,
    query: Result<Query<CheckpointQuery>, QueryRejection>,
) -> Response {
    let q = match query {
        Ok(Query(q)) => q,
        Err(e) => return bad_query(e).into_response(),
    };
    if let Some(after) = q.after {
        let wait = q
            .wait_ms
            .unwrap_or(CHECKPOINT_WAIT_MS_MAX)
            .min(CHECKPOINT_WAIT_MS_MAX);
        wait_for_checkpoint(&s, after, std::time::Duration::from_millis(wait)).await;
    }
    let note: String = match &s.witnessing {
        Some(w) if !w.policy().is_empty() => match w.latest() {
            Some(l) => l.note.to_string(),
            None => {
                return Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "not-witnessed",
                    "No witnessed checkpoint yet",
                    format!(
                        "no checkpoint has {} witness cosignatures yet",
                        w.policy().quorum()
                    ),
                )
                .retry_after(1)
                .into_response();
            }
        },
        _ => s.log.latest().note.clone(),
    };
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        note,
    )
        .into_response()
}

#[utoipa::path(get, path = "/tile/{path}", tag = "log",
    params(("path" = String, Path, description = "C2SP tlog-tiles path")),
    responses((status = 200, description = "Tile bytes", body = Vec<u8>, content_type = "application/octet-stream"),
        (status = 400, description = "Bad path", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 404, description = "No such tile", body = crate::problem::Problem, content_type = "application/problem+json")))]
pub(crate) async fn tile(
    State(s): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, Problem> {
    let Path(path) = path.map_err(bad_path)?;
    let tile = Tile::parse(&path).map_err(|e| {
        Problem::new(
            StatusCode::NOT_FOUND,
            "tile-not-found",
            "No such tile",
            e.to_string(),
        )
    })?;
    let bytes = s.log.tile(tile)?;
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            ),
            // A tile's bytes never change once it exists.
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=31536000, immutable"),
            ),
        ],
        bytes,
    )
        .into_response())
}
