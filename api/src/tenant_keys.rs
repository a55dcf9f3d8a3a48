//! Tenant keys over HTTP: scoped reads of sealed payloads, the key status, rotation and
//! shredding (operator), and the key service's release endpoint.
//!
//! - `GET /v1/tenants/{tenant}/payloads/{scope}` (session): the tenant's sealed payloads of
//!   that scope, opened by the edge with its released scope keys, each opening recorded in a
//!   `reads.audit` event. Another tenant's id answers an empty list, not an error; a scope
//!   the caller lacks (a member reading `users`, or a scope the edge's manifest entry does
//!   not list) answers 403 `scope-denied` naming the scope.
//! - `GET /v1/tenants/{tenant}/keys` (operator, or an admin of the tenant): versions,
//!   created / rotated / shredded times, releases and decryptions per role, from the log.
//! - `POST /v1/tenants/{tenant}/keys/rotate` and `.../shred` (operator): `keys.rotated`,
//!   `keys.shredded`.
//! - `POST /v1/keys/release`: a service's [`ReleaseRequest`] → [`Release`].

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use govern_admission::actions::READS_AUDIT_ENTRIES_MAX;
use govern_core::event::{SignedEvent, TenantId};
use govern_core::ids::LeafIndex;
use govern_core::seal::{SCOPES, open, open_action, sealed_kind, sealed_scope};
use govern_projections::tenants::{READS_AUDIT, UserRole};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::edge::{Edge, bad_body, forbidden, not_found, operator_required};
use crate::keys::{KeyError, KeyService, Release, ReleaseRequest};
use crate::problem::Problem;

/// The most payloads one read returns.
pub const PAYLOADS_PAGE_MAX: usize = 100;

/// The scopes a user of `role` may read: an admin all; a member all but `users` (the
/// tenant's directory).
#[must_use]
pub fn user_scopes(role: UserRole) -> &'static [&'static str] {
    match role {
        UserRole::Admin => &SCOPES,
        UserRole::Member => &["approvals", "policies", "transfers", "wallets"],
    }
}

/// The key service's own endpoints (rotation, shredding, key status, `POST /v1/keys/release`)
/// as the node serves them on its behalf: the key service, and the edge for the operator's
/// token, the tenants and its cache of released keys. The edge itself reaches the key
/// service only through a release request ([`crate::keys::KeyRelease`]).
#[derive(Clone, Debug)]
pub struct KeyEndpoints {
    keys: Arc<KeyService>,
    edge: Arc<Edge>,
}

/// The key service's routes.
pub fn key_routes(keys: Arc<KeyService>, edge: Arc<Edge>) -> axum::Router {
    use axum::routing::{get, post};
    axum::Router::new()
        .route("/v1/keys/release", post(release))
        .route("/v1/tenants/{tenant}/keys", get(key_status))
        .route("/v1/tenants/{tenant}/keys/rotate", post(rotate))
        .route("/v1/tenants/{tenant}/keys/shred", post(shred))
        .with_state(KeyEndpoints { keys, edge })
}

fn tenant_id(text: &str) -> Result<TenantId, Problem> {
    Uuid::parse_str(text)
        .map(TenantId)
        .map_err(|_| bad_body("the tenant is not a UUID"))
}

/// The tenant of an operator's request: the operator's token, then the id.
fn operator_tenant(edge: &Edge, headers: &HeaderMap, tenant: &str) -> Result<TenantId, Problem> {
    if !edge.is_operator(headers) {
        return Err(operator_required());
    }
    tenant_id(tenant)
}

fn scope_denied(role: &str, scope: &str) -> Problem {
    Problem::from(KeyError::ScopeDenied {
        role: role.into(),
        scope: scope.into(),
    })
}

