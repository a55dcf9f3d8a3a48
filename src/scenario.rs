//! `govern scenario`: a seeded scenario that drives a running node as its users and
//! operator would, so its log holds every event kind the code produces. The golden logs of
//! `replay-tests/` and `govern bench replay` are made with it. The driver is
//! `govern_client::scenario`'s; this adapter gives it the operator's token, software
//! passkeys (webauthn-authenticator-rs, kept out of the client library) and the unpinned
//! attestation at the end, made with the data dir's dev CA.
//!
//! The seed decides the choices (amounts, decisions, which wallet, comments); keys, ids and
//! times are fresh each run, so two runs of one seed make logs of the same shape, not the
//! same bytes. What it does, per tenant: the operator creates it; its first admin registers
//! a software passkey; the admin adds an API key (signed with the passkey) and signs in with
//! it; invites a member, who registers; changes the member's role and back; adds a second
//! key and revokes it; changes the policy; requests wallets and transfers; the member
//! approves or denies each transfer with their passkey; the admin reads the sealed
//! transfers. Then the operator rotates the first tenant's keys and the admin requests one
//! more transfer, the operator shreds the last tenant, and a service presents an
//! attestation of an unpinned measurement, which the log quarantines. `govern scenario`
//! prints every request it made (tenant, kind, the whole id), so any can be checked with
//! `govern verify request`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Args;
use govern_api::DataDir;
use govern_client::Client;
use govern_client::scenario::{self, Driver, Made, Params, Passkey};
use govern_core::event::Role;
use govern_core::ids::{Hash, LeafHash, RootHash};
use serde_json::Value;
use webauthn_authenticator_rs::prelude::WebauthnAuthenticator as _;
use webauthn_authenticator_rs::softpasskey::SoftPasskey;
use webauthn_rs::prelude::{CreationChallengeResponse, RequestChallengeResponse, Url};

use crate::error::Result;

#[derive(Debug, Args)]
pub struct ScenarioArgs {
    /// The node.
    #[arg(long, env = "GOVERN_URL")]
    pub url: String,
    /// The node's data dir (for the operator token and the dev CA).
    #[arg(long, env = "GOVERN_DATA_DIR")]
    pub data_dir: PathBuf,
    /// The web origin users sign for [default: http://localhost:<the URL's port>].
    #[arg(long)]
    pub origin: Option<String>,
    /// The seed of the scenario's choices.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Tenants.
    #[arg(long, default_value_t = 2)]
    pub tenants: usize,
    /// Wallets per tenant.
    #[arg(long, default_value_t = 2)]
    pub wallets: usize,
    /// Transfers per tenant (each approved or denied by the member).
    #[arg(long, default_value_t = 3)]
    pub transfers: usize,
    /// Exercise the policy worker, which must be running (`govern up` runs one): a policy
    /// that governs policy changes, a change approved (wallet creation blocked), a wallet
    /// request rejected, a change denied; the scenario waits for each decision.
    #[arg(long)]
    pub policies: bool,
}

/// A software passkey (webauthn-authenticator-rs), the scenario's users' authenticator.
struct SoftKey(SoftPasskey);

impl Passkey for SoftKey {
    fn register(&mut self, origin: &str, options: Value) -> scenario::Result<Value> {
        let ccr: CreationChallengeResponse = serde_json::from_value(options)?;
        let credential = self
            .0
            .do_registration(Url::parse(origin)?, ccr)
            .map_err(|e| format!("software passkey: {e:?}"))?;
        Ok(serde_json::to_value(credential)?)
    }

    fn authenticate(&mut self, origin: &str, options: Value) -> scenario::Result<Value> {
        let rcr: RequestChallengeResponse = serde_json::from_value(options)?;
        let assertion = self
            .0
            .do_authentication(Url::parse(origin)?, rcr)
            .map_err(|e| format!("software passkey: {e:?}"))?;
        Ok(serde_json::to_value(assertion)?)
    }
}

/// A driver of the node at `url` as its operator (the token of `data_dir`), its users
/// registering software passkeys.
pub(crate) fn driver(
    url: &str,
    origin: Option<String>,
    data_dir: &Path,
    seed: u64,
) -> Result<Driver> {
    let new_passkey: scenario::NewPasskey =
        Arc::new(|| Box::new(SoftKey(SoftPasskey::new(true))) as Box<dyn Passkey>);
    Driver::new(
        Client::new(url)?,
        origin,
        crate::operator::token(data_dir, url)?,
        seed,
        Some(new_passkey),
    )
}

/// Run the scenario against the node at `args.url`, then present an unpinned attestation.
pub(crate) async fn run_scenario(args: &ScenarioArgs) -> Result<Made> {
    let mut d = driver(&args.url, args.origin.clone(), &args.data_dir, args.seed)?;
    let made = scenario::run(
        &mut d,
        &Params {
            seed: args.seed,
            tenants: args.tenants,
            wallets: args.wallets,
            transfers: args.transfers,
            policies: args.policies,
        },
    )
    .await?;
    quarantine_unpinned(d.client(), &args.data_dir).await?;
    Ok(made)
}

/// A service presents a document of a measurement the manifest does not pin: the log refuses
/// it and appends `service.quarantined` with the document as evidence.
async fn quarantine_unpinned(client: &Client, data_dir: &Path) -> Result<()> {
    let services: Value = client.get_json("/v1/services").await?;
    let manifest = &services["manifest"];
    let hash: [u8; 32] = hex::decode(manifest["hash"].as_str().unwrap_or_default())?
        .try_into()
        .map_err(|_| "the manifest hash is not 32 bytes")?;
    let leaf: LeafHash = serde_json::from_value(manifest["leaf"].clone())?;
    let info: Value = client.get_json("/v1/state").await?;
    let nonce = RootHash(Hash::from_hex(info["root"].as_str().unwrap_or_default())?);
    let dir = tempfile::tempdir()?;
    let image = dir.path().join("unpinned-image");
    std::fs::write(
        &image,
        format!("an image nobody pinned, {}", uuid::Uuid::now_v7()),
    )?;
    let role = Role::new("policy")?;
    let nsm = govern_workers::nsm::SimulatedNsm::open(
        &DataDir::open(data_dir, None)?.dev_ca_path(),
        &image,
        role.clone(),
    )?;
    let keys = govern_workers::identity::ServiceKeys::generate(role)?;
    let event = keys.attest(&nsm, hash, nonce, vec![leaf])?;
    match client.append(event.bytes()).await {
        Err(e) if e.status() == Some(403) => Ok(()),
        Err(e) => Err(format!("an unpinned attestation was not refused as forbidden: {e}").into()),
        Ok(r) => Err(format!(
            "an unpinned attestation was appended (entry {}), not refused",
            r.index
        )
        .into()),
    }
}

/// `govern scenario`.
pub async fn run(args: ScenarioArgs) -> Result<()> {
    let made = run_scenario(&args).await?;
    for (name, id) in &made.tenants {
        println!("{name} is tenant {id}");
    }
    let rows: Vec<Vec<String>> = made
        .requests
        .iter()
        .map(|r| vec![r.tenant.clone(), r.kind.clone(), r.request.clone()])
        .collect();
    println!(
        "{}",
        crate::table::render(&["tenant", "kind", "request"], &rows, &[])
    );
    let info: Value = Client::new(&args.url)?.get_json("/v1/state").await?;
    println!(
        "scenario (seed {}) done: size {} root {} state {}",
        args.seed,
        info["size"],
        info["root"].as_str().unwrap_or_default(),
        info["state_root"].as_str().unwrap_or_default()
    );
    Ok(())
}
