//! The job source: a consumer-group member whose offsets move only over finished work.
//!
//! Every delivered message is registered in its partition's [`PartitionOffsets`] before it is
//! handed out; [`JobConsumer::finish`] marks it done and commits the partition's new
//! contiguous position. Commits from `finish`, `abandon`, `record_start` and the revocation
//! callback are asynchronous and enqueued while the tracker is locked (each carries the whole
//! starts map, so they must reach the coordinator in order); nothing waits for the broker while
//! holding the lock. `record_start` then waits, without the lock and for a bounded time, until
//! the coordinator shows the start; the one synchronous commit is [`JobConsumer::close`]'s.
//! Callers run the blocking calls off the async threads. Each assignment of a partition gets a new epoch: work started under
//! an earlier assignment cannot move the offsets of a later one, it is simply redelivered.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::context::LastError;
use crate::offsets::PartitionOffsets;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

mod recorded;

use crate::starts::{self, Starts};
use crate::{KafkaError, KafkaErrorKind, KafkaSettings};

/// Where a message came from, and under which assignment it was handed out.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DeliveryId {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// The assignment of the partition the message was handed out under: a finish from an
    /// earlier assignment moves nothing.
    pub epoch: u64,
}

/// One consumed message, copied out of librdkafka's buffers.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub id: DeliveryId,
    pub key: Option<Vec<u8>>,
    /// The message's value; `None` for a null value (a tombstone, which compacted topics use
    /// to delete a key).
    pub payload: Option<Vec<u8>>,
    /// Producer or broker timestamp, milliseconds since the epoch.
    pub timestamp_ms: Option<i64>,
    pub headers: Vec<(String, Vec<u8>)>,
}

#[derive(Debug, Default)]
struct Partition {
    epoch: u64,
    offsets: PartitionOffsets,
    /// Starts of this partition's unfinished offsets ([`crate::starts`]), merged with what the
    /// group's committed metadata held once `loaded`.
    starts: Starts,
    loaded: bool,
    /// Offsets whose start this member recorded in this assignment and that have not ended.
    started_here: std::collections::BTreeSet<i64>,
}

impl Partition {
    /// The position to commit with its metadata (the starts of offsets at or after it). When
    /// the member counts starts (`counting`), None until the earlier owners' starts are
    /// loaded: committing before would overwrite them.
    fn commit_entry(&mut self, counting: bool) -> Option<(i64, String)> {
        if counting && !self.loaded {
            return None;
        }
        let next = self.offsets.committable()?;
        self.starts.retain(|o, _| *o >= next);
        Some((next, starts::encode(&self.starts)))
    }

    /// A start this member recorded ended without a crash (finished, abandoned, revoked):
    /// it is taken back, so only starts that died with the process stay counted.
    fn take_back(&mut self, offset: i64) -> bool {
        if !self.started_here.remove(&offset) {
            return false;
        }
        if let Some(n) = self.starts.get_mut(&offset) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.starts.remove(&offset);
            }
        }
        true
    }
}

fn add_entry(tpl: &mut TopicPartitionList, topic: &str, partition: i32, (next, metadata): (i64, String)) {
    let mut e = tpl.add_partition(topic, partition);
    if e.set_offset(Offset::Offset(next)).is_ok() {
        e.set_metadata(metadata);
    }
}

/// Offsets of the partitions this member owns, shared with the rebalance callbacks.
#[derive(Debug, Default)]
struct Tracker {
    partitions: HashMap<(String, i32), Partition>,
    next_epoch: u64,
    /// Whether starts are counted ([`JobConsumer::starts`] was called): from then on every
    /// commit carries them.
    counting: bool,
}

impl Tracker {
    fn assign(&mut self, topic: &str, partition: i32) -> u64 {
        self.next_epoch += 1;
        let epoch = self.next_epoch;
        self.partitions.insert(
            (topic.to_owned(), partition),
            Partition {
                epoch,
                ..Partition::default()
            },
        );
        epoch
    }

    /// Every owned partition's commit position, with its starts metadata.
    fn positions(&mut self) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        let counting = self.counting;
        for ((topic, partition), p) in &mut self.partitions {
            if let Some(entry) = p.commit_entry(counting) {
                add_entry(&mut tpl, topic, *partition, entry);
            }
        }
        tpl
    }
}

