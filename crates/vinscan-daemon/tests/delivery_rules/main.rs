//! The daemon's delivery rules, one table-driven case each: messages and injected faults in;
//! output objects, result events, dead letters, commits and the exit out. Every port is an
//! in-memory fake (`testsuite`), so the whole file runs in about a second.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{Value, json};
use vinscan_core::ErrorKind;
use vinscan_daemon::testsuite::{Behaviour, Fakes, ScriptedModel, config, daemon, daemon_over, png};
use vinscan_daemon::{Daemon, Exit, PortErrorKind, ServeConfig};
use vinscan_storage::{Fault, ObjectStore, Op, StorageErrorKind};

mod faults;

/// A run's observable results.
struct Seen {
    exit: Exit,
    outputs: Vec<String>,
    results: Vec<Value>,
    dead: Vec<Value>,
    committed: i64,
    abandoned: usize,
    finished: usize,
}

impl Seen {
    fn statuses(&self) -> Vec<String> {
        self.results
            .iter()
            .map(|r| r["status"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    fn dead_kinds(&self) -> Vec<String> {
        self.dead
            .iter()
            .map(|r| r["error"]["kind"].as_str().unwrap_or_default().to_owned())
            .collect()
    }
}

fn job(id: &str, sources: &[&str]) -> Vec<u8> {
    json!({"job_id": id, "pipeline": "receipt", "sources": sources})
        .to_string()
        .into_bytes()
}

async fn put(f: &Fakes, bucket: &str, key: &str, bytes: Vec<u8>) -> String {
    let store = f.stores.store(bucket);
    store
        .put(key, Bytes::from(bytes), "image/png")
        .await
        .expect("put");
    store.head(key).await.expect("head").etag
}

/// Runs the daemon until `settle` messages are finished or abandoned (or it stops by itself),
/// then asks it to stop and collects what it did.
async fn run_until(d: &Arc<Daemon>, f: &Fakes, settle: usize) -> Seen {
    let run = tokio::spawn(vinscan_daemon::run(d.clone(), f.source.clone()));
    let settled = f.source.wait_settled(settle, Duration::from_secs(10)).await;
    d.request_stop();
    let exit = tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("the daemon stops")
        .expect("run task");
    assert!(
        settled || matches!(exit, Exit::Fault(_)),
        "only {} settled",
        f.source.settled()
    );
    Seen {
        exit,
        outputs: f.stores.store("out").contents().into_keys().collect(),
        results: f.publisher.records("results"),
        dead: f.publisher.records("dlq"),
        committed: f.source.committed("jobs", 0),
        abandoned: f.source.abandoned().len(),
        finished: f.source.finished().len(),
    }
}

fn default() -> ServeConfig {
    config("")
}

#[tokio::test]
async fn a_valid_job_gets_one_output_then_one_ok_result_and_is_committed() {
    let (d, f) = daemon(default(), Behaviour::Answer);
    put(&f, "src", "a/r1.png", png(64, 48)).await;
    f.source
        .push("jobs", 0, Some("j1"), &job("j1", &["s3://src/a/r1.png"]));
    let seen = run_until(&d, &f, 1).await;
    assert_eq!(seen.exit, Exit::Stopped);
    assert_eq!(
        seen.outputs.len(),
        1,
        "{:?} {:?} {:?}",
        seen.outputs,
        seen.results,
        seen.dead
    );
    assert!(seen.outputs[0].starts_with("results/receipt/") && seen.outputs[0].ends_with("/r1.png.json"));
    assert_eq!(seen.statuses(), ["ok"]);
    assert_eq!(seen.results[0]["output"], format!("s3://out/{}", seen.outputs[0]));
    assert_eq!(seen.results[0]["pages"], 1);
    assert!(seen.dead.is_empty());
    assert_eq!(seen.committed, 1);
    assert!(f.source.is_closed(), "the source is closed on the way out");
}

/// Each job that fails for good: one dead letter of its kind, one `dead_lettered` result, and
/// the offset committed (the outcome is durable).
#[tokio::test]
async fn jobs_that_fail_for_good_are_dead_lettered_with_their_kind() {
    let cases: &[(&str, &[u8], &str, u32)] = &[
        ("missing", b"", "not_found", 1),
        ("corrupt", b"this is not an image at all", "unsupported", 1),
        (
            "truncated",
            b"\xff\xd8\xff\xe0 a JPEG cut short",
            "invalid_input",
            1,
        ),
        ("huge", &[7u8; 2_000], "too_large", 1),
    ];
    for &(name, bytes, kind, attempts) in cases {
        let (d, f) = daemon(config("max_object_bytes = 1000"), Behaviour::Answer);
        if name != "missing" {
            put(&f, "src", &format!("{name}.png"), bytes.to_vec()).await;
        }
        f.source
            .push("jobs", 0, None, &job(name, &[&format!("s3://src/{name}.png")]));
        let seen = run_until(&d, &f, 1).await;
        assert_eq!(seen.dead_kinds(), [kind], "{name}");
        assert_eq!(seen.dead[0]["attempts"], attempts, "{name}");
        assert_eq!(seen.dead[0]["job_id"], name);
        assert_eq!(
            seen.dead[0]["original"]["payload"]
                .as_str()
                .map(|p| p.contains(name)),
            Some(true)
        );
        assert_eq!(seen.statuses(), ["dead_lettered"], "{name}");
        assert!(seen.outputs.is_empty(), "{name}");
        assert_eq!(seen.committed, 1, "{name}");
    }
}

/// Store failures by kind: transient ones are retried (and succeed, or run out of budget);
/// the rest are final at the first attempt.
#[tokio::test]
async fn store_failures_are_retried_only_when_retrying_can_help() {
    // (a store down past the budget and refused credentials are systemic: see
    // `systemic_faults_hold_the_work_instead_of_dead_lettering_it`)
    let cases: &[(StorageErrorKind, u32, &str, u64)] = &[
        (StorageErrorKind::Transient, 2, "ok", 3),
        // regression: an unknown 4xx was retried for the whole budget as "transient"
        (StorageErrorKind::Other, 1, "dead_lettered", 1),
        (StorageErrorKind::NotFound, 1, "dead_lettered", 1),
    ];
    for &(kind, times, status, attempts) in cases {
        let (d, f) = daemon(default(), Behaviour::Answer);
        put(&f, "src", "r.png", png(32, 32)).await;
        f.stores.store("src").inject(Fault {
            op: Op::Get,
            key_prefix: "r.png".into(),
            kind,
            times,
        });
        f.source.push("jobs", 0, None, &job("j", &["s3://src/r.png"]));
        let seen = run_until(&d, &f, 1).await;
        assert_eq!(seen.statuses(), [status], "{kind:?} x{times}");
        assert_eq!(seen.results[0]["attempts"], attempts, "{kind:?} x{times}");
        assert_eq!(seen.committed, 1);
    }
}

/// A failed write is retried without running the model again.
#[tokio::test]
async fn a_failed_write_does_not_redo_the_inference() {
    let (d, f) = daemon(default(), Behaviour::Answer);
    put(&f, "src", "r.png", png(32, 32)).await;
    f.stores.store("out").inject(Fault {
        op: Op::Put,
        key_prefix: String::new(),
        kind: StorageErrorKind::Transient,
        times: 2,
    });
    f.source.push("jobs", 0, None, &job("j", &["s3://src/r.png"]));
    let seen = run_until(&d, &f, 1).await;
    assert_eq!(seen.statuses(), ["ok"]);
    assert_eq!(seen.results[0]["attempts"], 3);
    assert_eq!(f.model.pages(), 1, "the page was extracted once");
}

/// Regression (bug 3): the output was keyed by the version the message named while the fetch
/// read the latest object. A source re-uploaded since its event must end `superseded`: a
/// result event saying so, no output, no dead letter.
#[tokio::test]
async fn a_source_overwritten_since_its_event_is_superseded_not_misread() {
    let (d, f) = daemon(default(), Behaviour::Answer);
    let old = put(&f, "uploads", "scans/r.png", png(32, 32)).await;
    put(&f, "uploads", "scans/r.png", png(40, 30)).await;
    let event = json!({"Records": [{"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": "uploads"},
        "object": {"key": "scans/r.png", "eTag": old, "sequencer": "01"}}}]});
    f.source.push("jobs", 0, None, event.to_string().as_bytes());
    // a job message pinned to a version id the bucket no longer has
    let pinned = json!({"job_id": "pinned", "pipeline": "receipt",
        "sources": [{"uri": "s3://uploads/scans/r.png", "version_id": "v-gone"}]});
    f.source.push("jobs", 0, None, pinned.to_string().as_bytes());
    let seen = run_until(&d, &f, 2).await;
    assert_eq!(seen.statuses(), ["superseded", "superseded"]);
    assert_eq!(seen.results[0]["error"]["kind"], "superseded");
    assert!(seen.outputs.is_empty(), "{:?}", seen.outputs);
    assert!(seen.dead.is_empty());
    assert_eq!(seen.committed, 2);
    assert_eq!(f.model.pages(), 0, "nothing was read, nothing extracted");
}

/// The version a message names is the version read: after an overwrite, a version id still
/// reads the old bytes, and the output names that version.
#[tokio::test]
async fn a_version_id_reads_that_version_after_an_overwrite() {
    let (d, f) = daemon(default(), Behaviour::Answer);
    put(&f, "src", "r.png", png(32, 32)).await;
    let v1 = f.stores.store("src").version_id("r.png").expect("version");
    put(&f, "src", "r.png", b"not an image any more".to_vec()).await;
    let pinned = json!({"job_id": "v1", "pipeline": "receipt",
        "sources": [{"uri": "s3://src/r.png", "version_id": v1}]});
    f.source.push("jobs", 0, None, pinned.to_string().as_bytes());
    let seen = run_until(&d, &f, 1).await;
    assert_eq!(seen.statuses(), ["ok"]);
    let out = f.stores.store("out").contents();
    let doc: Value = serde_json::from_slice(out.values().next().expect("output")).expect("json");
    assert_eq!(doc["sources"][0]["version"], v1);
}

/// Regression (bug 2): a ~600 KB binary message made a dead-letter record (the whole payload,
/// hex-doubled) the broker refused, and the refusal was retried forever, so the partition's
/// commits never moved past it. Now the record carries a bounded copy and the commits move on.
#[tokio::test]
async fn oversized_binary_poison_is_dead_lettered_and_commits_move_past_it() {
    let (d, f) = daemon(default(), Behaviour::Answer);
    put(&f, "src", "r.png", png(32, 32)).await;
    let mut state = 0x2545_f491u32;
    let poison: Vec<u8> = (0..600_000)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state as u8
        })
        .collect();
    f.source.push("jobs", 0, Some("oops"), &poison);
    f.source.push("jobs", 0, None, &job("after", &["s3://src/r.png"]));
    let seen = run_until(&d, &f, 2).await;
    assert_eq!(seen.exit, Exit::Stopped);
    assert_eq!(seen.dead_kinds(), ["poison"]);
    let original = &seen.dead[0]["original"];
    assert_eq!(original["payload_bytes"], 600_000);
    assert_eq!(original["payload_truncated"], true);
    assert_eq!(original["payload_sha256"].as_str().map(str::len), Some(64));
    let record = f
        .publisher
        .sent()
        .into_iter()
        .find(|s| s.topic == "dlq")
        .expect("record");
    assert!(record.payload.len() < 40_000, "{} bytes", record.payload.len());
    assert_eq!(seen.statuses(), ["ok"], "the job after it is done");
    assert_eq!(seen.committed, 2, "the commits moved past the poison");
}

