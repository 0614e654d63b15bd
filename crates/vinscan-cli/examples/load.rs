//! A load run for `vinscan serve` (not a test: `ops/load.sh` runs it). It puts N distinct
//! scans in a bucket and N job messages on a 4-partition topic, starts one daemon with the
//! tiny model, and samples every 2 s until every job has its result: the group's lag, the
//! daemon's resident memory (VmRSS) and its peak (VmHWM), and the results so far. It prints
//! one JSON report: throughput, peak RSS, the lag over time, and the outcome counts.
//!
//! Environment: `VINSCAN_TEST_KAFKA`, `VINSCAN_TEST_S3_ENDPOINT` (and the AWS_* credentials),
//! `VINSCAN_TEST_MODEL_DIR`, `VINSCAN_BIN` (the `vinscan` binary), `VINSCAN_LOAD_MESSAGES`
//! (default 1000), `VINSCAN_LOAD_MAX_IN_FLIGHT` (default 4).

use std::io::Cursor;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use image::{ImageFormat, Rgb, RgbImage};
use serde_json::json;
use vinscan_kafka::{KafkaSettings, Publisher, admin};
use vinscan_storage::{ObjectStore, S3Config, S3Store};

fn var(name: &str) -> Result<String> {
    std::env::var(name).with_context(|| format!("{name} is unset (run ops/load.sh)"))
}

fn number(name: &str, default: usize) -> Result<usize> {
    match std::env::var(name) {
        Ok(v) => v.parse().with_context(|| format!("{name}={v:?}")),
        Err(_) => Ok(default),
    }
}

/// A small receipt-like scan whose lines depend on `seed`, as PNG.
fn scan(seed: u32) -> Result<Vec<u8>> {
    let (w, h) = (320, 480);
    let mut img = RgbImage::from_pixel(w, h, Rgb([246, 244, 238]));
    let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(7);
    for y in (24..h - 24).step_by(18) {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let len = 60 + state % 200;
        for yy in y..y + 10 {
            for x in 20..20 + len {
                img.put_pixel(x, yy, Rgb([30, 30, 40]));
            }
        }
    }
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, ImageFormat::Png)?;
    Ok(out.into_inner())
}

/// `VmRSS` and `VmHWM` of a process, in KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

struct Run {
    unique: String,
    brokers: String,
    s3: S3Config,
    messages: usize,
}

impl Run {
    fn settings(&self, group: &str) -> KafkaSettings {
        KafkaSettings::new(&self.brokers, group)
    }

    /// Buckets, scans, topics and the job messages.
    async fn prepare(&self) -> Result<()> {
        let input = S3Store::new(&self.s3, &format!("load-in-{}", self.unique))?;
        let output = S3Store::new(&self.s3, &format!("load-out-{}", self.unique))?;
        input.create_bucket().await?;
        output.create_bucket().await?;
        for i in 0..self.messages {
            input
                .put(
                    &format!("scans/r{i:05}.png"),
                    Bytes::from(scan(i as u32)?),
                    "image/png",
                )
                .await?;
        }
        let observer = self.settings("load-observer");
        admin::create_topics(
            &observer,
            &[
                (&format!("load-jobs-{}", self.unique), 4),
                (&format!("load-results-{}", self.unique), 1),
                (&format!("load-dlq-{}", self.unique), 1),
            ],
        )
        .await?;
        let publisher = Publisher::new(&observer)?;
        for i in 0..self.messages {
            let id = format!("load-{i:05}");
            let job = json!({"job_id": id, "pipeline": "receipt",
                "sources": [format!("s3://load-in-{}/scans/r{i:05}.png", self.unique)]});
            publisher
                .send(
                    &format!("load-jobs-{}", self.unique),
                    &id,
                    job.to_string().as_bytes(),
                    &[],
                )
                .await?;
        }
        Ok(())
    }

