//! The export directory, as `govern export` writes it and any static file server serves it:
//!
//! ```text
//! DIR/checkpoint              the latest signed checkpoint (C2SP signed note)
//! DIR/tile/<L>/<N>[.p/<W>]    every hash tile of that tree, full and partial
//! DIR/tile/entries/<N>[...]   every entry bundle
//! DIR/checkpoints/<size>      every checkpoint the log signed up to that size
//! DIR/manifests/<serial>.json every manifest.published body (the manifest and its quorum)
//! DIR/v1/log                  {"origin", "verifier_key", "size"}, as GET /v1/log answers
//! DIR/trust/manifest-signers.toml  the data dir's pinned manifest signers (local only)
//! DIR/trust/dev-root.der      a dev log's CA root, which its manifest pins (local only)
//! DIR/trust/witnesses.toml    the data dir's witness policy, if it has one (local only; from
//!                             a node, v1/log names the policy it announces)
//! ```

/// The latest signed checkpoint.
pub const CHECKPOINT: &str = "checkpoint";
/// The folder of every signed checkpoint, by size.
pub const CHECKPOINTS: &str = "checkpoints";
/// The folder of every `manifest.published` body, by serial.
pub const MANIFESTS: &str = "manifests";
/// The log's origin, verifier key, size (and announced witness policy).
pub const LOG_INFO: &str = "v1/log";
/// The manifest signers the data dir pins.
pub const TRUST_SIGNERS: &str = "trust/manifest-signers.toml";
/// A dev log's CA root (DER).
pub const TRUST_DEV_ROOT: &str = "trust/dev-root.der";
/// The data dir's witness policy.
pub const TRUST_WITNESSES: &str = "trust/witnesses.toml";

/// The file of the checkpoint of size `size`.
#[must_use]
pub fn checkpoint(size: u64) -> String {
    format!("{CHECKPOINTS}/{size}")
}

/// The file of the manifest of serial `serial`.
#[must_use]
pub fn manifest(serial: u64) -> String {
    format!("{MANIFESTS}/{serial}.json")
}

/// `v1/log`'s body: as `GET /v1/log` answers, without the witness policy (which a node's
/// export adds under `witnesses`).
#[must_use]
pub fn log_info(origin: &str, verifier_key: &str, size: u64) -> serde_json::Value {
    serde_json::json!({"origin": origin, "verifier_key": verifier_key, "size": size})
}
