//! The node's side of witnessing (docs/design.md §5): each new checkpoint goes to the configured
//! witnesses over c2sp.org/tlog-witness, and the latest checkpoint that carries a quorum of
//! their cosignatures (k of n, the witness policy) is what `/checkpoint` serves. Appends never
//! wait for witnesses: their receipts carry the log's own checkpoint.
//!
//! One round at a time: the submitter sends the newest checkpoint to every witness at once,
//! and a checkpoint that gathers k cosignatures is stored (its cosignature lines added to the
//! stored checkpoint, so exports and replays carry them) and served. The next round starts
//! with the newest checkpoint as soon as a round reaches its quorum, or after
//! [`ROUND_TIMEOUT`] if it cannot (a witness down), so under load the witnesses cosign the
//! newest checkpoint every round trip rather than every batch.
//!
//! Each witness is followed by its own task, which remembers the size that witness last
//! cosigned (learnt from its answers, a 409 giving it when unknown) and sends the consistency
//! proof from there.

use std::sync::Arc;
use std::time::Duration;

use govern_core::checkpoint::CosignatureVerifier;
use govern_core::ids::TreeSize;
use govern_core::note::Note;
use govern_core::witness::{
    AddCheckpoint, PolicyFile, SIZE_CONTENT_TYPE, WitnessPolicy, add_cosignatures,
};
use govern_store::{LogReader, Published, Storage};
use parking_lot::RwLock;
use tokio::sync::{mpsc, watch};

/// How long a round waits for its quorum before the next checkpoint is sent anyway.
pub const ROUND_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one `add-checkpoint` may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a witness task waits after a failed request.
pub const RETRY_AFTER: Duration = Duration::from_millis(500);

/// A witness policy whose witnesses can be reached, or why not.
#[derive(Debug, thiserror::Error)]
#[error("witness policy: {0}")]
pub struct WitnessingError(String);

/// The latest quorum-cosigned checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Witnessed {
    /// Its size.
    pub size: TreeSize,
    /// The signed note: the log's signature and at least k cosignatures.
    pub note: Arc<str>,
}

/// The node's witnessing: the policy, and the latest checkpoint that meets it.
#[derive(Debug)]
pub struct Witnessing {
    policy: WitnessPolicy,
    latest: RwLock<Option<Witnessed>>,
    changed: watch::Sender<Option<TreeSize>>,
}

struct Cosigned {
    witness: usize,
    size: TreeSize,
    line: String,
}

impl Witnessing {
    /// Start submitting `log`'s checkpoints to the witnesses of `file` (each needs a `url`).
    /// The latest quorum-cosigned checkpoint stored earlier, if it meets this policy, is
    /// served until a newer one is cosigned.
    ///
    /// # Errors
    /// [`WitnessingError`] when the policy does not hold or a witness has no URL.
    pub fn start<S: Storage>(
        log: LogReader<S>,
        file: &PolicyFile,
    ) -> Result<Arc<Self>, WitnessingError> {
        let (policy, urls) = check_file(file)?;
        let this = Self::restored(&log, policy);
        if this.policy.quorum() > 0 {
            let client = reqwest::Client::builder()
                .timeout(REQUEST_TIMEOUT)
                .pool_max_idle_per_host(2)
                .build()
                .map_err(|e| WitnessingError(e.to_string()))?;
            let (target_tx, target_rx) = watch::channel(log.latest());
            let (done_tx, done_rx) = mpsc::channel(64);
            for (i, (url, verifier)) in urls.into_iter().zip(this.policy.witnesses()).enumerate() {
                let follower = Follower {
                    index: i,
                    url,
                    verifier: verifier.clone(),
                    client: client.clone(),
                    log: log.clone(),
                    known: None,
                };
                tokio::spawn(follower.run(target_rx.clone(), done_tx.clone()));
            }
            tokio::spawn(Arc::clone(&this).rounds(log, target_tx, done_rx));
        }
        Ok(this)
    }

