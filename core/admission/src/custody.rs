//! A request's chain of custody, re-checked hop by hop from the log alone (docs/design.md
//! §8): what `govern verify request` reports and what each signer requires before it signs.
//!
//! [`Custody`] folds every entry of a verified log (the caller's follower checked the log's
//! signature, the witness quorum and that the entries hash to the checkpoint, so each entry
//! is included under it). For every tenant event it records, as of its place in the log:
//!
//! - **identity**: the producer is its role's live identity, pinned and not quarantined
//!   ([`check_producer`], the log's own check);
//! - **routing**: the kind, the producer's role and every parent's kind, tenant and request
//!   follow the manifest in force (the log's routing check);
//! - **user action**: the user's signature verifies against the credential the tenant had
//!   registered, and the signed path binds the event's parents (the wallet of a transfer);
//! - **policy**: a policy worker's result equals what the tenant's policies give when this
//!   fold evaluates them again ([`PolicyBook`]; needs the opened payloads).
//!
//! It is pure: no clock, no I/O, no keys (the caller opens the sealed payloads).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use govern_core::action::{ChallengeObject, UserSignature};
use govern_core::append::{
    HopVerdict, LogView, ParentInfo, StorageError, TIME_SKEW_MS, UserActionError,
};
use govern_core::event::{Event, RequestId, SignedEvent, TenantId};
use govern_core::ids::{LeafHash, LeafIndex, RootHash, TreeSize};
use govern_core::kinds::{
    ACTION_KINDS, CREDENTIAL_REGISTERED, MANIFEST_PUBLISHED, POLICY_RESULT_KINDS, SERVICE_ATTESTED,
};
use govern_projections::policy::PolicyBook;
use govern_projections::state::State;
use govern_projections::tenants::{CredentialState, is_tenant_kind, params};
use serde_json::{Map, Value};

use crate::identity::{Claim, Identity, check_producer};
use crate::routing::check_routing;

/// One hop of a request, as re-checked at its place in the log.
#[derive(Debug, Clone)]
pub struct Hop {
    /// Its index.
    pub index: u64,
    /// Its kind.
    pub kind: String,
    /// Its leaf hash.
    pub leaf: LeafHash,
    /// The first check it fails, if any.
    pub verdict: Result<(), HopVerdict>,
}

/// The identity a producer's event names, as the log's check found it.
#[derive(Debug, Clone)]
pub struct IdentityFound {
    /// The `service.attested` it names (`None`: a self-attesting kind).
    pub attestation: Option<LeafHash>,
    /// The serial of the manifest it was attested under.
    pub manifest: Option<u64>,
}

/// The credential a user action was verified with.
#[derive(Debug, Clone)]
pub struct SignatureFound {
    /// `passkey` or `key`.
    pub credential_type: &'static str,
    /// Its id.
    pub credential: String,
    /// Its user.
    pub user: String,
}

/// The fold: the log's state, the policy book, every entry's routing facts, and the hops of
/// every tenant request.
#[derive(Debug, Default)]
pub struct Custody {
    state: State,
    book: PolicyBook,
    parents: HashMap<LeafHash, ParentInfo>,
    hops: BTreeMap<(TenantId, RequestId), Vec<Hop>>,
    size: u64,
}

/// The fold's entries as the routing check reads them (parents only: a re-check does not
/// claim uniqueness keys, and a user action's anchor was the log's to check at append).
struct Parents<'a> {
    parents: &'a HashMap<LeafHash, ParentInfo>,
    next: u64,
}

impl LogView for Parents<'_> {
    fn parent(&self, leaf: &LeafHash) -> Result<Option<ParentInfo>, StorageError> {
        Ok(self.parents.get(leaf).cloned())
    }

    fn unique_taken(&self, _key: &str) -> Result<Option<LeafIndex>, StorageError> {
        Ok(None)
    }

    fn next_index(&self) -> LeafIndex {
        LeafIndex(self.next)
    }

    fn recent_checkpoint(&self, _root: &RootHash) -> Option<TreeSize> {
        None
    }
}

