//! `govern verify log`: trust nothing the node says that can be recomputed.
//!
//! A thin adapter over govern-client's [`Follower`]: it fetches the checkpoint and checks its
//! signature; fetches every entry bundle and the hash tiles; checks every entry is a
//! canonical event with a valid signature and that its leaf hash is the one in the level-0
//! tile; recomputes every tree node and compares it with the tiles above; recomputes the root
//! and compares it with the checkpoint; and checks the new checkpoint against the last one it
//! saw from this log (remembered in a state file), both by recomputing the old root and
//! through the node's consistency proof. The first mismatch stops it, naming the index. The state file also pins the log's key and the
//! witness policy the checkpoint was checked under: a later run refuses another key, and a
//! weaker announced policy unless `--witnesses` names one. `govern verify request` reads the
//! same state ([`pinned`]).

use std::path::{Path, PathBuf};

use clap::Args;
use govern_client::Client;
use govern_client::follower::{FollowError, Follower, Position, ProofCheck};
use govern_core::ids::{Hash, RootHash};
use govern_core::note::NoteVerifier;
use govern_core::witness::{PolicyFile, WitnessPolicy};
use serde::{Deserialize, Serialize};

use crate::error::Result;

#[derive(Debug, Args)]
pub struct LogArgs {
    /// The log's base URL: a node (`http://localhost:7600`), or any static file server
    /// serving an export (`govern export`), under a path if need be.
    #[arg(long, env = "GOVERN_URL")]
    pub url: String,
    /// The log's verifier key; default: the one remembered for this URL, else the one the
    /// node announces at /v1/log (trust on first use, then remembered).
    #[arg(long)]
    pub key: Option<String>,
    /// Where the last verified checkpoint is remembered [default:
    /// $XDG_STATE_HOME/govern/verify-<host>_<port>.json, else
    /// ~/.local/state/govern/verify-<host>_<port>.json, named after the URL's host, port and
    /// any path, every character but a letter, digit, `.` or `-` written `_`: `localhost`
    /// and `127.0.0.1` are separate files].
    #[arg(long)]
    pub state: Option<PathBuf>,
    /// The witness policy the checkpoint must meet (TOML: `quorum`, `[[witness]]` `vkey`s),
    /// remembered from then on [default: the policy the node announces at /v1/log, if any,
    /// refused when weaker than the one remembered for this URL].
    #[arg(long)]
    pub witnesses: Option<PathBuf>,
}

/// What `verify log` remembers of a log between runs.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Remembered {
    verifier_key: String,
    size: u64,
    root: String,
    checkpoint: String,
    /// The witness policy the checkpoint was checked under; absent when none was (or in a
    /// state file written before policies were remembered).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    witnesses: Option<PolicyFile>,
}

/// The state file: `--state`, else the default for `url` (a checked base URL,
/// [`Client::base`]).
pub(crate) fn state_path(state: Option<&Path>, url: &str) -> PathBuf {
    state.map_or_else(|| default_state(url), Path::to_path_buf)
}

/// What `verify log` remembered at `path`, if it ran before.
pub(crate) fn remembered(path: &Path) -> Result<Option<Remembered>> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(
            serde_json::from_slice(&b).map_err(|e| format!("{}: {e}", path.display()))?,
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", path.display()).into()),
    }
}

