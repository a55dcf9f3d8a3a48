//! The edge's own work: sessions and their bounds, scope keys released to it, sealing and
//! appending in its attested identity's name.

#[allow(clippy::wildcard_imports)]
use super::*;

// ---------------------------------------------------------------------------------------

/// 503 `storage-unavailable`: the passkey store failed.
fn unavailable(e: String) -> Problem {
    Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "storage-unavailable",
        "Storage unavailable",
        e,
    )
}

/// `passkey-id-too-long` (400) for a credential id longer than any store keeps
/// ([`PASSKEY_ID_CHARS_MAX`]: the files' name limit, which the database keeps too, so a
/// passkey moves between them).
fn check_passkey_id(credential: &str) -> Result<(), Problem> {
    if credential.len() > PASSKEY_ID_CHARS_MAX {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "passkey-id-too-long",
            "Credential id too long",
            format!(
                "the credential id is {} base64url characters; this node stores at most {PASSKEY_ID_CHARS_MAX}",
                credential.len()
            ),
        ));
    }
    Ok(())
}

/// Where the edge keeps each passkey's state (webauthn-rs's, with its signature counter),
/// by tenant and credential id: [`PasskeyFiles`] in the data dir for one node; the database
/// when several nodes share one log, so that a passkey registered while one node sequenced
/// logs in at the next.
pub trait PasskeyStore: Send + Sync + std::fmt::Debug + 'static {
    /// The state of `credential` in `tenant`, if stored.
    ///
    /// # Errors
    /// In words, when the store fails.
    fn load(&self, tenant: &TenantId, credential: &str) -> Result<Option<Vec<u8>>, String>;
    /// Store `state` durably unless the credential has one already: whether it was stored.
    ///
    /// # Errors
    /// In words, when the store fails.
    fn claim(&self, tenant: &TenantId, credential: &str, state: &[u8]) -> Result<bool, String>;
    /// Store `state` durably in place of the credential's.
    ///
    /// # Errors
    /// In words, when the store fails.
    fn save(&self, tenant: &TenantId, credential: &str, state: &[u8]) -> Result<(), String>;
    /// Remove the credential's state.
    ///
    /// # Errors
    /// In words, when the store fails.
    fn remove(&self, tenant: &TenantId, credential: &str) -> Result<(), String>;
}

/// Passkeys as files, `<dir>/<tenant>/<credential id>.json`, each written durably
/// (govern_workers::durable): a credential id is another tenant's business, never a key
/// into it.
#[derive(Debug)]
pub struct PasskeyFiles {
    dir: PathBuf,
    /// Held while a file is written (and, for a claim, while its name is checked free):
    /// two registrations cannot both take one id, and two logins of one passkey do not
    /// write its temporary file at once.
    writing: Mutex<()>,
}

impl PasskeyFiles {
    /// The files under `dir` (made if missing).
    ///
    /// # Errors
    /// In words, when `dir` cannot be made.
    pub fn open(dir: PathBuf) -> Result<Self, String> {
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        Ok(Self {
            dir,
            writing: Mutex::new(()),
        })
    }

    /// Every passkey state stored, as (tenant, credential id, state); files that cannot be
    /// read are left out (a node bringing its files into the database).
    #[must_use]
    pub fn stored(&self) -> Vec<(String, String, Vec<u8>)> {
        let mut found = Vec::new();
        let Ok(tenants) = std::fs::read_dir(&self.dir) else {
            return found;
        };
        for tenant in tenants.flatten() {
            let Ok(files) = std::fs::read_dir(tenant.path()) else {
                continue;
            };
            let tenant = tenant.file_name().to_string_lossy().into_owned();
            for file in files.flatten() {
                let name = file.file_name().to_string_lossy().into_owned();
                if let Some(credential) = name.strip_suffix(PASSKEY_FILE_SUFFIX)
                    && let Ok(state) = std::fs::read(file.path())
                {
                    found.push((tenant.clone(), credential.to_string(), state));
                }
            }
        }
        found
    }

    fn path(&self, tenant: &TenantId, credential: &str) -> PathBuf {
        self.dir
            .join(tenant.0.to_string())
            .join(format!("{credential}{PASSKEY_FILE_SUFFIX}"))
    }

    /// Write durably, the tenant's directory made (and its entry synced) first when new.
    /// The caller holds `writing`.
    fn write(&self, path: &std::path::Path, state: &[u8]) -> Result<(), String> {
        if let Some(dir) = path.parent()
            && !dir.is_dir()
        {
            std::fs::create_dir_all(dir)
                .and_then(|()| govern_workers::durable::sync_dir(dir))
                .map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        govern_workers::durable::write(path, state).map_err(|e| e.to_string())
    }
}

impl PasskeyStore for PasskeyFiles {
    fn load(&self, tenant: &TenantId, credential: &str) -> Result<Option<Vec<u8>>, String> {
        match std::fs::read(self.path(tenant, credential)) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }

