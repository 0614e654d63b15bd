//! `vinscan serve` against the real broker (Nisshi, started by `ops/test.sh`), the real S3
//! server (s3s-fs) and the real llama.cpp runtime with the tiny model: 60 messages — valid
//! jobs, S3 upload events, jobs pointing at missing, corrupt or oversized objects, and poison
//! — must end as exactly one schema-valid output per valid job (at a deterministic key), one
//! result event per job, one dead-letter record per bad message, and every offset committed.
//! The same holds when the daemon is SIGKILLed five times mid-run and restarted.
#![cfg(feature = "kafka")]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use image::ImageFormat;
use serde_json::{Value, json};
use vinscan_jobs::ObjectRef;
use vinscan_jobs::keys::job_output_key;
use vinscan_kafka::{KafkaSettings, Publisher, admin};
use vinscan_storage::{ObjectStore, S3Config, S3Store};

/// At most two daemons at a time on a 2-core machine.
static SLOTS: (Mutex<usize>, Condvar) = (Mutex::new(0), Condvar::new());

struct Slot(usize);
impl Slot {
    fn take() -> Self {
        let (m, cv) = &SLOTS;
        let mut n = m.lock().unwrap_or_else(|p| p.into_inner());
        while *n >= 2 {
            n = cv.wait(n).unwrap_or_else(|p| p.into_inner());
        }
        *n += 1;
        Slot(1)
    }

    /// Both slots: for tests with two daemons, or that stop the shared broker or S3 server.
    fn take_all() -> Self {
        let (m, cv) = &SLOTS;
        let mut n = m.lock().unwrap_or_else(|p| p.into_inner());
        while *n > 0 {
            n = cv.wait(n).unwrap_or_else(|p| p.into_inner());
        }
        *n = 2;
        Slot(2)
    }
}
impl Drop for Slot {
    fn drop(&mut self) {
        let (m, cv) = &SLOTS;
        *m.lock().unwrap_or_else(|p| p.into_inner()) -= self.0;
        cv.notify_all();
    }
}

