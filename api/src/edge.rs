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
use crate::keys::{KeyError, KeyRelease, KeyService, ScopeKeys};
use crate::problem::Problem;
use zeroize::Zeroizing;

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
    /// The key service's own endpoints, which the node serves on its behalf (rotation,
    /// shredding, key status, `POST /v1/keys/release`).
    pub(crate) keys: Arc<KeyService>,
    /// How the edge obtains its scope keys: the release request a remote worker sends, to
    /// the key service in process by default.
    release: Arc<dyn KeyRelease>,
    /// The clock its sessions, ceremonies and events are timed by.
    clock: Arc<dyn Clock>,
    /// Where its tokens, ids, nonces and salts come from.
    entropy: Arc<dyn Entropy>,
    operator_token: String,
    passkeys_dir: PathBuf,
    /// Held while a passkey file is written (and, for a registration, while its id is checked
    /// free in the tenant): two registrations cannot both take one id, and two logins of one
    /// passkey do not write its temporary file at once.
    passkeys_writing: Mutex<()>,
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

// ---------------------------------------------------------------------------------------

impl Edge {
    /// The edge of a node: `service` is its attested identity.
    ///
    /// # Errors
    /// When webauthn-rs refuses the relying party.
    pub fn new(
        config: EdgeConfig,
        log: Arc<dyn Appender>,
        policy: Arc<dyn StateView>,
        service: Arc<LocalService>,
        keys: Arc<KeyService>,
        operator_token: String,
        passkeys_dir: PathBuf,
    ) -> Result<Self, String> {
        let webauthn = WebauthnBuilder::new(&config.rp_id, &config.origin)
            .map_err(|e| format!("webauthn relying party: {e}"))?
            .rp_name("govern")
            .build()
            .map_err(|e| format!("webauthn relying party: {e}"))?;
        std::fs::create_dir_all(&passkeys_dir)
            .map_err(|e| format!("{}: {e}", passkeys_dir.display()))?;
        Ok(Self {
            config,
            webauthn,
            log,
            policy,
            service,
            release: Arc::clone(&keys) as Arc<dyn KeyRelease>,
            clock: Arc::new(SystemClock),
            entropy: Arc::new(OsEntropy),
            keys,
            operator_token,
            passkeys_dir,
            passkeys_writing: Mutex::new(()),
            volatile: Mutex::new(Volatile::default()),
            scope_keys: Mutex::new(HashMap::new()),
            releasing: tokio::sync::Mutex::new(()),
        })
    }

    /// Take time and randomness from `clock` and `entropy` (the node passes the log's clock
    /// and the operating system's randomness, which [`Edge::new`] starts with).
    #[must_use]
    pub fn with_sources(mut self, clock: Arc<dyn Clock>, entropy: Arc<dyn Entropy>) -> Self {
        self.clock = clock;
        self.entropy = entropy;
        self
    }

    /// A fresh request id from the edge's clock and entropy.
    pub(crate) fn request_id(&self) -> RequestId {
        RequestId::v7(self.clock.now(), &*self.entropy)
    }

    fn now_s(&self) -> i64 {
        self.clock.now().unix_ms() / 1000
    }

    fn fill(&self, buf: &mut [u8]) {
        self.entropy.fill(buf);
    }

    fn random_token(&self) -> String {
        let mut b = [0u8; 32];
        self.fill(&mut b);
        B64URL.encode(b)
    }

    /// The relying party and origin.
    #[must_use]
    pub fn config(&self) -> &EdgeConfig {
        &self.config
    }

    /// A tenant as of the last durable batch, shared: no copy, and never the sequencer's
    /// lock.
    pub(crate) fn tenant(&self, id: &TenantId) -> Option<Arc<Tenant>> {
        self.policy.committed().tenant(id)
    }

    /// Drop the scope keys held for `tenant` (after a rotation or a shredding).
    pub(crate) fn forget_scope_keys(&self, tenant: &TenantId) {
        self.scope_keys.lock().remove(tenant);
    }

    /// Whether `headers` carry the operator's token (compared by digest, so the time taken
    /// says nothing about it).
    pub(crate) fn is_operator(&self, headers: &HeaderMap) -> bool {
        bearer(headers).is_some_and(|t| {
            Sha256::digest(t.as_bytes()) == Sha256::digest(self.operator_token.as_bytes())
        })
    }

    /// The tenant's scope keys as released to the edge: from the cache while the tenant's
    /// current version is among them, else released anew (a `keys.audit` each time).
    ///
    /// # Errors
    /// 410 for a shredded tenant, 403 `scope-denied` when the edge's manifest entry lacks a
    /// scope, 503 when the key service is unavailable.
    pub(crate) async fn scope_keys(&self, tenant: &TenantId) -> Result<Arc<ScopeKeys>, Problem> {
        let (current, shredded) = self
            .with_tenant(tenant, |t| (t.keys.current(), t.keys.shredded.is_some()))
            .ok_or_else(|| not_found("tenant", ""))?;
        if shredded {
            self.scope_keys.lock().remove(tenant);
            return Err(Problem::from(KeyError::Shredded(tenant.0.to_string())));
        }
        let cached = || {
            self.scope_keys
                .lock()
                .get(tenant)
                .filter(|k| k.versions().any(|(_, v)| *v == current))
                .cloned()
        };
        if let Some(keys) = cached() {
            return Ok(keys);
        }
        let _one = self.releasing.lock().await;
        if let Some(keys) = cached() {
            return Ok(keys);
        }
        let scopes: Vec<String> = self
            .policy
            .committed()
            .manifest()
            .and_then(|m| {
                m.manifest
                    .role(self.service.identity.keys().role())
                    .map(|r| r.scopes.clone())
            })
            .unwrap_or_default();
        if scopes.is_empty() {
            return Err(Problem::from(KeyError::ScopeDenied {
                role: self.service.identity.keys().role().to_string(),
                scope: "any".into(),
            }));
        }
        let scopes: Vec<&str> = scopes.iter().map(String::as_str).collect();
        let request =
            crate::keys::request_release(&self.service, tenant, &scopes, self.clock.now())?;
        let release = self.release.release(&request).await?;
        let keys = Arc::new(
            release
                .open(&request, self.service.identity.keys().x25519())
                .map_err(KeyError::from)?,
        );
        self.scope_keys.lock().insert(*tenant, Arc::clone(&keys));
        Ok(keys)
    }