    fn claim(&self, tenant: &TenantId, credential: &str, state: &[u8]) -> Result<bool, String> {
        let path = self.path(tenant, credential);
        let _one = self.writing.lock();
        if path.exists() {
            return Ok(false);
        }
        self.write(&path, state).map(|()| true)
    }

    fn save(&self, tenant: &TenantId, credential: &str, state: &[u8]) -> Result<(), String> {
        let path = self.path(tenant, credential);
        let _one = self.writing.lock();
        self.write(&path, state)
    }

    fn remove(&self, tenant: &TenantId, credential: &str) -> Result<(), String> {
        let path = self.path(tenant, credential);
        let _one = self.writing.lock();
        std::fs::remove_file(&path)
            .and_then(|()| govern_workers::durable::sync_dir(&path))
            .map_err(|e| format!("{}: {e}", path.display()))
    }
}

impl Edge {
    /// The edge of a node: `service` is its attested identity; it obtains its scope keys
    /// with release requests to `release` (the key service, in process or not).
    ///
    /// # Errors
    /// When webauthn-rs refuses the relying party.
    pub fn new(
        config: EdgeConfig,
        log: Arc<dyn Appender>,
        policy: Arc<dyn StateView>,
        service: Arc<LocalService>,
        release: Arc<dyn KeyRelease>,
        operator_token: String,
        passkeys_dir: PathBuf,
    ) -> Result<Self, String> {
        let webauthn = WebauthnBuilder::new(&config.rp_id, &config.origin)
            .map_err(|e| format!("webauthn relying party: {e}"))?
            .rp_name("govern")
            .build()
            .map_err(|e| format!("webauthn relying party: {e}"))?;
        let passkeys = PasskeyFiles::open(passkeys_dir)?;
        Ok(Self {
            config,
            webauthn,
            log,
            policy,
            service,
            release,
            clock: Arc::new(SystemClock),
            entropy: Arc::new(OsEntropy),
            operator_token,
            passkeys: Arc::new(passkeys),
            volatile: Mutex::new(Volatile::default()),
            scope_keys: Mutex::new(HashMap::new()),
            releasing: tokio::sync::Mutex::new(()),
        })
    }

    /// Take time and randomness from `clock` and `entropy` (the node passes the log's clock
    /// and the operating system's randomness, which [`Edge::new`] starts with).
    #[must_use]
    pub fn with_sources(mut self, clock: Arc<dyn Clock>, entropy: Arc<dyn Entropy>) -> Self {
        self.clock = clock;
        self.entropy = entropy;
        self
    }

    /// Keep the passkeys' state in `store` instead of the data dir's files (several nodes
    /// over one database share it there).
    #[must_use]
    pub fn with_passkeys(mut self, store: Arc<dyn PasskeyStore>) -> Self {
        self.passkeys = store;
        self
    }

    /// A fresh request id from the edge's clock and entropy.
    pub(crate) fn request_id(&self) -> RequestId {
        RequestId::v7(self.clock.now(), &*self.entropy)
    }

    pub(crate) fn now_s(&self) -> i64 {
        self.clock.now().unix_ms() / 1000
    }

    pub(crate) fn fill(&self, buf: &mut [u8]) {
        self.entropy.fill(buf);
    }

    pub(crate) fn random_token(&self) -> String {
        let mut b = [0u8; 32];
        self.fill(&mut b);
        B64URL.encode(b)
    }

    /// The relying party and origin.
    #[must_use]
    pub fn config(&self) -> &EdgeConfig {
        &self.config
    }

    /// A tenant as of the last durable batch, shared: no copy, and never the sequencer's
    /// lock.
    pub(crate) fn tenant(&self, id: &TenantId) -> Option<Arc<Tenant>> {
        self.policy.committed().tenant(id)
    }

    /// Drop the scope keys held for `tenant` (after a rotation or a shredding).
    pub(crate) fn forget_scope_keys(&self, tenant: &TenantId) {
        self.scope_keys.lock().remove(tenant);
    }

    /// Whether `headers` carry the operator's token (compared by digest, so the time taken
    /// says nothing about it).
    pub(crate) fn is_operator(&self, headers: &HeaderMap) -> bool {
        bearer(headers).is_some_and(|t| {
            Sha256::digest(t.as_bytes()) == Sha256::digest(self.operator_token.as_bytes())
        })
    }

