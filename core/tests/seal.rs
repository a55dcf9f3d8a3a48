//! Sealed payloads (docs/design.md §7): a payload opens only with its scope key, only in the event
//! it was sealed into; every byte is covered.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use govern_core::event::{Event, Kind, Producer, RequestId, Role, TenantId, Timestamp};
use govern_core::seal::{SealError, open, scope_key, seal, sealed_scope};
use serde_json::{Map, Value};

/// The operating system's randomness (the node's is govern-store's `OsEntropy`).
struct Os;

impl govern_core::append::Entropy for Os {
    fn fill(&self, buf: &mut [u8]) {
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, buf);
    }
}

fn event(tenant: TenantId) -> Event {
    let key = ed25519_dalek::SigningKey::from_bytes(&[1; 32]);
    Event::new(
        Kind::new("transfer.requested").unwrap(),
        tenant,
        RequestId::new_v7(),
        Producer::new(Role::new("edge").unwrap(), &key.verifying_key()),
        Timestamp::now(),
        Map::new(),
    )
}

fn tenant() -> TenantId {
    TenantId(uuid::Uuid::now_v7())
}

#[test]
fn a_sealed_payload_opens_only_with_its_key_in_its_event() {
    let (master, seed) = ([7u8; 32], [9u8; 32]);
    let t = tenant();
    let key = scope_key(&master, &seed, &t, "transfers", 1).unwrap();
    let mut e = event(t);
    seal(&mut e, &key, "transfers", 1, b"to 0xaa, 1 ETH", &Os).unwrap();
    assert_eq!(open(&e, &key).unwrap(), b"to 0xaa, 1 ETH");
    assert_eq!(sealed_scope(&e).unwrap(), ("transfers".to_string(), 1));
    // It survives signing and parsing (the signature covers it).
    let signed = e
        .clone()
        .sign(&ed25519_dalek::SigningKey::from_bytes(&[1; 32]))
        .unwrap();
    let parsed = govern_core::event::SignedEvent::from_bytes(signed.bytes()).unwrap();
    assert_eq!(open(parsed.event(), &key).unwrap(), b"to 0xaa, 1 ETH");

    // Other keys: another scope, version, seed (a shredded and re-made tenant), master,
    // tenant.
    for other in [
        scope_key(&master, &seed, &t, "wallets", 1).unwrap(),
        scope_key(&master, &seed, &t, "transfers", 2).unwrap(),
        scope_key(&master, &[8; 32], &t, "transfers", 1).unwrap(),
        scope_key(&[6; 32], &seed, &t, "transfers", 1).unwrap(),
        scope_key(&master, &seed, &tenant(), "transfers", 1).unwrap(),
    ] {
        assert_ne!(other, key);
        assert_eq!(open(&e, &other), Err(SealError::Open));
    }

    // The ciphertext moved into another event, request or tenant does not open.
    let ct = e.sealed.clone();
    let mut moved = event(t);
    moved.sealed = ct.clone();
    assert_eq!(open(&moved, &key), Err(SealError::Open));
    let mut other_request = e.clone();
    other_request.request = RequestId::new_v7();
    assert_eq!(open(&other_request, &key), Err(SealError::Open));
    let mut other_body = e.clone();
    other_body.body.insert("amount".into(), "2".into());
    assert_eq!(open(&other_body, &key), Err(SealError::Open));
    // Relabelled to another scope.
    let mut relabelled = e.clone();
    relabelled.sealed.as_mut().unwrap()["scope"] = "wallets".into();
    assert_eq!(open(&relabelled, &key), Err(SealError::Open));

    // Every byte of the ciphertext counts.
    let ct_text = e.sealed.as_ref().unwrap()["ct"]
        .as_str()
        .unwrap()
        .to_string();
    let mut raw =
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &ct_text).unwrap();
    for i in 0..raw.len() {
        raw[i] ^= 1;
        let mut t2 = e.clone();
        t2.sealed.as_mut().unwrap()["ct"] =
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &raw).into();
        assert_eq!(open(&t2, &key), Err(SealError::Open), "byte {i}");
        raw[i] ^= 1;
    }
}

#[test]
fn malformed_sealed_members_and_scopes_are_typed_errors() {
    let key = [1u8; 32];
    let mut e = event(tenant());
    assert!(matches!(open(&e, &key), Err(SealError::Format(_))));
    e.sealed = Some(Value::String("x".into()));
    assert!(matches!(open(&e, &key), Err(SealError::Format(_))));
    seal(&mut e, &key, "s", 0, b"", &Os).unwrap();
    e.sealed.as_mut().unwrap()["nonce"] = "AAAA".into();
    assert!(matches!(open(&e, &key), Err(SealError::Format(_))));
    assert!(matches!(
        scope_key(&key, &key, &tenant(), "", 1),
        Err(SealError::Scope(_))
    ));
    assert!(matches!(
        scope_key(&key, &key, &tenant(), "a\0b", 1),
        Err(SealError::Scope(_))
    ));
    // The derivation is fixed: a known answer, so a change to it cannot pass unseen.
    let t = TenantId(uuid::Uuid::parse_str("0193f0a0-0000-7000-8000-000000000001").unwrap());
    let k = scope_key(&[0x11; 32], &[0x22; 32], &t, "transfers", 1).unwrap();
    let expected = {
        use hkdf::Hkdf;
        let mut okm = [0u8; 32];
        let mut info = b"govern/scope/v1".to_vec();
        info.extend_from_slice(b"0193f0a0-0000-7000-8000-000000000001\0transfers\x001");
        Hkdf::<sha2::Sha256>::new(Some(&[0x22; 32]), &[0x11; 32])
            .expand(&info, &mut okm)
            .unwrap();
        okm
    };
    assert_eq!(k, expected);
}

#[test]
fn clear_fields_come_from_the_signed_path_only() {
    use govern_core::seal::{clear_from_path, sealed_kind};
    let approval = sealed_kind("approval.decided").unwrap();
    assert_eq!(approval.scope, "approvals");
    let clear = clear_from_path(approval, "/v1/requests/0193/approvals/deny").unwrap();
    assert_eq!(
        Value::Object(clear),
        serde_json::json!({"decision": "deny"})
    );
    assert!(clear_from_path(approval, "").is_none());
    // Kinds with nothing in clear; and the kinds that are never sealed.
    let transfer = sealed_kind("transfer.requested").unwrap();
    assert!(
        clear_from_path(transfer, "/v1/wallets/w/transfers")
            .unwrap()
            .is_empty()
    );
    for kind in [
        "user.invited",
        "user.role_changed",
        "credential.registered",
        "credential.revoked",
        "tenant.created",
    ] {
        assert!(sealed_kind(kind).is_none(), "{kind}");
    }
}