    /// Serve the quorum-cosigned checkpoints another node stores for `log` (a node that
    /// does not sequence a shared store's log): nothing is submitted; every `every` the
    /// latest stored checkpoint with a quorum under `file`'s policy is read again, and
    /// served once it is newer and `log` (caught up by its owner) holds its size.
    ///
    /// # Errors
    /// [`WitnessingError`] when the policy does not hold.
    pub fn observe<S: Storage>(
        log: LogReader<S>,
        file: &PolicyFile,
        every: Duration,
    ) -> Result<Arc<Self>, WitnessingError> {
        let (policy, _) = check_file(file)?;
        let this = Self::restored(&log, policy);
        let weak = Arc::downgrade(&this);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(this) = weak.upgrade() else { return };
                let (reader, policy) = (log.clone(), this.policy.clone());
                let Ok(Some(found)) =
                    tokio::task::spawn_blocking(move || restore(&reader, &policy)).await
                else {
                    continue;
                };
                // Served only once this node's reads reach it: a checkpoint ahead of the
                // tiles and entries it serves would send its readers to a 404.
                if found.size > log.latest().size {
                    continue;
                }
                let newer = this
                    .latest
                    .read()
                    .as_ref()
                    .is_none_or(|l| l.size < found.size);
                if newer {
                    let size = found.size;
                    *this.latest.write() = Some(found);
                    this.changed.send_replace(Some(size));
                }
            }
        });
        Ok(this)
    }

    /// Serving, under `policy`, the latest quorum-cosigned checkpoint `log` stores.
    fn restored<S: Storage>(log: &LogReader<S>, policy: WitnessPolicy) -> Arc<Self> {
        let held = log.latest().size;
        let restored = restore(log, &policy).filter(|w| w.size <= held);
        let (changed, _) = watch::channel(restored.as_ref().map(|w| w.size));
        Arc::new(Self {
            policy,
            latest: RwLock::new(restored),
            changed,
        })
    }

    /// The policy.
    #[must_use]
    pub fn policy(&self) -> &WitnessPolicy {
        &self.policy
    }

    /// The latest checkpoint with a quorum of cosignatures (with k = 0: none is needed, and
    /// this is `None`: serve the log's own).
    #[must_use]
    pub fn latest(&self) -> Option<Witnessed> {
        self.latest.read().clone()
    }

    /// Changes of the latest quorum-cosigned size.
    #[must_use]
    pub fn subscribe(&self) -> watch::Receiver<Option<TreeSize>> {
        self.changed.subscribe()
    }

    async fn rounds<S: Storage>(
        self: Arc<Self>,
        log: LogReader<S>,
        target: watch::Sender<Arc<Published>>,
        mut done: mpsc::Receiver<Cosigned>,
    ) {
        let mut published = log.subscribe();
        let n = self.policy.witnesses().len();
        // The round's checkpoint and the lines gathered for it.
        let mut round: Arc<Published> = target.borrow().clone();
        let mut lines: Vec<Option<String>> = vec![None; n];
        let mut started = tokio::time::Instant::now();
        loop {
            let witnessed = self.latest().map(|w| w.size);
            let finished = witnessed.is_some_and(|s| s >= round.size);
            tokio::select! {
                got = done.recv() => {
                    let Some(got) = got else { return };
                    if got.size != round.size {
                        continue;
                    }
                    lines[got.witness] = Some(got.line);
                    if !finished && lines.iter().flatten().count() >= self.policy.quorum() {
                        self.reached(&log, &round, &lines);
                        self.next_round(&log, &target, &mut round, &mut lines, &mut started);
                    }
                }
                changed = published.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    if finished {
                        self.next_round(&log, &target, &mut round, &mut lines, &mut started);
                    }
                }
                () = tokio::time::sleep_until(started + ROUND_TIMEOUT) => {
                    if !finished {
                        tracing::warn!(size = %round.size, gathered = lines.iter().flatten().count(), quorum = self.policy.quorum(),
                            "no witness quorum in time; submitting the newest checkpoint again");
                        // Even the same checkpoint: the witnesses that failed try again.
                        target.send_replace(Arc::clone(&round));
                    }
                    self.next_round(&log, &target, &mut round, &mut lines, &mut started);
                }
            }
        }
    }

    fn next_round<S: Storage>(
        &self,
        log: &LogReader<S>,
        target: &watch::Sender<Arc<Published>>,
        round: &mut Arc<Published>,
        lines: &mut [Option<String>],
        started: &mut tokio::time::Instant,
    ) {
        let newest = log.latest();
        *started = tokio::time::Instant::now();
        if newest.size == round.size {
            return;
        }
        *round = Arc::clone(&newest);
        lines.iter_mut().for_each(|l| *l = None);
        target.send_replace(newest);
    }

    /// A quorum for `round`: store it with its cosignatures and serve it.
    fn reached<S: Storage>(&self, log: &LogReader<S>, round: &Published, lines: &[Option<String>]) {
        let lines: Vec<String> = lines.iter().flatten().cloned().collect();
        let note = match add_cosignatures(&round.note, &lines) {
            Ok(n) => n,
            Err(e) => {
                tracing::error!(error = %e, "cannot add the cosignatures to the checkpoint");
                return;
            }
        };
        // Checked as any verifier will check it.
        if let Err(e) = Note::parse(note.as_bytes())
            .map_err(|e| e.to_string())
            .and_then(|n| self.policy.check(&n).map_err(|e| e.to_string()))
        {
            tracing::error!(error = %e, "the cosigned checkpoint does not meet the policy");
            return;
        }
        if let Err(e) = log.put_cosigned(round.size, &note) {
            tracing::error!(error = %e, "cannot store the cosigned checkpoint");
        }
        *self.latest.write() = Some(Witnessed {
            size: round.size,
            note: note.into(),
        });
        self.changed.send_replace(Some(round.size));
    }
}

