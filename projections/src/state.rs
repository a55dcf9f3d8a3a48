//! The whole projected state and its root (docs/design.md §9).
//!
//! [`State`] is every projection of the log together: the tenants ([`Tenants`]) and the
//! service inventory ([`Services`]). Its root is SHA-256 of its RFC 8785 (JCS) form. Every
//! field of it is read from clear fields, commitments and statuses, never from a sealed
//! payload, so a replay holding no tenant key (or after a tenant was shredded) reaches the
//! same root as the node that wrote the log.
//!
//! A root names the state after a given tree size; `govern status` and `govern replay`
//! print the pair, and two logs of the same size with the same root hold the same state.

use govern_core::event::SignedEvent;
use govern_core::ids::{Hash, LeafIndex};
use serde::{Deserialize, Serialize};

use crate::services::Services;
use crate::tenants::Tenants;

/// The version of the state's form. The root of a log changes when this does (a
/// deliberate change, recorded with the golden logs of `replay-tests/`). 2: a request's
/// status is the policy worker's decision (`pending`, `evaluated`, `approved`, `activated`,
/// `rejected`), no longer the latest approval's; the worker's results are tenant events.
/// 3: a credential keeps its latest action (`last_action`), a tenant's key status its
/// releases and openings per hour (`hourly`), for the dashboard.
pub const STATE_VERSION: u32 = 3;

/// Every projection of the log.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// [`STATE_VERSION`].
    pub version: u32,
    /// Tenants, users, credentials, wallets, requests and key status.
    pub tenants: Tenants,
    /// The manifest in force, identities, quarantines.
    pub services: Services,
}

/// Why a state could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the state cannot be put in canonical form: {0}")]
pub struct StateError(String);

impl State {
    /// An empty state (before the first entry).
    #[must_use]
    pub fn new() -> Self {
        Self {
            version: STATE_VERSION,
            ..Self::default()
        }
    }

    /// Fold the accepted event at `index` in.
    pub fn apply(&mut self, signed: &SignedEvent, index: u64) {
        self.tenants.apply(signed, index);
        self.services.apply(signed, LeafIndex(index));
    }

    /// The state's canonical (JCS) bytes.
    ///
    /// # Errors
    /// [`StateError`] if a field cannot be encoded (it holds no floats, so it always can).
    pub fn canonical(&self) -> Result<Vec<u8>, StateError> {
        govern_core::canonical::to_vec(self).map_err(|e| StateError(e.to_string()))
    }

    /// SHA-256 of [`State::canonical`].
    ///
    /// # Errors
    /// As [`State::canonical`].
    pub fn root(&self) -> Result<Hash, StateError> {
        Ok(root_of(&self.canonical()?))
    }
}

/// The root of a state's canonical bytes.
#[must_use]
pub fn root_of(canonical: &[u8]) -> Hash {
    use sha2::Digest as _;
    Hash(sha2::Sha256::digest(canonical).into())
}
