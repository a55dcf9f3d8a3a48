//! The sequencer's named limits and its configuration.

/// The most events the sequencer writes in one batch (one WAL sync, one checkpoint).
pub const BATCH_EVENTS_MAX: usize = 1024;
/// How long the sequencer waits for more events once a batch has begun and the queue is
/// empty. Under load the queue refills during each sync, so batches fill without waiting.
pub const BATCH_WAIT_MS: u64 = 1;
/// The most appends waiting for the sequencer; one more is refused with pushback.
pub const QUEUE_EVENTS_MAX: usize = 16 * BATCH_EVENTS_MAX;
pub use govern_core::append::TIME_SKEW_MS;
/// What a client refused with pushback is told to wait.
pub const PUSHBACK_RETRY_AFTER_S: u64 = 1;

/// How often (in entries) the sequencer snapshots the append policy's state, so a restart
/// replays only the tracked entries after the snapshot. Writing one serializes the whole
/// state on the sequencer's thread (tens of milliseconds at 100k tenant events), so not
/// often. A snapshot only shortens a restart: it is used only if the size it names is the
/// log's, the log's root at that size is the one it names and its checksum holds (so a
/// damaged or foreign one falls back to a replay from zero), and `govern replay` never reads
/// it: a replay from zero must reach the state root a resumed node reports. It is not
/// re-derived at restart, so it defends against damage, not against whoever can write the
/// store (who could rewrite the node's view of the log in other ways; the log's checkpoints
/// and a replay catch that).
pub const SNAPSHOT_EVERY: u64 = 10_000;

const _: () = assert!(QUEUE_EVENTS_MAX >= BATCH_EVENTS_MAX);
const _: () = assert!(BATCH_WAIT_MS < 1_000);

/// Bounds of the sequencer and the log's identity.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// The checkpoint origin line.
    pub origin: String,
    /// See [`BATCH_EVENTS_MAX`].
    pub batch_events_max: usize,
    /// See [`BATCH_WAIT_MS`].
    pub batch_wait_ms: u64,
    /// See [`QUEUE_EVENTS_MAX`].
    pub queue_events_max: usize,
    /// See [`TIME_SKEW_MS`].
    pub time_skew_ms: i64,
    /// How far past its anchor a user action may land, for the node's policy: see
    /// [`govern_core::append::ANCHOR_DISTANCE_MAX`].
    pub anchor_distance_max: u64,
    /// Snapshot the append policy's state every this many entries (0: never). See
    /// [`SNAPSHOT_EVERY`].
    pub snapshot_every: u64,
}

impl LogConfig {
    /// The named defaults, for `origin`.
    #[must_use]
    pub fn new(origin: impl Into<String>) -> Self {
        Self {
            origin: origin.into(),
            batch_events_max: BATCH_EVENTS_MAX,
            batch_wait_ms: BATCH_WAIT_MS,
            queue_events_max: QUEUE_EVENTS_MAX,
            time_skew_ms: TIME_SKEW_MS,
            anchor_distance_max: govern_core::append::ANCHOR_DISTANCE_MAX,
            snapshot_every: SNAPSHOT_EVERY,
        }
    }
}
