//! User Action Signing: the challenge object for an exact request, its signature checked
//! with the verifier the log runs, the single-use token, and the action endpoints (one
//! table, [`ACTION_ROUTES`], of what each kind checks and adds before it is appended).

#[allow(clippy::wildcard_imports)]
use super::*;
use govern_core::kinds::{CREDENTIAL_REVOKED, USER_ROLE_CHANGED};

/// `POST /v1/auth/action/init {kind, method, path, body}` (session) → the challenge object.
#[utoipa::path(post,
    path = "/v1/auth/action/init",
    tag = "edge",
    request_body = ActionInit,
    responses((status = 200, description = "The challenge object to sign, its nonce, anchor and salt", body = Object), (status = 400, description = "Bad body or route", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 401, description = "Sign in first", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 404, description = "No such request", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 503, description = "Busy", body = crate::problem::Problem, content_type = "application/problem+json")),
    security(("session" = [])))]
pub(crate) async fn action_init(
    State(edge): State<Arc<Edge>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    let session_token = bearer(&headers).unwrap_or_default().to_string();
    let session = edge.session(&headers)?;
    let req: ActionInit = parse(&body)?;
    let kind = kind_of_route(&req.method, &req.path).ok_or_else(|| {
        bad_body(format!(
            "{} {} is not an action endpoint",
            req.method, req.path
        ))
    })?;
    if kind != req.kind {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "action-route",
            "Kind does not match the endpoint",
            format!(
                "{} {} appends {kind}, not {}",
                req.method, req.path, req.kind
            ),
        ));
    }
    let params = action_body(&serde_json::to_vec(&req.body).unwrap_or_default())?;
    // An approval's request is the transfer its path names, which must be one.
    let request = match govern_core::action::route_of(&req.method, &req.path) {
        Some((_, govern_core::action::PathTarget::Request(id))) => {
            let tenant = edge
                .tenant(&session.tenant)
                .ok_or_else(|| not_found("request", id))?;
            parent_of(&tenant, kind, &req.method, &req.path, &Map::new())?;
            id.to_string()
        }
        _ => RequestId::v7(edge.clock.now(), &*edge.entropy)
            .0
            .to_string(),
    };
    let mut salt = [0u8; 32];
    edge.fill(&mut salt);
    let mut nonce = [0u8; 16];
    edge.fill(&mut nonce);
    let commitment =
        body_commitment(&salt, &Value::Object(params)).map_err(|e| bad_body(e.to_string()))?;
    let object = ChallengeObject {
        domain: ACTION_DOMAIN.into(),
        tenant: session.tenant.0.to_string(),
        user: session.user.clone(),
        credential: session.credential.clone(),
        kind: kind.into(),
        request,
        rp_id: edge.config.rp_id.clone(),
        method: req.method,
        path: req.path,
        body_commitment: commitment,
        nonce: B64URL.encode(nonce),
        anchor: edge.anchor(),
    };
    let challenge = object.challenge().map_err(|e| bad_body(e.to_string()))?;
    {
        let mut vol = edge.volatile.lock();
        let expires = edge.now_s() + edge.config.ceremony_ttl_s;
        insert_bounded(
            edge.now_s(),
            &mut vol.pending,
            object.nonce.clone(),
            PendingAction {
                session: session_token.clone(),
                object: object.clone(),
                salt,
                expires,
            },
            |p| p.expires,
        )?;
        let Volatile {
            pending,
            pending_of,
            ..
        } = &mut *vol;
        cap_per_owner(
            pending,
            pending_of,
            &session_token,
            &object.nonce,
            ACTIONS_PER_SESSION_MAX,
        );
    }
    Ok(axum::Json(json!({
        "nonce": object.nonce,
        "anchor": object.anchor,
        "salt": hex::encode(salt),
        "request": object.request,
        "challenge": object,
        "challenge_b64url": B64URL.encode(challenge),
    }))
    .into_response())
}

/// `POST /v1/auth/action {challenge, signature}` (session) → a single-use `userAction`.
#[utoipa::path(post,
    path = "/v1/auth/action",
    tag = "edge",
    request_body = ActionSign,
    responses((status = 200, description = "A single-use userAction token for exactly that request", body = Object), (status = 400, description = "Bad body", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 401, description = "Sign in first", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 403, description = "Signature refused", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 503, description = "Busy", body = crate::problem::Problem, content_type = "application/problem+json")),
    security(("session" = [])))]
