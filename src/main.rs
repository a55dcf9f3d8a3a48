//! `govern`: the command line. Thin: every check it runs lives in `govern-core`, every
//! byte it stores in `govern-store`, every route in `govern-api`.
#![forbid(unsafe_code)]

mod attestation;
mod bench;
mod bench_actions;
mod bench_attest;
mod bench_e2e;
mod bench_failover;
mod bench_flood;
mod bench_policy;
mod bench_replay;
mod bench_seal;
mod bench_storage;
mod bench_witness;
mod cluster;
mod config;
mod demo;
mod error;
mod export;
mod manifest;
mod operator;
mod receipt;
mod replay;
mod requests;
mod run;
mod scenario;
mod status;
mod table;
mod tenant;
mod verify;
mod verify_request;
mod witness;
mod worker;

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::config::{Config, ServerArgs};

/// govern: a governance engine whose every step leaves a verifiable receipt.
#[derive(Debug, Parser)]
#[command(name = "govern", version, about, long_about = None)]
struct Cli {
    /// A TOML file with defaults for `data_dir`, `listen` and `origin`; flags and
    /// environment variables win over it.
    #[arg(long, global = true, env = "GOVERN_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the node: the log, its checkpoints, tiles and proofs, and the tenants' API over
    /// HTTP; under a witness policy it submits every checkpoint to the witnesses.
    Node(cluster::NodeArgs),
    /// Run the whole system on this machine: three witnesses as separate processes, the node
    /// under their 2-of-3 policy, and a first demo entry.
    Up(UpArgs),
    /// Verify a log (`log`), a request's receipt chain (`request`) or an offline receipt
    /// (`receipt`).
    #[command(subcommand)]
    Verify(VerifyCommand),
    /// Print the origin, tree size, tree root and state root of a data dir or a running node.
    Status(StatusArgs),
    /// Print an entry's C2SP tlog-proof (an offline receipt): `govern verify receipt` checks it.
    Receipt(receipt::ReceiptArgs),
    /// Write the log as a static C2SP tlog-tiles directory, with every signed checkpoint and
    /// the manifests, from a data dir or a running node (`--url`).
    Export(export::ExportArgs),
    /// Re-verify an export entry by entry into a fresh data dir, rebuild every projection,
    /// and print the origin, tree size, tree root and state root (which equal the source's
    /// `govern status`).
    Replay(replay::ReplayArgs),
    /// Drive a running node through a seeded scenario whose log holds every event kind
    /// (the golden logs of replay-tests/ are made with it).
    Scenario(scenario::ScenarioArgs),
    /// Measure: `govern bench append|attest|actions|replay|seal|flood`.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Nitro attestation documents: `govern attestation verify FILE`.
    #[command(subcommand)]
    Attestation(AttestationCommand),
    /// Manifests: `govern manifest pin|sign|show|verify|keygen`.
    #[command(subcommand)]
    Manifest(manifest::ManifestCommand),
    /// Run a c2sp.org/tlog-witness witness: an independent party that cosigns a log's
    /// checkpoints only when consistent with the last one it cosigned.
    Witness(witness::WitnessArgs),
    /// Tenants: `create NAME` prints the first admin's one-time link; `rotate-key`, `shred`
    /// and `keys` manage its scope keys.
    #[command(subcommand)]
    Tenant(tenant::TenantCommand),
    /// A tenant's requests, a page at a time (index, time, kind, status, request id), as the
    /// node lists them to its operator; `govern verify request ID` checks one.
    Requests(requests::RequestsArgs),
    /// Drive a running node as its users would: `govern demo transfer`.
    #[command(subcommand)]
    Demo(demo::DemoCommand),
    /// Run an enclave worker (outbound only): `govern worker policy`.
    #[command(subcommand)]
    Worker(worker::WorkerCommand),
}

/// `govern up`: the node's flags, and which workers to start.
#[derive(Debug, Args)]
struct UpArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// Do not start the policy worker (run `govern worker policy` elsewhere, as an enclave
    /// would, or keep a log only the node and the witnesses write).
    #[arg(long)]
    no_policy_worker: bool,
    /// Do not start the five signers (run `govern worker signer --index N` elsewhere).
    #[arg(long)]
    no_signers: bool,
    /// TEST ONLY: the signers take their aux info from this file instead of generating safe
    /// primes. Never in production.
    #[arg(long, hide = true, env = "GOVERN_TEST_AUX_INFO")]
    test_aux_info: Option<std::path::PathBuf>,
}

