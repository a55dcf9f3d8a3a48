//! RFC 9457 problem details: the one place errors become HTTP.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use govern_core::event::EventError;
use govern_store::{AppendError, ReadError, StorageError};
use serde::Serialize;

/// The prefix of every problem `type` URI; the suffix names the kind and never changes.
pub const PROBLEM_TYPE_PREFIX: &str = "urn:govern:problem:";

/// An RFC 9457 problem.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Problem {
    /// `urn:govern:problem:<kind>`.
    #[serde(rename = "type")]
    pub kind: String,
    /// A fixed, human summary of the kind.
    pub title: &'static str,
    /// The HTTP status.
    pub status: u16,
    /// What happened this time.
    pub detail: String,
    #[serde(skip)]
    #[schema(ignore)]
    retry_after_s: Option<u64>,
}

impl Problem {
    /// A problem of `kind` (the suffix of its type URI).
    #[must_use]
    pub fn new(
        status: StatusCode,
        kind: &str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            kind: format!("{PROBLEM_TYPE_PREFIX}{kind}"),
            title,
            status: status.as_u16(),
            detail: detail.into(),
            retry_after_s: None,
        }
    }

    /// Ask the client to come back later (503 pushback).
    #[must_use]
    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after_s = Some(seconds);
        self
    }

    /// 503: this node does not sequence the log, or no longer does; `detail` says where the
    /// sequencer is when it is known.
    #[must_use]
    pub fn not_sequencer(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not-the-sequencer",
            "This node does not sequence the log",
            detail,
        )
        .retry_after(NOT_SEQUENCER_RETRY_AFTER_S)
    }

    /// 404 for an unknown route.
    #[must_use]
    pub fn no_route(path: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not-found",
            "No such resource",
            format!("nothing is served at {path}"),
        )
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_REQUEST);
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut resp = (status, body).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(s) = self.retry_after_s {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        resp
    }
}

impl From<EventError> for Problem {
    fn from(e: EventError) -> Self {
        let (status, kind, title) = match &e {
            EventError::TooLarge { .. } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "event-too-large",
                "Event too large",
            ),
            EventError::NotJson(_) => (
                StatusCode::BAD_REQUEST,
                "event-not-json",
                "Event is not a JSON object",
            ),
            EventError::Float { .. } => (
                StatusCode::BAD_REQUEST,
                "event-float",
                "Event holds a floating-point number",
            ),
            EventError::IntegerOutOfRange { .. } => (
                StatusCode::BAD_REQUEST,
                "event-integer-out-of-range",
                "Event holds an integer outside ±(2^53 − 1)",
            ),
            EventError::NotCanonical => (
                StatusCode::BAD_REQUEST,
                "event-not-canonical",
                "Event is not in RFC 8785 form",
            ),
            EventError::Version(_) => (
                StatusCode::BAD_REQUEST,
                "event-version",
                "Unsupported event version",
            ),
            EventError::Unsigned => (
                StatusCode::BAD_REQUEST,
                "event-unsigned",
                "Event is not signed",
            ),
            EventError::BadKey => (
                StatusCode::BAD_REQUEST,
                "event-bad-key",
                "Producer key is not an Ed25519 key",
            ),
            EventError::BadSignature => (
                StatusCode::BAD_REQUEST,
                "event-bad-signature",
                "Event signature does not verify",
            ),
            EventError::TooManyParents { .. } => (
                StatusCode::BAD_REQUEST,
                "event-too-many-parents",
                "Too many parents",
            ),
            EventError::Envelope(_) | _ => (
                StatusCode::BAD_REQUEST,
                "event-envelope",
                "Malformed event envelope",
            ),
        };
        Problem::new(status, kind, title, e.to_string())
    }
}

/// Seconds a client waits before it asks again when this node does not sequence the log (or
/// no longer does): a takeover completes within seconds (docs/deployment.md).
pub const NOT_SEQUENCER_RETRY_AFTER_S: u64 = 1;

impl From<StorageError> for Problem {
    fn from(e: StorageError) -> Self {
        if let StorageError::Deposed(_) = e {
            return Problem::not_sequencer(e.to_string());
        }
        tracing::error!(error = %e, "storage failure");
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "storage-unavailable",
            "Storage unavailable",
            e.to_string(),
        )
        .retry_after(5)
    }
}