/// The trust a log is checked under.
pub(crate) struct Pinned {
    /// The log's verifier key.
    pub vkey: String,
    /// Whether that key is only the node's word (no `--key`, nothing remembered).
    pub key_announced: bool,
    /// The witness policy and where it came from, if any.
    pub policy: Option<(WitnessPolicy, &'static str)>,
}

impl Pinned {
    /// A follower of the log at `client` under the pinned key and witness policy.
    pub(crate) fn follower(&self, client: Client) -> Result<Follower> {
        let verifier = NoteVerifier::parse(&self.vkey).map_err(|e| format!("verifier key: {e}"))?;
        let follower = Follower::new(client, verifier);
        Ok(match &self.policy {
            Some((policy, source)) => follower.witnessed(policy.clone(), *source),
            None => follower,
        })
    }
}

/// A log that shows another key than the one pinned.
#[derive(Debug, thiserror::Error)]
pub enum PinnedKeyError {
    /// `--key` is not the key remembered for this log.
    #[error("the log's key was {remembered} when last verified, not {given}")]
    Given {
        /// The remembered key.
        remembered: String,
        /// `--key`.
        given: String,
    },
    /// The node announces another key than the pinned one (`--key`, else remembered).
    #[error("the node announces the log key {announced}, not the pinned {pinned}")]
    Announced {
        /// What `/v1/log` says.
        announced: String,
        /// `--key`, else the remembered key.
        pinned: String,
    },
}

/// The log's key and witness policy. The key: `--key`, else the remembered one, else the
/// one the node announces; `--key` must be the remembered one, and the announced one, when
/// read, the pinned one. The policy: `--witnesses`, else the announced one if it is at least
/// as strong as the remembered one ([`govern_client::witness::announced_or_remembered`]). `/v1/log`
/// is read unless the key is pinned and `--witnesses` given.
pub(crate) async fn pinned(
    client: &Client,
    key: Option<&str>,
    witnesses: Option<&Path>,
    remembered: Option<&Remembered>,
) -> Result<Pinned> {
    let pinned_key = key
        .map(str::to_owned)
        .or_else(|| remembered.map(|r| r.verifier_key.clone()));
    if let (Some(r), Some(given)) = (remembered, key)
        && r.verifier_key != given
    {
        return Err(PinnedKeyError::Given {
            remembered: r.verifier_key.clone(),
            given: given.to_owned(),
        }
        .into());
    }
    let announced = if pinned_key.is_some() && witnesses.is_some() {
        None
    } else {
        Some(client.log_info().await?)
    };
    let (vkey, key_announced) = match (pinned_key, &announced) {
        (Some(k), Some(info)) if info.verifier_key != k => {
            return Err(PinnedKeyError::Announced {
                announced: info.verifier_key.clone(),
                pinned: k,
            }
            .into());
        }
        (Some(k), _) => (k, false),
        (None, Some(info)) => (info.verifier_key.clone(), true),
        (None, None) => return Err("no verifier key: pass --key".into()),
    };
    let policy = match witnesses {
        Some(path) => Some((
            WitnessPolicy::from_file(&crate::witness::read_policy(path)?)?,
            "pinned",
        )),
        None => {
            let remembered_policy = remembered
                .and_then(|r| r.witnesses.as_ref())
                .map(WitnessPolicy::from_file)
                .transpose()
                .map_err(|e| format!("state file witness policy: {e}"))?;
            govern_client::witness::announced_or_remembered(
                announced.and_then(|info| info.witnesses),
                remembered_policy.as_ref(),
            )?
        }
    };
    Ok(Pinned {
        vkey,
        key_announced,
        policy,
    })
}

/// `$XDG_STATE_HOME/govern/verify-<host>_<port>.json` (else under `~/.local/state`): the
/// base URL without its scheme, every character but ASCII letters, digits, `.` and `-` as `_`.
fn default_state(url: &str) -> PathBuf {
    let base = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
        .unwrap_or_else(|| PathBuf::from("."));
    let name: String = url
        .trim_start_matches("http://")
        .trim_start_matches("https://")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    base.join("govern").join(format!("verify-{name}.json"))
}

/// `govern verify log`.
pub async fn log(args: LogArgs) -> Result<()> {
    let client = Client::for_log(&args.url)?;
    let state_path = state_path(args.state.as_deref(), client.base());
    let remembered = remembered(&state_path)?;
    let pinned = pinned(
        &client,
        args.key.as_deref(),
        args.witnesses.as_deref(),
        remembered.as_ref(),
    )
    .await?;
    if pinned.key_announced {
        eprintln!(
            "trusting the verifier key the node announces (first use): {}",
            pinned.vkey
        );
    }
    let mut follower = pinned.follower(client)?;
    if let Some(r) = &remembered {
        follower = follower.anchored(Position {
            size: r.size,
            root: RootHash(Hash::from_hex(&r.root).map_err(|e| format!("state file root: {e}"))?),
            checkpoint: r.checkpoint.clone(),
        });
    }
    let update = follower
        .follow(|_, _| Ok::<(), std::convert::Infallible>(()))
        .await
        .map_err(|e| match e {
            // A checkpoint short of the witness policy is the checkpoint's failure.
            FollowError::Witness { .. } => FollowError::Checkpoint(e.to_string()),
            e => e,
        })?;
    if update.proof == ProofCheck::NotServed {
        println!(
            "no consistency proof served (a static copy?): consistency checked by recomputing the old root"
        );
    }
    let cp = &update.latest.checkpoint;
    let remember = Remembered {
        verifier_key: pinned.vkey.clone(),
        size: cp.size.0,
        root: cp.root.to_hex(),
        checkpoint: String::from_utf8_lossy(&update.latest.note).into(),
        witnesses: pinned.policy.as_ref().map(|(p, _)| p.to_file()),
    };
    if let Some(dir) = state_path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = state_path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(&remember)?)?;
    std::fs::rename(&tmp, &state_path)?;
    println!(
        "log {} verified: size {} root {}",
        cp.origin, cp.size, cp.root
    );
    if let Some(old_size) = update.previous {
        println!("consistent with the checkpoint of size {old_size} seen before");
    }
    if let (Some((policy, source)), Some(cosigners)) = (&pinned.policy, &update.latest.cosigners) {
        println!(
            "{}",
            govern_client::witness::witnessed_line(policy, cosigners, source)
        );
    }
    Ok(())
}
