//! Scheduled `enqueue` runs against the real broker and S3 server: one deterministic job per
//! scan, and repeated runs over a growing prefix enqueue only what is new or replaced.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use image::ImageFormat;
use serde_json::Value;
use vinscan_kafka::{KafkaSettings, admin};
use vinscan_storage::{ObjectStore, S3Config, S3Store};

use crate::common;
use crate::fixture::*;

/// One `vinscan enqueue` run over `s3://BUCKET/archive`: its summary's `enqueued` and
/// `already_enqueued`.
fn run_enqueue(
    home: &Path,
    bucket: &str,
    topic: &str,
    brokers: &str,
    s3: &S3Config,
    all: bool,
) -> (Option<u64>, Option<u64>) {
    let out = common::run(
        common::vinscan(home)
            .args(["enqueue", &format!("s3://{bucket}/archive"), "--topic", topic])
            .args(["--pipeline", "archive-page", "--brokers", brokers])
            .args(["--create-partitions", "2"])
            .args(["--output-prefix", &format!("s3://{bucket}/out")])
            .args(if all { &["--all"][..] } else { &[][..] })
            .env("VINSCAN_S3_ENDPOINT", s3.endpoint.as_deref().unwrap_or_default()),
    );
    assert!(out.status.success());
    let summary: Value = serde_json::from_str(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .expect("summary"),
    )
    .expect("json");
    // notes.txt; never the state object in its dot folder
    assert_eq!(summary["not_scans"], 1, "{summary}");
    (summary["enqueued"].as_u64(), summary["already_enqueued"].as_u64())
}

/// `enqueue` puts one job per scan of the prefix on the topic, with deterministic ids; run again
/// (a nightly schedule) it enqueues only what is new or replaced, from its state object beside
/// the scans; `--all` enqueues everything again with the same ids.
#[test]
fn enqueue_puts_one_deterministic_job_per_scan_and_repeated_runs_only_what_is_new() {
    let (brokers, s3) = services();
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
    let enqueue = |all: bool| run_enqueue(tmp.path(), &bucket, &topic, &brokers, &s3, all);
    assert_eq!(enqueue(false), (Some(3), Some(0)), "the first run: every scan");
    assert_eq!(
        enqueue(false),
        (Some(0), Some(3)),
        "nothing new: nothing enqueued"
    );
    // the archive grows by one scan, and one scan is replaced (a new ETag)
    rt().block_on(async {
        for (key, seed) in [("archive/1992/e.png", 5), ("archive/1990/a.png", 6)] {
            let bytes = common::encode(&common::scan(200, 300, seed), ImageFormat::Png);
            store
                .put(key, Bytes::from(bytes), "application/octet-stream")
                .await
                .expect("put");
        }
    });
    assert_eq!(
        enqueue(false),
        (Some(2), Some(2)),
        "the new and the replaced scan only"
    );
    assert_eq!(enqueue(true), (Some(4), Some(0)), "--all: every scan again");
    let state: Value = rt().block_on(async {
        let o = store
            .get("archive/.vinscan/enqueued-archive-page.json", 1 << 20, None)
            .await
            .expect("the state beside the scans");
        serde_json::from_slice(&o.bytes).expect("json")
    });
    assert_eq!(state["enqueued"].as_object().map(|m| m.len()), Some(4), "{state}");
    let records = admin::read_all(
        &KafkaSettings::new(&brokers, "observer"),
        &topic,
        Duration::from_secs(30),
    )
    .expect("read");
    assert_eq!(records.len(), 3 + 2 + 4);
    assert_one_id_per_object_and_etag(&records, &bucket);
}

/// Every record is a valid job for the object it names, and each (job id, object) pair was
/// sent as often as the runs above sent it.
fn assert_one_id_per_object_and_etag(records: &[(Option<Vec<u8>>, Vec<u8>)], bucket: &str) {
    let routes = vinscan_jobs::routing::Routes::new(
        vec![],
        ["archive-page"],
        format!("s3://{bucket}/results").parse().expect("uri"),
    )
    .expect("routes");
    let mut ids = BTreeMap::new();
    for (_, payload) in records {
        let jobs = vinscan_jobs::classify(payload, &routes).expect("a valid job message");
        assert_eq!(jobs[0].output_prefix.to_string(), format!("s3://{bucket}/out"));
        *ids.entry((jobs[0].job_id.clone(), jobs[0].sources[0].key.clone()))
            .or_insert(0) += 1;
    }
    let keys: BTreeSet<&str> = ids.keys().map(|(_, k)| k.as_str()).collect();
    assert_eq!(
        keys,
        BTreeSet::from([
            "archive/1990/a.png",
            "archive/1990/b c.jpg",
            "archive/1991/d.png",
            "archive/1992/e.png"
        ])
    );
    // 5 jobs: a.png before and after its replacement are two; each was sent by its first run
    // and by --all, except the old a.png, which --all no longer saw
    let mut counts: Vec<(&str, u32)> = ids.iter().map(|((_, k), &n)| (k.as_str(), n)).collect();
    counts.sort_unstable();
    assert_eq!(
        counts,
        [
            ("archive/1990/a.png", 1),
            ("archive/1990/a.png", 2),
            ("archive/1990/b c.jpg", 2),
            ("archive/1991/d.png", 2),
            ("archive/1992/e.png", 2)
        ],
        "the same job ids for the same object and ETag: {ids:?}"
    );
}