/// The URLs of the witnesses of `file` (each must have one), checked with the policy.
///
/// # Errors
/// [`WitnessingError`] when the policy does not hold or a witness has no URL.
pub fn check_file(file: &PolicyFile) -> Result<(WitnessPolicy, Vec<String>), WitnessingError> {
    let policy = WitnessPolicy::from_file(file).map_err(|e| WitnessingError(e.to_string()))?;
    let urls = file
        .witnesses
        .iter()
        .map(|w| {
            w.url
                .clone()
                .map(|u| u.trim_end_matches('/').to_owned())
                .ok_or_else(|| WitnessingError(format!("witness {} has no url", w.vkey)))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((policy, urls))
}

/// Why a node must not append to this copy of its log.
#[derive(Debug, thiserror::Error)]
pub enum BehindError {
    /// A witness cosigned a larger tree of this log than this copy holds: the log went on
    /// elsewhere (this copy is a stale restore, or a second node on a copy).
    #[error(
        "this log has advanced elsewhere: witness {witness} cosigned size {cosigned}, this copy holds {held}; \
         appending here would fork the log. Restore the newer copy of the data dir (docs/operations.md, \"Restore\")"
    )]
    Advanced {
        /// The witness's name.
        witness: String,
        /// The size it cosigned.
        cosigned: u64,
        /// This copy's size.
        held: u64,
    },
    /// A witness cosigned another tree of this very size: two histories exist already.
    #[error(
        "this log has forked: witness {witness} cosigned another tree of size {size} than this \
         copy holds; appending here would extend a history the witnesses refuse. Restore the \
         copy they follow (docs/operations.md, \"Restore\")"
    )]
    Forked {
        /// The witness's name.
        witness: String,
        /// The size.
        size: u64,
    },
}

/// A witness's answer to `add-checkpoint`: its status, whether its body is a tlog size
/// (`SIZE_CONTENT_TYPE`, what a 409 carries), and the body.
async fn read_answer(response: reqwest::Response) -> Result<(u16, bool, String), reqwest::Error> {
    let status = response.status().as_u16();
    let is_size = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(SIZE_CONTENT_TYPE.as_bytes()));
    Ok((status, is_size, response.text().await?))
}

/// What one witness says of this copy's latest checkpoint.
enum Standing {
    /// It holds this size or less of the log (or cosigned this checkpoint now).
    NotAhead,
    /// It refused in a way that tells nothing (unreachable, malformed answer).
    Unknown(String),
    /// This copy is behind it, or forked from what it cosigned.
    Behind(BehindError),
}

