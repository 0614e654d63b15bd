//! `enqueue` and `serve` over the broker's SASL_SSL listener (SCRAM-SHA-512, a certificate
//! signed by the test CA): with the right password they put and process jobs; with a wrong one
//! they fail with the cause named, the daemon stays unready, and nothing is consumed,
//! committed or dead-lettered. The password comes from `VINSCAN_KAFKA_PROPERTY_SASL_PASSWORD`
//! and never shows in a log.

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use image::ImageFormat;
use serde_json::Value;
use vinscan_kafka::admin;
use vinscan_storage::{ObjectStore, S3Store};

use crate::common;
use crate::fixture::*;

struct Secure {
    address: String,
    ca: String,
    user: String,
    password: String,
}

fn secure() -> Secure {
    let var = |name: &str| {
        std::env::var(name).unwrap_or_else(|_| panic!("{name} is unset: run the tests through ops/test.sh"))
    };
    Secure {
        address: var("VINSCAN_TEST_KAFKA_SASL_SSL"),
        ca: var("VINSCAN_TEST_KAFKA_CA"),
        user: var("VINSCAN_TEST_KAFKA_USER"),
        password: var("VINSCAN_TEST_KAFKA_PASSWORD"),
    }
}

const WRONG: &str = "wrong-scram-password-7f3a";

/// `vinscan enqueue` of the fixture's `scans/` prefix over SASL_SSL with `password`.
fn enqueue(f: &Fixture, s: &Secure, password: &str, tmp: &Path) -> std::process::Output {
    common::run(
        common::vinscan(tmp)
            .args(["enqueue", &format!("s3://{}/scans", f.input)])
            .args(["--topic", &f.jobs_topic, "--pipeline", "receipt"])
            .args(["--brokers", &s.address])
            .args(["--kafka-property", "security.protocol=SASL_SSL"])
            .args(["--kafka-property", "sasl.mechanism=SCRAM-SHA-512"])
            .args(["--kafka-property", &format!("sasl.username={}", s.user)])
            .args(["--kafka-property", &format!("ssl.ca.location={}", s.ca)])
            .env("VINSCAN_KAFKA_PROPERTY_SASL_PASSWORD", password)
            .env(
                "VINSCAN_S3_ENDPOINT",
                f.s3.endpoint.as_deref().unwrap_or_default(),
            ),
    )
}

/// The fixture's config pointed at the SASL_SSL listener (the password stays out of it).
fn write_secure_config(f: &Fixture, s: &Secure) {
    let text = std::fs::read_to_string(&f.config).expect("config");
    let text = text.replace(
        &format!("brokers = \"{}\"", f.brokers),
        &format!("brokers = \"{}\"", s.address),
    );
    let text = format!(
        "{text}\n[kafka.properties]\n\"security.protocol\" = \"SASL_SSL\"\n\
         \"sasl.mechanism\" = \"SCRAM-SHA-512\"\n\"sasl.username\" = \"{}\"\n\
         \"ssl.ca.location\" = \"{}\"\n",
        s.user, s.ca
    );
    std::fs::write(&f.config, text).expect("config");
}

#[test]
fn sasl_ssl_with_scram_the_right_password_works_and_a_wrong_one_consumes_nothing() {
    let (brokers, s3) = services();
    let s = secure();
    let _slot = Slot::take();
    let f = Fixture::empty("secure", brokers, s3);
    write_secure_config(&f, &s);
    rt().block_on(async {
        let store = S3Store::new(&f.s3, &f.input).expect("client");
        for i in 0..3 {
            let png = common::encode(&common::scan(300, 200, i), ImageFormat::Png);
            store
                .put(&format!("scans/r{i}.png"), Bytes::from(png), "image/png")
                .await
                .expect("put");
        }
    });
    let tmp = tempfile::tempdir().expect("tmp");

    // a wrong password: enqueue fails naming the cause, and puts nothing on the topic
    let refused = enqueue(&f, &s, WRONG, tmp.path());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success(),
        "enqueue with a wrong password succeeded"
    );
    assert!(stderr.contains("Authentication failed"), "{stderr}");
    assert!(!stderr.contains(WRONG), "the password leaked: {stderr}");

    let ok = enqueue(&f, &s, &s.password, tmp.path());
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));

    // a daemon with a wrong password: unready, the cause logged, nothing consumed
    let mut daemon = f.daemon_with(0, &[("VINSCAN_KAFKA_PROPERTY_SASL_PASSWORD", Path::new(WRONG))]);
    let port = f.wait_ops_port(0);
    // the model loads first, then the consumer meets the refusal: wait for the cause in the log
    let refused = Instant::now();
    while !f.log(0).contains("Authentication failed") {
        if refused.elapsed() > Duration::from_secs(120) {
            let _ = daemon.kill();
            dump_logs(&f, 1);
            panic!("the refusal's cause never reached the log");
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    // and some probes later it is still refused and unready
    let became_ready = wait_ready(port, 200, Duration::from_secs(10));
    let (status, body) = http_get(port, "/readyz");
    let _ = daemon.kill();
    let _ = daemon.wait();
    let log = f.log(0);
    assert!(!became_ready, "ready with a wrong password");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("broker=false"), "{body}");
    assert!(!log.contains(WRONG), "the password leaked into the log");
    assert!(f.read(&f.dlq_topic).is_empty(), "dead letters were written");
    assert!(f.read(&f.results_topic).is_empty(), "results were written");
    let mut group = f.settings();
    group.group_id = f.group.clone();
    let progress = admin::group_progress(&group, &f.jobs_topic, Duration::from_secs(10)).expect("progress");
    assert_eq!(progress.len(), 1);
    assert_eq!(progress[0].1, None, "an offset was committed");
    assert_eq!(progress[0].2, 3, "enqueue put one job per scan");

    // the right password: every job is done
    let mut daemon = f.daemon_with(
        1,
        &[("VINSCAN_KAFKA_PROPERTY_SASL_PASSWORD", Path::new(&s.password))],
    );
    let t = Instant::now();
    let done = loop {
        let results = f.read(&f.results_topic);
        let ok = results.iter().filter(|r| r["status"] == "ok").count();
        if ok >= 3 && f.committed_all() {
            break results;
        }
        if t.elapsed() > Duration::from_secs(300) {
            dump_logs(&f, 2);
            panic!("not done over SASL_SSL: {results:?}");
        }
        std::thread::sleep(Duration::from_secs(1));
    };
    assert!(stop(&mut daemon).success());
    assert_eq!(done.len(), 3, "{done:?}");
    assert!(f.read(&f.dlq_topic).is_empty());
    let outputs: Vec<Value> = done.iter().map(|r| r["output"].clone()).collect();
    assert!(
        outputs.iter().all(|o| o
            .as_str()
            .is_some_and(|o| o.starts_with(&format!("s3://{}/", f.output)))),
        "{outputs:?}"
    );
    assert!(
        !f.log(1).contains(&s.password),
        "the password leaked into the log"
    );
}
