//! The edge (docs/design.md §4): tenants, users, passkeys and API keys, sessions, and User Action
//! Signing in front of every sensitive request.
//!
//! - **Tenants**: the operator creates one (`POST /v1/tenants`, bearer = the data dir's
//!   `operator.token`); the edge appends `tenant.created` with the hash of a one-time
//!   invitation for its first admin (trust on first use, visible in the log).
//! - **Registration** (webauthn-rs): an invitation's secret starts a passkey ceremony; its
//!   result appends `user.registered` and `credential.registered` (the COSE public key and
//!   the `attestationObject`, so the log alone can check every later signature).
//! - **Login** gives a short-lived session: a passkey through webauthn-rs, an API key by
//!   signing a `govern/login/v1` challenge object.
//! - **Actions**: `POST /v1/auth/action/init` returns the nonce and anchor of a challenge
//!   object for the exact request (kind, method, path, salted body commitment); the client
//!   signs its challenge; `POST /v1/auth/action` verifies it with the same offline verifier
//!   the log runs and returns a single-use `userAction` token for that request only. Every
//!   sensitive endpoint takes the token in `X-Govern-User-Action` and appends an event that
//!   carries the challenge object and the user's signature; the log checks them again.
//!
//! - **Sealed payloads** (docs/design.md §7): the edge seals the parameters of every sealed kind
//!   (govern-core's `seal::SEALED_KINDS`: registrations' names, wallets, transfers,
//!   policies, approvals) with the commitment salt, under the newest scope key the key
//!   service released to the edge's attested identity; clear fields are only ever the
//!   signed path's (an approval's decision). Reads of
//!   sealed data go through [`crate::tenant_keys`], which records every opening in a
//!   `reads.audit` event.
//!
//! Sessions, ceremonies, pending actions and tokens live in memory: they are short-lived by
//! design, and a restart only asks users to sign in again. What must survive is in the log
//! (users, credentials, nonces, counters) or, for webauthn-rs's login state of a passkey, in
//! `<data-dir>/passkeys/`, written durably before the registration's appends.
//!
//! Every in-memory table is bounded, and by whom a bound can be reached decides how: login
//! needs only public ids, so login ceremonies are bounded per source address and in all,
//! and a full bound refuses the new start, never evicting a pending ceremony (anyone can
//! start one for any user); sessions, pending actions and tokens can only be made by their
//! user, so their per-user and per-session caps end the caller's own oldest.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use govern_admission::StateView;
use govern_admission::actions::{
    UserActionError, check_counter, check_keys_of, name_ok, verify_with_credential,
};
use govern_core::action::{
    ACTION_DOMAIN, Anchor, ChallengeObject, Credential, CredentialType, LOGIN_DOMAIN,
    UserSignature, body_commitment, registered_credential, verify_login,
};
use govern_core::event::{Kind, RequestId, TenantId};
use govern_core::ids::LeafHash;
use govern_projections::tenants::{
    self, APPROVAL_DECIDED, CREDENTIAL_REGISTERED, POLICY_CHANGED, TRANSFER_REQUESTED, Tenant,
    USER_INVITED, UserRole, WALLET_REQUESTED,
};
use govern_store::{AppendError, Appended, Appender, Clock, Entropy, OsEntropy, SystemClock};
use parking_lot::Mutex;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};
use sha2::{Digest as _, Sha256};
use uuid::Uuid;
use webauthn_rs::prelude::{
    Passkey, PasskeyAuthentication, PasskeyRegistration, PublicKeyCredential,
    RegisterPublicKeyCredential, Url, Webauthn, WebauthnBuilder,
};

use crate::boot::LocalService;
use crate::keys::{KeyError, KeyRelease, ScopeKeys};
use crate::problem::Problem;
use zeroize::Zeroizing;

mod actions;
mod ceremonies;
mod service;
pub use service::{PasskeyFiles, PasskeyStore};

pub(crate) use actions::*;
pub(crate) use ceremonies::*;