fn services() -> Option<(String, S3Config)> {
    let kafka = std::env::var("VINSCAN_TEST_KAFKA").ok();
    let endpoint = std::env::var("VINSCAN_TEST_S3_ENDPOINT").ok();
    assert!(
        (kafka.is_some() && endpoint.is_some()) || std::env::var("CI").is_err(),
        "CI=true but no broker or S3 server: run ops/test.sh"
    );
    let mut s3 = S3Config::from_env();
    s3.endpoint = Some(endpoint?);
    s3.path_style = true;
    Some((kafka?, s3))
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// S3 event notifications URL-encode keys, with `+` for spaces.
fn event_key(key: &str) -> String {
    let mut out = String::new();
    for b in key.bytes() {
        match b {
            b' ' => out.push('+'),
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// What the daemon must produce.
#[derive(Default)]
struct Expected {
    /// job id → output key in the output bucket
    ok: BTreeMap<String, String>,
    pages: usize,
    /// job id → acceptable error kinds
    bad_jobs: BTreeMap<String, Vec<&'static str>>,
    /// payloads that are not jobs at all
    poison: Vec<String>,
}

struct Fixture {
    brokers: String,
    s3: S3Config,
    dir: tempfile::TempDir,
    input: String,
    output: String,
    jobs_topic: String,
    results_topic: String,
    dlq_topic: String,
    group: String,
    config: PathBuf,
    expected: Expected,
}

impl Fixture {
    fn settings(&self) -> KafkaSettings {
        KafkaSettings::new(&self.brokers, format!("{}-observer", self.group))
    }

    fn new(tag: &str, brokers: String, s3: S3Config) -> Self {
        let unique = format!(
            "{tag}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() % 1_000_000_000)
                .unwrap_or(0)
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let mut f = Fixture {
            brokers,
            s3,
            input: format!("vs-in-{unique}"),
            output: format!("vs-out-{unique}"),
            jobs_topic: format!("jobs-{unique}"),
            results_topic: format!("results-{unique}"),
            dlq_topic: format!("dlq-{unique}"),
            group: format!("vinscan-{unique}"),
            config: dir.path().join("serve.toml"),
            dir,
            expected: Expected::default(),
        };
        f.write_config();
        rt().block_on(f.populate());
        f
    }

    fn write_config(&self) {
        let model = common::model_dir();
        let text = format!(
            r#"
[kafka]
brokers = "{brokers}"
group_id = "{group}"
topics = ["{jobs}"]
results_topic = "{results}"
dead_letter_topic = "{dlq}"
session_timeout_ms = 6000

[s3]
endpoint = "{endpoint}"
attempt_timeout_s = 4

[model]
model = "{model}"
mmproj = "{mmproj}"
threads = 1

[daemon]
default_output = "s3://{out}/results"
max_in_flight = 3
max_object_bytes = 1000000
retry_budget_s = 120
retry_initial_ms = 200
retry_max_delay_ms = 3000
shutdown_grace_s = 20
listen = "127.0.0.1:0"

[[routes]]
bucket = "{input}"
prefix = "uploads/"
pipeline = "receipt"
output_prefix = "s3://{out}/uploads"
"#,
            brokers = self.brokers,
            group = self.group,
            jobs = self.jobs_topic,
            results = self.results_topic,
            dlq = self.dlq_topic,
            endpoint = self.s3.endpoint.as_deref().unwrap_or_default(),
            model = model.join("model.gguf").display(),
            mmproj = model.join("mmproj.gguf").display(),
            out = self.output,
            input = self.input,
        );
        std::fs::write(&self.config, text).expect("config");
    }

    /// Buckets, objects, topics and the 60 messages.
    async fn populate(&mut self) {
        let input = S3Store::new(&self.s3, &self.input).expect("client");
        input.create_bucket().await.expect("bucket");
        S3Store::new(&self.s3, &self.output)
            .expect("client")
            .create_bucket()
            .await
            .expect("bucket");
        let put = |key: String, bytes: Vec<u8>| {
            let input = &input;
            async move {
                input
                    .put(&key, Bytes::from(bytes), "application/octet-stream")
                    .await
                    .expect("put");
                let etag = input.head(&key).await.expect("head").etag;
                (key, etag)
            }
        };
        let settings = self.settings();
        admin::create_topics(
            &settings,
            &[
                (&self.jobs_topic, 4),
                (&self.results_topic, 1),
                (&self.dlq_topic, 1),
            ],
        )
        .await
        .expect("topics");

        let mut messages: Vec<(String, String)> = Vec::new(); // (key, payload)
        let object = |key: &str, etag: &str| ObjectRef {
            bucket: self.input.clone(),
            key: key.to_owned(),
            version: Some(etag.to_owned()),
        };
        // 28 single-source jobs, some with their own output prefix
        for i in 0..28u32 {
            let (w, h) = [(320, 240), (240, 320), (448, 448), (500, 180)][i as usize % 4];
            let img = common::scan(w, h, i);
            let (ext, fmt) = if i % 2 == 0 {
                ("png", ImageFormat::Png)
            } else {
                ("jpg", ImageFormat::Jpeg)
            };
            let (key, etag) = put(format!("scans/r{i:02}.{ext}"), common::encode(&img, fmt)).await;
            let job_id = format!("valid-{i:02}");
            let mut m = json!({"job_id": job_id, "pipeline": "receipt", "sources": [format!("s3://{}/{key}", self.input)]});
            let prefix = if i % 7 == 3 {
                m["output_prefix"] = json!(format!("s3://{}/custom/batch-1/", self.output));
                "custom/batch-1"
            } else {
                "results"
            };
            if i % 5 == 0 {
                m["metadata"] = json!({"customer": "ACME", "n": i});
            }
            self.expected
                .ok
                .insert(job_id, job_output_key(prefix, "receipt", &[object(&key, &etag)]));
            self.expected.pages += 1;
            messages.push((format!("valid-{i:02}"), m.to_string()));
        }
        // 2 two-source jobs (front and back)
        for i in 0..2u32 {
            let (kf, ef) = put(
                format!("cards/{i}/front.png"),
                common::encode(&common::scan(400, 250, 100 + i), ImageFormat::Png),
            )
            .await;
            let (kb, eb) = put(
                format!("cards/{i}/back.png"),
                common::encode(&common::scan(400, 250, 200 + i), ImageFormat::Png),
            )
            .await;
            let job_id = format!("card-{i}");
            let m = json!({"job_id": job_id, "pipeline": "receipt", "sources": [
                format!("s3://{}/{kf}", self.input), format!("s3://{}/{kb}", self.input)]});
            self.expected.ok.insert(
                job_id.clone(),
                job_output_key("results", "receipt", &[object(&kf, &ef), object(&kb, &eb)]),
            );
            self.expected.pages += 2;
            messages.push((job_id, m.to_string()));
        }
        // 10 S3 upload events with keys that need URL-encoding
        for i in 0..10u32 {
            let name = ["hoá đơn", "biên lai+thu", "scan (1)", "ảnh chụp", "a&b=c"][i as usize % 5];
            let (key, etag) = put(
                format!("uploads/{name} {i}.jpg"),
                common::encode(&common::scan(360, 270, 300 + i), ImageFormat::Jpeg),
            )
            .await;
            let event = json!({"Records": [{
                "eventVersion": "2.1", "eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
                "eventTime": "2026-11-22T00:00:00.000Z",
                "s3": {"bucket": {"name": self.input, "arn": format!("arn:aws:s3:::{}", self.input)},
                       "object": {"key": event_key(&key), "size": 1, "eTag": etag, "sequencer": format!("00{i:014X}")}}
            }]});
            let job_ids = vinscan_jobs::classify(
                event.to_string().as_bytes(),
                &vinscan_jobs::routing::Routes::new(
                    vec![vinscan_jobs::routing::Route {
                        bucket: self.input.clone(),
                        prefix: "uploads/".into(),
                        pipeline: "receipt".into(),
                        output_prefix: format!("s3://{}/uploads", self.output),
                    }],
                    ["receipt"],
                    format!("s3://{}/results", self.output),
                )
                .expect("routes"),
            )
            .expect("valid event");
            assert_eq!(job_ids[0].sources[0].key, key, "the test's encoding round-trips");
            self.expected.ok.insert(
                job_ids[0].job_id.clone(),
                job_output_key("uploads", "receipt", &[object(&key, &etag)]),
            );
            self.expected.pages += 1;
            messages.push((format!("event-{i}"), event.to_string()));
        }
        // 5 jobs pointing at missing objects
        for i in 0..5 {
            let job_id = format!("missing-{i}");
            let m = json!({"job_id": job_id, "pipeline": "receipt", "sources": [format!("s3://{}/scans/nothing-{i}.png", self.input)]});
            self.expected.bad_jobs.insert(job_id.clone(), vec!["not_found"]);
            messages.push((job_id, m.to_string()));
        }
        // 5 corrupt images: truncated JPEGs, garbage with an image name
        for i in 0..5u32 {
            let bytes = if i % 2 == 0 {
                let jpg = common::encode(&common::scan(300, 200, 400 + i), ImageFormat::Jpeg);
                jpg[..jpg.len() / 3].to_vec()
            } else {
                b"this is not an image at all".repeat(10)
            };
            let (key, _) = put(format!("scans/corrupt-{i}.jpg"), bytes).await;
            let job_id = format!("corrupt-{i}");
            let m = json!({"job_id": job_id, "pipeline": "receipt", "sources": [format!("s3://{}/{key}", self.input)]});
            self.expected
                .bad_jobs
                .insert(job_id.clone(), vec!["invalid_input", "unsupported"]);
            messages.push((job_id, m.to_string()));
        }
        // 4 objects above the 1 MB limit
        for i in 0..4u32 {
            let (key, _) = put(format!("scans/huge-{i}.png"), vec![7u8; 1_200_000 + i as usize]).await;
            let job_id = format!("huge-{i}");
            let m = json!({"job_id": job_id, "pipeline": "receipt", "sources": [format!("s3://{}/{key}", self.input)]});
            self.expected.bad_jobs.insert(job_id.clone(), vec!["too_large"]);
            messages.push((job_id, m.to_string()));
        }
        // 6 poison messages
        for p in [
            "this is not JSON".to_owned(),
            "[1, 2, 3]".to_owned(),
            json!({"job_id": "p-1", "pipeline": "no-such-pipeline", "sources": ["s3://x/y.png"]}).to_string(),
            json!({"job_id": "bad id!", "pipeline": "receipt", "sources": ["s3://x/y.png"]}).to_string(),
            json!({"job_id": "p-2", "pipeline": "receipt", "sources": []}).to_string(),
            json!({"Records": [{"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": "unrouted-bucket"}, "object": {"key": "x.png"}}}]}).to_string(),
        ] {
            self.expected.poison.push(p.clone());
            messages.push(("poison".into(), p));
        }
        assert_eq!(messages.len(), 60);
        // interleave good and bad deterministically
        let mut order: Vec<usize> = (0..messages.len()).collect();
        let mut s = 0x9e37_79b9u64;
        for i in (1..order.len()).rev() {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            order.swap(i, (s % (i as u64 + 1)) as usize);
        }
        let publisher = Publisher::new(&settings).expect("producer");
        for i in order {
            let (k, p) = &messages[i];
            publisher
                .send(&self.jobs_topic, k, p.as_bytes(), &[])
                .await
                .expect("produce");
        }
    }

    fn daemon(&self, run: usize) -> Child {
        let dir = common::model_dir();
        let log = std::fs::File::create(self.dir.path().join(format!("daemon-{run}.log"))).expect("log");
        Command::new(env!("CARGO_BIN_EXE_vinscan"))
            .args(["serve", "--config"])
            .arg(&self.config)
            .env("VINSCAN_LOG_FORMAT", "json")
            .env(
                "VINSCAN_S3_ENDPOINT",
                self.s3.endpoint.as_deref().unwrap_or_default(),
            )
            .env("VINSCAN_MODEL", dir.join("model.gguf"))
            .env_remove("VINSCAN_PIPELINES_DIR")
            .env_remove("VINSCAN_SCHEMAS_DIR")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start vinscan serve")
    }

    fn log(&self, run: usize) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("daemon-{run}.log"))).unwrap_or_default()
    }

    /// The port the daemon's operations endpoint listens on, from its log.
    fn ops_port(&self, run: usize) -> Option<u16> {
        self.log(run).lines().find_map(|l| {
            let v: Value = serde_json::from_str(l).ok()?;
            let listen = v.get("listen")?.as_str()?;
            listen.rsplit(':').next()?.parse().ok()
        })
    }

    fn read(&self, topic: &str) -> Vec<Value> {
        admin::read_all(&self.settings(), topic, Duration::from_secs(30))
            .expect("read topic")
            .into_iter()
            .map(|(_, p)| serde_json::from_slice(&p).expect("JSON record"))
            .collect()
    }

    /// Whether every job has its result or dead-letter record and every offset is committed.
    fn complete(&self) -> bool {
        let results = self.read(&self.results_topic);
        let ok: BTreeSet<&str> = results
            .iter()
            .filter(|r| r["status"] == "ok")
            .filter_map(|r| r["job_id"].as_str())
            .collect();
        let dlq = self.read(&self.dlq_topic);
        let dead: BTreeSet<&str> = dlq.iter().filter_map(|r| r["job_id"].as_str()).collect();
        let poison: BTreeSet<&str> = dlq
            .iter()
            .filter(|r| r["job_id"].is_null())
            .filter_map(|r| r["original"]["payload"].as_str())
            .collect();
        self.expected.ok.keys().all(|j| ok.contains(j.as_str()))
            && self.expected.bad_jobs.keys().all(|j| dead.contains(j.as_str()))
            && self.expected.poison.iter().all(|p| poison.contains(p.as_str()))
            && self.committed_all()
    }

    fn committed_all(&self) -> bool {
        let mut s = self.settings();
        s.group_id = self.group.clone();
        admin::group_progress(&s, &self.jobs_topic, Duration::from_secs(10))
            .map(|parts| !parts.is_empty() && parts.iter().all(|(_, c, high)| *c == Some(*high)))
            .unwrap_or(false)
    }

    fn wait_complete(&self, timeout: Duration) {
        let t = Instant::now();
        while !self.complete() {
            assert!(t.elapsed() < timeout, "not complete after {timeout:?}");
            std::thread::sleep(Duration::from_secs(2));
        }
    }

    /// Every expectation; `exact`: also no duplicate result events or dead-letter records.
    fn check(&self, exact: bool) {
        // outputs: exactly the expected keys, and every page valid under its schema
        let out = S3Store::new(&self.s3, &self.output).expect("client");
        let rt = rt();
        let listed: BTreeSet<String> = rt
            .block_on(out.list(""))
            .expect("list")
            .into_iter()
            .map(|m| m.key)
            .collect();
        let expected: BTreeSet<String> = self.expected.ok.values().cloned().collect();
        assert_eq!(listed, expected, "output objects differ from one per valid job");
        let dir = self.dir.path().join("outputs");
        std::fs::create_dir_all(&dir).expect("mkdir");
        let mut files = Vec::new();
        let mut pages = 0;
        for (n, key) in listed.iter().enumerate() {
            let o = rt.block_on(out.get(key, 64 << 20)).expect("get output");
            let doc: Value = serde_json::from_slice(&o.bytes).expect("output JSON");
            pages += doc["pages"].as_array().map_or(0, Vec::len);
            let path = dir.join(format!("{n}.json"));
            std::fs::write(&path, &o.bytes).expect("write");
            files.push(path);
        }
        assert_eq!(pages, self.expected.pages);
        let (passed, failed, report) = common::validate(&files);
        assert_eq!((passed, failed), (self.expected.pages, 0), "{report}");

        // result events
        let results = self.read(&self.results_topic);
        for (job, key) in &self.expected.ok {
            let mine: Vec<&Value> = results.iter().filter(|r| r["job_id"] == job.as_str()).collect();
            assert!(!mine.is_empty(), "no result event for {job}");
            if exact {
                assert_eq!(mine.len(), 1, "{job}: {mine:?}");
            }
            for r in mine {
                assert_eq!(r["status"], "ok", "{r}");
                assert_eq!(r["output"], format!("s3://{}/{key}", self.output));
            }
        }
        let card = results
            .iter()
            .find(|r| r["job_id"] == "valid-00")
            .expect("valid-00");
        assert_eq!(
            card["metadata"]["customer"], "ACME",
            "metadata is carried through"
        );

        // dead letters: the original message, the kind, a reason, attempts, timestamps
        let dlq = self.read(&self.dlq_topic);
        for (job, kinds) in &self.expected.bad_jobs {
            let mine: Vec<&Value> = dlq.iter().filter(|r| r["job_id"] == job.as_str()).collect();
            assert!(!mine.is_empty(), "no dead letter for {job}");
            if exact {
                assert_eq!(mine.len(), 1, "{job}: {mine:?}");
            }
            let r = mine[0];
            let kind = r["error"]["kind"].as_str().unwrap_or_default();
            assert!(kinds.contains(&kind), "{job}: kind {kind} not in {kinds:?}: {r}");
            assert!(!r["error"]["message"].as_str().unwrap_or_default().is_empty());
            assert!(
                r["attempts"].as_u64() >= Some(1)
                    && r["failed_at"].is_string()
                    && r["first_attempt_at"].is_string()
            );
            assert!(
                r["original"]["payload"]
                    .as_str()
                    .is_some_and(|p| p.contains(job.as_str()))
            );
        }
        for p in &self.expected.poison {
            let mine: Vec<&Value> = dlq
                .iter()
                .filter(|r| r["original"]["payload"] == p.as_str())
                .collect();
            assert!(!mine.is_empty(), "no dead letter for poison {p}");
            if exact {
                assert_eq!(mine.len(), 1, "{p}");
            }
            assert_eq!(mine[0]["error"]["kind"], "poison");
        }
        if exact {
            assert_eq!(
                dlq.len(),
                self.expected.bad_jobs.len() + self.expected.poison.len()
            );
            assert_eq!(
                results.len(),
                self.expected.ok.len() + self.expected.bad_jobs.len()
            );
        }
        assert!(self.committed_all(), "offsets not all committed");
    }
}

