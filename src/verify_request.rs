//! `govern verify request ID`: a request's receipt chain, hop by hop, checked by the
//! auditor's own machine against the log (a node, or any static copy of an export).
//!
//! It follows the log with govern-client's verified follower (the checkpoint's signature and
//! cosignatures, every entry bundle and hash tile up to it, the root recomputed), folding
//! every entry (so it sees what every hop could see: the identities and credentials as of
//! each hop),
//! and for each event of the request reports: its kind; its producer (role and key) and the
//! producer signature (checked on parse); the attested identity it names — that the
//! `service.attested` it names is in the log before it, binds this producer's key for this
//! role, and its measurement was pinned; its inclusion in the checkpoint, checked with the
//! node's audit path (or recomputed from the entries); and for user actions the user's
//! signature, verified against the credential the tenant had registered at that point.
//! The verdict is `ok` only when every check is; a failed check carries a stable code and a
//! detail (`--json` gives each check as data: `ok`, then what was found, or the code and the
//! detail). The log's key and witness policy are the ones `govern verify log` remembered for
//! this URL unless given ([`crate::verify::pinned`]): it refuses another key, and a weaker
//! announced policy; it writes no state itself.

use std::path::PathBuf;

use clap::Args;
use govern_client::Client;
use govern_core::action::{ChallengeObject, UserSignature};
use govern_core::append::{HopVerdict, UserActionError};
use govern_core::ids::{Hash, LeafIndex};
use govern_core::merkle;
use govern_projections::state::State;
use serde::Serialize;

use crate::error::Result;

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

/// One hop of the chain, as `--json` prints it: each check a [`Check`].
#[derive(Debug, Serialize)]
struct Hop {
    index: u64,
    kind: String,
    time: String,
    producer: Producer,
    identity: Check<IdentityFound>,
    inclusion: Check<InclusionFound>,
    /// `None` for an event that carries no user signature.
    user_signature: Option<Check<SignatureFound>>,
    /// Every check passed.
    ok: bool,
}

/// Who signed the event (the producer signature was checked when the entry was read).
#[derive(Debug, Serialize)]
struct Producer {
    role: String,
    /// The Ed25519 key, base64.
    key: String,
}

/// The outcome of one check: `ok`, and what was found, or a stable `code` (kebab-case) and
/// a human `detail`.
#[derive(Debug, Serialize)]
struct Check<T> {
    ok: bool,
    #[serde(flatten)]
    found: Option<T>,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
}

impl<T> Check<T> {
    fn pass(found: T) -> Self {
        Self {
            ok: true,
            found: Some(found),
            code: None,
            detail: None,
        }
    }

    /// A check that found `verdict` (typed: the log's own refusal where there is one): its
    /// code and its words.
    fn refused(verdict: HopVerdict) -> Self {
        Self {
            ok: false,
            found: None,
            code: Some(verdict.code()),
            detail: Some(verdict.to_string()),
        }
    }

    /// The table's cell: `ok (what was found)` or `FAIL (code)`.
    fn cell(&self, found: impl FnOnce(&T) -> String) -> String {
        match (&self.found, self.code) {
            (Some(f), _) if self.ok => format!("ok ({})", found(f)),
            (_, code) => format!("FAIL ({})", code.unwrap_or("unknown")),
        }
    }
}

/// The identity an event names: its `service.attested` (leaf hash, hex) and the serial of
/// the manifest it was attested under; neither for a self-attesting kind.
#[derive(Debug, Serialize)]
struct IdentityFound {
    attestation: Option<String>,
    manifest: Option<u64>,
    self_attesting: bool,
}

/// The tree size the inclusion was checked at, and whether from the entries (a static copy
/// serves no proofs) rather than the node's audit path.
#[derive(Debug, Serialize)]
struct InclusionFound {
    size: u64,
    recomputed: bool,
}

/// The credential that signed a user action: its type (`passkey` or `key`), id, and user.
#[derive(Debug, Serialize)]
struct SignatureFound {
    credential_type: &'static str,
    credential: String,
    user: String,
}