impl From<AppendError> for Problem {
    fn from(e: AppendError) -> Self {
        match e {
            AppendError::Pushback { retry_after_s } => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "pushback",
                "The log is busy",
                e.to_string(),
            )
            .retry_after(retry_after_s),
            AppendError::Skew(_) => Problem::new(
                StatusCode::BAD_REQUEST,
                "time-skew",
                "Event time outside the allowed skew",
                e.to_string(),
            ),
            AppendError::UnknownProducer { .. } => Problem::new(
                StatusCode::FORBIDDEN,
                "unknown-producer",
                "Producer may not append",
                e.to_string(),
            ),
            AppendError::UnknownKind { .. } => Problem::new(
                StatusCode::BAD_REQUEST,
                "unknown-kind",
                "Event kind not declared in the manifest",
                e.to_string(),
            ),
            AppendError::KindNotAllowed { .. } => Problem::new(
                StatusCode::FORBIDDEN,
                "kind-not-allowed",
                "Role may not produce this kind",
                e.to_string(),
            ),
            AppendError::ParentRequired { .. } => Problem::new(
                StatusCode::FORBIDDEN,
                "parent-required",
                "Event of a kind that follows another names no parent",
                e.to_string(),
            ),
            AppendError::ParentMissing { .. } => Problem::new(
                StatusCode::BAD_REQUEST,
                "parent-missing",
                "Parent not in the log",
                e.to_string(),
            ),
            AppendError::ParentKindNotAllowed { .. } => Problem::new(
                StatusCode::FORBIDDEN,
                "parent-kind-not-allowed",
                "Parent of a kind this kind may not follow",
                e.to_string(),
            ),
            AppendError::ParentOtherRequest { .. } => Problem::new(
                StatusCode::FORBIDDEN,
                "parent-other-request",
                "Parent of another request",
                e.to_string(),
            ),
            AppendError::ParentOtherTenant { .. } => Problem::new(
                StatusCode::FORBIDDEN,
                "parent-other-tenant",
                "Parent of another tenant",
                e.to_string(),
            ),
            AppendError::UniquenessKey { .. } => Problem::new(
                StatusCode::BAD_REQUEST,
                "uniqueness-key",
                "Event lacks a field of its uniqueness key",
                e.to_string(),
            ),
            AppendError::Duplicate { ref key, .. }
                if key.starts_with(govern_admission::actions::NONCE_KEY_PREFIX) =>
            {
                Problem::new(
                    StatusCode::CONFLICT,
                    "user-action-nonce",
                    "Nonce already used",
                    e.to_string(),
                )
            }
            AppendError::AlreadyHeld { .. } => Problem::new(
                StatusCode::CONFLICT,
                "already-held",
                "The log holds this event already",
                e.to_string(),
            ),
            AppendError::Duplicate { .. } => Problem::new(
                StatusCode::CONFLICT,
                "duplicate",
                "Uniqueness key already taken",
                e.to_string(),
            ),
            AppendError::UserAction(ref u) => {
                let (kind, title) = u.problem();
                let status = StatusCode::from_u16(u.http_status()).unwrap_or(StatusCode::FORBIDDEN);
                Problem::new(status, kind, title, e.to_string())
            }
            AppendError::Identity(ref id) => {
                let (kind, title) = id.problem();
                let status = if id.is_malformed() {
                    StatusCode::BAD_REQUEST
                } else {
                    StatusCode::FORBIDDEN
                };
                Problem::new(status, kind, title, e.to_string())
            }
            AppendError::Storage(s) => s.into(),
            AppendError::NotSequencer { .. } => Problem::not_sequencer(e.to_string()),
            // No retry helps: this copy must be replaced by the newer one.
            AppendError::Fenced { .. } => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "log-advanced-elsewhere",
                "This log has advanced elsewhere",
                e.to_string(),
            ),
            AppendError::Closed | _ => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting-down",
                "The log is shutting down",
                e.to_string(),
            )
            .retry_after(5),
        }
    }
}

impl From<ReadError> for Problem {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::Beyond { what: "index", .. } => Problem::new(
                StatusCode::NOT_FOUND,
                "entry-not-found",
                "No such entry",
                e.to_string(),
            ),
            ReadError::Beyond { what: "tile", .. } => Problem::new(
                StatusCode::NOT_FOUND,
                "tile-not-found",
                "No such tile",
                e.to_string(),
            ),
            ReadError::Beyond { .. } => Problem::new(
                StatusCode::BAD_REQUEST,
                "beyond-log",
                "Beyond the log's size",
                e.to_string(),
            ),
            ReadError::Storage(s) => s.into(),
            ReadError::Invalid(_) | _ => Problem::new(
                StatusCode::BAD_REQUEST,
                "invalid-proof-request",
                "Invalid proof request",
                e.to_string(),
            ),
        }
    }
}
