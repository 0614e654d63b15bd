//! `vinscan batch` from an S3 prefix to an S3 prefix on the real S3 server (s3s-fs, started by
//! ops/test.sh): outputs and manifest land in the bucket, a second run skips everything, and an
//! oversized object is refused before download.
#![cfg(feature = "s3")]

mod common;

use bytes::Bytes;
use common::*;
use image::ImageFormat;
use vinscan_storage::{ObjectStore, S3Config, S3Store};

/// The S3 server `ops/test.sh` starts; a missing server fails the test, never skips it.
fn s3() -> S3Config {
    let endpoint = std::env::var("VINSCAN_TEST_S3_ENDPOINT")
        .unwrap_or_else(|_| panic!("VINSCAN_TEST_S3_ENDPOINT is unset: run the tests through ops/test.sh"));
    let mut c = S3Config::from_env();
    c.endpoint = Some(endpoint);
    c.path_style = true;
    c
}

/// Two scans, a text file and a 2 MB object over the test pipeline's limit.
async fn put_inputs(store: &S3Store) {
    store.create_bucket().await.expect("bucket");
    store
        .put(
            "in/a/hoá đơn 1.jpg",
            Bytes::from(encode(&scan(900, 1300, 1), ImageFormat::Jpeg)),
            "image/jpeg",
        )
        .await
        .expect("put");
    store
        .put(
            "in/b.png",
            Bytes::from(encode(&scan(1600, 600, 2), ImageFormat::Png)),
            "image/png",
        )
        .await
        .expect("put");
    store
        .put("in/readme.txt", Bytes::from_static(b"not a scan"), "text/plain")
        .await
        .expect("put");
    // 2 MB of noise: over the limit set below, refused before download
    store
        .put("in/big.jpg", Bytes::from(vec![0xFFu8; 2 << 20]), "image/jpeg")
        .await
        .expect("put");
}

/// The JSON summary a run prints last.
fn summary_of(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_str(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .expect("summary"),
    )
    .expect("json")
}

#[test]
fn batch_from_s3_to_s3_is_resumable() {
    let config = s3();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    let bucket = format!("batch-{}", std::process::id());
    let store = S3Store::new(&config, &bucket).expect("client");
    rt.block_on(put_inputs(&store));
    let tmp = tempfile::tempdir().expect("tmp");
    // a pipeline directory whose receipt pipeline accepts at most 1 MB
    let pipelines = tmp.path().join("pipelines");
    std::fs::create_dir_all(&pipelines).expect("mkdir");
    let receipt = std::fs::read_to_string(repo_root().join("pipelines/receipt.toml")).expect("receipt.toml");
    std::fs::write(
        pipelines.join("receipt.toml"),
        format!("{receipt}\n[limits]\nmax_bytes = 1000000\n"),
    )
    .expect("write");

    let batch = |tmp: &std::path::Path| {
        run(vinscan(tmp)
            .args([
                "batch",
                &format!("s3://{bucket}/in"),
                "--pipeline",
                "receipt",
                "--out",
                &format!("s3://{bucket}/out/run1"),
            ])
            .arg("--pipelines-dir")
            .arg(&pipelines)
            .arg("--schemas-dir")
            .arg(repo_root().join("schemas"))
            .env(
                "VINSCAN_S3_ENDPOINT",
                config.endpoint.as_deref().unwrap_or_default(),
            ))
    };
    let first = batch(tmp.path());
    assert_eq!(
        first.status.code(),
        Some(1),
        "big.jpg fails, so the exit code is 1"
    );
    let summary = summary_of(&first);
    assert_eq!(
        (
            summary["inputs"].as_u64(),
            summary["processed"].as_u64(),
            summary["failed"].as_u64(),
            summary["unsupported"].as_u64()
        ),
        (Some(4), Some(2), Some(1), Some(1)),
        "{summary}"
    );

    let manifest = rt
        .block_on(store.get("out/run1/manifest.jsonl", 1 << 20, None))
        .expect("manifest in the bucket");
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&manifest.bytes)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(lines.len(), 4, "every object found is in the manifest");
    let big = lines
        .iter()
        .find(|l| l["source"].as_str().is_some_and(|s| s.ends_with("in/big.jpg")))
        .expect("big.jpg");
    assert_eq!(big["error"]["kind"], "too_large", "{big}");

    let outputs = rt.block_on(store.list("out/run1/in")).ok().unwrap_or_default();
    let pages = rt.block_on(store.list("out/run1/")).expect("list");
    let keys: Vec<&str> = pages.iter().map(|m| m.key.as_str()).collect();
    assert!(
        outputs.is_empty(),
        "outputs are keyed relative to the source prefix: {keys:?}"
    );
    assert!(keys.contains(&"out/run1/a/hoá đơn 1.jpg.json"), "{keys:?}");
    assert!(keys.contains(&"out/run1/b.png.json"), "{keys:?}");
    let local_copies: Vec<std::path::PathBuf> = ["a/hoá đơn 1.jpg.json", "b.png.json"]
        .iter()
        .map(|k| {
            let o = rt
                .block_on(store.get(&format!("out/run1/{k}"), 1 << 20, None))
                .expect("output");
            let p = tmp.path().join(k.replace('/', "_"));
            std::fs::write(&p, &o.bytes).expect("write");
            p
        })
        .collect();
    let (passed, failed, report) = validate(&local_copies);
    assert_eq!((passed, failed), (2, 0), "{report}");

    let summary = summary_of(&batch(tmp.path()));
    assert_eq!(
        (summary["skipped"].as_u64(), summary["processed"].as_u64()),
        (Some(2), Some(0)),
        "{summary}"
    );
    assert_eq!(summary["model_loaded"], false);
}

