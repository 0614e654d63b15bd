//! How to reach the cluster, as plain data turned into librdkafka client settings.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::ClientConfig;

/// Connection and group settings shared by the consumer, the producer and the admin client.
/// `Debug` masks the values of secret properties ([`is_secret`]).
#[derive(Clone)]
pub struct KafkaSettings {
    /// `host:port[,host:port…]`.
    pub brokers: String,
    /// Consumer group id: daemons with the same id split the partitions.
    pub group_id: String,
    pub client_id: String,
    /// How long the group waits for a silent member before reassigning its partitions.
    pub session_timeout: Duration,
    /// Longest pause between two polls before the member is considered wedged; the daemon
    /// keeps polling during inference, so this only trips when the process is stuck.
    pub max_poll_interval: Duration,
    /// Any other librdkafka property (`security.protocol`, `sasl.*`, `partition.assignment.strategy`, …).
    /// Secret values (passwords, keys) are masked by `Debug`; vinscan never logs them otherwise.
    pub properties: BTreeMap<String, String>,
}

/// Whether a librdkafka property holds a secret (librdkafka's CONFIGURATION.md marks these
/// `sensitive`): `sasl.password`, `ssl.key.password`, `ssl.keystore.password`,
/// `ssl.key.pem`, `sasl.oauthbearer.client.secret`, `sasl.oauthbearer.config`, and anything
/// else naming a password, secret, private key or token.
pub fn is_secret(property: &str) -> bool {
    let p = property.to_ascii_lowercase();
    [
        "password",
        "secret",
        "key.pem",
        "oauthbearer.config",
        "token",
        "private",
    ]
    .iter()
    .any(|s| p.contains(s))
}

/// A property map whose `Debug` shows secret values as `***`.
pub struct MaskedProperties<'a>(pub &'a BTreeMap<String, String>);

impl std::fmt::Debug for MaskedProperties<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(
                self.0
                    .iter()
                    .map(|(k, v)| (k, if is_secret(k) { "***" } else { v.as_str() })),
            )
            .finish()
    }
}

impl std::fmt::Debug for KafkaSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSettings")
            .field("brokers", &self.brokers)
            .field("group_id", &self.group_id)
            .field("client_id", &self.client_id)
            .field("session_timeout", &self.session_timeout)
            .field("max_poll_interval", &self.max_poll_interval)
            .field("properties", &MaskedProperties(&self.properties))
            .finish()
    }
}

impl KafkaSettings {
    pub fn new(brokers: impl Into<String>, group_id: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            group_id: group_id.into(),
            client_id: "vinscan".into(),
            session_timeout: Duration::from_secs(45),
            max_poll_interval: Duration::from_secs(300),
            properties: BTreeMap::new(),
        }
    }

    fn base(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers)
            .set("client.id", &self.client_id)
            // quiet the log when a broker is away for a while; errors still surface
            .set("log.connection.close", "false");
        for (k, v) in &self.properties {
            c.set(k, v);
        }
        c
    }

    pub(crate) fn consumer(&self) -> ClientConfig {
        let mut c = self.base();
        c.set("group.id", &self.group_id)
            // offsets are committed by vinscan, only for finished work
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", self.session_timeout.as_millis().to_string())
            .set(
                "max.poll.interval.ms",
                self.max_poll_interval.as_millis().to_string(),
            )
            // job messages are small: keep the prefetch queue small so a paused daemon does not
            // sit on work another member could take
            .set("queued.max.messages.kbytes", "1024");
        for (k, v) in &self.properties {
            c.set(k, v);
        }
        c
    }

    pub(crate) fn producer(&self) -> ClientConfig {
        let mut c = self.base();
        // Idempotent (the broker drops a retried batch it already has, by producer id and
        // sequence number), so librdkafka's own retries never duplicate a result event or a
        // dead letter; it implies acks=all. A result event can still repeat when the daemon
        // redoes a finished job whose offset was not committed (a daemon crash, a rebalance):
        // at-least-once, never lost.
        c.set("enable.idempotence", "true")
            .set("acks", "all")
            .set("message.timeout.ms", "30000")
            .set("linger.ms", "5");
        for (k, v) in &self.properties {
            c.set(k, v);
        }
        c
    }

    pub(crate) fn admin(&self) -> ClientConfig {
        self.base()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Retries inside librdkafka must not duplicate records: the producer is idempotent.
    #[test]
    fn the_producer_is_idempotent_with_acks_from_every_replica() {
        let c = KafkaSettings::new("k:9092", "g").producer();
        assert_eq!(c.get("enable.idempotence"), Some("true"));
        assert_eq!(c.get("acks"), Some("all"));
    }

    #[test]
    fn debug_masks_secrets() {
        let mut s = KafkaSettings::new("k:9092", "g");
        for (k, v) in [
            ("sasl.password", "hunter2"),
            ("ssl.key.password", "pem-pass"),
            ("sasl.oauthbearer.client.secret", "cs"),
            ("security.protocol", "SASL_SSL"),
            ("sasl.username", "vinscan"),
        ] {
            s.properties.insert(k.into(), v.into());
        }
        let shown = format!("{s:?}");
        for secret in ["hunter2", "pem-pass", "\"cs\""] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(shown.contains("SASL_SSL") && shown.contains("vinscan"), "{shown}");
    }
}
