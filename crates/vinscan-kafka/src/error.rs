//! Kafka errors: a kind that decides whether waiting and retrying can help.

/// What kind of Kafka failure happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KafkaErrorKind {
    /// The settings are refused (unknown property, bad value): retrying cannot help.
    Config,
    /// The broker is unreachable, slow or rebalancing: retrying may succeed.
    Transient,
    /// The broker refused the request for good (authorisation, message too large, …).
    Fatal,
    /// The cluster refused the client's credentials or its certificate was not trusted
    /// (SASL authentication, TLS handshake). Nothing this client sends can succeed until the
    /// credentials, the trust store or the cluster's users change; no message is at fault.
    Credentials,
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct KafkaError {
    pub kind: KafkaErrorKind,
    pub message: String,
}

impl KafkaError {
    pub fn new(kind: KafkaErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    pub(crate) fn from_rdkafka(e: &rdkafka::error::KafkaError, what: &str) -> Self {
        use rdkafka::error::KafkaError as E;
        use rdkafka::types::RDKafkaErrorCode as C;
        let kind = match e {
            E::ClientConfig(..) | E::ClientCreation(_) | E::Subscription(_) => KafkaErrorKind::Config,
            _ => match e.rdkafka_error_code() {
                Some(
                    C::TopicAuthorizationFailed
                    | C::GroupAuthorizationFailed
                    | C::ClusterAuthorizationFailed
                    | C::MessageSizeTooLarge
                    | C::InvalidMessageSize
                    | C::Fatal,
                ) => KafkaErrorKind::Fatal,
                _ => KafkaErrorKind::Transient,
            },
        };
        Self::new(kind, format!("{what}: {e}"))
    }

    /// A failed produce: as [`from_rdkafka`](Self::from_rdkafka), and also fatal where the
    /// broker refuses the record itself, which resending cannot change (the topic does not
    /// exist or is invalid, a policy or the record format is refused).
    pub(crate) fn from_produce(e: &rdkafka::error::KafkaError, what: &str) -> Self {
        use rdkafka::types::RDKafkaErrorCode as C;
        let mut err = Self::from_rdkafka(e, what);
        if matches!(
            e.rdkafka_error_code(),
            Some(
                C::UnknownTopicOrPartition
                    | C::UnknownTopic
                    | C::InvalidTopic
                    | C::PolicyViolation
                    | C::InvalidRecord
                    | C::MessageBatchTooLarge
                    | C::InvalidMessage
            )
        ) {
            err.kind = KafkaErrorKind::Fatal;
        }
        err
    }
}
