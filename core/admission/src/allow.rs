//! A fixed allow-list of producers: the append policy of the foundation, before attested
//! identities. The node no longer uses it (it enforces [`crate::IdentityPolicy`]); tests of
//! the store and the HTTP transport, and the benchmark's baseline, do.

use std::collections::HashSet;

use govern_core::append::{AppendError, AppendPolicy, LogView};
use govern_core::event::{PublicKey, Role, SignedEvent};

/// The producers that may append, by role and key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProducerAllowList {
    entries: HashSet<(Role, PublicKey)>,
}

impl ProducerAllowList {
    /// Whether `role` may append with `key`.
    #[must_use]
    pub fn allows(&self, role: &Role, key: &PublicKey) -> bool {
        self.entries.contains(&(role.clone(), *key))
    }

    /// Allow `role` to append with `key`.
    pub fn insert(&mut self, role: Role, key: PublicKey) {
        self.entries.insert((role, key));
    }
}

impl AppendPolicy for ProducerAllowList {
    fn check(&self, event: &SignedEvent, _view: &dyn LogView) -> Result<Vec<String>, AppendError> {
        let p = &event.event().producer;
        if self.allows(&p.role, &p.key) {
            Ok(Vec::new())
        } else {
            Err(AppendError::UnknownProducer {
                role: p.role.to_string(),
                key: p.key.to_base64(),
            })
        }
    }
}