/// How long a session lasts.
pub const SESSION_TTL_S: i64 = 15 * 60;
/// How long a registration or login ceremony, or an initiated action, waits.
pub const CEREMONY_TTL_S: i64 = 5 * 60;
/// How long a `userAction` token lasts.
pub const ACTION_TOKEN_TTL_S: i64 = 2 * 60;
/// The largest action body.
pub const ACTION_BODY_BYTES_MAX: usize = 16 * 1024;
/// The most entries of each in-memory table (ceremonies, sessions, actions, tokens);
/// beyond it the oldest expired are dropped, then new ones are refused (503).
pub const VOLATILE_ENTRIES_MAX: usize = 100_000;
/// The most login ceremonies in flight from one source ([`Source`]): login needs only public
/// ids, so this bound and [`VOLATILE_ENTRIES_MAX`] protect memory, never a per-user one (an
/// attacker could reach it for a victim). Beyond it a new start is refused (`too-many-logins`,
/// 429) and no pending ceremony is evicted. A person completes a login in seconds; 64
/// abandoned in 5 minutes leaves room for a shared NAT.
pub const LOGINS_PER_SOURCE_MAX: usize = 64;
/// How much of an IPv6 address names one source: its /56, what an end site is typically
/// given (RFC 6177), so one holder of many addresses counts once.
pub const SOURCE_IPV6_PREFIX_BITS: u32 = 56;
/// The most sessions of one user: only the user can make one (login needs their credential),
/// so the user's oldest session ends to admit a new one, and no device is locked out by a
/// lost one's session.
pub const SESSIONS_PER_USER_MAX: usize = 16;
/// The most initiated actions, and the most unused tokens, per session.
pub const ACTIONS_PER_SESSION_MAX: usize = 64;
/// The longest file name the passkey store writes (`NAME_MAX` of common file systems).
pub const FILE_NAME_BYTES_MAX: usize = 255;
/// The file name suffix of a passkey's state.
const PASSKEY_FILE_SUFFIX: &str = ".json";
/// The longest credential id (base64url) a passkey may register with: its file name,
/// `<id>.json`, must fit [`FILE_NAME_BYTES_MAX`] (ids up to 187 bytes; authenticators use 16
/// to 64).
pub const PASSKEY_ID_CHARS_MAX: usize = FILE_NAME_BYTES_MAX - PASSKEY_FILE_SUFFIX.len();
const _: () = assert!(LOGINS_PER_SOURCE_MAX < VOLATILE_ENTRIES_MAX);
const _: () = assert!(SESSIONS_PER_USER_MAX < VOLATILE_ENTRIES_MAX);
const _: () = assert!(SOURCE_IPV6_PREFIX_BITS > 0 && SOURCE_IPV6_PREFIX_BITS <= 128);
/// The header carrying a `userAction` token.
pub const USER_ACTION_HEADER: &str = "x-govern-user-action";

/// Where users sign from.
#[derive(Clone, Debug)]
pub struct EdgeConfig {
    /// The WebAuthn relying party id (`localhost` in dev; never an IP address).
    pub rp_id: String,
    /// The web origin users' browsers and API clients sign from.
    pub origin: Url,
    /// Seconds a session lasts ([`SESSION_TTL_S`]).
    pub session_ttl_s: i64,
    /// Seconds a ceremony or an initiated action waits ([`CEREMONY_TTL_S`]).
    pub ceremony_ttl_s: i64,
    /// Seconds a `userAction` token lasts ([`ACTION_TOKEN_TTL_S`]).
    pub action_token_ttl_s: i64,
}