    /// Seal `plaintext` into `event` for `kind`: its scope, the newest version released.
    async fn seal_for(
        &self,
        event: &mut govern_core::event::Event,
        sealed: &govern_core::seal::SealedKind,
        plaintext: &[u8],
    ) -> Result<(), Problem> {
        let keys = self.scope_keys(&event.tenant).await?;
        // The newest version released: the current one, or one just before a rotation that
        // landed meanwhile, which the log still takes (old versions stay valid).
        let (version, key) = keys
            .versions()
            .filter(|(s, _)| s == sealed.scope)
            .map(|(_, v)| *v)
            .max()
            .and_then(|v| keys.get(sealed.scope, v).map(|k| (v, k)))
            .ok_or_else(|| {
                Problem::from(KeyError::ScopeDenied {
                    role: self.service.identity.keys().role().to_string(),
                    scope: sealed.scope.to_string(),
                })
            })?;
        govern_core::seal::seal(event, key, sealed.scope, version, plaintext, &*self.entropy)
            .map_err(|e| bad_body(e.to_string()))
    }

    /// Read a tenant in place (briefly: the log's policy waits meanwhile).
    pub(crate) fn with_tenant<R>(
        &self,
        id: &TenantId,
        read: impl FnOnce(&Tenant) -> R,
    ) -> Option<R> {
        self.policy.committed().tenant(id).map(|t| read(&t))
    }

    pub(crate) fn session(&self, headers: &HeaderMap) -> Result<Session, Problem> {
        let token = bearer(headers)
            .ok_or_else(|| unauthenticated("send Authorization: Bearer <session>"))?;
        let session = self
            .volatile
            .lock()
            .sessions
            .get(token)
            .filter(|s| s.expires > self.now_s())
            .cloned()
            .ok_or_else(|| unauthenticated("the session is unknown or expired; sign in again"))?;
        // A revoked credential's sessions end with it.
        let live = self.with_tenant(&session.tenant, |t| {
            t.users.contains_key(&session.user) && t.live_credential(&session.credential).is_some()
        });
        if live != Some(true) {
            return Err(unauthenticated(
                "the session's credential was revoked; sign in again",
            ));
        }
        Ok(session)
    }

    fn new_session(
        &self,
        tenant: TenantId,
        user: &str,
        credential: &str,
    ) -> Result<SessionOut, Problem> {
        let token = self.random_token();
        let expires = self.now_s() + self.config.session_ttl_s;
        let mut vol = self.volatile.lock();
        let Volatile {
            sessions,
            sessions_of,
            pending,
            pending_of,
            tokens,
            tokens_of,
            ..
        } = &mut *vol;
        insert_bounded(
            self.now_s(),
            sessions,
            token.clone(),
            Session {
                tenant,
                user: user.into(),
                credential: credential.into(),
                expires,
            },
            |s| s.expires,
        )?;
        // Only the user makes their sessions: beyond the cap their oldest ends, with the
        // actions and tokens it started.
        let owner = format!("{}/{user}", tenant.0);
        for ended in cap_per_owner(sessions, sessions_of, &owner, &token, SESSIONS_PER_USER_MAX) {
            drop_owned(pending, pending_of, &ended);
            drop_owned(tokens, tokens_of, &ended);
        }
        drop(vol);
        Ok(SessionOut {
            session: token,
            expires,
            tenant: tenant.0.to_string(),
            user: user.into(),
            credential: credential.into(),
            request: None,
        })
    }

    pub(crate) async fn append(
        &self,
        kind: &str,
        tenant: TenantId,
        request: RequestId,
        parents: Vec<LeafHash>,
        body: Map<String, Value>,
    ) -> Result<Appended, Problem> {
        self.append_sealed(kind, tenant, request, parents, body, None)
            .await
    }

