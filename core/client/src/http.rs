//! The one HTTP client of a node: every command that talks to a node (or to a static copy of
//! an export) goes through it, and every failure comes back as a [`ClientError`] in words, with
//! what to do: a URL that is not one, a connection that cannot be made, an RFC 9457 problem
//! the node answered.

use std::time::Duration;

use crate::wire::{ConsistencyProof, LogInfo, Receipt};
use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;

/// How long a connection may take to open.
const CONNECT_TIMEOUT_S: u64 = 10;
/// How long a whole request may take.
const REQUEST_TIMEOUT_S: u64 = 60;
/// The most of a non-problem error answer's body an error quotes.
const BODY_QUOTED_MAX: usize = 200;

/// Errors talking to a node, each in words with what to do.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No `http://` (`localhost:7600`).
    #[error("{given} is not a URL: write {suggested}")]
    NoScheme {
        /// What was given.
        given: String,
        /// It with `http://` (and no path).
        suggested: String,
    },
    /// A string that does not parse as a URL, or of another scheme than http(s).
    #[error("{given} is not a URL govern can read: {reason}")]
    NotAUrl {
        /// What was given.
        given: String,
        /// Why.
        reason: String,
    },
    /// A URL with a path (or query) where the base URL belongs (`http://h:7600/v1`).
    #[error("{given} names a path ({path}): give the {whose} base URL, {base}")]
    Path {
        /// What was given.
        given: String,
        /// The path (or query) it names.
        path: String,
        /// `node's`, or `log's` where a static copy may be served under a path.
        whose: &'static str,
        /// The base URL to give instead.
        base: String,
    },
    /// Nothing listens there.
    #[error(
        "cannot connect to {base}: connection refused (is a govern node running there? start one with govern up)"
    )]
    Refused {
        /// The base URL.
        base: String,
    },
    /// The host name does not resolve.
    #[error("cannot connect to {base}: the host name {host} does not resolve (is the URL right?)")]
    Unresolved {
        /// The base URL.
        base: String,
        /// Its host.
        host: String,
    },
    /// No route to the host or its network.
    #[error(
        "cannot connect to {base}: the host or its network is unreachable (is the address right, and reachable from here?)"
    )]
    Unreachable {
        /// The base URL.
        base: String,
    },
    /// The connection did not open in time.
    #[error(
        "cannot connect to {base}: no answer within {seconds} s (is the address right, and reachable from here?)"
    )]
    ConnectTimeout {
        /// The base URL.
        base: String,
        /// The limit.
        seconds: u64,
    },
    /// Connected, but the answer did not come in time.
    #[error("{url}: no complete answer within {seconds} s (is the node overloaded? try again)")]
    Timeout {
        /// The request's URL.
        url: String,
        /// The limit.
        seconds: u64,
    },
    /// Any other transport failure, by its innermost cause.
    #[error("{url}: {reason}")]
    Transport {
        /// The request's URL.
        url: String,
        /// The innermost cause.
        reason: String,
    },
    /// The node answered an RFC 9457 problem (`application/problem+json`).
    #[error("{}", problem_words(title, detail, *status, kind, method, path))]
    Problem {
        /// The request's method.
        method: String,
        /// The request's path.
        path: String,
        /// HTTP status.
        status: u16,
        /// The problem type URI.
        kind: String,
        /// Its title.
        title: String,
        /// Its detail.
        detail: String,
    },
    /// 404 with no problem: a static server, or a URL that is not the log's base.
    #[error("{url}: not found (HTTP 404; is {base} the log's base URL?)")]
    NotFound {
        /// The request's URL.
        url: String,
        /// The base URL it was made from.
        base: String,
    },
    /// Any other error answer, with the start of its body.
    #[error("{url}: HTTP {status}: {body}")]
    Status {
        /// The request's URL.
        url: String,
        /// HTTP status.
        status: u16,
        /// The start of the body.
        body: String,
    },
    /// A success answer that is not what was asked for.
    #[error("{url}: unexpected answer: {reason}")]
    Decode {
        /// The request's URL.
        url: String,
        /// Why.
        reason: String,
    },
}

