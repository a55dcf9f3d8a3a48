//! `govern witness`: run a c2sp.org/tlog-witness witness, a separate party with its own key,
//! data dir and list of the logs it follows (the govern-witness crate); and the witness
//! policies the verifiers check checkpoints under.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use govern_core::note::Note;
use govern_core::witness::{Cosigners, PolicyFile, WitnessPolicy};
use govern_witness::Witness;

use crate::error::Result;

#[derive(Debug, Args)]
pub struct WitnessArgs {
    /// The witness's own data dir (its key and the state of what it cosigned).
    #[arg(long, env = "GOVERN_WITNESS_DATA_DIR")]
    pub data_dir: PathBuf,
    /// Its cosigner name, a URL without its scheme (e.g. `witness.example/w1`).
    #[arg(long)]
    pub name: String,
    /// Address to listen on; port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:7611")]
    pub listen: SocketAddr,
    /// A log to follow, by its checkpoint verifier key (`origin+<hex id>+base64`); the
    /// origin is the key's name. Repeat for several logs.
    #[arg(long = "log", required = true)]
    pub logs: Vec<String>,
}

pub async fn run(args: WitnessArgs) -> Result<()> {
    let logs = govern_witness::followed_logs(&args.logs)?;
    let witness = Arc::new(Witness::open(&args.data_dir, &args.name, logs)?);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let addr = listener.local_addr()?;
    // Tests and `govern up` read these two lines.
    println!(
        "govern witness {} listening on http://{addr} (data dir {})",
        args.name,
        args.data_dir.display()
    );
    println!("witness vkey: {}", witness.verifier_key());
    govern_witness::serve(witness, listener, crate::run::until_signal()).await?;
    Ok(())
}

/// Read a witness policy file (TOML: `quorum = k` and `[[witness]]` tables of `vkey` and
/// `url`): `govern_archive::trust::read_witness_policy`.
pub fn read_policy(path: &std::path::Path) -> Result<PolicyFile> {
    Ok(govern_archive::trust::read_witness_policy(path)?)
}

/// A witness policy the node announces that a verifier must not take in place of the one it
/// checked against last time (`verify log`'s state).
#[derive(Debug, thiserror::Error)]
pub enum PinnedPolicyError {
    /// The node announces no policy; the remembered one asks for cosignatures.
    #[error(
        "the node announces no witness policy, but {remembered} was checked when last verified; pass --witnesses FILE to verify under another"
    )]
    NoneAnnounced {
        /// The remembered policy.
        remembered: String,
    },
    /// The node announces a policy that accepts a set of cosigners the remembered one
    /// does not ([`WitnessPolicy::at_least_as_strong_as`]).
    #[error(
        "the node announces the witness policy {announced}, weaker than {remembered} checked when last verified; pass --witnesses FILE to verify under another"
    )]
    Weaker {
        /// The announced policy.
        announced: String,
        /// The remembered policy.
        remembered: String,
    },
}

/// `k of [name+<key ID>, …]`: a policy in one line, each witness by name and key ID.
pub fn summary(policy: &WitnessPolicy) -> String {
    let names: Vec<String> = policy
        .witnesses()
        .iter()
        .map(|w| format!("{}+{}", w.name(), hex::encode(w.key_id())))
        .collect();
    format!("{} of [{}]", policy.quorum(), names.join(", "))
}

/// The witness policy to check a node's checkpoints under when none is given, with where it
/// came from: the one the node announces at `/v1/log`, which must be at least as strong as
/// `remembered` (the policy checked against last time:
/// [`WitnessPolicy::at_least_as_strong_as`]); none, when it announces none, which a
/// remembered policy allows only when it asks for nothing.
///
/// # Errors
/// An announced policy that does not hold together, and [`PinnedPolicyError`].
pub fn announced_or_remembered(
    announced: Option<govern_api::routes::WitnessesInfo>,
    remembered: Option<&WitnessPolicy>,
) -> Result<Option<(WitnessPolicy, &'static str)>> {
    let announced = announced.map(announced_policy).transpose()?;
    let Some(remembered) = remembered else {
        return Ok(announced.map(|a| (a, "announced by the node")));
    };
    match announced {
        Some(a) if a.at_least_as_strong_as(remembered) => {
            let source = if remembered.at_least_as_strong_as(&a) {
                "announced by the node, as remembered"
            } else if remembered.is_empty() {
                "announced by the node"
            } else {
                "announced by the node, stronger than the one remembered"
            };
            Ok(Some((a, source)))
        }
        Some(a) => Err(PinnedPolicyError::Weaker {
            announced: summary(&a),
            remembered: summary(remembered),
        }
        .into()),
        None if remembered.is_empty() => Ok(None),
        None => Err(PinnedPolicyError::NoneAnnounced {
            remembered: summary(remembered),
        }
        .into()),
    }
}

/// The policy a node's `/v1/log` (or an export's `v1/log`) names.
pub fn announced_policy(announced: govern_api::routes::WitnessesInfo) -> Result<WitnessPolicy> {
    Ok(govern_archive::trust::announced_policy(
        announced.quorum,
        announced.vkeys,
    )?)
}

/// Check `note` under `policy`: a line saying who cosigned it, or why it falls short.
pub fn check(policy: &WitnessPolicy, note: &Note, source: &str) -> Result<String> {
    let c = policy
        .check(note)
        .map_err(|e| format!("witness policy ({source}): {e}"))?;
    Ok(format!(
        "witnessed: cosigned by {} ({} of {} witnesses, quorum {}; policy {source})",
        describe(&c),
        c.signed.len(),
        policy.witnesses().len(),
        policy.quorum()
    ))
}

/// `name (at RFC 3339 time), …` for the witnesses that cosigned.
pub fn describe(c: &Cosigners) -> String {
    if c.signed.is_empty() {
        return "no witness".into();
    }
    c.signed
        .iter()
        .map(|(name, t)| {
            let at = i64::try_from(*t)
                .ok()
                .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok())
                .and_then(|t| {
                    t.format(&time::format_description::well_known::Rfc3339)
                        .ok()
                })
                .unwrap_or_else(|| t.to_string());
            format!("{name} at {at}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}
