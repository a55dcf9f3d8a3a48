//! A policy worker that lies (tests only): it holds the live `policy` identity (attested
//! through the data dir's dev CA as the node's own binary, as a compromised worker would),
//! decides everything as the honest worker does except transfers that need an approval:
//! those it reports as allowed and approves at once. The log takes its results (they are
//! the live identity's, well formed); only a recomputation of the outcome catches them.

use std::path::Path;
use std::time::Duration;

use govern_core::event::{RequestId, Role, Timestamp};
use govern_core::kinds::{POLICY_CHANGED, POLICY_EVALUATED, TRANSFER_APPROVED, TRANSFER_REQUESTED};
use govern_projections::policy::{Decision, Outcome, Owed, PolicyBook, Reason};
use govern_workers::runtime::{Runtime, WorkerConfig};

pub struct Liar {
    rt: Runtime,
    book: PolicyBook,
    /// The transfers it lied about.
    pub lied: Vec<RequestId>,
}

impl Liar {
    /// A liar against the node at `url` of data dir `data`, keeping its state in `state`.
    pub async fn attest(
        url: &str,
        data: &Path,
        state: &Path,
        witnesses: Option<govern_core::witness::WitnessPolicy>,
    ) -> Self {
        let role = Role::new("policy").unwrap();
        let nsm = govern_workers::nsm::SimulatedNsm::open(
            &data.join("dev-ca"),
            Path::new(super::BIN),
            role.clone(),
        )
        .unwrap();
        let rt = Runtime::new(
            WorkerConfig {
                url: url.to_string(),
                role,
                log_key: govern_api::DataDir::open_existing(data)
                    .unwrap()
                    .verifier_key(),
                witnesses,
                state_dir: state.to_path_buf(),
                scopes: vec!["approvals".into(), "policies".into(), "transfers".into()],
            },
            Box::new(nsm),
        )
        .unwrap();
        Self {
            rt,
            book: PolicyBook::default(),
            lied: Vec::new(),
        }
    }

    /// Follow, attest if due, and append what it owes (lying where it lies); then wait a
    /// little for the log to grow.
    pub async fn round(&mut self) {
        let rt = &mut self.rt;
        let batch = rt.follow(PolicyBook::reads).await.unwrap();
        if rt.attestation_due() {
            rt.attest().await.unwrap();
        }
        for (index, signed) in batch {
            let event = signed.event();
            let mut opened = None;
            if [TRANSFER_REQUESTED, POLICY_CHANGED].contains(&event.kind.as_str()) {
                let (scope, version) = govern_core::seal::sealed_scope(event).unwrap();
                let key = rt.scope_key(event.tenant, &scope, version).await.unwrap();
                opened = Some(govern_core::seal::open_action(event, &key).unwrap());
            }
            let _ = self.book.apply(index, &signed, opened.as_ref());
        }
        let now = Timestamp::now();
        for owed in self.book.owed(now) {
            match owed {
                Owed::Evaluate {
                    tenant,
                    request,
                    subject_leaf,
                    mut evaluation,
                } => {
                    let lie = evaluation.subject.kind == TRANSFER_REQUESTED
                        && evaluation.outcome == Outcome::Approval;
                    if lie {
                        evaluation.outcome = Outcome::Allow;
                        evaluation.groups.clear();
                        evaluation.deadline = None;
                    }
                    let sealed = govern_core::canonical::to_vec(&evaluation.sealed_body()).unwrap();
                    let e = rt
                        .sign(
                            POLICY_EVALUATED,
                            tenant,
                            request,
                            vec![subject_leaf],
                            evaluation.clear_body(&subject_leaf),
                            Some(("policies", sealed)),
                            now,
                        )
                        .await
                        .unwrap();
                    rt.append(&e).await.unwrap();
                    if lie {
                        let approve = Decision {
                            kind: TRANSFER_APPROVED,
                            reason: Reason::Allowed,
                            approvals: Vec::new(),
                        };
                        let d = rt
                            .sign(
                                TRANSFER_APPROVED,
                                tenant,
                                request,
                                vec![e.leaf_hash()],
                                approve.body(&e.leaf_hash()),
                                None,
                                now,
                            )
                            .await
                            .unwrap();
                        rt.append(&d).await.unwrap();
                        self.lied.push(request);
                    }
                }
                Owed::Decide {
                    tenant,
                    request,
                    kind,
                    evaluation_leaf,
                    decision,
                } => {
                    if self.lied.contains(&request) {
                        continue;
                    }
                    let e = rt
                        .sign(
                            kind,
                            tenant,
                            request,
                            decision.parents(&evaluation_leaf),
                            decision.body(&evaluation_leaf),
                            None,
                            now,
                        )
                        .await
                        .unwrap();
                    rt.append(&e).await.unwrap();
                }
            }
        }
        rt.wait_for_growth(Duration::from_millis(100)).await;
    }
}
