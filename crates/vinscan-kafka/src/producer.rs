//! Result events and dead-letter records: sent, and reported only once the broker has them.

use std::time::Duration;

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

use crate::{KafkaError, KafkaSettings};

#[derive(Clone)]
pub struct Publisher {
    producer: FutureProducer,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher").finish_non_exhaustive()
    }
}

impl Publisher {
    pub fn new(settings: &KafkaSettings) -> Result<Self, KafkaError> {
        let producer = settings
            .producer()
            .create()
            .map_err(|e| KafkaError::from_rdkafka(&e, "create producer"))?;
        Ok(Self { producer })
    }

    /// Sends one record and waits for the broker's acknowledgement (up to librdkafka's
    /// `message.timeout.ms`). Returns the partition and offset it landed at.
    pub async fn send(
        &self,
        topic: &str,
        key: &str,
        payload: &[u8],
        headers: &[(&str, &str)],
    ) -> Result<(i32, i64), KafkaError> {
        let mut h = OwnedHeaders::new_with_capacity(headers.len());
        for (k, v) in headers {
            h = h.insert(Header {
                key: k,
                value: Some(v.as_bytes()),
            });
        }
        let record = FutureRecord::to(topic).key(key).payload(payload).headers(h);
        match self.producer.send(record, Duration::from_secs(5)).await {
            Ok(delivery) => Ok((delivery.partition, delivery.offset)),
            Err((e, _)) => Err(KafkaError::from_produce(&e, &format!("produce to {topic}"))),
        }
    }

    /// Waits for queued records to be delivered (shutdown).
    pub fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        self.producer
            .flush(timeout)
            .map_err(|e| KafkaError::from_rdkafka(&e, "flush"))
    }
}
