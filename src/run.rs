//! `govern node` and `govern up`: prepare a data dir, start the node (and, for `up`, its
//! witnesses and a demo entry), run until a signal.

use std::sync::Arc;

use govern_api::edge::{Edge, EdgeConfig};
use govern_api::preflight::Found;
use govern_api::{AppState, Attestor, DataDir, NodeHandle, Services};
use govern_core::event::{Kind, RequestId, SignedEvent, TenantId};
use govern_store::LogConfig;
use govern_workers::identity::ServiceIdentity;
use tokio::net::TcpListener;

use crate::config::Server;
use crate::error::Result;
use govern_client::Client;

/// The witness policy a node follows when `--witnesses` does not name one: in its data dir.
pub const WITNESSES_FILE: &str = "witnesses.toml";

/// How many witnesses `govern up` starts, and how many must cosign.
const UP_WITNESSES: usize = 3;
const UP_QUORUM: usize = 2;

pub(crate) const DEV_WARNING: &str = "DEV MODE: the log key and producer keys are plain files in the data dir and no \
enclave protects them; this keeps govern's formats and checks, not its protection. Never hold real assets with it.";

/// What a start checked before writing anything: the bound listener, the edge's relying
/// party, the witness policy, and what the data dir holds.
pub(crate) struct Prepared {
    pub(crate) listener: TcpListener,
    pub(crate) edge_config: EdgeConfig,
    /// The witness policy and where it was read (`govern up` sets its own after `prepare`).
    pub(crate) witnesses: Option<(std::path::PathBuf, govern_core::witness::PolicyFile)>,
    pub(crate) found: Found,
}

