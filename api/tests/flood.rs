//! Unauthenticated reads while the log appends: a flood of `GET /v1/state` (which
//! canonicalizes the whole state) and of `login/start` (which reads a tenant's users and
//! credentials) takes no lock the sequencer needs, so appends keep succeeding. What the
//! flood costs appends in latency is a benchmark figure (`govern bench flood`), not asserted
//! here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use axum::http::StatusCode;
use govern_core::event::TenantId;
use serde_json::json;
use support::users::*;
use support::{Booted, boot};

/// Appends while the flood runs.
const APPENDS: usize = 300;
/// Concurrent flooding clients of each endpoint.
const FLOODERS: usize = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_keep_succeeding_under_a_flood_of_state_and_login_reads() {
    let node = Arc::new(boot().await);
    let ada = admin(&node).await;
    let stop = Arc::new(AtomicBool::new(false));
    let state_reads = Arc::new(AtomicU64::new(0));
    let login_starts = Arc::new(AtomicU64::new(0));
    let mut flood = Vec::new();
    for _ in 0..FLOODERS {
        let (n, halt, count) = (
            Arc::clone(&node),
            Arc::clone(&stop),
            Arc::clone(&state_reads),
        );
        flood.push(tokio::spawn(async move {
            while !halt.load(Ordering::Relaxed) {
                let r = n.call("GET", "/v1/state", &[], None).await;
                assert_eq!(r.0, StatusCode::OK, "{}", r.1);
                assert!(r.1["state_root"].as_str().is_some_and(|s| s.len() == 64));
                count.fetch_add(1, Ordering::Relaxed);
                tokio::task::yield_now().await;
            }
        }));
        let (n, halt, count) = (
            Arc::clone(&node),
            Arc::clone(&stop),
            Arc::clone(&login_starts),
        );
        let (tenant, user) = (ada.tenant.clone(), ada.id.clone());
        flood.push(tokio::spawn(async move {
            while !halt.load(Ordering::Relaxed) {
                let r = login_start(&n, &tenant, &user).await;
                // Refused or not (the flood must not lock Ada out), never a server error.
                assert!(r.0.as_u16() < 500, "{} {}", r.0, r.1);
                count.fetch_add(1, Ordering::Relaxed);
                tokio::task::yield_now().await;
            }
        }));
    }
    let mut sizes = Vec::with_capacity(APPENDS);
    for i in 0..APPENDS {
        let e = node.edge_event("demo.hello", TenantId::SYSTEM, vec![]);
        let r = node.post(&e).await;
        assert_eq!(r.0, StatusCode::OK, "append {i} under the flood: {}", r.1);
        sizes.push(r.1["inclusion"]["size"].as_u64().unwrap());
    }
    stop.store(true, Ordering::Relaxed);
    for f in flood {
        f.await.unwrap();
    }
    assert!(
        sizes.windows(2).all(|w| w[0] < w[1]),
        "each append is a new entry"
    );
    assert!(state_reads.load(Ordering::Relaxed) > 0);
    assert!(login_starts.load(Ordering::Relaxed) > 0);
    // The state the flood read is the log's: at the final size it is what a fresh read
    // computes.
    let r = node.call("GET", "/v1/state", &[], None).await;
    assert_eq!(r.1["size"].as_u64(), Some(node.size()));
}

async fn login_start(node: &Booted, tenant: &str, user: &str) -> Reply {
    json_call(
        node,
        "POST",
        "/v1/auth/login/start",
        None,
        &json!({"tenant": tenant, "user": user}),
    )
    .await
}
