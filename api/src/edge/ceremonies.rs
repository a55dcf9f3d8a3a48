//! Tenants, passkey registration and login (webauthn-rs), API-key login.

#[allow(clippy::wildcard_imports)]
use super::*;

/// `POST /v1/tenants` (operator): `tenant.created` and the first admin's invitation.
#[utoipa::path(post,
    path = "/v1/tenants",
    tag = "edge",
    request_body = CreateTenant,
    responses((status = 201, description = "The tenant and its first admin's one-time invitation", body = InviteOut), (status = 400, description = "Bad body", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 401, description = "Operator token required", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 503, description = "Busy", body = crate::problem::Problem, content_type = "application/problem+json")),
    security(("operator" = [])))]
pub(crate) async fn create_tenant(
    State(edge): State<Arc<Edge>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    if !edge.is_operator(&headers) {
        return Err(operator_required());
    }
    let req: CreateTenant = parse(&body)?;
    let tenant = TenantId(RequestId::v7(edge.clock.now(), &*edge.entropy).0);
    let request = RequestId::v7(edge.clock.now(), &*edge.entropy);
    let secret = edge.random_token();
    let mut b = Map::new();
    b.insert("name".into(), req.name.into());
    b.insert("admin".into(), req.admin.into());
    b.insert("rp_id".into(), edge.config.rp_id.clone().into());
    b.insert("origin".into(), edge.config.origin_text().into());
    b.insert("invite".into(), sha256_hex(secret.as_bytes()).into());
    let appended = edge
        .append(tenants::TENANT_CREATED, tenant, request, Vec::new(), b)
        .await?;
    let out = InviteOut {
        tenant: tenant.0.to_string(),
        request: request.0.to_string(),
        index: appended.index.0,
        registration_url: edge.registration_url(&tenant, &secret),
        invite: secret,
    };
    Ok((StatusCode::CREATED, axum::Json(out)).into_response())
}

pub(super) fn invite_refused() -> Problem {
    forbidden(
        "invite-unknown",
        "No such invitation",
        "no unused invitation with that secret in that tenant",
    )
}

/// `POST /v1/auth/register/start {tenant, invite}` → webauthn-rs creation options.
#[utoipa::path(post,
    path = "/v1/auth/register/start",
    tag = "edge",
    request_body = RegisterStart,
    responses((status = 200, description = "WebAuthn creation options", body = Object), (status = 400, description = "Bad body", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 403, description = "Invitation unknown or used", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 503, description = "Busy", body = crate::problem::Problem, content_type = "application/problem+json")))]
pub(crate) async fn register_start(
    State(edge): State<Arc<Edge>>,
    body: Bytes,
) -> Result<Response, Problem> {
    let req: RegisterStart = parse(&body)?;
    let tenant_id = TenantId(req.tenant);
    let hash = sha256_hex(req.invite.as_bytes());
    let tenant = edge.tenant(&tenant_id).ok_or_else(invite_refused)?;
    let invite = tenant.invites.get(&hash).ok_or_else(invite_refused)?;
    if invite.used_by.is_some() {
        return Err(forbidden(
            "invite-used",
            "Invitation already used",
            "this invitation was redeemed already",
        ));
    }
    // The invitee's own name; the first admin's defaults to the one the operator gave.
    let name = req
        .name
        .clone()
        .or_else(|| invite.name.clone())
        .ok_or_else(|| bad_body("\"name\": the name to register under"))?;
    if !name_ok(&name) {
        return Err(bad_body("\"name\": 1 to 100 bytes, no control characters"));
    }
    let user = RequestId::v7(edge.clock.now(), &*edge.entropy).0;
    let (options, state) = edge
        .webauthn
        .start_passkey_registration(user, &name, &name, None)
        .map_err(|e| bad_body(format!("webauthn: {e}")))?;
    let id = edge.random_token();
    insert_bounded(
        edge.now_s(),
        &mut edge.volatile.lock().registrations,
        id.clone(),
        Registration {
            tenant: tenant_id,
            invite: hash,
            name,
            user,
            state,
            expires: edge.now_s() + edge.config.ceremony_ttl_s,
        },
        |r| r.expires,
    )?;
    Ok(
        axum::Json(json!({"registration": id, "user": user.to_string(), "options": options}))
            .into_response(),
    )
}

pub(super) fn ceremony_unknown(what: &str) -> Problem {
    forbidden(
        "ceremony-unknown",
        "No such ceremony",
        format!("no {what} in progress with that id (unknown, used or expired)"),
    )
}

/// `POST /v1/auth/register/finish {registration, credential}` → `user.registered`,
/// `credential.registered`, and a session.
#[utoipa::path(post,
    path = "/v1/auth/register/finish",
    tag = "edge",
    request_body = RegisterFinish,
    responses((status = 201, description = "Registered: a session", body = SessionOut), (status = 400, description = "Bad body", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 403, description = "Refused", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 409, description = "Taken", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 503, description = "Busy", body = crate::problem::Problem, content_type = "application/problem+json")))]