/// Open the sealed payloads of `tenant` at `indices` in `scope` with the edge's scope keys,
/// and record the openings in `reads.audit` events. Each result is the entry and its
/// parameters (a user action's) or its sealed fields (another kind's); an entry that is
/// not a sealed payload of that tenant and scope, or that does not open, is refused.
///
/// # Errors
/// As [`Edge::scope_keys`]; 500-free: a payload that does not open is a 409 naming it.
pub(crate) async fn open_entries(
    edge: &Edge,
    tenant: &TenantId,
    scope: &str,
    indices: &[u64],
) -> Result<Vec<(SignedEvent, Map<String, Value>)>, Problem> {
    let keys = edge.scope_keys(tenant).await?;
    let mut out = Vec::with_capacity(indices.len());
    for &index in indices {
        let bytes = edge.log.entry(LeafIndex(index))?;
        let signed = SignedEvent::from_bytes(&bytes)?;
        let event = signed.event();
        let unreadable = |why: String| {
            Problem::new(
                StatusCode::CONFLICT,
                "payload-unreadable",
                "Sealed payload does not open",
                format!("entry {index}: {why}"),
            )
        };
        let (s, version) = sealed_scope(event).map_err(|e| unreadable(e.to_string()))?;
        if event.tenant != *tenant || s != scope {
            return Err(unreadable(format!(
                "not a payload of this tenant in scope {scope}"
            )));
        }
        let key = keys
            .get(scope, version)
            .ok_or_else(|| scope_denied(&edge.service.identity.keys().role().to_string(), scope))?;
        let params = match sealed_kind(event.kind.as_str()) {
            Some(k) if k.action => {
                open_action(event, key).map_err(|e| unreadable(e.to_string()))?
            }
            _ => {
                let plain = open(event, key).map_err(|e| unreadable(e.to_string()))?;
                serde_json::from_slice::<Map<String, Value>>(&plain)
                    .map_err(|e| unreadable(format!("not a JSON object: {e}")))?
            }
        };
        out.push((signed, params));
    }
    for chunk in indices.chunks(READS_AUDIT_ENTRIES_MAX) {
        let mut body = Map::new();
        body.insert("scope".into(), scope.into());
        body.insert("entries".into(), json!(chunk));
        let identity = edge.service.identity.current().into_iter().collect();
        edge.append(READS_AUDIT, *tenant, edge.request_id(), identity, body)
            .await?;
    }
    Ok(out)
}

/// Paging of a payload read.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct PayloadsQuery {
    /// Only entries after this index.
    pub after: Option<u64>,
    /// At most this many (1..=100, default 50).
    pub limit: Option<usize>,
}

/// `GET /v1/tenants/{tenant}/payloads/{scope}` (session).
#[utoipa::path(get,
    path = "/v1/tenants/{tenant}/payloads/{scope}",
    tag = "keys",
    params(("tenant" = String, Path, description = "Tenant id"), ("scope" = String, Path, description = "approvals, policies, transfers, users or wallets"), PayloadsQuery),
    responses((status = 200, description = "The payloads, opened (an empty list for another tenant)", body = Object), (status = 400, description = "Bad scope or paging", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 401, description = "Sign in first", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 403, description = "The caller lacks the scope", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 409, description = "A payload does not open", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 410, description = "Tenant shredded", body = crate::problem::Problem, content_type = "application/problem+json")),
    security(("session" = [])))]