fn http_get(port: u16, path: &str) -> (u16, String) {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return (0, String::new());
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = write!(s, "GET {path} HTTP/1.1\r\nhost: localhost\r\n\r\n");
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    let status = body
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, body)
}

fn stop(child: &mut Child) -> std::process::ExitStatus {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let t = Instant::now();
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return status;
        }
        assert!(t.elapsed() < Duration::from_secs(60), "daemon ignored SIGTERM");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn dump_logs(f: &Fixture, runs: usize) {
    for run in 0..runs {
        let log = f.log(run);
        let tail: Vec<&str> = log.lines().rev().take(15).collect();
        eprintln!(
            "--- daemon {run} (last lines) ---\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
}

#[test]
fn sixty_messages_each_end_as_one_output_or_one_dead_letter() {
    let Some((brokers, s3)) = services() else {
        eprintln!("skipped: VINSCAN_TEST_KAFKA or VINSCAN_TEST_S3_ENDPOINT unset");
        return;
    };
    let _slot = Slot::take();
    let f = Fixture::new("sixty", brokers, s3);
    let mut daemon = f.daemon(0);
    let t = Instant::now();

    // the operations endpoint answers while the daemon works
    let mut port = None;
    let mut saw_ready = false;
    let mut saw_metrics = false;
    while t.elapsed() < Duration::from_secs(60) && !(saw_ready && saw_metrics) {
        port = port.or_else(|| f.ops_port(0));
        if let Some(p) = port {
            assert_eq!(http_get(p, "/healthz").0, 200);
            saw_ready |= http_get(p, "/readyz").0 == 200;
            let (status, body) = http_get(p, "/metrics");
            saw_metrics |= status == 200 && body.contains("vinscan_consumer_messages_total");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    if !(saw_ready && saw_metrics) {
        dump_logs(&f, 1);
    }
    assert!(
        saw_ready && saw_metrics,
        "ready: {saw_ready}, metrics: {saw_metrics}"
    );

    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        f.wait_complete(Duration::from_secs(600))
    }));
    if let Err(e) = result {
        let _ = daemon.kill();
        dump_logs(&f, 1);
        std::panic::resume_unwind(e);
    }
    let port = port.expect("port");
    // everything is committed: the lag the daemon reports drains to zero (it is sampled every 2 s)
    let drained = Instant::now();
    while !http_get(port, "/metrics")
        .1
        .contains("vinscan_consumer_lag_messages 0\n")
    {
        assert!(drained.elapsed() < Duration::from_secs(20), "lag never reached 0");
        std::thread::sleep(Duration::from_millis(500));
    }
    let (_, metrics) = http_get(port, "/metrics");
    assert!(
        metrics.contains(r#"vinscan_jobs_total{outcome="ok"} 40"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"vinscan_jobs_total{outcome="poison"} 6"#),
        "{metrics}"
    );
    assert!(
        metrics.contains("vinscan_model_generated_tokens_total"),
        "{metrics}"
    );
    let status = stop(&mut daemon);
    assert!(status.success(), "daemon exit: {status}");
    eprintln!("sixty messages done in {:.0} s", t.elapsed().as_secs_f64());
    f.check(true);
}

#[test]
fn sigkill_five_times_still_one_output_per_job() {
    let Some((brokers, s3)) = services() else {
        eprintln!("skipped: VINSCAN_TEST_KAFKA or VINSCAN_TEST_S3_ENDPOINT unset");
        return;
    };
    let _slot = Slot::take();
    let f = Fixture::new("kill", brokers, s3);
    let t = Instant::now();
    let mut seed = 0x2545_f491u32;
    for run in 0..5 {
        let mut daemon = f.daemon(run);
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        // somewhere between the group join and well into inference
        let after = Duration::from_millis(4000 + u64::from(seed % 9000));
        std::thread::sleep(after);
        daemon.kill().expect("SIGKILL");
        let _ = daemon.wait();
        eprintln!("run {run}: killed after {after:?}");
    }
    let mut daemon = f.daemon(5);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        f.wait_complete(Duration::from_secs(600))
    }));
    if let Err(e) = result {
        let _ = daemon.kill();
        dump_logs(&f, 6);
        std::panic::resume_unwind(e);
    }
    assert!(stop(&mut daemon).success());
    // the kills interrupted real work: some jobs finished before them, some only after
    let done_before: usize = (0..5).map(|run| f.log(run).matches("job done").count()).sum();
    assert!(
        done_before > 0,
        "no job finished before the kills: they tested nothing"
    );
    assert!(
        f.log(5).contains("job done"),
        "the last daemon had nothing left to do"
    );
    eprintln!("kill test done in {:.0} s", t.elapsed().as_secs_f64());
    f.check(false);
}

