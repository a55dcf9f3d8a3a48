//! `govern replay DIR --data-dir FRESH`: re-verify an export (`govern export`) entry by
//! entry into a fresh data dir, rebuild every projection, and print the tree size and the
//! state root, which equal the source's (`govern status`).
//!
//! What it checks, in order, stopping at the first failure with its index:
//! - `v1/log` names the log (origin and verifier key; `--key` pins your own);
//! - every checkpoint in `checkpoints/` and the latest `checkpoint` verify under that key,
//!   sizes only grow, and no two checkpoints of one size name different roots (a fork);
//! - every entry parses as a canonical event whose producer signature verifies (on every
//!   core), then passes the node's append policy as of its place in the log (govern-store's
//!   `Replay`): identities at each event's recorded time, manifests and their quorum, the
//!   routing graph, uniqueness keys, user signatures and their anchor distance;
//! - each checkpoint names exactly the tree its entries make;
//! - every hash tile and manifest file of the export equals what the entries give;
//! - every checkpoint given with `--checkpoint` (from a witness, an earlier `verify log`)
//!   is consistent with the replayed log.
//!
//! The trust it needs and where it comes from: the log's verifier key (`--key`, else the
//! export's `v1/log`), the manifest signers (`--signers`, else the export's
//! `trust/manifest-signers.toml`), and for a dev log the dev CA root (`--dev-root`, else
//! `trust/dev-root.der`; the manifest pins its SHA-256, so it cannot be swapped).
//!
//! The checks, the trust and the replay are govern-archive's; this is the command: its flags,
//! its progress bar and what it prints.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use govern_archive::replay::Options;
use govern_archive::trust::Pins;

use crate::error::Result;

pub use govern_archive::replay::Outcome;

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The export (`govern export DIR`).
    pub dir: PathBuf,
    /// The fresh data dir to build (must not exist, or be empty).
    #[arg(long)]
    pub data_dir: PathBuf,
    /// The log's verifier key [default: the export's `v1/log`].
    #[arg(long)]
    pub key: Option<String>,
    /// The manifest signers to pin (`manifest-signers.toml`) [default: the export's
    /// `trust/manifest-signers.toml`].
    #[arg(long)]
    pub signers: Option<PathBuf>,
    /// The dev CA root (DER) a dev log's attestations chain to [default: the export's
    /// `trust/dev-root.der`].
    #[arg(long)]
    pub dev_root: Option<PathBuf>,
    /// A signed checkpoint of this log seen elsewhere (a witness, an earlier `verify log`):
    /// the replay must agree with it. Repeatable.
    #[arg(long = "checkpoint")]
    pub checkpoints: Vec<PathBuf>,
    /// Print JSON at the end.
    #[arg(long)]
    pub json: bool,
    /// Restore the log into this PostgreSQL database (`postgres://…`, holding no log yet)
    /// instead of the data dir's RocksDB; the data dir still gets the trust files, and
    /// `govern node --storage` then serves it (docs/deployment.md).
    #[arg(long, value_name = "URL")]
    pub storage: Option<String>,
    /// The witness policy whose cosignatures the checkpoints are checked under (TOML:
    /// `quorum`, `[[witness]]` `vkey`s) [default: the export's `trust/witnesses.toml`, else
    /// the policy its `v1/log` names, else none].
    #[arg(long)]
    pub witnesses: Option<PathBuf>,
}

/// Progress on a terminal (a bar with rate and ETA), plain lines otherwise.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    total: u64,
    next_line: u64,
    start: Instant,
}

impl Progress {
    fn new(total: u64, quiet: bool) -> Self {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = indicatif::ProgressBar::new(total);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "replay {bar:40} {pos}/{len} entries  {per_sec}  ETA {eta}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar
        });
        Self {
            bar,
            total,
            next_line: if quiet { u64::MAX } else { total / 10 },
            start: Instant::now(),
        }
    }

    fn at(&mut self, done: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(done);
        } else if done >= self.next_line && done < self.total {
            let secs = self.start.elapsed().as_secs_f64().max(1e-9);
            eprintln!(
                "replay: {done}/{} entries ({:.0}/s)",
                self.total,
                done as f64 / secs
            );
            self.next_line = done + (self.total / 10).max(1);
        }
    }

    fn done(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Progress on a terminal (a bar with rate and ETA), plain lines otherwise, and the trust
/// and consistency notes, on stderr.
struct Observer {
    quiet: bool,
    progress: Option<Progress>,
}

impl govern_archive::Observer for Observer {
    fn note(&mut self, line: &str) {
        eprintln!("{line}");
    }

    fn start(&mut self, total: u64) {
        self.progress = Some(Progress::new(total, self.quiet));
    }

    fn at(&mut self, done: u64) {
        if let Some(p) = &mut self.progress {
            p.at(done);
        }
    }

    fn done(&mut self) {
        if let Some(p) = &self.progress {
            p.done();
        }
    }
}

/// Replay `args.dir` into `args.data_dir` (`quiet`: no progress).
pub fn replay(
    args: &ReplayArgs,
    quiet: bool,
) -> std::result::Result<Outcome, Box<dyn std::error::Error + Send + Sync>> {
    let options = Options {
        dir: args.dir.clone(),
        data_dir: args.data_dir.clone(),
        pins: Pins {
            key: args.key.clone(),
            signers: args.signers.clone(),
            dev_root: args.dev_root.clone(),
            witnesses: args.witnesses.clone(),
            allow_dev_root: crate::manifest::ALLOW_DEV_ROOT,
        },
        checkpoints: args.checkpoints.clone(),
    };
    let mut observer = Observer {
        quiet,
        progress: None,
    };
    match &args.storage {
        None => govern_archive::replay::replay(&options, &mut observer),
        Some(url) => govern_archive::replay::replay_to(&options, &mut observer, || {
            crate::cluster::open_empty(url)
        }),
    }
}

/// `govern replay`.
pub async fn run(args: ReplayArgs) -> Result<()> {
    let json = args.json;
    let outcome = tokio::task::spawn_blocking(move || replay(&args, false))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let rate = outcome.size as f64 / outcome.elapsed.as_secs_f64().max(1e-9);
    if json {
        println!(
            "{}",
            serde_json::json!({
                "origin": outcome.origin, "size": outcome.size, "root": outcome.root,
                "state_root": outcome.state_root, "checkpoints": outcome.batches,
                "witnessed": outcome.witnessed,
            })
        );
    } else {
        eprintln!(
            "replayed {} entries in {} batches in {:.1} s ({rate:.0} entries/s); every check passed",
            outcome.size,
            outcome.batches,
            outcome.elapsed.as_secs_f64()
        );
        println!(
            "origin {}\nsize {}\nroot {}\nstate {}",
            outcome.origin, outcome.size, outcome.root, outcome.state_root
        );
        if let Some(w) = &outcome.witnessed {
            match w.latest_size {
                Some(s) => println!(
                    "witnessed up to size {s} by {} ({} of {}, quorum {})",
                    w.latest_cosigners.join(", "),
                    w.latest_cosigners.len(),
                    w.witnesses,
                    w.quorum
                ),
                None => println!(
                    "witnessed: no checkpoint has {} of the {} witnesses' cosignatures",
                    w.quorum, w.witnesses
                ),
            }
            for (name, (n, max)) in &w.by_witness {
                let max = max.map_or_else(|| "-".into(), |m| m.to_string());
                println!("  {name}: cosigned {n} checkpoints, the largest of size {max}");
            }
        }
    }
    Ok(())
}