impl EdgeConfig {
    /// Check `rp_id` (a domain name, not an IP address) and `origin` (on it).
    ///
    /// # Errors
    /// What is wrong.
    pub fn new(rp_id: &str, origin: &str) -> Result<Self, String> {
        if rp_id.parse::<std::net::IpAddr>().is_ok() || rp_id.starts_with('[') {
            return Err(format!(
                "rp_id {rp_id:?} is an IP address; WebAuthn needs a domain name (localhost in dev)"
            ));
        }
        if rp_id.is_empty()
            || !rp_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        {
            return Err(format!("rp_id {rp_id:?} is not a domain name"));
        }
        let origin = Url::parse(origin).map_err(|e| format!("origin {origin:?}: {e}"))?;
        let host = origin.host_str().unwrap_or_default();
        if host != rp_id && !host.ends_with(&format!(".{rp_id}")) {
            return Err(format!("origin {origin} is not on rp_id {rp_id}"));
        }
        if origin.scheme() != "https" && !(origin.scheme() == "http" && host == "localhost") {
            return Err(format!(
                "origin {origin} must be https (http only on localhost)"
            ));
        }
        // What webauthn-rs will check when the edge starts, checked now: a node validates
        // its settings before it writes anything.
        WebauthnBuilder::new(rp_id, &origin)
            .and_then(|b| b.rp_name("govern").build())
            .map_err(|e| format!("webauthn relying party: {e}"))?;
        Ok(Self {
            rp_id: rp_id.into(),
            origin,
            session_ttl_s: SESSION_TTL_S,
            ceremony_ttl_s: CEREMONY_TTL_S,
            action_token_ttl_s: ACTION_TOKEN_TTL_S,
        })
    }

    /// The origin as browsers serialize it (no trailing slash).
    #[must_use]
    pub fn origin_text(&self) -> String {
        self.origin.origin().ascii_serialization()
    }
}

struct Registration {
    tenant: TenantId,
    invite: String,
    name: String,
    user: Uuid,
    state: PasskeyRegistration,
    expires: i64,
}

enum LoginState {
    Passkey(PasskeyAuthentication),
    Key(Box<ChallengeObject>),
}

struct Login {
    tenant: TenantId,
    user: String,
    state: LoginState,
    expires: i64,
}

/// A signed-in user.
#[derive(Clone, Debug)]
pub(crate) struct Session {
    pub(crate) tenant: TenantId,
    pub(crate) user: String,
    credential: String,
    expires: i64,
}

struct PendingAction {
    session: String,
    object: ChallengeObject,
    /// The commitment's salt (the object carries only the commitment).
    salt: [u8; 32],
    expires: i64,
}

struct ActionToken {
    object: ChallengeObject,
    signature: UserSignature,
    salt: [u8; 32],
    expires: i64,
}

/// Where a request came from, as the per-source bounds count it: the peer's IPv4 address, or
/// its IPv6 address's /[`SOURCE_IPV6_PREFIX_BITS`] prefix. `Unknown` when the router is
/// served without connect info (an in-process caller): one source for all of those.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Source {
    /// A peer address (an IPv6 one cut to its prefix; an IPv4-mapped one as IPv4).
    Ip(IpAddr),
    /// No peer address.
    Unknown,
}

impl Source {
    /// The source of peer address `ip`.
    #[must_use]
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self::Ip(IpAddr::V4(v4)),
                None => {
                    let prefix = u128::MAX << (128 - SOURCE_IPV6_PREFIX_BITS);
                    Self::Ip(IpAddr::V6(Ipv6Addr::from(u128::from(v6) & prefix)))
                }
            },
            v4 @ IpAddr::V4(_) => Self::Ip(v4),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Source {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(Self::Unknown, |c| Self::of(c.0.ip())))
    }
}

#[derive(Default)]
struct Volatile {
    registrations: HashMap<String, Registration>,
    logins: HashMap<String, Login>,
    sessions: HashMap<String, Session>,
    pending: HashMap<String, PendingAction>,
    tokens: HashMap<String, ActionToken>,
    /// Per source, its login ceremonies (a full source is refused: [`LOGINS_PER_SOURCE_MAX`]).
    logins_from: HashMap<Source, VecDeque<String>>,
    /// Per user, their latest sessions; per session, their latest pending actions and tokens:
    /// only their owner makes them, so the owner's oldest go beyond the caps.
    sessions_of: HashMap<String, VecDeque<String>>,
    pending_of: HashMap<String, VecDeque<String>>,
    tokens_of: HashMap<String, VecDeque<String>>,
}