/// The identity check: the `service.attested` the event names must be its role's current
/// identity as of this point of the log, bind the producer's key, have its measurement
/// pinned by the manifest in force and not quarantined, and be live at the event's time
/// (the checks the log made at append).
fn identity_of(event: &govern_core::event::Event, state: &State) -> Check<IdentityFound> {
    let kind = event.kind.as_str();
    if event.attestation.is_none()
        && (kind == govern_core::kinds::MANIFEST_PUBLISHED
            || kind == govern_core::kinds::SERVICE_ATTESTED)
    {
        return Check::pass(IdentityFound {
            attestation: None,
            manifest: None,
            self_attesting: true,
        });
    }
    let services = &state.services;
    // The log's own producer check (govern-admission), as of this point of the log.
    match govern_admission::check_producer(
        services,
        services.manifest.as_ref().map(|m| &m.manifest),
        &std::collections::BTreeSet::new(),
        govern_admission::Claim {
            role: &event.producer.role,
            attestation: event.attestation,
            key: &event.producer.key,
            time: event.time,
        },
        govern_store::TIME_SKEW_MS,
    ) {
        Ok(id) => Check::pass(IdentityFound {
            attestation: Some(id.leaf.to_hex()),
            manifest: Some(id.manifest_serial),
            self_attesting: false,
        }),
        Err(e) => Check::refused(HopVerdict::Identity(e)),
    }
}

/// The hops as an aligned table, then a line for each failed check: its code and detail.
fn table(hops: &[Hop]) -> String {
    let rows: Vec<Vec<String>> = hops
        .iter()
        .map(|h| {
            vec![
                h.index.to_string(),
                h.kind.clone(),
                format!("{} {}", h.producer.role, short(&h.producer.key)),
                h.identity.cell(|f| match (&f.attestation, f.manifest) {
                    (Some(leaf), Some(serial)) => format!("{}, manifest {serial}", short(leaf)),
                    _ => "self-attesting kind".into(),
                }),
                h.inclusion.cell(|f| {
                    if f.recomputed {
                        format!("size {}, recomputed", f.size)
                    } else {
                        format!("size {}", f.size)
                    }
                }),
                h.user_signature.as_ref().map_or_else(
                    || "-".into(),
                    |c| c.cell(|f| format!("{} of user {}", f.credential_type, f.user)),
                ),
                if h.ok { "ok" } else { "FAIL" }.into(),
            ]
        })
        .collect();
    let mut out = crate::table::render(
        &[
            "index",
            "kind",
            "producer",
            "identity",
            "inclusion",
            "user signature",
            "verdict",
        ],
        &rows,
        &[0],
    );
    for h in hops {
        let failed = [
            ("identity", h.identity.code, &h.identity.detail),
            ("inclusion", h.inclusion.code, &h.inclusion.detail),
        ]
        .into_iter()
        .chain(
            h.user_signature
                .iter()
                .map(|c| ("user signature", c.code, &c.detail)),
        );
        for (column, code, detail) in failed {
            if let (Some(code), Some(detail)) = (code, detail) {
                out.push_str(&format!("\nentry {}, {column}: {code}: {detail}", h.index));
            }
        }
    }
    out
}

fn short(hex: &str) -> String {
    hex.chars().take(12).collect()
}

