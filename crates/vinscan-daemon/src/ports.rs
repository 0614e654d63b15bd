//! What the daemon needs from the outside world, as small traits of plain data: a job source
//! with at-least-once delivery, a publisher for result events and dead letters. Object stores
//! ([`vinscan_storage::BucketStores`]) and the model ([`vinscan_core::VisionModel`]) are the
//! other two ports. The Kafka implementations are in the `kafka` module (feature `kafka`); the
//! in-memory ones in the `testsuite` module (feature `testsuite`). This module names neither:
//! they depend on it.

use std::time::Duration;

use async_trait::async_trait;

/// Whether retrying a port call can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortErrorKind {
    /// The broker is slow, unreachable or rebalancing: retrying may succeed.
    Transient,
    /// Refused for good (a record too large, authorisation, bad settings): retrying the same
    /// call cannot succeed, and the daemon must not spin on it.
    Fatal,
}

/// A failed call on a job source or a publisher.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PortError {
    pub kind: PortErrorKind,
    pub message: String,
}

impl PortError {
    pub fn new(kind: PortErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    pub fn is_retryable(&self) -> bool {
        self.kind == PortErrorKind::Transient
    }
}

/// Where a consumed message came from, and the source's token for it (for Kafka, the
/// partition's assignment epoch): what [`JobSource::finish`] and [`JobSource::abandon`] take.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DeliveryId {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// Opaque to the daemon; the source uses it to ignore finishes from an older assignment.
    pub token: u64,
}

/// One consumed message.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub id: DeliveryId,
    pub key: Option<Vec<u8>>,
    /// `None` for a null value (a tombstone): counted and skipped, never dead-lettered.
    pub payload: Option<Vec<u8>>,
    /// Producer or broker timestamp, milliseconds since the epoch.
    pub timestamp_ms: Option<i64>,
}

/// A source of job messages with at-least-once delivery: a message is redelivered unless
/// [`finish`](Self::finish) was called for it, and the source's committed position never
/// passes an unfinished message (Kafka: contiguous per-partition commits).
#[async_trait]
pub trait JobSource: Send + Sync + 'static {
    /// The next message. Cancellation safe: a `recv` dropped before it returns loses nothing.
    /// Keep calling it while paused: polling serves the group protocol.
    async fn recv(&self) -> Result<Delivery, PortError>;
    /// The message's outcome (output and result event, or dead letter) is durable: its offset
    /// may be committed.
    fn finish(&self, id: &DeliveryId);
    /// The message is left undone: it must be redelivered (here after a restart, or to the
    /// partition's next owner), so nothing at or after it is committed.
    fn abandon(&self, id: &DeliveryId);
    /// Blocking: how many times the message has started without finishing before this
    /// delivery (0 for a message never started), across restarts and members of the group.
    fn starts(&self, id: &DeliveryId) -> Result<u32, PortError>;
    /// Blocking: records durably, before the work begins, that the message starts, and
    /// returns how many times it has started without finishing, this time included (1 the
    /// first time), across restarts and members of the group. Called off the async threads.
    fn record_start(&self, id: &DeliveryId) -> Result<u32, PortError>;
    /// Stops (`true`) or resumes fetching new messages; the member stays in its group.
    fn set_paused(&self, paused: bool) -> Result<(), PortError>;
    /// Blocking: whether the broker answers, and how many messages are behind the committed
    /// position over the owned partitions (the consumer lag). Called off the async threads.
    fn probe(&self, timeout: Duration) -> Result<i64, PortError>;
    /// Blocking: commits what is finished and leaves the group. Called off the async threads.
    fn close(&self) -> Result<(), PortError>;
}

/// Sends result events and dead-letter records.
#[async_trait]
pub trait Publisher: Send + Sync + 'static {
    /// Sends one record and returns once the broker has it (Kafka: acknowledged by all
    /// in-sync replicas).
    async fn send(&self, topic: &str, key: &str, payload: &[u8]) -> Result<(), PortError>;
    /// Blocking: waits for queued records to be delivered (shutdown).
    fn flush(&self, timeout: Duration) -> Result<(), PortError>;
}
