//! Which witness policy a node's checkpoints are checked under when the caller names none:
//! the one the node announces at `/v1/log`, held to the one remembered from last time.

use govern_core::witness::{Cosigners, PolicyError, PolicyFile, PolicyWitness, WitnessPolicy};

use crate::wire::WitnessesInfo;

/// A witness policy the node announces that a verifier must not take in place of the one it
/// checked against last time.
#[derive(Debug, thiserror::Error)]
pub enum PinnedPolicyError {
    /// The announced policy does not hold together.
    #[error(transparent)]
    Announced(#[from] PolicyError),
    /// The node announces no policy; the remembered one asks for cosignatures.
    #[error(
        "the node announces no witness policy, but {remembered} was checked when last verified; pass --witnesses FILE to verify under another"
    )]
    NoneAnnounced {
        /// The remembered policy.
        remembered: String,
    },
    /// The node announces a policy that accepts a set of cosigners the remembered one
    /// does not ([`WitnessPolicy::at_least_as_strong_as`]).
    #[error(
        "the node announces the witness policy {announced}, weaker than {remembered} checked when last verified; pass --witnesses FILE to verify under another"
    )]
    Weaker {
        /// The announced policy.
        announced: String,
        /// The remembered policy.
        remembered: String,
    },
}

/// `k of [name+<key ID>, …]`: a policy in one line, each witness by name and key ID.
#[must_use]
pub fn summary(policy: &WitnessPolicy) -> String {
    let names: Vec<String> = policy
        .witnesses()
        .iter()
        .map(|w| format!("{}+{}", w.name(), hex::encode(w.key_id())))
        .collect();
    format!("{} of [{}]", policy.quorum(), names.join(", "))
}

/// The witness policy to check a node's checkpoints under when none is given, with where it
/// came from: the one the node announces at `/v1/log`, which must be at least as strong as
/// `remembered` (the policy checked against last time:
/// [`WitnessPolicy::at_least_as_strong_as`]); none, when it announces none, which a
/// remembered policy allows only when it asks for nothing.
///
/// # Errors
/// An announced policy that does not hold together, and [`PinnedPolicyError`].
pub fn announced_or_remembered(
    announced: Option<WitnessesInfo>,
    remembered: Option<&WitnessPolicy>,
) -> Result<Option<(WitnessPolicy, &'static str)>, PinnedPolicyError> {
    let announced = announced.map(announced_policy).transpose()?;
    let Some(remembered) = remembered else {
        return Ok(announced.map(|a| (a, "announced by the node")));
    };
    match announced {
        Some(a) if a.at_least_as_strong_as(remembered) => {
            let source = if remembered.at_least_as_strong_as(&a) {
                "announced by the node, as remembered"
            } else if remembered.is_empty() {
                "announced by the node"
            } else {
                "announced by the node, stronger than the one remembered"
            };
            Ok(Some((a, source)))
        }
        Some(a) => Err(PinnedPolicyError::Weaker {
            announced: summary(&a),
            remembered: summary(remembered),
        }),
        None if remembered.is_empty() => Ok(None),
        None => Err(PinnedPolicyError::NoneAnnounced {
            remembered: summary(remembered),
        }),
    }
}

/// The policy a node's `/v1/log` (or an export's `v1/log`) names.
///
/// # Errors
/// A [`PolicyError`] when it does not hold together.
pub fn announced_policy(announced: WitnessesInfo) -> Result<WitnessPolicy, PolicyError> {
    let file = PolicyFile {
        quorum: announced.quorum,
        witnesses: announced
            .vkeys
            .into_iter()
            .map(|vkey| PolicyWitness { vkey, url: None })
            .collect(),
    };
    WitnessPolicy::from_file(&file)
}

/// `name at <RFC 3339 time>, …` for the witnesses that cosigned.
#[must_use]
pub fn describe(c: &Cosigners) -> String {
    if c.signed.is_empty() {
        return "no witness".into();
    }
    c.signed
        .iter()
        .map(|(name, t)| {
            let at = i64::try_from(*t)
                .ok()
                .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok())
                .and_then(|t| {
                    t.format(&time::format_description::well_known::Rfc3339)
                        .ok()
                })
                .unwrap_or_else(|| t.to_string());
            format!("{name} at {at}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The line saying who cosigned a checkpoint under `policy` (named by where it came from,
/// `source`): `witnessed: cosigned by …`.
#[must_use]
pub fn witnessed_line(policy: &WitnessPolicy, cosigners: &Cosigners, source: &str) -> String {
    format!(
        "witnessed: cosigned by {} ({} of {} witnesses, quorum {}; policy {source})",
        describe(cosigners),
        cosigners.signed.len(),
        policy.witnesses().len(),
        policy.quorum()
    )
}