pub(crate) async fn register_finish(
    State(edge): State<Arc<Edge>>,
    body: Bytes,
) -> Result<Response, Problem> {
    let req: RegisterFinish = parse(&body)?;
    let reg = edge
        .volatile
        .lock()
        .registrations
        .remove(&req.registration)
        .filter(|r| r.expires > edge.now_s())
        .ok_or_else(|| ceremony_unknown("registration"))?;
    let passkey = edge
        .webauthn
        .finish_passkey_registration(&req.credential, &reg.state)
        .map_err(|e| {
            forbidden(
                "registration-refused",
                "Passkey registration refused",
                format!("webauthn: {e}"),
            )
        })?;
    let refused = |detail: String| {
        forbidden(
            "registration-refused",
            "Passkey registration refused",
            detail,
        )
    };
    // Everything the log will check, before the first append: a refusal after
    // `user.registered` would leave the user without a credential.
    let tenant = edge.tenant(&reg.tenant).ok_or_else(invite_refused)?;
    let invite = tenant.invites.get(&reg.invite).ok_or_else(invite_refused)?;
    if invite.used_by.is_some() {
        return Err(forbidden(
            "invite-used",
            "Invitation already used",
            "this invitation was redeemed already",
        ));
    }
    let attestation: &[u8] = req.credential.response.attestation_object.as_ref();
    let (id, key) =
        registered_credential(attestation, &tenant.rp_id).map_err(|e| refused(e.to_string()))?;
    let credential = B64URL.encode(&id);
    let request = RequestId::v7(edge.clock.now(), &*edge.entropy);
    let user = reg.user.to_string();
    let mut b = Map::new();
    b.insert("user".into(), user.clone().into());
    b.insert("invite".into(), reg.invite.clone().into());
    // The user's name is sealed in scope `users`.
    let name = govern_core::canonical::to_vec(&json!({"name": reg.name}))
        .map_err(|e| bad_body(e.to_string()))?;
    // The passkey's state is on disk before the log shows the credential, so a registration
    // the log holds can always log in; an id too long for a file name is refused here.
    edge.claim_passkey(&tenant, &reg.tenant, &credential, &passkey)?;
    let registered = match edge
        .append_sealed(
            tenants::USER_REGISTERED,
            reg.tenant,
            request,
            vec![invite.leaf],
            b,
            Some(Zeroizing::new(name)),
        )
        .await
    {
        Ok(registered) => registered,
        Err(e) => {
            // Nothing of the registration is in the log: its id is free again.
            edge.unclaim_passkey(&reg.tenant, &credential);
            return Err(e);
        }
    };
    let mut c = Map::new();
    c.insert("user".into(), user.clone().into());
    c.insert("credential".into(), credential.clone().into());
    c.insert("type".into(), "passkey".into());
    c.insert("public_key".into(), B64URL.encode(key.to_cose()).into());
    c.insert(
        "attestation_object".into(),
        B64URL.encode(attestation).into(),
    );
    edge.append(
        CREDENTIAL_REGISTERED,
        reg.tenant,
        request,
        vec![registered.leaf_hash],
        c,
    )
    .await?;
    let mut session = edge.new_session(reg.tenant, &user, &credential)?;
    session.request = Some(request.0.to_string());
    Ok((StatusCode::CREATED, axum::Json(session)).into_response())
}

pub(super) fn login_refused(detail: impl Into<String>) -> Problem {
    forbidden("login-refused", "Login refused", detail)
}

/// `POST /v1/auth/login/start {tenant, user, credential?}`: webauthn-rs request options for
/// the user's passkeys, or for an API key a `govern/login/v1` challenge object.
#[utoipa::path(post,
    path = "/v1/auth/login/start",
    tag = "edge",
    request_body = LoginStart,
    responses((status = 200, description = "WebAuthn request options, or an API key's login challenge object", body = Object), (status = 400, description = "Bad body", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 403, description = "Login refused", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 429, description = "Too many logins pending from this address", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 503, description = "Busy", body = crate::problem::Problem, content_type = "application/problem+json")))]
