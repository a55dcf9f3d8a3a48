//! Writing an export ([`crate::layout`]): in `DIR.partial`, renamed to `DIR` once complete,
//! so a crash never leaves a directory that looks whole. The writer takes the bytes from
//! whatever source the caller reads (a data dir, a running node); it checks nothing the
//! caller has not (the caller verifies the checkpoint before anything is written).

use std::path::{Path, PathBuf};

use govern_core::event::SignedEvent;
use govern_core::tiles::{Tile, decode_bundle};

use crate::Error;
use crate::layout;

/// `dir` must not exist yet.
///
/// # Errors
/// When it does.
pub fn ensure_new(dir: &Path) -> Result<(), String> {
    if dir.exists() {
        return Err(format!(
            "{} exists already: export into a new directory",
            dir.display()
        ));
    }
    Ok(())
}

/// What an export holds once written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Written {
    /// Tiles, hash and entry bundles.
    pub tiles: usize,
    /// Files in `checkpoints/`.
    pub checkpoints: usize,
    /// Files in `manifests/`.
    pub manifests: usize,
    /// Bytes of every file.
    pub bytes: u64,
}

/// An export being written.
#[derive(Debug)]
pub struct ExportWriter {
    dir: PathBuf,
    tmp: PathBuf,
    written: Written,
}

impl ExportWriter {
    /// Begin the export to `dir` in `dir.partial` (a stale one, from a crash, is removed).
    ///
    /// # Errors
    /// When a stale `dir.partial` cannot be removed.
    pub fn create(dir: &Path) -> Result<Self, Error> {
        let mut partial = dir.to_path_buf().into_os_string();
        partial.push(".partial");
        let tmp = PathBuf::from(partial);
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            tmp,
            written: Written::default(),
        })
    }

    fn write(&mut self, rel: &str, bytes: &[u8]) -> Result<(), Error> {
        let path = self.tmp.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        std::fs::write(&path, bytes).map_err(|e| format!("{}: {e}", path.display()))?;
        self.written.bytes += bytes.len() as u64;
        Ok(())
    }

    /// A tile; for an entry bundle, also every `manifest.published` body in it, as
    /// `manifests/<serial>.json`.
    ///
    /// # Errors
    /// A bundle that does not decode, an entry that does not parse, a `manifest.published`
    /// without a serial, an I/O error.
    pub fn tile(&mut self, tile: &Tile, data: &[u8]) -> Result<(), Error> {
        self.write(&tile.to_string(), data)?;
        self.written.tiles += 1;
        if let Tile::Entries { .. } = tile {
            for entry in decode_bundle(data).map_err(|e| format!("{tile}: {e}"))? {
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
                    self.write(&layout::manifest(serial), &body)?;
                    self.written.manifests += 1;
                }
            }
        }
        Ok(())
    }

    /// The signed checkpoint of size `size`.
    ///
    /// # Errors
    /// An I/O error.
    pub fn checkpoint(&mut self, size: u64, note: &str) -> Result<(), Error> {
        self.write(&layout::checkpoint(size), note.as_bytes())?;
        self.written.checkpoints += 1;
        Ok(())
    }

    /// The latest checkpoint (`checkpoint`).
    ///
    /// # Errors
    /// An I/O error.
    pub fn latest(&mut self, note: &str) -> Result<(), Error> {
        self.write(layout::CHECKPOINT, note.as_bytes())
    }

    /// `v1/log` ([`layout::log_info`], with the witness policy a node announces, if any).
    ///
    /// # Errors
    /// An I/O error.
    pub fn log_info(&mut self, info: &serde_json::Value) -> Result<(), Error> {
        self.write(layout::LOG_INFO, info.to_string().as_bytes())
    }

    /// Copy `from` to `rel` (one of [`layout`]'s `TRUST_*`), if it exists.
    ///
    /// # Errors
    /// An I/O error other than `from` not existing.
    pub fn trust(&mut self, from: &Path, rel: &str) -> Result<(), Error> {
        match std::fs::read(from) {
            Ok(b) => self.write(rel, &b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(format!("{}: {e}", from.display()).into()),
        }
    }

    /// Rename `dir.partial` to `dir`: the export is complete.
    ///
    /// # Errors
    /// An I/O error.
    pub fn finish(self) -> Result<Written, Error> {
        std::fs::rename(&self.tmp, &self.dir)
            .map_err(|e| format!("{}: {e}", self.dir.display()))?;
        Ok(self.written)
    }
}
