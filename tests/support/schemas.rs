//! The event schemas (schemas/events), for tests that check the events a run produced.

use std::path::{Path, PathBuf};

use jsonschema::{Retrieve, Uri, Validator};
use serde_json::Value;

const BASE: &str = "https://govern.dev/schemas/events/";

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/events")
}

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
        Ok(serde_json::from_slice(&std::fs::read(dir().join(name))?)?)
    }
}

/// The validator of `kind`'s schema.
pub fn validator(kind: &str) -> Validator {
    let path = dir().join(format!("{kind}.json"));
    let schema: Value = serde_json::from_slice(
        &std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap();
    jsonschema::options()
        .with_retriever(Files)
        .build(&schema)
        .unwrap_or_else(|e| panic!("{kind}: {e}"))
}

/// Every event against its kind's schema: the failures, one line each.
pub fn failures(events: &[Value]) -> Vec<String> {
    let mut validators = std::collections::BTreeMap::new();
    let mut out = Vec::new();
    for (i, e) in events.iter().enumerate() {
        let kind = e["kind"].as_str().unwrap_or_default().to_string();
        let v = validators
            .entry(kind.clone())
            .or_insert_with(|| validator(&kind));
        for err in v.iter_errors(e) {
            out.push(format!(
                "entry {i} ({kind}): {err} at {}",
                err.instance_path()
            ));
        }
    }
    out
}
