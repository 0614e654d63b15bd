//! `vinscan serve` configuration: a TOML file (`deny_unknown_fields`), every setting
//! overridable by an environment variable `VINSCAN_<SECTION>_<KEY>` (e.g.
//! `VINSCAN_KAFKA_BROKERS`, `VINSCAN_DAEMON_MAX_IN_FLIGHT`), validated without IO.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;
use vinscan_jobs::routing::Route;

#[derive(Debug, Clone, Deserialize)]
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

#[derive(Debug, Clone, Deserialize)]
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

fn default_group() -> String {
    "vinscan".into()
}
fn default_session_timeout_ms() -> u64 {
    45_000
}

/// S3 connection. Credentials come from the environment (`AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`), never from this file.
#[derive(Debug, Clone, Default, Deserialize)]
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

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    pub model: Option<PathBuf>,
    pub mmproj: Option<PathBuf>,
    pub threads: Option<u32>,
    pub ctx_size: Option<u32>,
    pub gpu_layers: Option<u32>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonSection {
    /// Outputs of job messages without `output_prefix`: `s3://bucket/prefix`.
    pub default_output: String,
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
    /// First retry delay; doubles up to `retry_max_delay_ms`.
    #[serde(default = "default_retry_initial_ms")]
    pub retry_initial_ms: u64,
    #[serde(default = "default_retry_max_ms")]
    pub retry_max_delay_ms: u64,
    /// On SIGTERM, how long in-flight work may take to finish before it is abandoned
    /// (uncommitted, so redelivered).
    #[serde(default = "default_grace_s")]
    pub shutdown_grace_s: u64,
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
fn default_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 9464))
}

/// Settings that can be overridden from the environment, as (section, key). Arrays take TOML
/// syntax (`VINSCAN_KAFKA_TOPICS='["a","b"]'`) or a comma-separated list.
const OVERRIDABLE: &[(&str, &str)] = &[
    ("kafka", "brokers"),
    ("kafka", "group_id"),
    ("kafka", "topics"),
    ("kafka", "results_topic"),
    ("kafka", "dead_letter_topic"),
    ("kafka", "session_timeout_ms"),
    ("s3", "endpoint"),
    ("s3", "region"),
    ("s3", "path_style"),
    ("s3", "attempt_timeout_s"),
    ("model", "model"),
    ("model", "mmproj"),
    ("model", "threads"),
    ("model", "ctx_size"),
    ("model", "gpu_layers"),
    ("daemon", "default_output"),
    ("daemon", "max_in_flight"),
    ("daemon", "max_object_bytes"),
    ("daemon", "retry_budget_s"),
    ("daemon", "retry_initial_ms"),
    ("daemon", "retry_max_delay_ms"),
    ("daemon", "shutdown_grace_s"),
    ("daemon", "listen"),
];

/// The environment variable overriding `section.key`.
pub fn env_name(section: &str, key: &str) -> String {
    format!("VINSCAN_{}_{}", section, key).to_ascii_uppercase()
}

fn env_value(section: &str, key: &str, raw: &str) -> toml::Value {
    let array = key == "topics";
    if let Ok(t) = toml::from_str::<toml::Table>(&format!("v = {raw}"))
        && let Some(v) = t.get("v")
        && (!array || v.is_array())
    {
        return v.clone();
    }
    if array {
        return toml::Value::Array(
            raw.split(',')
                .map(|s| toml::Value::String(s.trim().to_owned()))
                .filter(|v| v.as_str() != Some(""))
                .collect(),
        );
    }
    let _ = section;
    toml::Value::String(raw.to_owned())
}

