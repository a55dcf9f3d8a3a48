//! The signers' protocols carried by the log (docs/formats.md, "The signers"):
//! committees, execution ids, the wire form of a protocol message (parts, HPKE sealing of
//! point-to-point messages), and one protocol run driven on a thread of its own.
//!
//! A protocol (cggmp24's aux info, key generation, signing) is a round-based state machine
//! ([`round_based::state_machine`]). [`drive`] runs it: each message it sends goes to the
//! caller's `send` (which appends it to the log), each message it waits for comes from its
//! inbox (which the signer's follower fills from the log, in log order). The log's order is
//! the reliable broadcast: every party reads the same broadcast entry.

use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hpke::{Deserializable as _, OpModeR, OpModeS, Serializable as _};
use round_based::state_machine::{ProceedResult, StateMachine};
use round_based::{Incoming, MessageDestination, MessageType};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest as _, Sha256};

type Kem = hpke::kem::X25519HkdfSha256;
type Kdf = hpke::kdf::HkdfSha256;
type Aead = hpke::aead::ChaCha20Poly1305;

/// The signers, by index 1..=5 (role `signer-N`).
pub const SIGNERS: u16 = 5;
/// Signatures need this many of them.
pub const THRESHOLD: u16 = 3;
/// The most bytes of a message one `mpc.message` carries (base64 in the event, which the
/// log caps at 65,535 bytes); a longer message goes in parts.
pub const PART_BYTES: usize = 45_000;
/// The most parts of one message (8 × 45,000 bytes: more than any cggmp24 message).
pub const PARTS_MAX: usize = 64;

/// The ten 3-of-5 committees, each as signer indices (1-based), in lexicographic order.
#[must_use]
pub fn committees() -> Vec<[u16; 3]> {
    let mut out = Vec::with_capacity(10);
    for a in 1..=SIGNERS {
        for b in a + 1..=SIGNERS {
            for c in b + 1..=SIGNERS {
                out.push([a, b, c]);
            }
        }
    }
    out
}

/// The committee of attempt `attempt` of a request whose first event has leaf hash `seed`:
/// the ten committees ordered by SHA-256(`"govern/committee/v1"` ‖ seed ‖ committee), and
/// attempt k takes the k-th (mod 10). Every signer computes the same rotation from the log,
/// and no signer chooses where a request starts.
#[must_use]
pub fn committee(seed: &[u8; 32], attempt: u32) -> [u16; 3] {
    let mut all = committees();
    all.sort_by_key(|c| {
        let mut h = Sha256::new();
        h.update(b"govern/committee/v1");
        h.update(seed);
        for i in c {
            h.update(i.to_be_bytes());
        }
        <[u8; 32]>::from(h.finalize())
    });
    all[(attempt as usize) % all.len()]
}

/// The execution id of attempt `attempt` by `members` of the session opened by the entry
/// with leaf hash `session`: SHA-256(`"govern/mpc/v1"` ‖ purpose ‖ 0 ‖ session ‖ members ‖
/// attempt). It is the protocol's `ExecutionId` and the events' `session`.
#[must_use]
pub fn execution_id(purpose: &str, session: &[u8; 32], members: &[u16], attempt: u32) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"govern/mpc/v1");
    h.update(purpose.as_bytes());
    h.update([0]);
    h.update(session);
    h.update(
        u16::try_from(members.len())
            .unwrap_or(u16::MAX)
            .to_be_bytes(),
    );
    for m in members {
        h.update(m.to_be_bytes());
    }
    h.update(attempt.to_be_bytes());
    h.finalize().into()
}

/// The HPKE `info` of a point-to-point message: it binds the ciphertext to its execution,
/// round, sender and recipient, so a message replayed into another session, round or pair
/// does not open.
#[must_use]
pub fn seal_info(eid: &[u8; 32], round: u32, from: u16, to: u16) -> Vec<u8> {
    let mut info = b"govern/mpc-p2p/v1".to_vec();
    info.extend_from_slice(eid);
    info.extend_from_slice(&round.to_be_bytes());
    info.extend_from_slice(&from.to_be_bytes());
    info.extend_from_slice(&to.to_be_bytes());
    info
}

