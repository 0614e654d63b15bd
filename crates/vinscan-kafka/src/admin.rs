//! Topic creation and offset inspection: for `vinscan enqueue`, for operators and for tests.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use crate::context::ReportingContext;
use crate::{KafkaError, KafkaSettings};

/// Creates topics with `partitions` partitions each; existing topics are left as they are.
pub async fn create_topics(settings: &KafkaSettings, topics: &[(&str, i32)]) -> Result<(), KafkaError> {
    let context = ReportingContext::default();
    let last_error = context.last_error.clone();
    let admin: AdminClient<ReportingContext> = settings
        .admin()
        .create_with_context(context)
        .map_err(|e| KafkaError::from_rdkafka(&e, "create admin client"))?;
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|(name, partitions)| NewTopic::new(name, *partitions, TopicReplication::Fixed(1)))
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = admin
        .create_topics(&new, &opts)
        .await
        .map_err(|e| last_error.explain(KafkaError::from_rdkafka(&e, "create topics")))?;
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(last_error.explain(KafkaError::new(
                    crate::KafkaErrorKind::Transient,
                    format!("create topic {topic}: {code}"),
                )));
            }
        }
    }
    Ok(())
}

/// The starts the group has recorded for `topic`'s partition `partition` (offset → starts of
/// messages begun and not finished; see the daemon's `max_starts`). Blocking; for operators
/// and tests.
pub fn recorded_starts(
    settings: &KafkaSettings,
    topic: &str,
    partition: i32,
    timeout: Duration,
) -> Result<std::collections::BTreeMap<i64, u32>, KafkaError> {
    let consumer: BaseConsumer = settings
        .consumer()
        .create()
        .map_err(|e| KafkaError::from_rdkafka(&e, "create consumer"))?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, partition);
    let committed = consumer
        .committed_offsets(tpl, timeout)
        .map_err(|e| KafkaError::from_rdkafka(&e, "committed offsets"))?;
    Ok(committed
        .elements()
        .first()
        .map(|e| crate::starts::decode(e.metadata()))
        .unwrap_or_default())
}

/// Per partition of `topic`: (partition, the group's committed offset or `None`, high watermark).
/// Blocking.
pub fn group_progress(
    settings: &KafkaSettings,
    topic: &str,
    timeout: Duration,
) -> Result<Vec<(i32, Option<i64>, i64)>, KafkaError> {
    let consumer: BaseConsumer = settings
        .consumer()
        .create()
        .map_err(|e| KafkaError::from_rdkafka(&e, "create consumer"))?;
    let metadata = consumer
        .fetch_metadata(Some(topic), timeout)
        .map_err(|e| KafkaError::from_rdkafka(&e, "metadata"))?;
    let mut tpl = TopicPartitionList::new();
    for t in metadata.topics() {
        for p in t.partitions() {
            tpl.add_partition(topic, p.id());
        }
    }
    let committed = consumer
        .committed_offsets(tpl, timeout)
        .map_err(|e| KafkaError::from_rdkafka(&e, "committed offsets"))?;
    let mut out = Vec::new();
    for e in committed.elements() {
        let (_, high) = consumer
            .fetch_watermarks(topic, e.partition(), timeout)
            .map_err(|err| KafkaError::from_rdkafka(&err, "watermarks"))?;
        let committed = match e.offset() {
            Offset::Offset(o) => Some(o),
            _ => None,
        };
        out.push((e.partition(), committed, high));
    }
    out.sort();
    Ok(out)
}

/// A record's key and payload.
pub type Record = (Option<Vec<u8>>, Vec<u8>);

/// Every record of `topic` from the beginning up to the high watermarks at the time of the
/// call, as (key, payload). Blocking; reads without a group (nothing is committed).
pub fn read_all(settings: &KafkaSettings, topic: &str, timeout: Duration) -> Result<Vec<Record>, KafkaError> {
    use rdkafka::message::Message;
    let consumer: BaseConsumer = settings
        .admin()
        .set("group.id", "vinscan-read-all")
        .set("enable.auto.commit", "false")
        .create()
        .map_err(|e| KafkaError::from_rdkafka(&e, "create consumer"))?;
    let metadata = consumer
        .fetch_metadata(Some(topic), timeout)
        .map_err(|e| KafkaError::from_rdkafka(&e, "metadata"))?;
    let mut tpl = TopicPartitionList::new();
    let mut remaining = std::collections::HashMap::new();
    for t in metadata.topics() {
        for p in t.partitions() {
            let (low, high) = consumer
                .fetch_watermarks(topic, p.id(), timeout)
                .map_err(|e| KafkaError::from_rdkafka(&e, "watermarks"))?;
            if high > low {
                remaining.insert(p.id(), high);
                tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
                    .map_err(|e| KafkaError::from_rdkafka(&e, "assign"))?;
            }
        }
    }
    let mut out = Vec::new();
    if remaining.is_empty() {
        return Ok(out);
    }
    consumer
        .assign(&tpl)
        .map_err(|e| KafkaError::from_rdkafka(&e, "assign"))?;
    let deadline = std::time::Instant::now() + timeout;
    while !remaining.is_empty() {
        if std::time::Instant::now() > deadline {
            return Err(KafkaError::new(
                crate::KafkaErrorKind::Transient,
                format!("reading {topic}: timed out"),
            ));
        }
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                if let Some(&high) = remaining.get(&m.partition()) {
                    out.push((
                        m.key().map(<[u8]>::to_vec),
                        m.payload().unwrap_or_default().to_vec(),
                    ));
                    if m.offset() + 1 >= high {
                        remaining.remove(&m.partition());
                    }
                }
            }
            Some(Err(e)) => return Err(KafkaError::from_rdkafka(&e, &format!("reading {topic}"))),
            None => {}
        }
    }
    Ok(out)
}