impl ServeConfig {
    /// Reads the file, applies the environment, validates.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let env: BTreeMap<String, String> = std::env::vars().collect();
        Self::parse(&text, &env).with_context(|| format!("config {}", path.display()))
    }

    /// Parses `text` with overrides from `env`, then validates. No IO.
    pub fn parse(text: &str, env: &BTreeMap<String, String>) -> anyhow::Result<Self> {
        let mut table: toml::Table = toml::from_str(text)?;
        for (section, key) in OVERRIDABLE {
            if let Some(raw) = env.get(&env_name(section, key)) {
                let entry = table
                    .entry(section.to_string())
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()));
                let Some(t) = entry.as_table_mut() else {
                    bail!("[{section}] is not a table");
                };
                t.insert(key.to_string(), env_value(section, key, raw));
            }
        }
        let config: Self = toml::Value::Table(table).try_into()?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> anyhow::Result<()> {
        let k = &self.kafka;
        if k.brokers.trim().is_empty() {
            bail!("kafka.brokers is empty");
        }
        if k.topics.is_empty() || k.topics.iter().any(|t| t.trim().is_empty()) {
            bail!("kafka.topics must name at least one topic");
        }
        for (name, t) in [
            ("results_topic", &k.results_topic),
            ("dead_letter_topic", &k.dead_letter_topic),
        ] {
            if t.trim().is_empty() {
                bail!("kafka.{name} is empty");
            }
            if k.topics.contains(t) {
                bail!("kafka.{name} {t:?} is also a job topic: results would loop back as jobs");
            }
        }
        if !(1000..=3_600_000).contains(&k.session_timeout_ms) {
            bail!("kafka.session_timeout_ms must be 1000..=3600000");
        }
        for key in [
            "enable.auto.commit",
            "enable.auto.offset.store",
            "group.id",
            "bootstrap.servers",
        ] {
            if k.properties.contains_key(key) {
                bail!("kafka.properties may not set {key:?}: vinscan manages it");
            }
        }
        let d = &self.daemon;
        if !d.default_output.starts_with("s3://") || d.default_output.len() <= 5 {
            bail!("daemon.default_output must be s3://bucket[/prefix]");
        }
        if !(1..=256).contains(&d.max_in_flight) {
            bail!("daemon.max_in_flight must be 1..=256");
        }
        if self.s3.attempt_timeout_s == Some(0) {
            bail!("s3.attempt_timeout_s must be positive");
        }
        if d.max_object_bytes == 0 {
            bail!("daemon.max_object_bytes must be positive");
        }
        if d.retry_initial_ms == 0 || d.retry_max_delay_ms < d.retry_initial_ms {
            bail!("daemon.retry_initial_ms must be positive and at most retry_max_delay_ms");
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
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[kafka]
brokers = "127.0.0.1:9092"
topics = ["jobs"]
results_topic = "results"
dead_letter_topic = "dlq"
[daemon]
default_output = "s3://out/results"
"#;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn minimal_config_has_defaults() {
        let c = ServeConfig::parse(MINIMAL, &env(&[])).expect("valid");
        assert_eq!(c.kafka.group_id, "vinscan");
        assert_eq!(c.daemon.max_in_flight, 4);
        assert_eq!(c.daemon.listen.port(), 9464);
    }

    #[test]
    fn environment_overrides_the_file() {
        let c = ServeConfig::parse(
            MINIMAL,
            &env(&[
                ("VINSCAN_KAFKA_BROKERS", "k1:9092,k2:9092"),
                ("VINSCAN_KAFKA_TOPICS", "a, b"),
                ("VINSCAN_DAEMON_MAX_IN_FLIGHT", "9"),
                ("VINSCAN_S3_PATH_STYLE", "true"),
                ("VINSCAN_DAEMON_LISTEN", "127.0.0.1:0"),
            ]),
        )
        .expect("valid");
        assert_eq!(c.kafka.brokers, "k1:9092,k2:9092");
        assert_eq!(c.kafka.topics, ["a", "b"]);
        assert_eq!(c.daemon.max_in_flight, 9);
        assert_eq!(c.s3.path_style, Some(true));
        assert_eq!(c.daemon.listen.port(), 0);
    }

    /// The configs shown to users must parse: the README example and the Kubernetes ConfigMap.
    #[test]
    fn documented_configs_are_valid() {
        let readme = include_str!("../../../../README.md");
        let start = readme.find("# serve.toml").expect("README has the serve example");
        let example = &readme[start..];
        let example = &example[..example.find("```").expect("end of the example")];
        ServeConfig::parse(example, &env(&[])).expect("README example");

        let configmap = include_str!("../../../../ops/deploy/k8s/configmap.yaml");
        let body: String = configmap
            .lines()
            .skip_while(|l| !l.contains("serve.toml: |"))
            .skip(1)
            .map(|l| format!("{}\n", l.strip_prefix("    ").unwrap_or(l)))
            .collect();
        ServeConfig::parse(&body, &env(&[])).expect("ConfigMap");
    }

    #[test]
    fn refuses_bad_configs() {
        let bad = |text: &str, needle: &str| {
            let e = ServeConfig::parse(text, &env(&[])).expect_err(text);
            assert!(format!("{e:#}").contains(needle), "{e:#} lacks {needle}");
        };
        bad(
            &MINIMAL.replace("[daemon]", "[daemon]\nmax_inflight = 3"),
            "unknown field",
        );
        bad(&MINIMAL.replace("\"results\"", "\"jobs\""), "loop back");
        bad(&MINIMAL.replace("s3://out/results", "/tmp/out"), "default_output");
        bad(
            &format!("{MINIMAL}\n[kafka.properties]\n\"enable.auto.commit\" = \"true\""),
            "manages it",
        );
    }
}