fn signal(pid: &str, sig: &str) {
    let status = Command::new("kill").args([sig, pid]).status().expect("kill");
    assert!(status.success(), "kill {sig} {pid}");
}

/// Waits until `/readyz` answers `want` (200 or 503); false on timeout.
fn wait_ready(port: u16, want: u16, timeout: Duration) -> bool {
    let t = Instant::now();
    while t.elapsed() < timeout {
        if http_get(port, "/readyz").0 == want {
            return true;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    false
}

fn ok_results(f: &Fixture) -> usize {
    f.read(&f.results_topic)
        .iter()
        .filter(|r| r["status"] == "ok")
        .count()
}

#[test]
fn rides_out_a_broker_outage_and_an_s3_outage() {
    let Some((brokers, s3)) = services() else {
        eprintln!("skipped: VINSCAN_TEST_KAFKA or VINSCAN_TEST_S3_ENDPOINT unset");
        return;
    };
    let (Ok(broker_pid), Ok(s3_pid)) = (
        std::env::var("VINSCAN_TEST_KAFKA_PID"),
        std::env::var("VINSCAN_TEST_S3_PID"),
    ) else {
        assert!(
            std::env::var("CI").is_err(),
            "CI=true but no service pids: run ops/test.sh"
        );
        eprintln!("skipped: VINSCAN_TEST_KAFKA_PID or VINSCAN_TEST_S3_PID unset");
        return;
    };
    // stopping the shared services must not disturb other tests' daemons
    let _slot = Slot::take_all();
    let f = Fixture::new("outage", brokers, s3);
    let mut daemon = f.daemon(0);
    let t = Instant::now();
    let port = loop {
        if let Some(p) = f.ops_port(0) {
            break p;
        }
        assert!(t.elapsed() < Duration::from_secs(60), "no ops port");
        std::thread::sleep(Duration::from_millis(200));
    };
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        assert!(wait_ready(port, 200, Duration::from_secs(60)), "never ready");
        for (what, pid, after) in [("broker", &broker_pid, 8), ("s3", &s3_pid, 20)] {
            while ok_results(&f) < after {
                assert!(
                    t.elapsed() < Duration::from_secs(600),
                    "stalled before the {what} outage"
                );
                std::thread::sleep(Duration::from_millis(500));
            }
            let stopped = Instant::now();
            signal(pid, "-STOP");
            let went_down = wait_ready(port, 503, Duration::from_secs(18));
            std::thread::sleep(Duration::from_secs(20).saturating_sub(stopped.elapsed()));
            signal(pid, "-CONT");
            eprintln!("{what} stopped for {:.1} s", stopped.elapsed().as_secs_f64());
            assert!(went_down, "readiness stayed true with the {what} stopped");
            assert!(
                wait_ready(port, 200, Duration::from_secs(60)),
                "not ready again after the {what} came back"
            );
        }
        f.wait_complete(Duration::from_secs(600));
    }));
    if let Err(e) = outcome {
        signal(&broker_pid, "-CONT");
        signal(&s3_pid, "-CONT");
        let _ = daemon.kill();
        dump_logs(&f, 1);
        std::panic::resume_unwind(e);
    }
    assert!(stop(&mut daemon).success());
    let log = f.log(0);
    assert!(log.contains("retrying"), "no retries logged during the outages");
    eprintln!("outage test done in {:.0} s", t.elapsed().as_secs_f64());
    f.check(false);
}