#[derive(Debug, Subcommand)]
enum VerifyCommand {
    /// Fetch the checkpoint and every tile, check every entry and hash, recompute the root,
    /// check the checkpoint's cosignatures under the witness policy, and check consistency
    /// with the last checkpoint this command saw from that log.
    Log(verify::LogArgs),
    /// A request's receipt chain hop by hop: kind, producer, identity, inclusion, user
    /// signature, verdict (a table, or --json); non-zero unless every hop verifies.
    Request(verify_request::RequestArgs),
    /// Check a C2SP tlog-proof offline: the checkpoint under the log's key, the entry at its
    /// index in that tree, and with --witnesses the checkpoint's cosignatures.
    Receipt(receipt::VerifyReceiptArgs),
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Durable appends per second, acknowledgement latency, proofs per second, the node's
    /// memory, beside this machine's Ed25519 verify rate.
    Append(bench::AppendArgs),
    /// Attestation documents verified per second (genuine AWS and dev documents).
    Attest(bench_attest::AttestArgs),
    /// User-action verifications per second, and signed-transfer submission latency at
    /// concurrency 1 and 32.
    Actions(bench_actions::ActionsArgs),
    /// Replays per second of a 100k-event export beside the strict Ed25519 verify rate of
    /// every core, and the export's bytes per event.
    Replay(bench_replay::ReplayBenchArgs),
    /// Sealed payloads: seals and opens per second, key-release latency, and durable appends
    /// with sealing on beside off.
    Seal(bench_seal::SealArgs),
    /// Durable-append latency quiet beside under a flood of unauthenticated reads
    /// (`GET /v1/state`, `login/start`), in alternating phases of one run.
    Flood(bench_flood::FloodArgs),
    /// The policy engine: pure evaluations per second, and the worker's end-to-end latency.
    Policy(bench_policy::PolicyArgs),
    /// The signers end to end: key generation, and a transfer submitted → signed at
    /// concurrency 1 and 10 with no presignatures and with a pool, beside the protocols run
    /// in one process.
    E2e(bench_e2e::E2eArgs),
}

#[derive(Debug, Subcommand)]
enum AttestationCommand {
    /// Verify a document against a pinned root (AWS's by default) at a given time, print its
    /// fields and the verdict; exit non-zero on refusal.
    Verify(attestation::VerifyArgs),
}

#[derive(Debug, Args)]
struct StatusArgs {
    /// A running node to ask instead of a data dir.
    #[arg(long, env = "GOVERN_URL")]
    url: Option<String>,
    /// The data dir to read (read-only; a node may be running on it) [default: ./.govern].
    #[arg(long, env = "GOVERN_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Whether logs are coloured: only on a terminal, and never when `NO_COLOR` is set to
/// anything but the empty string (no-color.org).
fn colour(terminal: bool, no_color: Option<std::ffi::OsString>) -> bool {
    terminal && no_color.is_none_or(|v| v.is_empty())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("GOVERN_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(colour(
            std::io::stderr().is_terminal(),
            std::env::var_os("NO_COLOR"),
        ))
        .init();
    let config = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Node(args) => cluster::node(&config, args).await,
            Command::Up(args) => {
                let workers = run::UpWorkers {
                    policy: !args.no_policy_worker,
                    signers: !args.no_signers,
                    test_aux_info: args.test_aux_info.clone(),
                };
                run::up(config.server(&args.server), workers).await
            }
            Command::Verify(VerifyCommand::Log(args)) => verify::log(args).await,
            Command::Verify(VerifyCommand::Receipt(args)) => receipt::verify(args),
            Command::Verify(VerifyCommand::Request(args)) => verify_request::run(args).await,
            Command::Receipt(args) => receipt::receipt(args).await,
            Command::Status(args) => {
                let data_dir = args.data_dir.or(config.data_dir.clone());
                status::run(args.url.as_deref(), data_dir, args.json).await
            }
            Command::Bench(BenchCommand::Append(args)) => bench::append(args).await,
            Command::Bench(BenchCommand::Attest(args)) => bench_attest::attest(args).await,
            Command::Bench(BenchCommand::Actions(args)) => bench_actions::actions(args).await,
            Command::Bench(BenchCommand::Seal(args)) => bench_seal::seal_bench(args).await,
            Command::Bench(BenchCommand::Replay(args)) => bench_replay::replay_bench(args).await,
            Command::Bench(BenchCommand::Flood(args)) => bench_flood::flood(args).await,
            Command::Bench(BenchCommand::Policy(args)) => bench_policy::policy(args).await,
            Command::Bench(BenchCommand::E2e(args)) => bench_e2e::e2e(args).await,
            Command::Attestation(AttestationCommand::Verify(mut args)) => {
                args.data_dir = args.data_dir.or(config.data_dir.clone());
                attestation::verify(args)
            }
            Command::Manifest(command) => manifest::run(command, config.data_dir.clone()),
            Command::Tenant(command) => tenant::run(command, config.data_dir.clone()).await,
            Command::Requests(args) => requests::run(args, config.data_dir.clone()).await,
            Command::Export(args) => export::run(args).await,
            Command::Replay(args) => replay::run(args).await,
            Command::Scenario(args) => scenario::run(args).await,
            Command::Witness(args) => witness::run(args).await,
            Command::Worker(command) => worker::run(command).await,
            Command::Demo(command) => demo::run(command).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            if e.downcast_ref::<cluster::Deposed>().is_some() {
                ExitCode::from(cluster::DEPOSED_EXIT)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::colour;

    #[test]
    fn logs_are_coloured_only_on_a_terminal_without_no_color() {
        assert!(colour(true, None));
        assert!(colour(true, Some("".into())), "an empty NO_COLOR is unset");
        assert!(!colour(true, Some("1".into())));
        assert!(!colour(false, None));
        assert!(!colour(false, Some("1".into())));
    }
}
