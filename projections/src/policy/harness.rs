//! A test log of one tenant: signed events built with real `govern_core` types, folded into
//! a [`PolicyBook`] as they are appended, and a simulated policy worker that records what
//! the book owes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ed25519_dalek::SigningKey;
use govern_core::event::{
    Event, Kind, Producer, RequestId, Role, SignedEvent, TenantId, Timestamp,
};
use govern_core::ids::LeafHash;
use govern_core::kinds::{
    APPROVAL_DECIDED, KEYS_SHREDDED, POLICY_CHANGED, POLICY_EVALUATED, TENANT_CREATED,
    TRANSFER_REQUESTED, USER_REGISTERED, WALLET_REQUESTED,
};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::{Computed, Decision, Evaluation, Mismatch, Owed, PolicyBook, RecordedDecision};

/// 2026-01-01T00:00:00.000Z.
pub const T0: i64 = 1_767_225_600_000;
/// One second, in ms.
pub const S: i64 = 1000;

/// A time `ms` after [`T0`].
pub fn at(ms: i64) -> Timestamp {
    Timestamp::from_unix_ms(T0 + ms).unwrap()
}

/// An address `0x` + 40 hex digits made of `byte`.
pub fn addr(byte: u8) -> String {
    format!("0x{}", hex::encode([byte; 20]))
}

/// A transfer's params: native `amount` to `to`.
pub fn native(to: &str, amount: &str) -> Map<String, Value> {
    obj(json!({
        "kind": "Native", "to": to, "amount": amount, "chain_id": "1", "nonce": "0",
        "max_fee_per_gas": "1", "max_priority_fee_per_gas": "1", "gas_limit": "21000"
    }))
}

/// An ERC-20 transfer's params.
pub fn erc20(contract: &str, to: &str, amount: &str) -> Map<String, Value> {
    let mut p = native(to, amount);
    p.insert("kind".into(), "Erc20".into());
    p.insert("contract".into(), contract.into());
    p
}

/// A JSON object.
pub fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        other => panic!("not an object: {other}"),
    }
}

/// `{"policy": policy}`.
pub fn set(policy: Value) -> Map<String, Value> {
    obj(json!({ "policy": policy }))
}

/// One appended entry and the payload its reader opened.
#[derive(Clone, Debug)]
pub struct Entry {
    pub signed: SignedEvent,
    pub opened: Option<Map<String, Value>>,
}

/// A log of one tenant and its book.
#[derive(Debug)]
pub struct Log {
    key: SigningKey,
    pub tenant: TenantId,
    pub book: PolicyBook,
    pub entries: Vec<Entry>,
    /// Mismatches `apply` returned, with their index.
    pub mismatches: Vec<Mismatch>,
    ids: u128,
}

impl Default for Log {
    fn default() -> Self {
        Self::new()
    }
}

