//! The daemon tests' fixture: buckets, topics and a config per test, the daemon as a child
//! process, and reading back what it produced (outputs, result events, dead letters, commits).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use vinscan_kafka::{KafkaSettings, admin};
use vinscan_storage::{ObjectStore, S3Config, S3Store};

use crate::common;

/// At most two daemons at a time on a 2-core machine.
static SLOTS: (Mutex<usize>, Condvar) = (Mutex::new(0), Condvar::new());

pub struct Slot(usize);
impl Slot {
    pub fn take() -> Self {
        let (m, cv) = &SLOTS;
        let mut n = m.lock().unwrap_or_else(|p| p.into_inner());
        while *n >= 2 {
            n = cv.wait(n).unwrap_or_else(|p| p.into_inner());
        }
        *n += 1;
        Slot(1)
    }

    /// Both slots: for tests with two daemons, or that stop the shared broker or S3 server.
    pub fn take_all() -> Self {
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

/// The broker and the S3 server `ops/test.sh` starts. A missing service fails the test: a
/// service test never passes without its service.
pub fn services() -> (String, S3Config) {
    let var = |name: &str| {
        std::env::var(name).unwrap_or_else(|_| {
            panic!("{name} is unset: run the tests through ops/test.sh, which starts the broker and the S3 server")
        })
    };
    let kafka = var("VINSCAN_TEST_KAFKA");
    let mut s3 = S3Config::from_env();
    s3.endpoint = Some(var("VINSCAN_TEST_S3_ENDPOINT"));
    s3.path_style = true;
    (kafka, s3)
}

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// S3 event notifications URL-encode keys, with `+` for spaces.
pub fn event_key(key: &str) -> String {
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
pub struct Expected {
    /// job id → output key in the output bucket
    pub ok: BTreeMap<String, String>,
    pub pages: usize,
    /// job id → acceptable error kinds
    pub bad_jobs: BTreeMap<String, Vec<&'static str>>,
    /// payloads that are not jobs at all
    pub poison: Vec<String>,
    /// sha256 of binary poison too large to be copied whole into its dead letter
    pub binary_poison: Vec<String>,
}

pub struct Fixture {
    pub brokers: String,
    pub s3: S3Config,
    pub dir: tempfile::TempDir,
    pub input: String,
    pub output: String,
    pub jobs_topic: String,
    pub results_topic: String,
    pub dlq_topic: String,
    pub group: String,
    pub config: PathBuf,
    pub expected: Expected,
}

impl Fixture {
    pub fn settings(&self) -> KafkaSettings {
        KafkaSettings::new(&self.brokers, format!("{}-observer", self.group))
    }

    /// Buckets, topics and the config, without the 60 messages.
    pub fn empty(tag: &str, brokers: String, s3: S3Config) -> Self {
        let f = Self::bare(tag, brokers, s3);
        rt().block_on(async {
            for bucket in [&f.input, &f.output] {
                S3Store::new(&f.s3, bucket)
                    .expect("client")
                    .create_bucket()
                    .await
                    .expect("bucket");
            }
            admin::create_topics(
                &f.settings(),
                &[(&f.jobs_topic, 1), (&f.results_topic, 1), (&f.dlq_topic, 1)],
            )
            .await
            .expect("topics");
        });
        f
    }

    pub fn new(tag: &str, brokers: String, s3: S3Config) -> Self {
        let mut f = Self::bare(tag, brokers, s3);
        rt().block_on(f.populate());
        f
    }

    pub fn bare(tag: &str, brokers: String, s3: S3Config) -> Self {
        let unique = format!(
            "{tag}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() % 1_000_000_000)
                .unwrap_or(0)
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let f = Fixture {
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
        f
    }

    pub fn write_config(&self) {
        self.write_config_with("");
    }

    /// The config with `daemon_extra` (TOML lines) added to its `[daemon]` table.
    pub fn write_config_with(&self, daemon_extra: &str) {
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
retry_budget_s = 5
retry_initial_ms = 200
retry_max_delay_ms = 3000
shutdown_grace_s = 20
listen = "127.0.0.1:0"
{daemon_extra}
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
    pub fn daemon(&self, run: usize) -> Child {
        self.daemon_with(run, &[])
    }

    pub fn daemon_with(&self, run: usize, env: &[(&str, &std::path::Path)]) -> Child {
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
            .envs(env.iter().map(|(k, v)| (*k, *v)))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start vinscan serve")
    }

    pub fn log(&self, run: usize) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("daemon-{run}.log"))).unwrap_or_default()
    }

    /// Waits (at most 60 s) for the operations endpoint of daemon `run` and returns its port.
    pub fn wait_ops_port(&self, run: usize) -> u16 {
        let t = Instant::now();
        loop {
            if let Some(p) = self.ops_port(run) {
                return p;
            }
            assert!(t.elapsed() < Duration::from_secs(60), "no ops port");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The port the daemon's operations endpoint listens on, from its log.
    pub fn ops_port(&self, run: usize) -> Option<u16> {
        self.log(run).lines().find_map(|l| {
            let v: Value = serde_json::from_str(l).ok()?;
            let listen = v.get("listen")?.as_str()?;
            listen.rsplit(':').next()?.parse().ok()
        })
    }

    pub fn read(&self, topic: &str) -> Vec<Value> {
        admin::read_all(&self.settings(), topic, Duration::from_secs(30))
            .expect("read topic")
            .into_iter()
            .map(|(_, p)| serde_json::from_slice(&p).expect("JSON record"))
            .collect()
    }

    /// Every expectation; `exact`: also no duplicate result events or dead-letter records.
    pub fn check(&self, exact: bool) {
        let review_pages = self.check_outputs();
        let results = self.check_results(exact, &review_pages);
        self.check_dead_letters(exact, results);
        assert!(self.committed_all(), "offsets not all committed");
    }

    /// Outputs: exactly the expected keys, each one document record covering every page of its
    /// job's sources, valid under its schema. Returns the pages needing review per output key.
    fn check_outputs(&self) -> std::collections::BTreeMap<String, u64> {
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
        let mut review_pages = std::collections::BTreeMap::new();
        for (n, key) in listed.iter().enumerate() {
            let o = rt.block_on(out.get(key, 64 << 20, None)).expect("get output");
            let doc: Value = serde_json::from_slice(&o.bytes).expect("output JSON");
            // the receipt pipeline reads a job's sources as one document: one record per job
            assert!(
                doc.get("pages").is_none(),
                "{key}: page records in a document job's output"
            );
            let record = &doc["document"];
            let covered = record["pages"].as_array().map_or(0, Vec::len);
            let sources: u64 = doc["sources"]
                .as_array()
                .map_or(0, |s| s.iter().filter_map(|s| s["pages"].as_u64()).sum());
            assert_eq!(
                covered as u64, sources,
                "{key}: the record covers every page of every source"
            );
            pages += covered;
            let needing = if record["review"]["needed"] == true {
                covered
            } else {
                0
            };
            review_pages.insert(key.clone(), needing as u64);
            let path = dir.join(format!("{n}.json"));
            std::fs::write(&path, &o.bytes).expect("write");
            files.push(path);
        }
        assert_eq!(pages, self.expected.pages);
        let (passed, failed, report) = common::validate(&files);
        assert_eq!(
            (passed, failed),
            (listed.len(), 0),
            "one valid document record per output: {report}"
        );
        review_pages
    }

    /// Result events: one `ok` per valid job (exactly one when `exact`) naming its output and
    /// carrying its review verdict and metadata. Returns how many result events were read.
    fn check_results(&self, exact: bool, review_pages: &std::collections::BTreeMap<String, u64>) -> usize {
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
                let needing = review_pages.get(key).copied();
                assert_eq!(
                    r["review"]["pages"].as_u64(),
                    needing,
                    "review verdict of {job}: {r}"
                );
                assert_eq!(r["review"]["needed"], needing.is_some_and(|n| n > 0), "{r}");
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
        results.len()
    }

    /// Dead letters: the original message, the kind, a reason, attempts, timestamps; with
    /// `exact`, one per bad job and poison message, and `results` result events in all.
    fn check_dead_letters(&self, exact: bool, results: usize) {
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
        for sha in &self.expected.binary_poison {
            let mine: Vec<&Value> = dlq
                .iter()
                .filter(|r| r["original"]["payload_sha256"] == sha.as_str())
                .collect();
            assert!(!mine.is_empty(), "no dead letter for the binary poison");
            assert_eq!(mine[0]["original"]["payload_bytes"], 600_000);
            assert_eq!(mine[0]["original"]["payload_truncated"], true);
        }
        if exact {
            assert_eq!(
                dlq.len(),
                self.expected.bad_jobs.len() + self.expected.poison.len() + self.expected.binary_poison.len()
            );
            assert_eq!(results, self.expected.ok.len() + self.expected.bad_jobs.len());
        }
    }
}

pub fn http_get(port: u16, path: &str) -> (u16, String) {
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

pub fn stop(child: &mut Child) -> std::process::ExitStatus {
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

pub fn dump_logs(f: &Fixture, runs: usize) {
    for run in 0..runs {
        let log = f.log(run);
        // the last lines, and every warning or error before them: enough to tell a stall
        // from a fault when a run fails on a busy CI machine
        let warnings: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("\"WARN\"") || l.contains("\"ERROR\""))
            .collect();
        eprintln!(
            "--- daemon {run}: {} warnings and errors ---\n{}",
            warnings.len(),
            warnings
                .iter()
                .rev()
                .take(40)
                .rev()
                .copied()
                .collect::<Vec<_>>()
                .join("\n")
        );
        let tail: Vec<&str> = log.lines().rev().take(30).collect();
        eprintln!(
            "--- daemon {run} (last lines) ---\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
}

pub fn signal(pid: &str, sig: &str) {
    let status = Command::new("kill").args([sig, pid]).status().expect("kill");
    assert!(status.success(), "kill {sig} {pid}");
}

/// Waits until `/readyz` answers `want` (200 or 503); false on timeout.
pub fn wait_ready(port: u16, want: u16, timeout: Duration) -> bool {
    let t = Instant::now();
    while t.elapsed() < timeout {
        if http_get(port, "/readyz").0 == want {
            return true;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    false
}

pub fn ok_results(f: &Fixture) -> usize {
    f.read(&f.results_topic)
        .iter()
        .filter(|r| r["status"] == "ok")
        .count()
}