/// Seal a point-to-point message to the recipient's X25519 key: `enc ‖ ct`.
///
/// # Errors
/// The key is not an X25519 key.
pub fn seal(recipient: &[u8; 32], info: &[u8], plain: &[u8]) -> Result<Vec<u8>, String> {
    let pk = <Kem as hpke::Kem>::PublicKey::from_bytes(recipient)
        .map_err(|_| "not an X25519 key".to_string())?;
    let mut rng = rand_core::OsRng;
    let (enc, ct) = hpke::single_shot_seal::<Aead, Kdf, Kem, _>(
        &OpModeS::Base,
        &pk,
        info,
        plain,
        b"",
        &mut rng,
    )
    .map_err(|e| format!("HPKE: {e}"))?;
    let mut out = enc.to_bytes().to_vec();
    out.extend_from_slice(&ct);
    Ok(out)
}

/// Open `enc ‖ ct` with this signer's X25519 secret.
///
/// # Errors
/// It does not open (another key, another `info`, a changed byte).
pub fn open(
    secret: &x25519_dalek::StaticSecret,
    info: &[u8],
    sealed: &[u8],
) -> Result<Vec<u8>, String> {
    const ENC: usize = 32;
    if sealed.len() < ENC {
        return Err("shorter than its encapsulated key".into());
    }
    let sk = <Kem as hpke::Kem>::PrivateKey::from_bytes(secret.as_bytes())
        .map_err(|_| "the X25519 secret".to_string())?;
    let enc = <Kem as hpke::Kem>::EncappedKey::from_bytes(&sealed[..ENC])
        .map_err(|_| "not an encapsulated key".to_string())?;
    hpke::single_shot_open::<Aead, Kdf, Kem>(&OpModeR::Base, &sk, &enc, info, &sealed[ENC..], b"")
        .map_err(|_| "does not open with this signer's key for this session, round and pair".into())
}

/// One `mpc.message` body's wire fields (docs/formats.md): the message (or its part),
/// base64; point-to-point ones sealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wire {
    /// The execution id, hex.
    pub session: String,
    /// The sender's message number to this destination (0, 1, …: its rounds in order).
    pub round: u32,
    /// The sender's signer index.
    pub from: u16,
    /// The recipient's signer index, `None` for a broadcast.
    pub to: Option<u16>,
    /// This part, and how many there are.
    pub part: u16,
    pub parts: u16,
    /// The part's bytes.
    pub data: Vec<u8>,
}

impl Wire {
    /// The parts of one message.
    #[must_use]
    pub fn split(session: &str, round: u32, from: u16, to: Option<u16>, bytes: &[u8]) -> Vec<Self> {
        let chunks: Vec<&[u8]> = if bytes.is_empty() {
            vec![&[][..]]
        } else {
            bytes.chunks(PART_BYTES).collect()
        };
        let parts = u16::try_from(chunks.len()).unwrap_or(u16::MAX);
        chunks
            .into_iter()
            .enumerate()
            .map(|(i, c)| Self {
                session: session.to_string(),
                round,
                from,
                to,
                part: u16::try_from(i).unwrap_or(u16::MAX),
                parts,
                data: c.to_vec(),
            })
            .collect()
    }

    /// The body of its `mpc.message`.
    #[must_use]
    pub fn body(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut m = serde_json::Map::new();
        m.insert("session".into(), self.session.clone().into());
        m.insert("round".into(), self.round.into());
        m.insert("from".into(), format!("signer-{}", self.from).into());
        m.insert(
            "to".into(),
            self.to
                .map_or_else(|| "all".to_string(), |t| format!("signer-{t}"))
                .into(),
        );
        m.insert("part".into(), self.part.into());
        m.insert("parts".into(), self.parts.into());
        m.insert("data".into(), B64.encode(&self.data).into());
        m
    }