pub(crate) async fn action_sign(
    State(edge): State<Arc<Edge>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    let session = edge.session(&headers)?;
    let req: ActionSign = parse(&body)?;
    // The nonce is spent by this attempt, whatever its outcome.
    let pending = edge.volatile.lock().pending.remove(&req.challenge.nonce);
    let (pending, salt) = match pending {
        Some(p) if p.expires > edge.now_s() => {
            let salt = p.salt;
            (p, salt)
        }
        _ => {
            return Err(forbidden(
                "action-unknown",
                "No such pending action",
                "no action awaits a signature with that nonce (unknown, used or expired)",
            ));
        }
    };
    let session_token = bearer(&headers).unwrap_or_default();
    if pending.session != session_token || pending.object.user != session.user {
        return Err(forbidden(
            "action-unknown",
            "No such pending action",
            "that action was initiated by another session",
        ));
    }
    if req.challenge != pending.object {
        return Err(forbidden(
            "challenge-mismatch",
            "Not the challenge issued",
            "the challenge object differs from the one this node issued for that nonce",
        ));
    }
    let tenant = edge
        .tenant(&session.tenant)
        .ok_or_else(|| unauthenticated("the session's tenant is gone"))?;
    let (state, verified) = verify_with_credential(&tenant, &req.challenge, &req.signature)?;
    check_origin(&edge, &req.signature)?;
    check_counter(&req.signature, &verified, state)?;
    let token = edge.random_token();
    let expires = edge.now_s() + edge.config.action_token_ttl_s;
    let mut vol = edge.volatile.lock();
    insert_bounded(
        edge.now_s(),
        &mut vol.tokens,
        token.clone(),
        ActionToken {
            object: req.challenge,
            signature: req.signature,
            salt,
            expires,
        },
        |t| t.expires,
    )?;
    let Volatile {
        tokens, tokens_of, ..
    } = &mut *vol;
    cap_per_owner(
        tokens,
        tokens_of,
        &pending.session,
        &token,
        ACTIONS_PER_SESSION_MAX,
    );
    drop(vol);
    Ok(axum::Json(json!({"userAction": token, "expires": expires})).into_response())
}

pub(super) fn mismatch(what: &str, signed: &str, got: &str) -> Problem {
    forbidden(
        "user-action-mismatch",
        "The user action is for another request",
        format!("the action was signed for {what} {signed:?}, not {got:?}"),
    )
}

/// One sensitive endpoint: [`perform`] under its own name and OpenAPI operation (utoipa
/// documents one function per path).
macro_rules! action_endpoint {
    ($(#[$doc:meta])* $name:ident, $path:tt $(, $param:tt)*) => {
        $(#[$doc])*
        #[utoipa::path(post, path = $path, tag = "actions", params($(($param = String, Path)),*),
            request_body = Object,
            responses((status = 201, description = "Appended: request, kind, index, leaf", body = Object), (status = 400, description = "Bad body", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 401, description = "No user action", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 403, description = "User action refused", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 404, description = "No such target in this tenant", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 409, description = "Nonce or key taken", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 503, description = "Busy", body = crate::problem::Problem, content_type = "application/problem+json")),
            security(("userAction" = [])))]
        pub(crate) async fn $name(
            edge: State<Arc<Edge>>,
            method: Method,
            uri: Uri,
            headers: HeaderMap,
            body: Bytes,
        ) -> Result<Response, Problem> {
            perform(edge, method, uri, headers, body).await
        }
    };
}

action_endpoint!(
    /// Invite a user (admin): `{role}`; answers the one-time invitation (the invitee gives
    /// their name when they register). Appends `user.invited`.
    invite_user, "/v1/users"
);
action_endpoint!(
    /// Change a user's role (admin): `{user, role}`. Appends `user.role_changed`.
    change_role, "/v1/users/role"
);
action_endpoint!(
    /// Add an API key: `{user, type: "key", public_key}` (base64url COSE_Key). Appends
    /// `credential.registered`.
    add_credential, "/v1/credentials"
);
action_endpoint!(
    /// Revoke a credential: `{credential}`. Appends `credential.revoked`.
    revoke_credential, "/v1/credentials/revoke"
);
action_endpoint!(
    /// Request a wallet: `{name}`. Appends `wallet.requested`.
    request_wallet, "/v1/wallets"
);
action_endpoint!(
    /// Request a transfer from the wallet: `{kind, to, amount, chain_id, nonce,
    /// max_fee_per_gas, max_priority_fee_per_gas, gas_limit[, contract]}`. Appends
    /// `transfer.requested`.
    request_transfer, "/v1/wallets/{id}/transfers", "id"
);
action_endpoint!(
    /// Create or change the tenant's policy (admin): `{policy}`. Appends `policy.changed`.
    change_policy, "/v1/policies"
);
action_endpoint!(
    /// Approve or deny a transfer: the decision is the path's last segment (so the user's
    /// signature covers it and the log reads it in clear); the body is `{}` or
    /// `{comment}`, sealed. Appends `approval.decided`.
    decide_approval, "/v1/requests/{id}/approvals/{decision}", "id", "decision"
);