impl ClientError {
    /// The HTTP status of an error answer, if it was one.
    #[must_use]
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Problem { status, .. } | Self::Status { status, .. } => Some(*status),
            Self::NotFound { .. } => Some(404),
            _ => None,
        }
    }
}

/// `<title>: <detail> (HTTP <status>, <type>; <method> <path>)`.
fn problem_words(
    title: &str,
    detail: &str,
    status: u16,
    kind: &str,
    method: &str,
    path: &str,
) -> String {
    let said = if detail.is_empty() || detail == title {
        title.to_owned()
    } else {
        format!("{title}: {detail}")
    };
    format!("{said} (HTTP {status}, {kind}; {method} {path})")
}

/// An RFC 9457 problem as the node writes it (govern-api's `problem::Problem`).
#[derive(serde::Deserialize)]
struct ProblemAnswer {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    detail: String,
}

/// What a base URL may name beyond its host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Serves {
    /// A node: scheme, host and port, no path.
    Node,
    /// A log's tiles and `v1/` files, from a node or from any static file server, which may
    /// serve an export under a path (`https://example.org/exports/govern`). A path ending
    /// in one of the log's own routes (`/v1`, `/v1/log`, `/checkpoint`) is refused, so
    /// `…/v1/v1/log` is never asked for.
    Log,
}