/// Everything a start can refuse for, checked before the data dir is touched: the listening
/// port is bound, the relying party and web origin, the witness policy file, the build's
/// attestor, and the data dir itself ([`govern_api::preflight::check`]: lock, missing files
/// of a restored copy, the log key, the manifest and its signers, the dev CA). A start that
/// fails here has written nothing. `own_witnesses`: `govern up`, which writes its policy
/// later, ignores the data dir's.
pub(crate) async fn prepare(server: &Server, own_witnesses: bool) -> Result<Prepared> {
    #[cfg(not(feature = "nitro"))]
    if !cfg!(feature = "dev") {
        return Err(
            "a production build attests with the Nitro Secure Module: build with \
                    `--no-default-features --features nitro` and run inside an enclave"
                .into(),
        );
    }
    let listener = TcpListener::bind(server.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", server.listen))?;
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    let web_origin = server
        .web_origin
        .clone()
        .unwrap_or_else(|| format!("http://localhost:{port}"));
    let edge_config = EdgeConfig::new(&server.rp_id, &web_origin)?;
    let policy_path = server
        .witnesses
        .clone()
        .unwrap_or_else(|| server.data_dir.join(WITNESSES_FILE));
    let witnesses = if !own_witnesses && (server.witnesses.is_some() || policy_path.exists()) {
        let file = crate::witness::read_policy(&policy_path)?;
        govern_api::witnessing::check_file(&file)
            .map_err(|e| format!("{}: {e}", policy_path.display()))?;
        Some((policy_path, file))
    } else {
        None
    };
    let found = govern_api::preflight::check(
        &server.data_dir,
        server.origin.as_deref(),
        cfg!(feature = "dev"),
    )?;
    Ok(Prepared {
        listener,
        edge_config,
        witnesses,
        found,
    })
}

/// Start the node checked by [`prepare`]. Before anything is appended, a log under a witness
/// policy asks its witnesses whether this copy is behind what they cosigned: a stale restore
/// appends nothing ([`govern_api::witnessing::check_not_behind`]).
async fn start(server: &Server, prepared: Prepared) -> Result<(NodeHandle, DataDir, Services)> {
    let Prepared {
        listener,
        edge_config,
        witnesses,
        found,
    } = prepared;
    if let (Found::Log { reader, .. }, Some((path, file))) = (found, &witnesses) {
        govern_api::witnessing::check_not_behind(&reader, file)
            .await
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    let (dir, config, attestor) = open_for_start(server)?;
    let services = dir.boot(config, cfg!(feature = "dev"), &attestor).await?;
    let state = serving_state(&services, &dir, edge_config, witnesses.as_ref(), None)?;
    let node = NodeHandle::spawn(state, listener)?;
    tracing::warn!("{DEV_WARNING}");
    // Tests and scripts read this line to find the port when listening on port 0.
    println!(
        "govern node listening on http://{} (origin {}, data dir {})",
        node.addr,
        dir.origin(),
        server.data_dir.display()
    );
    println!("verifier key: {}", dir.verifier_key());
    Ok((node, dir, services))
}

/// The data dir a start runs on (its dev measurements pinned for this executable), the
/// log's settings from `server`, and how its services attest.
pub(crate) fn open_for_start(server: &Server) -> Result<(DataDir, LogConfig, Attestor)> {
    let dir = DataDir::open(&server.data_dir, server.origin.as_deref())?;
    let executable =
        std::env::current_exe().map_err(|e| format!("cannot find this executable: {e}"))?;
    if cfg!(feature = "dev") {
        // Dev mode pins this executable's measurements (re-pinning after a rebuild), so the
        // services it runs can attest.
        let pinned = govern_api::devpin::ensure_dev_pinned(&server.data_dir, &executable)?;
        if pinned.changed {
            tracing::info!(
                serial = pinned.signed.manifest.serial,
                path = %pinned.path.display(),
                "pinned this executable's dev measurements"
            );
        }
    }
    let mut config = LogConfig::new(dir.origin());
    config.batch_events_max = server.batch_events_max.max(1);
    config.batch_wait_ms = server.batch_wait_ms;
    config.time_skew_ms = server.time_skew_ms;
    #[cfg(feature = "nitro")]
    let attestor = {
        let _ = executable;
        Attestor::Nitro
    };
    #[cfg(not(feature = "nitro"))]
    let attestor = Attestor::Simulated { executable };
    Ok((dir, config, attestor))
}

/// What a node that sequences its log serves: the log, its identities, the key service,
/// the edge, and the witnesses' cosigned checkpoints under `witnesses`. Starts the services'
/// re-attestation.
pub(crate) fn serving_state<S: govern_store::Storage>(
    services: &Services<S>,
    dir: &DataDir,
    edge_config: EdgeConfig,
    witnesses: Option<&(std::path::PathBuf, govern_core::witness::PolicyFile)>,
    passkeys: Option<Arc<dyn govern_api::edge::PasskeyStore>>,
) -> Result<AppState> {
    services.spawn_reattestation();
    let mut edge = Edge::new(
        edge_config,
        Arc::clone(&services.log) as _,
        Arc::clone(&services.policy) as _,
        Arc::clone(&services.edge),
        Arc::clone(&services.keys) as _,
        dir.operator_token()?,
        dir.passkeys_path(),
    )?;
    if let Some(store) = passkeys {
        edge = edge.with_passkeys(store);
    }
    let mut state = AppState::new(Arc::clone(&services.log), &dir.verifier_key())
        .with_identities(Arc::clone(&services.policy))
        .with_keys(Arc::clone(&services.keys))
        .with_edge(Arc::new(edge));
    if let Some((policy_path, file)) = witnesses {
        let witnessing = govern_api::witnessing::Witnessing::start(services.log.reader(), file)?;
        tracing::info!(
            quorum = file.quorum,
            witnesses = file.witnesses.len(),
            path = %policy_path.display(),
            "submitting checkpoints to witnesses; /checkpoint serves the latest with a quorum"
        );
        state = state.with_witnessing(witnessing);
    }
    Ok(state)
}

pub async fn until_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// `govern node`.
pub async fn node(server: Server) -> Result<()> {
    let prepared = prepare(&server, false).await?;
    let (node, _dir, _services) = start(&server, prepared).await?;
    until_signal().await;
    tracing::info!("shutting down");
    node.shutdown().await;
    Ok(())
}

/// A demo event signed by the edge's attested identity.
pub fn demo_event(edge: &ServiceIdentity, message: &str) -> Result<SignedEvent> {
    let mut body = serde_json::Map::new();
    body.insert("message".into(), message.into());
    Ok(edge.sign(
        Kind::new("demo.hello")?,
        TenantId::SYSTEM,
        RequestId::new_v7(),
        Vec::new(),
        body,
        govern_core::event::Timestamp::now(),
    )?)
}

/// A witness process `govern up` started.
/// A worker started by `govern up`: killed when dropped, so it stops with the node.
pub(crate) struct WorkerProcess {
    child: tokio::process::Child,
}

impl WorkerProcess {
    /// Its process id.
    pub(crate) fn id(&self) -> Option<u32> {
        self.child.id()
    }
}

/// A worker `govern up` runs: its role and its `govern worker …` arguments.
#[derive(Clone, Debug)]
pub(crate) struct WorkerSpec {
    /// The role (what its first line names).
    pub(crate) role: String,
    /// The arguments after `govern worker`.
    pub(crate) args: Vec<std::ffi::OsString>,
}

impl WorkerSpec {
    /// The policy worker.
    pub(crate) fn policy() -> Self {
        Self {
            role: "policy".into(),
            args: vec!["policy".into()],
        }
    }

    /// Signer `index`, with the test-only aux info if given.
    pub(crate) fn signer(index: u16, test_aux_info: Option<&std::path::Path>) -> Self {
        let mut args: Vec<std::ffi::OsString> =
            vec!["signer".into(), "--index".into(), index.to_string().into()];
        if let Some(path) = test_aux_info {
            args.push("--test-aux-info".into());
            args.push(path.into());
        }
        Self {
            role: govern_workers::signer::role(index),
            args,
        }
    }
}

/// Start `govern worker policy` against the node at `url`, and wait for its first line.
pub(crate) async fn spawn_policy_worker(
    data_dir: &std::path::Path,
    url: &str,
) -> Result<WorkerProcess> {
    spawn_worker(data_dir, url, &WorkerSpec::policy()).await
}

/// Start the worker `spec` against the node at `url`, and wait for its first line.
pub(crate) async fn spawn_worker(
    data_dir: &std::path::Path,
    url: &str,
    spec: &WorkerSpec,
) -> Result<WorkerProcess> {
    use tokio::io::AsyncBufReadExt as _;
    let role = &spec.role;
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this executable: {e}"))?;
    let mut child = tokio::process::Command::new(exe)
        .arg("worker")
        .args(&spec.args)
        .args(["--url", url, "--data-dir"])
        .arg(data_dir)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start worker {role}: {e}"))?;
    let stdout = child.stdout.take().ok_or("no worker stdout")?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let line = tokio::time::timeout(std::time::Duration::from_secs(30), lines.next_line())
        .await
        .map_err(|_| format!("worker {role} did not start in 30 s"))??
        .ok_or_else(|| format!("worker {role} stopped at start (see its error above)"))?;
    if !line.starts_with(&format!("govern worker {role} following")) {
        return Err(format!("worker {role} said {line:?}").into());
    }
    // Keep reading its stdout so it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(WorkerProcess { child })
}

/// Keep a worker of `govern up` running: whenever it exits (it stops on a log that does
/// not verify, or on a refusal it cannot wait out), say so and start it again after a
/// second. Aborting the task kills the worker it holds.
fn supervise_worker(
    data_dir: std::path::PathBuf,
    url: String,
    spec: WorkerSpec,
    first: WorkerProcess,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut current = first;
        loop {
            let status = current.child.wait().await;
            tracing::error!(
                ?status,
                role = %spec.role,
                "the worker stopped; starting it again in 1 s"
            );
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            match spawn_worker(&data_dir, &url, &spec).await {
                Ok(w) => current = w,
                Err(e) => tracing::error!(error = %e, "cannot start the worker"),
            }
        }
    })
}