    /// Append an event of the edge's identity, its `sealed` payload made from `plaintext`
    /// when the kind is sealed.
    async fn append_sealed(
        &self,
        kind: &str,
        tenant: TenantId,
        request: RequestId,
        parents: Vec<LeafHash>,
        body: Map<String, Value>,
        plaintext: Option<Zeroizing<Vec<u8>>>,
    ) -> Result<Appended, Problem> {
        let not_attested = |e: String| {
            Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "edge-not-attested",
                "The edge has no live identity",
                e,
            )
            .retry_after(10)
        };
        let sealed = govern_core::seal::sealed_kind(kind);
        let kind = Kind::new(kind).map_err(|e| bad_body(e.to_string()))?;
        let identity = &self.service.identity;
        let attestation = identity
            .current()
            .ok_or_else(|| not_attested("not attested yet".into()))?;
        let mut event = govern_core::event::Event::new(
            kind,
            tenant,
            request,
            identity.keys().producer(),
            self.clock.now(),
            body,
        );
        event.parents = parents;
        event.attestation = Some(attestation);
        if let (Some(sealed), Some(plaintext)) = (sealed, plaintext) {
            self.seal_for(&mut event, sealed, &plaintext).await?;
        }
        let event = event
            .sign(identity.keys().signing_key())
            .map_err(|e| not_attested(e.to_string()))?;
        self.log.append(event).await.map_err(problem_of_append)
    }

    /// `<passkeys>/<tenant>/<credential id>.json`: a credential id is another tenant's
    /// business, never a key into it.
    ///
    /// # Errors
    /// `passkey-id-too-long` (400) when the file name would exceed [`FILE_NAME_BYTES_MAX`].
    fn passkey_path(&self, tenant: &TenantId, credential: &str) -> Result<PathBuf, Problem> {
        if credential.len() > PASSKEY_ID_CHARS_MAX {
            return Err(Problem::new(
                StatusCode::BAD_REQUEST,
                "passkey-id-too-long",
                "Credential id too long",
                format!(
                    "the credential id is {} base64url characters; this node stores at most {PASSKEY_ID_CHARS_MAX}",
                    credential.len()
                ),
            ));
        }
        Ok(self
            .passkeys_dir
            .join(tenant.0.to_string())
            .join(format!("{credential}{PASSKEY_FILE_SUFFIX}")))
    }

    /// Write a passkey's state (its counter after a login).
    fn save_passkey(
        &self,
        tenant: &TenantId,
        credential: &str,
        passkey: &Passkey,
    ) -> Result<(), Problem> {
        let _one = self.passkeys_writing.lock();
        self.write_passkey(tenant, credential, passkey)
    }

    /// Write a passkey's state durably (govern_workers::durable), its tenant's directory
    /// made (and its entry synced) first when new. The caller holds `passkeys_writing`.
    fn write_passkey(
        &self,
        tenant: &TenantId,
        credential: &str,
        passkey: &Passkey,
    ) -> Result<(), Problem> {
        let unavailable = |e: String| {
            Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage-unavailable",
                "Storage unavailable",
                e,
            )
        };
        let path = self.passkey_path(tenant, credential)?;
        if let Some(dir) = path.parent()
            && !dir.is_dir()
        {
            std::fs::create_dir_all(dir)
                .and_then(|()| govern_workers::durable::sync_dir(dir))
                .map_err(|e| unavailable(format!("{}: {e}", dir.display())))?;
        }
        let bytes = serde_json::to_vec(passkey).map_err(|e| unavailable(e.to_string()))?;
        govern_workers::durable::write(&path, &bytes).map_err(|e| unavailable(e.to_string()))
    }

    /// Take `credential`'s id in `tenant` for a new passkey: refused when the log or a
    /// passkey file holds it already, else its state is written (durably) before anything
    /// of the registration is appended, so a credential the log shows always has its state.
    fn claim_passkey(
        &self,
        tenant: &Tenant,
        tenant_id: &TenantId,
        credential: &str,
        passkey: &Passkey,
    ) -> Result<(), Problem> {
        let path = self.passkey_path(tenant_id, credential)?;
        let _one = self.passkeys_writing.lock();
        if tenant.credentials.contains_key(credential) || path.exists() {
            return Err(forbidden(
                "registration-refused",
                "Passkey registration refused",
                "a credential with that id is registered in this tenant already",
            ));
        }
        self.write_passkey(tenant_id, credential, passkey)
    }

    /// Remove the passkey file a registration wrote when nothing of it reached the log.
    fn unclaim_passkey(&self, tenant: &TenantId, credential: &str) {
        if let Ok(path) = self.passkey_path(tenant, credential) {
            let _one = self.passkeys_writing.lock();
            let removed =
                std::fs::remove_file(&path).and_then(|()| govern_workers::durable::sync_dir(&path));
            if let Err(e) = removed {
                tracing::warn!(path = %path.display(), error = %e, "cannot remove an unregistered passkey's state");
            }
        }
    }

    fn load_passkey(&self, tenant: &TenantId, credential: &str) -> Option<Passkey> {
        let bytes = std::fs::read(self.passkey_path(tenant, credential).ok()?).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    fn registration_url(&self, tenant: &TenantId, invite: &str) -> String {
        format!(
            "{}/ui/register.html#tenant={}&invite={invite}",
            self.config.origin_text(),
            tenant.0
        )
    }

    fn anchor(&self) -> Anchor {
        let latest = self.log.latest();
        Anchor {
            size: latest.size.0,
            root: hex::encode(latest.root.hash().as_bytes()),
        }
    }
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
        .route("/ui/register.html", get(ui_register))
        .route("/v1/me", get(me))
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
        .route("/v1/keys/release", post(crate::tenant_keys::release))
        .route(
            "/v1/tenants/{tenant}/keys",
            get(crate::tenant_keys::key_status),
        )
        .route(
            "/v1/tenants/{tenant}/keys/rotate",
            post(crate::tenant_keys::rotate),
        )
        .route(
            "/v1/tenants/{tenant}/keys/shred",
            post(crate::tenant_keys::shred),
        )
        .route(
            "/v1/tenants/{tenant}/payloads/{scope}",
            get(crate::tenant_keys::payloads),
        )
        .with_state(edge)
}

/// `POST /v1/tenants` (operator): `tenant.created` and the first admin's invitation.
#[utoipa::path(post,
    path = "/v1/tenants",
    tag = "edge",
    request_body = CreateTenant,
    responses((status = 201, description = "The tenant and its first admin's one-time invitation", body = InviteOut), (status = 400, description = "Bad body", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 401, description = "Operator token required", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 503, description = "Busy", body = crate::problem::Problem, content_type = "application/problem+json")),
    security(("operator" = [])))]
pub(crate) async fn create_tenant(
    State(edge): State<Arc<Edge>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    if !edge.is_operator(&headers) {
        return Err(operator_required());
    }
    let req: CreateTenant = parse(&body)?;
    let tenant = TenantId(RequestId::v7(edge.clock.now(), &*edge.entropy).0);
    let request = RequestId::v7(edge.clock.now(), &*edge.entropy);
    let secret = edge.random_token();
    let mut b = Map::new();
    b.insert("name".into(), req.name.into());
    b.insert("admin".into(), req.admin.into());
    b.insert("rp_id".into(), edge.config.rp_id.clone().into());
    b.insert("origin".into(), edge.config.origin_text().into());
    b.insert("invite".into(), sha256_hex(secret.as_bytes()).into());
    let appended = edge
        .append(tenants::TENANT_CREATED, tenant, request, Vec::new(), b)
        .await?;
    let out = InviteOut {
        tenant: tenant.0.to_string(),
        request: request.0.to_string(),
        index: appended.index.0,
        registration_url: edge.registration_url(&tenant, &secret),
        invite: secret,
    };
    Ok((StatusCode::CREATED, axum::Json(out)).into_response())
}