#[tokio::test]
async fn poison_messages_are_dead_lettered_with_the_reason() {
    let (d, f) = daemon(default(), Behaviour::Answer);
    for p in [
        "this is not JSON",
        "[1, 2, 3]",
        r#"{"job_id":"p","pipeline":"no-such","sources":["s3://src/x.png"]}"#,
    ] {
        f.source.push("jobs", 0, None, p.as_bytes());
    }
    let seen = run_until(&d, &f, 3).await;
    assert_eq!(seen.dead_kinds(), ["poison", "poison", "poison"]);
    assert!(seen.dead.iter().all(|r| r["job_id"].is_null()));
    // messages are handled concurrently: the dead letters come in any order
    let mut payloads: Vec<&str> = seen
        .dead
        .iter()
        .filter_map(|r| r["original"]["payload"].as_str())
        .collect();
    payloads.sort_unstable();
    assert_eq!(payloads.len(), 3, "each carries its message");
    assert!(payloads.contains(&"this is not JSON"), "{payloads:?}");
    assert!(
        seen.results.is_empty(),
        "poison has no job, hence no result event"
    );
    assert_eq!(seen.committed, 3);
}

/// Regression (bug 1): after the model thread died, every later page failed `Internal`, which
/// was dead-lettered and committed, while `/readyz` stayed 200. The model dies after 2 pages
/// with 5 more messages queued: none of them is dead-lettered or committed, readiness turns
/// false, the daemon exits non-zero — and a restarted daemon does them all.
#[tokio::test]
async fn a_dead_model_leaves_the_queued_messages_for_a_restart() {
    let (d, f) = daemon(config("max_in_flight = 1"), Behaviour::DiesAfter(2));
    for i in 0..7 {
        let key = format!("r{i}.png");
        put(&f, "src", &key, png(32, 32)).await;
        f.source.push(
            "jobs",
            0,
            None,
            &job(&format!("j{i}"), &[&format!("s3://src/{key}")]),
        );
    }
    let run = tokio::spawn(vinscan_daemon::run(d.clone(), f.source.clone()));
    let exit = tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("the daemon stops by itself")
        .expect("run task");
    assert!(
        matches!(&exit, Exit::Fault(why) if why.contains("unavailable")),
        "{exit:?}"
    );
    assert!(!d.readiness.is_ready());
    assert!(f.publisher.records("dlq").is_empty(), "nothing is dead-lettered");
    assert_eq!(f.publisher.records("results").len(), 2);
    assert_eq!(
        f.source.committed("jobs", 0),
        2,
        "only the two done messages are committed"
    );
    assert_eq!(
        f.source.abandoned().len(),
        1,
        "the page that met the dead engine is abandoned"
    );

    // the orchestrator restarts it (a healthy engine); the broker redelivers from the
    // committed position, over the same topics and stores
    f.source.restart();
    let restarted = Fakes {
        model: Arc::new(ScriptedModel::new(Behaviour::Answer)),
        ..f
    };
    let d2 = daemon_over(config("max_in_flight = 1"), &restarted);
    let seen = run_until(&d2, &restarted, 7).await;
    assert_eq!(
        seen.statuses(),
        ["ok"; 7],
        "every job done once the engine is back"
    );
    assert!(seen.dead.is_empty());
    assert_eq!(seen.committed, 7);
}