impl Custody {
    /// An empty fold (before entry 0).
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Fold entry `index`. `opened` is what the policy book reads of it (a transfer's or a
    /// policy change's opened parameters, a `policy.evaluated`'s sealed members; `None`
    /// without the key). Entries must come in log order, every one of them.
    pub fn apply(&mut self, index: u64, signed: &SignedEvent, opened: Option<&Map<String, Value>>) {
        let event = signed.event();
        let kind = event.kind.as_str();
        let tracked = is_tenant_kind(kind);
        let mut verdict = Ok(());
        if tracked {
            verdict = self.check_hop(signed);
        }
        if PolicyBook::reads(kind)
            && let Err(mismatch) = self.book.apply(index, signed, opened)
            && verdict.is_ok()
        {
            verdict = Err(HopVerdict::Policy(mismatch.to_string()));
        }
        if tracked {
            self.hops
                .entry((event.tenant, event.request))
                .or_default()
                .push(Hop {
                    index,
                    kind: kind.to_string(),
                    leaf: signed.leaf_hash(),
                    verdict,
                });
        }
        self.state.apply(signed, index);
        self.parents.insert(
            signed.leaf_hash(),
            ParentInfo {
                index: LeafIndex(index),
                kind: event.kind.clone(),
                tenant: event.tenant,
                request: event.request,
            },
        );
        self.size = index + 1;
    }

    /// The identity, routing and user-action checks of a tenant event, as of now.
    fn check_hop(&self, signed: &SignedEvent) -> Result<(), HopVerdict> {
        let event = signed.event();
        check_identity(event, &self.state)?;
        if let Some(manifest) = self.state.services.manifest.as_ref() {
            let view = Parents {
                parents: &self.parents,
                next: self.size,
            };
            check_routing(&manifest.manifest, signed, &view)
                .map_err(|e| HopVerdict::Routing(e.to_string()))?;
        }
        match check_user_action(event, &self.state) {
            Some(result) => result.map(|_| ()),
            // A kind that carries a user action must carry one (a tenant's first credential,
            // registered by the edge at sign-up, excepted), as the log requires at append.
            None if ACTION_KINDS.contains(&event.kind.as_str())
                && event.kind.as_str() != CREDENTIAL_REGISTERED =>
            {
                Err(HopVerdict::UserAction(UserActionError::Missing {
                    kind: event.kind.to_string(),
                }))
            }
            None => Ok(()),
        }
    }

    /// The hops of `request` of `tenant` so far, in log order.
    #[must_use]
    pub fn hops(&self, tenant: &TenantId, request: &RequestId) -> &[Hop] {
        self.hops
            .get(&(*tenant, *request))
            .map_or(&[], Vec::as_slice)
    }

    /// The first hop of the request that fails a check.
    #[must_use]
    pub fn broken(&self, tenant: &TenantId, request: &RequestId) -> Option<&Hop> {
        self.hops(tenant, request)
            .iter()
            .find(|h| h.verdict.is_err())
    }

    /// The log's state folded so far.
    #[must_use]
    pub fn state(&self) -> &State {
        &self.state
    }

    /// The policy book folded so far.
    #[must_use]
    pub fn book(&self) -> &PolicyBook {
        &self.book
    }

    /// Entries folded.
    #[must_use]
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Where the entry with leaf hash `leaf` is, and what it is.
    #[must_use]
    pub fn entry(&self, leaf: &LeafHash) -> Option<&ParentInfo> {
        self.parents.get(leaf)
    }
}

/// The identity check of a hop: the `service.attested` the event names is its role's
/// current identity as of this point of the log, binds the producer's key, has its
/// measurement pinned by the manifest in force and not quarantined, and is live at the
/// event's time (the checks the log made at append).
///
/// # Errors
/// [`HopVerdict::Identity`].
pub fn check_identity(event: &Event, state: &State) -> Result<IdentityFound, HopVerdict> {
    let kind = event.kind.as_str();
    if event.attestation.is_none() && (kind == MANIFEST_PUBLISHED || kind == SERVICE_ATTESTED) {
        return Ok(IdentityFound {
            attestation: None,
            manifest: None,
        });
    }
    let services = &state.services;
    check_producer(
        services,
        services.manifest.as_ref().map(|m| &m.manifest),
        &BTreeSet::new(),
        Claim {
            role: &event.producer.role,
            attestation: event.attestation,
            key: &event.producer.key,
            time: event.time,
        },
        TIME_SKEW_MS,
    )
    .map(|id: &Identity| IdentityFound {
        attestation: Some(id.leaf),
        manifest: Some(id.manifest_serial),
    })
    .map_err(HopVerdict::Identity)
}

/// The user-signature check of an action (`None` for an event without one): the signed
/// route is the kind's and the event follows the object the user named (the binding the
/// log checked at append), and the signature verifies against the credential the tenant
/// had registered at this point.
#[must_use]
pub fn check_user_action(
    event: &Event,
    state: &State,
) -> Option<Result<SignatureFound, HopVerdict>> {
    let b = &event.body;
    let (Some(action), Some(sig)) = (b.get("action"), b.get("signature")) else {
        return None;
    };
    let failed = |e: UserActionError| HopVerdict::UserAction(e);
    let (object, signature) = match (
        serde_json::from_value::<ChallengeObject>(action.clone()),
        serde_json::from_value::<UserSignature>(sig.clone()),
    ) {
        (Ok(o), Ok(s)) => (o, s),
        (Err(e), _) | (_, Err(e)) => {
            return Some(Err(failed(UserActionError::Malformed {
                kind: event.kind.to_string(),
                reason: format!("the action or its signature does not parse: {e}"),
            })));
        }
    };
    let Some(tenant) = state.tenants.get(&event.tenant) else {
        return Some(Err(failed(UserActionError::UnknownTenant {
            tenant: event.tenant,
        })));
    };
    let params = params(event);
    if let Err(e) = crate::actions::check_binding(tenant, event, &object, &params) {
        return Some(Err(failed(e)));
    }
    Some(
        crate::actions::verify_with_credential(tenant, &object, &signature)
            .map(|(c, _): (&CredentialState, _)| SignatureFound {
                credential_type: match signature {
                    UserSignature::Passkey { .. } => "passkey",
                    UserSignature::Key { .. } => "key",
                },
                credential: c.credential.id.clone(),
                user: c.credential.user.clone(),
            })
            .map_err(failed),
    )
}

/// Whether `kind` is a policy worker's result (its hop has a policy check).
#[must_use]
pub fn has_policy_check(kind: &str) -> bool {
    POLICY_RESULT_KINDS.contains(&kind)
}
