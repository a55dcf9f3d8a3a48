//! `govern worker policy` and `govern worker signer --index N`: an enclave worker as its own
//! process (docs/design.md §2, §8). It listens on nothing: it follows the node's log, asks
//! the key service for its scopes and appends its results, all as outbound requests.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use govern_core::event::Role;
use govern_workers::nsm::Nsm;
use govern_workers::policy::{self, PolicyWorker};
use govern_workers::runtime::WorkerConfig;

use crate::error::Result;

/// The workers.
#[derive(Debug, Subcommand)]
pub enum WorkerCommand {
    /// The policy worker: evaluates transfers, policy changes and wallet requests by the
    /// tenants' policies and appends the outcomes.
    Policy(WorkerArgs),
    /// A threshold signer (`signer-1` … `signer-5`): prepares its aux info, makes wallet keys
    /// with the other four, and signs approved transfers with two others after re-checking
    /// each one's chain of custody.
    Signer(SignerArgs),
}

/// A signer's own flags.
#[derive(Debug, Args)]
pub struct SignerArgs {
    /// Which signer: 1 to 5 (role `signer-N`).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=5))]
    pub index: u16,
    /// TEST ONLY: take aux info for all five signers from this file instead of generating
    /// safe primes (minutes). It holds every signer's Paillier secret: never in production.
    #[arg(long, hide = true, env = "GOVERN_TEST_AUX_INFO")]
    pub test_aux_info: Option<PathBuf>,
    /// Presignatures to keep ready per wallet and committee (in memory only; 0: every
    /// signing runs the whole protocol).
    #[arg(long, env = "GOVERN_SIGNER_PRESIGNATURES", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(0..=16))]
    pub presignatures: u16,
    #[command(flatten)]
    pub worker: WorkerArgs,
}

/// Where a worker finds its node and the keys it pins.
#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// The node's URL.
    #[arg(long, env = "GOVERN_URL", default_value = "http://localhost:7600")]
    pub url: String,
    /// The node's data dir (dev mode: the simulated NSM's CA, and the log's key and witness
    /// policy when not given).
    #[arg(long, env = "GOVERN_DATA_DIR", default_value = ".govern")]
    pub data_dir: PathBuf,
    /// The log's verifier key to pin (default: the data dir's log key).
    #[arg(long)]
    pub key: Option<String>,
    /// The witness policy every checkpoint must meet (TOML; default: the data dir's
    /// witnesses.toml, which `govern up` writes).
    #[arg(long)]
    pub witnesses: Option<PathBuf>,
    /// Where the worker keeps its position (default: <data dir>/workers/<role>).
    #[arg(long)]
    pub state: Option<PathBuf>,
}

/// Run a worker until a signal or an error.
///
/// # Errors
/// When the worker cannot start, or stops on a log that does not verify.
pub async fn run(command: WorkerCommand) -> Result<()> {
    match command {
        WorkerCommand::Policy(args) => run_policy(args).await,
        WorkerCommand::Signer(args) => run_signer(args).await,
    }
}

/// The config every worker shares: the pinned log key, the witness policy, the state dir.
fn config(args: &WorkerArgs, role: Role, scopes: &[&str]) -> Result<WorkerConfig> {
    let key = match &args.key {
        Some(k) => k.clone(),
        None => govern_api::DataDir::open_existing(&args.data_dir)?.verifier_key(),
    };
    let witness_path = args
        .witnesses
        .clone()
        .unwrap_or_else(|| args.data_dir.join(crate::run::WITNESSES_FILE));
    let witnesses = if args.witnesses.is_some() || witness_path.exists() {
        let file = crate::witness::read_policy(&witness_path)?;
        Some(
            govern_core::witness::WitnessPolicy::from_file(&file)
                .map_err(|e| format!("{}: {e}", witness_path.display()))?,
        )
    } else {
        tracing::warn!(
            "no witness policy: this worker trusts the log's signature alone, which a split view defeats; pass --witnesses"
        );
        None
    };
    let state_dir = args
        .state
        .clone()
        .unwrap_or_else(|| args.data_dir.join("workers").join(role.as_str()));
    Ok(WorkerConfig {
        url: args.url.clone(),
        role,
        log_key: key,
        witnesses,
        state_dir,
        scopes: scopes.iter().map(|s| (*s).to_string()).collect(),
    })
}

async fn run_signer(args: SignerArgs) -> Result<()> {
    let role = Role::new(govern_workers::signer::role(args.index))?;
    let nsm = nsm(&args.worker, &role)?;
    let config = config(&args.worker, role.clone(), &govern_workers::signer::SCOPES)?;
    let options = govern_workers::signer::SignerOptions {
        test_aux_info: args.test_aux_info.clone(),
        presignatures: usize::from(args.presignatures),
        misbehave: misbehave(),
    };
    let worker = govern_workers::signer::SignerWorker::new(args.index, config, nsm, options)?;
    // Tests and `govern up` read this line.
    println!(
        "govern worker {role} following {} (pid {})",
        args.worker.url,
        std::process::id()
    );
    tokio::select! {
        r = worker.run() => r?,
        () = crate::run::until_signal() => tracing::info!(%role, "signer stopping"),
    }
    Ok(())
}

/// Fault tests only: a debug build's signer misbehaves as `GOVERN_TEST_MISBEHAVE` says
/// (`garbage` or `wrong-seal`). A release build has no such switch.
fn misbehave() -> Option<govern_workers::signer::Misbehave> {
    if !cfg!(debug_assertions) {
        return None;
    }
    match std::env::var("GOVERN_TEST_MISBEHAVE").as_deref() {
        Ok("garbage") => Some(govern_workers::signer::Misbehave::Garbage),
        Ok("wrong-seal") => Some(govern_workers::signer::Misbehave::WrongSeal),
        _ => None,
    }
}

async fn run_policy(args: WorkerArgs) -> Result<()> {
    let role = Role::new(policy::ROLE)?;
    let nsm = nsm(&args, &role)?;
    let config = config(&args, role, &policy::SCOPES)?;
    let worker = PolicyWorker::new(config, nsm)?;
    // Tests and `govern up` read this line.
    println!(
        "govern worker policy following {} (pid {})",
        args.url,
        std::process::id()
    );
    tokio::select! {
        r = worker.run() => r?,
        () = crate::run::until_signal() => tracing::info!("policy worker stopping"),
    }
    Ok(())
}

#[cfg(not(feature = "nitro"))]
fn nsm(args: &WorkerArgs, role: &Role) -> Result<Box<dyn Nsm>> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this executable: {e}"))?;
    let dev_ca = args.data_dir.join("dev-ca");
    Ok(Box::new(
        govern_workers::nsm::SimulatedNsm::open(&dev_ca, &exe, role.clone())
            .map_err(|e| format!("simulated NSM for {role} ({}): {e}", dev_ca.display()))?,
    ))
}

#[cfg(feature = "nitro")]
fn nsm(_args: &WorkerArgs, role: &Role) -> Result<Box<dyn Nsm>> {
    Ok(Box::new(
        govern_workers::nsm::NitroNsm::open().map_err(|e| format!("Nitro NSM for {role}: {e}"))?,
    ))
}
