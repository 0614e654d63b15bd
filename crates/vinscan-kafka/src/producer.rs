//! Result events and dead-letter records: sent, and reported only once the broker has them.

use std::time::Duration;

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

use crate::context::{LastError, ReportingContext};
use crate::{KafkaError, KafkaErrorKind, KafkaSettings};

#[derive(Clone)]
pub struct Publisher {
    producer: FutureProducer<ReportingContext>,
    last_error: LastError,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher").finish_non_exhaustive()
    }
}

impl Publisher {
    pub fn new(settings: &KafkaSettings) -> Result<Self, KafkaError> {
        let context = ReportingContext::default();
        let last_error = context.last_error.clone();
        let producer = settings
            .producer()
            .create_with_context(context)
            .map_err(|e| KafkaError::from_rdkafka(&e, "create producer"))?;
        Ok(Self { producer, last_error })
    }

    /// Blocking: asks the cluster for its metadata, so a caller can fail fast with the reason
    /// (authentication refused, untrusted certificate, no broker) before it sends anything.
    /// Returns as soon as a refusal with a cause (authentication, TLS) is known.
    pub fn check(&self, timeout: Duration) -> Result<(), KafkaError> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let step = deadline
                .saturating_duration_since(std::time::Instant::now())
                .min(Duration::from_secs(1));
            let err = match self.producer.client().fetch_metadata(None, step) {
                Ok(_) => {
                    self.last_error.clear();
                    return Ok(());
                }
                Err(e) => self.last_error.explain(KafkaError::from_rdkafka(&e, "metadata")),
            };
            let refused = matches!(err.kind, KafkaErrorKind::Fatal | KafkaErrorKind::Credentials);
            if refused || std::time::Instant::now() >= deadline {
                return Err(err);
            }
        }
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
            Err((e, _)) => Err(self
                .last_error
                .explain(KafkaError::from_produce(&e, &format!("produce to {topic}")))),
        }
    }

    /// Waits for queued records to be delivered (shutdown).
    pub fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        self.producer
            .flush(timeout)
            .map_err(|e| KafkaError::from_rdkafka(&e, "flush"))
    }
}