/// librdkafka context: commits finished work of partitions being revoked, keeps paused
/// state across reassignments, and logs through `tracing`.
struct TrackingContext {
    tracker: Arc<Mutex<Tracker>>,
    paused: Arc<AtomicBool>,
    last_error: LastError,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // a panic while holding the lock leaves consistent data (every method is one step)
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl ClientContext for TrackingContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        crate::context::log(level, fac, log_message);
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        crate::context::client_error(&self.last_error, &error, reason);
    }
}

impl ConsumerContext for TrackingContext {
    /// Asynchronous commits report here: a refused one (the member's generation is stale after
    /// a rebalance, the broker away) loses nothing, the work after the last commit that held
    /// is redone, but it must be visible.
    fn commit_callback(&self, result: rdkafka::error::KafkaResult<()>, offsets: &TopicPartitionList) {
        if let Err(e) = result {
            tracing::warn!(error = %e, partitions = offsets.count(), "offset commit refused; finished work since the last commit will be redone");
        }
    }

    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(revoked) = rebalance else {
            return;
        };
        // Commit what is finished before the partitions go; unfinished work of revoked
        // partitions may still complete, but it can no longer move their offsets. Asynchronous:
        // this runs inside `recv`'s poll on an async thread (Quickwit's kafka source notes the
        // same hazard). The request goes out before the member rejoins, on the same coordinator
        // connection; should it be lost, the new owner redoes finished work, which rewrites the
        // same output objects (at least once).
        let mut tracker = lock(&self.tracker);
        let counting = tracker.counting;
        let mut tpl = TopicPartitionList::new();
        for e in revoked.elements() {
            if let Some(mut p) = tracker.partitions.remove(&(e.topic().to_owned(), e.partition())) {
                let abandoned = p.offsets.in_flight();
                // work cut short by the rebalance did not crash anything
                let started: Vec<i64> = p.started_here.iter().copied().collect();
                for offset in started {
                    p.take_back(offset);
                }
                if let Some(entry) = p.commit_entry(counting) {
                    add_entry(&mut tpl, e.topic(), e.partition(), entry);
                }
                p.offsets.revoke();
                tracing::info!(
                    topic = e.topic(),
                    partition = e.partition(),
                    in_flight = abandoned,
                    "partition revoked"
                );
            }
        }
        // never call librdkafka with the tracker held (see `finish`); the partitions are gone
        // from the tracker, so no later commit of this member races this one
        drop(tracker);
        if tpl.count() > 0
            && let Err(e) = consumer.commit(&tpl, CommitMode::Async)
        {
            tracing::warn!(error = %e, "commit on revocation failed; the work will be redelivered");
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(assigned) => {
                let mut tracker = lock(&self.tracker);
                for e in assigned.elements() {
                    tracker.assign(e.topic(), e.partition());
                    tracing::info!(topic = e.topic(), partition = e.partition(), "partition assigned");
                }
                drop(tracker);
                // librdkafka keeps a partition's pause flag across revocation and reassignment:
                // a partition paused before an outage, then lost and assigned again, would stay
                // paused if a resume ran while it was unassigned. Set each new partition's state
                // to ours explicitly.
                let paused = self.paused.load(Ordering::SeqCst);
                let r = if paused {
                    consumer.pause(assigned)
                } else {
                    consumer.resume(assigned)
                };
                if let Err(e) = r {
                    tracing::warn!(error = %e, paused, "could not set the state of newly assigned partitions");
                }
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance error"),
        }
    }
}

fn stale() -> KafkaError {
    KafkaError::new(KafkaErrorKind::Transient, "the partition was reassigned")
}

/// A consumer-group member for job topics. `Sync`: the daemon's job tasks call
/// [`finish`](Self::finish) directly while one task polls [`recv`](Self::recv).
pub struct JobConsumer {
    consumer: StreamConsumer<TrackingContext>,
    tracker: Arc<Mutex<Tracker>>,
    paused: Arc<AtomicBool>,
    in_flight: AtomicUsize,
    last_error: LastError,
    /// Held from taking a partition's commit entry to enqueuing its commit (see `finish`).
    commit_order: Mutex<()>,
}

impl std::fmt::Debug for JobConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobConsumer")
            .field("in_flight", &self.in_flight)
            .finish_non_exhaustive()
    }
}

