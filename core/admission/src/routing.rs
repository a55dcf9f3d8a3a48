//! The routing graph of the manifest in force, enforced at append (docs/design.md §5): who may
//! produce each kind, which kinds its parents may be, whose tenant and request they must
//! belong to, and each kind's uniqueness key (docs/design.md §4).
//!
//! [`ManifestPolicy`] pairs the graph with a fixed allow-list (tests); the node's policy,
//! [`crate::IdentityPolicy`], pairs it with attested identities.

use govern_core::event::{SignedEvent, TenantId};
use govern_core::manifest::{Manifest, ManifestError};

use crate::ProducerAllowList;
use govern_core::append::{AppendError, AppendPolicy, LogView};

/// The manifest's routing graph over the producer allow-list.
#[derive(Debug, Clone)]
pub struct ManifestPolicy {
    /// The manifest in force (verified by whoever built this policy).
    pub manifest: Manifest,
    /// The producers that may append at all.
    pub producers: ProducerAllowList,
}

impl ManifestPolicy {
    /// A policy enforcing `manifest` for the producers in `producers`.
    #[must_use]
    pub fn new(manifest: Manifest, producers: ProducerAllowList) -> Self {
        Self {
            manifest,
            producers,
        }
    }
}

impl AppendPolicy for ManifestPolicy {
    /// In order: the producer is allowed; the kind is declared; the producer's role may
    /// produce it; it has a parent if its kind has any; every parent is in the log (or
    /// earlier in the batch), of an allowed kind, of the event's tenant (or the system
    /// tenant), and of the event's request when the kind says `same_request`; the
    /// uniqueness key is well-formed and not taken.
    fn check(&self, signed: &SignedEvent, view: &dyn LogView) -> Result<Vec<String>, AppendError> {
        self.producers.check(signed, view)?;
        check_routing(&self.manifest, signed, view)
    }
}

/// The routing checks of `manifest` for `signed`, in order: the kind is declared; the
/// producer's role may produce it; it has at least one parent if its kind lists parent kinds
/// (but the genesis manifest and the log's quarantine of a refused document); every parent
/// is in the log (or earlier in the batch), of an allowed kind, of the event's tenant (or the
/// system tenant), and of the event's request when the kind says `same_request`; the
/// uniqueness key is well-formed. Returns the key (if the kind has one).
///
/// # Errors
/// The first refusal.
pub(crate) fn check_routing(
    manifest: &Manifest,
    signed: &SignedEvent,
    view: &dyn LogView,
) -> Result<Vec<String>, AppendError> {
    let event = signed.event();
    let spec = manifest
        .kind(&event.kind)
        .ok_or_else(|| AppendError::UnknownKind {
            kind: event.kind.clone(),
        })?;
    if !manifest.role_may_produce(&event.producer.role, &event.kind) {
        return Err(AppendError::KindNotAllowed {
            role: event.producer.role.clone(),
            kind: event.kind.clone(),
        });
    }
    // A kind that follows something follows at least one thing. Only two have none: the
    // genesis manifest (entry 0, before anything it could follow), and the log's quarantine
    // of a document it refused (which is not in the log: the quarantine carries it as
    // evidence instead, checked by the identity policy).
    if !spec.parents.is_empty()
        && event.parents.is_empty()
        && view.next_index().0 != 0
        && event.kind.as_str() != crate::identity::QUARANTINED_KIND
    {
        return Err(AppendError::ParentRequired {
            kind: event.kind.clone(),
        });
    }
    for parent in &event.parents {
        let info = view
            .parent(parent)?
            .ok_or(AppendError::ParentMissing { parent: *parent })?;
        if !manifest.allowed_parent(&event.kind, &info.kind) {
            return Err(AppendError::ParentKindNotAllowed {
                kind: event.kind.clone(),
                parent_kind: info.kind,
            });
        }
        if info.tenant != event.tenant && info.tenant != TenantId::SYSTEM {
            return Err(AppendError::ParentOtherTenant {
                parent: *parent,
                tenant: event.tenant,
                parent_tenant: info.tenant,
            });
        }
        if spec.same_request && (info.tenant != event.tenant || info.request != event.request) {
            return Err(AppendError::ParentOtherRequest {
                kind: event.kind.clone(),
                parent: *parent,
                request: event.request,
                parent_request: info.request,
            });
        }
    }
    let key = manifest.uniqueness_key(event).map_err(|e| match e {
        ManifestError::UnknownKind { kind } => AppendError::UnknownKind { kind },
        other => AppendError::UniquenessKey {
            reason: other.to_string(),
        },
    })?;
    // Whether the key is already taken is the sequencer's check, made for every policy.
    Ok(key.into_iter().collect())
}
