//! `govern demo transfer`: a transfer end to end, as a user would drive it (govern-client's
//! `scenario::demo_transfer`), printing every hop as it lands: the policy worker's
//! decisions, the signers' wallet key and, last, the signed transaction.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use govern_client::scenario::{self, Hop};
use tokio::io::AsyncBufReadExt as _;

use crate::error::Result;

/// The demos.
#[derive(Debug, Subcommand)]
pub enum DemoCommand {
    /// A tenant, two users with software passkeys, a policy that needs one approval above
    /// 1 ETH, a wallet (its key made by the signers), a user-signed transfer of 2 ETH and
    /// the approval, to `transfer.signed` (to `transfer.approved` without signers).
    Transfer(DemoArgs),
}

/// The node a demo drives.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// The node.
    #[arg(long, env = "GOVERN_URL", default_value = "http://localhost:7600")]
    pub url: String,
    /// The node's data dir (for the operator token).
    #[arg(long, env = "GOVERN_DATA_DIR", default_value = ".govern")]
    pub data_dir: PathBuf,
    /// The web origin users sign for [default: http://localhost:<the URL's port>].
    #[arg(long)]
    pub origin: Option<String>,
    /// Print one JSON object per transfer instead of the hops.
    #[arg(long)]
    pub json: bool,
    /// Send this many transfers from the wallet (nonces 0, 1, …), one after the other.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub transfers: u64,
    /// Wait for a line on standard input before each transfer (after the wallet is made, say
    /// so: with --json, a first object with the tenant, the wallet and its address).
    #[arg(long)]
    pub step: bool,
}

/// Run a demo.
///
/// # Errors
/// The first refusal, or a hop that does not come.
pub async fn run(command: DemoCommand) -> Result<()> {
    let DemoCommand::Transfer(args) = command;
    let mut driver = crate::scenario::driver(&args.url, args.origin.clone(), &args.data_dir, 1)?;
    let json = args.json;
    let mut out = move |hop: &Hop| {
        if !json {
            println!(
                "{:>6}  {:<20} by {:<8} request {}",
                hop.index, hop.kind, hop.producer, hop.request
            );
        }
    };
    if !args.json {
        println!("{:>6}  {:<20}    {:<8}", "index", "kind", "producer");
    }
    let mut wallet = scenario::demo_wallet(&mut driver, &mut out).await?;
    let mut stdin = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    if args.step {
        if args.json {
            println!(
                "{}",
                serde_json::json!({
                    "tenant": wallet.tenant,
                    "wallet": wallet.wallet,
                    "address": wallet.address,
                })
            );
        } else {
            println!(
                "wallet {} ready: press Enter to send a transfer",
                wallet.wallet
            );
        }
    }
    for nonce in 0..args.transfers {
        if args.step && stdin.next_line().await?.is_none() {
            break;
        }
        let demo = scenario::demo_send(&mut driver, &mut wallet, nonce, &mut out).await?;
        show(&demo, &args);
    }
    Ok(())
}

/// One transfer's outcome, as JSON or as lines.
fn show(demo: &scenario::Demo, args: &DemoArgs) {
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "tenant": demo.tenant,
                "wallet": demo.wallet,
                "request": demo.transfer,
                "to": demo.to,
                "amount": demo.amount,
                "address": demo.address,
                "last": demo.last.kind,
                "index": demo.last.index,
                "tx_hash": demo.tx_hash,
                "raw_transaction": demo.raw,
            })
        );
    } else {
        if let (Some(address), Some(raw)) = (&demo.address, &demo.raw) {
            println!("wallet {} address {address}", demo.wallet);
            println!(
                "transaction {} (EIP-1559, signed 3-of-5):",
                demo.tx_hash.as_deref().unwrap_or_default()
            );
            println!("{raw}");
        }
        println!(
            "transfer {} at {} (index {}): govern verify request {} --url {}",
            demo.transfer, demo.last.kind, demo.last.index, demo.transfer, args.url
        );
    }
}