/// The edge service of a node.
pub struct Edge {
    config: EdgeConfig,
    webauthn: Webauthn,
    pub(crate) log: Arc<dyn Appender>,
    pub(crate) policy: Arc<dyn StateView>,
    pub(crate) service: Arc<LocalService>,
    /// How the edge obtains its scope keys: the release request a remote worker sends, to
    /// the key service in process by default.
    release: Arc<dyn KeyRelease>,
    /// The clock its sessions, ceremonies and events are timed by.
    clock: Arc<dyn Clock>,
    /// Where its tokens, ids, nonces and salts come from.
    entropy: Arc<dyn Entropy>,
    operator_token: String,
    /// Each passkey's state.
    passkeys: Arc<dyn PasskeyStore>,
    volatile: Mutex<Volatile>,
    /// Scope keys released to the edge, per tenant (every version of every scope its
    /// manifest entry lists), dropped when the tenant rotates or is shredded.
    scope_keys: Mutex<HashMap<TenantId, Arc<ScopeKeys>>>,
    /// One release at a time, so concurrent first actions of a tenant ask once.
    releasing: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Edge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Edge")
            .field("rp_id", &self.config.rp_id)
            .field("origin", &self.config.origin_text())
            .finish_non_exhaustive()
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Insert into a bounded table: expired entries go first; a full table refuses.
fn insert_bounded<V>(
    now: i64,
    map: &mut HashMap<String, V>,
    key: String,
    value: V,
    expires: impl Fn(&V) -> i64,
) -> Result<(), Problem> {
    if map.len() >= VOLATILE_ENTRIES_MAX {
        map.retain(|_, v| expires(v) > now);
        if map.len() >= VOLATILE_ENTRIES_MAX {
            return Err(Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "edge-busy",
                "Too many ceremonies in flight",
                "too many sessions, ceremonies or actions are in flight; retry shortly",
            )
            .retry_after(1));
        }
    }
    map.insert(key, value);
    Ok(())
}

/// Keep at most `cap` of `owner`'s entries in `map`: beyond it, the owner's oldest go (for
/// tables only their owner fills). Returns the keys that went.
fn cap_per_owner<V>(
    map: &mut HashMap<String, V>,
    owners: &mut HashMap<String, VecDeque<String>>,
    owner: &str,
    key: &str,
    cap: usize,
) -> Vec<String> {
    let queue = owners.entry(owner.to_string()).or_default();
    queue.retain(|k| map.contains_key(k));
    queue.push_back(key.to_string());
    let mut gone = Vec::new();
    while queue.len() > cap {
        if let Some(old) = queue.pop_front() {
            map.remove(&old);
            gone.push(old);
        }
    }
    if owners.len() > VOLATILE_ENTRIES_MAX {
        owners.retain(|_, q| q.iter().any(|k| map.contains_key(k)));
    }
    gone
}

/// Drop every entry `owner` holds in `map` (a session's pending actions or tokens, when the
/// session ends).
fn drop_owned<V>(
    map: &mut HashMap<String, V>,
    owners: &mut HashMap<String, VecDeque<String>>,
    owner: &str,
) {
    for key in owners.remove(owner).unwrap_or_default() {
        map.remove(&key);
    }
}

/// Admit one more login ceremony from `source`, or refuse: its pending, unexpired ceremonies
/// are counted (its expired ones are dropped), and at [`LOGINS_PER_SOURCE_MAX`] the new start
/// is refused. No pending ceremony is ever evicted to make room.
fn admit_login(
    logins: &mut HashMap<String, Login>,
    from: &mut HashMap<Source, VecDeque<String>>,
    source: Source,
    now: i64,
) -> Result<(), Problem> {
    let queue = from.entry(source).or_default();
    queue.retain(|id| match logins.get(id) {
        Some(l) if l.expires > now => true,
        Some(_) => {
            logins.remove(id);
            false
        }
        None => false,
    });
    if queue.len() >= LOGINS_PER_SOURCE_MAX {
        let free_in = queue
            .front()
            .and_then(|id| logins.get(id))
            .map_or(1, |l| l.expires - now);
        return Err(Problem::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too-many-logins",
            "Too many logins in flight from this address",
            format!(
                "at most {LOGINS_PER_SOURCE_MAX} login ceremonies may be pending from one address; finish one or retry later"
            ),
        )
        .retry_after(u64::try_from(free_in.max(1)).unwrap_or(1)));
    }
    if from.len() > VOLATILE_ENTRIES_MAX {
        from.retain(|_, q| q.iter().any(|id| logins.contains_key(id)));
    }
    Ok(())
}