    fn start_daemon(&self, dir: &std::path::Path, max_in_flight: usize) -> Result<Child> {
        let model = PathBuf::from(var("VINSCAN_TEST_MODEL_DIR")?);
        let config = dir.join("serve.toml");
        let u = &self.unique;
        std::fs::write(
            &config,
            format!(
                "[kafka]\nbrokers = \"{}\"\ngroup_id = \"load-{u}\"\ntopics = [\"load-jobs-{u}\"]\n\
                 results_topic = \"load-results-{u}\"\ndead_letter_topic = \"load-dlq-{u}\"\n\
                 [s3]\nendpoint = \"{}\"\n[model]\nmodel = \"{}\"\nmmproj = \"{}\"\n\
                 [daemon]\ndefault_output = \"s3://load-out-{u}/results\"\nmax_in_flight = {max_in_flight}\n\
                 listen = \"127.0.0.1:0\"\n",
                self.brokers,
                self.s3.endpoint.as_deref().unwrap_or_default(),
                model.join("model.gguf").display(),
                model.join("mmproj.gguf").display(),
            ),
        )?;
        let log = std::fs::File::create(dir.join("daemon.log"))?;
        Ok(Command::new(var("VINSCAN_BIN")?)
            .args(["serve", "--config"])
            .arg(&config)
            .env("VINSCAN_LOG_FORMAT", "json")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?)
    }

    /// (messages behind the group's committed position, result events so far).
    fn progress(&self) -> Result<(i64, i64)> {
        let parts = admin::group_progress(
            &self.settings(&format!("load-{}", self.unique)),
            &format!("load-jobs-{}", self.unique),
            Duration::from_secs(10),
        )?;
        let lag = parts.iter().map(|(_, c, high)| high - c.unwrap_or(0)).sum();
        let results = admin::group_progress(
            &self.settings("load-observer"),
            &format!("load-results-{}", self.unique),
            Duration::from_secs(10),
        )?;
        Ok((lag, results.iter().map(|(_, _, high)| high).sum()))
    }
}

fn main() -> Result<()> {
    let messages = number("VINSCAN_LOAD_MESSAGES", 1000)?;
    let max_in_flight = number("VINSCAN_LOAD_MAX_IN_FLIGHT", 4)?;
    let mut s3 = S3Config::from_env();
    s3.endpoint = Some(var("VINSCAN_TEST_S3_ENDPOINT")?);
    s3.path_style = true;
    let run = Run {
        unique: format!("{}", std::process::id()),
        brokers: var("VINSCAN_TEST_KAFKA")?,
        s3,
        messages,
    };
    let rt = tokio::runtime::Runtime::new()?;
    let t = Instant::now();
    rt.block_on(run.prepare())?;
    eprintln!(
        "load: {messages} scans and messages ready in {:.0} s",
        t.elapsed().as_secs_f64()
    );
    let dir = tempfile::tempdir()?;
    let mut daemon = run.start_daemon(dir.path(), max_in_flight)?;
    let pid = daemon.id();
    let t = Instant::now();
    let mut samples = Vec::new();
    let (mut peak_rss, mut first_result) = (0u64, None);
    loop {
        std::thread::sleep(Duration::from_secs(2));
        if let Some(status) = daemon.try_wait()? {
            bail!("the daemon exited: {status}; log in {}", dir.path().display());
        }
        let (rss, hwm) = memory_kib(pid);
        peak_rss = peak_rss.max(hwm);
        let (lag, results) = run.progress()?;
        if results > 0 && first_result.is_none() {
            first_result = Some(t.elapsed().as_secs_f64());
        }
        samples.push(json!({"t_s": t.elapsed().as_secs(), "lag": lag, "results": results, "rss_kib": rss}));
        eprintln!(
            "load: {:>5.0} s  lag {lag:>5}  results {results:>5}  rss {} MiB",
            t.elapsed().as_secs_f64(),
            rss / 1024
        );
        if lag == 0 && results >= messages as i64 {
            break;
        }
        if t.elapsed() > Duration::from_secs(3 * 3600) {
            bail!("not drained after 3 hours");
        }
    }
    let elapsed = t.elapsed().as_secs_f64();
    let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status();
    let status = daemon.wait()?;
    let log = std::fs::read_to_string(dir.path().join("daemon.log")).unwrap_or_default();
    let report = json!({
        "messages": messages,
        "max_in_flight": max_in_flight,
        "seconds": elapsed,
        "messages_per_second": messages as f64 / elapsed,
        "first_result_s": first_result,
        "peak_rss_mib": peak_rss as f64 / 1024.0,
        "jobs_done": log.matches("\"job done\"").count(),
        "jobs_dead_lettered": log.matches("\"job dead-lettered\"").count(),
        "daemon_exit": status.code(),
        "samples": samples,
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
