//! The vocabulary: every event kind the node, the workers and the auditors' tools name, and
//! the sets of kinds each part reads (docs/design.md §3). One module, so a kind is spelled
//! once: the projections fold by these, the admission checks sort by these, the store
//! indexes by these and the workers follow these.

/// `manifest.published`: a signed manifest recorded in the log (the first entry is one).
pub const MANIFEST_PUBLISHED: &str = "manifest.published";
/// `service.attested`: a role's keys, bound to an attestation document.
pub const SERVICE_ATTESTED: &str = "service.attested";
/// `service.quarantined`: the log quarantined a measurement.
pub const SERVICE_QUARANTINED: &str = "service.quarantined";

/// `tenant.created`: the operator made a tenant and its first admin's invitation.
pub const TENANT_CREATED: &str = "tenant.created";
/// `user.invited`: an admin invited a user (an action).
pub const USER_INVITED: &str = "user.invited";
/// `user.registered`: an invitation was redeemed.
pub const USER_REGISTERED: &str = "user.registered";
/// `user.role_changed`: an admin changed a user's role (an action).
pub const USER_ROLE_CHANGED: &str = "user.role_changed";
/// `credential.registered`: a credential's public key, from a registration or an action.
pub const CREDENTIAL_REGISTERED: &str = "credential.registered";
/// `credential.revoked`: a credential stops (an action).
pub const CREDENTIAL_REVOKED: &str = "credential.revoked";
/// `wallet.requested` (an action).
pub const WALLET_REQUESTED: &str = "wallet.requested";
/// `transfer.requested` (an action).
pub const TRANSFER_REQUESTED: &str = "transfer.requested";
/// `policy.changed` (an action).
pub const POLICY_CHANGED: &str = "policy.changed";
/// `approval.decided` (an action).
pub const APPROVAL_DECIDED: &str = "approval.decided";

/// `policy.evaluated`: the policy engine's evaluation of a subject (a `transfer.requested`,
/// `policy.changed` or `wallet.requested`): in clear `{"subject", "outcome"}`, its reasons
/// sealed (govern-projections' `policy` module).
pub const POLICY_EVALUATED: &str = "policy.evaluated";
/// `transfer.approved`: the policy engine's decision that a transfer may be signed.
pub const TRANSFER_APPROVED: &str = "transfer.approved";
/// `transfer.rejected`: the policy engine's decision that a transfer will not be signed.
pub const TRANSFER_REJECTED: &str = "transfer.rejected";
/// `policy.activated`: the policy engine's decision that a policy change takes effect.
pub const POLICY_ACTIVATED: &str = "policy.activated";
/// `policy.rejected`: the policy engine's decision that a policy change does not take effect.
pub const POLICY_REJECTED: &str = "policy.rejected";
/// `wallet.approved`: the policy engine's decision that a wallet may be created.
pub const WALLET_APPROVED: &str = "wallet.approved";
/// `wallet.rejected`: the policy engine's decision that a wallet will not be created.
pub const WALLET_REJECTED: &str = "wallet.rejected";

/// `keys.rotated`: the key service added a version of the tenant's scope keys.
/// The signers' results (docs/design.md §8): a wallet's key made by DKG, a transfer signed,
/// a transfer whose chain of custody did not verify.
pub const WALLET_CREATED: &str = "wallet.created";
pub const TRANSFER_SIGNED: &str = "transfer.signed";
pub const TRANSFER_QUARANTINED: &str = "transfer.quarantined";

/// The signers' protocol traffic, carried by the log (docs/formats.md, "The signers"): a
/// member joining an attempt, one protocol message (or one part of it), an attempt given up
/// with its culprit, and the aux-info preparation's joins and results.
pub const MPC_JOIN: &str = "mpc.join";
pub const MPC_MESSAGE: &str = "mpc.message";
pub const MPC_ABORTED: &str = "mpc.aborted";
pub const AUX_JOIN: &str = "aux.join";
pub const AUX_READY: &str = "aux.ready";

pub const KEYS_ROTATED: &str = "keys.rotated";
/// `keys.shredded`: the key service deleted the tenant's seeds.
pub const KEYS_SHREDDED: &str = "keys.shredded";
/// `keys.audit`: the key service released scope keys to a service.
pub const KEYS_AUDIT: &str = "keys.audit";
/// `reads.audit`: a service opened sealed payloads.
pub const READS_AUDIT: &str = "reads.audit";

