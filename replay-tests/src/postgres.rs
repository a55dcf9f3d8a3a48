//! A throwaway PostgreSQL server for tests: Debian's PostgreSQL binaries (`make test`
//! installs the `postgresql` package), a fresh cluster in a temporary directory, listening
//! on a free loopback port, stopped and removed on drop. PostgreSQL refuses to run as root,
//! so under root the cluster belongs to the `postgres` system user the package creates.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A running server; [`TestPostgres::database`] makes a fresh database on it.
#[derive(Debug)]
pub struct TestPostgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    as_postgres: bool,
    next: std::sync::atomic::AtomicU64,
}

fn bin_dir() -> Result<PathBuf, String> {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|e| {
            format!("no PostgreSQL under /usr/lib/postgresql ({e}): `make test` installs Debian's postgresql")
        })?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    found.sort();
    found
        .pop()
        .ok_or_else(|| "no initdb under /usr/lib/postgresql/*/bin".to_string())
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

impl TestPostgres {
    fn run(&self, program: &str, args: &[&str]) -> Result<(), String> {
        run(&self.bin, self.as_postgres, program, args)
    }

    /// Start one.
    ///
    /// # Errors
    /// When PostgreSQL is not installed or does not start, in words.
    pub fn start() -> Result<Self, String> {
        let bin = bin_dir()?;
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let as_postgres = is_root();
        let data = dir.path().join("data");
        if as_postgres {
            // The postgres user must reach the directory, and own the cluster.
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
                .map_err(|e| e.to_string())?;
            std::fs::create_dir(&data).map_err(|e| e.to_string())?;
            let ok = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(&data)
                .status()
                .map_err(|e| e.to_string())?;
            if !ok.success() {
                return Err("chown postgres failed".into());
            }
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let data_s = data.to_string_lossy().to_string();
        run(
            &bin,
            as_postgres,
            "initdb",
            &[
                "-D",
                &data_s,
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-locale",
            ],
        )?;
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {port} -k {data_s} -c fsync=on -c synchronous_commit=on"
        );
        let log = format!("{data_s}/server.log");
        run(
            &bin,
            as_postgres,
            "pg_ctl",
            &[
                "-D", &data_s, "-l", &log, "-o", &options, "-w", "-t", "60", "start",
            ],
        )?;
        Ok(Self {
            dir,
            bin,
            port,
            as_postgres,
            next: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// The connection string of database `db`.
    #[must_use]
    pub fn url(&self, db: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname={db}",
            self.port
        )
    }

    /// A fresh, empty database; its connection string.
    ///
    /// # Errors
    /// When it cannot be created.
    pub fn database(&self) -> Result<String, String> {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("govern_{n}");
        let port = self.port.to_string();
        self.run(
            "createdb",
            &["-h", "127.0.0.1", "-p", &port, "-U", "postgres", &name],
        )?;
        Ok(self.url(&name))
    }

    /// The data directory.
    #[must_use]
    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        let data = self.data().to_string_lossy().to_string();
        let _ = self.run("pg_ctl", &["-D", &data, "-m", "immediate", "-w", "stop"]);
    }
}

fn run(bin: &Path, as_postgres: bool, program: &str, args: &[&str]) -> Result<(), String> {
    let exe = bin.join(program);
    let out = if as_postgres {
        Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(&exe)
            .args(args)
            .current_dir("/")
            .output()
    } else {
        Command::new(&exe).args(args).output()
    }
    .map_err(|e| format!("{}: {e}", exe.display()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}
