//! `schemas/`: every event kind the code produces has a JSON Schema, every event of every
//! golden log (a log holding every kind, made by the real node) validates against its kind's
//! schema, a schema refuses what its kind may not hold, and `schemas/api/openapi.json` (the
//! API bodies' schemas, which schemathesis checks the running node against) is the code's.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use govern_core::tiles::{TILE_WIDTH, Tile, decode_bundle};
use govern_projections::{services, tenants};
use jsonschema::{Retrieve, Uri, Validator};
use serde_json::Value;

const BASE: &str = "https://govern.dev/schemas/events/";

fn schemas_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas")
}

/// Serves `https://govern.dev/schemas/events/<file>` from `schemas/events/`.
struct Files;

impl Retrieve for Files {
    fn retrieve(
        &self,
        uri: &Uri<String>,
    ) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        let name = uri
            .as_str()
            .strip_prefix(BASE)
            .ok_or_else(|| format!("{uri} is not one of govern's schemas"))?;
        let path = schemas_dir().join("events").join(name);
        Ok(serde_json::from_slice(
            &std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?,
        )?)
    }
}

fn validator(kind: &str) -> Validator {
    let path = schemas_dir().join(format!("events/{kind}.json"));
    let schema: Value = serde_json::from_slice(
        &std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap();
    jsonschema::options()
        .with_retriever(Files)
        .build(&schema)
        .unwrap_or_else(|e| panic!("{kind}: {e}"))
}

/// Every kind the code produces.
fn code_kinds() -> BTreeSet<String> {
    let mut kinds: BTreeSet<String> = [
        tenants::TENANT_CREATED,
        tenants::USER_REGISTERED,
        "demo.hello",
    ]
    .into_iter()
    .chain(tenants::ACTION_KINDS)
    .chain(tenants::KEY_KINDS)
    .chain(services::SERVICE_KINDS)
    .chain(govern_core::kinds::POLICY_RESULT_KINDS)
    .chain(govern_core::kinds::SIGNER_RESULT_KINDS)
    .chain(govern_core::kinds::MPC_KINDS)
    .map(str::to_string)
    .collect();
    kinds.insert(govern_core::manifest::MANIFEST_PUBLISHED_KIND.to_string());
    kinds
}

/// Every entry of every golden, as JSON.
fn golden_events() -> Vec<(String, u64, Value)> {
    let mut out = Vec::new();
    for golden in govern_replay_tests::goldens() {
        let size = golden.recorded["size"].as_u64().unwrap();
        for b in 0..size.div_ceil(TILE_WIDTH) {
            let width = (size - b * TILE_WIDTH).min(TILE_WIDTH);
            let tile = Tile::Entries {
                index: b,
                partial: (width < TILE_WIDTH).then(|| u8::try_from(width).unwrap()),
            };
            let bundle = std::fs::read(golden.dir.join(tile.to_string())).unwrap();
            for (i, raw) in decode_bundle(&bundle).unwrap().into_iter().enumerate() {
                out.push((
                    golden.name.clone(),
                    b * TILE_WIDTH + i as u64,
                    serde_json::from_slice(&raw).unwrap(),
                ));
            }
        }
    }
    out
}

#[test]
fn every_kind_has_a_schema_and_every_schema_a_kind() {
    let files: BTreeSet<String> = std::fs::read_dir(schemas_dir().join("events"))
        .unwrap()
        .filter_map(|e| {
            let name = e.ok()?.file_name().to_str()?.to_string();
            name.strip_suffix(".json").map(str::to_string)
        })
        .filter(|n| n != "event" && n != "defs")
        .collect();
    assert_eq!(files, code_kinds());
    for kind in code_kinds() {
        validator(&kind);
    }
}

#[test]
fn every_golden_event_validates_against_its_kinds_schema() {
    let events = golden_events();
    let seen: BTreeSet<String> = events
        .iter()
        .map(|(_, _, e)| e["kind"].as_str().unwrap().to_string())
        .collect();
    // The signers' kinds are not in the goldens (their exports would be mostly protocol
    // messages): tests/signers.rs checks every event of its logs against these schemas.
    let signers: BTreeSet<String> = govern_core::kinds::SIGNER_RESULT_KINDS
        .iter()
        .chain(govern_core::kinds::MPC_KINDS.iter())
        .map(|k| (*k).to_string())
        .collect();
    let expected: BTreeSet<String> = code_kinds().difference(&signers).cloned().collect();
    assert_eq!(
        seen, expected,
        "the goldens hold every kind but the signers'"
    );
    let mut failures = Vec::new();
    for (golden, index, event) in &events {
        let kind = event["kind"].as_str().unwrap();
        let v = validator(kind);
        for e in v.iter_errors(event) {
            failures.push(format!(
                "{golden} entry {index} ({kind}): {e} at {}",
                e.instance_path()
            ));
        }
        // Also valid as an envelope.
        assert!(validator_envelope().is_valid(event), "{golden} {index}");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn validator_envelope() -> Validator {
    let schema: Value =
        serde_json::from_slice(&std::fs::read(schemas_dir().join("events/event.json")).unwrap())
            .unwrap();
    jsonschema::options()
        .with_retriever(Files)
        .build(&schema)
        .unwrap()
}

#[test]
fn schemas_refuse_what_a_kind_may_not_hold() {
    let events = golden_events();
    let find = |kind: &str| {
        events
            .iter()
            .find(|(_, _, e)| e["kind"] == kind)
            .unwrap()
            .2
            .clone()
    };
    let transfer = find("transfer.requested");
    let v = validator("transfer.requested");
    assert!(v.is_valid(&transfer));
    let mut bad = transfer.clone();
    bad["body"].as_object_mut().unwrap().remove("action");
    assert!(!v.is_valid(&bad), "an action without its signed challenge");
    let mut bad = transfer.clone();
    bad["sealed"]["scope"] = "wallets".into();
    assert!(!v.is_valid(&bad), "a transfer sealed in another scope");
    let mut bad = transfer.clone();
    bad["body"]["amount"] = 1.5.into();
    assert!(!v.is_valid(&bad), "a float");
    // An event of one kind is not valid under another kind's schema.
    assert!(!validator("wallet.requested").is_valid(&transfer));
    let created = find("tenant.created");
    let mut bad = created.clone();
    bad["body"].as_object_mut().unwrap().remove("rp_id");
    assert!(!validator("tenant.created").is_valid(&bad));
}

#[test]
fn the_api_schemas_are_the_codes() {
    let path = schemas_dir().join("api/openapi.json");
    let committed: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let code: Value = serde_json::from_slice(govern_api::openapi::json()).unwrap();
    assert!(
        committed == code,
        "schemas/api/openapi.json differs from the code's OpenAPI document: regenerate it with `curl -s <node>/openapi.json > schemas/api/openapi.json` and commit it"
    );
    // Every request and response body of the API is a component or inline schema of it.
    assert!(code["components"]["schemas"].as_object().unwrap().len() > 10);
}