/// With no credentials in the environment, the standard AWS chain reads the shared credentials
/// file (`AWS_SHARED_CREDENTIALS_FILE`, profile `AWS_PROFILE`); a wrong secret there is refused
/// by the server with a clear error.
#[test]
fn credentials_come_from_the_standard_chain() {
    let config = s3();
    let bucket = format!("chain-{}", std::process::id());
    let store = S3Store::new(&config, &bucket).expect("client");
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt")
        .block_on(store.create_bucket())
        .expect("bucket");
    let tmp = tempfile::tempdir().expect("tmp");
    let creds = tmp.path().join("credentials");
    let key = config.access_key_id.clone().expect("test key");
    let secret = config.secret_access_key.clone().expect("test secret");
    std::fs::write(
        &creds,
        format!(
            "[vinscan-test]\naws_access_key_id = {key}\naws_secret_access_key = {secret}\n\n\
             [wrong]\naws_access_key_id = {key}\naws_secret_access_key = not-the-secret\n"
        ),
    )
    .expect("credentials file");
    let batch = |profile: &str, out: &str| {
        run(vinscan(tmp.path())
            .args(["batch", &format!("s3://{bucket}/empty"), "--pipeline", "receipt"])
            .args(["--out", &format!("s3://{bucket}/{out}")])
            .env(
                "VINSCAN_S3_ENDPOINT",
                config.endpoint.as_deref().unwrap_or_default(),
            )
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env_remove("AWS_SESSION_TOKEN")
            .env("AWS_SHARED_CREDENTIALS_FILE", &creds)
            .env("AWS_CONFIG_FILE", tmp.path().join("no-config"))
            .env("AWS_PROFILE", profile)
            .env("AWS_EC2_METADATA_DISABLED", "true"))
    };
    let ok = batch("vinscan-test", "out");
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    let summary: serde_json::Value = serde_json::from_str(
        String::from_utf8_lossy(&ok.stdout)
            .lines()
            .last()
            .expect("summary"),
    )
    .expect("json");
    assert_eq!(summary["inputs"], 0, "{summary}");

    let refused = batch("wrong", "out2");
    assert_eq!(refused.status.code(), Some(2));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("403") || err.contains("SignatureDoesNotMatch"),
        "{err}"
    );
}
