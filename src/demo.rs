//! `govern node` and `govern up`.

use std::sync::Arc;

use ed25519_dalek::SigningKey;
use govern_api::{AppState, DataDir, NodeHandle};
use govern_core::event::{
    Event, Kind, Producer, RequestId, Role, SignedEvent, TenantId, Timestamp,
};
use govern_store::LogConfig;
use tokio::net::TcpListener;

use crate::client::Client;
use crate::config::Server;

pub type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

const DEV_WARNING: &str = "DEV MODE: the log key and producer keys are plain files in the data dir and no \
enclave protects them; this keeps govern's formats and checks, not its protection. Never hold real assets with it.";

async fn start(server: &Server) -> Result<(NodeHandle, DataDir)> {
    let dir = DataDir::open(&server.data_dir, server.origin.as_deref())?;
    let mut config = LogConfig::new(dir.origin());
    config.batch_events_max = server.batch_events_max.max(1);
    config.batch_wait_ms = server.batch_wait_ms;
    config.time_skew_ms = server.time_skew_ms;
    let log = Arc::new(dir.open_log(config, cfg!(feature = "dev"))?);
    let listener = TcpListener::bind(server.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", server.listen))?;
    let node = NodeHandle::spawn(AppState::new(log, &dir.verifier_key()), listener)?;
    tracing::warn!("{DEV_WARNING}");
    // Tests and scripts read this line to find the port when listening on port 0.
    println!(
        "govern node listening on http://{} (origin {}, data dir {})",
        node.addr,
        dir.origin(),
        server.data_dir.display()
    );
    println!("verifier key: {}", dir.verifier_key());
    Ok((node, dir))
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
    let (node, _dir) = start(&server).await?;
    until_signal().await;
    tracing::info!("shutting down");
    node.shutdown().await;
    Ok(())
}

/// A demo event from the dev edge key.
pub fn demo_event(key: &SigningKey, message: &str) -> Result<SignedEvent> {
    let mut body = serde_json::Map::new();
    body.insert("message".into(), message.into());
    let producer = Producer::new(Role::new("edge")?, &key.verifying_key());
    let event = Event::new(
        Kind::new("demo.hello")?,
        TenantId::SYSTEM,
        RequestId::new_v7(),
        producer,
        Timestamp::now(),
        body,
    );
    Ok(event.sign(key)?)
}

/// `govern up`.
pub async fn up(server: Server) -> Result<()> {
    let (node, dir) = start(&server).await?;
    let url = format!("http://localhost:{}", node.addr.port());
    let client = Client::new(&url)?;
    let event = demo_event(&dir.edge_key()?, "hello from govern up")?;
    let receipt = client.append(event.bytes()).await?;
    println!();
    println!("govern is up at {url}");
    println!(
        "first demo entry: index {} leaf {}",
        receipt.index, receipt.leaf_hash
    );
    println!("try:");
    println!("  curl {url}/checkpoint");
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