#[test]
fn two_daemons_in_one_group_split_the_work_cooperatively() {
    let Some((brokers, s3)) = services() else {
        eprintln!("skipped: VINSCAN_TEST_KAFKA or VINSCAN_TEST_S3_ENDPOINT unset");
        return;
    };
    let _slot = Slot::take_all();
    let f = Fixture::new("pair", brokers, s3);
    // the pair uses the cooperative protocol: the second member takes partitions from the
    // first without stopping it
    let mut config = std::fs::read_to_string(&f.config).expect("config");
    config.push_str("\n[kafka.properties]\n\"partition.assignment.strategy\" = \"cooperative-sticky\"\n");
    std::fs::write(&f.config, config).expect("config");
    let t = Instant::now();
    let mut a = f.daemon(0);
    let mut b = f.daemon(1);
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        f.wait_complete(Duration::from_secs(600))
    }));
    if let Err(e) = outcome {
        let _ = a.kill();
        let _ = b.kill();
        dump_logs(&f, 2);
        std::panic::resume_unwind(e);
    }
    assert!(stop(&mut a).success());
    assert!(stop(&mut b).success());
    for run in 0..2 {
        let log = f.log(run);
        assert!(
            log.contains("partition assigned"),
            "daemon {run} got no partition"
        );
        assert!(log.contains("job done"), "daemon {run} did no job");
    }
    eprintln!("two daemons done in {:.0} s", t.elapsed().as_secs_f64());
    f.check(false);
}

