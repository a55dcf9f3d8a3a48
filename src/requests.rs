//! `govern requests --tenant T`: a tenant's requests as the node lists them to its operator
//! (`GET /v1/requests`, with the data dir's `operator.token`), a page at a time: index,
//! time, kind, status and the full request id, which `govern verify request` takes.

use std::path::PathBuf;

use clap::Args;
use govern_client::wire::RequestsPage;

use crate::error::Result;
use crate::operator::{NodeArgs, call};

#[derive(Debug, Args)]
pub struct RequestsArgs {
    /// The tenant's id.
    #[arg(long)]
    pub tenant: String,
    /// Only the requests whose first event comes after this entry index (the `--after` the
    /// page before prints).
    #[arg(long)]
    pub after: Option<u64>,
    /// At most this many (1 to 100) [default: the node's, 50].
    #[arg(long)]
    pub limit: Option<usize>,
    #[command(flatten)]
    pub node: NodeArgs,
}

/// `govern requests`.
pub async fn run(args: RequestsArgs, config_dir: Option<PathBuf>) -> Result<()> {
    let tenant = uuid::Uuid::parse_str(&args.tenant)
        .map_err(|e| format!("--tenant {}: not a tenant id: {e}", args.tenant))?;
    let mut path = format!("/v1/requests?tenant={tenant}");
    if let Some(after) = args.after {
        path.push_str(&format!("&after={after}"));
    }
    if let Some(limit) = args.limit {
        path.push_str(&format!("&limit={limit}"));
    }
    let body = call(&args.node, config_dir, reqwest::Method::GET, &path, None).await?;
    if args.node.json {
        println!("{body:#}");
        return Ok(());
    }
    let page: RequestsPage = serde_json::from_value(body)
        .map_err(|e| format!("{}: unexpected answer: {e}", args.node.url))?;
    if page.requests.is_empty() {
        match args.after {
            Some(after) => println!("tenant {tenant} has no request after entry {after}"),
            None => println!("tenant {tenant} has no request yet"),
        }
        return Ok(());
    }
    let rows: Vec<Vec<String>> = page
        .requests
        .iter()
        .map(|r| {
            vec![
                r.index.to_string(),
                r.time.clone(),
                r.kind.clone(),
                r.status.clone(),
                r.id.clone(),
            ]
        })
        .collect();
    println!(
        "{}",
        crate::table::render(&["index", "time", "kind", "status", "request"], &rows, &[0])
    );
    match page.next {
        Some(next) => {
            let limit = args
                .limit
                .map(|l| format!(" --limit {l}"))
                .unwrap_or_default();
            println!("next page: govern requests --tenant {tenant} --after {next}{limit}");
        }
        None => println!("end of the list ({} on this page)", page.requests.len()),
    }
    Ok(())
}
