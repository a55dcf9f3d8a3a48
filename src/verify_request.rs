//! `govern verify request ID`: a request's receipt chain, hop by hop, checked by the
//! auditor's own machine against the log (a node, or any static copy of an export).
//!
//! It verifies the log's checkpoint with the log's key, reads every entry bundle up to it
//! (so it sees what every hop could see: the identities and credentials as of each hop),
//! and for each event of the request reports: its kind; its producer (role and key) and the
//! producer signature (checked on parse); the attested identity it names — that the
//! `service.attested` it names is in the log before it, binds this producer's key for this
//! role, and its measurement was pinned; its inclusion in the checkpoint, checked with the
//! node's audit path (or recomputed from the entries); and for user actions the user's
//! signature, verified against the credential the tenant had registered at that point.
//! The verdict is `ok` only when every column is. The log's key and witness policy are the
//! ones `govern verify log` remembered for this URL unless given ([`crate::verify::pinned`]):
//! it refuses another key, and a weaker announced policy; it writes no state itself.

use std::path::PathBuf;

use clap::Args;
use govern_core::action::{ChallengeObject, UserSignature};
use govern_core::event::SignedEvent;
use govern_core::ids::{Hash, LeafIndex};
use govern_core::merkle;
use govern_core::tiles::{TILE_WIDTH, Tile, decode_bundle};
use govern_projections::state::State;
use serde::Serialize;

use crate::client::Client;
use crate::demo::Result;

