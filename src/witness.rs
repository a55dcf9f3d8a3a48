//! `govern witness`: run a c2sp.org/tlog-witness witness, a separate party with its own key,
//! data dir and list of the logs it follows (the govern-witness crate); and the CLI's
//! reading of witness policy files. Which policy a log is checked under is
//! `govern_client::witness`'s.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use govern_core::note::Note;
use govern_core::witness::{PolicyFile, WitnessPolicy};
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

/// Check `note` under `policy`: a line saying who cosigned it, or why it falls short.
pub fn check(policy: &WitnessPolicy, note: &Note, source: &str) -> Result<String> {
    let c = policy
        .check(note)
        .map_err(|e| format!("witness policy ({source}): {e}"))?;
    Ok(govern_client::witness::witnessed_line(policy, &c, source))
}
