//! User actions, checked at append (docs/design.md §4): no user signature, no entry.
//!
//! The node's policy runs these checks on every event of a tenant kind
//! ([`govern_projections::tenants::is_tenant_kind`]) after the producer's identity and before
//! the routing graph, against the tenants folded from the log so far. The same offline
//! verifier an auditor runs ([`govern_core::action::verify_user_action`]) checks the
//! signature; what needs the log — the credential's key and status, the user's role, the
//! anchor's distance, the nonce's uniqueness, the passkey's counter — comes from the log
//! alone, so a replay reaches the same verdicts.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use govern_core::action::{
    ChallengeObject, CredentialKey, PathTarget, UserSignature, Verified, action_of,
    body_commitment, route_for_kind, verify_user_action,
};
use govern_core::event::{Event, Role, TenantId};
use govern_core::ids::{Hash, LeafHash, RootHash};
use govern_core::kinds::{
    POLICY_EVALUATED, POLICY_RESULT_KINDS, SIGNER_RESULT_KINDS, TRANSFER_APPROVED,
    TRANSFER_QUARANTINED, TRANSFER_SIGNED, WALLET_APPROVED, WALLET_CREATED,
};
use govern_core::seal::{SCOPES, clear_from_path, sealed_kind, sealed_scope};
pub use govern_projections::policy::decision_kinds;
use govern_projections::tenants::{
    self, ACTION_KINDS, APPROVAL_DECIDED, CREDENTIAL_REGISTERED, CREDENTIAL_REVOKED,
    CredentialState, KEY_KINDS, KEYS_AUDIT, KEYS_ROTATED, POLICY_CHANGED, READS_AUDIT,
    TENANT_CREATED, TRANSFER_REQUESTED, Tenant, Tenants, USER_INVITED, USER_REGISTERED,
    USER_ROLE_CHANGED, UserRole, WALLET_REQUESTED, text,
};
use serde_json::{Map, Value};

use govern_core::append::LogView;
pub use govern_core::append::UserActionError;

pub use govern_core::append::ANCHOR_DISTANCE_MAX;
/// The longest tenant or user name.
pub const NAME_BYTES_MAX: usize = 100;
/// The most entries one `reads.audit` names.
pub const READS_AUDIT_ENTRIES_MAX: usize = 256;
/// The most live API keys one user holds: each is a standing way to sign as them and a
/// credential every fold keeps, so the log refuses the next (and the edge, before
/// appending); revoking one frees its place. Rotation needs two; 16 leaves room for a key
/// per machine.
pub const KEYS_PER_USER_MAX: usize = 16;

fn malformed(event: &Event, reason: impl Into<String>) -> UserActionError {
    UserActionError::Malformed {
        kind: event.kind.to_string(),
        reason: reason.into(),
    }
}

