//! `vinscan serve` against the real broker (Apache Kafka, started by `ops/test.sh`), the real S3
//! server (s3s-fs) and the real llama.cpp runtime with the tiny model: 61 messages — valid
//! jobs, S3 upload events, jobs pointing at missing, corrupt or oversized objects, poison and a
//! 600 KB binary message — must end as exactly one schema-valid output per valid job (at a
//! deterministic key), one result event per job, one dead-letter record per bad message, and
//! every offset committed. The same holds when the daemon is SIGKILLed five times mid-run and
//! restarted, through broker and S3 outages, with two daemons in one group; and SIGTERM during
//! a long generation exits within the grace period. `secure`: SASL_SSL; `broker_crash`: the
//! broker SIGKILLed and restarted; `systemic`: the S3 server refusing the daemon's credentials;
//! `crashing` (built with `--features failpoints`): a message that aborts the process.
#![cfg(feature = "kafka")]

mod broker_crash;
#[path = "../common/mod.rs"]
mod common;
mod completion;
mod crashing;
mod fixture;
mod messages;
mod schedule;
mod secure;
mod systemic;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use fixture::*;
use image::ImageFormat;
use serde_json::json;
use vinscan_kafka::{Publisher, admin};
use vinscan_storage::{ObjectStore, S3Store};

#[test]
fn sixty_messages_each_end_as_one_output_or_one_dead_letter() {
    let (brokers, s3) = services();
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
        metrics.contains(r#"vinscan_jobs_total{outcome="poison"} 7"#),
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
    let (brokers, s3) = services();
    let _slot = Slot::take();
    let f = Fixture::new("kill", brokers, s3);
    // A daemon cannot tell this test's SIGKILL from a crash: a job in flight at three of the
    // kills would be dead-lettered `crashed` under the default max_starts (3), and each new
    // daemon waits out the killed member's session before it gets partitions, so the job at a
    // partition's committed position is often the one in flight at the next kill. Allow more
    // starts than there are kills; the crash-loop test covers max_starts.
    const KILLS: usize = 5;
    f.write_config_with(&format!("max_starts = {}\n", KILLS + 1));
    let t = Instant::now();
    let mut seed = 0x2545_f491u32;
    for run in 0..KILLS {
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
    let mut daemon = f.daemon(KILLS);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        f.wait_complete(Duration::from_secs(600))
    }));
    if let Err(e) = result {
        let _ = daemon.kill();
        dump_logs(&f, KILLS + 1);
        std::panic::resume_unwind(e);
    }
    assert!(stop(&mut daemon).success());
    // the kills interrupted real work: some jobs finished before them, some only after
    let done_before: usize = (0..KILLS).map(|run| f.log(run).matches("job done").count()).sum();
    assert!(
        done_before > 0,
        "no job finished before the kills: they tested nothing"
    );
    assert!(
        f.log(KILLS).contains("job done"),
        "the last daemon had nothing left to do"
    );
    let restarted: usize = (1..=KILLS)
        .map(|run| f.log(run).matches("message started again").count())
        .sum();
    eprintln!(
        "kill test done in {:.0} s; {restarted} starts found an earlier start that never finished",
        t.elapsed().as_secs_f64()
    );
    f.check(false);
}

