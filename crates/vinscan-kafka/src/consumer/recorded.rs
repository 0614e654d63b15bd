//! A message's starts, recorded in the group's committed metadata before its work
//! ([`crate::starts`]): read once per assignment, incremented and committed per start, and
//! waited for (boundedly, without the tracker lock) until the coordinator shows them.

use std::time::Duration;

use rdkafka::TopicPartitionList;
use rdkafka::consumer::{CommitMode, Consumer};

use super::{DeliveryId, JobConsumer, add_entry, lock, stale};
use crate::starts;
use crate::{KafkaError, KafkaErrorKind};

impl JobConsumer {
    /// Blocking: how many times the delivery's message has started in this consumer group
    /// without finishing, before this delivery (0 for a message never started). The first call
    /// for a partition after its assignment reads what earlier owners recorded in the group's
    /// committed metadata ([`crate::starts`]). Call it off the async threads.
    ///
    /// # Errors
    /// A stale delivery (its partition was reassigned since), or the broker not answering.
    pub fn starts(&self, id: &DeliveryId, timeout: Duration) -> Result<u32, KafkaError> {
        self.load_starts(id, timeout)?;
        let tracker = lock(&self.tracker);
        let p = tracker
            .partitions
            .get(&(id.topic.clone(), id.partition))
            .filter(|p| p.epoch == id.epoch)
            .ok_or_else(stale)?;
        Ok(p.starts.get(&id.offset).copied().unwrap_or(0))
    }

    /// Blocking: records durably that the delivery's work starts, and returns how many times
    /// it has started in this consumer group, this start included (1 the first time). The
    /// count is committed synchronously, in the metadata of the group's committed offset for
    /// the partition, before this returns, so it survives the process dying during the work.
    /// Call it off the async threads.
    ///
    /// # Errors
    /// A stale delivery (its partition was reassigned since), or the broker not answering.
    pub fn record_start(&self, id: &DeliveryId, timeout: Duration) -> Result<u32, KafkaError> {
        self.load_starts(id, timeout)?;
        let order = lock(&self.commit_order);
        let mut tracker = lock(&self.tracker);
        let counting = tracker.counting;
        let p = tracker
            .partitions
            .get_mut(&(id.topic.clone(), id.partition))
            .filter(|p| p.epoch == id.epoch)
            .ok_or_else(stale)?;
        let n = p.starts.entry(id.offset).or_insert(0);
        *n = n.saturating_add(1);
        let n = *n;
        p.started_here.insert(id.offset);
        let entry = p.commit_entry(counting).ok_or_else(stale)?;
        drop(tracker);
        let mut tpl = TopicPartitionList::new();
        add_entry(&mut tpl, &id.topic, id.partition, entry);
        // enqueued in order (see `finish`), then waited for without any lock
        let r = self.consumer.commit(&tpl, CommitMode::Async);
        drop(order);
        r.map_err(|e| {
            self.last_error
                .explain(KafkaError::from_rdkafka(&e, "commit the start"))
        })?;
        self.wait_recorded(id, n, timeout)?;
        Ok(n)
    }

    /// Waits until the group's committed metadata shows `n` starts (or more) of the delivery,
    /// polling the coordinator for at most `timeout`.
    fn wait_recorded(&self, id: &DeliveryId, n: u32, timeout: Duration) -> Result<(), KafkaError> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition(&id.topic, id.partition);
            let committed = self
                .consumer
                .committed_offsets(tpl, left.max(Duration::from_millis(100)))
                .map_err(|e| {
                    self.last_error
                        .explain(KafkaError::from_rdkafka(&e, "committed offsets"))
                })?;
            let recorded = committed
                .elements()
                .first()
                .and_then(|e| starts::decode(e.metadata()).get(&id.offset).copied())
                .unwrap_or(0);
            if recorded >= n {
                return Ok(());
            }
            if left.is_zero() {
                return Err(KafkaError::new(
                    KafkaErrorKind::Transient,
                    format!("the start of offset {} was not recorded in time", id.offset),
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Merges the starts an earlier owner committed into this assignment's, once per
    /// assignment.
    fn load_starts(&self, id: &DeliveryId, timeout: Duration) -> Result<(), KafkaError> {
        let key = (id.topic.clone(), id.partition);
        let loaded = {
            let mut tracker = lock(&self.tracker);
            // from now on no commit may carry an unloaded partition's (empty) starts
            tracker.counting = true;
            tracker
                .partitions
                .get(&key)
                .filter(|p| p.epoch == id.epoch)
                .ok_or_else(stale)?
                .loaded
        };
        if loaded {
            return Ok(());
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&id.topic, id.partition);
        let committed = self.consumer.committed_offsets(tpl, timeout).map_err(|e| {
            self.last_error
                .explain(KafkaError::from_rdkafka(&e, "committed offsets"))
        })?;
        let prior = committed
            .elements()
            .first()
            .map(|e| starts::decode(e.metadata()))
            .unwrap_or_default();
        let mut tracker = lock(&self.tracker);
        let p = tracker
            .partitions
            .get_mut(&key)
            .filter(|p| p.epoch == id.epoch)
            .ok_or_else(stale)?;
        if !p.loaded {
            for (offset, n) in prior {
                let e = p.starts.entry(offset).or_insert(0);
                *e = (*e).max(n);
            }
            p.loaded = true;
        }
        Ok(())
    }
}
