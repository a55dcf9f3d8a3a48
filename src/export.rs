//! `govern export DIR`: the log as a static C2SP `tlog-tiles` directory, from a data dir
//! (read-only, beside a running node) or from a running node (`--url`).
//!
//! ```text
//! DIR/checkpoint              the latest signed checkpoint (C2SP signed note)
//! DIR/tile/<L>/<N>[.p/<W>]    every hash tile of that tree, full and partial
//! DIR/tile/entries/<N>[...]   every entry bundle
//! DIR/checkpoints/<size>      every checkpoint the log signed up to that size
//! DIR/manifests/<serial>.json every manifest.published body (the manifest and its quorum)
//! DIR/v1/log                  {"origin", "verifier_key", "size"}, as GET /v1/log answers
//! DIR/trust/manifest-signers.toml  the data dir's pinned manifest signers (local only)
//! DIR/trust/dev-root.der      a dev log's CA root, which its manifest pins (local only)
//! DIR/trust/witnesses.toml    the data dir's witness policy, if it has one (local only; from
//!                             a node, v1/log names the policy it announces)
//! ```
//!
//! Any static file server can serve it: a tile client follows `checkpoint` and `tile/`, and
//! `govern verify log --url` checks it whole. The checkpoint is verified with the log's
//! verifier key before anything is written; the export is made in `DIR.partial` and renamed
//! to `DIR` once complete, so a crash never leaves a directory that looks whole.

use std::path::{Path, PathBuf};

use clap::Args;
use govern_core::checkpoint::Checkpoint;
use govern_core::event::SignedEvent;
use govern_core::ids::TreeSize;
use govern_core::note::NoteVerifier;
use govern_core::tiles::{Tile, decode_bundle, tiles_at};
use govern_store::{LogReader, RocksStorage};

use crate::config::DEFAULT_DATA_DIR;
use crate::demo::Result;
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

fn write(root: &Path, rel: &str, bytes: &[u8]) -> Result<u64> {
    let path = root.join(rel);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    }
    std::fs::write(&path, bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(bytes.len() as u64)
}

/// `govern export`.
pub async fn run(args: ExportArgs) -> Result<()> {
    if args.dir.exists() {
        return Err(format!(
            "{} exists already: export into a new directory",
            args.dir.display()
        )
        .into());
    }
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

    let mut partial = args.dir.clone().into_os_string();
    partial.push(".partial");
    let tmp = PathBuf::from(partial);
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
    }
    let mut bytes = 0u64;
    let tiles = tiles_at(size);
    let mut manifests = 0usize;
    for tile in &tiles {
        let data = source.tile(tile).await?;
        bytes += write(&tmp, &tile.to_string(), &data)?;
        if let Tile::Entries { .. } = tile {
            for entry in decode_bundle(&data).map_err(|e| format!("{tile}: {e}"))? {
                let signed = SignedEvent::from_bytes(&entry).map_err(|e| format!("{tile}: {e}"))?;
                let event = signed.event();
                if event.kind.as_str() == govern_core::manifest::MANIFEST_PUBLISHED_KIND {
                    let serial = event
                        .body
                        .get("manifest")
                        .and_then(|m| m.get("serial"))
                        .and_then(serde_json::Value::as_u64)
                        .ok_or_else(|| format!("{tile}: a manifest.published without a serial"))?;
                    let body = serde_json::to_vec_pretty(&event.body)?;
                    bytes += write(&tmp, &format!("manifests/{serial}.json"), &body)?;
                    manifests += 1;
                }
            }
        }
    }
    let checkpoints = source.checkpoints(size).await?;
    for (s, n) in &checkpoints {
        bytes += write(&tmp, &format!("checkpoints/{s}"), n.as_bytes())?;
    }
    bytes += write(&tmp, "checkpoint", note.as_bytes())?;
    let mut info =
        serde_json::json!({"origin": origin, "verifier_key": verifier_key, "size": size.0});
    if let Source::Remote(client) = &source
        && let Some(w) = client.log_info().await?.witnesses
    {
        info["witnesses"] = serde_json::to_value(w)?;
    }
    bytes += write(&tmp, "v1/log", info.to_string().as_bytes())?;
    // What a replay needs to trust beside the log's key: the manifest signers this data dir
    // pins and, for a dev log, its CA root (the manifest pins that by its SHA-256).
    if let Source::Local { data, .. } = &source {
        for (from, to) in [
            (data.manifest_signers_path(), "trust/manifest-signers.toml"),
            (data.dev_ca_path().join("root.der"), "trust/dev-root.der"),
            (
                data.path().join(crate::demo::WITNESSES_FILE),
                "trust/witnesses.toml",
            ),
        ] {
            match std::fs::read(&from) {
                Ok(b) => bytes += write(&tmp, to, &b)?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(format!("{}: {e}", from.display()).into()),
            }
        }
    }
    std::fs::rename(&tmp, &args.dir).map_err(|e| format!("{}: {e}", args.dir.display()))?;
    println!(
        "exported {} entries (root {}) to {}: {} tiles, {} checkpoints, {} manifests, {} bytes ({:.0} bytes per entry)",
        size.0,
        cp.root.to_hex(),
        args.dir.display(),
        tiles.len(),
        checkpoints.len(),
        manifests,
        bytes,
        bytes as f64 / size.0.max(1) as f64
    );
    Ok(())
}
