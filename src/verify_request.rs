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
use govern_core::append::HopVerdict;
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
    /// Recompute the policy outcome with the tenant's keys read from this dev data dir's
    /// key store (`<data-dir>/keys`; dev mode keeps the master there, under a local
    /// key-encryption key).
    #[arg(long, value_name = "DATA_DIR")]
    pub keys_from: Option<PathBuf>,
    /// Recompute the policy outcome with these tenant keys: JSON `{"tenant", "keys":
    /// [{"scope", "version", "key" (base64)}]}` (a key release's plaintext, with its tenant).
    #[arg(long, value_name = "FILE", conflicts_with = "keys_from")]
    pub tenant_keys: Option<PathBuf>,
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
    /// `None` for an event that is not the policy worker's result.
    policy: Option<Check<PolicyFound>>,
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

/// A policy result recomputed: the outcome the tenant's policies give (`recomputed`), or,
/// without the tenant's keys, the recorded one taken as it is (`recomputed` false).
#[derive(Debug, Serialize)]
struct PolicyFound {
    recomputed: bool,
    outcome: String,
}

/// Where the auditor's tenant keys come from.
enum TenantKeys {
    None,
    /// A dev data dir's key store: every tenant's keys, derived on demand.
    Dev(
        PathBuf,
        std::collections::BTreeMap<
            govern_core::event::TenantId,
            (u32, govern_client::release::ScopeKeys),
        >,
    ),
    /// One tenant's keys, from a file.
    File(
        govern_core::event::TenantId,
        govern_client::release::ScopeKeys,
    ),
}

impl TenantKeys {
    fn read(args: &RequestArgs) -> Result<Self> {
        if let Some(dir) = &args.keys_from {
            return Ok(Self::Dev(
                dir.join("keys"),
                std::collections::BTreeMap::new(),
            ));
        }
        let Some(path) = &args.tenant_keys else {
            return Ok(Self::None);
        };
        use base64::Engine as _;
        let err = |e: String| format!("{}: {e}", path.display());
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(path).map_err(|e| err(e.to_string()))?)
                .map_err(|e| err(e.to_string()))?;
        let tenant = v["tenant"]
            .as_str()
            .and_then(|t| uuid::Uuid::parse_str(t).ok())
            .map(govern_core::event::TenantId)
            .ok_or_else(|| err("\"tenant\": a UUID".into()))?;
        let mut keys = govern_client::release::ScopeKeys::default();
        for k in v["keys"]
            .as_array()
            .ok_or_else(|| err("\"keys\": an array".into()))?
        {
            let scope = k["scope"]
                .as_str()
                .ok_or_else(|| err("a key without \"scope\"".into()))?;
            let version = k["version"]
                .as_u64()
                .and_then(|v| u32::try_from(v).ok())
                .ok_or_else(|| err("a key without \"version\"".into()))?;
            let key: [u8; 32] = k["key"]
                .as_str()
                .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| err("\"key\": 32 bytes, base64".into()))?;
            keys.insert(scope.to_string(), version, zeroize::Zeroizing::new(key));
        }
        Ok(Self::File(tenant, keys))
    }

    /// The key of `scope` version `version` of `tenant`, whose current version the log
    /// says is `current`.
    fn get(
        &mut self,
        tenant: &govern_core::event::TenantId,
        scope: &str,
        version: u32,
        current: u32,
    ) -> Option<[u8; 32]> {
        match self {
            Self::None => None,
            Self::File(t, keys) => (t == tenant)
                .then(|| keys.get(scope, version).copied())
                .flatten(),
            Self::Dev(dir, cache) => {
                let stale = cache.get(tenant).is_none_or(|(c, _)| *c < current);
                if stale {
                    let keys = govern_api::keys::dev_scope_keys(
                        dir,
                        tenant,
                        &govern_core::seal::SCOPES,
                        current,
                    )
                    .ok()?;
                    cache.insert(*tenant, (current, keys));
                }
                cache
                    .get(tenant)
                    .and_then(|(_, k)| k.get(scope, version).copied())
            }
        }
    }
}

