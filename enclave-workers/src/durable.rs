//! Files that survive a crash: what the witness's state, the key service's master and seeds,
//! and the node's data dir files (its keys, the operator token, passkey state, the manifest)
//! are written with.

use std::io::Write as _;
use std::path::Path;

fn at(what: &str, path: &Path) -> impl FnOnce(std::io::Error) -> std::io::Error {
    let context = format!("{what} {}", path.display());
    move |e| std::io::Error::new(e.kind(), format!("{context}: {e}"))
}

/// The mode of a file [`write`] makes: its owner's only, as every key and secret is.
pub const SECRET_MODE: u32 = 0o600;

/// Write `bytes` to `path` durably: a temporary file (mode [`SECRET_MODE`]), fsync, rename,
/// fsync of the directory. A reader sees the old file or the new one, and the new one
/// survives a crash once this returns.
///
/// # Errors
/// The I/O error, naming what failed on which path.
pub fn write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_with_mode(path, bytes, SECRET_MODE)
}

/// [`write`] for a file others may read (a published manifest, say): the temporary file, and
/// so the new file, gets `mode`.
///
/// # Errors
/// The I/O error, naming what failed on which path.
pub fn write_with_mode(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(at("cannot write", &tmp))?;
    f.write_all(bytes).map_err(at("cannot write", &tmp))?;
    f.sync_all().map_err(at("cannot sync", &tmp))?;
    std::fs::rename(&tmp, path).map_err(at("cannot rename to", path))?;
    sync_dir(path)
}

/// Fsync the directory holding `path`, so a rename or delete in it is durable.
///
/// # Errors
/// The I/O error, naming the directory.
pub fn sync_dir(path: &Path) -> std::io::Result<()> {
    match path.parent() {
        Some(dir) => {
            let dir = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(at("cannot sync", dir))
        }
        None => Ok(()),
    }
}
