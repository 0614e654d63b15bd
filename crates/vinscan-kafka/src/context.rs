//! The librdkafka client context every vinscan client uses: librdkafka's log lines go to
//! `tracing`, and the last error its error callback reported (authentication refused, TLS
//! handshake failed, every broker down) is kept, so a request that then times out can say why
//! instead of only "timed out".

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::types::RDKafkaErrorCode;

use crate::{KafkaError, KafkaErrorKind};

/// How long a recorded client error explains later failures.
const EXPLAINS_FOR: Duration = Duration::from_secs(60);

/// A client-level error librdkafka reported, and when.
#[derive(Debug, Clone)]
struct Recorded {
    code: Option<RDKafkaErrorCode>,
    reason: String,
    at: Instant,
}

impl Recorded {
    /// A refusal that names its cause (credentials, certificate), as opposed to the
    /// consequences librdkafka reports after it ("1/1 brokers are down", transport failure).
    fn is_cause(&self) -> bool {
        matches!(
            self.code,
            Some(RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SSL)
        )
    }
}

/// The last client-level error librdkafka reported, shared by a client and its context. A
/// cause (authentication, TLS) is not replaced by the consequences that follow it.
#[derive(Debug, Clone, Default)]
pub(crate) struct LastError(Arc<Mutex<Option<Recorded>>>);

impl LastError {
    fn record(&self, error: &rdkafka::error::KafkaError, reason: &str) {
        let new = Recorded {
            code: error.rdkafka_error_code(),
            reason: reason.to_owned(),
            at: Instant::now(),
        };
        let mut last = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let keep = last
            .as_ref()
            .is_some_and(|old| old.is_cause() && !new.is_cause() && old.at.elapsed() < EXPLAINS_FOR);
        if !keep {
            *last = Some(new);
        }
    }

    /// Forgets the recorded error: the cluster answered since.
    pub(crate) fn clear(&self) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// `err` with the client's last error (of the past minute) appended. A passing failure
    /// (a timeout, a transport failure) after an authentication or TLS refusal becomes
    /// [`KafkaErrorKind::Credentials`]; a refusal of another kind (too large, not authorised)
    /// keeps its kind.
    pub(crate) fn explain(&self, mut err: KafkaError) -> KafkaError {
        let last = self.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(last) = last.filter(|l| l.at.elapsed() < EXPLAINS_FOR) {
            if last.is_cause() && err.kind == KafkaErrorKind::Transient {
                err.kind = KafkaErrorKind::Credentials;
            }
            err.message = format!("{} (the client's last error: {})", err.message, last.reason);
        }
        err
    }
}

/// Logs through `tracing` and records client errors; see the module docs.
#[derive(Debug, Clone, Default)]
pub(crate) struct ReportingContext {
    pub(crate) last_error: LastError,
}

/// librdkafka's log levels as `tracing` events.
pub(crate) fn log(level: RDKafkaLogLevel, fac: &str, log_message: &str) {
    use RDKafkaLogLevel as L;
    match level {
        L::Emerg | L::Alert | L::Critical | L::Error => {
            tracing::error!(facility = fac, "librdkafka: {log_message}")
        }
        L::Warning => tracing::warn!(facility = fac, "librdkafka: {log_message}"),
        L::Notice | L::Info => tracing::info!(facility = fac, "librdkafka: {log_message}"),
        L::Debug => tracing::debug!(facility = fac, "librdkafka: {log_message}"),
    }
}

/// Records and logs a client error; the same words reach the caller through
/// [`LastError::explain`].
pub(crate) fn client_error(last: &LastError, error: &rdkafka::error::KafkaError, reason: &str) {
    last.record(error, reason);
    tracing::warn!(error = %error, "kafka client error: {reason}");
}

impl ClientContext for ReportingContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        log(level, fac, log_message);
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        client_error(&self.last_error, &error, reason);
    }
}
