//! The serve config: parsing, environment overrides, validation.

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
             [model]\nmodel = \"/m\"\nmmproj = \"/p\"\nthreads = 2\nctx_size = 4096\ngpu_layers = 0\n\
             text_model = \"/t\"\ntext_ctx_size = 8192\n"
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
    bad(
        &format!("{MINIMAL}\n[model]\ntext_model = \"/t\"\ntext_ctx_size = 100"),
        "512..=131072",
    );
    bad(
        &format!("{MINIMAL}\n[model]\ntext_ctx_size = 4096"),
        "text_model is not",
    );
    bad(&format!("{MINIMAL}\n[model]\nctx_size = 10"), "at least 1024");
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
    let e =
        ServeConfig::parse(MINIMAL, &env(&[("VINSCAN_KAFKA_PROPERTY_GROUP_ID", "x")])).expect_err("managed");
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
