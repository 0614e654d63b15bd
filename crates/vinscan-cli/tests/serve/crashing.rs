//! A message that kills the process. With the `failpoints` test build, the daemon aborts
//! (SIGABRT, as a failed assertion in llama.cpp or pdfium would) whenever it extracts the job
//! `crash-me`. Each time it is restarted, the message is redelivered. After `max_starts` (3)
//! starts without finishing, it is dead-lettered as `crashed` with its attempts, and the rest
//! of its partition is processed and committed. Messages that were in flight when it crashed
//! run alone on their next start, so they are not blamed.
//! Run by `ops/test.sh` as `cargo test -p vinscan-cli --features failpoints --test serve crash`.
#![cfg(feature = "failpoints")]

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use image::ImageFormat;
use serde_json::json;
use vinscan_kafka::Publisher;
use vinscan_storage::{ObjectStore, S3Store};

use crate::common;
use crate::fixture::*;

#[test]
fn a_message_that_aborts_the_process_is_dead_lettered_as_crashed_after_max_starts() {
    let (brokers, s3) = services();
    let _slot = Slot::take();
    let f = Fixture::empty("crashing", brokers, s3);
    let ids = ["ok-0", "crash-me", "ok-1", "ok-2", "ok-3"];
    rt().block_on(async {
        let store = S3Store::new(&f.s3, &f.input).expect("client");
        let publisher = Publisher::new(&f.settings()).expect("producer");
        for (i, id) in ids.iter().enumerate() {
            let png = common::encode(&common::scan(300, 200, 700 + i as u32), ImageFormat::Png);
            let key = format!("scans/{id}.png");
            store.put(&key, Bytes::from(png), "image/png").await.expect("put");
            let job = json!({"job_id": id, "pipeline": "receipt",
                "sources": [format!("s3://{}/{key}", f.input)]});
            publisher
                .send(&f.jobs_topic, id, job.to_string().as_bytes(), &[])
                .await
                .expect("send");
        }
    });
    let t = Instant::now();
    let mut aborted = 0;
    let mut run = 0;
    loop {
        let mut daemon = f.daemon_with(
            run,
            &[("FAILPOINTS", Path::new("vinscan::job::extract=return(crash-me)"))],
        );
        // until it dies or everything is done
        let status = loop {
            if let Ok(Some(status)) = daemon.try_wait() {
                break Some(status);
            }
            if complete_for(&f, &ids) {
                break None;
            }
            if t.elapsed() > Duration::from_secs(600) {
                let _ = daemon.kill();
                dump_logs(&f, run + 1);
                panic!("not done after 10 minutes, {aborted} aborts");
            }
            std::thread::sleep(Duration::from_millis(300));
        };
        match status {
            Some(status) => {
                use std::os::unix::process::ExitStatusExt;
                assert_eq!(status.signal(), Some(6), "run {run} ended otherwise: {status}");
                assert!(f.log(run).contains("aborting on job crash-me"), "run {run}");
                aborted += 1;
                assert!(aborted <= 3, "aborted more than max_starts times");
            }
            None => {
                assert!(stop(&mut daemon).success());
                break;
            }
        }
        run += 1;
    }
    assert_eq!(aborted, 3, "one abort per allowed start");
    let dead = f.read(&f.dlq_topic);
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["job_id"], "crash-me");
    assert_eq!(dead[0]["error"]["kind"], "crashed");
    assert_eq!(dead[0]["attempts"], 3);
    let results = f.read(&f.results_topic);
    for id in ids {
        let mine: Vec<_> = results.iter().filter(|r| r["job_id"] == id).collect();
        let want = if id == "crash-me" { "dead_lettered" } else { "ok" };
        assert!(
            !mine.is_empty() && mine.iter().all(|r| r["status"] == want),
            "{id}: {mine:?} (no job but crash-me may be blamed)"
        );
    }
    assert!(f.committed_all(), "the partition moved past the crashing message");
    eprintln!(
        "crash loop test done in {:.0} s, {aborted} aborts",
        t.elapsed().as_secs_f64()
    );
}

/// Whether each of `job_ids` has a result event and every offset is committed.
fn complete_for(f: &Fixture, job_ids: &[&str]) -> bool {
    let results = f.read(&f.results_topic);
    job_ids
        .iter()
        .all(|id| results.iter().any(|r| r["job_id"] == *id))
        && f.committed_all()
}