#[derive(Debug, Args)]
pub struct RequestArgs {
    /// The request id (a UUID: what an action's answer calls `request`).
    pub id: String,
    /// The log's base URL: a node, or any static file server serving its export (under a
    /// path if need be).
    #[arg(long, env = "GOVERN_URL")]
    pub url: String,
    /// The log's verifier key [default: the one `govern verify log` remembered for this
    /// URL, else the one the log announces at /v1/log]; never one other than the remembered.
    #[arg(long)]
    pub key: Option<String>,
    /// The witness policy the checkpoint must meet (TOML, as for `verify log`) [default: the
    /// policy the log announces, refused when weaker than the one `verify log` remembered].
    #[arg(long)]
    pub witnesses: Option<PathBuf>,
    /// `govern verify log`'s state file for this log, read only [default: the one it uses
    /// for this URL].
    #[arg(long)]
    pub state: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// One hop of the chain.
#[derive(Debug, Serialize)]
struct Hop {
    index: u64,
    kind: String,
    time: String,
    producer: String,
    identity: String,
    inclusion: String,
    user_signature: String,
    verdict: String,
}

/// The identity column: the `service.attested` the event names must be its role's current
/// identity as of this point of the log, bind the producer's key, have its measurement
/// pinned by the manifest in force and not quarantined, and be live at the event's time
/// (the checks the log made at append).
fn identity_of(event: &govern_core::event::Event, state: &State) -> String {
    let Some(leaf) = event.attestation else {
        return if event.kind.as_str() == govern_core::manifest::MANIFEST_PUBLISHED_KIND
            || event.kind.as_str() == govern_projections::services::ATTESTED_KIND
        {
            "ok (self-attesting kind)".into()
        } else {
            "FAIL: names no attestation".into()
        };
    };
    let services = &state.services;
    let Some(id) = services.identities.get(&event.producer.role) else {
        return format!("FAIL: role {} has no identity", event.producer.role);
    };
    if id.leaf != leaf {
        return format!(
            "FAIL: names {}, not the role's current identity",
            short(&leaf.to_hex())
        );
    }
    if id.ed25519 != event.producer.key {
        return "FAIL: the identity binds another key".into();
    }
    if !id.pinned || services.quarantined.contains_key(id.measurement()) {
        return "FAIL: its measurement is not pinned, or quarantined".into();
    }
    if let Some(m) = &services.manifest
        && event.time > id.last_event(&m.manifest, govern_store::TIME_SKEW_MS)
    {
        return "FAIL: the identity had expired".into();
    }
    format!(
        "ok ({}, manifest {})",
        short(&leaf.to_hex()),
        id.manifest_serial
    )
}

fn short(hex: &str) -> String {
    hex.chars().take(12).collect()
}

fn user_signature(event: &govern_core::event::Event, state: &State) -> String {
    let b = &event.body;
    let (Some(action), Some(sig)) = (b.get("action"), b.get("signature")) else {
        return "-".into();
    };
    let (Ok(object), Ok(signature)) = (
        serde_json::from_value::<ChallengeObject>(action.clone()),
        serde_json::from_value::<UserSignature>(sig.clone()),
    ) else {
        return "FAIL: unreadable action".into();
    };
    let Some(tenant) = state.tenants.get(&event.tenant) else {
        return "FAIL: no such tenant".into();
    };
    // The same binding the log checked at append: the signed route is the kind's, and the
    // event follows the object the user named.
    let params = govern_projections::tenants::params(event);
    if let Err(e) = govern_store::actions::check_binding(tenant, event, &object, &params) {
        return format!("FAIL: {e}");
    }
    match govern_store::actions::verify_with_credential(tenant, &object, &signature) {
        Ok((c, _)) => format!(
            "ok ({} of user {})",
            match signature {
                UserSignature::Passkey { .. } => "passkey",
                UserSignature::Key { .. } => "key",
            },
            short(&c.credential.user)
        ),
        Err(e) => format!("FAIL: {e}"),
    }
}

/// `govern verify request`.
pub async fn run(args: RequestArgs) -> Result<()> {
    let id = uuid::Uuid::parse_str(&args.id)
        .map_err(|e| format!("{}: not a request id: {e}", args.id))?;
    let client = Client::for_log(&args.url)?;
    let remembered = crate::verify::remembered(&crate::verify::state_path(
        args.state.as_deref(),
        client.base(),
    ))?;
    let pinned = crate::verify::pinned(
        &client,
        args.key.as_deref(),
        args.witnesses.as_deref(),
        remembered.as_ref(),
    )
    .await?;
    if pinned.key_announced {
        eprintln!(
            "trusting the verifier key the node announces (none given or remembered): {}",
            pinned.vkey
        );
    }
    let (_, cp, parsed) = pinned.checkpoint(&client).await?;
    let witnessed = match &pinned.policy {
        Some((policy, source)) => Some(crate::witness::check(policy, &parsed, source)?),
        None => None,
    };
    let mut state = State::new();
    let mut hops = Vec::new();
    let mut leaves = Vec::with_capacity(usize::try_from(cp.size.0).unwrap_or(0));
    for n in 0..cp.size.0.div_ceil(TILE_WIDTH) {
        let width = (cp.size.0 - n * TILE_WIDTH).min(TILE_WIDTH);
        let tile = Tile::Entries {
            index: n,
            partial: (width < TILE_WIDTH).then(|| u8::try_from(width).unwrap_or(u8::MAX)),
        };
        let bundle = client.get_required(&tile.to_string()).await?;
        for (i, raw) in decode_bundle(&bundle)
            .map_err(|e| format!("{tile}: {e}"))?
            .into_iter()
            .enumerate()
        {
            let index = n * TILE_WIDTH + i as u64;
            let signed =
                SignedEvent::from_bytes(&raw).map_err(|e| format!("entry {index}: {e}"))?;
            leaves.push(signed.leaf_hash());
            let event = signed.event();
            if event.request.0 == id {
                let identity = identity_of(event, &state);
                let user = user_signature(event, &state);
                hops.push((
                    signed.leaf_hash(),
                    Hop {
                        index,
                        kind: event.kind.to_string(),
                        time: event.time.to_string(),
                        producer: format!(
                            "{} {}",
                            event.producer.role,
                            short(&event.producer.key.to_base64())
                        ),
                        identity,
                        inclusion: String::new(),
                        user_signature: user,
                        verdict: String::new(),
                    },
                ));
            }
            state.apply(&signed, index);
        }
    }
    if hops.is_empty() {
        return Err(format!("request {id} has no event in the log of size {}", cp.size).into());
    }
    let recomputed = {
        let mut f = merkle::Frontier::new();
        let mut done = Vec::new();
        for l in &leaves {
            f.push(*l, &mut done);
        }
        f.root()
    };
    let mut all_ok = true;
    for (leaf, hop) in &mut hops {
        let proof: Result<Vec<Hash>> = async {
            let p: govern_api::routes::InclusionProof = client
                .get_json(&format!(
                    "/v1/proofs/inclusion?index={}&size={}",
                    hop.index, cp.size.0
                ))
                .await?;
            Ok(p.hashes
                .iter()
                .map(|h| Hash::from_base64(h))
                .collect::<std::result::Result<Vec<_>, _>>()?)
        }
        .await;
        hop.inclusion = match proof {
            Ok(p) => {
                match merkle::verify_inclusion(leaf, LeafIndex(hop.index), cp.size, &p, &cp.root) {
                    Ok(()) => format!("ok (size {})", cp.size),
                    Err(e) => format!("FAIL: {e}"),
                }
            }
            // A static copy serves no proofs: the root recomputed from every entry read.
            Err(_) => {
                if recomputed == cp.root
                    && leaves.get(usize::try_from(hop.index).unwrap_or(usize::MAX)) == Some(leaf)
                {
                    format!("ok (size {}, recomputed)", cp.size)
                } else {
                    "FAIL: the entries do not hash to the checkpoint".into()
                }
            }
        };
        let ok = [&hop.identity, &hop.inclusion, &hop.user_signature]
            .iter()
            .all(|c| !c.starts_with("FAIL"));
        hop.verdict = if ok { "ok".into() } else { "FAIL".into() };
        all_ok &= ok;
    }
    let hops: Vec<Hop> = hops.into_iter().map(|(_, h)| h).collect();
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "request": id.to_string(),
                "checkpoint": {"origin": cp.origin, "size": cp.size.0, "root": cp.root.to_hex()},
                "witnessed": witnessed,
                "hops": hops,
                "verdict": if all_ok { "ok" } else { "FAIL" },
            }))?
        );
    } else {
        println!(
            "request {id} in {} at size {} (root {})",
            cp.origin,
            cp.size,
            short(&cp.root.to_hex())
        );
        if let Some(w) = &witnessed {
            println!("{w}");
        }
        println!(
            "{:>6}  {:<20} {:<18} {:<32} {:<22} {:<28} verdict",
            "index", "kind", "producer", "identity", "inclusion", "user signature"
        );
        for h in &hops {
            println!(
                "{:>6}  {:<20} {:<18} {:<32} {:<22} {:<28} {}",
                h.index, h.kind, h.producer, h.identity, h.inclusion, h.user_signature, h.verdict
            );
        }
        println!("verdict: {}", if all_ok { "ok" } else { "FAIL" });
    }
    if all_ok {
        Ok(())
    } else {
        Err("a hop of the chain does not verify".into())
    }
}
