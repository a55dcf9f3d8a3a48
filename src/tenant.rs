//! `govern tenant create NAME`: the operator makes a tenant on a running node and gets the
//! first admin's one-time registration link (trust on first use, visible in the log as
//! `tenant.created`).

use std::path::PathBuf;

use clap::{Args, Subcommand};
use govern_api::DataDir;

use crate::demo::Result;

#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Create a tenant and print its first admin's one-time registration link.
    Create(CreateArgs),
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The tenant's name.
    name: String,
    /// The first admin's display name.
    #[arg(long, default_value = "admin")]
    admin: String,
    /// The running node.
    #[arg(long, env = "GOVERN_URL", default_value = "http://localhost:7600")]
    url: String,
    /// The node's data dir, whose `operator.token` authorises this [default: ./.govern].
    #[arg(long, env = "GOVERN_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Print the node's JSON answer.
    #[arg(long)]
    json: bool,
}

pub async fn run(command: TenantCommand, data_dir: Option<PathBuf>) -> Result<()> {
    match command {
        TenantCommand::Create(args) => create(args, data_dir).await,
    }
}

async fn create(args: CreateArgs, config_dir: Option<PathBuf>) -> Result<()> {
    let data_dir = args
        .data_dir
        .or(config_dir)
        .unwrap_or_else(|| PathBuf::from(crate::config::DEFAULT_DATA_DIR));
    let token = DataDir::open(&data_dir, None)?.operator_token()?;
    let url = format!("{}/v1/tenants", args.url.trim_end_matches('/'));
    let resp = reqwest::Client::new()
        .post(&url)
        .bearer_auth(token)
        .json(&serde_json::json!({"name": args.name, "admin": args.admin}))
        .send()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    let status = resp.status();
    let body: serde_json::Value = resp
        .json()
        .await
        .map_err(|e| format!("{url}: not JSON: {e}"))?;
    if !status.is_success() {
        return Err(format!(
            "{url}: {status}: {}",
            body["detail"].as_str().unwrap_or_default()
        )
        .into());
    }
    if args.json {
        println!("{body:#}");
        return Ok(());
    }
    println!(
        "tenant {} created (entry {})",
        body["tenant"].as_str().unwrap_or_default(),
        body["index"]
    );
    println!("one-time registration link for its first admin (shown once):");
    println!(
        "  {}",
        body["registration_url"].as_str().unwrap_or_default()
    );
    Ok(())
}