/// Ask `url`'s witness where it stands on this log: the latest checkpoint is sent as an
/// `add-checkpoint` from its own size, which a witness at that size cosigns again and any
/// other answers with 409 and its size (c2sp.org/tlog-witness).
async fn standing(client: &reqwest::Client, url: &str, name: &str, latest: &Published) -> Standing {
    let body = AddCheckpoint {
        old_size: latest.size,
        proof: Vec::new(),
        checkpoint: latest.note.as_bytes().to_vec(),
    }
    .encode();
    let response = match client
        .post(format!("{url}/add-checkpoint"))
        .body(body)
        .send()
        .await
    {
        Ok(r) => r,
        Err(e) => return Standing::Unknown(format!("{name}: {e}")),
    };
    let (status, is_size, text) = match read_answer(response).await {
        Ok(a) => a,
        Err(e) => return Standing::Unknown(format!("{name}: {e}")),
    };
    match status {
        200 => Standing::NotAhead,
        409 if is_size => match text.trim_end().parse::<u64>() {
            Ok(size) if size > latest.size.0 => Standing::Behind(BehindError::Advanced {
                witness: name.to_owned(),
                cosigned: size,
                held: latest.size.0,
            }),
            Ok(size) if size == latest.size.0 => Standing::Behind(BehindError::Forked {
                witness: name.to_owned(),
                size,
            }),
            Ok(_) => Standing::NotAhead,
            Err(_) => Standing::Unknown(format!("{name}: a 409 without a size")),
        },
        _ => Standing::Unknown(format!("{name}: HTTP {status}: {}", text.trim_end())),
    }
}

/// Before a node appends anything: ask every witness of `file` whether it has cosigned a
/// larger tree of this log than `log` holds (or another tree of its size). Any that has
/// refuses the start ([`BehindError`]). When fewer answer than could rule it out (n − k + 1:
/// then at least one of any k that cosigned a newer tree answered), the node starts with a
/// warning, and the witness followers fence the log as soon as one tells ([`LogReader::fence`]).
///
/// # Errors
/// [`WitnessingError`] for a policy that does not hold; [`BehindError`] (in its message) when
/// this copy is behind or forked.
pub async fn check_not_behind<S: Storage>(
    log: &LogReader<S>,
    file: &PolicyFile,
) -> Result<(), WitnessingError> {
    let (policy, urls) = check_file(file)?;
    if policy.quorum() == 0 || urls.is_empty() {
        return Ok(());
    }
    let client = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .map_err(|e| WitnessingError(e.to_string()))?;
    let latest = log.latest();
    let mut asked = tokio::task::JoinSet::new();
    for (url, verifier) in urls.iter().zip(policy.witnesses()) {
        let (client, latest) = (client.clone(), Arc::clone(&latest));
        let (url, name) = (url.clone(), verifier.name().to_owned());
        asked.spawn(async move { standing(&client, &url, &name, &latest).await });
    }
    let answers = asked.join_all().await;
    let mut unknown = Vec::new();
    let mut answered = 0usize;
    for answer in answers {
        match answer {
            Standing::NotAhead => answered += 1,
            Standing::Unknown(why) => unknown.push(why),
            Standing::Behind(e) => return Err(WitnessingError(e.to_string())),
        }
    }
    let needed = urls.len() - policy.quorum() + 1;
    if answered < needed {
        tracing::warn!(
            answered,
            needed,
            unreachable = %unknown.join("; "),
            "cannot rule out that this log advanced elsewhere: too few witnesses answered; \
             appends stop as soon as one tells of a larger tree"
        );
    }
    Ok(())
}

/// The latest stored quorum-cosigned checkpoint, if it meets `policy`.
fn restore<S: Storage>(log: &LogReader<S>, policy: &WitnessPolicy) -> Option<Witnessed> {
    let size = log.latest_cosigned_size().ok().flatten()?;
    let note = log.checkpoint_at(size).ok().flatten()?;
    let parsed = Note::parse(note.as_bytes()).ok()?;
    policy.check(&parsed).ok()?;
    Some(Witnessed {
        size,
        note: note.into(),
    })
}

/// One witness, followed by its own task.
struct Follower<S> {
    index: usize,
    url: String,
    verifier: CosignatureVerifier,
    client: reqwest::Client,
    log: LogReader<S>,
    /// The size this witness last cosigned, once known.
    known: Option<TreeSize>,
}

enum Outcome {
    Cosigned(String),
    /// Try again at once (the witness told its size).
    Again,
    /// Give up on this checkpoint.
    Skip,
    /// Wait, then try again.
    Failed,
}

