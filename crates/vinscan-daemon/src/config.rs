//! `vinscan serve` configuration: a TOML file (`deny_unknown_fields`), every setting
//! overridable by an environment variable `VINSCAN_<SECTION>_<KEY>` (e.g.
//! `VINSCAN_KAFKA_BROKERS`, `VINSCAN_DAEMON_MAX_IN_FLIGHT`), validated without IO.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use vinscan_jobs::routing::Route;
use vinscan_storage::S3Uri;

/// A configuration that cannot be used, with the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

fn bad<T>(why: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError(why.into()))
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeConfig {
    pub kafka: KafkaSection,
    #[serde(default)]
    pub s3: S3Section,
    #[serde(default)]
    pub model: ModelSection,
    pub daemon: DaemonSection,
    /// Which pipeline and output prefix an uploaded object (S3 event) goes to; first match wins.
    #[serde(default)]
    pub routes: Vec<Route>,
}

/// `Debug` shows the keys of `properties` only: their values may be secrets (`sasl.password`).
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSection {
    /// `host:port[,host:port…]`.
    pub brokers: String,
    #[serde(default = "default_group")]
    pub group_id: String,
    /// Topics carrying job messages and S3 event notifications.
    pub topics: Vec<String>,
    pub results_topic: String,
    pub dead_letter_topic: String,
    #[serde(default = "default_session_timeout_ms")]
    pub session_timeout_ms: u64,
    /// Extra librdkafka properties (`security.protocol`, `sasl.*`, …).
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

impl std::fmt::Debug for KafkaSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSection")
            .field("brokers", &self.brokers)
            .field("group_id", &self.group_id)
            .field("topics", &self.topics)
            .field("results_topic", &self.results_topic)
            .field("dead_letter_topic", &self.dead_letter_topic)
            .field("session_timeout_ms", &self.session_timeout_ms)
            .field("properties", &self.properties.keys().collect::<Vec<_>>())
            .finish()
    }
}

fn default_group() -> String {
    "vinscan".into()
}
fn default_session_timeout_ms() -> u64 {
    45_000
}

/// S3 connection. Credentials come from the environment (`AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`) or AWS's standard chain, never from this file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Section {
    /// Custom endpoint (MinIO, Garage, s3s-fs…); unset for AWS.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    /// Path-style addressing; default on when an endpoint is set.
    pub path_style: Option<bool>,
    /// Longest single S3 request attempt in seconds (default 60); a stalled store fails the
    /// attempt after this and the job is retried with backoff.
    pub attempt_timeout_s: Option<u64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    pub model: Option<PathBuf>,
    pub mmproj: Option<PathBuf>,
    pub threads: Option<u32>,
    /// Context window in tokens (default [`vinscan_core::model::DEFAULT_CTX_SIZE`]).
    pub ctx_size: Option<u32>,
    pub gpu_layers: Option<u32>,
    /// The text stage's chat model for pipelines with a `[text_stage]`: a GGUF path, or
    /// `vinallama-2.7b` / `vinallama-7b` from the Hugging Face cache (`vinscan model pull
    /// --text`). Hashed at start, loaded on first use; unset, those pipelines read with Vintern.
    pub text_model: Option<PathBuf>,
    /// The text model's context window in tokens (default 8,192).
    pub text_ctx_size: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonSection {
    /// Outputs of job messages without `output_prefix`.
    pub default_output: S3Uri,
    /// Where the output of a job whose record needs review goes instead (the pipeline's
    /// `[review]` rules), under the same key it would have had: `s3://bucket/prefix`. Unset,
    /// every output goes to its job's prefix and only the result event says review is needed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review_output: Option<S3Uri>,
    /// Messages being worked on at once; beyond it the partitions are paused.
    #[serde(default = "default_in_flight")]
    pub max_in_flight: usize,
    /// Largest source object fetched (the pipeline's own limit applies too).
    #[serde(default = "default_max_object_bytes")]
    pub max_object_bytes: u64,
    /// How long retryable failures (S3 throttling or outage, timeouts) are retried before
    /// the job is dead-lettered.
    #[serde(default = "default_retry_budget_s")]
    pub retry_budget_s: u64,
    /// First retry delay; grows exponentially (with jitter) up to `retry_max_delay_ms`.
    #[serde(default = "default_retry_initial_ms")]
    pub retry_initial_ms: u64,
    #[serde(default = "default_retry_max_ms")]
    pub retry_max_delay_ms: u64,
    /// On SIGTERM, how long in-flight work may take to finish before it is cancelled and
    /// abandoned (uncommitted, so redelivered).
    #[serde(default = "default_grace_s")]
    pub shutdown_grace_s: u64,
    /// How many times a message may be started without finishing (the process died while
    /// working on it: a native abort, the OOM killer) before it is dead-lettered as `crashed`
    /// instead of being started again, so its partition moves on. Counted per consumer group in
    /// the committed offset's metadata, so restarts and other nodes count too.
    #[serde(default = "default_max_starts")]
    pub max_starts: u32,
    /// Longest time one attempt at a job may take, in seconds, whatever its pages; each
    /// pipeline also limits the time per page (`[limits] max_seconds_per_page`). Past it the
    /// work is cancelled; a job that times out twice is dead-lettered as `timeout`.
    #[serde(default = "default_job_timeout_s")]
    pub job_timeout_s: u64,
    /// `/metrics`, `/healthz`, `/readyz`.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
}