#[test]
fn rides_out_a_broker_outage_and_an_s3_outage() {
    let (brokers, s3) = services();
    let pid = |name: &str| {
        std::env::var(name).unwrap_or_else(|_| panic!("{name} is unset: run the tests through ops/test.sh"))
    };
    let (broker_pid, s3_pid) = (pid("VINSCAN_TEST_KAFKA_PID"), pid("VINSCAN_TEST_S3_PID"));
    // stopping the shared services must not disturb other tests' daemons
    let _slot = Slot::take_all();
    let f = Fixture::new("outage", brokers, s3);
    let mut daemon = f.daemon(0);
    let t = Instant::now();
    let port = f.wait_ops_port(0);
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
    let (brokers, s3) = services();
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

/// A copy of the shipped pipelines and schemas plus `long`: one free string of at least 9,000
/// characters, so the tiny model generates for several seconds.
fn long_pipeline_dirs(root: &std::path::Path) -> (PathBuf, PathBuf) {
    let (pipelines, schemas) = (root.join("pipelines"), root.join("schemas"));
    for (from, to) in [("pipelines", &pipelines), ("schemas", &schemas)] {
        std::fs::create_dir_all(to).expect("mkdir");
        for e in std::fs::read_dir(common::repo_root().join(from)).expect("read dir") {
            let p = e.expect("entry").path();
            if p.is_file() {
                std::fs::copy(&p, to.join(p.file_name().expect("name"))).expect("copy");
            }
        }
    }
    std::fs::write(
        schemas.join("long.schema.json"),
        r#"{"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": "urn:vinscan:test:long",
            "type": "object", "additionalProperties": false, "required": ["text"],
            "properties": {"text": {"type": "string", "minLength": 9000, "maxLength": 9000}}}"#,
    )
    .expect("schema");
    std::fs::write(
        pipelines.join("long.toml"),
        "name = \"long\"\ndescription = \"a long generation\"\nschema = \"long.schema.json\"\nprompt = \"Chép lại.\"\n[tiles]\nmin = 1\nmax = 1\n[generation]\nmax_tokens = 10000\n",
    )
    .expect("pipeline");
    (pipelines, schemas)
}

/// Regression (bug 4): the runtime waited for blocking inference forever, so SIGTERM during a
/// long generation did not exit after the grace period. Now the daemon exits 0 within grace +
/// 5 s, and the message it was working on stays uncommitted for redelivery.
#[test]
fn sigterm_during_a_long_generation_exits_within_the_grace_period() {
    let (brokers, s3) = services();
    let _slot = Slot::take();
    let f = Fixture::empty("sigterm", brokers, s3);
    let (pipelines, schemas) = long_pipeline_dirs(f.dir.path());
    let config = std::fs::read_to_string(&f.config)
        .expect("config")
        .replace("shutdown_grace_s = 20", "shutdown_grace_s = 2");
    std::fs::write(&f.config, config).expect("config");
    rt().block_on(async {
        let input = S3Store::new(&f.s3, &f.input).expect("client");
        input
            .put("long/page.png", Bytes::from(common::encode(&common::scan(448, 448, 5), ImageFormat::Png)), "image/png")
            .await
            .expect("put");
        let m = json!({"job_id": "long-1", "pipeline": "long", "sources": [format!("s3://{}/long/page.png", f.input)]});
        Publisher::new(&f.settings())
            .expect("producer")
            .send(&f.jobs_topic, "long-1", m.to_string().as_bytes(), &[])
            .await
            .expect("produce");
    });
    let mut daemon = f.daemon_with(
        0,
        &[
            ("VINSCAN_PIPELINES_DIR", &pipelines),
            ("VINSCAN_SCHEMAS_DIR", &schemas),
        ],
    );
    let t = Instant::now();
    while !f.log(0).contains("job started") {
        if t.elapsed() > Duration::from_secs(120) {
            let _ = daemon.kill();
            dump_logs(&f, 1);
            panic!("the job never started");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        !f.log(0).contains("job done"),
        "the generation was not long enough to interrupt"
    );
    let sent = Instant::now();
    let status = stop(&mut daemon);
    let took = sent.elapsed();
    dump_logs(&f, 1);
    assert!(status.success(), "exit: {status}");
    assert!(took < Duration::from_secs(2 + 5), "exited {took:?} after SIGTERM");
    assert!(f.log(0).contains("message abandoned uncommitted"));
    let mut s = f.settings();
    s.group_id = f.group.clone();
    let progress = admin::group_progress(&s, &f.jobs_topic, Duration::from_secs(10)).expect("progress");
    let (_, committed, high) = progress
        .into_iter()
        .find(|(_, _, high)| *high > 0)
        .expect("the job's partition");
    assert!(
        committed.unwrap_or(0) < high,
        "the message was committed: {committed:?} of {high}"
    );
    assert!(f.read(&f.results_topic).is_empty() && f.read(&f.dlq_topic).is_empty());
}