pub(crate) async fn login_start(
    State(edge): State<Arc<Edge>>,
    source: Source,
    body: Bytes,
) -> Result<Response, Problem> {
    let req: LoginStart = parse(&body)?;
    let tenant_id = TenantId(req.tenant);
    let user = req.user.to_string();
    let tenant = edge
        .tenant(&tenant_id)
        .filter(|t| t.users.contains_key(&user))
        .ok_or_else(|| login_refused("no such user in that tenant"))?;
    let id = edge.random_token();
    let (state, out) = match &req.credential {
        Some(cred) => {
            let c = tenant
                .live_credential(cred)
                .filter(|c| c.credential.user == user && c.credential.kind == CredentialType::Key)
                .ok_or_else(|| login_refused("no live API key with that id for that user"))?;
            let mut nonce = [0u8; 16];
            edge.fill(&mut nonce);
            let object = ChallengeObject {
                domain: LOGIN_DOMAIN.into(),
                tenant: tenant_id.0.to_string(),
                user: user.clone(),
                credential: c.credential.id.clone(),
                kind: "login".into(),
                request: id.clone(),
                rp_id: edge.config.rp_id.clone(),
                method: "POST".into(),
                path: "/v1/auth/login/finish".into(),
                body_commitment: String::new(),
                nonce: B64URL.encode(nonce),
                anchor: edge.anchor(),
            };
            let out = json!({"login": id, "challenge": object});
            (LoginState::Key(Box::new(object)), out)
        }
        None => {
            let passkeys: Vec<Passkey> = tenant
                .credentials_of(&user)
                .filter(|c| c.revoked.is_none() && c.credential.kind == CredentialType::Passkey)
                .filter_map(|c| edge.load_passkey(&tenant_id, &c.credential.id))
                .collect();
            if passkeys.is_empty() {
                return Err(login_refused("the user has no live passkey"));
            }
            let (options, state) = edge
                .webauthn
                .start_passkey_authentication(&passkeys)
                .map_err(|e| login_refused(format!("webauthn: {e}")))?;
            (
                LoginState::Passkey(state),
                json!({"login": id, "options": options}),
            )
        }
    };
    // Login needs only public ids: the ceremony is addressed by its random id alone, and
    // bounded per source and in all, never per user, so no one can push out another's.
    let now = edge.now_s();
    let mut vol = edge.volatile.lock();
    let Volatile {
        logins,
        logins_from,
        ..
    } = &mut *vol;
    admit_login(logins, logins_from, source, now)?;
    insert_bounded(
        edge.now_s(),
        logins,
        id.clone(),
        Login {
            tenant: tenant_id,
            user,
            state,
            expires: now + edge.config.ceremony_ttl_s,
        },
        |l| l.expires,
    )?;
    logins_from.entry(source).or_default().push_back(id);
    drop(vol);
    Ok(axum::Json(out).into_response())
}

/// The origin a signature's client data names.
pub(super) fn signed_origin(signature: &UserSignature) -> Option<String> {
    let data = match signature {
        UserSignature::Passkey {
            client_data_json, ..
        } => client_data_json,
        UserSignature::Key { client_data, .. } => client_data,
    };
    let bytes = B64URL.decode(data).ok()?;
    let v: Value = serde_json::from_slice(&bytes).ok()?;
    v.get("origin")?
        .as_str()
        .map(|o| o.trim_end_matches('/').to_string())
}

pub(super) fn check_origin(edge: &Edge, signature: &UserSignature) -> Result<(), Problem> {
    let origin = signed_origin(signature).unwrap_or_default();
    if origin != edge.config.origin_text() {
        return Err(forbidden(
            "origin-refused",
            "Signed from another origin",
            format!(
                "the signature was made for origin {origin:?}, not {:?}",
                edge.config.origin_text()
            ),
        ));
    }
    Ok(())
}

/// `POST /v1/auth/login/finish {login, assertion | signature}` → a session.
#[utoipa::path(post,
    path = "/v1/auth/login/finish",
    tag = "edge",
    request_body = LoginFinish,
    responses((status = 200, description = "A session", body = SessionOut), (status = 400, description = "Bad body", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 403, description = "Login refused", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 503, description = "Busy", body = crate::problem::Problem, content_type = "application/problem+json")))]
pub(crate) async fn login_finish(
    State(edge): State<Arc<Edge>>,
    body: Bytes,
) -> Result<Response, Problem> {
    let req: LoginFinish = parse(&body)?;
    let login = edge
        .volatile
        .lock()
        .logins
        .remove(&req.login)
        .filter(|l| l.expires > edge.now_s())
        .ok_or_else(|| ceremony_unknown("login"))?;
    let tenant = edge
        .tenant(&login.tenant)
        .ok_or_else(|| login_refused("no such tenant"))?;
    let credential = match (login.state, req.assertion, req.signature) {
        (LoginState::Passkey(state), Some(assertion), None) => {
            let result = edge
                .webauthn
                .finish_passkey_authentication(&assertion, &state)
                .map_err(|e| login_refused(format!("webauthn: {e}")))?;
            let id = B64URL.encode(result.cred_id().as_ref() as &[u8]);
            let c = tenant
                .live_credential(&id)
                .filter(|c| c.credential.user == login.user)
                .ok_or_else(|| login_refused("the passkey is not a live credential of the user"))?;
            if let Some(mut passkey) = edge.load_passkey(&login.tenant, &id)
                && passkey.update_credential(&result).is_some()
            {
                edge.save_passkey(&login.tenant, &id, &passkey)?;
            }
            c.credential.id.clone()
        }
        (LoginState::Key(object), None, Some(signature)) => {
            let c = tenant
                .live_credential(&object.credential)
                .ok_or_else(|| login_refused("the key was revoked"))?;
            verify_login(&object, &signature, &c.credential)
                .map_err(|e| login_refused(format!("user signature: {e}")))?;
            check_origin(&edge, &signature)?;
            c.credential.id.clone()
        }
        _ => {
            return Err(bad_body(
                "a passkey login finishes with `assertion`, an API key login with `signature`",
            ));
        }
    };
    let session = edge.new_session(login.tenant, &login.user, &credential)?;
    Ok(axum::Json(session).into_response())
}