pub(crate) async fn payloads(
    State(edge): State<Arc<Edge>>,
    headers: HeaderMap,
    Path((tenant, scope)): Path<(String, String)>,
    query: Result<Query<PayloadsQuery>, QueryRejection>,
) -> Result<Response, Problem> {
    let session = edge.session(&headers)?;
    let Query(query) = query.map_err(|e| bad_body(format!("query: {e}")))?;
    if !SCOPES.contains(&scope.as_str()) {
        return Err(bad_body(format!(
            "scope {scope:?} is not one of {SCOPES:?}"
        )));
    }
    let limit = query.limit.unwrap_or(50);
    if !(1..=PAYLOADS_PAGE_MAX).contains(&limit) {
        return Err(bad_body(format!("limit is 1 to {PAYLOADS_PAGE_MAX}")));
    }
    let empty = json!({"tenant": tenant, "scope": scope, "items": [], "next": null});
    // Another tenant's data: an empty answer, the same for a tenant that does not exist.
    let Ok(id) = Uuid::parse_str(&tenant).map(TenantId) else {
        return Ok(axum::Json(empty).into_response());
    };
    if id != session.tenant {
        return Ok(axum::Json(empty).into_response());
    }
    let role = edge
        .with_tenant(&id, |t| t.users.get(&session.user).map(|u| u.role))
        .flatten()
        .ok_or_else(|| not_found("user", ""))?;
    if !user_scopes(role).contains(&scope.as_str()) {
        return Err(forbidden(
            "scope-denied",
            "Scope not granted",
            format!(
                "a {} may not read scope {scope}: only admins read the tenant's directory",
                role.as_str()
            ),
        ));
    }
    let after = query.after;
    let mut indices: Vec<u64> = edge
        .with_tenant(&id, |t| {
            t.payloads
                .get(&scope)
                .map(|p| {
                    let start = after.map_or(0, |a| p.partition_point(|i| *i <= a));
                    p[start..].iter().take(limit + 1).copied().collect()
                })
                .unwrap_or_default()
        })
        .unwrap_or_default();
    let more = indices.len() > limit;
    indices.truncate(limit);
    if indices.is_empty() {
        return Ok(axum::Json(empty).into_response());
    }
    let opened = open_entries(&edge, &id, &scope, &indices).await?;
    let items: Vec<Value> = opened
        .iter()
        .zip(&indices)
        .map(|((signed, params), index)| {
            let e = signed.event();
            json!({
                "index": index,
                "kind": e.kind.as_str(),
                "request": e.request.0.to_string(),
                "time": e.time.to_string(),
                "version": sealed_scope(e).map(|(_, v)| v).unwrap_or(0),
                "payload": params,
            })
        })
        .collect();
    Ok(axum::Json(json!({
        "tenant": tenant,
        "scope": scope,
        "items": items,
        "next": if more { indices.last().copied() } else { None },
    }))
    .into_response())
}

/// `GET /v1/tenants/{tenant}/keys` (operator, or an admin of the tenant).
#[utoipa::path(get,
    path = "/v1/tenants/{tenant}/keys",
    tag = "keys",
    params(("tenant" = String, Path, description = "Tenant id")),
    responses((status = 200, description = "Versions, rotation and shredding, releases and decryptions per role, and per hour by role and scope", body = Object), (status = 400, description = "Bad tenant id", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 401, description = "Operator token or session required", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 403, description = "Not an admin", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 404, description = "No such tenant", body = crate::problem::Problem, content_type = "application/problem+json")),
    security(("operator" = []), ("session" = [])))]
pub(crate) async fn key_status(
    State(KeyEndpoints { keys, edge }): State<KeyEndpoints>,
    headers: HeaderMap,
    Path(tenant): Path<String>,
) -> Result<Response, Problem> {
    let id = tenant_id(&tenant)?;
    if !edge.is_operator(&headers) {
        let session = edge.session(&headers)?;
        if session.tenant != id {
            return Err(not_found("tenant", &tenant));
        }
        let role = edge
            .with_tenant(&id, |t| t.users.get(&session.user).map(|u| u.role))
            .flatten();
        if role != Some(UserRole::Admin) {
            return Err(forbidden(
                "user-not-authorized",
                "User may not do this",
                "only the tenant's admins and the operator read its key status",
            ));
        }
    }
    let status = edge
        .with_tenant(&id, |t| {
            let k = &t.keys;
            json!({
                "tenant": tenant,
                "status": if k.shredded.is_some() { "shredded" } else { "active" },
                "current_version": k.current(),
                "created": k.versions.first().map(|v| v.created.clone()),
                "rotated": k.versions.iter().skip(1).map(|v| v.created.clone()).collect::<Vec<_>>(),
                "versions": k.versions.iter().map(|v| json!({"version": v.version, "created": v.created, "index": v.index})).collect::<Vec<_>>(),
                "shredded": k.shredded.as_ref().map(|(time, index)| json!({"time": time, "index": index})),
                "releases": k.releases,
                "decryptions": k.decryptions,
                "hourly": k.hourly,
            })
        })
        .ok_or_else(|| not_found("tenant", &tenant))?;
    let mut status = status;
    status["seeds_held"] = keys.has_seeds(&id).into();
    Ok(axum::Json(status).into_response())
}

