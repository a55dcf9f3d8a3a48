//! `govern witness`: run a c2sp.org/tlog-witness witness, a separate party with its own key,
//! data dir and list of the logs it follows (`govern_workers::witness`); and the CLI's
//! reading of witness policy files. Which policy a log is checked under is
//! `govern_client::witness`'s.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use govern_core::note::{Note, NoteVerifier};
use govern_core::witness::{FollowedLog, PolicyFile, WitnessPolicy};
use govern_workers::witness::Witness;

use crate::demo::Result;

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
    let mut logs: Vec<FollowedLog> = Vec::new();
    for vkey in &args.logs {
        let verifier = NoteVerifier::parse(vkey).map_err(|e| format!("--log {vkey}: {e}"))?;
        let origin = verifier.name().to_owned();
        match logs.iter_mut().find(|l| l.origin == origin) {
            Some(l) => l.verifiers.push(verifier),
            None => logs.push(FollowedLog {
                origin,
                verifiers: vec![verifier],
            }),
        }
    }
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
    govern_workers::witness::serve(witness, listener, crate::demo::until_signal()).await?;
    Ok(())
}

/// Read a witness policy file (TOML: `quorum = k` and `[[witness]]` tables of `vkey` and
/// `url`).
pub fn read_policy(path: &std::path::Path) -> Result<PolicyFile> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let file: PolicyFile = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    govern_core::witness::WitnessPolicy::from_file(&file)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(file)
}

/// Check `note` under `policy`: a line saying who cosigned it, or why it falls short.
pub fn check(policy: &WitnessPolicy, note: &Note, source: &str) -> Result<String> {
    let c = policy
        .check(note)
        .map_err(|e| format!("witness policy ({source}): {e}"))?;
    Ok(govern_client::witness::witnessed_line(policy, &c, source))
}