impl Log {
    /// A log whose first entry is the tenant's `tenant.created`, at [`T0`].
    pub fn new() -> Self {
        let mut log = Self {
            key: SigningKey::from_bytes(&[9; 32]),
            tenant: TenantId(Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0001)),
            book: PolicyBook::new(),
            entries: Vec::new(),
            mismatches: Vec::new(),
            ids: 0x1000,
        };
        let request = log.id();
        log.push(
            TENANT_CREATED,
            RequestId(request),
            "edge",
            at(0),
            json!({"name": "t", "admin": "a", "rp_id": "localhost", "origin": "http://localhost", "invite": "00"}),
            None,
        );
        log
    }

    fn id(&mut self) -> Uuid {
        self.ids += 1;
        Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0000 | self.ids)
    }

    /// Sign and fold in an event; returns its index and leaf.
    pub fn push(
        &mut self,
        kind: &str,
        request: RequestId,
        role: &str,
        time: Timestamp,
        body: Value,
        opened: Option<Map<String, Value>>,
    ) -> (u64, LeafHash) {
        let event = Event::new(
            Kind::new(kind).unwrap(),
            self.tenant,
            request,
            Producer::new(Role::new(role).unwrap(), &self.key.verifying_key()),
            time,
            obj(body),
        );
        let signed = event.sign(&self.key).unwrap();
        let index = self.entries.len() as u64;
        if let Err(m) = self.book.apply(index, &signed, opened.as_ref()) {
            self.mismatches.push(m);
        }
        let leaf = signed.leaf_hash();
        self.entries.push(Entry { signed, opened });
        (index, leaf)
    }

    /// A registered user.
    pub fn user(&mut self) -> String {
        let user = self.id().to_string();
        let request = RequestId(self.id());
        self.push(
            USER_REGISTERED,
            request,
            "edge",
            at(0),
            json!({"user": user, "invite": "00"}),
            None,
        );
        user
    }

    fn action(user: &str, kind: &str, request: RequestId, path: &str) -> Value {
        json!({"domain": "govern/action/v1", "user": user, "kind": kind,
               "request": request.0.to_string(), "method": "POST", "path": path})
    }

    /// A `wallet.requested` by `user` at `ms`.
    pub fn wallet(&mut self, user: &str, ms: i64) -> RequestId {
        let request = RequestId(self.id());
        let body = json!({"action": Self::action(user, WALLET_REQUESTED, request, "/v1/wallets"), "clear": {}});
        self.push(WALLET_REQUESTED, request, "edge", at(ms), body, None);
        request
    }

    /// A `transfer.requested` by `user` from `wallet` at `ms`, its params opened.
    pub fn transfer(
        &mut self,
        user: &str,
        wallet: RequestId,
        ms: i64,
        params: Map<String, Value>,
    ) -> RequestId {
        self.transfer_opened(user, wallet, ms, Some(params))
    }

    /// A `transfer.requested` whose params are `opened` (`None`: not opened).
    pub fn transfer_opened(
        &mut self,
        user: &str,
        wallet: RequestId,
        ms: i64,
        opened: Option<Map<String, Value>>,
    ) -> RequestId {
        let request = RequestId(self.id());
        let path = format!("/v1/wallets/{}/transfers", wallet.0);
        let body =
            json!({"action": Self::action(user, TRANSFER_REQUESTED, request, &path), "clear": {}});
        self.push(TRANSFER_REQUESTED, request, "edge", at(ms), body, opened);
        request
    }

    /// A `policy.changed` by `user` at `ms` with these params (`None`: not opened).
    pub fn change(&mut self, user: &str, ms: i64, params: Option<Map<String, Value>>) -> RequestId {
        let request = RequestId(self.id());
        let body = json!({"action": Self::action(user, POLICY_CHANGED, request, "/v1/policies"), "clear": {}});
        self.push(POLICY_CHANGED, request, "edge", at(ms), body, params);
        request
    }

    /// An `approval.decided` by `user` on `request` at `ms`; returns its leaf.
    pub fn vote(&mut self, user: &str, request: RequestId, approve: bool, ms: i64) -> LeafHash {
        let decision = if approve { "approve" } else { "deny" };
        let path = format!("/v1/requests/{}/approvals/{decision}", request.0);
        let body = json!({
            "action": Self::action(user, APPROVAL_DECIDED, request, &path),
            "clear": {"decision": decision},
            "user": user,
        });
        self.push(APPROVAL_DECIDED, request, "edge", at(ms), body, None)
            .1
    }

    /// `keys.shredded` at `ms`.
    pub fn shred(&mut self, ms: i64) {
        let request = RequestId(self.id());
        self.push(KEYS_SHREDDED, request, "keys", at(ms), json!({}), None);
    }

    /// A `policy.evaluated` as recorded, with sealed members `opened`.
    pub fn record_evaluation(
        &mut self,
        request: RequestId,
        ms: i64,
        body: Map<String, Value>,
        opened: Option<Map<String, Value>>,
    ) -> LeafHash {
        self.push(
            POLICY_EVALUATED,
            request,
            "policy",
            at(ms),
            Value::Object(body),
            opened,
        )
        .1
    }

    /// A decision of `kind` as recorded.
    pub fn record_decision(
        &mut self,
        request: RequestId,
        kind: &str,
        ms: i64,
        body: Map<String, Value>,
    ) -> LeafHash {
        self.push(kind, request, "policy", at(ms), Value::Object(body), None)
            .1
    }

    /// The simulated policy worker at `ms`: record what is owed, one at a time (each
    /// recorded result may change what is owed next), until nothing is. The fold must
    /// agree with every result it owed.
    pub fn work(&mut self, ms: i64) {
        for _ in 0..10_000 {
            let Some(owed) = self.book.owed(at(ms)).into_iter().next() else {
                return;
            };
            let before = self.mismatches.len();
            match owed {
                Owed::Evaluate {
                    request,
                    subject_leaf,
                    evaluation,
                    ..
                } => {
                    self.record_evaluation(
                        request,
                        ms,
                        evaluation.clear_body(&subject_leaf),
                        Some(evaluation.sealed_body()),
                    );
                }
                Owed::Decide {
                    request,
                    kind,
                    evaluation_leaf,
                    decision,
                    ..
                } => {
                    self.record_decision(request, kind, ms, decision.body(&evaluation_leaf));
                }
            }
            assert_eq!(self.mismatches.len(), before, "{:?}", self.mismatches);
        }
        panic!("the worker never finished");
    }

    /// The computed evaluation of `request`.
    pub fn evaluation(&self, request: RequestId) -> &Evaluation {
        match &self
            .book
            .subject(&self.tenant, &request)
            .unwrap()
            .evaluation
        {
            Computed::Known(e) => e,
            Computed::Unknown => panic!("unknown evaluation"),
        }
    }

    /// The computed evaluation's state.
    pub fn computed(&self, request: RequestId) -> &Computed {
        &self
            .book
            .subject(&self.tenant, &request)
            .unwrap()
            .evaluation
    }

    /// The recorded decision of `request`.
    pub fn decided(&self, request: RequestId) -> Option<&RecordedDecision> {
        self.book
            .subject(&self.tenant, &request)
            .unwrap()
            .decided
            .as_ref()
    }

    /// The recorded decision's kind and reason.
    pub fn decided_as(&self, request: RequestId) -> Option<(String, String)> {
        self.decided(request)
            .map(|d| (d.kind.clone(), d.reason.clone()))
    }

    /// The decision owed at `ms`.
    pub fn decision_at(&self, request: RequestId, ms: i64) -> Option<Decision> {
        self.book.decision_at(&self.tenant, &request, at(ms))
    }

    /// Replay every entry into a fresh book: the mismatches it finds.
    pub fn replay(&self, keep: impl Fn(&Entry) -> bool) -> (PolicyBook, Vec<Mismatch>) {
        let mut book = PolicyBook::new();
        let mut found = Vec::new();
        for (i, e) in self.entries.iter().enumerate() {
            let opened = if keep(e) { e.opened.as_ref() } else { None };
            if let Err(m) = book.apply(i as u64, &e.signed, opened) {
                found.push(m);
            }
        }
        (book, found)
    }
}
