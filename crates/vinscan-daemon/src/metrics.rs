//! Prometheus metrics of the daemon. Names follow `vinscan_<area>_<name>_<unit>`; label values
//! are bounded sets (outcomes, stages, error kinds, checks), never ids or keys.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// How a job or message ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Output written, result event sent.
    Ok,
    /// Failed for good: dead letter and result event sent.
    DeadLettered,
    /// Not a job: dead letter sent.
    Poison,
    /// A source changed before it was read: result event sent, nothing else.
    Superseded,
    /// Left undone, uncommitted, for redelivery.
    Abandoned,
    /// A message with no job in it (an S3 event other than a creation).
    Ignored,
    /// A null value (a tombstone): skipped.
    Tombstone,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::DeadLettered => "dead_lettered",
            Self::Poison => "poison",
            Self::Superseded => "superseded",
            Self::Abandoned => "abandoned",
            Self::Ignored => "ignored",
            Self::Tombstone => "tombstone",
        }
    }
}

/// A stage of a job whose latency is recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Fetch,
    Extract,
    Write,
    Publish,
    Job,
}

impl Stage {
    fn as_str(self) -> &'static str {
        match self {
            Self::Fetch => "fetch",
            Self::Extract => "extract",
            Self::Write => "write",
            Self::Publish => "publish",
            Self::Job => "job",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageLabels {
    pub stage: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CheckLabels {
    /// `model`, `broker`, `store`.
    pub check: &'static str,
}

pub struct Metrics {
    registry: Registry,
    pub jobs: Family<OutcomeLabels, Counter>,
    pub messages: Counter,
    pub retries: Family<KindLabels, Counter>,
    pub stage_seconds: Family<StageLabels, Histogram>,
    pub in_flight: Gauge,
    pub paused: Gauge,
    /// Jobs waiting out a systemic fault ([`crate::Daemon::hold`]).
    pub held: Gauge,
    pub consumer_lag: Gauge,
    pub generated_tokens: Counter,
    /// Seconds the model spent generating; `rate(tokens) / rate(seconds)` is tokens per second.
    pub generate_seconds: Counter<f64, AtomicU64>,
    pub pages: Counter,
    /// `vinscan_ready{check}`, kept by [`crate::Readiness`].
    pub ready: Family<CheckLabels, Gauge>,
}

fn stage_histogram() -> Histogram {
    // 5 ms … ~10 min
    Histogram::new(exponential_buckets(0.005, 2.5, 14))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("vinscan");
        let jobs = Family::<OutcomeLabels, Counter>::default();
        registry.register("jobs", "Jobs and messages by final outcome", jobs.clone());
        let messages = Counter::default();
        registry.register("consumer_messages", "Messages consumed", messages.clone());
        let retries = Family::<KindLabels, Counter>::default();
        registry.register(
            "job_retries",
            "Job attempts retried, by error kind",
            retries.clone(),
        );
        let stage_seconds =
            Family::<StageLabels, Histogram>::new_with_constructor(stage_histogram as fn() -> Histogram);
        registry.register(
            "job_stage_seconds",
            "Latency of job stages",
            stage_seconds.clone(),
        );
        let in_flight = Gauge::default();
        registry.register("jobs_in_flight", "Messages being worked on", in_flight.clone());
        let paused = Gauge::default();
        registry.register(
            "consumer_paused",
            "1 while partitions are paused (backpressure, or a systemic fault holding the work)",
            paused.clone(),
        );
        let held = Gauge::default();
        registry.register(
            "jobs_held",
            "Jobs waiting for a systemic fault (store unreachable past the retry budget, access denied, output bucket missing) to clear instead of being dead-lettered",
            held.clone(),
        );
        let consumer_lag = Gauge::default();
        registry.register(
            "consumer_lag_messages",
            "Messages between the committed position and the high watermark, over owned partitions",
            consumer_lag.clone(),
        );
        let generated_tokens = Counter::default();
        registry.register(
            "model_generated_tokens",
            "Tokens generated by the model",
            generated_tokens.clone(),
        );
        let generate_seconds = Counter::<f64, AtomicU64>::default();
        registry.register(
            "model_generate_seconds",
            "Seconds the model spent generating output tokens",
            generate_seconds.clone(),
        );
        let pages = Counter::default();
        registry.register("pages", "Pages extracted", pages.clone());
        let ready = Family::<CheckLabels, Gauge>::default();
        registry.register("ready", "1 when a readiness check passes", ready.clone());
        Self {
            registry,
            jobs,
            messages,
            retries,
            stage_seconds,
            in_flight,
            paused,
            held,
            consumer_lag,
            generated_tokens,
            generate_seconds,
            pages,
            ready,
        }
    }

    pub fn outcome(&self, outcome: Outcome) {
        self.jobs
            .get_or_create(&OutcomeLabels {
                outcome: outcome.as_str(),
            })
            .inc();
    }

    pub fn stage(&self, stage: Stage, seconds: f64) {
        self.stage_seconds
            .get_or_create(&StageLabels {
                stage: stage.as_str(),
            })
            .observe(seconds);
    }

    pub fn retry(&self, kind: &'static str) {
        self.retries.get_or_create(&KindLabels { kind }).inc();
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    /// How many times `outcome` was recorded (tests and logs).
    pub fn count(&self, outcome: Outcome) -> u64 {
        self.jobs
            .get_or_create(&OutcomeLabels {
                outcome: outcome.as_str(),
            })
            .get()
    }
}
