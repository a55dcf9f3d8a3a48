//! The JSON bodies of the node's endpoints, shared by the node (govern-api's handlers
//! serve them) and its clients (which read them), so the two cannot drift. With the feature
//! `openapi`, each derives utoipa's `ToSchema` for the node's OpenAPI document.

use serde::{Deserialize, Serialize};

pub mod edge;

/// `GET /v1/log`.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LogInfo {
    /// Checkpoint origin.
    pub origin: String,
    /// C2SP verifier key of the checkpoint key.
    pub verifier_key: String,
    /// Current tree size.
    pub size: u64,
    /// The witness policy `/checkpoint` meets (absent: none, `/checkpoint` is the log's own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub witnesses: Option<WitnessesInfo>,
}

/// A witness policy: k of these cosigners.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WitnessesInfo {
    /// k: how many of them cosign every checkpoint `/checkpoint` serves.
    pub quorum: usize,
    /// Their cosignature verifier keys (`name+<hex key ID>+base64(0x04 || key)`).
    pub vkeys: Vec<String>,
    /// The size of the latest checkpoint with a quorum of cosignatures, if any yet.
    pub witnessed_size: Option<u64>,
}

/// `GET /v1/state`: the projections' state root after a tree size.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StateInfo {
    /// The tree size the state is after.
    pub size: u64,
    /// The tree's root at that size, hex.
    pub root: String,
    /// SHA-256 of the canonical state (govern-projections' `State`), hex.
    pub state_root: String,
}

/// An inclusion proof: hashes in RFC 9162 order, standard base64.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InclusionProof {
    /// Leaf index (absent inside a receipt, which names it already).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<u64>,
    /// Tree size the proof is for.
    pub size: u64,
    /// The audit path.
    pub hashes: Vec<String>,
}

/// A consistency proof: hashes in RFC 9162 order, standard base64.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConsistencyProof {
    /// Older size.
    pub from: u64,
    /// Newer size.
    pub to: u64,
    /// The proof.
    pub hashes: Vec<String>,
}

/// The answer to an append: proof that the event is in the log.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Receipt {
    /// Where it is.
    pub index: u64,
    /// SHA-256(0x00 || leaf data), hex.
    pub leaf_hash: String,
    /// The signed checkpoint the proof leads to.
    pub checkpoint: String,
    /// Inclusion under that checkpoint.
    pub inclusion: InclusionProof,
}

/// One signed checkpoint.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SignedCheckpoint {
    /// Its tree size.
    pub size: u64,
    /// The C2SP signed note.
    pub note: String,
}

/// A page of signed checkpoints.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Checkpoints {
    /// By size, from `from`.
    pub checkpoints: Vec<SignedCheckpoint>,
    /// The `from` of the next page, if there may be more.
    pub next: Option<u64>,
}

/// One request of a tenant.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RequestItem {
    /// The request id (a UUID): what `GET /v1/requests/{id}` and `govern verify request`
    /// take.
    pub id: String,
    /// The kind of its first event.
    pub kind: String,
    /// `requested`, then `approved` or `denied` by the latest decision.
    pub status: String,
    /// The recorded time of its first event (RFC 3339, milliseconds, UTC).
    pub time: String,
    /// The index of its first event.
    pub index: u64,
    /// How many events it has so far.
    pub events: u64,
}

/// A page of a tenant's requests.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RequestsPage {
    /// The tenant.
    pub tenant: String,
    /// In log order of their first event.
    pub requests: Vec<RequestItem>,
    /// The `after` of the next page, when there are more (the index of this page's last
    /// request's first event); absent at the end.
    pub next: Option<u64>,
}