/// The kinds of the services fold and of the identity checks: manifests, identities,
/// quarantines.
pub const SERVICE_KINDS: [&str; 3] = [MANIFEST_PUBLISHED, SERVICE_ATTESTED, SERVICE_QUARANTINED];

/// The kinds of the tenant's key status.
pub const KEY_KINDS: [&str; 4] = [KEYS_ROTATED, KEYS_SHREDDED, KEYS_AUDIT, READS_AUDIT];

/// Every kind the policy engine (role `policy`) records: its evaluations and its decisions.
pub const POLICY_RESULT_KINDS: [&str; 7] = [
    POLICY_EVALUATED,
    TRANSFER_APPROVED,
    TRANSFER_REJECTED,
    POLICY_ACTIVATED,
    POLICY_REJECTED,
    WALLET_APPROVED,
    WALLET_REJECTED,
];

/// Every kind that carries a user's signature (`action`, `signature`, and either `salt` and
/// `params` in clear or, for a sealed kind, `clear` and the sealed `{"params", "salt"}`).
/// What the signers record about a tenant's request (tenant kinds: the tenant fold shows them).
pub const SIGNER_RESULT_KINDS: [&str; 3] = [WALLET_CREATED, TRANSFER_SIGNED, TRANSFER_QUARANTINED];

/// The signers' protocol kinds (not tenant kinds: the log checks them by the routing graph).
pub const MPC_KINDS: [&str; 5] = [MPC_JOIN, MPC_MESSAGE, MPC_ABORTED, AUX_JOIN, AUX_READY];

pub const ACTION_KINDS: [&str; 8] = [
    USER_INVITED,
    USER_ROLE_CHANGED,
    CREDENTIAL_REGISTERED,
    CREDENTIAL_REVOKED,
    WALLET_REQUESTED,
    TRANSFER_REQUESTED,
    POLICY_CHANGED,
    APPROVAL_DECIDED,
];

/// Whether the tenants fold reads `kind`: `tenant.created`, `user.registered`, every action
/// kind, the key kinds and the policy worker's results.
#[must_use]
pub fn is_tenant_kind(kind: &str) -> bool {
    kind == TENANT_CREATED
        || kind == USER_REGISTERED
        || ACTION_KINDS.contains(&kind)
        || KEY_KINDS.contains(&kind)
        || POLICY_RESULT_KINDS.contains(&kind)
        || SIGNER_RESULT_KINDS.contains(&kind)
}

/// Whether the log indexes entries of `kind` (`i` keys) so the append policy can rebuild its
/// view of manifests, identities and tenants when the log reopens, without reading every
/// entry: [`SERVICE_KINDS`] and the tenant kinds ([`is_tenant_kind`]).
#[must_use]
pub fn is_tracked(kind: &str) -> bool {
    SERVICE_KINDS.contains(&kind) || kind == AUX_JOIN || kind == AUX_READY || is_tenant_kind(kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn govern_event_kind(k: &str) -> bool {
        crate::event::Kind::new(k).is_ok()
    }

    #[test]
    fn the_sets_are_disjoint_where_the_folds_need_them_to_be() {
        for k in SERVICE_KINDS {
            assert!(!is_tenant_kind(k), "{k}");
            assert!(is_tracked(k), "{k}");
        }
        for k in ACTION_KINDS
            .iter()
            .chain(KEY_KINDS.iter())
            .chain(POLICY_RESULT_KINDS.iter())
        {
            assert!(is_tenant_kind(k), "{k}");
        }
        assert!(is_tenant_kind(TRANSFER_SIGNED));
        for k in MPC_KINDS {
            assert!(!is_tenant_kind(k), "{k}");
            assert!(govern_event_kind(k), "{k}");
        }
        // The aux-info preparation is service state (`/v1/services`); the protocol's
        // messages are not.
        assert!(is_tracked(AUX_READY));
        assert!(!is_tracked(MPC_MESSAGE));
        for k in POLICY_RESULT_KINDS {
            assert!(!ACTION_KINDS.contains(&k), "{k}");
            assert!(!SERVICE_KINDS.contains(&k), "{k}");
            assert!(govern_event_kind(k), "{k}");
        }
    }
}