/// Every sensitive endpoint: the `userAction` token must be for exactly this request.
pub(super) async fn perform(
    State(edge): State<Arc<Edge>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    let path = uri.path().to_string();
    let kind = kind_of_route(method.as_str(), &path).ok_or_else(|| Problem::no_route(&path))?;
    let token = headers
        .get(USER_ACTION_HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            Problem::new(
                StatusCode::UNAUTHORIZED,
                "user-action-required",
                "User action signature required",
                format!("{kind} needs header X-Govern-User-Action from POST /v1/auth/action"),
            )
        })?;
    // Single use: the token is spent by this attempt, whatever its outcome.
    let t = edge
        .volatile
        .lock()
        .tokens
        .remove(token)
        .filter(|t| t.expires > edge.now_s())
        .ok_or_else(|| {
            forbidden(
                "user-action-token",
                "Unknown user action token",
                "the userAction token is unknown, used or expired",
            )
        })?;
    let o = &t.object;
    if o.kind != kind {
        return Err(mismatch("kind", &o.kind, kind));
    }
    if o.method != method.as_str() {
        return Err(mismatch("method", &o.method, method.as_str()));
    }
    if o.path != path {
        return Err(mismatch("path", &o.path, &path));
    }
    let params = action_body(&body)?;
    let commitment = body_commitment(&t.salt, &Value::Object(params.clone()))
        .map_err(|e| bad_body(e.to_string()))?;
    if commitment != o.body_commitment {
        return Err(forbidden(
            "user-action-mismatch",
            "The user action is for another request",
            "the body differs from the body the action was signed for",
        ));
    }
    let tenant_id = TenantId(
        Uuid::parse_str(&o.tenant).map_err(|_| bad_body("the action's tenant is not a UUID"))?,
    );
    let request = RequestId(
        Uuid::parse_str(&o.request).map_err(|_| bad_body("the action's request is not a UUID"))?,
    );
    let tenant = edge
        .tenant(&tenant_id)
        .ok_or_else(|| not_found("tenant", &o.tenant))?;
    let mut b = Map::new();
    b.insert(
        "action".into(),
        serde_json::to_value(o).unwrap_or(Value::Null),
    );
    b.insert(
        "signature".into(),
        serde_json::to_value(&t.signature).unwrap_or(Value::Null),
    );
    let text = |f: &str| text_of(&params, f);
    // What each kind's parameters must be, before anything is appended: its row of the table.
    let prepare = ACTION_ROUTES
        .iter()
        .find(|r| r.kind == kind)
        .map(|r| r.prepare)
        .ok_or_else(|| Problem::no_route(&path))?;
    let invite_secret = prepare(&mut Prepare {
        edge: &edge,
        tenant: &tenant,
        object: o,
        params: &params,
        body: &mut b,
    })?;
    let parents = vec![parent_of(&tenant, kind, method.as_str(), &path, &params)?];
    let added_credential = (kind == CREDENTIAL_REGISTERED)
        .then(|| B64URL.decode(text("public_key")).ok())
        .flatten()
        .map(|cose| tenants::key_credential_id(&cose));
    // A sealed kind keeps only its clear fields in clear, and seals the parameters with the
    // commitment's salt; any other action keeps both in clear for the log to check.
    let plaintext = match govern_core::seal::sealed_kind(kind) {
        Some(sealed) => {
            let clear = govern_core::seal::clear_from_path(sealed, &path)
                .ok_or_else(|| Problem::no_route(&path))?;
            b.insert("clear".into(), Value::Object(clear));
            Some(Zeroizing::new(
                govern_core::seal::action_plaintext(&params, &t.salt)
                    .map_err(|e| bad_body(e.to_string()))?,
            ))
        }
        None => {
            b.insert("salt".into(), hex::encode(t.salt).into());
            b.insert("params".into(), Value::Object(params));
            None
        }
    };
    let appended = edge
        .append_sealed(kind, tenant_id, request, parents, b, plaintext)
        .await?;
    let mut out = json!({
        "request": o.request,
        "kind": kind,
        "index": appended.index.0,
        "leaf": appended.leaf_hash,
    });
    if let Some(secret) = invite_secret {
        out["invite"] = secret.clone().into();
        out["registration_url"] = edge.registration_url(&tenant_id, &secret).into();
    }
    if let Some(id) = added_credential {
        out["credential"] = id.into();
    }
    Ok((StatusCode::CREATED, axum::Json(out)).into_response())
}