/// The opened payload the policy fold reads of `event`: a transfer's or a policy change's
/// parameters (checked against the user's commitment; an empty object when they do not
/// stand, which the fold evaluates as invalid), a `policy.evaluated`'s sealed
/// `{"reasons"}`; `None` without the key.
fn opened(
    event: &govern_core::event::Event,
    keys: &mut TenantKeys,
    state: &State,
) -> Option<serde_json::Map<String, serde_json::Value>> {
    use govern_core::kinds::{POLICY_CHANGED, POLICY_EVALUATED, TRANSFER_REQUESTED};
    let kind = event.kind.as_str();
    if kind != TRANSFER_REQUESTED && kind != POLICY_CHANGED && kind != POLICY_EVALUATED {
        return None;
    }
    let (scope, version) = govern_core::seal::sealed_scope(event).ok()?;
    let current = state.tenants.get(&event.tenant)?.keys.current();
    let key = keys.get(&event.tenant, &scope, version, current)?;
    if kind == POLICY_EVALUATED {
        // With the key held, reasons that do not open or parse are compared as they are
        // (an empty object), so the hop fails rather than passing unread.
        return Some(
            govern_core::seal::open(event, &key)
                .ok()
                .and_then(|plain| serde_json::from_slice(&plain).ok())
                .unwrap_or_default(),
        );
    }
    Some(govern_core::seal::open_action(event, &key).unwrap_or_default())
}

/// The policy check of a hop that is a policy result: what the fold computed for its
/// request, and any mismatch it found at this hop.
fn policy_check(
    book: &govern_projections::policy::PolicyBook,
    event: &govern_core::event::Event,
    index: u64,
) -> Option<Check<PolicyFound>> {
    if !govern_core::kinds::POLICY_RESULT_KINDS.contains(&event.kind.as_str()) {
        return None;
    }
    let subject = book.subject(&event.tenant, &event.request)?;
    if let Some(m) = subject.mismatches.iter().find(|m| m.index == index) {
        return Some(Check::refused(HopVerdict::Policy(m.to_string())));
    }
    Some(match subject.evaluation.known() {
        Some(e) => Check::pass(PolicyFound {
            recomputed: true,
            outcome: e.outcome.as_str().to_string(),
        }),
        None => Check::pass(PolicyFound {
            recomputed: false,
            outcome: subject
                .evaluated
                .as_ref()
                .map(|r| r.outcome.clone())
                .unwrap_or_default(),
        }),
    })
}

/// The credential that signed a user action: its type (`passkey` or `key`), id, and user.
#[derive(Debug, Serialize)]
struct SignatureFound {
    credential_type: &'static str,
    credential: String,
    user: String,
}

/// The identity check (govern-admission's `custody::check_identity`, the log's own).
fn identity_of(event: &govern_core::event::Event, state: &State) -> Check<IdentityFound> {
    match govern_admission::custody::check_identity(event, state) {
        Ok(found) => Check::pass(IdentityFound {
            attestation: found.attestation.map(|l| l.to_hex()),
            manifest: found.manifest,
            self_attesting: found.attestation.is_none(),
        }),
        Err(e) => Check::refused(e),
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
                h.policy.as_ref().map_or_else(
                    || "-".into(),
                    |c| {
                        c.cell(|f| {
                            if f.recomputed {
                                format!("recomputed: {}", f.outcome)
                            } else {
                                "not recomputed (no tenant keys)".into()
                            }
                        })
                    },
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
            "policy",
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
        )
        .chain(h.policy.iter().map(|c| ("policy", c.code, &c.detail)));
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

/// The user-signature check of an action (`None` for an event without one): the binding
/// and the signature, as the log checked them at append (govern-admission's
/// `custody::check_user_action`).
fn user_signature(
    event: &govern_core::event::Event,
    state: &State,
) -> Option<Check<SignatureFound>> {
    govern_admission::custody::check_user_action(event, state).map(|r| match r {
        Ok(f) => Check::pass(SignatureFound {
            credential_type: f.credential_type,
            credential: f.credential,
            user: f.user,
        }),
        Err(e) => Check::refused(e),
    })
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
    let mut keys = TenantKeys::read(&args)?;
    let mut book = govern_projections::policy::PolicyBook::default();
    let mut hops = Vec::new();
    let mut leaves = Vec::new();
    let update = follower
        .follow(|index, signed| {
            let index = index.0;
            leaves.push(signed.leaf_hash());
            let event = signed.event();
            if govern_projections::policy::PolicyBook::reads(event.kind.as_str()) {
                let opened = opened(event, &mut keys, &state);
                // A mismatch is kept in the book's subject and reported at its hop.
                let _ = book.apply(index, signed, opened.as_ref());
            }
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
                        policy: policy_check(&book, event, index),
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
        hop.ok = hop.identity.ok
            && hop.inclusion.ok
            && hop.user_signature.as_ref().is_none_or(|c| c.ok)
            && hop.policy.as_ref().is_none_or(|c| c.ok);
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