fn invite_refused() -> Problem {
    forbidden(
        "invite-unknown",
        "No such invitation",
        "no unused invitation with that secret in that tenant",
    )
}

/// `POST /v1/auth/register/start {tenant, invite}` → webauthn-rs creation options.
#[utoipa::path(post,
    path = "/v1/auth/register/start",
    tag = "edge",
    request_body = RegisterStart,
    responses((status = 200, description = "WebAuthn creation options", body = Object), (status = 400, description = "Bad body", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 403, description = "Invitation unknown or used", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 503, description = "Busy", body = crate::problem::Problem, content_type = "application/problem+json")))]
pub(crate) async fn register_start(
    State(edge): State<Arc<Edge>>,
    body: Bytes,
) -> Result<Response, Problem> {
    let req: RegisterStart = parse(&body)?;
    let tenant_id = TenantId(req.tenant);
    let hash = sha256_hex(req.invite.as_bytes());
    let tenant = edge.tenant(&tenant_id).ok_or_else(invite_refused)?;
    let invite = tenant.invites.get(&hash).ok_or_else(invite_refused)?;
    if invite.used_by.is_some() {
        return Err(forbidden(
            "invite-used",
            "Invitation already used",
            "this invitation was redeemed already",
        ));
    }
    // The invitee's own name; the first admin's defaults to the one the operator gave.
    let name = req
        .name
        .clone()
        .or_else(|| invite.name.clone())
        .ok_or_else(|| bad_body("\"name\": the name to register under"))?;
    if !name_ok(&name) {
        return Err(bad_body("\"name\": 1 to 100 bytes, no control characters"));
    }
    let user = RequestId::v7(edge.clock.now(), &*edge.entropy).0;
    let (options, state) = edge
        .webauthn
        .start_passkey_registration(user, &name, &name, None)
        .map_err(|e| bad_body(format!("webauthn: {e}")))?;
    let id = edge.random_token();
    insert_bounded(
        edge.now_s(),
        &mut edge.volatile.lock().registrations,
        id.clone(),
        Registration {
            tenant: tenant_id,
            invite: hash,
            name,
            user,
            state,
            expires: edge.now_s() + edge.config.ceremony_ttl_s,
        },
        |r| r.expires,
    )?;
    Ok(
        axum::Json(json!({"registration": id, "user": user.to_string(), "options": options}))
            .into_response(),
    )
}

fn ceremony_unknown(what: &str) -> Problem {
    forbidden(
        "ceremony-unknown",
        "No such ceremony",
        format!("no {what} in progress with that id (unknown, used or expired)"),
    )
}

/// `POST /v1/auth/register/finish {registration, credential}` → `user.registered`,
/// `credential.registered`, and a session.
#[utoipa::path(post,
    path = "/v1/auth/register/finish",
    tag = "edge",
    request_body = RegisterFinish,
    responses((status = 201, description = "Registered: a session", body = SessionOut), (status = 400, description = "Bad body", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 403, description = "Refused", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 409, description = "Taken", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 503, description = "Busy", body = crate::problem::Problem, content_type = "application/problem+json")))]
pub(crate) async fn register_finish(
    State(edge): State<Arc<Edge>>,
    body: Bytes,
) -> Result<Response, Problem> {
    let req: RegisterFinish = parse(&body)?;
    let reg = edge
        .volatile
        .lock()
        .registrations
        .remove(&req.registration)
        .filter(|r| r.expires > edge.now_s())
        .ok_or_else(|| ceremony_unknown("registration"))?;
    let passkey = edge
        .webauthn
        .finish_passkey_registration(&req.credential, &reg.state)
        .map_err(|e| {
            forbidden(
                "registration-refused",
                "Passkey registration refused",
                format!("webauthn: {e}"),
            )
        })?;
    let refused = |detail: String| {
        forbidden(
            "registration-refused",
            "Passkey registration refused",
            detail,
        )
    };
    // Everything the log will check, before the first append: a refusal after
    // `user.registered` would leave the user without a credential.
    let tenant = edge.tenant(&reg.tenant).ok_or_else(invite_refused)?;
    let invite = tenant.invites.get(&reg.invite).ok_or_else(invite_refused)?;
    if invite.used_by.is_some() {
        return Err(forbidden(
            "invite-used",
            "Invitation already used",
            "this invitation was redeemed already",
        ));
    }
    let attestation: &[u8] = req.credential.response.attestation_object.as_ref();
    let (id, key) =
        registered_credential(attestation, &tenant.rp_id).map_err(|e| refused(e.to_string()))?;
    let credential = B64URL.encode(&id);
    let request = RequestId::v7(edge.clock.now(), &*edge.entropy);
    let user = reg.user.to_string();
    let mut b = Map::new();
    b.insert("user".into(), user.clone().into());
    b.insert("invite".into(), reg.invite.clone().into());
    // The user's name is sealed in scope `users`.
    let name = govern_core::canonical::to_vec(&json!({"name": reg.name}))
        .map_err(|e| bad_body(e.to_string()))?;
    // The passkey's state is on disk before the log shows the credential, so a registration
    // the log holds can always log in; an id too long for a file name is refused here.
    edge.claim_passkey(&tenant, &reg.tenant, &credential, &passkey)?;
    let registered = match edge
        .append_sealed(
            tenants::USER_REGISTERED,
            reg.tenant,
            request,
            vec![invite.leaf],
            b,
            Some(Zeroizing::new(name)),
        )
        .await
    {
        Ok(registered) => registered,
        Err(e) => {
            // Nothing of the registration is in the log: its id is free again.
            edge.unclaim_passkey(&reg.tenant, &credential);
            return Err(e);
        }
    };
    let mut c = Map::new();
    c.insert("user".into(), user.clone().into());
    c.insert("credential".into(), credential.clone().into());
    c.insert("type".into(), "passkey".into());
    c.insert("public_key".into(), B64URL.encode(key.to_cose()).into());
    c.insert(
        "attestation_object".into(),
        B64URL.encode(attestation).into(),
    );
    edge.append(
        CREDENTIAL_REGISTERED,
        reg.tenant,
        request,
        vec![registered.leaf_hash],
        c,
    )
    .await?;
    let mut session = edge.new_session(reg.tenant, &user, &credential)?;
    session.request = Some(request.0.to_string());
    Ok((StatusCode::CREATED, axum::Json(session)).into_response())
}