impl<S: Storage> Follower<S> {
    async fn run(
        mut self,
        mut target: watch::Receiver<Arc<Published>>,
        done: mpsc::Sender<Cosigned>,
    ) {
        loop {
            let checkpoint = target.borrow_and_update().clone();
            let mut attempts = 0;
            loop {
                attempts += 1;
                match self.submit(&checkpoint).await {
                    Outcome::Cosigned(line) => {
                        let sent = done
                            .send(Cosigned {
                                witness: self.index,
                                size: checkpoint.size,
                                line,
                            })
                            .await;
                        if sent.is_err() {
                            return;
                        }
                        break;
                    }
                    Outcome::Again if attempts < 3 => {}
                    Outcome::Again | Outcome::Skip => break,
                    Outcome::Failed => {
                        tokio::time::sleep(RETRY_AFTER).await;
                        if target.has_changed().unwrap_or(true) || attempts >= 3 {
                            break;
                        }
                    }
                }
            }
            if target.changed().await.is_err() {
                return;
            }
        }
    }

    async fn submit(&mut self, checkpoint: &Published) -> Outcome {
        let old = self.known.unwrap_or(TreeSize(0));
        if old > checkpoint.size {
            // The witness has cosigned a larger tree than this one: only a newer checkpoint
            // can be cosigned by it.
            return Outcome::Skip;
        }
        let proof = if old.0 == 0 || old == checkpoint.size {
            Vec::new()
        } else {
            match self.log.consistency_proof(old, checkpoint.size) {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(witness = %self.verifier.name(), error = %e, "cannot prove consistency");
                    return Outcome::Skip;
                }
            }
        };
        let body = AddCheckpoint {
            old_size: old,
            proof,
            checkpoint: checkpoint.note.as_bytes().to_vec(),
        }
        .encode();
        let url = format!("{}/add-checkpoint", self.url);
        let response = match self.client.post(&url).body(body).send().await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(witness = %self.verifier.name(), %url, error = %e, "witness unreachable");
                return Outcome::Failed;
            }
        };
        let (status, is_size, text) = match read_answer(response).await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(witness = %self.verifier.name(), error = %e, "witness answer unreadable");
                return Outcome::Failed;
            }
        };
        match status {
            200 => {
                // The answer's lines, appended to the checkpoint, must hold this witness's
                // valid cosignature; lines of other keys are ignored.
                let with = format!("{}{}", checkpoint.note, text);
                let valid = Note::parse(with.as_bytes())
                    .ok()
                    .and_then(|n| self.verifier.verify(&n).ok().map(|_| n));
                let Some(note) = valid else {
                    tracing::warn!(witness = %self.verifier.name(), "the witness answered no valid cosignature");
                    return Outcome::Failed;
                };
                let line = note
                    .signatures
                    .iter()
                    .filter(|s| {
                        s.name == self.verifier.name() && s.key_id == self.verifier.key_id()
                    })
                    .map(govern_core::note::NoteSignature::to_line)
                    .collect::<String>();
                self.known = Some(checkpoint.size);
                Outcome::Cosigned(line)
            }
            409 if is_size => {
                let Some(size) = text.strip_suffix('\n').and_then(|t| t.parse::<u64>().ok()) else {
                    return Outcome::Failed;
                };
                let held = self.log.latest().size;
                if size > held.0 {
                    self.log.fence(
                        BehindError::Advanced {
                            witness: self.verifier.name().to_owned(),
                            cosigned: size,
                            held: held.0,
                        }
                        .to_string(),
                    );
                    self.known = Some(TreeSize(size));
                    return Outcome::Skip;
                }
                if self.known == Some(TreeSize(size)) || size == checkpoint.size.0 {
                    // Its size is the one sent: it holds another root there. A split view,
                    // or this log was rolled back.
                    tracing::error!(witness = %self.verifier.name(), size, "the witness cosigned another tree of this size: split view or rollback");
                    self.known = Some(TreeSize(size));
                    return Outcome::Skip;
                }
                self.known = Some(TreeSize(size));
                Outcome::Again
            }
            // Our consistency proof from the size the witness itself named does not lead to
            // the root it cosigned there: this copy's tree of that size is another one.
            422 if old.0 > 0 && self.known == Some(old) => {
                self.log.fence(
                    BehindError::Forked {
                        witness: self.verifier.name().to_owned(),
                        size: old.0,
                    }
                    .to_string(),
                );
                Outcome::Skip
            }
            _ => {
                tracing::warn!(witness = %self.verifier.name(), status, answer = %text.trim_end(), "the witness refused the checkpoint");
                Outcome::Failed
            }
        }
    }
}