/// Records the broker refuses for good stop the daemon instead of spinning; transient refusals
/// are retried.
#[tokio::test]
async fn publish_failures_are_retried_only_when_retrying_can_help() {
    for (kind, times, expect_exit_fault, statuses) in [
        (PortErrorKind::Transient, 3, false, vec!["ok"]),
        (PortErrorKind::Fatal, 1, true, vec![]),
    ] {
        let (d, f) = daemon(default(), Behaviour::Answer);
        put(&f, "src", "r.png", png(32, 32)).await;
        f.publisher.fail("results", kind, times);
        f.source.push("jobs", 0, None, &job("j", &["s3://src/r.png"]));
        let seen = run_until(&d, &f, 1).await;
        assert_eq!(matches!(seen.exit, Exit::Fault(_)), expect_exit_fault, "{kind:?}");
        assert_eq!(seen.statuses(), statuses, "{kind:?}");
        assert_eq!(seen.committed, i64::from(!expect_exit_fault), "{kind:?}");
        assert_eq!(seen.abandoned, usize::from(expect_exit_fault), "{kind:?}");
    }
}

/// Regression (bug 4): a shutdown could not stop inference in flight and waited for it. Now the
/// grace period is honoured: the long generation is cancelled, its message abandoned
/// uncommitted, and the daemon reports a clean stop soon after the grace period.
#[tokio::test]
async fn a_shutdown_during_a_long_generation_ends_within_the_grace_period() {
    let (d, f) = daemon(default(), Behaviour::RunsUntilCancelled);
    put(&f, "src", "r.png", png(32, 32)).await;
    f.source.push("jobs", 0, None, &job("long", &["s3://src/r.png"]));
    let run = tokio::spawn(vinscan_daemon::run(d.clone(), f.source.clone()));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let t = Instant::now();
    d.request_stop();
    let exit = tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("stops")
        .expect("run task");
    let grace = d.config.shutdown_grace();
    assert_eq!(exit, Exit::Stopped);
    assert!(f.model.saw_cancel(), "the running page saw its cancellation");
    assert!(t.elapsed() < grace + Duration::from_secs(1), "{:?}", t.elapsed());
    assert_eq!(f.source.abandoned().len(), 1);
    assert_eq!(f.source.committed("jobs", 0), 0, "the message stays uncommitted");
    assert!(f.publisher.sent().is_empty(), "no result, no dead letter");
}