/// The token of an `Authorization: Bearer` header.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
}

pub(crate) fn operator_required() -> Problem {
    Problem::new(
        StatusCode::UNAUTHORIZED,
        "operator-unauthorized",
        "Operator token required",
        "send Authorization: Bearer <the data dir's operator.token>",
    )
}

pub(crate) fn bad_body(detail: impl Into<String>) -> Problem {
    Problem::new(
        StatusCode::BAD_REQUEST,
        "invalid-body",
        "Request body refused",
        detail,
    )
}

/// A 404 whose body names only the kind of thing asked for, so another tenant's id answers
/// byte for byte as a missing one.
pub(crate) fn not_found(what: &str, _id: &str) -> Problem {
    Problem::new(
        StatusCode::NOT_FOUND,
        "not-found",
        "No such resource",
        if what == "tenant" {
            // A tenant is not in a tenant: say where it was looked for.
            "no such tenant on this node".to_owned()
        } else {
            format!("no such {what} in this tenant")
        },
    )
}

fn unauthenticated(detail: &str) -> Problem {
    Problem::new(
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
        "Sign in first",
        detail.to_string(),
    )
}

fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Problem> {
    serde_json::from_slice(bytes).map_err(|e| bad_body(format!("not the JSON expected: {e}")))
}

pub(crate) fn forbidden(kind: &str, title: &'static str, detail: impl Into<String>) -> Problem {
    Problem::new(StatusCode::FORBIDDEN, kind, title, detail)
}

impl From<UserActionError> for Problem {
    fn from(e: UserActionError) -> Self {
        let (kind, title) = e.problem();
        let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::FORBIDDEN);
        Problem::new(status, kind, title, e.to_string())
    }
}

/// The one parent the event of an action at `method` `path` follows: the log's own rule
/// (govern-store's `actions::required_parent`), which it checks again at append. An object
/// that does not exist is `not-found`, as the edge answers every missing id.
fn parent_of(
    tenant: &Tenant,
    kind: &str,
    method: &str,
    path: &str,
    params: &Map<String, Value>,
) -> Result<LeafHash, Problem> {
    let target = govern_core::action::route_of(method, path)
        .map(|(_, target)| target)
        .ok_or_else(|| Problem::no_route(path))?;
    govern_admission::actions::required_parent(tenant, kind, target, params)
        .map(|(_, parent)| parent)
        .map_err(|e| match e {
            UserActionError::Unknown { what, id } => not_found(what, &id),
            UserActionError::Malformed { reason, .. } => bad_body(reason),
            other => Problem::from(other),
        })
}

/// The longest approval comment.
pub const COMMENT_BYTES_MAX: usize = 1000;

/// Which kind an action request appends: the route table of the sensitive endpoints.
fn kind_of_route(method: &str, path: &str) -> Option<&'static str> {
    // One route table, govern-core's: the log and every verifier check the signed path by it.
    govern_core::action::route_of(method, path).map(|(kind, _)| kind)
}

fn action_body(bytes: &[u8]) -> Result<Map<String, Value>, Problem> {
    if bytes.len() > ACTION_BODY_BYTES_MAX {
        return Err(bad_body(format!(
            "an action body is at most {ACTION_BODY_BYTES_MAX} bytes"
        )));
    }
    let body: Value = parse(bytes)?;
    let Value::Object(body) = body else {
        return Err(bad_body("an action body is a JSON object"));
    };
    if let Some(e) = govern_core::canonical::first_unsafe_number(&Value::Object(body.clone())) {
        return Err(bad_body(e.to_string()));
    }
    Ok(body)
}