    /// The tenant's scope keys as released to the edge: from the cache while the tenant's
    /// current version is among them, else released anew (a `keys.audit` each time).
    ///
    /// # Errors
    /// 410 for a shredded tenant, 403 `scope-denied` when the edge's manifest entry lacks a
    /// scope, 503 when the key service is unavailable.
    pub(crate) async fn scope_keys(&self, tenant: &TenantId) -> Result<Arc<ScopeKeys>, Problem> {
        let (current, shredded) = self
            .with_tenant(tenant, |t| (t.keys.current(), t.keys.shredded.is_some()))
            .ok_or_else(|| not_found("tenant", ""))?;
        if shredded {
            self.scope_keys.lock().remove(tenant);
            return Err(Problem::from(KeyError::Shredded(tenant.0.to_string())));
        }
        let cached = || {
            self.scope_keys
                .lock()
                .get(tenant)
                .filter(|k| k.versions().any(|(_, v)| *v == current))
                .cloned()
        };
        if let Some(keys) = cached() {
            return Ok(keys);
        }
        let _one = self.releasing.lock().await;
        if let Some(keys) = cached() {
            return Ok(keys);
        }
        let scopes: Vec<String> = self
            .policy
            .committed()
            .manifest()
            .and_then(|m| {
                m.manifest
                    .role(self.service.identity.keys().role())
                    .map(|r| r.scopes.clone())
            })
            .unwrap_or_default();
        if scopes.is_empty() {
            return Err(Problem::from(KeyError::ScopeDenied {
                role: self.service.identity.keys().role().to_string(),
                scope: "any".into(),
            }));
        }
        let scopes: Vec<&str> = scopes.iter().map(String::as_str).collect();
        let request =
            crate::keys::request_release(&self.service, tenant, &scopes, self.clock.now())?;
        let release = self.release.release(&request).await?;
        let keys = Arc::new(
            release
                .open(&request, self.service.identity.keys().x25519())
                .map_err(KeyError::from)?,
        );
        self.scope_keys.lock().insert(*tenant, Arc::clone(&keys));
        Ok(keys)
    }

    /// Seal `plaintext` into `event` for `kind`: its scope, the newest version released.
    pub(crate) async fn seal_for(
        &self,
        event: &mut govern_core::event::Event,
        sealed: &govern_core::seal::SealedKind,
        plaintext: &[u8],
    ) -> Result<(), Problem> {
        let keys = self.scope_keys(&event.tenant).await?;
        // The newest version released: the current one, or one just before a rotation that
        // landed meanwhile, which the log still takes (old versions stay valid).
        let (version, key) = keys
            .versions()
            .filter(|(s, _)| s == sealed.scope)
            .map(|(_, v)| *v)
            .max()
            .and_then(|v| keys.get(sealed.scope, v).map(|k| (v, k)))
            .ok_or_else(|| {
                Problem::from(KeyError::ScopeDenied {
                    role: self.service.identity.keys().role().to_string(),
                    scope: sealed.scope.to_string(),
                })
            })?;
        govern_core::seal::seal(event, key, sealed.scope, version, plaintext, &*self.entropy)
            .map_err(|e| bad_body(e.to_string()))
    }

    /// Read a tenant in place (briefly: the log's policy waits meanwhile).
    pub(crate) fn with_tenant<R>(
        &self,
        id: &TenantId,
        read: impl FnOnce(&Tenant) -> R,
    ) -> Option<R> {
        self.policy.committed().tenant(id).map(|t| read(&t))
    }

    pub(crate) fn session(&self, headers: &HeaderMap) -> Result<Session, Problem> {
        let token = bearer(headers)
            .ok_or_else(|| unauthenticated("send Authorization: Bearer <session>"))?;
        let session = self
            .volatile
            .lock()
            .sessions
            .get(token)
            .filter(|s| s.expires > self.now_s())
            .cloned()
            .ok_or_else(|| unauthenticated("the session is unknown or expired; sign in again"))?;
        // A revoked credential's sessions end with it.
        let live = self.with_tenant(&session.tenant, |t| {
            t.users.contains_key(&session.user) && t.live_credential(&session.credential).is_some()
        });
        if live != Some(true) {
            return Err(unauthenticated(
                "the session's credential was revoked; sign in again",
            ));
        }
        Ok(session)
    }

    pub(crate) fn new_session(
        &self,
        tenant: TenantId,
        user: &str,
        credential: &str,
    ) -> Result<SessionOut, Problem> {
        let token = self.random_token();
        let expires = self.now_s() + self.config.session_ttl_s;
        let mut vol = self.volatile.lock();
        let Volatile {
            sessions,
            sessions_of,
            pending,
            pending_of,
            tokens,
            tokens_of,
            ..
        } = &mut *vol;
        insert_bounded(
            self.now_s(),
            sessions,
            token.clone(),
            Session {
                tenant,
                user: user.into(),
                credential: credential.into(),
                expires,
            },
            |s| s.expires,
        )?;
        // Only the user makes their sessions: beyond the cap their oldest ends, with the
        // actions and tokens it started.
        let owner = format!("{}/{user}", tenant.0);
        for ended in cap_per_owner(sessions, sessions_of, &owner, &token, SESSIONS_PER_USER_MAX) {
            drop_owned(pending, pending_of, &ended);
            drop_owned(tokens, tokens_of, &ended);
        }
        drop(vol);
        Ok(SessionOut {
            session: token,
            expires,
            tenant: tenant.0.to_string(),
            user: user.into(),
            credential: credential.into(),
            request: None,
        })
    }