pub(crate) struct WitnessProcess {
    _child: tokio::process::Child,
    pub(crate) url: String,
    pub(crate) vkey: String,
}

/// Start `govern witness` as a separate process following the log `log_vkey`, with its own
/// data dir, and read its address and key from the two lines it prints.
pub(crate) async fn spawn_witness(
    data_dir: &std::path::Path,
    name: &str,
    log_vkey: &str,
) -> Result<WitnessProcess> {
    use tokio::io::AsyncBufReadExt as _;
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this executable: {e}"))?;
    let mut child = tokio::process::Command::new(exe)
        .arg("witness")
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--name", name, "--listen", "127.0.0.1:0", "--log", log_vkey])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start witness {name}: {e}"))?;
    let stdout = child.stdout.take().ok_or("no witness stdout")?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let (mut url, mut vkey) = (None, None);
    while url.is_none() || vkey.is_none() {
        let line = tokio::time::timeout(std::time::Duration::from_secs(30), lines.next_line())
            .await
            .map_err(|_| format!("witness {name} did not start in 30 s"))??
            .ok_or_else(|| format!("witness {name} stopped at start (see its error above)"))?;
        if let Some(rest) = line.split(" listening on ").nth(1) {
            url = rest.split_whitespace().next().map(str::to_owned);
        } else if let Some(k) = line.strip_prefix("witness vkey: ") {
            vkey = Some(k.to_owned());
        }
    }
    Ok(WitnessProcess {
        _child: child,
        url: url.unwrap_or_default(),
        vkey: vkey.unwrap_or_default(),
    })
}

