//! Delivery rules for faults and for messages that are not jobs: systemic faults, time limits,
//! crash loops, refused buckets a job names, tombstones and non-creation events.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use vinscan_daemon::Exit;
use vinscan_daemon::testsuite::{Behaviour, config, daemon, png};
use vinscan_storage::{Fault, Op, StorageErrorKind};

use crate::{default, job, put, run_until};

/// Messages with no job in them are acknowledged, never dead-lettered: a tombstone (null
/// value), an EventBridge `Object Deleted` event and an `s3:TestEvent`. An EventBridge
/// `Object Created` event is a job like the record format's.
#[tokio::test]
async fn tombstones_and_non_creation_events_are_skipped_and_eventbridge_creations_are_jobs() {
    let (d, f) = daemon(default(), Behaviour::Answer);
    put(&f, "uploads", "scans/bi\u{ea}n lai.png", png(64, 48)).await;
    let eventbridge = |detail_type: &str| {
        json!({"version": "0", "source": "aws.s3", "detail-type": detail_type,
            "detail": {"bucket": {"name": "uploads"},
                "object": {"key": "scans/bi%C3%AAn+lai.png", "sequencer": "0A1"}}})
        .to_string()
    };
    f.source.push_tombstone("jobs", 0, "compacted-away");
    f.source
        .push("jobs", 0, None, eventbridge("Object Deleted").as_bytes());
    f.source.push(
        "jobs",
        0,
        None,
        br#"{"Service":"Amazon S3","Event":"s3:TestEvent","Bucket":"uploads"}"#,
    );
    f.source
        .push("jobs", 0, None, eventbridge("Object Created").as_bytes());
    let seen = run_until(&d, &f, 4).await;
    assert!(seen.dead.is_empty(), "{:?}", seen.dead);
    assert_eq!(seen.statuses(), ["ok"]);
    assert_eq!(seen.outputs.len(), 1, "{:?}", seen.outputs);
    assert!(
        seen.outputs[0].starts_with("uploads/receipt/")
            && seen.outputs[0].ends_with("/bi\u{ea}n_lai.png.json"),
        "{:?}",
        seen.outputs
    );
    assert_eq!(seen.committed, 4);
}

