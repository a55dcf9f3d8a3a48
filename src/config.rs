//! Settings: flags, then environment variables, then an optional TOML file, then defaults.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::Args;
use serde::Deserialize;

/// Where a node keeps its data when nothing says otherwise.
pub const DEFAULT_DATA_DIR: &str = ".govern";
/// Where a node listens when nothing says otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7600";

/// The flags of every command that runs a server.
#[derive(Debug, Args, Clone)]
pub struct ServerArgs {
    /// Data directory [default: ./.govern].
    #[arg(long, env = "GOVERN_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:7600]; port 0 picks a free one.
    #[arg(long, env = "GOVERN_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// The checkpoint origin of a new log [default: govern.localhost/log].
    #[arg(long, env = "GOVERN_ORIGIN")]
    pub origin: Option<String>,
    /// Most events per sequencer batch (one WAL sync and one checkpoint each).
    #[arg(long, default_value_t = govern_store::BATCH_EVENTS_MAX)]
    pub batch_events_max: usize,
    /// Most milliseconds a begun batch waits for more events when the queue is empty.
    #[arg(long, default_value_t = govern_store::BATCH_WAIT_MS)]
    pub batch_wait_ms: u64,
    /// How far an event's time may be from the node's clock, in milliseconds.
    #[arg(long, default_value_t = govern_store::TIME_SKEW_MS)]
    pub time_skew_ms: i64,
    /// The WebAuthn relying party id passkeys are bound to (a domain name, never an IP).
    #[arg(long, env = "GOVERN_RP_ID", default_value = "localhost")]
    pub rp_id: String,
    /// The web origin users sign from [default: http://localhost:<listen port>].
    #[arg(long, env = "GOVERN_WEB_ORIGIN")]
    pub web_origin: Option<String>,
    /// A witness policy (TOML: `quorum = k`, `[[witness]]` tables of `vkey` and `url`): the
    /// node submits every checkpoint to those witnesses and serves at `/checkpoint` the
    /// latest with k cosignatures [default: <data dir>/witnesses.toml, if it exists].
    /// `govern up` refuses it: it writes that file for its own three witnesses.
    #[arg(long, env = "GOVERN_WITNESSES")]
    pub witnesses: Option<PathBuf>,
}

/// The TOML file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Data directory.
    pub data_dir: Option<PathBuf>,
    /// Listen address.
    pub listen: Option<SocketAddr>,
    /// Checkpoint origin of a new log.
    pub origin: Option<String>,
}

/// A server's settings, resolved.
#[derive(Debug, Clone)]
pub struct Server {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub origin: Option<String>,
    pub batch_events_max: usize,
    pub batch_wait_ms: u64,
    pub time_skew_ms: i64,
    pub rp_id: String,
    pub web_origin: Option<String>,
    pub witnesses: Option<PathBuf>,
}

/// Why the configuration could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("config file {path}: {source}")]
    Toml {
        path: String,
        source: toml::de::Error,
    },
}

impl Config {
    /// Read `path` if given.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let Some(path) = path else {
            return Ok(Self::default());
        };
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: p.clone(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Toml { path: p, source })
    }

    /// Flags and environment first, then the file, then defaults.
    pub fn server(&self, args: &ServerArgs) -> Server {
        Server {
            data_dir: args
                .data_dir
                .clone()
                .or_else(|| self.data_dir.clone())
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
            listen: args.listen.or(self.listen).unwrap_or_else(|| {
                // A constant that parses.
                DEFAULT_LISTEN
                    .parse()
                    .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 7600)))
            }),
            origin: args.origin.clone().or_else(|| self.origin.clone()),
            batch_events_max: args.batch_events_max,
            batch_wait_ms: args.batch_wait_ms,
            time_skew_ms: args.time_skew_ms,
            rp_id: args.rp_id.clone(),
            web_origin: args.web_origin.clone(),
            witnesses: args.witnesses.clone(),
        }
    }
}