/// The user-signature check of an action (`None` for an event without one); a failure's
/// code is the log's own problem type for it (govern-store's `UserActionError`).
fn user_signature(
    event: &govern_core::event::Event,
    state: &State,
) -> Option<Check<SignatureFound>> {
    let b = &event.body;
    let (Some(action), Some(sig)) = (b.get("action"), b.get("signature")) else {
        return None;
    };
    let (object, signature) = match (
        serde_json::from_value::<ChallengeObject>(action.clone()),
        serde_json::from_value::<UserSignature>(sig.clone()),
    ) {
        (Ok(o), Ok(s)) => (o, s),
        (Err(e), _) | (_, Err(e)) => {
            return Some(Check::refused(HopVerdict::UserAction(
                UserActionError::Malformed {
                    kind: event.kind.to_string(),
                    reason: format!("the action or its signature does not parse: {e}"),
                },
            )));
        }
    };
    let Some(tenant) = state.tenants.get(&event.tenant) else {
        return Some(Check::refused(HopVerdict::UserAction(
            UserActionError::UnknownTenant {
                tenant: event.tenant,
            },
        )));
    };
    let failed =
        |e: govern_admission::actions::UserActionError| Check::refused(HopVerdict::UserAction(e));
    // The same binding the log checked at append: the signed route is the kind's, and the
    // event follows the object the user named.
    let params = govern_projections::tenants::params(event);
    if let Err(e) = govern_admission::actions::check_binding(tenant, event, &object, &params) {
        return Some(failed(e));
    }
    Some(
        match govern_admission::actions::verify_with_credential(tenant, &object, &signature) {
            Ok((c, _)) => Check::pass(SignatureFound {
                credential_type: match signature {
                    UserSignature::Passkey { .. } => "passkey",
                    UserSignature::Key { .. } => "key",
                },
                credential: c.credential.id.clone(),
                user: c.credential.user.clone(),
            }),
            Err(e) => failed(e),
        },
    )
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
    let mut follower = pinned.follower(client.clone())?;
    let mut state = State::new();
    let mut hops = Vec::new();
    let mut leaves = Vec::new();
    let update = follower
        .follow(|index, signed| {
            let index = index.0;
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
                        producer: Producer {
                            role: event.producer.role.to_string(),
                            key: event.producer.key.to_base64(),
                        },
                        identity,
                        inclusion: Check::refused(HopVerdict::Inclusion {
                            code: "not-checked",
                            reason: "not checked yet".into(),
                        }),
                        user_signature: user,
                        ok: false,
                    },
                ));
            }
            state.apply(signed, index);
            Ok::<(), std::convert::Infallible>(())
        })
        .await?;
    let cp = &update.latest.checkpoint;
    let witnessed = match (&pinned.policy, &update.latest.cosigners) {
        (Some((policy, source)), Some(c)) => {
            Some(govern_client::witness::witnessed_line(policy, c, source))
        }
        _ => None,
    };
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
            let p: govern_client::wire::InclusionProof = client
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
        let size = cp.size.0;
        hop.inclusion = match proof {
            Ok(p) => {
                match merkle::verify_inclusion(leaf, LeafIndex(hop.index), cp.size, &p, &cp.root) {
                    Ok(()) => Check::pass(InclusionFound {
                        size,
                        recomputed: false,
                    }),
                    Err(e) => Check::refused(HopVerdict::Inclusion {
                        code: "inclusion-proof",
                        reason: format!(
                            "the node's inclusion proof at size {size} does not verify: {e}"
                        ),
                    }),
                }
            }
            // A static copy serves no proofs: the root recomputed from every entry read.
            Err(_) => {
                if recomputed == cp.root
                    && leaves.get(usize::try_from(hop.index).unwrap_or(usize::MAX)) == Some(leaf)
                {
                    Check::pass(InclusionFound {
                        size,
                        recomputed: true,
                    })
                } else {
                    Check::refused(HopVerdict::Inclusion {
                        code: "entries-not-the-checkpoint",
                        reason: format!(
                            "the entries read do not hash to the checkpoint's root at size {size}"
                        ),
                    })
                }
            }
        };
        hop.ok =
            hop.identity.ok && hop.inclusion.ok && hop.user_signature.as_ref().is_none_or(|c| c.ok);
        all_ok &= hop.ok;
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
                "ok": all_ok,
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
        println!("{}", table(&hops));
        println!("verdict: {}", if all_ok { "ok" } else { "FAIL" });
    }
    if all_ok {
        Ok(())
    } else {
        Err("a hop of the chain does not verify".into())
    }
}
