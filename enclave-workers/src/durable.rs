//! Files that survive a crash: what the witness's state and the key service's master and
//! seeds are written with.

use std::io::Write as _;
use std::path::Path;

fn at(what: &str, path: &Path) -> impl FnOnce(std::io::Error) -> std::io::Error {
    let context = format!("{what} {}", path.display());
    move |e| std::io::Error::new(e.kind(), format!("{context}: {e}"))
}

/// Write `bytes` to `path` durably: a temporary file (mode 0600), fsync, rename, fsync of the
/// directory. A reader sees the old file or the new one, and the new one survives a crash
/// once this returns.
///
/// # Errors
/// The I/O error, naming what failed on which path.
pub fn write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
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
