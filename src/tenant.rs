//! The operator's tenant commands, against a running node with the data dir's
//! `operator.token`:
//!
//! - `govern tenant create NAME`: a tenant and its first admin's one-time registration link
//!   (trust on first use, visible in the log as `tenant.created`);
//! - `govern tenant rotate-key TENANT`: the next version of its scope keys (`keys.rotated`);
//!   data sealed under earlier versions still opens;
//! - `govern tenant shred TENANT --yes`: its seeds deleted (`keys.shredded`); nobody can open
//!   its payloads again, and every signature, proof and checkpoint still verifies;
//! - `govern tenant keys TENANT`: its key status (versions, releases and decryptions per
//!   role).

use std::path::PathBuf;

use clap::{Args, Subcommand};
use reqwest::Method;

use crate::error::Result;
use crate::operator::{NodeArgs, call};

#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Create a tenant and print its first admin's one-time registration link.
    Create(CreateArgs),
    /// Add a version of a tenant's scope keys (old data still opens).
    RotateKey(KeyArgs),
    /// Delete a tenant's seeds: nobody can open its payloads again. Irreversible.
    Shred(ShredArgs),
    /// A tenant's key status: versions, rotation, shredding, releases and decryptions.
    Keys(KeyArgs),
}

#[derive(Debug, Args)]
pub struct KeyArgs {
    /// The tenant's id.
    tenant: String,
    #[command(flatten)]
    node: NodeArgs,
}

#[derive(Debug, Args)]
pub struct ShredArgs {
    /// The tenant's id.
    tenant: String,
    /// Confirm: the tenant's data can never be opened again.
    #[arg(long)]
    yes: bool,
    #[command(flatten)]
    node: NodeArgs,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The tenant's name.
    name: String,
    /// The first admin's display name.
    #[arg(long, default_value = "admin")]
    admin: String,
    #[command(flatten)]
    node: NodeArgs,
}

pub async fn run(command: TenantCommand, data_dir: Option<PathBuf>) -> Result<()> {
    match command {
        TenantCommand::Create(args) => create(args, data_dir).await,
        TenantCommand::RotateKey(args) => {
            let body = call(
                &args.node,
                data_dir,
                Method::POST,
                &format!("/v1/tenants/{}/keys/rotate", args.tenant),
                None,
            )
            .await?;
            if args.node.json {
                println!("{body:#}");
            } else {
                println!(
                    "tenant {} now seals under key version {} (entry {}); earlier versions still open",
                    args.tenant, body["version"], body["index"]
                );
            }
            Ok(())
        }
        TenantCommand::Shred(args) => {
            if !args.yes {
                return Err(format!(
                    "shredding deletes tenant {}'s keys for ever: nobody can open its payloads again. Run again with --yes to do it.",
                    args.tenant
                )
                .into());
            }
            let body = call(
                &args.node,
                data_dir,
                Method::POST,
                &format!("/v1/tenants/{}/keys/shred", args.tenant),
                None,
            )
            .await?;
            if args.node.json {
                println!("{body:#}");
            } else {
                println!(
                    "tenant {} shredded (entry {}): its seeds are deleted; its entries, proofs and checkpoints still verify",
                    args.tenant, body["index"]
                );
            }
            Ok(())
        }
        TenantCommand::Keys(args) => {
            let body = call(
                &args.node,
                data_dir,
                Method::GET,
                &format!("/v1/tenants/{}/keys", args.tenant),
                None,
            )
            .await?;
            if args.node.json {
                println!("{body:#}");
                return Ok(());
            }
            println!(
                "tenant {} ({})",
                args.tenant,
                body["status"].as_str().unwrap_or_default()
            );
            for v in body["versions"].as_array().into_iter().flatten() {
                println!(
                    "  key version {} since {} (entry {})",
                    v["version"],
                    v["created"].as_str().unwrap_or_default(),
                    v["index"]
                );
            }
            if let Some(s) = body["shredded"].as_object() {
                println!(
                    "  shredded at {} (entry {})",
                    s["time"].as_str().unwrap_or_default(),
                    s["index"]
                );
            }
            for (what, field) in [("releases", "releases"), ("decryptions", "decryptions")] {
                for (role, c) in body[field].as_object().into_iter().flatten() {
                    println!(
                        "  {what} to {role}: {} (last {})",
                        c["count"],
                        c["last"].as_str().unwrap_or_default()
                    );
                }
            }
            Ok(())
        }
    }
}

async fn create(args: CreateArgs, config_dir: Option<PathBuf>) -> Result<()> {
    let body = call(
        &args.node,
        config_dir,
        Method::POST,
        "/v1/tenants",
        Some(&serde_json::json!({"name": args.name, "admin": args.admin})),
    )
    .await?;
    if args.node.json {
        println!("{body:#}");
        return Ok(());
    }
    println!(
        "tenant {} created (entry {}, request {})",
        body["tenant"].as_str().unwrap_or_default(),
        body["index"],
        body["request"].as_str().unwrap_or_default()
    );
    println!("one-time registration link for its first admin (shown once):");
    println!(
        "  {}",
        body["registration_url"].as_str().unwrap_or_default()
    );
    Ok(())
}