/// `POST /v1/tenants/{tenant}/keys/rotate` (operator): `keys.rotated`.
#[utoipa::path(post,
    path = "/v1/tenants/{tenant}/keys/rotate",
    tag = "keys",
    params(("tenant" = String, Path, description = "Tenant id")),
    responses((status = 200, description = "The new version and its entry", body = Object), (status = 400, description = "Bad tenant id", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 401, description = "Operator token required", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 404, description = "No such tenant", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 410, description = "Tenant shredded", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 503, description = "Key store unavailable", body = crate::problem::Problem, content_type = "application/problem+json")),
    security(("operator" = [])))]
pub(crate) async fn rotate(
    State(KeyEndpoints { keys, edge }): State<KeyEndpoints>,
    headers: HeaderMap,
    Path(tenant): Path<String>,
) -> Result<Response, Problem> {
    let id = operator_tenant(&edge, &headers, &tenant)?;
    let (version, index) = keys.rotate(&id).await?;
    edge.forget_scope_keys(&id);
    Ok(axum::Json(json!({"tenant": tenant, "version": version, "index": index})).into_response())
}

/// `POST /v1/tenants/{tenant}/keys/shred` (operator): `keys.shredded`, then the seeds go.
#[utoipa::path(post,
    path = "/v1/tenants/{tenant}/keys/shred",
    tag = "keys",
    params(("tenant" = String, Path, description = "Tenant id")),
    responses((status = 200, description = "The keys.shredded entry", body = Object), (status = 400, description = "Bad tenant id", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 401, description = "Operator token required", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 404, description = "No such tenant", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 410, description = "Tenant shredded already", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 503, description = "Key store unavailable", body = crate::problem::Problem, content_type = "application/problem+json")),
    security(("operator" = [])))]
pub(crate) async fn shred(
    State(KeyEndpoints { keys, edge }): State<KeyEndpoints>,
    headers: HeaderMap,
    Path(tenant): Path<String>,
) -> Result<Response, Problem> {
    let id = operator_tenant(&edge, &headers, &tenant)?;
    let index = keys.shred(&id).await?;
    edge.forget_scope_keys(&id);
    Ok(axum::Json(json!({"tenant": tenant, "index": index})).into_response())
}

/// `POST /v1/keys/release`: scope keys for a service's live identity, HPKE-sealed to its
/// attested X25519 key.
#[utoipa::path(post,
    path = "/v1/keys/release",
    tag = "keys",
    request_body = ReleaseRequest,
    responses((status = 200, description = "The keys, sealed to the requester", body = Release), (status = 400, description = "Bad request", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 401, description = "Not signed by the role's identity", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 403, description = "Identity not live, or scope not granted", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 404, description = "No such tenant", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 410, description = "Tenant shredded", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 503, description = "Key store unavailable", body = crate::problem::Problem, content_type = "application/problem+json")))]
pub(crate) async fn release(
    State(KeyEndpoints { keys, .. }): State<KeyEndpoints>,
    body: Bytes,
) -> Result<Response, Problem> {
    let req: ReleaseRequest = serde_json::from_slice(&body)
        .map_err(|e| bad_body(format!("not the JSON expected: {e}")))?;
    let release = keys.release(&req).await?;
    Ok(axum::Json(release).into_response())
}