fn default_in_flight() -> usize {
    4
}
fn default_max_object_bytes() -> u64 {
    64 << 20
}
fn default_retry_budget_s() -> u64 {
    300
}
fn default_retry_initial_ms() -> u64 {
    500
}
fn default_retry_max_ms() -> u64 {
    15_000
}
fn default_grace_s() -> u64 {
    30
}
fn default_max_starts() -> u32 {
    3
}
fn default_job_timeout_s() -> u64 {
    1800
}
fn default_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 9464))
}

/// How an environment value becomes a TOML value: by the setting's type, never by what the
/// value looks like (`VINSCAN_KAFKA_GROUP_ID=2024` stays the string "2024").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Integer,
    Boolean,
    /// Comma-separated, or a TOML array (`["a","b"]`).
    TextList,
}

/// Every setting that can be overridden from the environment, with its type. A test walks a
/// fully populated config and checks this table covers every leaf with the right type.
const OVERRIDABLE: &[(&str, &str, Kind)] = &[
    ("kafka", "brokers", Kind::Text),
    ("kafka", "group_id", Kind::Text),
    ("kafka", "topics", Kind::TextList),
    ("kafka", "results_topic", Kind::Text),
    ("kafka", "dead_letter_topic", Kind::Text),
    ("kafka", "session_timeout_ms", Kind::Integer),
    ("s3", "endpoint", Kind::Text),
    ("s3", "region", Kind::Text),
    ("s3", "path_style", Kind::Boolean),
    ("s3", "attempt_timeout_s", Kind::Integer),
    ("model", "model", Kind::Text),
    ("model", "mmproj", Kind::Text),
    ("model", "threads", Kind::Integer),
    ("model", "ctx_size", Kind::Integer),
    ("model", "gpu_layers", Kind::Integer),
    ("model", "text_model", Kind::Text),
    ("model", "text_ctx_size", Kind::Integer),
    ("daemon", "default_output", Kind::Text),
    ("daemon", "review_output", Kind::Text),
    ("daemon", "max_in_flight", Kind::Integer),
    ("daemon", "max_object_bytes", Kind::Integer),
    ("daemon", "retry_budget_s", Kind::Integer),
    ("daemon", "retry_initial_ms", Kind::Integer),
    ("daemon", "retry_max_delay_ms", Kind::Integer),
    ("daemon", "shutdown_grace_s", Kind::Integer),
    ("daemon", "max_starts", Kind::Integer),
    ("daemon", "job_timeout_s", Kind::Integer),
    ("daemon", "listen", Kind::Text),
];

/// The environment variable overriding `section.key`.
pub fn env_name(section: &str, key: &str) -> String {
    format!("VINSCAN_{section}_{key}").to_ascii_uppercase()
}

fn env_value(name: &str, kind: Kind, raw: &str) -> Result<toml::Value, ConfigError> {
    Ok(match kind {
        Kind::Text => toml::Value::String(raw.to_owned()),
        Kind::Integer => toml::Value::Integer(
            raw.trim()
                .parse()
                .map_err(|_| ConfigError(format!("{name}={raw:?} is not an integer")))?,
        ),
        Kind::Boolean => toml::Value::Boolean(match raw.trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => true,
            "0" | "false" | "no" | "off" => false,
            _ => return bad(format!("{name}={raw:?} is not true or false")),
        }),
        Kind::TextList if raw.trim_start().starts_with('[') => {
            let t: toml::Table = toml::from_str(&format!("v = {raw}"))
                .map_err(|e| ConfigError(format!("{name}: not a TOML array: {e}")))?;
            t.get("v").cloned().unwrap_or(toml::Value::Array(Vec::new()))
        }
        Kind::TextList => toml::Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| toml::Value::String(s.to_owned()))
                .collect(),
        ),
    })
}

/// librdkafka properties vinscan sets itself (commits, the group, the brokers, under either of
/// librdkafka's names for the broker list): no config, flag or variable may set them.
pub const MANAGED_KAFKA_PROPERTIES: [&str; 5] = [
    "enable.auto.commit",
    "enable.auto.offset.store",
    "group.id",
    "bootstrap.servers",
    "metadata.broker.list",
];

/// Refuses properties that would override what vinscan manages ([`MANAGED_KAFKA_PROPERTIES`]).
pub fn check_kafka_properties(properties: &BTreeMap<String, String>) -> Result<(), ConfigError> {
    for key in MANAGED_KAFKA_PROPERTIES {
        if properties.contains_key(key) {
            return bad(format!(
                "kafka.properties may not set {key:?}: vinscan manages it"
            ));
        }
    }
    Ok(())
}