/// What an action endpoint's row sees: the edge, the tenant, the signed object, the
/// parameters, and the event's body being built.
pub(super) struct Prepare<'a> {
    edge: &'a Edge,
    tenant: &'a Tenant,
    object: &'a ChallengeObject,
    params: &'a Map<String, Value>,
    body: &'a mut Map<String, Value>,
}

/// One action endpoint: its kind (the route is govern-core's `route_of`, one table for the
/// edge and every checker) and what it checks and adds before the event is appended. It
/// returns an invitation's secret, for the answer.
pub(super) struct ActionRoute {
    kind: &'static str,
    prepare: fn(&mut Prepare<'_>) -> Result<Option<String>, Problem>,
}

/// The action endpoints, one row a kind.
pub(super) const ACTION_ROUTES: [ActionRoute; 8] = [
    ActionRoute {
        kind: USER_INVITED,
        prepare: prepare_invite,
    },
    ActionRoute {
        kind: USER_ROLE_CHANGED,
        prepare: prepare_nothing,
    },
    ActionRoute {
        kind: CREDENTIAL_REGISTERED,
        prepare: prepare_credential,
    },
    ActionRoute {
        kind: CREDENTIAL_REVOKED,
        prepare: prepare_nothing,
    },
    ActionRoute {
        kind: WALLET_REQUESTED,
        prepare: prepare_wallet,
    },
    ActionRoute {
        kind: TRANSFER_REQUESTED,
        prepare: prepare_transfer,
    },
    ActionRoute {
        kind: POLICY_CHANGED,
        prepare: prepare_policy,
    },
    ActionRoute {
        kind: APPROVAL_DECIDED,
        prepare: prepare_approval,
    },
];

fn text_of(params: &Map<String, Value>, field: &str) -> String {
    params
        .get(field)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// Nothing beyond what the log checks.
fn prepare_nothing(_: &mut Prepare<'_>) -> Result<Option<String>, Problem> {
    Ok(None)
}

/// `{"role"}`; the invitation's one-time secret, hashed into the event.
fn prepare_invite(p: &mut Prepare<'_>) -> Result<Option<String>, Problem> {
    if p.params.len() != 1 || UserRole::parse(&text_of(p.params, "role")).is_none() {
        return Err(bad_body(
            "an invitation is {\"role\": \"admin\" | \"member\"}; the invitee gives their name when they register",
        ));
    }
    let secret = p.edge.random_token();
    p.body
        .insert("invite".into(), sha256_hex(secret.as_bytes()).into());
    Ok(Some(secret))
}

/// The log's bound on a user's API keys, refused before anything is appended.
fn prepare_credential(p: &mut Prepare<'_>) -> Result<Option<String>, Problem> {
    check_keys_of(p.tenant, &text_of(p.params, "user"))?;
    Ok(None)
}

/// `{"name"}`.
fn prepare_wallet(p: &mut Prepare<'_>) -> Result<Option<String>, Problem> {
    if p.params.len() != 1 || !name_ok(&text_of(p.params, "name")) {
        return Err(bad_body(
            "a wallet is {\"name\"}: 1 to 100 bytes, no control characters",
        ));
    }
    Ok(None)
}

/// The transfer's fields (govern-projections' `validate_transfer`).
fn prepare_transfer(p: &mut Prepare<'_>) -> Result<Option<String>, Problem> {
    tenants::validate_transfer(p.params).map_err(bad_body)?;
    Ok(None)
}

/// `{"policy": {…}}` (create or replace) or `{"remove": "<id>"}`, checked by the one parser
/// the policy worker and the verifiers run (govern-projections' `policy::parse_change`).
fn prepare_policy(p: &mut Prepare<'_>) -> Result<Option<String>, Problem> {
    govern_projections::policy::parse_change(p.params)
        .map_err(|e| bad_body(format!("not a policy change: {e}")))?;
    Ok(None)
}

/// `{}` or `{"comment"}` (the decision is the path's); the approver goes into the body.
fn prepare_approval(p: &mut Prepare<'_>) -> Result<Option<String>, Problem> {
    let comment_ok = p
        .params
        .iter()
        .all(|(k, v)| k == "comment" && v.as_str().is_some_and(|c| c.len() <= COMMENT_BYTES_MAX));
    if !comment_ok {
        return Err(bad_body(format!(
            "an approval's body is {{}} or {{\"comment\": at most {COMMENT_BYTES_MAX} bytes}}; the decision is the path's"
        )));
    }
    p.body.insert("user".into(), p.object.user.clone().into());
    Ok(None)
}