/// A job past its time limit (here `job_timeout_s = 1`, under the pipeline's per-page limit)
/// is cancelled at the model's next step, retried once, then dead-lettered as `timeout`
/// with 2 attempts; the daemon is not stopped by it.
#[tokio::test]
async fn a_job_past_its_time_limit_is_retried_once_then_dead_lettered_as_timeout() {
    let (d, f) = daemon(config("job_timeout_s = 1"), Behaviour::RunsUntilCancelled);
    put(&f, "src", "slow.png", png(32, 32)).await;
    f.source
        .push("jobs", 0, None, &job("slow", &["s3://src/slow.png"]));
    let t = Instant::now();
    let seen = run_until(&d, &f, 1).await;
    assert_eq!(seen.exit, Exit::Stopped, "a timeout does not stop the daemon");
    assert_eq!(seen.dead_kinds(), ["timeout"]);
    assert_eq!(seen.dead[0]["attempts"], 2);
    let message = seen.dead[0]["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("time limit of 1 s"), "{message}");
    assert_eq!(seen.statuses(), ["dead_lettered"]);
    assert_eq!(seen.committed, 1);
    assert!(t.elapsed() < Duration::from_secs(8), "{:?}", t.elapsed());
}

/// A message whose earlier starts all died with the process (3 = `max_starts`, counted by the
/// source across restarts) is not started a fourth time: it is dead-lettered `crashed` with
/// its attempts, and the rest of its partition is processed and committed.
#[tokio::test]
async fn a_message_that_killed_the_process_max_starts_times_is_dead_lettered_as_crashed() {
    use vinscan_daemon::JobSource;
    let (d, f) = daemon(default(), Behaviour::Answer);
    put(&f, "src", "a.png", png(32, 32)).await;
    let killer = f
        .source
        .push("jobs", 0, Some("k"), &job("killer", &["s3://src/a.png"]));
    f.source
        .push("jobs", 0, Some("ok"), &job("fine", &["s3://src/a.png"]));
    for _ in 0..3 {
        f.source.record_start(&killer).expect("start");
    }
    let seen = run_until(&d, &f, 2).await;
    assert_eq!(seen.dead_kinds(), ["crashed"]);
    assert_eq!(seen.dead[0]["job_id"], "killer");
    assert_eq!(seen.dead[0]["attempts"], 3);
    let mut statuses = seen.statuses();
    statuses.sort();
    assert_eq!(statuses, ["dead_lettered", "ok"]);
    assert_eq!(f.model.pages(), 1, "the killer was not started again");
    assert_eq!(seen.committed, 2);
}

/// Regression (issue 20): an output store down longer than the retry budget dead-lettered
/// every message read meanwhile, and refused credentials dead-lettered everything. Faults
/// that are not the job's fault never dead-letter it: for a store that stays unreachable past
/// the budget, access denied and the output bucket missing, the daemon holds the jobs in
/// flight, pauses its partitions (no new message taken), reports `jobs=false` on `/readyz`,
/// and once the store heals every job gets its output once, with nothing dead-lettered.
#[tokio::test]
async fn systemic_faults_hold_the_work_instead_of_dead_lettering_it() {
    for kind in [
        StorageErrorKind::Transient,
        StorageErrorKind::Denied,
        StorageErrorKind::NotFound,
    ] {
        let (d, f) = daemon(config("retry_max_delay_ms = 20"), Behaviour::Answer);
        // sources in the bucket the deployment routes: its faults are the deployment's
        for i in 0..5 {
            put(&f, "uploads", &format!("scans/r{i}.png"), png(32, 32)).await;
            let id = format!("j{i}");
            f.source.push(
                "jobs",
                0,
                Some(&id),
                &job(&id, &[&format!("s3://uploads/scans/r{i}.png")]),
            );
        }
        f.stores.store("out").inject(Fault {
            op: Op::Put,
            key_prefix: String::new(),
            kind,
            times: u32::MAX,
        });
        let run = tokio::spawn(vinscan_daemon::run(d.clone(), f.source.clone()));
        let t = Instant::now();
        while !d.holding() {
            assert!(t.elapsed() < Duration::from_secs(10), "{kind:?}: never held");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // a while into the fault: still held, unready, paused, nothing new taken
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(d.holding(), "{kind:?}");
        assert!(!d.readiness.is_ready(), "{kind:?}");
        assert!(d.readiness.describe().contains("jobs=false"), "{kind:?}");
        assert!(f.source.is_paused(), "{kind:?}: still taking messages");
        assert_eq!(f.source.queued(), 2, "{kind:?}: max_in_flight = 3 taken, no more");
        assert!(f.publisher.records("dlq").is_empty(), "{kind:?}");
        f.stores.store("out").heal();
        assert!(
            f.source.wait_settled(5, Duration::from_secs(10)).await,
            "{kind:?}"
        );
        d.request_stop();
        let exit = tokio::time::timeout(Duration::from_secs(10), run)
            .await
            .expect("stops")
            .expect("run task");
        assert_eq!(exit, Exit::Stopped);
        assert!(f.publisher.records("dlq").is_empty(), "{kind:?}: dead-lettered");
        let statuses: Vec<Value> = f
            .publisher
            .records("results")
            .iter()
            .map(|r| r["status"].clone())
            .collect();
        assert_eq!(statuses, vec![json!("ok"); 5], "{kind:?}");
        assert_eq!(f.stores.store("out").contents().len(), 5, "{kind:?}");
        assert_eq!(f.source.committed("jobs", 0), 5, "{kind:?}");
        assert!(
            !d.holding() && d.readiness.describe().contains("jobs=true"),
            "{kind:?}"
        );
    }
}

/// A job message may name any bucket: access refused to one the deployment never mentions,
/// while the default output answers, is that job's fault. It is dead-lettered (`config`)
/// rather than holding the daemon.
#[tokio::test]
async fn refused_access_to_a_bucket_only_a_job_names_is_the_jobs_fault() {
    let (d, f) = daemon(default(), Behaviour::Answer);
    put(&f, "elsewhere", "a.png", png(32, 32)).await;
    f.stores.store("elsewhere").inject(Fault {
        op: Op::Get,
        key_prefix: String::new(),
        kind: StorageErrorKind::Denied,
        times: u32::MAX,
    });
    f.source
        .push("jobs", 0, None, &job("theirs", &["s3://elsewhere/a.png"]));
    // the probe has found the default output answering before the job fails
    tokio::time::sleep(Duration::from_millis(50)).await;
    let seen = run_until(&d, &f, 1).await;
    assert_eq!(seen.dead_kinds(), ["config"]);
    assert!(!d.holding());
    assert_eq!(seen.committed, 1);
}