#[test]
fn enqueue_puts_one_deterministic_job_per_scan_on_the_topic() {
    let Some((brokers, s3)) = services() else {
        eprintln!("skipped: VINSCAN_TEST_KAFKA or VINSCAN_TEST_S3_ENDPOINT unset");
        return;
    };
    let unique = format!(
        "enq-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() % 1_000_000_000)
            .unwrap_or(0)
    );
    let bucket = format!("vs-{unique}");
    let topic = format!("enqueue-{unique}");
    let store = S3Store::new(&s3, &bucket).expect("client");
    rt().block_on(async {
        store.create_bucket().await.expect("bucket");
        for (key, bytes) in [
            (
                "archive/1990/a.png",
                common::encode(&common::scan(200, 300, 1), ImageFormat::Png),
            ),
            (
                "archive/1990/b c.jpg",
                common::encode(&common::scan(200, 300, 2), ImageFormat::Jpeg),
            ),
            (
                "archive/1991/d.png",
                common::encode(&common::scan(200, 300, 3), ImageFormat::Png),
            ),
            ("archive/notes.txt", b"not a scan".to_vec()),
            (
                "archived/other.png",
                common::encode(&common::scan(50, 50, 4), ImageFormat::Png),
            ),
        ] {
            store
                .put(key, Bytes::from(bytes), "application/octet-stream")
                .await
                .expect("put");
        }
    });
    let tmp = tempfile::tempdir().expect("tmp");
    let enqueue = || {
        common::run(
            common::vinscan(tmp.path())
                .args(["enqueue", &format!("s3://{bucket}/archive"), "--topic", &topic])
                .args(["--pipeline", "archive-page", "--brokers", &brokers])
                .args(["--create-partitions", "2"])
                .args(["--output-prefix", &format!("s3://{bucket}/out")])
                .env("VINSCAN_S3_ENDPOINT", s3.endpoint.as_deref().unwrap_or_default()),
        )
    };
    for _ in 0..2 {
        let out = enqueue();
        assert!(out.status.success());
        let summary: Value = serde_json::from_str(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .last()
                .expect("summary"),
        )
        .expect("json");
        assert_eq!(summary["enqueued"], 3, "{summary}");
    }
    let records = admin::read_all(
        &KafkaSettings::new(&brokers, "observer"),
        &topic,
        Duration::from_secs(30),
    )
    .expect("read");
    assert_eq!(records.len(), 6);
    let routes =
        vinscan_jobs::routing::Routes::new(vec![], ["archive-page"], format!("s3://{bucket}/results"))
            .expect("routes");
    let mut ids = BTreeMap::new();
    for (_, payload) in &records {
        let jobs = vinscan_jobs::classify(payload, &routes).expect("a valid job message");
        assert_eq!(jobs[0].output_prefix, format!("s3://{bucket}/out"));
        *ids.entry((jobs[0].job_id.clone(), jobs[0].sources[0].key.clone()))
            .or_insert(0) += 1;
    }
    let keys: BTreeSet<&str> = ids.keys().map(|(_, k)| k.as_str()).collect();
    assert_eq!(
        keys,
        BTreeSet::from(["archive/1990/a.png", "archive/1990/b c.jpg", "archive/1991/d.png"])
    );
    assert!(
        ids.values().all(|&n| n == 2),
        "enqueueing twice gives the same job ids: {ids:?}"
    );
}