/// Prefix of the environment variables that set librdkafka properties.
pub const KAFKA_PROPERTY_ENV_PREFIX: &str = "VINSCAN_KAFKA_PROPERTY_";

/// librdkafka properties named by environment variables, so that secrets need not sit in a
/// config file or on a command line: `VINSCAN_KAFKA_PROPERTY_SASL_PASSWORD=…` sets
/// `sasl.password` (the rest of the name lowercased, `_` read as `.`: the convention of
/// Confluent's Kafka images, which works because librdkafka's property names use dots only).
/// Variables with an empty rest of the name are ignored.
pub fn kafka_properties_from_env<'a>(
    vars: impl IntoIterator<Item = (&'a String, &'a String)>,
) -> BTreeMap<String, String> {
    vars.into_iter()
        .filter_map(|(name, value)| {
            let rest = name.strip_prefix(KAFKA_PROPERTY_ENV_PREFIX)?;
            (!rest.is_empty()).then(|| (rest.to_ascii_lowercase().replace('_', "."), value.clone()))
        })
        .collect()
}

impl ServeConfig {
    /// Parses `text` with overrides from `env`, then validates. No IO.
    pub fn parse(text: &str, env: &BTreeMap<String, String>) -> Result<Self, ConfigError> {
        let mut table: toml::Table = toml::from_str(text).map_err(|e| ConfigError(e.to_string()))?;
        for (section, key, kind) in OVERRIDABLE {
            let name = env_name(section, key);
            let Some(raw) = env.get(&name) else { continue };
            let entry = table
                .entry(section.to_string())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            let Some(t) = entry.as_table_mut() else {
                return bad(format!("[{section}] is not a table"));
            };
            t.insert(key.to_string(), env_value(&name, *kind, raw)?);
        }
        // librdkafka properties from VINSCAN_KAFKA_PROPERTY_* (secrets stay out of the file)
        let from_env = kafka_properties_from_env(env);
        if !from_env.is_empty() {
            let kafka = table
                .entry("kafka")
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            let properties = kafka
                .as_table_mut()
                .map(|k| {
                    k.entry("properties")
                        .or_insert_with(|| toml::Value::Table(toml::Table::new()))
                })
                .and_then(toml::Value::as_table_mut);
            let Some(properties) = properties else {
                return bad("[kafka] and kafka.properties must be tables");
            };
            for (k, v) in from_env {
                properties.insert(k, toml::Value::String(v));
            }
        }
        let config: Self = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let k = &self.kafka;
        if k.brokers.trim().is_empty() {
            return bad("kafka.brokers is empty");
        }
        if k.topics.is_empty() || k.topics.iter().any(|t| t.trim().is_empty()) {
            return bad("kafka.topics must name at least one topic");
        }
        for (name, t) in [
            ("results_topic", &k.results_topic),
            ("dead_letter_topic", &k.dead_letter_topic),
        ] {
            if t.trim().is_empty() {
                return bad(format!("kafka.{name} is empty"));
            }
            if k.topics.contains(t) {
                return bad(format!(
                    "kafka.{name} {t:?} is also a job topic: results would loop back as jobs"
                ));
            }
        }
        if !(1000..=3_600_000).contains(&k.session_timeout_ms) {
            return bad("kafka.session_timeout_ms must be 1000..=3600000");
        }
        check_kafka_properties(&k.properties)?;
        let d = &self.daemon;
        // each message in flight has its start recorded in the committed offset's metadata,
        // which holds 100 (vinscan-kafka's starts::MAX_ENTRIES)
        if !(1..=100).contains(&d.max_in_flight) {
            return bad("daemon.max_in_flight must be 1..=100");
        }
        if !(1..=100).contains(&d.max_starts) {
            return bad("daemon.max_starts must be 1..=100");
        }
        if d.job_timeout_s == 0 {
            return bad("daemon.job_timeout_s must be positive");
        }
        if self
            .model
            .ctx_size
            .is_some_and(|n| n < vinscan_core::model::MIN_CTX_SIZE)
        {
            return bad("model.ctx_size must be at least 1024");
        }
        if self
            .model
            .text_ctx_size
            .is_some_and(|n| !(512..=131_072).contains(&n))
        {
            return bad("model.text_ctx_size must be 512..=131072");
        }
        if self.model.text_ctx_size.is_some() && self.model.text_model.is_none() {
            return bad("model.text_ctx_size is set but model.text_model is not");
        }
        if self.s3.attempt_timeout_s == Some(0) {
            return bad("s3.attempt_timeout_s must be positive");
        }
        if d.max_object_bytes == 0 {
            return bad("daemon.max_object_bytes must be positive");
        }
        if d.retry_initial_ms == 0 || d.retry_max_delay_ms < d.retry_initial_ms {
            return bad("daemon.retry_initial_ms must be positive and at most retry_max_delay_ms");
        }
        Ok(())
    }

    pub fn retry_budget(&self) -> Duration {
        Duration::from_secs(self.daemon.retry_budget_s)
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.daemon.shutdown_grace_s)
    }
}

#[cfg(test)]
mod tests;