/// Start `count` witnesses `<name_prefix>1..` in `root/w1..`, following `log_vkey`, and the
/// policy of `quorum` of them (with their URLs).
pub(crate) async fn spawn_witnesses(
    root: &std::path::Path,
    name_prefix: &str,
    count: usize,
    quorum: usize,
    log_vkey: &str,
) -> Result<(Vec<WitnessProcess>, govern_core::witness::PolicyFile)> {
    let mut witnesses = Vec::new();
    for i in 1..=count {
        let dir = root.join(format!("w{i}"));
        witnesses.push(spawn_witness(&dir, &format!("{name_prefix}{i}"), log_vkey).await?);
    }
    let file = govern_core::witness::PolicyFile {
        quorum,
        witnesses: witnesses
            .iter()
            .map(|w| govern_core::witness::PolicyWitness {
                vkey: w.vkey.clone(),
                url: Some(w.url.clone()),
            })
            .collect(),
    };
    Ok((witnesses, file))
}

/// Start the witnesses of `govern up` and write the node's policy for them.
async fn up_witnesses(
    server: &Server,
) -> Result<(Vec<WitnessProcess>, govern_core::witness::PolicyFile)> {
    let log_vkey = DataDir::open(&server.data_dir, server.origin.as_deref())?.verifier_key();
    let (witnesses, file) = spawn_witnesses(
        &server.data_dir.join("witnesses"),
        "govern.localhost/witness-",
        UP_WITNESSES,
        UP_QUORUM,
        &log_vkey,
    )
    .await?;
    let text = format!(
        "# Written by `govern up`: its three witnesses, each a separate process with its own key\n# and data dir under witnesses/; every checkpoint /checkpoint serves has {UP_QUORUM} of their cosignatures.\n{}",
        toml::to_string(&file)?
    );
    std::fs::write(server.data_dir.join(WITNESSES_FILE), text)?;
    Ok((witnesses, file))
}

/// Which workers `govern up` starts.
#[derive(Debug, Clone, Default)]
pub struct UpWorkers {
    /// The policy worker.
    pub policy: bool,
    /// The five signers.
    pub signers: bool,
    /// TEST ONLY: the signers' aux info from this file.
    pub test_aux_info: Option<std::path::PathBuf>,
}