    /// Read a body back.
    ///
    /// # Errors
    /// What is missing or malformed.
    pub fn parse(body: &serde_json::Map<String, serde_json::Value>) -> Result<Self, String> {
        use serde_json::Value;
        let signer = |v: Option<&Value>, field: &str| {
            v.and_then(Value::as_str)
                .and_then(|s| s.strip_prefix("signer-"))
                .and_then(|n| n.parse::<u16>().ok())
                .filter(|n| (1..=SIGNERS).contains(n))
                .ok_or_else(|| format!("{field}: not a signer"))
        };
        let num = |field: &str, max: u64| {
            body.get(field)
                .and_then(Value::as_u64)
                .filter(|n| *n <= max)
                .ok_or_else(|| format!("{field}: not a number up to {max}"))
        };
        let to = match body.get("to").and_then(Value::as_str) {
            Some("all") => None,
            _ => Some(signer(body.get("to"), "to")?),
        };
        let parts = u16::try_from(num("parts", PARTS_MAX as u64)?).map_err(|e| e.to_string())?;
        let part = u16::try_from(num("part", PARTS_MAX as u64)?).map_err(|e| e.to_string())?;
        if parts == 0 || part >= parts {
            return Err("part: not below parts".into());
        }
        Ok(Self {
            session: body
                .get("session")
                .and_then(Value::as_str)
                .filter(|s| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()))
                .ok_or("session: not 64 hex digits")?
                .to_string(),
            round: u32::try_from(num("round", u64::from(u32::MAX))?).map_err(|e| e.to_string())?,
            from: signer(body.get("from"), "from")?,
            to,
            part,
            parts,
            data: body
                .get("data")
                .and_then(Value::as_str)
                .and_then(|d| B64.decode(d).ok())
                .ok_or("data: not base64")?,
        })
    }
}

/// A message for a running protocol, from the log: its sender (the protocol's party index)
/// and bytes, or what was wrong with what that sender put in the log.
#[derive(Debug)]
pub enum Inbound {
    /// A whole message.
    Message {
        /// The sender's party index in this protocol.
        from: u16,
        /// Broadcast (`true`) or point-to-point.
        broadcast: bool,
        /// Its JSON.
        bytes: Vec<u8>,
    },
    /// What the sender sent does not open or is malformed: the protocol stops and names it.
    Bad {
        /// The sender's party index.
        from: u16,
        /// What was wrong.
        reason: String,
    },
}

/// A message a running protocol sends: to one party (its protocol index) or all.
#[derive(Debug)]
pub struct Outbound {
    /// `None`: a broadcast.
    pub to: Option<u16>,
    /// Its JSON.
    pub bytes: Vec<u8>,
}

/// Why a protocol run stopped without its output.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RunError {
    /// A party sent what the protocol cannot take (it does not open, does not parse, or the
    /// protocol's checks blame it).
    #[error("party {party} sent a bad message: {reason}")]
    Culprit {
        /// Its party index in this protocol.
        party: u16,
        /// What was wrong.
        reason: String,
    },
    /// The protocol failed without naming a party.
    #[error("the protocol failed: {0}")]
    Failed(String),
    /// Its deadline passed waiting for a message.
    #[error("no message before the deadline")]
    Timeout,
    /// The signer stopped the run (the request was settled, or a newer attempt began).
    #[error("stopped")]
    Stopped,
}

