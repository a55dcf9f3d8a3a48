//! `govern node` and `govern up`.

use std::sync::Arc;

use govern_api::edge::{Edge, EdgeConfig};
use govern_api::{AppState, Attestor, DataDir, NodeHandle, Services};
use govern_core::event::{Kind, RequestId, SignedEvent, TenantId};
use govern_store::LogConfig;
use govern_workers::identity::ServiceIdentity;
use tokio::net::TcpListener;

use crate::client::Client;
use crate::config::Server;

pub type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

const DEV_WARNING: &str = "DEV MODE: the log key and producer keys are plain files in the data dir and no \
enclave protects them; this keeps govern's formats and checks, not its protection. Never hold real assets with it.";

async fn start(server: &Server) -> Result<(NodeHandle, DataDir, Services)> {
    let dir = DataDir::open(&server.data_dir, server.origin.as_deref())?;
    let executable =
        std::env::current_exe().map_err(|e| format!("cannot find this executable: {e}"))?;
    if cfg!(feature = "dev") {
        // Dev mode pins this executable's measurements (re-pinning after a rebuild), so the
        // services it runs can attest.
        let pinned = govern_api::devpin::ensure_dev_pinned(&server.data_dir, &executable)?;
        if pinned.changed {
            tracing::info!(
                serial = pinned.signed.manifest.serial,
                path = %pinned.path.display(),
                "pinned this executable's dev measurements"
            );
        }
    }
    let mut config = LogConfig::new(dir.origin());
    config.batch_events_max = server.batch_events_max.max(1);
    config.batch_wait_ms = server.batch_wait_ms;
    config.time_skew_ms = server.time_skew_ms;
    #[cfg(feature = "nitro")]
    let attestor = {
        let _ = executable;
        Attestor::Nitro
    };
    #[cfg(not(feature = "nitro"))]
    let attestor = if cfg!(feature = "dev") {
        Attestor::Simulated { executable }
    } else {
        return Err(
            "a production build attests with the Nitro Secure Module: build with \
                    `--no-default-features --features nitro` and run inside an enclave"
                .into(),
        );
    };
    let services = dir.boot(config, cfg!(feature = "dev"), &attestor).await?;
    services.spawn_reattestation();
    let listener = TcpListener::bind(server.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", server.listen))?;
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    let web_origin = server
        .web_origin
        .clone()
        .unwrap_or_else(|| format!("http://localhost:{port}"));
    let edge_config = EdgeConfig::new(&server.rp_id, &web_origin)?;
    let edge = Edge::new(
        edge_config,
        Arc::clone(&services.log),
        Arc::clone(&services.policy),
        Arc::clone(&services.edge),
        Arc::clone(&services.keys),
        dir.operator_token()?,
        dir.passkeys_path(),
    )?;
    let state = AppState::new(Arc::clone(&services.log), &dir.verifier_key())
        .with_identities(Arc::clone(&services.policy))
        .with_edge(Arc::new(edge));
    let node = NodeHandle::spawn(state, listener)?;
    tracing::warn!("{DEV_WARNING}");
    // Tests and scripts read this line to find the port when listening on port 0.
    println!(
        "govern node listening on http://{} (origin {}, data dir {})",
        node.addr,
        dir.origin(),
        server.data_dir.display()
    );
    println!("verifier key: {}", dir.verifier_key());
    Ok((node, dir, services))
}

async fn until_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// `govern node`.
pub async fn node(server: Server) -> Result<()> {
    let (node, _dir, _services) = start(&server).await?;
    until_signal().await;
    tracing::info!("shutting down");
    node.shutdown().await;
    Ok(())
}

/// A demo event signed by the edge's attested identity.
pub fn demo_event(edge: &ServiceIdentity, message: &str) -> Result<SignedEvent> {
    let mut body = serde_json::Map::new();
    body.insert("message".into(), message.into());
    Ok(edge.sign(
        Kind::new("demo.hello")?,
        TenantId::SYSTEM,
        RequestId::new_v7(),
        Vec::new(),
        body,
    )?)
}

/// `govern up`.
pub async fn up(server: Server) -> Result<()> {
    let (node, _dir, services) = start(&server).await?;
    let url = format!("http://localhost:{}", node.addr.port());
    let client = Client::new(&url)?;
    let event = demo_event(&services.edge.identity, "hello from govern up")?;
    let receipt = client.append(event.bytes()).await?;
    println!();
    println!("govern is up at {url}");
    println!(
        "first demo entry: index {} leaf {}",
        receipt.index, receipt.leaf_hash
    );
    println!("try:");
    println!("  curl {url}/checkpoint");
    println!("  curl {url}/v1/services");
    println!("  curl {url}/v1/entries/{}", receipt.index);
    println!(
        "  curl '{url}/v1/proofs/inclusion?index={}&size={}'",
        receipt.index, receipt.inclusion.size
    );
    println!("  govern verify log --url {url}");
    println!("Ctrl-C stops it.");
    until_signal().await;
    node.shutdown().await;
    Ok(())
}
