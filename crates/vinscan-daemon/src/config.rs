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

    /// Regression: values were parsed as TOML first, so a numeric group id became an integer
    /// and the config was refused.
    #[test]
    fn values_take_the_settings_type_not_their_looks() {
        let c = ServeConfig::parse(
            MINIMAL,
            &env(&[
                ("VINSCAN_KAFKA_GROUP_ID", "2024"),
                ("VINSCAN_KAFKA_RESULTS_TOPIC", "true"),
                ("VINSCAN_KAFKA_TOPICS", "[\"x\", \"y\"]"),
            ]),
        )
        .expect("valid");
        assert_eq!(c.kafka.group_id, "2024");
        assert_eq!(c.kafka.results_topic, "true");
        assert_eq!(c.kafka.topics, ["x", "y"]);
        let e = ServeConfig::parse(MINIMAL, &env(&[("VINSCAN_DAEMON_MAX_IN_FLIGHT", "four")]))
            .expect_err("not a number");
        assert!(e.0.contains("VINSCAN_DAEMON_MAX_IN_FLIGHT"), "{e}");
    }

    /// Every leaf of a fully populated config can be overridden, with the right type.
    #[test]
    fn every_setting_has_an_environment_variable_of_its_type() {
        let full = ServeConfig::parse(
            &format!(
                "{MINIMAL}\n[s3]\nendpoint = \"http://s3\"\nregion = \"r\"\npath_style = true\nattempt_timeout_s = 5\n\
                 [model]\nmodel = \"/m\"\nmmproj = \"/p\"\nthreads = 2\nctx_size = 4096\ngpu_layers = 0\n"
            )
            .replace("[daemon]", "[daemon]\nreview_output = \"s3://out/review\""),
            &env(&[]),
        )
        .expect("valid");
        let table = toml::Value::try_from(&full).expect("serialise");
        let mut leaves = Vec::new();
        for (section, value) in table.as_table().expect("table") {
            let Some(t) = value.as_table() else { continue };
            for (key, leaf) in t {
                if key != "properties" {
                    leaves.push((section.clone(), key.clone(), leaf.clone()));
                }
            }
        }
        assert_eq!(leaves.len(), OVERRIDABLE.len(), "{leaves:?}");
        for (section, key, leaf) in leaves {
            let kind = OVERRIDABLE
                .iter()
                .find(|(s, k, _)| *s == section && *k == key)
                .map(|(_, _, kind)| *kind)
                .unwrap_or_else(|| panic!("{section}.{key} has no environment variable"));
            let expected = match leaf {
                toml::Value::String(_) => Kind::Text,
                toml::Value::Integer(_) => Kind::Integer,
                toml::Value::Boolean(_) => Kind::Boolean,
                toml::Value::Array(_) => Kind::TextList,
                other => panic!("{section}.{key}: unexpected {other}"),
            };
            assert_eq!(kind, expected, "{section}.{key}");
        }
    }

    /// The configs shown to users must parse: the README example and the Kubernetes ConfigMap.
    #[test]
    fn documented_configs_are_valid() {
        let readme = include_str!("../../../README.md");
        let start = readme.find("# serve.toml").expect("README has the serve example");
        let example = &readme[start..];
        let example = &example[..example.find("```").expect("end of the example")];
        ServeConfig::parse(example, &env(&[])).expect("README example");

        let configmap = include_str!("../../../ops/deploy/k8s/configmap.yaml");
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
            assert!(e.0.contains(needle), "{e} lacks {needle}");
        };
        bad(
            &MINIMAL.replace("[daemon]", "[daemon]\nmax_inflight = 3"),
            "unknown field",
        );
        bad(&MINIMAL.replace("\"results\"", "\"jobs\""), "loop back");
        bad(&MINIMAL.replace("s3://out/results", "/tmp/out"), "s3://");
        bad(
            &MINIMAL.replace("s3://out/results", "s3://Out/results"),
            "lowercase",
        );
        bad(
            &format!("{MINIMAL}\n[kafka.properties]\n\"enable.auto.commit\" = \"true\""),
            "manages it",
        );
    }

    #[test]
    fn properties_from_environment_variables() {
        let vars: BTreeMap<String, String> = [
            ("VINSCAN_KAFKA_PROPERTY_SASL_PASSWORD", "hunter2"),
            ("VINSCAN_KAFKA_PROPERTY_SECURITY_PROTOCOL", "SASL_SSL"),
            ("VINSCAN_KAFKA_PROPERTY_", "ignored"),
            ("VINSCAN_KAFKA_BROKERS", "not a property"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let props = kafka_properties_from_env(&vars);
        assert_eq!(props.len(), 2, "{props:?}");
        assert_eq!(props["sasl.password"], "hunter2");
        assert_eq!(props["security.protocol"], "SASL_SSL");
    }

    /// Secrets come from the environment: `VINSCAN_KAFKA_PROPERTY_SASL_PASSWORD` sets
    /// `sasl.password` over the file's value, and vinscan's own keys stay refused there too.
    #[test]
    fn kafka_properties_from_the_environment() {
        let c = ServeConfig::parse(
            &format!("{MINIMAL}\n[kafka.properties]\n\"sasl.password\" = \"in-file\""),
            &env(&[
                ("VINSCAN_KAFKA_PROPERTY_SASL_PASSWORD", "from-env"),
                ("VINSCAN_KAFKA_PROPERTY_SECURITY_PROTOCOL", "SASL_SSL"),
            ]),
        )
        .expect("valid");
        assert_eq!(c.kafka.properties["sasl.password"], "from-env");
        assert_eq!(c.kafka.properties["security.protocol"], "SASL_SSL");
        let e = ServeConfig::parse(MINIMAL, &env(&[("VINSCAN_KAFKA_PROPERTY_GROUP_ID", "x")]))
            .expect_err("managed");
        assert!(e.0.contains("group.id"), "{e}");
    }

    #[test]
    fn debug_hides_property_values() {
        let c = ServeConfig::parse(
            &format!("{MINIMAL}\n[kafka.properties]\n\"sasl.password\" = \"hunter2\""),
            &env(&[]),
        )
        .expect("valid");
        let shown = format!("{c:?}");
        assert!(
            shown.contains("sasl.password") && !shown.contains("hunter2"),
            "{shown}"
        );
    }
}
