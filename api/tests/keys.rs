//! Tenant data isolation by cryptography, end to end on a booted node: what the operator
//! sees on disk and through the store, scoped reads, releases only to live identities for
//! the scopes their manifest entry lists, ciphertexts that open only where they were sealed,
//! rotation, and shredding.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use axum::http::StatusCode;
use govern_api::keys::{Release, ReleaseRequest};
use govern_core::event::{Event, Kind, RequestId, Role, SignedEvent, TenantId, Timestamp};
use govern_core::manifest::{Measurement, SignedManifest};
use govern_core::seal::{SealError, open, open_action};
use govern_store::{Clock, Storage as _};
use govern_workers::identity::ServiceKeys;
use rand_core::RngCore as _;
use serde_json::{Value, json};
use support::users::*;
use support::{Booted, assert_problem, boot, dev_signer, publish};

/// A random marker: 32 lower-case hex characters no one would write by chance.
fn marker() -> String {
    let mut b = [0u8; 16];
    rand_core::OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

fn operator(node: &Booted) -> String {
    format!("Bearer {}", node.dir.operator_token().unwrap())
}

fn tenant_id(text: &str) -> TenantId {
    TenantId(uuid::Uuid::parse_str(text).unwrap())
}

async fn read(node: &Booted, user: &User, tenant: &str, scope: &str) -> Reply {
    node.call(
        "GET",
        &format!("/v1/tenants/{tenant}/payloads/{scope}"),
        &[("authorization", &user.bearer())],
        None,
    )
    .await
}

async fn key_status(node: &Booted, tenant: &str) -> Value {
    let r = node
        .call(
            "GET",
            &format!("/v1/tenants/{tenant}/keys"),
            &[("authorization", &operator(node))],
            None,
        )
        .await;
    assert_eq!(r.0, StatusCode::OK, "{}", r.1);
    r.1
}

async fn operator_post(node: &Booted, path: &str) -> Reply {
    node.call("POST", path, &[("authorization", &operator(node))], None)
        .await
}

/// A member invited by `admin` under `name`, registered with a passkey.
async fn member(node: &Booted, admin: &mut User, name: &str) -> User {
    let r = act(
        node,
        admin,
        "user.invited",
        "/v1/users",
        &json!({"role": "member"}),
    )
    .await;
    assert_eq!(r.0, StatusCode::CREATED, "{}", r.1);
    let tenant = admin.tenant.clone();
    register_named(node, &tenant, r.1["invite"].as_str().unwrap(), name).await
}

fn transfer_to(to: &str) -> Value {
    let mut t = transfer();
    t["to"] = to.into();
    t
}

/// Every file under `dir`, recursively.
fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, out);
        } else {
            out.push(path);
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Every value (and key) the store holds, read back through its own API, so that
/// compression on disk cannot hide a byte from the scan.
fn store_values(node: &Booted) -> Vec<Vec<u8>> {
    let store = &node.storage;
    let end = vec![0xff; 64];
    let mut start = Vec::new();
    let mut out = Vec::new();
    loop {
        let page = store.scan(&start, &end, 10_000).unwrap();
        let Some((last, _)) = page.last() else { break };
        start = last.clone();
        start.push(0);
        for (k, v) in page {
            out.push(k);
            out.push(v);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_sees_only_ciphertext() {
    let node = boot().await;
    // One marker in every sealed kind, and one in the tenant's name, which is clear (the
    // operator gave it): the scan must find that one, so it can find the others.
    let clear_marker = marker();
    let (tenant, invite) = {
        let r = node
            .call(
                "POST",
                "/v1/tenants",
                &[("authorization", &operator(&node))],
                Some(serde_json::to_vec(&json!({"name": clear_marker, "admin": "Ada"})).unwrap()),
            )
            .await;
        assert_eq!(r.0, StatusCode::CREATED, "{}", r.1);
        (
            r.1["tenant"].as_str().unwrap().to_string(),
            r.1["invite"].as_str().unwrap().to_string(),
        )
    };
    let mut ada = register(&node, &tenant, &invite).await;
    let [registered, wallet_name, policy_note, comment, address] =
        [marker(), marker(), marker(), marker(), marker()];
    let to = format!("0x{}", &address[..32]) + &marker()[..8];
    let bob = member(&node, &mut ada, &registered).await;
    let r = act(
        &node,
        &mut ada,
        "wallet.requested",
        "/v1/wallets",
        &json!({"name": wallet_name}),
    )
    .await;
    assert_eq!(r.0, StatusCode::CREATED, "{}", r.1);
    let wallet = r.1["request"].as_str().unwrap().to_string();
    let path = format!("/v1/wallets/{wallet}/transfers");
    let r = act(
        &node,
        &mut ada,
        "transfer.requested",
        &path,
        &transfer_to(&to),
    )
    .await;
    assert_eq!(r.0, StatusCode::CREATED, "{}", r.1);
    let request = r.1["request"].as_str().unwrap().to_string();
    let r = act(
        &node,
        &mut ada,
        "policy.changed",
        "/v1/policies",
        &json!({"policy": {"id": policy_note, "activity": "transfers",
            "rule": {"kind": "always"}, "action": {"kind": "none"}}}),
    )
    .await;
    assert_eq!(r.0, StatusCode::CREATED, "{}", r.1);
    let approvals = format!("/v1/requests/{request}/approvals/approve");
    let r = act(
        &node,
        &mut ada,
        "approval.decided",
        &approvals,
        &json!({"comment": comment}),
    )
    .await;
    assert_eq!(r.0, StatusCode::CREATED, "{}", r.1);
    let secrets = [
        ("registered name", registered.clone()),
        ("wallet name", wallet_name.clone()),
        ("policy", policy_note.clone()),
        ("approval comment", comment.clone()),
        ("transfer address", to.clone()),
    ];

    // The tenant's admin reads every one of them back, opened.
    let mut seen = String::new();
    for scope in ["users", "wallets", "transfers", "policies", "approvals"] {
        let r = read(&node, &ada, &tenant, scope).await;
        assert_eq!(r.0, StatusCode::OK, "{scope}: {}", r.1);
        seen.push_str(&r.1.to_string());
    }
    for (what, m) in &secrets {
        assert!(
            seen.contains(m.as_str()),
            "the admin cannot read the {what}"
        );
    }
    drop(bob);

    // The operator's view: every file in the data dir (RocksDB's tables, WAL, LOG and
    // MANIFEST, the passkeys, the key service's store) and every value in the store.
    let mut paths = Vec::new();
    files(node.tmp.path(), &mut paths);
    assert!(
        paths
            .iter()
            .any(|p| p.to_string_lossy().contains("/keys/seeds/"))
    );
    let token = node.dir.operator_token().unwrap();
    let mut token_found = false;
    for path in &paths {
        let bytes = std::fs::read(path).unwrap();
        token_found |= contains(&bytes, token.as_bytes());
        for (what, m) in &secrets {
            assert!(
                !contains(&bytes, m.as_bytes()),
                "the {what} is in clear in {}",
                path.display()
            );
        }
    }
    assert!(token_found, "the file scan does not read the files");
    let values = store_values(&node);
    assert!(values.len() > 100, "{} values", values.len());
    assert!(
        values.iter().any(|v| contains(v, clear_marker.as_bytes())),
        "the store scan does not find the clear tenant name"
    );
    for v in &values {
        for (what, m) in &secrets {
            assert!(
                !contains(v, m.as_bytes()),
                "the {what} is in clear in the store"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_are_scoped_by_tenant_and_scope_and_audited() {
    let node = boot().await;
    let mut ada = admin(&node).await;
    let tenant = ada.tenant.clone();
    let wallet = new_wallet(&node, &mut ada).await;
    let path = format!("/v1/wallets/{wallet}/transfers");
    let r = act(&node, &mut ada, "transfer.requested", &path, &transfer()).await;
    assert_eq!(r.0, StatusCode::CREATED, "{}", r.1);
    let bob = member(&node, &mut ada, "Bob").await;
    let eve = admin(&node).await;

    // Another tenant's data: an empty answer, not an error, the same as a made-up tenant.
    let theirs = read(&node, &eve, &tenant, "transfers").await;
    assert_eq!(theirs.0, StatusCode::OK, "{}", theirs.1);
    assert_eq!(theirs.1["items"], json!([]));
    let nobody = read(&node, &eve, &uuid::Uuid::now_v7().to_string(), "transfers").await;
    assert_eq!(nobody.1["items"], json!([]));
    // Their own tenant has no transfers.
    let own = read(&node, &eve, &eve.tenant, "transfers").await;
    assert_eq!(own.1["items"], json!([]));

    // A member reads transfers and wallets but not the tenant's directory.
    let r = read(&node, &bob, &tenant, "transfers").await;
    assert_eq!(r.0, StatusCode::OK, "{}", r.1);
    assert_eq!(r.1["items"][0]["payload"], transfer());
    assert_eq!(r.1["items"][0]["version"], 1);
    let denied = read(&node, &bob, &tenant, "users").await;
    assert_problem(&(denied.0, denied.1.clone()), 403, "scope-denied");
    assert!(
        denied.1["detail"].as_str().unwrap().contains("scope users"),
        "{}",
        denied.1
    );
    let r = read(&node, &ada, &tenant, "users").await;
    assert_eq!(r.0, StatusCode::OK, "{}", r.1);
    // Ada's registration and Bob's: each name sealed.
    let names: Vec<&Value> = r.1["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| &i["payload"]["name"])
        .collect();
    assert_eq!(names, [&json!("User"), &json!("Bob")]);
    assert_eq!(r.1["items"][1]["kind"], "user.registered");
    // No such scope, no session, bad paging.
    let r = read(&node, &ada, &tenant, "secrets").await;
    assert_problem(&(r.0, r.1), 400, "invalid-body");
    let r = node
        .call(
            "GET",
            &format!("/v1/tenants/{tenant}/payloads/wallets"),
            &[],
            None,
        )
        .await;
    assert_problem(&(r.0, r.1), 401, "unauthenticated");
    let r = node
        .call(
            "GET",
            &format!("/v1/tenants/{tenant}/payloads/wallets?limit=0"),
            &[("authorization", &ada.bearer())],
            None,
        )
        .await;
    assert_problem(&(r.0, r.1), 400, "invalid-body");

    // Every opening is a reads.audit of the edge; every release a keys.audit.
    let status = key_status(&node, &tenant).await;
    assert_eq!(status["status"], "active");
    assert_eq!(status["current_version"], 1);
    let decrypted = &status["decryptions"]["edge"];
    // The transfer Bob read, and the two names Ada read.
    assert_eq!(decrypted["count"], 3, "{status}");
    assert_eq!(decrypted["scopes"]["transfers"], 1, "{status}");
    assert_eq!(decrypted["scopes"]["users"], 2, "{status}");
    assert!(
        status["releases"]["edge"]["count"].as_u64().unwrap() >= 5,
        "{status}"
    );
    let last = node.entry(node.size() - 1);
    assert_eq!(last.event().kind.as_str(), "reads.audit");
    assert_eq!(last.event().body["scope"], "users");
    // Eve may not read Ada's tenant's key status; Bob is not an admin.
    let r = node
        .call(
            "GET",
            &format!("/v1/tenants/{tenant}/keys"),
            &[("authorization", &eve.bearer())],
            None,
        )
        .await;
    assert_problem(&(r.0, r.1), 404, "not-found");
    let r = node
        .call(
            "GET",
            &format!("/v1/tenants/{tenant}/keys"),
            &[("authorization", &bob.bearer())],
            None,
        )
        .await;
    assert_problem(&(r.0, r.1), 403, "user-not-authorized");

    // The log refuses a reads.audit naming an entry that is not a sealed payload of the
    // tenant in that scope.
    let mut body = serde_json::Map::new();
    body.insert("scope".into(), "transfers".into());
    body.insert("entries".into(), json!([0]));
    let forged = node
        .services
        .edge
        .identity
        .sign(
            Kind::new("reads.audit").unwrap(),
            tenant_id(&tenant),
            RequestId::new_v7(),
            vec![node.services.edge.identity.current().unwrap()],
            body,
            govern_core::event::Timestamp::now(),
        )
        .unwrap();
    assert_problem(&node.post(&forged).await, 400, "user-action-malformed");
}

/// A `policy` service attested in this node, and its identity's leaf.
async fn policy_service(node: &Booted) -> (ServiceKeys, SignedEvent) {
    let (keys, attested) = node.attested("policy");
    let ok = node.post(&attested).await;
    assert_eq!(ok.0.as_u16(), 200, "{}", ok.1);
    (keys, attested)
}

async fn release(node: &Booted, req: &ReleaseRequest) -> Reply {
    node.call(
        "POST",
        "/v1/keys/release",
        &[],
        Some(serde_json::to_vec(req).unwrap()),
    )
    .await
}

/// A release request of the service holding `keys`, made now.
fn ask(
    keys: &ServiceKeys,
    identity: govern_core::ids::LeafHash,
    tenant: &TenantId,
    scopes: &[&str],
) -> ReleaseRequest {
    govern_api::keys::request_release_by(keys, identity, tenant, scopes, Timestamp::now()).unwrap()
}

/// A copy of `event` moved into another request of `tenant` (its signature aside: the AAD
/// leaves it out, so only the envelope differs).
fn moved(event: &Event, tenant: TenantId) -> Event {
    let mut e = event.clone();
    e.tenant = tenant;
    e.request = RequestId::new_v7();
    e
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_released_only_to_live_identities_for_their_scopes() {
    let node = boot().await;
    let mut ada = admin(&node).await;
    let tenant = tenant_id(&ada.tenant);
    let wallet = new_wallet(&node, &mut ada).await;
    let path = format!("/v1/wallets/{wallet}/transfers");
    let r = act(&node, &mut ada, "transfer.requested", &path, &transfer()).await;
    assert_eq!(r.0, StatusCode::CREATED, "{}", r.1);
    let sealed = node.entry(r.1["index"].as_u64().unwrap());

    // The policy engine asks for what its manifest entry lists, and opens the transfer
    // with it: the released key, checked against the user's commitment.
    let (keys, attested) = policy_service(&node).await;
    let req = ask(
        &keys,
        attested.leaf_hash(),
        &tenant,
        &["transfers", "policies"],
    );
    let r = release(&node, &req).await;
    assert_eq!(r.0, StatusCode::OK, "{}", r.1);
    let out: Release = serde_json::from_value(r.1.clone()).unwrap();
    // The same request again is a replay: refused, and no second keys.audit.
    let size = node.size();
    let replay = release(&node, &req).await;
    assert_problem(&(replay.0, replay.1), 401, "release-unauthenticated");
    assert_eq!(node.size(), size);
    let audit = node.entry(out.audit);
    assert_eq!(audit.event().kind.as_str(), "keys.audit");
    assert_eq!(audit.event().body["role"], "policy");
    assert_eq!(audit.event().parents, vec![attested.leaf_hash()]);
    // Anyone who read the audit posts it again: the log answers its original receipt and
    // the tenant's count of releases does not move.
    let counted =
        key_status(&node, &tenant.0.to_string()).await["releases"]["policy"]["count"].clone();
    assert!(counted.as_u64().is_some_and(|c| c >= 1), "{counted}");
    let again = node.post(&audit).await;
    assert_eq!(again.0, StatusCode::OK, "{}", again.1);
    assert_eq!(again.1["index"], out.audit);
    assert_eq!(node.size(), size);
    assert_eq!(
        key_status(&node, &tenant.0.to_string()).await["releases"]["policy"]["count"],
        counted
    );
    let scope_keys = out.open(&req, keys.x25519()).unwrap();
    let key = scope_keys.get("transfers", 1).unwrap();
    assert_eq!(
        open_action(sealed.event(), key).unwrap(),
        *transfer().as_object().unwrap()
    );
    // Not for another request (the HPKE info binds it), nor with another X25519 key.
    let other = ask(&keys, attested.leaf_hash(), &tenant, &["transfers"]);
    assert!(out.open(&other, keys.x25519()).is_err());
    let stranger = ServiceKeys::generate(Role::new("policy").unwrap()).unwrap();
    assert!(out.open(&req, stranger.x25519()).is_err());

    // The ciphertext opens only in its own event: not moved into another request or
    // tenant (re-signed, so only the AAD differs), nor with a wrong key.
    let other_tenant = tenant_id(&admin(&node).await.tenant);
    for target in [tenant, other_tenant] {
        let e = moved(sealed.event(), target);
        assert_eq!(open(&e, key), Err(SealError::Open));
    }
    assert_eq!(
        open(sealed.event(), scope_keys.get("policies", 1).unwrap()),
        Err(SealError::Open)
    );

    // A scope the manifest entry does not list: refused, naming it; nothing released.
    let size = node.size();
    let req = ask(
        &keys,
        attested.leaf_hash(),
        &tenant,
        &["transfers", "users"],
    );
    let r = release(&node, &req).await;
    assert_problem(&(r.0, r.1.clone()), 403, "scope-denied");
    assert!(
        r.1["detail"].as_str().unwrap().contains("scope users"),
        "{}",
        r.1
    );
    assert_eq!(node.size(), size);
    // Signed by another key, or too old a request.
    let mut forged = ask(&stranger, attested.leaf_hash(), &tenant, &["transfers"]);
    forged.role = "policy".into();
    let r = release(&node, &forged).await;
    assert_problem(&(r.0, r.1), 401, "release-unauthenticated");
    let old = Timestamp::from_unix_ms(Timestamp::now().unix_ms() - 120_000).unwrap();
    let req = govern_api::keys::request_release_by(
        &keys,
        attested.leaf_hash(),
        &tenant,
        &["transfers"],
        old,
    )
    .unwrap();
    let r = release(&node, &req).await;
    assert_problem(&(r.0, r.1), 401, "release-unauthenticated");
    // A tenant that does not exist; malformed JSON.
    let req = ask(
        &keys,
        attested.leaf_hash(),
        &TenantId(uuid::Uuid::now_v7()),
        &["transfers"],
    );
    let r = release(&node, &req).await;
    assert_problem(&(r.0, r.1), 404, "tenant-unknown");
    let r = node
        .call(
            "POST",
            "/v1/keys/release",
            &[],
            Some(b"{\"role\":".to_vec()),
        )
        .await;
    assert_problem(&(r.0, r.1), 400, "invalid-body");

    // A replaced identity: a new attestation of the role makes the old one stale.
    let (keys2, attested2) = policy_service(&node).await;
    let req = ask(&keys, attested.leaf_hash(), &tenant, &["transfers"]);
    let r = release(&node, &req).await;
    assert_problem(&(r.0, r.1), 403, "attestation-stale");

    // A quarantined one: a manifest that no longer pins the policy's measurement.
    let mut next = node.pinned.signed.manifest.clone();
    next.serial += 1;
    next.roles
        .get_mut(&Role::new("policy").unwrap())
        .unwrap()
        .measurements = vec![Measurement {
        pcr0: "11".repeat(48),
        pcr1: None,
        pcr2: None,
    }];
    let mut signed = SignedManifest::new(next);
    signed.sign(dev_signer(&node, 1).signing_key()).unwrap();
    signed.sign(dev_signer(&node, 2).signing_key()).unwrap();
    let ok = node
        .post(&publish(&node, &signed, &node.dir.log_signing_key()))
        .await;
    assert_eq!(ok.0.as_u16(), 200, "{}", ok.1);
    let req = ask(&keys2, attested2.leaf_hash(), &tenant, &["transfers"]);
    let r = release(&node, &req).await;
    assert_problem(&(r.0, r.1), 403, "identity-quarantined");
}

/// A clock the test moves.
#[derive(Debug, Default)]
struct Shifted(AtomicI64);

impl Clock for Shifted {
    fn now(&self) -> Timestamp {
        Timestamp::from_unix_ms(Timestamp::now().unix_ms() + self.0.load(Ordering::SeqCst)).unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_identity_gets_no_keys() {
    let clock = Arc::new(Shifted::default());
    let node = support::boot_clocked(|c| c, |e| e, Arc::clone(&clock) as Arc<dyn Clock>).await;
    let ada = admin(&node).await;
    let tenant = tenant_id(&ada.tenant);
    let (keys, attested) = policy_service(&node).await;
    let max_age_ms =
        i64::try_from(node.pinned.signed.manifest.roles[&Role::new("policy").unwrap()].max_age_s)
            .unwrap()
            * 1000;
    let ask = |at: Timestamp| {
        govern_api::keys::request_release_by(
            &keys,
            attested.leaf_hash(),
            &tenant,
            &["transfers"],
            at,
        )
        .unwrap()
    };
    // Past its max_age_s by the log's clock: refused before anything is released.
    clock.0.store(max_age_ms + 1_000, Ordering::SeqCst);
    let size = node.size();
    let r = release(&node, &ask(clock.now())).await;
    assert_problem(&(r.0, r.1), 403, "identity-expired");
    assert_eq!(node.size(), size);
    // The same request a little earlier by that clock would have had its keys (the check
    // is the expiry, not the request).
    clock.0.store(0, Ordering::SeqCst);
    let r = release(&node, &ask(clock.now())).await;
    assert_eq!(r.0, StatusCode::OK, "{}", r.1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_keeps_old_data_readable_and_shredding_ends_it_for_ever() {
    let node = boot().await;
    let mut ada = admin(&node).await;
    let tenant = ada.tenant.clone();
    let before = new_wallet(&node, &mut ada).await;

    // Rotate: version 2, and new payloads seal under it; the old one still opens.
    let r = operator_post(&node, &format!("/v1/tenants/{tenant}/keys/rotate")).await;
    assert_eq!(r.0, StatusCode::OK, "{}", r.1);
    assert_eq!(r.1["version"], 2);
    let rotated = node.entry(r.1["index"].as_u64().unwrap());
    assert_eq!(rotated.event().kind.as_str(), "keys.rotated");
    let after = new_wallet(&node, &mut ada).await;
    let r = read(&node, &ada, &tenant, "wallets").await;
    assert_eq!(r.0, StatusCode::OK, "{}", r.1);
    let items = r.1["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["request"], before);
    assert_eq!(items[0]["version"], 1);
    assert_eq!(items[1]["request"], after);
    assert_eq!(items[1]["version"], 2);
    assert_eq!(items[1]["payload"]["name"], "treasury");
    let status = key_status(&node, &tenant).await;
    assert_eq!(status["current_version"], 2);
    assert_eq!(status["rotated"].as_array().unwrap().len(), 1);
    // Only the operator rotates; the log takes only the next version.
    let r = node
        .call(
            "POST",
            &format!("/v1/tenants/{tenant}/keys/rotate"),
            &[("authorization", &ada.bearer())],
            None,
        )
        .await;
    assert_problem(&(r.0, r.1), 401, "operator-unauthorized");
    let mut body = serde_json::Map::new();
    body.insert("version".into(), 7.into());
    let skip = node
        .services
        .keys
        .service
        .identity
        .sign(
            Kind::new("keys.rotated").unwrap(),
            tenant_id(&tenant),
            RequestId::new_v7(),
            vec![rotated.leaf_hash()],
            body,
            govern_core::event::Timestamp::now(),
        )
        .unwrap();
    assert_problem(&node.post(&skip).await, 400, "user-action-malformed");

    // Shred: the log records it, the seeds are gone, and nothing of the tenant opens or
    // is accepted any more.
    let wallet_entry = node.entry(items[1]["index"].as_u64().unwrap());
    assert!(node.services.keys.has_seeds(&tenant_id(&tenant)));
    let seeds_path = node
        .dir
        .keys_path()
        .join("seeds")
        .join(format!("{tenant}.json"));
    let seeds_bytes = std::fs::read(&seeds_path).unwrap();
    let r = operator_post(&node, &format!("/v1/tenants/{tenant}/keys/shred")).await;
    assert_eq!(r.0, StatusCode::OK, "{}", r.1);
    assert_eq!(
        node.entry(r.1["index"].as_u64().unwrap())
            .event()
            .kind
            .as_str(),
        "keys.shredded"
    );
    assert!(!node.services.keys.has_seeds(&tenant_id(&tenant)));
    let r = read(&node, &ada, &tenant, "wallets").await;
    assert_problem(&(r.0, r.1), 410, "tenant-shredded");
    let r = act(
        &node,
        &mut ada,
        "wallet.requested",
        "/v1/wallets",
        &json!({"name": "more"}),
    )
    .await;
    assert_eq!(r.0.as_u16(), 410, "{}", r.1);
    let r = operator_post(&node, &format!("/v1/tenants/{tenant}/keys/shred")).await;
    assert_problem(&(r.0, r.1), 410, "tenant-shredded");
    let r = operator_post(&node, &format!("/v1/tenants/{tenant}/keys/rotate")).await;
    assert_problem(&(r.0, r.1), 410, "tenant-shredded");
    let (keys, attested) = policy_service(&node).await;
    let req = ask(
        &keys,
        attested.leaf_hash(),
        &tenant_id(&tenant),
        &["transfers"],
    );
    let r = release(&node, &req).await;
    assert_problem(&(r.0, r.1), 410, "tenant-shredded");
    let status = key_status(&node, &tenant).await;
    assert_eq!(status["status"], "shredded");
    assert_eq!(status["seeds_held"], false);
    assert!(status["shredded"]["time"].is_string());
    // The log refuses the tenant's events from now on.
    let late = node.edge_event(
        "reads.audit",
        tenant_id(&tenant),
        vec![node.services.edge.identity.current().unwrap()],
    );
    assert_problem(&node.post(&late).await, 410, "tenant-shredded");

    // Everything the log holds still verifies: the sealed wallet's signature and its
    // inclusion in the latest checkpoint.
    let again = SignedEvent::from_bytes(wallet_entry.bytes()).unwrap();
    assert_eq!(again.leaf_hash(), wallet_entry.leaf_hash());
    let size = node.size();
    let index = items[1]["index"].as_u64().unwrap();
    let (status, proof) = node
        .get(&format!("/v1/proofs/inclusion?index={index}&size={size}"))
        .await;
    assert_eq!(status, StatusCode::OK, "{proof}");

    // A crash between keys.shredded and the deletion: the seeds file is back at the next
    // start, and the key service deletes it before serving.
    std::fs::write(&seeds_path, &seeds_bytes).unwrap();
    let (services, _dir, tmp, _storage) = node.restart().await;
    assert!(!services.keys.has_seeds(&tenant_id(&tenant)));
    assert!(!seeds_path.exists());
    drop((services, tmp));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_refuses_clear_fields_no_user_signed_and_payloads_not_sealed_as_their_kind() {
    let node = boot().await;
    let mut ada = admin(&node).await;
    let tenant = tenant_id(&ada.tenant);
    let wallet = new_wallet(&node, &mut ada).await;
    let path = format!("/v1/wallets/{wallet}/transfers");
    let r = act(&node, &mut ada, "transfer.requested", &path, &transfer()).await;
    assert_eq!(r.0, StatusCode::CREATED, "{}", r.1);
    let request = r.1["request"].as_str().unwrap().to_string();
    // Ada denies; the decision is in the signed path, and in clear for the log.
    let r = act(
        &node,
        &mut ada,
        "approval.decided",
        &format!("/v1/requests/{request}/approvals/deny"),
        &json!({"comment": "no"}),
    )
    .await;
    assert_eq!(r.0, StatusCode::CREATED, "{}", r.1);
    let denied = node.entry(r.1["index"].as_u64().unwrap());
    assert_eq!(denied.event().body["clear"], json!({"decision": "deny"}));
    assert!(denied.event().body.get("params").is_none());

    // A hostile edge turns it into an approval: the same signed action, the clear field
    // changed. The log refuses it before the nonce (which it would also refuse).
    let mut body = denied.event().body.clone();
    body.insert("clear".into(), json!({"decision": "approve"}));
    let mut flipped = denied.event().clone();
    flipped.body = body;
    flipped.sig = None;
    let flipped = flipped
        .sign(node.services.edge.identity.keys().signing_key())
        .unwrap();
    assert_problem(&node.post(&flipped).await, 403, "user-action-binding");
    // Nor can it raise an invitation's role: the role is a clear parameter under the
    // user's commitment.
    let r = act(
        &node,
        &mut ada,
        "user.invited",
        "/v1/users",
        &json!({"role": "member"}),
    )
    .await;
    assert_eq!(r.0, StatusCode::CREATED, "{}", r.1);
    let invited = node.entry(r.1["index"].as_u64().unwrap());
    let mut raised = invited.event().clone();
    raised
        .body
        .insert("params".into(), json!({"role": "admin"}));
    raised.sig = None;
    let raised = raised
        .sign(node.services.edge.identity.keys().signing_key())
        .unwrap();
    assert_problem(&node.post(&raised).await, 403, "user-action-commitment");
    // And a reader with the key refuses the flipped decision too.
    let (keys, attested) = policy_service(&node).await;
    let req = ask(&keys, attested.leaf_hash(), &tenant, &["approvals"]);
    let r = release(&node, &req).await;
    assert_eq!(r.0, StatusCode::OK, "{}", r.1);
    let scope_keys: Release = serde_json::from_value(r.1).unwrap();
    let scope_keys = scope_keys.open(&req, keys.x25519()).unwrap();
    let key = scope_keys.get("approvals", 1).unwrap();
    assert_eq!(open_action(denied.event(), key).unwrap()["comment"], "no");
    // The ciphertext is bound to the envelope, clear fields included: it no longer opens.
    assert_eq!(
        open_action(flipped.event(), key),
        Err(govern_core::seal::OpenActionError::Seal(SealError::Open))
    );
    // An edge holding the key could seal it again under the changed clear field: then the
    // clear field does not match the signed path, and the reader refuses it as such.
    let plain = open(denied.event(), key).unwrap();
    let mut resealed = flipped.event().clone();
    resealed.sig = None;
    govern_core::seal::seal(
        &mut resealed,
        key,
        "approvals",
        1,
        &plain,
        &govern_store::OsEntropy,
    )
    .unwrap();
    assert_eq!(
        open_action(&resealed, key),
        Err(govern_core::seal::OpenActionError::ClearMismatch)
    );
    // Or seal other parameters than the user signed: the log cannot see it, the reader
    // refuses them against the signed commitment.
    let mut other = denied.event().clone();
    other.sig = None;
    let salt: [u8; 32] = hex::decode(
        serde_json::from_slice::<Value>(&plain).unwrap()["salt"]
            .as_str()
            .unwrap(),
    )
    .unwrap()
    .try_into()
    .unwrap();
    let forged =
        govern_core::seal::action_plaintext(json!({"comment": "yes"}).as_object().unwrap(), &salt)
            .unwrap();
    govern_core::seal::seal(
        &mut other,
        key,
        "approvals",
        1,
        &forged,
        &govern_store::OsEntropy,
    )
    .unwrap();
    assert_eq!(
        open_action(&other, key),
        Err(govern_core::seal::OpenActionError::Commitment)
    );

    // A wallet the user signed, appended with its parameters in clear: refused, after the
    // user's signature checks, as a payload not sealed as its kind is.
    let body = json!({"name": "in clear"});
    let init = node
        .call(
            "POST",
            "/v1/auth/action/init",
            &[("authorization", &ada.bearer())],
            Some(
                serde_json::to_vec(
                    &json!({"kind": "wallet.requested", "method": "POST", "path": "/v1/wallets", "body": body}),
                )
                .unwrap(),
            ),
        )
        .await;
    assert_eq!(init.0, StatusCode::OK, "{}", init.1);
    let object: govern_core::action::ChallengeObject =
        serde_json::from_value(init.1["challenge"].clone()).unwrap();
    let signature = sign_object(
        &mut ada,
        &object,
        &webauthn_rs::prelude::Url::parse(support::ORIGIN).unwrap(),
    );
    let tenant_leaf = node
        .services
        .policy
        .with_tenant(&tenant, |t| t.leaf)
        .unwrap();
    let unsealed = clear_action_event(
        &node,
        &object,
        &signature,
        &init.1["salt"],
        body,
        vec![tenant_leaf],
    );
    assert_problem(&node.post(&unsealed).await, 400, "payload-sealing");
    // A kind that is never sealed, sealed: refused too.
    let mut e = node
        .edge_event("tenant.created", TenantId(uuid::Uuid::now_v7()), vec![])
        .event()
        .clone();
    govern_core::seal::seal(&mut e, key, "users", 1, b"{}", &govern_store::OsEntropy).unwrap();
    e.sig = None;
    let e = e
        .sign(node.services.edge.identity.keys().signing_key())
        .unwrap();
    assert_problem(&node.post(&e).await, 400, "payload-sealing");
}
