//! `GET /v1/requests`: a tenant's requests, page by page, for its users (a session: their
//! own tenant) and for the operator (the data dir's `operator.token`: the tenant it names).
//!
//! A request is what the tenant fold calls one (govern-projections' `Tenant::requests`):
//! every request of the tenant's users, from a registration to a transfer and its approvals.
//! Each item is read from the fold (id, kind of its first event, status, number of events)
//! and from the log (the recorded time of its first event), in log order of the first
//! event. The cursor is that event's index: `after=N` lists the requests whose first event
//! comes after entry N, so a page follows the last one exactly however many requests
//! arrived meanwhile (they come later in the log).

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use govern_core::event::{Event, TenantId};
use govern_core::ids::LeafIndex;
use govern_projections::tenants::Request;
use govern_store::StorageError;
use serde::Deserialize;
use uuid::Uuid;

use crate::edge::{Edge, not_found};
use crate::problem::Problem;
use crate::routes::{bad_query, bad_query_param, page_limit};

// The bodies of `GET /v1/requests`, shared with clients (govern-client).
pub use govern_client::wire::{RequestItem, RequestsPage};

/// The requests one `GET /v1/requests` lists when no `limit` is given.
pub const REQUESTS_PAGE_DEFAULT: usize = 50;
/// The most requests one `GET /v1/requests` lists.
pub const REQUESTS_PAGE_MAX: usize = 100;

/// The query of `GET /v1/requests`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RequestsQuery {
    /// The tenant's id: required of the operator; a session's own tenant by default, and
    /// only that one.
    pub tenant: Option<String>,
    /// Only the requests whose first event comes after this entry index (the `next` of the
    /// page before).
    pub after: Option<u64>,
    /// At most this many (1..=100, default 50).
    pub limit: Option<usize>,
}

/// The tenant a caller may list: the operator's must be named; a session's is its own.
fn tenant_of(edge: &Edge, headers: &HeaderMap, named: Option<&str>) -> Result<TenantId, Problem> {
    let parse = |text: &str| {
        Uuid::parse_str(text)
            .map(TenantId)
            .map_err(|_| bad_query_param(format!("tenant {text:?} is not a tenant id (a UUID)")))
    };
    if edge.is_operator(headers) {
        let named = named.ok_or_else(|| {
            Problem::new(
                StatusCode::BAD_REQUEST,
                "tenant-required",
                "Tenant required",
                "the operator names the tenant: GET /v1/requests?tenant=<tenant id>",
            )
        })?;
        return parse(named);
    }
    let session = edge.session(headers).map_err(|mut p| {
        p.detail = format!(
            "{}; the operator sends the data dir's operator.token instead",
            p.detail
        );
        p
    })?;
    match named {
        None => Ok(session.tenant),
        Some(text) if parse(text)? == session.tenant => Ok(session.tenant),
        Some(_) => Err(Problem::new(
            StatusCode::FORBIDDEN,
            "other-tenant",
            "Another tenant's requests",
            "a session lists only its own tenant's requests",
        )),
    }
}

/// The first `limit + 1` requests whose first event comes after `after`, in log order.
fn page<'a>(
    requests: impl Iterator<Item = &'a Request>,
    after: Option<u64>,
    limit: usize,
) -> Vec<(u64, &'a Request)> {
    let mut found: Vec<(u64, &Request)> = requests
        .filter_map(|r| r.events.first().map(|e| (e.index, r)))
        .filter(|(index, _)| after.is_none_or(|a| *index > a))
        .collect();
    if found.len() > limit + 1 {
        found.select_nth_unstable_by_key(limit, |(index, _)| *index);
        found.truncate(limit + 1);
    }
    found.sort_unstable_by_key(|(index, _)| *index);
    found
}

/// `GET /v1/requests` (session or operator): a page of a tenant's requests (id, kind of the
/// first event, status, time, first index, number of events), in log order of their first
/// event; `next` is the `after` of the following page.
#[utoipa::path(get,
    path = "/v1/requests",
    tag = "edge",
    params(RequestsQuery),
    responses((status = 200, description = "A page of the tenant's requests, in log order of their first event", body = RequestsPage), (status = 400, description = "Bad query: a tenant that is not a UUID, a limit out of range; the operator named no tenant (`tenant-required`)", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 401, description = "Neither a live session nor the operator's token", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 403, description = "A session asked for another tenant (`other-tenant`)", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 404, description = "No such tenant", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 503, description = "The store failed", body = crate::problem::Problem, content_type = "application/problem+json")),
    security(("session" = []), ("operator" = [])))]
pub(crate) async fn list_requests(
    State(edge): State<Arc<Edge>>,
    headers: HeaderMap,
    query: Result<Query<RequestsQuery>, QueryRejection>,
) -> Result<Response, Problem> {
    let Query(query) = query.map_err(bad_query)?;
    let limit = page_limit(query.limit, REQUESTS_PAGE_DEFAULT, REQUESTS_PAGE_MAX)?;
    let id = tenant_of(&edge, &headers, query.tenant.as_deref())?;
    let tenant = edge
        .tenant(&id)
        .ok_or_else(|| not_found("tenant", &id.0.to_string()))?;
    let mut found = page(tenant.requests.values(), query.after, limit);
    let more = found.len() > limit;
    found.truncate(limit);
    let mut requests = Vec::with_capacity(found.len());
    for (index, r) in found {
        let bytes = edge.log.entry(LeafIndex(index))?;
        let event: Event = serde_json::from_slice(&bytes)
            .map_err(|e| Problem::from(StorageError::Corrupt(format!("entry {index}: {e}"))))?;
        requests.push(RequestItem {
            id: r.id.clone(),
            kind: r.kind.clone(),
            status: r.status.clone(),
            time: event.time.to_string(),
            index,
            events: r.events.len() as u64,
        });
    }
    let next = if more {
        requests.last().map(|r| r.index)
    } else {
        None
    };
    Ok(axum::Json(RequestsPage {
        tenant: id.0.to_string(),
        requests,
        next,
    })
    .into_response())
}