impl JobConsumer {
    /// Creates the member and subscribes it to `topics`; the group join happens on the first
    /// [`recv`](Self::recv).
    pub fn subscribe(settings: &KafkaSettings, topics: &[String]) -> Result<Self, KafkaError> {
        let tracker = Arc::new(Mutex::new(Tracker::default()));
        let paused = Arc::new(AtomicBool::new(false));
        let last_error = LastError::default();
        let context = TrackingContext {
            tracker: tracker.clone(),
            paused: paused.clone(),
            last_error: last_error.clone(),
        };
        let consumer: StreamConsumer<TrackingContext> = settings
            .consumer()
            .create_with_context(context)
            .map_err(|e| KafkaError::from_rdkafka(&e, "create consumer"))?;
        let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&topics)
            .map_err(|e| KafkaError::from_rdkafka(&e, "subscribe"))?;
        Ok(Self {
            consumer,
            tracker,
            paused,
            in_flight: AtomicUsize::new(0),
            last_error,
            commit_order: Mutex::new(()),
        })
    }

    /// The next message, registered as in flight. Cancellation safe. Keep calling it while
    /// paused: polling serves rebalances and keeps the member alive.
    pub async fn recv(&self) -> Result<Delivery, KafkaError> {
        let m = self
            .consumer
            .recv()
            .await
            .map_err(|e| self.last_error.explain(KafkaError::from_rdkafka(&e, "consume")))?;
        let (topic, partition, offset) = (m.topic().to_owned(), m.partition(), m.offset());
        let epoch = {
            let mut tracker = lock(&self.tracker);
            let epoch = match tracker.partitions.get(&(topic.clone(), partition)) {
                Some(p) => p.epoch,
                // a message can arrive before the assignment callback was seen by us
                None => tracker.assign(&topic, partition),
            };
            if let Some(p) = tracker.partitions.get_mut(&(topic.clone(), partition)) {
                p.offsets.start(offset);
            }
            epoch
        };
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        let headers = m
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec).unwrap_or_default()))
                    .collect()
            })
            .unwrap_or_default();
        Ok(Delivery {
            id: DeliveryId {
                topic,
                partition,
                offset,
                epoch,
            },
            key: m.key().map(<[u8]>::to_vec),
            payload: m.payload().map(<[u8]>::to_vec),
            timestamp_ms: m.timestamp().to_millis(),
            headers,
        })
    }

    /// Marks a delivery's work done (output and result written, or dead-lettered) and commits
    /// the partition's new contiguous position. Returns the committed position when it moved.
    pub fn finish(&self, id: &DeliveryId) -> Option<i64> {
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        let _order = lock(&self.commit_order);
        let mut tracker = lock(&self.tracker);
        let counting = tracker.counting;
        let p = tracker
            .partitions
            .get_mut(&(id.topic.clone(), id.partition))
            .filter(|p| p.epoch == id.epoch)?;
        let moved = p.offsets.finish(id.offset);
        // finished: its start is no longer a suspect's
        p.starts.remove(&id.offset);
        let recorded = p.started_here.remove(&id.offset);
        if moved.is_none() && !recorded {
            return None;
        }
        let entry = p.commit_entry(counting)?;
        drop(tracker);
        let mut tpl = TopicPartitionList::new();
        add_entry(&mut tpl, &id.topic, id.partition, entry);
        // Every commit carries the whole starts map, so commits must reach the coordinator in
        // the order their maps were taken, or an older map (without a start recorded since)
        // would overwrite a newer one: `commit_order` is held from taking the map to enqueuing
        // the commit. The tracker is not: librdkafka is never called with it held, since the
        // rebalance callback (run inside librdkafka's poll) takes it.
        if let Err(e) = self.consumer.commit(&tpl, CommitMode::Async) {
            // the next commit (or the one on revocation or close) covers it
            tracing::warn!(error = %e, topic = %id.topic, partition = id.partition, "commit failed");
        }
        moved
    }

    /// Gives up a delivery without committing it (shutdown, a job that cannot finish in this
    /// process): its offset stays unfinished, so nothing at or after it in the partition is
    /// committed by this member, and it is redelivered to whoever owns the partition next.
    /// Its recorded start, if any, is taken back: the process did not die on it.
    pub fn abandon(&self, id: &DeliveryId) {
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        let _order = lock(&self.commit_order);
        let mut tracker = lock(&self.tracker);
        let counting = tracker.counting;
        let p = tracker
            .partitions
            .get_mut(&(id.topic.clone(), id.partition))
            .filter(|p| p.epoch == id.epoch);
        let current = p.is_some();
        let entry = p.and_then(|p| {
            if p.take_back(id.offset) {
                p.commit_entry(counting)
            } else {
                None
            }
        });
        drop(tracker);
        if let Some(entry) = entry {
            let mut tpl = TopicPartitionList::new();
            add_entry(&mut tpl, &id.topic, id.partition, entry);
            // in order: see `finish`
            if let Err(e) = self.consumer.commit(&tpl, CommitMode::Async) {
                tracing::warn!(error = %e, topic = %id.topic, partition = id.partition, "commit failed");
            }
        }
        tracing::debug!(topic = %id.topic, partition = id.partition, offset = id.offset, current, "delivery abandoned");
    }

    /// Deliveries handed out and neither finished nor abandoned.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::SeqCst)
    }

    /// Stops fetching from every owned partition (the member stays in the group).
    pub fn pause(&self) -> Result<(), KafkaError> {
        self.set_paused(true)
    }

    /// Resumes fetching.
    pub fn resume(&self) -> Result<(), KafkaError> {
        self.set_paused(false)
    }

    fn set_paused(&self, paused: bool) -> Result<(), KafkaError> {
        self.paused.store(paused, Ordering::SeqCst);
        let assignment = self
            .consumer
            .assignment()
            .map_err(|e| KafkaError::from_rdkafka(&e, "assignment"))?;
        let r = if paused {
            self.consumer.pause(&assignment)
        } else {
            self.consumer.resume(&assignment)
        };
        r.map_err(|e| KafkaError::from_rdkafka(&e, if paused { "pause" } else { "resume" }))
    }

    /// Blocking: commits every owned partition's position and waits for the broker.
    pub fn commit_sync(&self) -> Result<(), KafkaError> {
        // in order: see `finish`
        let _order = lock(&self.commit_order);
        let tpl = lock(&self.tracker).positions();
        if tpl.count() == 0 {
            return Ok(());
        }
        self.consumer
            .commit(&tpl, CommitMode::Sync)
            .map_err(|e| KafkaError::from_rdkafka(&e, "commit"))
    }

    /// Partitions currently owned, as `(topic, partition)`.
    pub fn assignment(&self) -> Vec<(String, i32)> {
        let mut v: Vec<_> = lock(&self.tracker).partitions.keys().cloned().collect();
        v.sort();
        v
    }

    /// Blocking: asks the broker for cluster metadata (readiness). Call off the async threads.
    pub fn check_broker(&self, timeout: Duration) -> Result<(), KafkaError> {
        self.consumer
            .fetch_metadata(None, timeout)
            .map(|_| self.last_error.clear())
            .map_err(|e| self.last_error.explain(KafkaError::from_rdkafka(&e, "metadata")))
    }

    /// Blocking: messages behind the high watermark over every owned partition, counted from
    /// the group's committed position (from the low watermark where nothing is committed):
    /// what a restart would redo plus what is not yet consumed.
    pub fn lag(&self, timeout: Duration) -> Result<i64, KafkaError> {
        let assignment = self
            .consumer
            .assignment()
            .map_err(|e| KafkaError::from_rdkafka(&e, "assignment"))?;
        if assignment.count() == 0 {
            return Ok(0);
        }
        let committed = self
            .consumer
            .committed_offsets(assignment, timeout)
            .map_err(|e| KafkaError::from_rdkafka(&e, "committed offsets"))?;
        let mut lag = 0;
        for e in committed.elements() {
            let (low, high) = self
                .consumer
                .fetch_watermarks(e.topic(), e.partition(), timeout)
                .map_err(|err| KafkaError::from_rdkafka(&err, "watermarks"))?;
            let position = match e.offset() {
                Offset::Offset(o) => o,
                _ => low,
            };
            lag += (high - position).max(0);
        }
        Ok(lag)
    }

    /// Blocking: commits what is finished, waits for the broker, and leaves the group. Call it
    /// off the async threads (`spawn_blocking`).
    pub fn close(&self) -> Result<(), KafkaError> {
        let r = self.commit_sync();
        self.consumer.unsubscribe();
        r
    }
}
