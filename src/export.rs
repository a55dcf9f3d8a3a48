//! `govern export DIR`: the log as a static C2SP `tlog-tiles` directory, from a data dir
//! (read-only, beside a running node) or from a running node (`--url`).
//!
//! The layout is govern-archive's (`govern_archive::layout`), and so is the writer; this is
//! the command and its two sources.
//!
//! Any static file server can serve it: a tile client follows `checkpoint` and `tile/`, and
//! `govern verify log --url` checks it whole. The checkpoint is verified with the log's
//! verifier key before anything is written; the export is made in `DIR.partial` and renamed
//! to `DIR` once complete, so a crash never leaves a directory that looks whole.

use std::path::PathBuf;

use clap::Args;
use govern_archive::layout;
use govern_archive::write::{ExportWriter, ensure_new};
use govern_core::checkpoint::Checkpoint;
use govern_core::ids::TreeSize;
use govern_core::note::NoteVerifier;
use govern_core::tiles::{Tile, tiles_at};
use govern_store::{LogReader, RocksStorage};

use crate::config::DEFAULT_DATA_DIR;
use crate::error::Result;
use govern_client::Client;

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Where to write the export (must not exist yet).
    pub dir: PathBuf,
    /// Export from a running node instead of a data dir.
    #[arg(long, env = "GOVERN_URL")]
    pub url: Option<String>,
    /// The data dir to read (read-only; a node may be running on it) [default: ./.govern].
    #[arg(long, env = "GOVERN_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
}

/// Where the log comes from.
enum Source {
    Local {
        reader: LogReader<RocksStorage>,
        verifier_key: String,
        data: Box<govern_api::DataDir>,
    },
    Remote(Client),
}

impl Source {
    async fn info(&self) -> Result<(String, String, String)> {
        Ok(match self {
            Self::Local {
                reader,
                verifier_key,
                ..
            } => (
                reader.origin().to_string(),
                verifier_key.clone(),
                reader.latest().note.clone(),
            ),
            Self::Remote(client) => {
                let info = client.log_info().await?;
                let note = String::from_utf8(client.get_required("/checkpoint").await?)
                    .map_err(|_| "the checkpoint is not UTF-8")?;
                (info.origin, info.verifier_key, note)
            }
        })
    }

    async fn tile(&self, tile: &Tile) -> Result<Vec<u8>> {
        Ok(match self {
            Self::Local { reader, .. } => reader.tile(*tile)?,
            Self::Remote(client) => client.get_required(&tile.to_string()).await?,
        })
    }

    /// Every signed checkpoint with size ≤ `size`.
    async fn checkpoints(&self, size: TreeSize) -> Result<Vec<(u64, String)>> {
        let mut out = Vec::new();
        let mut from = 0u64;
        loop {
            let page: Vec<(u64, String)> = match self {
                Self::Local { reader, .. } => reader
                    .checkpoints(TreeSize(from), TreeSize(size.0 + 1), 1000)?
                    .into_iter()
                    .map(|(s, n)| (s.0, n))
                    .collect(),
                Self::Remote(client) => {
                    let page: govern_client::wire::Checkpoints = client
                        .get_json(&format!("/v1/checkpoints?from={from}&limit=1000"))
                        .await?;
                    page.checkpoints
                        .into_iter()
                        .filter(|c| c.size <= size.0)
                        .map(|c| (c.size, c.note))
                        .collect()
                }
            };
            let Some(last) = page.last().map(|(s, _)| *s) else {
                break;
            };
            out.extend(page);
            if last >= size.0 {
                break;
            }
            from = last + 1;
        }
        Ok(out)
    }
}

/// `govern export`.
pub async fn run(args: ExportArgs) -> Result<()> {
    ensure_new(&args.dir)?;
    let source = match &args.url {
        Some(url) => Source::Remote(Client::new(url)?),
        None => {
            let dir = args
                .data_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
            let data = govern_api::DataDir::open_existing(&dir)?;
            let storage = data.open_read_only()?;
            Source::Local {
                reader: LogReader::open(storage)?,
                verifier_key: data.verifier_key(),
                data: Box::new(data),
            }
        }
    };
    let (origin, verifier_key, note) = source.info().await?;
    let verifier = NoteVerifier::parse(&verifier_key)?;
    let (cp, _) = Checkpoint::open(note.as_bytes(), &origin, &verifier)?;
    let size = cp.size;

    let mut export = ExportWriter::create(&args.dir)?;
    let tiles = tiles_at(size);
    for tile in &tiles {
        let data = source.tile(tile).await?;
        export.tile(tile, &data)?;
    }
    let checkpoints = source.checkpoints(size).await?;
    for (s, n) in &checkpoints {
        export.checkpoint(*s, n)?;
    }
    export.latest(&note)?;
    let mut info = layout::log_info(&origin, &verifier_key, size.0);
    if let Source::Remote(client) = &source
        && let Some(w) = client.log_info().await?.witnesses
    {
        info["witnesses"] = serde_json::to_value(w)?;
    }
    export.log_info(&info)?;
    // What a replay needs to trust beside the log's key: the manifest signers this data dir
    // pins and, for a dev log, its CA root (the manifest pins that by its SHA-256).
    if let Source::Local { data, .. } = &source {
        export.trust(&data.manifest_signers_path(), layout::TRUST_SIGNERS)?;
        export.trust(&data.dev_ca_path().join("root.der"), layout::TRUST_DEV_ROOT)?;
        export.trust(
            &data.path().join(crate::run::WITNESSES_FILE),
            layout::TRUST_WITNESSES,
        )?;
    }
    let written = export.finish()?;
    println!(
        "exported {} entries (root {}) to {}: {} tiles, {} checkpoints, {} manifests, {} bytes ({:.0} bytes per entry)",
        size.0,
        cp.root.to_hex(),
        args.dir.display(),
        written.tiles,
        written.checkpoints,
        written.manifests,
        written.bytes,
        written.bytes as f64 / size.0.max(1) as f64
    );
    Ok(())
}