fn hex32(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Whether `s` is a name: 1 to [`NAME_BYTES_MAX`] bytes, no control characters.
#[must_use]
pub fn name_ok(s: &str) -> bool {
    !s.is_empty() && s.len() <= NAME_BYTES_MAX && !s.chars().any(char::is_control)
}

/// How every nonce's uniqueness key begins.
pub const NONCE_KEY_PREFIX: &str = "action.nonce:";

/// The uniqueness key of an action's nonce: one use per tenant, across every kind.
#[must_use]
pub fn nonce_key(tenant: &TenantId, nonce: &str) -> String {
    format!("{NONCE_KEY_PREFIX}{}:{nonce}", tenant.0)
}

/// Check a tenant event against `tenants` (the fold of the log so far). Returns the
/// uniqueness keys it claims beyond its kind's (a user action's nonce).
///
/// # Errors
/// The first refusal.
pub fn check_tenant_event(
    tenants: &Tenants,
    event: &Event,
    view: &dyn LogView,
    anchor_distance_max: u64,
) -> Result<Vec<String>, UserActionError> {
    let kind = event.kind.as_str();
    if kind == TENANT_CREATED {
        return check_tenant_created(event).map(|()| Vec::new());
    }
    let tenant = tenants
        .get(&event.tenant)
        .ok_or(UserActionError::UnknownTenant {
            tenant: event.tenant,
        })?;
    if let Some((_, index)) = &tenant.keys.shredded {
        return Err(UserActionError::Shredded {
            tenant: event.tenant,
            index: *index,
        });
    }
    if KEY_KINDS.contains(&kind) {
        check_sealing(tenant, event)?;
        return check_key_event(tenant, event).map(|()| Vec::new());
    }
    if kind == USER_REGISTERED {
        check_registered(tenant, event)?;
        return check_sealing(tenant, event).map(|()| Vec::new());
    }
    if POLICY_RESULT_KINDS.contains(&kind) {
        check_policy_result(tenant, event)?;
        return check_sealing(tenant, event).map(|()| Vec::new());
    }
    if SIGNER_RESULT_KINDS.contains(&kind) {
        check_signer_result(tenant, event)?;
        return check_sealing(tenant, event).map(|()| Vec::new());
    }
    if !event.body.contains_key("action") {
        if kind == CREDENTIAL_REGISTERED {
            check_first_credential(tenant, event, view)?;
            return check_sealing(tenant, event).map(|()| Vec::new());
        }
        return Err(UserActionError::Missing {
            kind: kind.to_string(),
        });
    }
    if !ACTION_KINDS.contains(&kind) {
        return Err(malformed(event, "this kind carries no user action"));
    }
    // Who signed what first; then whether its payload is sealed as its kind must be.
    let keys = check_action(tenant, event, view, anchor_distance_max)?;
    check_sealing(tenant, event)?;
    Ok(keys)
}

/// A sealed kind (govern-core's `seal::SEALED_KINDS`) is sealed in its scope under a version
/// the tenant has, with its clear fields in `body.clear` and nothing of its payload in
/// clear; every other kind is not sealed.
fn check_sealing(tenant: &Tenant, event: &Event) -> Result<(), UserActionError> {
    let kind = event.kind.as_str();
    let refuse = |reason: String| UserActionError::Sealing {
        kind: kind.to_string(),
        reason,
    };
    let Some(sealed) = sealed_kind(kind) else {
        if event.sealed.is_some() {
            return Err(refuse("this kind is not sealed".into()));
        }
        return Ok(());
    };
    let (scope, version) = sealed_scope(event).map_err(|e| refuse(e.to_string()))?;
    if scope != sealed.scope {
        return Err(refuse(format!(
            "sealed in scope {scope:?}; this kind's scope is {:?}",
            sealed.scope
        )));
    }
    if version == 0 || version > tenant.keys.current() {
        return Err(refuse(format!(
            "key version {version} does not exist (the tenant's current is {})",
            tenant.keys.current()
        )));
    }
    if let Some(field) = sealed.members.iter().find(|f| event.body.contains_key(**f)) {
        return Err(refuse(format!("{field:?} belongs in the sealed payload")));
    }
    if sealed.action {
        let clear = event
            .body
            .get("clear")
            .and_then(Value::as_object)
            .ok_or_else(|| refuse("\"clear\": the parameters the log reads, an object".into()))?;
        if clear.len() != sealed.clear.len() || sealed.clear.iter().any(|f| !clear.contains_key(*f))
        {
            return Err(refuse(format!(
                "\"clear\" holds exactly {:?}",
                sealed.clear
            )));
        }
    }
    Ok(())
}

/// `keys.rotated` adds the next version; `keys.audit` names the role, identity, scopes and
/// versions of a release; `reads.audit` names a scope and entries that are the tenant's
/// sealed payloads in that scope. (`keys.shredded` is once per tenant by its uniqueness key.)
fn check_key_event(tenant: &Tenant, event: &Event) -> Result<(), UserActionError> {
    let b = &event.body;
    match event.kind.as_str() {
        KEYS_ROTATED => {
            let next = tenant.keys.current() + 1;
            if b.get("version").and_then(Value::as_u64) != Some(u64::from(next)) {
                return Err(malformed(
                    event,
                    format!("\"version\" is {next}, the next version"),
                ));
            }
        }
        KEYS_AUDIT => {
            let scopes = b.get("scopes").and_then(Value::as_array);
            let ok = text(b, "role").is_some_and(|r| Role::new(r).is_ok())
                && text(b, "identity").is_some_and(hex32)
                && scopes.is_some_and(|s| {
                    !s.is_empty()
                        && s.iter()
                            .all(|s| s.as_str().is_some_and(|s| SCOPES.contains(&s)))
                })
                && b.get("versions")
                    .and_then(Value::as_array)
                    .is_some_and(|v| {
                        !v.is_empty()
                            && v.iter().all(|v| {
                                v.as_u64().is_some_and(|v| {
                                    v >= 1 && v <= u64::from(tenant.keys.current())
                                })
                            })
                    });
            if !ok {
                return Err(malformed(
                    event,
                    "\"role\", \"identity\" (hex leaf), \"scopes\" and \"versions\" the tenant has",
                ));
            }
        }
        READS_AUDIT => {
            let scope = text(b, "scope")
                .filter(|s| SCOPES.contains(s))
                .ok_or_else(|| malformed(event, "\"scope\": a tenant-data scope"))?;
            let entries = b
                .get("entries")
                .and_then(Value::as_array)
                .filter(|e| !e.is_empty() && e.len() <= READS_AUDIT_ENTRIES_MAX)
                .ok_or_else(|| {
                    malformed(
                        event,
                        format!("\"entries\": 1 to {READS_AUDIT_ENTRIES_MAX} indices"),
                    )
                })?;
            let sealed = tenant.payloads.get(scope).map_or(&[][..], Vec::as_slice);
            for entry in entries {
                let ok = entry
                    .as_u64()
                    .is_some_and(|i| sealed.binary_search(&i).is_ok());
                if !ok {
                    return Err(malformed(
                        event,
                        format!(
                            "entry {entry} is not a sealed payload of this tenant in scope {scope}"
                        ),
                    ));
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// The policy worker's results name what they decide on (docs/formats.md, "Policies"): a
/// `policy.evaluated` has exactly one parent, the request's first event (a transfer, a
/// policy change or a wallet request), named again in `subject`, and an `outcome`; a
/// decision follows the request's `policy.evaluated` (its first parent, named in
/// `evaluation`) and the approvals that counted (the other parents, in `approvals`), is
/// of the request's decision kinds, and gives a `reason`. Whether the outcome is right the
/// log cannot tell (the reasons are sealed): the signers, `govern verify request` and
/// auditors recompute it.
/// A signer's result (`wallet.created`, `transfer.signed`, `transfer.quarantined`): it
/// belongs to a wallet request (`wallet.created`) or a transfer (the others); a key or a
/// signature follows the policy worker's approval; its clear fields are well-formed. That
/// the key and the signature are right the log cannot tell from here: anyone checks them
/// against the wallet's address (the transaction's sender), and the signers themselves
/// re-verify the chain before they sign.
fn check_signer_result(tenant: &Tenant, event: &Event) -> Result<(), UserActionError> {
    let kind = event.kind.as_str();
    let b = &event.body;
    let request = tenant
        .requests
        .get(&event.request.0.to_string())
        .ok_or_else(|| UserActionError::Unknown {
            what: "request",
            id: event.request.0.to_string(),
        })?;
    let (subject, approval) = if kind == WALLET_CREATED {
        (WALLET_REQUESTED, WALLET_APPROVED)
    } else {
        (TRANSFER_REQUESTED, TRANSFER_APPROVED)
    };
    if request.kind != subject {
        return Err(malformed(event, format!("its request is not a {subject}")));
    }
    let hex_field = |field: &str, digits: usize, prefix: &str| {
        text(b, field)
            .and_then(|v| v.strip_prefix(prefix))
            .is_some_and(|v| v.len() == digits && v.bytes().all(|c| c.is_ascii_hexdigit()))
    };
    match kind {
        WALLET_CREATED | TRANSFER_SIGNED if !request.events.iter().any(|s| s.kind == approval) => {
            Err(malformed(event, format!("the request has no {approval}")))
        }
        WALLET_CREATED if !hex_field("address", 40, "0x") || !hex_field("public_key", 66, "") => {
            Err(malformed(
                event,
                "\"address\" is 0x and 40 hex digits, \"public_key\" 33 bytes hex",
            ))
        }
        TRANSFER_SIGNED if !hex_field("tx_hash", 64, "0x") => {
            Err(malformed(event, "\"tx_hash\" is 0x and 64 hex digits"))
        }
        TRANSFER_QUARANTINED if text(b, "reason").is_none_or(str::is_empty) => {
            Err(malformed(event, "\"reason\" names why"))
        }
        _ => Ok(()),
    }
}

fn check_policy_result(tenant: &Tenant, event: &Event) -> Result<(), UserActionError> {
    let kind = event.kind.as_str();
    let b = &event.body;
    let request = tenant
        .requests
        .get(&event.request.0.to_string())
        .ok_or_else(|| UserActionError::Unknown {
            what: "request",
            id: event.request.0.to_string(),
        })?;
    let first = request
        .events
        .first()
        .filter(|s| decision_kinds(&s.kind).is_some())
        .ok_or_else(|| {
            malformed(
                event,
                "its request is not a transfer, policy change or wallet request",
            )
        })?;
    let hex_of = |field: &str| text(b, field).map(str::to_string);
    if kind == POLICY_EVALUATED {
        if !matches!(
            text(b, "outcome"),
            Some("allow" | "block" | "approval" | "invalid")
        ) {
            return Err(malformed(
                event,
                "\"outcome\" is allow, block, approval or invalid",
            ));
        }
        if event.parents != [first.leaf] || hex_of("subject") != Some(first.leaf.to_hex()) {
            return Err(malformed(
                event,
                format!(
                    "its one parent and \"subject\" are the request's {} ({})",
                    first.kind, first.leaf
                ),
            ));
        }
        // A second evaluation takes the kind's uniqueness key (`duplicate`).
        return Ok(());
    }
    let (approved, rejected) = decision_kinds(&first.kind).unwrap_or_default();
    if kind != approved && kind != rejected {
        return Err(malformed(
            event,
            format!("a {} is decided by {approved} or {rejected}", first.kind),
        ));
    }
    let evaluated = request
        .events
        .iter()
        .find(|s| s.kind == POLICY_EVALUATED)
        .ok_or_else(|| malformed(event, "the request has no policy.evaluated yet"))?;
    // The other decision recorded already: refused here. The same one again takes the
    // kind's uniqueness key (`duplicate`), which a worker that restarted reads as done.
    if let Some(other) = request
        .events
        .iter()
        .find(|s| (s.kind == approved || s.kind == rejected) && s.kind != kind)
    {
        return Err(malformed(
            event,
            format!(
                "the request is decided already ({} at {})",
                other.kind, other.index
            ),
        ));
    }
    if !matches!(
        text(b, "reason"),
        Some("allowed" | "approved" | "blocked" | "denied" | "timeout" | "invalid")
    ) {
        return Err(malformed(
            event,
            "\"reason\" is allowed, approved, blocked, denied, timeout or invalid",
        ));
    }
    let approvals: Option<Vec<String>> = b.get("approvals").and_then(Value::as_array).map(|a| {
        a.iter()
            .map(|v| v.as_str().unwrap_or_default().to_string())
            .collect()
    });
    let named: Vec<String> = event.parents.iter().skip(1).map(LeafHash::to_hex).collect();
    let counted_ok = named.iter().all(|leaf| {
        request
            .events
            .iter()
            .any(|s| s.kind == APPROVAL_DECIDED && s.leaf.to_hex() == *leaf)
    });
    if event.parents.first() != Some(&evaluated.leaf)
        || hex_of("evaluation") != Some(evaluated.leaf.to_hex())
        || approvals.as_ref() != Some(&named)
        || !counted_ok
    {
        return Err(malformed(
            event,
            format!(
                "its first parent and \"evaluation\" are the request's policy.evaluated ({}), the \
                 others and \"approvals\" approvals of the request",
                evaluated.leaf
            ),
        ));
    }
    Ok(())
}

fn check_tenant_created(event: &Event) -> Result<(), UserActionError> {
    let b = &event.body;
    if event.tenant == TenantId::SYSTEM {
        return Err(malformed(event, "a tenant's id is not the system tenant's"));
    }
    if event.sealed.is_some() {
        return Err(UserActionError::Sealing {
            kind: event.kind.to_string(),
            reason: "this kind is not sealed (its tenant has no keys yet)".into(),
        });
    }
    if !text(b, "name").is_some_and(name_ok) {
        return Err(malformed(
            event,
            "\"name\": 1 to 100 bytes, no control characters",
        ));
    }
    if !text(b, "admin").is_some_and(name_ok) {
        return Err(malformed(event, "\"admin\": the first admin's name"));
    }
    if text(b, "rp_id").is_none_or(str::is_empty) || text(b, "origin").is_none() {
        return Err(malformed(event, "\"rp_id\" and \"origin\" are required"));
    }
    if !text(b, "invite").is_some_and(hex32) {
        return Err(malformed(
            event,
            "\"invite\": hex SHA-256 of the invitation secret",
        ));
    }
    Ok(())
}

fn check_registered(tenant: &Tenant, event: &Event) -> Result<(), UserActionError> {
    let b = &event.body;
    let (Some(user), Some(hash)) = (text(b, "user"), text(b, "invite")) else {
        return Err(malformed(event, "\"user\" and \"invite\" are required"));
    };
    if uuid_text(user).is_none() {
        return Err(malformed(event, "\"user\" is a UUID"));
    }
    let invite = tenant
        .invites
        .get(hash)
        .ok_or(UserActionError::UnknownInvite)?;
    if let Some(user) = &invite.used_by {
        return Err(UserActionError::InviteUsed { user: user.clone() });
    }
    if tenant.users.contains_key(user) {
        return Err(UserActionError::Target(format!(
            "user {user} exists already"
        )));
    }
    Ok(())
}

fn uuid_text(s: &str) -> Option<()> {
    (s.len() == 36 && s.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')).then_some(())
}

/// The first credential of a registration: no action, but its parent is the
/// `user.registered` of the same request, for a user with no credential yet; and the
/// registration's `attestationObject` shows the same id and key on the tenant's rp_id.
fn check_first_credential(
    tenant: &Tenant,
    event: &Event,
    view: &dyn LogView,
) -> Result<(), UserActionError> {
    let credential = tenants::registered_credential(event)
        .ok_or_else(|| malformed(event, "credential, type, user and public_key (COSE_Key)"))?;
    let user = tenant.users.get(&credential.user).ok_or_else(|| {
        UserActionError::Target(format!("user {} is not registered", credential.user))
    })?;
    if tenant.credentials_of(&user.id).next().is_some() {
        // Every later credential is an action signed by an authorised credential.
        return Err(UserActionError::Missing {
            kind: event.kind.to_string(),
        });
    }
    let parent_is_registration = event.parents.len() == 1
        && view
            .parent(&event.parents[0])
            .ok()
            .flatten()
            .is_some_and(|p| {
                p.kind.as_str() == USER_REGISTERED
                    && p.request == event.request
                    && p.index.0 == user.registered
            });
    if !parent_is_registration {
        return Err(UserActionError::Missing {
            kind: event.kind.to_string(),
        });
    }
    if tenant.credentials.contains_key(&credential.id) {
        return Err(UserActionError::Target(format!(
            "credential {} exists already",
            credential.id
        )));
    }
    if credential.kind != govern_core::action::CredentialType::Passkey {
        return Err(malformed(event, "a registration's credential is a passkey"));
    }
    let attestation = text(&event.body, "attestation_object")
        .and_then(|a| B64URL.decode(a).ok())
        .ok_or_else(|| malformed(event, "\"attestation_object\": base64url"))?;
    let (id, key) = govern_core::action::registered_credential(&attestation, &tenant.rp_id)
        .map_err(UserActionError::Signature)?;
    if B64URL.encode(id) != credential.id || key != credential.key {
        return Err(UserActionError::Target(
            "the attestationObject registers another credential".into(),
        ));
    }
    Ok(())
}

fn check_action(
    tenant: &Tenant,
    event: &Event,
    view: &dyn LogView,
    anchor_distance_max: u64,
) -> Result<Vec<String>, UserActionError> {
    let (object, signature) = action_of(&event.body).map_err(UserActionError::Signature)?;
    for (what, named, actual) in [
        ("tenant", &object.tenant, event.tenant.0.to_string()),
        ("kind", &object.kind, event.kind.to_string()),
        ("request", &object.request, event.request.0.to_string()),
        ("rp_id", &object.rp_id, tenant.rp_id.clone()),
    ] {
        if *named != actual {
            return Err(UserActionError::Binding {
                what,
                named: named.clone(),
                actual,
            });
        }
    }
    let (state, verified) = verify_with_credential(tenant, &object, &signature)?;
    let user = tenant.users.get(&object.user).ok_or_else(|| {
        UserActionError::Target(format!("user {} is not registered", object.user))
    })?;
    let sealed = sealed_kind(event.kind.as_str());
    let member = if sealed.is_some() { "clear" } else { "params" };
    let params = event
        .body
        .get(member)
        .and_then(Value::as_object)
        .ok_or_else(|| match sealed {
            Some(k) => UserActionError::Sealing {
                kind: event.kind.to_string(),
                reason: format!(
                    "its parameters are sealed in scope {}, with \"clear\" holding {:?}",
                    k.scope, k.clear
                ),
            },
            None => malformed(event, format!("\"{member}\": an object")),
        })?;
    // A sealed action's clear fields are the signed path's last segments: the user signed
    // them, so the log checks them although it cannot open the payload.
    if let Some(sealed) = sealed
        && clear_from_path(sealed, &object.path).as_ref() != Some(params)
    {
        return Err(UserActionError::Binding {
            what: "clear",
            named: object.path.clone(),
            actual: Value::Object(params.clone()).to_string(),
        });
    }
    // The body the user signed: in clear, the log checks it against the commitment; sealed,
    // only holders of the scope key can (govern-core's `seal::open_action`).
    if sealed.is_none() {
        let salt: [u8; 32] = text(&event.body, "salt")
            .and_then(|s| hex::decode(s).ok())
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| malformed(event, "\"salt\": 32 bytes, hex"))?;
        let commitment = body_commitment(&salt, &Value::Object(params.clone()))
            .map_err(UserActionError::Signature)?;
        if commitment != object.body_commitment {
            return Err(UserActionError::Commitment);
        }
    }
    authorize(tenant, user.role, &object, params, event)?;
    check_binding(tenant, event, &object, params)?;
    check_anchor(&object, view, anchor_distance_max)?;
    if object.nonce.is_empty() || object.nonce.len() > 64 {
        return Err(malformed(event, "the nonce is 1 to 64 characters"));
    }
    // A replay is a reused nonce before anything else (the sequencer checks the key again,
    // within the batch too).
    let nonce = nonce_key(&event.tenant, &object.nonce);
    if let Ok(Some(index)) = view.unique_taken(&nonce) {
        return Err(UserActionError::NonceUsed {
            nonce: object.nonce.clone(),
            index: index.0,
        });
    }
    check_counter(&signature, &verified, state)?;
    Ok(vec![nonce])
}

/// The one parent a user action's event must have, derived from what the user signed: the
/// object its path names (the wallet of `/v1/wallets/{id}/transfers`, the transfer request
/// of `/v1/requests/{id}/approvals/…`), or for a path that names none, what its signed
/// parameters name (the user of a role change or an added key, the credential of a
/// revocation) or the tenant's own chain (an invitation or a wallet follows the tenant's
/// `tenant.created`; a policy change the tenant's latest policy). `tenant` is the tenant as
/// of the event; `params` are the parameters the log reads (`body.params`, or a sealed
/// action's `body.clear`).
///
/// The log refuses any other parent set, so an edge cannot re-issue a user's signed action
/// under another object; `govern verify request` checks the same.
///
/// # Errors
/// [`UserActionError::Unknown`] when the object does not exist in the tenant;
/// [`UserActionError::Malformed`] when the parameters lack it.
pub fn required_parent(
    tenant: &Tenant,
    kind: &str,
    target: PathTarget<'_>,
    params: &Map<String, Value>,
) -> Result<(String, LeafHash), UserActionError> {
    let missing = |what: &'static str, id: &str| UserActionError::Unknown {
        what,
        id: id.to_string(),
    };
    let field = |name: &str| {
        text(params, name).ok_or_else(|| UserActionError::Malformed {
            kind: kind.to_string(),
            reason: format!("params.{name} is required"),
        })
    };
    Ok(match (kind, target) {
        (TRANSFER_REQUESTED, PathTarget::Wallet(id)) => {
            let w = tenant
                .wallets
                .get(id)
                .ok_or_else(|| missing("wallet", id))?;
            (format!("wallet {id}"), w.leaf)
        }
        (APPROVAL_DECIDED, PathTarget::Request(id)) => {
            let first = tenant
                .requests
                .get(id)
                .filter(|r| decision_kinds(&r.kind).is_some())
                .and_then(|r| r.events.first())
                .ok_or_else(|| missing("request", id))?;
            (format!("request {id}"), first.leaf)
        }
        (USER_ROLE_CHANGED | CREDENTIAL_REGISTERED, PathTarget::None) => {
            let id = field("user")?;
            let u = tenant.users.get(id).ok_or_else(|| missing("user", id))?;
            (format!("user {id}"), u.leaf)
        }
        (CREDENTIAL_REVOKED, PathTarget::None) => {
            let id = field("credential")?;
            let c = tenant
                .credentials
                .get(id)
                .ok_or_else(|| missing("credential", id))?;
            (format!("credential {id}"), c.leaf)
        }
        (USER_INVITED | WALLET_REQUESTED, PathTarget::None) => ("the tenant".into(), tenant.leaf),
        (POLICY_CHANGED, PathTarget::None) => match &tenant.policy {
            Some(p) => ("the tenant's latest policy".into(), p.leaf),
            None => ("the tenant (it has no policy yet)".into(), tenant.leaf),
        },
        _ => {
            return Err(UserActionError::Malformed {
                kind: kind.to_string(),
                reason: "this kind carries no user action".into(),
            });
        }
    })
}

/// What binds a signed action to its event beyond tenant, kind, request and rp_id: the
/// signed method and path are the kind's endpoint (govern-core's `action::route_of`), and
/// the event's parents are exactly [`required_parent`]. The log checks it at append and
/// `govern verify request` on every hop; `params` are the parameters the log reads
/// (govern-projections' `tenants::params`).
///
/// # Errors
/// [`UserActionError::Binding`] (`route`) or [`UserActionError::Parent`], or what
/// [`required_parent`] refuses.
pub fn check_binding(
    tenant: &Tenant,
    event: &Event,
    object: &ChallengeObject,
    params: &Map<String, Value>,
) -> Result<(), UserActionError> {
    let target =
        route_for_kind(object, event.kind.as_str()).map_err(|e| UserActionError::Binding {
            what: "route",
            named: format!("{} {}", object.method, object.path),
            actual: e.to_string(),
        })?;
    let (named, required) = required_parent(tenant, event.kind.as_str(), target, params)?;
    if event.parents != [required] {
        return Err(UserActionError::Parent {
            target: named,
            required: required.to_hex(),
            actual: format!(
                "[{}]",
                event
                    .parents
                    .iter()
                    .map(LeafHash::to_hex)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
    }
    Ok(())
}

/// Whether `user` may add an API key: they hold fewer than [`KEYS_PER_USER_MAX`] live ones.
/// The one check of that bound: the edge makes it before appending, the log at append.
///
/// # Errors
/// [`UserActionError::KeyLimit`].
pub fn check_keys_of(tenant: &Tenant, user: &str) -> Result<(), UserActionError> {
    let live = tenant
        .credentials_of(user)
        .filter(|c| {
            c.revoked.is_none() && c.credential.kind == govern_core::action::CredentialType::Key
        })
        .count();
    if live >= KEYS_PER_USER_MAX {
        return Err(UserActionError::KeyLimit {
            user: user.to_string(),
            max: KEYS_PER_USER_MAX,
        });
    }
    Ok(())
}

/// The signing credential (registered in `tenant`, not revoked) and the user's signature
/// under it: the check the edge makes before issuing a token and the log makes at append.
///
/// # Errors
/// [`UserActionError::UnknownCredential`], [`UserActionError::Revoked`],
/// [`UserActionError::Signature`].
pub fn verify_with_credential<'a>(
    tenant: &'a Tenant,
    object: &ChallengeObject,
    signature: &UserSignature,
) -> Result<(&'a CredentialState, Verified), UserActionError> {
    let state = tenant.credentials.get(&object.credential).ok_or_else(|| {
        UserActionError::UnknownCredential {
            credential: object.credential.clone(),
        }
    })?;
    if let Some(index) = state.revoked {
        return Err(UserActionError::Revoked {
            credential: object.credential.clone(),
            index,
        });
    }
    let verified = verify_user_action(object, signature, &state.credential)
        .map_err(UserActionError::Signature)?;
    Ok((state, verified))
}

/// A passkey's counter, when it or the credential's last is non-zero, must exceed the last.
///
/// # Errors
/// [`UserActionError::Counter`].
pub fn check_counter(
    signature: &UserSignature,
    verified: &Verified,
    state: &CredentialState,
) -> Result<(), UserActionError> {
    if matches!(signature, UserSignature::Passkey { .. })
        && (verified.counter != 0 || state.counter != 0)
        && verified.counter <= state.counter
    {
        return Err(UserActionError::Counter {
            counter: verified.counter,
            last: state.counter,
        });
    }
    Ok(())
}

fn check_anchor(
    object: &ChallengeObject,
    view: &dyn LogView,
    anchor_distance_max: u64,
) -> Result<(), UserActionError> {
    let anchor = &object.anchor;
    let root = hex::decode(&anchor.root)
        .ok()
        .and_then(|b| Hash::from_slice(&b).ok())
        .ok_or_else(|| UserActionError::Anchor {
            reason: "the root is not 32 bytes of hex".into(),
        })?;
    match view.recent_checkpoint(&RootHash(root)) {
        Some(size) if size.0 == anchor.size => {}
        _ => {
            return Err(UserActionError::Anchor {
                reason: format!(
                    "size {} and root {} are not one of the log's recent checkpoints",
                    anchor.size, anchor.root
                ),
            });
        }
    }
    let distance = view.next_index().0.saturating_sub(anchor.size);
    if distance > anchor_distance_max {
        return Err(UserActionError::Anchor {
            reason: format!(
                "the action would land {distance} entries after its anchor; at most {anchor_distance_max} are allowed"
            ),
        });
    }
    Ok(())
}

/// Whether the signer's role permits the action on its target.
fn authorize(
    tenant: &Tenant,
    role: UserRole,
    object: &ChallengeObject,
    params: &Map<String, Value>,
    event: &Event,
) -> Result<(), UserActionError> {
    let denied = |what: &str| UserActionError::NotAuthorized {
        user: object.user.clone(),
        role: role.as_str().into(),
        what: what.into(),
    };
    let kind = event.kind.as_str();
    if !role.may(kind) {
        return Err(denied(&format!("sign {kind}")));
    }
    let target_user = |field: &str| -> Result<&str, UserActionError> {
        let user = text(params, field)
            .ok_or_else(|| malformed(event, format!("params.{field} is required")))?;
        if !tenant.users.contains_key(user) {
            return Err(UserActionError::Target(format!(
                "user {user} is not registered in this tenant"
            )));
        }
        Ok(user)
    };
    match kind {
        USER_INVITED
            if text(params, "role").and_then(UserRole::parse).is_none()
                || params.len() != 1
                || !text(&event.body, "invite").is_some_and(hex32) =>
        {
            return Err(malformed(
                event,
                "params {\"role\": admin|member} and body.invite (hex SHA-256)",
            ));
        }
        USER_ROLE_CHANGED => {
            target_user("user")?;
            if text(params, "role").and_then(UserRole::parse).is_none() {
                return Err(malformed(event, "params.role is admin or member"));
            }
        }
        CREDENTIAL_REGISTERED => {
            // Only for oneself, admins included: a key added for another user would let
            // one person sign as two (two approvals of one transfer, say).
            let user = target_user("user")?;
            if user != object.user {
                return Err(denied("add a credential for another user"));
            }
            let credential = tenants::registered_credential(event).ok_or_else(|| {
                malformed(
                    event,
                    "params: credential, type, user, public_key (COSE_Key)",
                )
            })?;
            // A passkey comes only from a registration ceremony, with its attestationObject;
            // an action adds API keys.
            if credential.kind != govern_core::action::CredentialType::Key {
                return Err(malformed(event, "an added credential has type \"key\""));
            }
            if tenant.credentials.contains_key(&credential.id) {
                return Err(UserActionError::Target(format!(
                    "credential {} exists already",
                    credential.id
                )));
            }
            check_keys_of(tenant, user)?;
            let cose = B64URL
                .decode(text(params, "public_key").unwrap_or_default())
                .unwrap_or_default();
            if credential.id != tenants::key_credential_id(&cose) {
                return Err(malformed(
                    event,
                    "an added credential's id is base64url SHA-256 of its COSE_Key",
                ));
            }
            let _ = CredentialKey::from_cose(&cose).map_err(UserActionError::Signature)?;
        }
        CREDENTIAL_REVOKED => {
            let id = text(params, "credential")
                .ok_or_else(|| malformed(event, "params.credential is required"))?;
            let target = tenant.live_credential(id).ok_or_else(|| {
                UserActionError::Target(format!("credential {id} is not live in this tenant"))
            })?;
            if role != UserRole::Admin && target.credential.user != object.user {
                return Err(denied("revoke another user's credential"));
            }
        }
        tenants::APPROVAL_DECIDED => {
            if text(params, "decision").is_none_or(|d| d != "approve" && d != "deny") {
                return Err(malformed(event, "clear.decision is approve or deny"));
            }
            if text(&event.body, "user") != Some(object.user.as_str()) {
                return Err(malformed(event, "body.user is the deciding user"));
            }
        }
        _ => {}
    }
    Ok(())
}