// ---------------------------------------------------------------------------------------
// Request and response bodies: those with no WebAuthn type are the client's (govern-client).

pub use govern_client::wire::edge::{
    ActionInit, ActionSign, CreateTenant, InviteOut, LoginStart, RegisterStart, SessionOut,
};

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RegisterFinish {
    registration: String,
    /// The WebAuthn `PublicKeyCredential` of `navigator.credentials.create`, bytes base64url.
    #[schema(value_type = Object)]
    credential: RegisterPublicKeyCredential,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct LoginFinish {
    login: String,
    /// A passkey's `PublicKeyCredential` of `navigator.credentials.get`.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    assertion: Option<PublicKeyCredential>,
    /// An API key's signature over the login challenge object.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    signature: Option<UserSignature>,
}

fn problem_of_append(e: AppendError) -> Problem {
    e.into()
}

/// The edge's routes.
pub fn routes(edge: Arc<Edge>) -> Router {
    Router::new()
        .route("/v1/tenants", post(create_tenant))
        .route("/v1/auth/register/start", post(register_start))
        .route("/v1/auth/register/finish", post(register_finish))
        .route("/v1/auth/login/start", post(login_start))
        .route("/v1/auth/login/finish", post(login_finish))
        .route("/v1/auth/action/init", post(action_init))
        .route("/v1/auth/action", post(action_sign))
        .route("/v1/me", get(me))
        .route("/v1/credentials/{id}", get(credential))
        .route("/v1/requests", get(crate::requests::list_requests))
        .route("/v1/requests/{id}", get(request_status))
        .route("/v1/wallets/{id}", get(wallet))
        .route("/v1/users", post(invite_user))
        .route("/v1/users/role", post(change_role))
        .route("/v1/credentials", post(add_credential))
        .route("/v1/credentials/revoke", post(revoke_credential))
        .route("/v1/wallets", post(request_wallet))
        .route("/v1/wallets/{id}/transfers", post(request_transfer))
        .route("/v1/policies", post(change_policy))
        .route(
            "/v1/requests/{id}/approvals/{decision}",
            post(decide_approval),
        )
        .route(
            "/v1/tenants/{tenant}/payloads/{scope}",
            get(crate::tenant_keys::payloads),
        )
        .with_state(edge)
}

/// `GET /v1/credentials/{id}` (session): a credential of the session's tenant: whose it is,
/// its registration entry, its revocation and the latest action signed with it. Any user of
/// the tenant may read it: a receipt chain names the credentials that signed its actions,
/// and whoever verifies the chain needs the key the log recorded for each.
#[utoipa::path(get,
    path = "/v1/credentials/{id}",
    tag = "edge",
    params(("id" = String, Path, description = "Credential id (base64url)")),
    responses((status = 200, description = "The credential's user, registration, revocation and latest action", body = Object), (status = 401, description = "Sign in first", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 404, description = "No such credential in this tenant", body = crate::problem::Problem, content_type = "application/problem+json")),
    security(("session" = [])))]
pub(crate) async fn credential(
    State(edge): State<Arc<Edge>>,
    headers: HeaderMap,
    id: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Result<Response, Problem> {
    let session = edge.session(&headers)?;
    // An id that is not UTF-8 names no credential.
    let Ok(Path(id)) = id else {
        return Err(not_found("credential", ""));
    };
    let c = edge
        .with_tenant(&session.tenant, |t| t.credentials.get(&id).cloned())
        .flatten()
        .ok_or_else(|| not_found("credential", &id))?;
    let mut view = credential_view(&c);
    view["user"] = json!(c.credential.user);
    Ok(axum::Json(view).into_response())
}

/// A credential as `GET /v1/me` lists it (`GET /v1/credentials/{id}` adds its user).
fn credential_view(c: &govern_projections::tenants::CredentialState) -> Value {
    json!({
        "id": c.credential.id,
        "type": c.credential.kind,
        "registered": c.registered,
        "leaf": c.leaf,
        "revoked": c.revoked,
        "last_action": c.last_action,
    })
}

/// `GET /v1/me` (session): the user, their role and credentials, and the tenant.
#[utoipa::path(get,
    path = "/v1/me",
    tag = "edge",
    responses((status = 200, description = "The signed-in user, their credentials and the tenant's wallets", body = Object), (status = 401, description = "Sign in first", body = crate::problem::Problem, content_type = "application/problem+json")),
    security(("session" = [])))]