/// A task that panics never finishes its message: the guard abandons it (so its partition is
/// not frozen in flight), and the daemon stops so the message is redone after a restart.
#[tokio::test]
async fn a_panicking_job_task_abandons_its_message_and_stops_the_daemon() {
    let (d, f) = daemon(default(), Behaviour::Answer);
    put(&f, "src", "r.png", png(32, 32)).await;
    f.publisher.panic_on("results");
    f.source.push("jobs", 0, None, &job("j", &["s3://src/r.png"]));
    let seen = run_until(&d, &f, 1).await;
    assert!(
        matches!(&seen.exit, Exit::Fault(why) if why.contains("panicked")),
        "{:?}",
        seen.exit
    );
    assert_eq!((seen.abandoned, seen.finished), (1, 0));
    assert_eq!(seen.committed, 0);
}

/// Beyond `max_in_flight` messages in progress the source is paused; it resumes as work ends.
#[tokio::test]
async fn backpressure_pauses_at_max_in_flight() {
    let (d, f) = daemon(config("max_in_flight = 2"), Behaviour::Answer);
    for i in 0..6 {
        let key = format!("r{i}.png");
        put(&f, "src", &key, png(32, 32)).await;
        f.source.push(
            "jobs",
            0,
            None,
            &job(&format!("j{i}"), &[&format!("s3://src/{key}")]),
        );
    }
    let seen = run_until(&d, &f, 6).await;
    assert_eq!(seen.statuses().len(), 6);
    assert!(f.source.peak_in_flight() <= 2, "{}", f.source.peak_in_flight());
    assert_eq!(seen.committed, 6);
}

/// Model failures that are the page's own (invalid output) are dead-lettered; the engine being
/// gone never is.
#[tokio::test]
async fn model_failures_by_kind() {
    let (d, f) = daemon(default(), Behaviour::Fails(ErrorKind::InvalidOutput, 1));
    put(&f, "src", "r.png", png(32, 32)).await;
    f.source.push("jobs", 0, None, &job("j", &["s3://src/r.png"]));
    let seen = run_until(&d, &f, 1).await;
    assert_eq!(seen.dead_kinds(), ["invalid_output"]);
    assert_eq!(seen.exit, Exit::Stopped);
}