fn login_refused(detail: impl Into<String>) -> Problem {
    forbidden("login-refused", "Login refused", detail)
}

/// `POST /v1/auth/login/start {tenant, user, credential?}`: webauthn-rs request options for
/// the user's passkeys, or for an API key a `govern/login/v1` challenge object.
#[utoipa::path(post,
    path = "/v1/auth/login/start",
    tag = "edge",
    request_body = LoginStart,
    responses((status = 200, description = "WebAuthn request options, or an API key's login challenge object", body = Object), (status = 400, description = "Bad body", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 403, description = "Login refused", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 429, description = "Too many logins pending from this address", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 503, description = "Busy", body = crate::problem::Problem, content_type = "application/problem+json")))]
pub(crate) async fn login_start(
    State(edge): State<Arc<Edge>>,
    source: Source,
    body: Bytes,
) -> Result<Response, Problem> {
    let req: LoginStart = parse(&body)?;
    let tenant_id = TenantId(req.tenant);
    let user = req.user.to_string();
    let tenant = edge
        .tenant(&tenant_id)
        .filter(|t| t.users.contains_key(&user))
        .ok_or_else(|| login_refused("no such user in that tenant"))?;
    let id = edge.random_token();
    let (state, out) = match &req.credential {
        Some(cred) => {
            let c = tenant
                .live_credential(cred)
                .filter(|c| c.credential.user == user && c.credential.kind == CredentialType::Key)
                .ok_or_else(|| login_refused("no live API key with that id for that user"))?;
            let mut nonce = [0u8; 16];
            edge.fill(&mut nonce);
            let object = ChallengeObject {
                domain: LOGIN_DOMAIN.into(),
                tenant: tenant_id.0.to_string(),
                user: user.clone(),
                credential: c.credential.id.clone(),
                kind: "login".into(),
                request: id.clone(),
                rp_id: edge.config.rp_id.clone(),
                method: "POST".into(),
                path: "/v1/auth/login/finish".into(),
                body_commitment: String::new(),
                nonce: B64URL.encode(nonce),
                anchor: edge.anchor(),
            };
            let out = json!({"login": id, "challenge": object});
            (LoginState::Key(Box::new(object)), out)
        }
        None => {
            let passkeys: Vec<Passkey> = tenant
                .credentials_of(&user)
                .filter(|c| c.revoked.is_none() && c.credential.kind == CredentialType::Passkey)
                .filter_map(|c| edge.load_passkey(&tenant_id, &c.credential.id))
                .collect();
            if passkeys.is_empty() {
                return Err(login_refused("the user has no live passkey"));
            }
            let (options, state) = edge
                .webauthn
                .start_passkey_authentication(&passkeys)
                .map_err(|e| login_refused(format!("webauthn: {e}")))?;
            (
                LoginState::Passkey(state),
                json!({"login": id, "options": options}),
            )
        }
    };
    // Login needs only public ids: the ceremony is addressed by its random id alone, and
    // bounded per source and in all, never per user, so no one can push out another's.
    let now = edge.now_s();
    let mut vol = edge.volatile.lock();
    let Volatile {
        logins,
        logins_from,
        ..
    } = &mut *vol;
    admit_login(logins, logins_from, source, now)?;
    insert_bounded(
        edge.now_s(),
        logins,
        id.clone(),
        Login {
            tenant: tenant_id,
            user,
            state,
            expires: now + edge.config.ceremony_ttl_s,
        },
        |l| l.expires,
    )?;
    logins_from.entry(source).or_default().push_back(id);
    drop(vol);
    Ok(axum::Json(out).into_response())
}

/// The origin a signature's client data names.
fn signed_origin(signature: &UserSignature) -> Option<String> {
    let data = match signature {
        UserSignature::Passkey {
            client_data_json, ..
        } => client_data_json,
        UserSignature::Key { client_data, .. } => client_data,
    };
    let bytes = B64URL.decode(data).ok()?;
    let v: Value = serde_json::from_slice(&bytes).ok()?;
    v.get("origin")?
        .as_str()
        .map(|o| o.trim_end_matches('/').to_string())
}

fn check_origin(edge: &Edge, signature: &UserSignature) -> Result<(), Problem> {
    let origin = signed_origin(signature).unwrap_or_default();
    if origin != edge.config.origin_text() {
        return Err(forbidden(
            "origin-refused",
            "Signed from another origin",
            format!(
                "the signature was made for origin {origin:?}, not {:?}",
                edge.config.origin_text()
            ),
        ));
    }
    Ok(())
}

/// `POST /v1/auth/login/finish {login, assertion | signature}` → a session.
#[utoipa::path(post,
    path = "/v1/auth/login/finish",
    tag = "edge",
    request_body = LoginFinish,
    responses((status = 200, description = "A session", body = SessionOut), (status = 400, description = "Bad body", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 403, description = "Login refused", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 503, description = "Busy", body = crate::problem::Problem, content_type = "application/problem+json")))]