/// The party cggmp24's error blames, when its report names one (`faulty_party: N` in its
/// abort evidence: the crate keeps the evidence type private, so its debug form is read).
#[must_use]
pub fn blamed(report: &str) -> Option<u16> {
    let at = report.find("faulty_party: ")? + "faulty_party: ".len();
    let digits: String = report[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// Drive `machine` to its output: send what it sends through `send`, feed it what `inbox`
/// brings, and give up at `deadline`.
///
/// # Errors
/// [`RunError`].
pub fn drive<M, T, E>(
    mut machine: M,
    inbox: &Receiver<Inbound>,
    send: &mut dyn FnMut(Outbound),
    deadline: Instant,
) -> Result<T, RunError>
where
    M: StateMachine<Output = Result<T, E>>,
    M::Msg: Serialize + DeserializeOwned,
    E: std::fmt::Debug,
{
    let mut id = 0u64;
    loop {
        match machine.proceed() {
            ProceedResult::SendMsg(out) => {
                let bytes = serde_json::to_vec(&out.msg)
                    .map_err(|e| RunError::Failed(format!("cannot encode a message: {e}")))?;
                let to = match out.recipient {
                    MessageDestination::AllParties => None,
                    MessageDestination::OneParty(j) => Some(j),
                };
                send(Outbound { to, bytes });
            }
            ProceedResult::NeedsOneMoreMessage => {
                let wait = deadline.saturating_duration_since(Instant::now());
                let next = match inbox.recv_timeout(wait.max(Duration::from_millis(1))) {
                    Ok(m) => m,
                    Err(RecvTimeoutError::Timeout) => return Err(RunError::Timeout),
                    Err(RecvTimeoutError::Disconnected) => return Err(RunError::Stopped),
                };
                let (from, broadcast, bytes) = match next {
                    Inbound::Message {
                        from,
                        broadcast,
                        bytes,
                    } => (from, broadcast, bytes),
                    Inbound::Bad { from, reason } => {
                        return Err(RunError::Culprit {
                            party: from,
                            reason,
                        });
                    }
                };
                let msg: M::Msg =
                    serde_json::from_slice(&bytes).map_err(|e| RunError::Culprit {
                        party: from,
                        reason: format!("not a message of this protocol: {e}"),
                    })?;
                machine
                    .received_msg(Incoming {
                        id,
                        sender: from,
                        msg_type: if broadcast {
                            MessageType::Broadcast
                        } else {
                            MessageType::P2P
                        },
                        msg,
                    })
                    .map_err(|_| RunError::Failed("the protocol did not take a message".into()))?;
                id += 1;
            }
            ProceedResult::Yielded => {}
            ProceedResult::Output(Ok(out)) => return Ok(out),
            ProceedResult::Output(Err(e)) => {
                let report = format!("{e:?}");
                return Err(match blamed(&report) {
                    Some(party) => RunError::Culprit {
                        party,
                        reason: report,
                    },
                    None => RunError::Failed(report),
                });
            }
            ProceedResult::Error(e) => return Err(RunError::Failed(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rotation_visits_all_ten_committees_and_depends_on_the_seed() {
        let a: Vec<_> = (0..10).map(|k| committee(&[1; 32], k)).collect();
        let mut sorted = a.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), 10);
        assert_eq!(committee(&[1; 32], 10), a[0]);
        let b: Vec<_> = (0..10).map(|k| committee(&[2; 32], k)).collect();
        assert_ne!(a, b);
    }

    #[test]
    fn a_sealed_message_opens_only_for_its_session_round_and_pair() {
        let secret = x25519_dalek::StaticSecret::random_from_rng(rand_core::OsRng);
        let public = x25519_dalek::PublicKey::from(&secret).to_bytes();
        let eid = [9u8; 32];
        let sealed = seal(&public, &seal_info(&eid, 1, 2, 3), b"hello").expect("sealed");
        assert_eq!(
            open(&secret, &seal_info(&eid, 1, 2, 3), &sealed).as_deref(),
            Ok(&b"hello"[..])
        );
        for info in [
            seal_info(&[8; 32], 1, 2, 3),
            seal_info(&eid, 2, 2, 3),
            seal_info(&eid, 1, 4, 3),
            seal_info(&eid, 1, 2, 5),
        ] {
            assert!(open(&secret, &info, &sealed).is_err());
        }
        let mut flipped = sealed.clone();
        flipped[40] ^= 1;
        assert!(open(&secret, &seal_info(&eid, 1, 2, 3), &flipped).is_err());
    }

    #[test]
    fn long_messages_go_in_parts_and_come_back_whole() {
        let bytes: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let parts = Wire::split(&"ab".repeat(32), 3, 1, Some(2), &bytes);
        assert_eq!(parts.len(), 3);
        let mut whole = Vec::new();
        for p in &parts {
            let back = Wire::parse(&p.body()).expect("parses");
            assert_eq!(&back, p);
            whole.extend_from_slice(&back.data);
        }
        assert_eq!(whole, bytes);
        let mut body = parts[0].body();
        body.insert("from".into(), "signer-9".into());
        assert!(Wire::parse(&body).is_err());
    }

    #[test]
    fn the_blamed_party_is_read_from_the_report() {
        assert_eq!(
            blamed("Aborted(EncProofOfK([(AbortBlame { faulty_party: 2, data_message: 4 }"),
            Some(2)
        );
        assert_eq!(blamed("IoError(ReceiveMessage)"), None);
    }
}