/// Wait until the five signers hold aux info, printing where each stands as it changes
/// (safe primes take minutes on a fresh data dir).
async fn wait_for_aux(client: &Client) -> Result<()> {
    let started = std::time::Instant::now();
    let mut last = String::new();
    loop {
        let view: serde_json::Value = client.get_json("/v1/services").await?;
        if view.get("aux_ready").is_some_and(|v| !v.is_null()) {
            println!(
                "signers: aux info ready ({:.0} s)",
                started.elapsed().as_secs_f64()
            );
            return Ok(());
        }
        let aux = view.get("aux").and_then(serde_json::Value::as_object);
        let line = (1..=5)
            .map(|i| {
                let role = format!("signer-{i}");
                let stage = aux
                    .and_then(|a| a.get(&role))
                    .and_then(|a| a.get("stage"))
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or("generating safe primes");
                format!("{role}: {stage}")
            })
            .collect::<Vec<_>>()
            .join(", ");
        if line != last {
            println!(
                "preparing the signers' aux info ({:.0} s): {line}",
                started.elapsed().as_secs_f64()
            );
            last = line;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

/// `govern up`.
pub async fn up(server: Server, workers: UpWorkers) -> Result<()> {
    if let Some(path) = &server.witnesses {
        return Err(format!(
            "--witnesses {}: govern up runs its own three witnesses and writes their policy; \
             run govern node --witnesses FILE to follow other witnesses",
            path.display()
        )
        .into());
    }
    let mut prepared = prepare(&server, true).await?;
    let (witnesses, file) = up_witnesses(&server).await?;
    prepared.witnesses = Some((server.data_dir.join(WITNESSES_FILE), file));
    let (node, _dir, services) = start(&server, prepared).await?;
    let url = format!("http://localhost:{}", node.addr.port());
    let client = Client::new(&url)?;
    let event = demo_event(&services.edge.identity, "hello from govern up")?;
    let receipt = client.append(event.bytes()).await?;
    let node_url = format!("http://{}", node.addr);
    let mut supervisors = Vec::new();
    let mut specs = Vec::new();
    if workers.policy {
        specs.push(WorkerSpec::policy());
    }
    if workers.signers {
        for i in 1..=5 {
            specs.push(WorkerSpec::signer(i, workers.test_aux_info.as_deref()));
        }
    }
    let mut pids = Vec::new();
    for spec in &specs {
        let worker = spawn_worker(&server.data_dir, &node_url, spec).await?;
        pids.push((spec.role.clone(), worker.id().unwrap_or_default()));
        supervisors.push(supervise_worker(
            server.data_dir.clone(),
            node_url.clone(),
            spec.clone(),
            worker,
        ));
    }
    // Up means every worker is attested and following.
    for spec in &specs {
        let waited = tokio::time::timeout(std::time::Duration::from_secs(30), async {
            while client.current_attestation(&spec.role).await.is_err() {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        })
        .await;
        if waited.is_err() {
            return Err(format!(
                "worker {} did not attest within 30 s (see its error above)",
                spec.role
            )
            .into());
        }
    }
    if workers.signers {
        wait_for_aux(&client).await?;
    }
    println!();
    println!("govern is up at {url}");
    println!(
        "first demo entry: index {} leaf {} request {}",
        receipt.index,
        receipt.leaf_hash,
        event.event().request.0
    );
    println!("try:");
    println!("  curl {url}/checkpoint");
    println!("  curl {url}/v1/services");
    println!("  curl {url}/v1/entries/{}", receipt.index);
    println!(
        "  curl '{url}/v1/proofs/inclusion?index={}&size={}'",
        receipt.index, receipt.inclusion.size
    );
    println!("  govern verify log --url {url}");
    for w in &witnesses {
        println!("witness {} at {}", w.vkey, w.url);
    }
    for (role, pid) in &pids {
        println!("{role}: pid {pid} (a separate process, listening on nothing)");
    }
    if workers.policy {
        println!(
            "  govern demo transfer --url {url} --data-dir {}",
            server.data_dir.display()
        );
    } else {
        println!("no policy worker (--no-policy-worker): nothing decides transfers until one runs");
    }
    if !workers.signers {
        println!("no signers (--no-signers): nothing makes wallet keys or signs until they run");
    }
    println!("Ctrl-C stops it all.");
    until_signal().await;
    // Dropping a supervisor's task drops (and so kills) the worker it holds.
    for supervisor in supervisors {
        supervisor.abort();
        let _ = supervisor.await;
    }
    node.shutdown().await;
    drop(witnesses);
    Ok(())
}