pub(crate) async fn login_finish(
    State(edge): State<Arc<Edge>>,
    body: Bytes,
) -> Result<Response, Problem> {
    let req: LoginFinish = parse(&body)?;
    let login = edge
        .volatile
        .lock()
        .logins
        .remove(&req.login)
        .filter(|l| l.expires > edge.now_s())
        .ok_or_else(|| ceremony_unknown("login"))?;
    let tenant = edge
        .tenant(&login.tenant)
        .ok_or_else(|| login_refused("no such tenant"))?;
    let credential = match (login.state, req.assertion, req.signature) {
        (LoginState::Passkey(state), Some(assertion), None) => {
            let result = edge
                .webauthn
                .finish_passkey_authentication(&assertion, &state)
                .map_err(|e| login_refused(format!("webauthn: {e}")))?;
            let id = B64URL.encode(result.cred_id().as_ref() as &[u8]);
            let c = tenant
                .live_credential(&id)
                .filter(|c| c.credential.user == login.user)
                .ok_or_else(|| login_refused("the passkey is not a live credential of the user"))?;
            if let Some(mut passkey) = edge.load_passkey(&login.tenant, &id)
                && passkey.update_credential(&result).is_some()
            {
                edge.save_passkey(&login.tenant, &id, &passkey)?;
            }
            c.credential.id.clone()
        }
        (LoginState::Key(object), None, Some(signature)) => {
            let c = tenant
                .live_credential(&object.credential)
                .ok_or_else(|| login_refused("the key was revoked"))?;
            verify_login(&object, &signature, &c.credential)
                .map_err(|e| login_refused(format!("user signature: {e}")))?;
            check_origin(&edge, &signature)?;
            c.credential.id.clone()
        }
        _ => {
            return Err(bad_body(
                "a passkey login finishes with `assertion`, an API key login with `signature`",
            ));
        }
    };
    let session = edge.new_session(login.tenant, &login.user, &credential)?;
    Ok(axum::Json(session).into_response())
}

/// `POST /v1/auth/action/init {kind, method, path, body}` (session) → the challenge object.
#[utoipa::path(post,
    path = "/v1/auth/action/init",
    tag = "edge",
    request_body = ActionInit,
    responses((status = 200, description = "The challenge object to sign, its nonce, anchor and salt", body = Object), (status = 400, description = "Bad body or route", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 401, description = "Sign in first", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 404, description = "No such request", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 503, description = "Busy", body = crate::problem::Problem, content_type = "application/problem+json")),
    security(("session" = [])))]
pub(crate) async fn action_init(
    State(edge): State<Arc<Edge>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    let session_token = bearer(&headers).unwrap_or_default().to_string();
    let session = edge.session(&headers)?;
    let req: ActionInit = parse(&body)?;
    let kind = kind_of_route(&req.method, &req.path).ok_or_else(|| {
        bad_body(format!(
            "{} {} is not an action endpoint",
            req.method, req.path
        ))
    })?;
    if kind != req.kind {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "action-route",
            "Kind does not match the endpoint",
            format!(
                "{} {} appends {kind}, not {}",
                req.method, req.path, req.kind
            ),
        ));
    }
    let params = action_body(&serde_json::to_vec(&req.body).unwrap_or_default())?;
    // An approval's request is the transfer its path names, which must be one.
    let request = match govern_core::action::route_of(&req.method, &req.path) {
        Some((_, govern_core::action::PathTarget::Request(id))) => {
            let tenant = edge
                .tenant(&session.tenant)
                .ok_or_else(|| not_found("request", id))?;
            parent_of(&tenant, kind, &req.method, &req.path, &Map::new())?;
            id.to_string()
        }
        _ => RequestId::v7(edge.clock.now(), &*edge.entropy)
            .0
            .to_string(),
    };
    let mut salt = [0u8; 32];
    edge.fill(&mut salt);
    let mut nonce = [0u8; 16];
    edge.fill(&mut nonce);
    let commitment =
        body_commitment(&salt, &Value::Object(params)).map_err(|e| bad_body(e.to_string()))?;
    let object = ChallengeObject {
        domain: ACTION_DOMAIN.into(),
        tenant: session.tenant.0.to_string(),
        user: session.user.clone(),
        credential: session.credential.clone(),
        kind: kind.into(),
        request,
        rp_id: edge.config.rp_id.clone(),
        method: req.method,
        path: req.path,
        body_commitment: commitment,
        nonce: B64URL.encode(nonce),
        anchor: edge.anchor(),
    };
    let challenge = object.challenge().map_err(|e| bad_body(e.to_string()))?;
    {
        let mut vol = edge.volatile.lock();
        let expires = edge.now_s() + edge.config.ceremony_ttl_s;
        insert_bounded(
            edge.now_s(),
            &mut vol.pending,
            object.nonce.clone(),
            PendingAction {
                session: session_token.clone(),
                object: object.clone(),
                salt,
                expires,
            },
            |p| p.expires,
        )?;
        let Volatile {
            pending,
            pending_of,
            ..
        } = &mut *vol;
        cap_per_owner(
            pending,
            pending_of,
            &session_token,
            &object.nonce,
            ACTIONS_PER_SESSION_MAX,
        );
    }
    Ok(axum::Json(json!({
        "nonce": object.nonce,
        "anchor": object.anchor,
        "salt": hex::encode(salt),
        "request": object.request,
        "challenge": object,
        "challenge_b64url": B64URL.encode(challenge),
    }))
    .into_response())
}

/// `POST /v1/auth/action {challenge, signature}` (session) → a single-use `userAction`.
#[utoipa::path(post,
    path = "/v1/auth/action",
    tag = "edge",
    request_body = ActionSign,
    responses((status = 200, description = "A single-use userAction token for exactly that request", body = Object), (status = 400, description = "Bad body", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 401, description = "Sign in first", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 403, description = "Signature refused", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 503, description = "Busy", body = crate::problem::Problem, content_type = "application/problem+json")),
    security(("session" = [])))]
