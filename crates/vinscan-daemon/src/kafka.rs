//! The Kafka side of the ports (feature `kafka`): `vinscan-kafka`'s consumer as the
//! [`JobSource`], its producer as the [`Publisher`], and the serve configuration turned into
//! its settings.

use std::time::Duration;

use async_trait::async_trait;
use vinscan_kafka::{JobConsumer, KafkaError, KafkaErrorKind, KafkaSettings};

use crate::config::ServeConfig;
use crate::ports::{Delivery, DeliveryId, JobSource, PortError, PortErrorKind, Publisher};

fn port_error(e: KafkaError) -> PortError {
    let kind = match e.kind {
        // refused credentials are systemic, not a message's fault: the daemon stays up,
        // unready, and keeps trying (the cluster's users or certificates may be fixed)
        KafkaErrorKind::Transient | KafkaErrorKind::Credentials => PortErrorKind::Transient,
        KafkaErrorKind::Fatal | KafkaErrorKind::Config => PortErrorKind::Fatal,
    };
    PortError::new(kind, e.message)
}

fn kafka_id(id: &DeliveryId) -> vinscan_kafka::DeliveryId {
    vinscan_kafka::DeliveryId {
        topic: id.topic.clone(),
        partition: id.partition,
        offset: id.offset,
        epoch: id.token,
    }
}

/// The consumer-group settings of a serve configuration.
pub fn kafka_settings(config: &ServeConfig) -> KafkaSettings {
    let mut k = KafkaSettings::new(&config.kafka.brokers, &config.kafka.group_id);
    k.session_timeout = Duration::from_millis(config.kafka.session_timeout_ms);
    k.properties = config.kafka.properties.clone();
    k
}

#[async_trait]
impl JobSource for JobConsumer {
    async fn recv(&self) -> Result<Delivery, PortError> {
        let d = JobConsumer::recv(self).await.map_err(port_error)?;
        Ok(Delivery {
            id: DeliveryId {
                topic: d.id.topic,
                partition: d.id.partition,
                offset: d.id.offset,
                token: d.id.epoch,
            },
            key: d.key,
            payload: d.payload,
            timestamp_ms: d.timestamp_ms,
        })
    }

    fn finish(&self, id: &DeliveryId) {
        JobConsumer::finish(self, &kafka_id(id));
    }

    fn abandon(&self, id: &DeliveryId) {
        JobConsumer::abandon(self, &kafka_id(id));
    }

    fn starts(&self, id: &DeliveryId) -> Result<u32, PortError> {
        JobConsumer::starts(self, &kafka_id(id), Duration::from_secs(10)).map_err(port_error)
    }

    fn record_start(&self, id: &DeliveryId) -> Result<u32, PortError> {
        JobConsumer::record_start(self, &kafka_id(id), Duration::from_secs(10)).map_err(port_error)
    }

    fn set_paused(&self, paused: bool) -> Result<(), PortError> {
        if paused { self.pause() } else { self.resume() }.map_err(port_error)
    }

    fn probe(&self, timeout: Duration) -> Result<i64, PortError> {
        self.check_broker(timeout).map_err(port_error)?;
        self.lag(timeout).map_err(port_error)
    }

    fn close(&self) -> Result<(), PortError> {
        JobConsumer::close(self).map_err(port_error)
    }
}

#[async_trait]
impl Publisher for vinscan_kafka::Publisher {
    async fn send(&self, topic: &str, key: &str, payload: &[u8]) -> Result<(), PortError> {
        vinscan_kafka::Publisher::send(self, topic, key, payload, &[])
            .await
            .map(|_| ())
            .map_err(port_error)
    }

    fn flush(&self, timeout: Duration) -> Result<(), PortError> {
        vinscan_kafka::Publisher::flush(self, timeout).map_err(port_error)
    }
}