    pub(crate) async fn append(
        &self,
        kind: &str,
        tenant: TenantId,
        request: RequestId,
        parents: Vec<LeafHash>,
        body: Map<String, Value>,
    ) -> Result<Appended, Problem> {
        self.append_sealed(kind, tenant, request, parents, body, None)
            .await
    }

    /// Append an event of the edge's identity, its `sealed` payload made from `plaintext`
    /// when the kind is sealed.
    pub(crate) async fn append_sealed(
        &self,
        kind: &str,
        tenant: TenantId,
        request: RequestId,
        parents: Vec<LeafHash>,
        body: Map<String, Value>,
        plaintext: Option<Zeroizing<Vec<u8>>>,
    ) -> Result<Appended, Problem> {
        let not_attested = |e: String| {
            Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "edge-not-attested",
                "The edge has no live identity",
                e,
            )
            .retry_after(10)
        };
        let sealed = govern_core::seal::sealed_kind(kind);
        let kind = Kind::new(kind).map_err(|e| bad_body(e.to_string()))?;
        let identity = &self.service.identity;
        let attestation = identity
            .current()
            .ok_or_else(|| not_attested("not attested yet".into()))?;
        let mut event = govern_core::event::Event::new(
            kind,
            tenant,
            request,
            identity.keys().producer(),
            self.clock.now(),
            body,
        );
        event.parents = parents;
        event.attestation = Some(attestation);
        if let (Some(sealed), Some(plaintext)) = (sealed, plaintext) {
            self.seal_for(&mut event, sealed, &plaintext).await?;
        }
        let event = event
            .sign(identity.keys().signing_key())
            .map_err(|e| not_attested(e.to_string()))?;
        self.log.append(event).await.map_err(problem_of_append)
    }

    /// Write a passkey's state (its counter after a login).
    pub(crate) fn save_passkey(
        &self,
        tenant: &TenantId,
        credential: &str,
        passkey: &Passkey,
    ) -> Result<(), Problem> {
        check_passkey_id(credential)?;
        let bytes = serde_json::to_vec(passkey).map_err(|e| unavailable(e.to_string()))?;
        self.passkeys
            .save(tenant, credential, &bytes)
            .map_err(unavailable)
    }

    /// Take `credential`'s id in `tenant` for a new passkey: refused when the log or the
    /// passkey store holds it already, else its state is stored (durably) before anything
    /// of the registration is appended, so a credential the log shows always has its state.
    pub(crate) fn claim_passkey(
        &self,
        tenant: &Tenant,
        tenant_id: &TenantId,
        credential: &str,
        passkey: &Passkey,
    ) -> Result<(), Problem> {
        check_passkey_id(credential)?;
        let refused = || {
            forbidden(
                "registration-refused",
                "Passkey registration refused",
                "a credential with that id is registered in this tenant already",
            )
        };
        if tenant.credentials.contains_key(credential) {
            return Err(refused());
        }
        let bytes = serde_json::to_vec(passkey).map_err(|e| unavailable(e.to_string()))?;
        match self.passkeys.claim(tenant_id, credential, &bytes) {
            Ok(true) => Ok(()),
            Ok(false) => Err(refused()),
            Err(e) => Err(unavailable(e)),
        }
    }

    /// Remove the passkey state a registration stored when nothing of it reached the log.
    pub(crate) fn unclaim_passkey(&self, tenant: &TenantId, credential: &str) {
        if let Err(e) = self.passkeys.remove(tenant, credential) {
            tracing::warn!(%credential, error = %e, "cannot remove an unregistered passkey's state");
        }
    }

    pub(crate) fn load_passkey(&self, tenant: &TenantId, credential: &str) -> Option<Passkey> {
        check_passkey_id(credential).ok()?;
        match self.passkeys.load(tenant, credential) {
            Ok(bytes) => serde_json::from_slice(&bytes?).ok(),
            Err(e) => {
                tracing::warn!(%credential, error = %e, "cannot read a passkey's state");
                None
            }
        }
    }

    pub(crate) fn registration_url(&self, tenant: &TenantId, invite: &str) -> String {
        format!(
            "{}/#register?tenant={}&invite={invite}",
            self.config.origin_text(),
            tenant.0
        )
    }

    pub(crate) fn anchor(&self) -> Anchor {
        let latest = self.log.latest();
        Anchor {
            size: latest.size.0,
            root: hex::encode(latest.root.hash().as_bytes()),
        }
    }
}