pub(crate) async fn action_sign(
    State(edge): State<Arc<Edge>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    let session = edge.session(&headers)?;
    let req: ActionSign = parse(&body)?;
    // The nonce is spent by this attempt, whatever its outcome.
    let pending = edge.volatile.lock().pending.remove(&req.challenge.nonce);
    let (pending, salt) = match pending {
        Some(p) if p.expires > edge.now_s() => {
            let salt = p.salt;
            (p, salt)
        }
        _ => {
            return Err(forbidden(
                "action-unknown",
                "No such pending action",
                "no action awaits a signature with that nonce (unknown, used or expired)",
            ));
        }
    };
    let session_token = bearer(&headers).unwrap_or_default();
    if pending.session != session_token || pending.object.user != session.user {
        return Err(forbidden(
            "action-unknown",
            "No such pending action",
            "that action was initiated by another session",
        ));
    }
    if req.challenge != pending.object {
        return Err(forbidden(
            "challenge-mismatch",
            "Not the challenge issued",
            "the challenge object differs from the one this node issued for that nonce",
        ));
    }
    let tenant = edge
        .tenant(&session.tenant)
        .ok_or_else(|| unauthenticated("the session's tenant is gone"))?;
    let (state, verified) = verify_with_credential(&tenant, &req.challenge, &req.signature)?;
    check_origin(&edge, &req.signature)?;
    check_counter(&req.signature, &verified, state)?;
    let token = edge.random_token();
    let expires = edge.now_s() + edge.config.action_token_ttl_s;
    let mut vol = edge.volatile.lock();
    insert_bounded(
        edge.now_s(),
        &mut vol.tokens,
        token.clone(),
        ActionToken {
            object: req.challenge,
            signature: req.signature,
            salt,
            expires,
        },
        |t| t.expires,
    )?;
    let Volatile {
        tokens, tokens_of, ..
    } = &mut *vol;
    cap_per_owner(
        tokens,
        tokens_of,
        &pending.session,
        &token,
        ACTIONS_PER_SESSION_MAX,
    );
    drop(vol);
    Ok(axum::Json(json!({"userAction": token, "expires": expires})).into_response())
}

fn mismatch(what: &str, signed: &str, got: &str) -> Problem {
    forbidden(
        "user-action-mismatch",
        "The user action is for another request",
        format!("the action was signed for {what} {signed:?}, not {got:?}"),
    )
}

/// One sensitive endpoint: [`perform`] under its own name and OpenAPI operation (utoipa
/// documents one function per path).
macro_rules! action_endpoint {
    ($(#[$doc:meta])* $name:ident, $path:tt $(, $param:tt)*) => {
        $(#[$doc])*
        #[utoipa::path(post, path = $path, tag = "actions", params($(($param = String, Path)),*),
            request_body = Object,
            responses((status = 201, description = "Appended: request, kind, index, leaf", body = Object), (status = 400, description = "Bad body", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 401, description = "No user action", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 403, description = "User action refused", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 404, description = "No such target in this tenant", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 409, description = "Nonce or key taken", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 503, description = "Busy", body = crate::problem::Problem, content_type = "application/problem+json")),
            security(("userAction" = [])))]
        pub(crate) async fn $name(
            edge: State<Arc<Edge>>,
            method: Method,
            uri: Uri,
            headers: HeaderMap,
            body: Bytes,
        ) -> Result<Response, Problem> {
            perform(edge, method, uri, headers, body).await
        }
    };
}

action_endpoint!(
    /// Invite a user (admin): `{role}`; answers the one-time invitation (the invitee gives
    /// their name when they register). Appends `user.invited`.
    invite_user, "/v1/users"
);
action_endpoint!(
    /// Change a user's role (admin): `{user, role}`. Appends `user.role_changed`.
    change_role, "/v1/users/role"
);
action_endpoint!(
    /// Add an API key: `{user, type: "key", public_key}` (base64url COSE_Key). Appends
    /// `credential.registered`.
    add_credential, "/v1/credentials"
);
action_endpoint!(
    /// Revoke a credential: `{credential}`. Appends `credential.revoked`.
    revoke_credential, "/v1/credentials/revoke"
);
action_endpoint!(
    /// Request a wallet: `{name}`. Appends `wallet.requested`.
    request_wallet, "/v1/wallets"
);
action_endpoint!(
    /// Request a transfer from the wallet: `{kind, to, amount, chain_id, nonce,
    /// max_fee_per_gas, max_priority_fee_per_gas, gas_limit[, contract]}`. Appends
    /// `transfer.requested`.
    request_transfer, "/v1/wallets/{id}/transfers", "id"
);
action_endpoint!(
    /// Create or change the tenant's policy (admin): `{policy}`. Appends `policy.changed`.
    change_policy, "/v1/policies"
);
action_endpoint!(
    /// Approve or deny a transfer: the decision is the path's last segment (so the user's
    /// signature covers it and the log reads it in clear); the body is `{}` or
    /// `{comment}`, sealed. Appends `approval.decided`.
    decide_approval, "/v1/requests/{id}/approvals/{decision}", "id", "decision"
);