pub(crate) async fn me(
    State(edge): State<Arc<Edge>>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let session = edge.session(&headers)?;
    let tenant = edge
        .tenant(&session.tenant)
        .ok_or_else(|| unauthenticated("the session's tenant is gone"))?;
    let user = tenant
        .users
        .get(&session.user)
        .ok_or_else(|| unauthenticated("the session's user is gone"))?;
    let credentials: Vec<Value> = tenant
        .credentials_of(&session.user)
        .map(credential_view)
        .collect();
    Ok(axum::Json(json!({
        "tenant": {"id": session.tenant.0.to_string(), "name": tenant.name},
        "user": user,
        "credential": session.credential,
        "credentials": credentials,
        "wallets": edge
            .with_tenant(&session.tenant, |t| t.wallets.values().cloned().collect::<Vec<_>>())
            .unwrap_or_default(),
    }))
    .into_response())
}

/// `GET /v1/requests/{id}` (session): status and the chain of event indices so far; for a
/// signed transfer, its transaction (hash and raw bytes, 0x hex).
#[utoipa::path(get,
    path = "/v1/requests/{id}",
    tag = "edge",
    params(("id" = String, Path, description = "Request id")),
    responses((status = 200, description = "Status and the chain of event indices so far", body = Object), (status = 401, description = "Sign in first", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 404, description = "No such request in this tenant", body = crate::problem::Problem, content_type = "application/problem+json")),
    security(("session" = [])))]
pub(crate) async fn request_status(
    State(edge): State<Arc<Edge>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let session = edge.session(&headers)?;
    let request = edge
        .with_tenant(&session.tenant, |t| t.requests.get(&id).cloned())
        .flatten()
        .ok_or_else(|| not_found("request", &id))?;
    let mut answer = serde_json::to_value(&request).unwrap_or_default();
    // A signed transfer: its raw transaction, opened from `transfer.signed` with the edge's
    // `transfers` key (the opening recorded in `reads.audit`).
    if let Some(tx) = &request.transaction {
        let opened =
            crate::tenant_keys::open_entries(&edge, &session.tenant, "transfers", &[tx.index])
                .await?;
        if let Some(raw) = opened.first().and_then(|(_, m)| m.get("raw")).cloned() {
            answer["transaction"]["raw"] = raw;
        }
    }
    Ok(axum::Json(answer).into_response())
}

/// `GET /v1/wallets/{id}` (session).
#[utoipa::path(get,
    path = "/v1/wallets/{id}",
    tag = "edge",
    params(("id" = String, Path, description = "Wallet id (its request)")),
    responses((status = 200, description = "The wallet", body = Object), (status = 401, description = "Sign in first", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 404, description = "No such wallet in this tenant", body = crate::problem::Problem, content_type = "application/problem+json")),
    security(("session" = [])))]
pub(crate) async fn wallet(
    State(edge): State<Arc<Edge>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let session = edge.session(&headers)?;
    let wallet = edge
        .with_tenant(&session.tenant, |t| t.wallets.get(&id).cloned())
        .flatten()
        .ok_or_else(|| not_found("wallet", &id))?;
    Ok(axum::Json(wallet).into_response())
}

pub use govern_client::action::key_credential_params;

/// A credential as the tenant fold holds it (for callers that sign with it).
#[must_use]
pub fn credential_of(tenant: &Tenant, id: &str) -> Option<Credential> {
    tenant.credentials.get(id).map(|c| c.credential.clone())
}
