//! The operator's calls to a running node (`govern tenant …`, `govern requests`): the
//! bearer token read from the node's data dir, which is only read here (never created), and
//! a refused token explained in words: which file was read, and what to pass instead.

use std::path::{Path, PathBuf};

use clap::Args;
use serde_json::Value;

use crate::error::Result;
use govern_client::{Client, ClientError};

/// The operator token's file in a node's data dir.
pub const TOKEN_FILE: &str = "operator.token";

/// The node an operator command talks to.
#[derive(Debug, Args)]
pub struct NodeArgs {
    /// The running node.
    #[arg(long, env = "GOVERN_URL", default_value = "http://localhost:7600")]
    pub url: String,
    /// The node's data dir, whose `operator.token` authorises this [default: ./.govern].
    #[arg(long, env = "GOVERN_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Print the node's JSON answer.
    #[arg(long)]
    pub json: bool,
}

impl NodeArgs {
    /// `--data-dir`, else the configuration's, else the default.
    fn data_dir(&self, config_dir: Option<PathBuf>) -> PathBuf {
        self.data_dir
            .clone()
            .or(config_dir)
            .unwrap_or_else(|| PathBuf::from(crate::config::DEFAULT_DATA_DIR))
    }
}

/// The operator token of the node at `url`, read from `<data_dir>/operator.token`; nothing
/// is created.
///
/// # Errors
/// In words when the file is missing (which data dir was read, and `--data-dir`), unreadable
/// or empty.
pub fn token(data_dir: &Path, url: &str) -> Result<String> {
    let path = data_dir.join(TOKEN_FILE);
    let file = path.display();
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => Ok(text.trim().to_string()),
        Ok(_) => Err(
            format!("{file} is empty: it is not the operator token of the node at {url}").into(),
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(format!(
            "{file} does not exist: is {} the data dir of the node at {url}? (--data-dir)",
            data_dir.display()
        )
        .into()),
        Err(e) => Err(format!("{file}: {e}").into()),
    }
}

/// A call to the node with the operator's token: its JSON answer, or the problem in words
/// (a 401 says which token file was refused, and what to pass instead; connection failures
/// and other problems as [`govern_client::ClientError`] words them).
pub async fn call(
    node: &NodeArgs,
    config_dir: Option<PathBuf>,
    method: reqwest::Method,
    path: &str,
    body: Option<&Value>,
) -> Result<Value> {
    let data_dir = node.data_dir(config_dir);
    let client = Client::new(&node.url)?;
    let token = token(&data_dir, &node.url)?;
    let bearer = format!("Bearer {token}");
    match client
        .request_json(method, path, &[("authorization", &bearer)], body)
        .await
    {
        Ok(v) => Ok(v),
        Err(ClientError::Problem {
            status: 401, kind, ..
        }) => {
            let base = node.url.trim_end_matches('/');
            let kind = kind
                .strip_prefix(govern_api::problem::PROBLEM_TYPE_PREFIX)
                .unwrap_or(&kind)
                .to_owned();
            Err(format!(
                "the node at {base} refused the operator token read from {} (401 {kind}): pass --data-dir DIR, the data dir of the node at {base}",
                data_dir.join(TOKEN_FILE).display()
            )
            .into())
        }
        Err(e) => Err(e.into()),
    }
}