/// Every sensitive endpoint: the `userAction` token must be for exactly this request.
async fn perform(
    State(edge): State<Arc<Edge>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    let path = uri.path().to_string();
    let kind = kind_of_route(method.as_str(), &path).ok_or_else(|| Problem::no_route(&path))?;
    let token = headers
        .get(USER_ACTION_HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            Problem::new(
                StatusCode::UNAUTHORIZED,
                "user-action-required",
                "User action signature required",
                format!("{kind} needs header X-Govern-User-Action from POST /v1/auth/action"),
            )
        })?;
    // Single use: the token is spent by this attempt, whatever its outcome.
    let t = edge
        .volatile
        .lock()
        .tokens
        .remove(token)
        .filter(|t| t.expires > edge.now_s())
        .ok_or_else(|| {
            forbidden(
                "user-action-token",
                "Unknown user action token",
                "the userAction token is unknown, used or expired",
            )
        })?;
    let o = &t.object;
    if o.kind != kind {
        return Err(mismatch("kind", &o.kind, kind));
    }
    if o.method != method.as_str() {
        return Err(mismatch("method", &o.method, method.as_str()));
    }
    if o.path != path {
        return Err(mismatch("path", &o.path, &path));
    }
    let params = action_body(&body)?;
    let commitment = body_commitment(&t.salt, &Value::Object(params.clone()))
        .map_err(|e| bad_body(e.to_string()))?;
    if commitment != o.body_commitment {
        return Err(forbidden(
            "user-action-mismatch",
            "The user action is for another request",
            "the body differs from the body the action was signed for",
        ));
    }
    let tenant_id = TenantId(
        Uuid::parse_str(&o.tenant).map_err(|_| bad_body("the action's tenant is not a UUID"))?,
    );
    let request = RequestId(
        Uuid::parse_str(&o.request).map_err(|_| bad_body("the action's request is not a UUID"))?,
    );
    let tenant = edge
        .tenant(&tenant_id)
        .ok_or_else(|| not_found("tenant", &o.tenant))?;
    let mut b = Map::new();
    b.insert(
        "action".into(),
        serde_json::to_value(o).unwrap_or(Value::Null),
    );
    b.insert(
        "signature".into(),
        serde_json::to_value(&t.signature).unwrap_or(Value::Null),
    );
    let text = |f: &str| {
        params
            .get(f)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let mut invite_secret = None;
    // What each kind's parameters must be, before anything is appended.
    match kind {
        USER_INVITED => {
            if params.len() != 1 || UserRole::parse(&text("role")).is_none() {
                return Err(bad_body(
                    "an invitation is {\"role\": \"admin\" | \"member\"}; the invitee gives their name when they register",
                ));
            }
            let secret = edge.random_token();
            b.insert("invite".into(), sha256_hex(secret.as_bytes()).into());
            invite_secret = Some(secret);
        }
        CREDENTIAL_REGISTERED => {
            // The log's bound on a user's API keys, refused before anything is appended.
            check_keys_of(&tenant, &text("user"))?;
        }
        WALLET_REQUESTED if params.len() != 1 || !name_ok(&text("name")) => {
            return Err(bad_body(
                "a wallet is {\"name\"}: 1 to 100 bytes, no control characters",
            ));
        }
        TRANSFER_REQUESTED => {
            tenants::validate_transfer(&params).map_err(bad_body)?;
        }
        POLICY_CHANGED if !params.get("policy").is_some_and(Value::is_object) => {
            return Err(bad_body("a policy change carries `policy`, an object"));
        }
        APPROVAL_DECIDED => {
            let comment_ok = params.iter().all(|(k, v)| {
                k == "comment" && v.as_str().is_some_and(|c| c.len() <= COMMENT_BYTES_MAX)
            });
            if !comment_ok {
                return Err(bad_body(format!(
                    "an approval's body is {{}} or {{\"comment\": at most {COMMENT_BYTES_MAX} bytes}}; the decision is the path's"
                )));
            }
            b.insert("user".into(), o.user.clone().into());
        }
        _ => {}
    }
    let parents = vec![parent_of(&tenant, kind, method.as_str(), &path, &params)?];
    let added_credential = (kind == CREDENTIAL_REGISTERED)
        .then(|| B64URL.decode(text("public_key")).ok())
        .flatten()
        .map(|cose| tenants::key_credential_id(&cose));
    // A sealed kind keeps only its clear fields in clear, and seals the parameters with the
    // commitment's salt; any other action keeps both in clear for the log to check.
    let plaintext = match govern_core::seal::sealed_kind(kind) {
        Some(sealed) => {
            let clear = govern_core::seal::clear_from_path(sealed, &path)
                .ok_or_else(|| Problem::no_route(&path))?;
            b.insert("clear".into(), Value::Object(clear));
            Some(Zeroizing::new(
                govern_core::seal::action_plaintext(&params, &t.salt)
                    .map_err(|e| bad_body(e.to_string()))?,
            ))
        }
        None => {
            b.insert("salt".into(), hex::encode(t.salt).into());
            b.insert("params".into(), Value::Object(params));
            None
        }
    };
    let appended = edge
        .append_sealed(kind, tenant_id, request, parents, b, plaintext)
        .await?;
    let mut out = json!({
        "request": o.request,
        "kind": kind,
        "index": appended.index.0,
        "leaf": appended.leaf_hash,
    });
    if let Some(secret) = invite_secret {
        out["invite"] = secret.clone().into();
        out["registration_url"] = edge.registration_url(&tenant_id, &secret).into();
    }
    if let Some(id) = added_credential {
        out["credential"] = id.into();
    }
    Ok((StatusCode::CREATED, axum::Json(out)).into_response())
}

/// The page a registration link opens: registers a passkey, then signs a wallet and a
/// transfer with it, recomputing every challenge in the browser.
#[utoipa::path(get,
    path = "/ui/register.html",
    tag = "edge",
    responses((status = 200, description = "The passkey page", body = String, content_type = "text/html")))]
pub(crate) async fn ui_register() -> axum::response::Html<&'static str> {
    axum::response::Html(include_str!("../ui/register.html"))
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
        .map(|c| {
            json!({
                "id": c.credential.id,
                "type": c.credential.kind,
                "registered": c.registered,
                "revoked": c.revoked,
            })
        })
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

/// `GET /v1/requests/{id}` (session): status and the chain of event indices so far.
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
    Ok(axum::Json(request).into_response())
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