/// `given` checked as the base URL of what `serves`, without its trailing `/`; an error
/// before any request otherwise.
///
/// # Errors
/// [`ClientError::NoScheme`], [`ClientError::NotAUrl`] or [`ClientError::Path`].
pub fn base_url(given: &str, serves: Serves) -> Result<String, ClientError> {
    let given = given.trim();
    if !given.contains("://") {
        if given.is_empty() {
            return Err(ClientError::NotAUrl {
                given: "\"\"".into(),
                reason: "it is empty: write http://HOST:PORT".into(),
            });
        }
        let with = format!("http://{given}");
        let suggested = match base_url(&with, serves) {
            Ok(base) => base,
            Err(ClientError::Path { base, .. }) => base,
            Err(_) => with,
        };
        return Err(ClientError::NoScheme {
            given: given.into(),
            suggested,
        });
    }
    let mut url = Url::parse(given).map_err(|e| ClientError::NotAUrl {
        given: given.into(),
        reason: e.to_string(),
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(ClientError::NotAUrl {
            given: given.into(),
            reason: format!(
                "govern speaks http:// and https://, not {}://",
                url.scheme()
            ),
        });
    }
    let path = url.path().trim_end_matches('/').to_owned();
    let extra = match (url.query(), url.fragment()) {
        (Some(q), _) => format!("{path}?{q}"),
        (None, Some(f)) => format!("{path}#{f}"),
        (None, None) => path.clone(),
    };
    url.set_query(None);
    url.set_fragment(None);
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let mut keep = match serves {
        Serves::Node => 0,
        Serves::Log => segments.len(),
    };
    while let [.., "v1" | "checkpoint"] | [.., "v1", "log"] = &segments[..keep] {
        keep -= if segments[..keep].ends_with(&["v1", "log"]) {
            2
        } else {
            1
        };
    }
    let base_path = format!("/{}", segments[..keep].join("/"));
    url.set_path(&base_path);
    let base = url.as_str().trim_end_matches('/').to_owned();
    if base_path.trim_end_matches('/') != path || extra != path {
        return Err(ClientError::Path {
            given: given.into(),
            path: extra,
            whose: match serves {
                Serves::Node => "node's",
                Serves::Log => "log's",
            },
            base,
        });
    }
    Ok(base)
}

/// The largest answer read from a node: a full entry bundle (256 entries of at most 65,535
/// bytes, each with a 2-byte length) and some slack. A hostile node streaming more is cut off
/// instead of exhausting the verifier's memory.
pub const RESPONSE_BYTES_MAX: usize = 256 * (65_535 + 2) + (64 << 10);

/// The first `io::ErrorKind` in `e`'s chain of sources.
fn io_kind(e: &(dyn std::error::Error + 'static)) -> Option<std::io::ErrorKind> {
    let mut next = Some(e);
    while let Some(err) = next {
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && io.kind() != std::io::ErrorKind::Other
        {
            return Some(io.kind());
        }
        next = err.source();
    }
    None
}

/// The innermost cause in `e`'s chain of sources.
fn innermost(e: &(dyn std::error::Error + 'static)) -> String {
    let mut last = e;
    while let Some(next) = last.source() {
        last = next;
    }
    last.to_string()
}

/// An answer: status, whether it is a problem, body.
struct Answer {
    status: StatusCode,
    problem: bool,
    body: Vec<u8>,
}

/// A node's (or a log's) base URL and a pooled, keep-alive connection.
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    http: reqwest::Client,
}

impl Client {
    /// A client of the node at `base` (no path).
    ///
    /// # Errors
    /// [`base_url`]'s, or the HTTP client's own.
    pub fn new(base: &str) -> Result<Self, ClientError> {
        Self::serving(base, Serves::Node)
    }

    /// A client of the log at `base`: a node, or a static copy of an export ([`Serves::Log`]).
    ///
    /// # Errors
    /// [`base_url`]'s, or the HTTP client's own.
    pub fn for_log(base: &str) -> Result<Self, ClientError> {
        Self::serving(base, Serves::Log)
    }

    fn serving(base: &str, serves: Serves) -> Result<Self, ClientError> {
        let base = base_url(base, serves)?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(CONNECT_TIMEOUT_S))
            .timeout(Duration::from_secs(REQUEST_TIMEOUT_S))
            .pool_max_idle_per_host(256)
            .build()
            .map_err(|e| ClientError::Transport {
                url: base.clone(),
                reason: innermost(&e),
            })?;
        Ok(Self { base, http })
    }

    /// The base URL, checked, without a trailing `/`.
    #[must_use]
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The URL of `path` under the base URL.
    #[must_use]
    pub fn url(&self, path: &str) -> String {
        format!("{}/{}", self.base, path.trim_start_matches('/'))
    }

    /// A transport failure in words: the connection's (refused, unresolved, unreachable,
    /// timed out), found by the `io::ErrorKind` in its chain of sources, else the request's.
    async fn transport(&self, url: &str, e: &reqwest::Error) -> ClientError {
        let base = self.base.clone();
        let kind = io_kind(e);
        if e.is_connect() {
            use std::io::ErrorKind as K;
            if e.is_timeout() || kind == Some(K::TimedOut) {
                return ClientError::ConnectTimeout {
                    base,
                    seconds: CONNECT_TIMEOUT_S,
                };
            }
            match kind {
                Some(K::ConnectionRefused) => return ClientError::Refused { base },
                Some(K::HostUnreachable | K::NetworkUnreachable) => {
                    return ClientError::Unreachable { base };
                }
                _ => {}
            }
            // A name that does not resolve: its io::Error has no kind of its own, so ask the
            // resolver again.
            if let Ok(parsed) = Url::parse(&self.base)
                && let Some(host) = parsed.domain()
                && tokio::net::lookup_host((host, parsed.port_or_known_default().unwrap_or(80)))
                    .await
                    .is_err()
            {
                return ClientError::Unresolved {
                    base,
                    host: host.to_owned(),
                };
            }
        } else if e.is_timeout() {
            return ClientError::Timeout {
                url: url.into(),
                seconds: REQUEST_TIMEOUT_S,
            };
        }
        ClientError::Transport {
            url: url.into(),
            reason: innermost(e),
        }
    }

    /// Send `req` (for `url`) and read its answer, capped at [`RESPONSE_BYTES_MAX`].
    async fn send(&self, url: &str, req: reqwest::RequestBuilder) -> Result<Answer, ClientError> {
        let mut resp = match req.send().await {
            Ok(r) => r,
            Err(e) => return Err(self.transport(url, &e).await),
        };
        let status = resp.status();
        let problem = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/problem+json"));
        let mut body = Vec::new();
        loop {
            let chunk = match resp.chunk().await {
                Ok(Some(c)) => c,
                Ok(None) => break,
                Err(e) => return Err(self.transport(url, &e).await),
            };
            if body.len() + chunk.len() > RESPONSE_BYTES_MAX {
                return Err(ClientError::Decode {
                    url: url.into(),
                    reason: format!("answer exceeds {RESPONSE_BYTES_MAX} bytes"),
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Answer {
            status,
            problem,
            body,
        })
    }

    /// An error answer in words: the node's problem, else its status and the start of its
    /// body.
    fn refused(&self, method: &Method, path: &str, answer: &Answer) -> ClientError {
        let url = self.url(path);
        let status = answer.status.as_u16();
        if answer.problem
            && let Ok(p) = serde_json::from_slice::<ProblemAnswer>(&answer.body)
        {
            return ClientError::Problem {
                method: method.to_string(),
                path: format!("/{}", path.trim_start_matches('/')),
                status,
                kind: p.kind,
                title: p.title,
                detail: p.detail,
            };
        }
        if status == 404 {
            return ClientError::NotFound {
                url,
                base: self.base.clone(),
            };
        }
        let text = String::from_utf8_lossy(&answer.body);
        let text = text.trim();
        let mut body: String = text.chars().take(BODY_QUOTED_MAX).collect();
        if body.len() < text.len() {
            body.push('…');
        }
        if body.is_empty() {
            body = answer.status.canonical_reason().unwrap_or("no body").into();
        }
        ClientError::Status { url, status, body }
    }

    /// `method path` with `headers` and, if any, a JSON `body`: the answer's body on success,
    /// else the error in words.
    ///
    /// # Errors
    /// A [`ClientError`].
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&serde_json::Value>,
    ) -> Result<Vec<u8>, ClientError> {
        let url = self.url(path);
        let mut req = self.http.request(method.clone(), &url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let answer = self.send(&url, req).await?;
        if !answer.status.is_success() {
            return Err(self.refused(&method, path, &answer));
        }
        Ok(answer.body)
    }

    /// [`Client::request`], its answer read as JSON (an empty answer as `null`).
    ///
    /// # Errors
    /// A [`ClientError`].
    pub async fn request_json(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&serde_json::Value>,
    ) -> Result<serde_json::Value, ClientError> {
        let bytes = self.request(method, path, headers, body).await?;
        if bytes.is_empty() {
            return Ok(serde_json::Value::Null);
        }
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode {
            url: self.url(path),
            reason: format!("not JSON: {e}"),
        })
    }

    /// GET `path`, which must exist.
    ///
    /// # Errors
    /// A [`ClientError`].
    pub async fn get_required(&self, path: &str) -> Result<Vec<u8>, ClientError> {
        self.request(Method::GET, path, &[], None).await
    }

    /// GET `path`, read as JSON of `T`.
    ///
    /// # Errors
    /// A [`ClientError`]; [`ClientError::Decode`] when the answer is not a `T`.
    pub async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let bytes = self.get_required(path).await?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode {
            url: self.url(path),
            reason: e.to_string(),
        })
    }

    /// `GET /v1/log`.
    ///
    /// # Errors
    /// A [`ClientError`].
    pub async fn log_info(&self) -> Result<LogInfo, ClientError> {
        self.get_json("/v1/log").await
    }

    /// `GET /v1/proofs/consistency?from=&to=`.
    ///
    /// # Errors
    /// A [`ClientError`].
    pub async fn consistency(&self, from: u64, to: u64) -> Result<ConsistencyProof, ClientError> {
        self.get_json(&format!("/v1/proofs/consistency?from={from}&to={to}"))
            .await
    }

    /// The leaf hash of `role`'s current `service.attested`, from `GET /v1/services`.
    ///
    /// # Errors
    /// When the node answers with an error or lists no identity for `role`.
    pub async fn current_attestation(
        &self,
        role: &str,
    ) -> Result<govern_core::ids::LeafHash, ClientError> {
        let view: serde_json::Value = self.get_json("/v1/services").await?;
        view["services"]
            .as_array()
            .and_then(|list| list.iter().find(|s| s["role"] == role))
            .and_then(|s| s["leaf"].as_str())
            .and_then(|leaf| govern_core::ids::LeafHash::try_from(leaf.to_string()).ok())
            .ok_or_else(|| ClientError::Decode {
                url: self.url("/v1/services"),
                reason: format!("the node lists no identity for role {role}"),
            })
    }

    /// POST an event; the receipt once durable.
    ///
    /// # Errors
    /// A [`ClientError`].
    pub async fn append(&self, event: &[u8]) -> Result<Receipt, ClientError> {
        let path = "/v1/entries";
        let url = self.url(path);
        let req = self
            .http
            .post(&url)
            .header("content-type", "application/json")
            .body(event.to_vec());
        let answer = self.send(&url, req).await?;
        if !answer.status.is_success() {
            return Err(self.refused(&Method::POST, path, &answer));
        }
        serde_json::from_slice(&answer.body).map_err(|e| ClientError::Decode {
            url,
            reason: e.to_string(),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn refused(given: &str, serves: Serves) -> String {
        match base_url(given, serves) {
            Ok(b) => panic!("{given} accepted as {b}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_base_url_has_a_scheme_and_no_path() {
        assert_eq!(
            refused("localhost:7600", Serves::Node),
            "localhost:7600 is not a URL: write http://localhost:7600"
        );
        assert_eq!(
            refused("127.0.0.1:7600", Serves::Node),
            "127.0.0.1:7600 is not a URL: write http://127.0.0.1:7600"
        );
        assert_eq!(
            refused("localhost:7600/v1", Serves::Node),
            "localhost:7600/v1 is not a URL: write http://localhost:7600"
        );
        assert_eq!(
            refused("http://h:7600/v1", Serves::Node),
            "http://h:7600/v1 names a path (/v1): give the node's base URL, http://h:7600"
        );
        assert_eq!(
            refused("http://h:7600/?x=1", Serves::Node),
            "http://h:7600/?x=1 names a path (?x=1): give the node's base URL, http://h:7600"
        );
        assert_eq!(
            refused("ftp://h:7600", Serves::Node),
            "ftp://h:7600 is not a URL govern can read: govern speaks http:// and https://, not ftp://"
        );
        assert_eq!(
            refused("http://", Serves::Node),
            "http:// is not a URL govern can read: empty host"
        );
        for ok in ["http://h:7600", "http://h:7600/", " http://h:7600 "] {
            assert_eq!(base_url(ok, Serves::Node).unwrap(), "http://h:7600");
        }
    }

    #[test]
    fn a_log_may_be_served_under_a_path_but_not_one_of_its_routes() {
        assert_eq!(
            base_url("https://example.org/exports/govern/", Serves::Log).unwrap(),
            "https://example.org/exports/govern"
        );
        assert_eq!(
            base_url("http://h:7600", Serves::Log).unwrap(),
            "http://h:7600"
        );
        assert_eq!(
            base_url("https://cdn.example/v1/govern", Serves::Log).unwrap(),
            "https://cdn.example/v1/govern"
        );
        assert_eq!(
            refused("http://h/v1/v1/log", Serves::Log),
            "http://h/v1/v1/log names a path (/v1/v1/log): give the log's base URL, http://h"
        );
        assert_eq!(
            refused("http://h:7600/v1", Serves::Log),
            "http://h:7600/v1 names a path (/v1): give the log's base URL, http://h:7600"
        );
        assert_eq!(
            refused("http://h/exports/govern/v1/log", Serves::Log),
            "http://h/exports/govern/v1/log names a path (/exports/govern/v1/log): give the log's base URL, http://h/exports/govern"
        );
        assert_eq!(
            refused("http://h:7600/checkpoint", Serves::Log),
            "http://h:7600/checkpoint names a path (/checkpoint): give the log's base URL, http://h:7600"
        );
    }

    #[test]
    fn a_problem_reads_as_words() {
        let e = ClientError::Problem {
            method: "GET".into(),
            path: "/v1/tenants/NOPE/keys".into(),
            status: 404,
            kind: "urn:govern:problem:not-found".into(),
            title: "Not found".into(),
            detail: "no tenant NOPE".into(),
        };
        assert_eq!(
            e.to_string(),
            "Not found: no tenant NOPE (HTTP 404, urn:govern:problem:not-found; GET /v1/tenants/NOPE/keys)"
        );
    }
}
