//! One conformance suite for every `ObjectStore`: run on a local directory, on the in-memory
//! test store, and on the real S3 server (`ops/s3-server.sh start`, which `ops/test.sh` runs and
//! names in VINSCAN_TEST_S3_ENDPOINT). The S3 half fails, never skips, when the server is
//! missing.

use std::sync::Arc;

use bytes::Bytes;
use vinscan_storage::{LocalStore, MemoryStore, ObjectStore, ObjectVersion, StorageErrorKind};

/// Reads of the version a job names: the current one by its ETag, never the bytes of an
/// overwrite under an older tag (also when the overwrite has the same size), an unknown
/// version id refused. Leaves the object holding "second version?".
async fn versioned_reads(s: &dyn ObjectStore, key: &str, first_etag: &str) {
    let h_etag = first_etag.to_owned();
    // a read of the version a job was told about
    let first = ObjectVersion::ETag(h_etag.clone());
    let o = s.get(key, 1 << 20, Some(&first)).await.expect("get by etag");
    assert_eq!(
        (&o.bytes[..], o.meta.etag.as_str()),
        (&b"first version"[..], h_etag.as_str())
    );

    // overwrite: last writer wins, and the etag changes
    s.put(key, Bytes::from_static(b"second version!"), "image/jpeg")
        .await
        .expect("overwrite");
    assert_eq!(
        &s.get(key, 1 << 20, None).await.expect("get").bytes[..],
        b"second version!"
    );
    let second = s.head(key).await.expect("head").etag;
    assert_ne!(second, h_etag);
    // the old version is gone: never the new bytes under the old ETag
    assert_eq!(
        s.get(key, 1 << 20, Some(&first))
            .await
            .expect_err("superseded")
            .kind,
        StorageErrorKind::Superseded
    );
    // an overwrite with the same size, at once: the version still changes
    s.put(key, Bytes::from_static(b"second version?"), "image/jpeg")
        .await
        .expect("same-size overwrite");
    assert_eq!(
        s.get(key, 1 << 20, Some(&ObjectVersion::ETag(second.clone())))
            .await
            .expect_err("superseded by a same-size write")
            .kind,
        StorageErrorKind::Superseded
    );
    let second = s.head(key).await.expect("head").etag;
    let now = ObjectVersion::ETag(second);
    assert_eq!(
        &s.get(key, 1 << 20, Some(&now)).await.expect("current etag").bytes[..],
        b"second version?"
    );
    // a version id the store does not have (none of these stores keeps this one)
    let unknown = ObjectVersion::VersionId("3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY".into());
    assert_eq!(
        s.get(key, 1 << 20, Some(&unknown))
            .await
            .expect_err("no such version")
            .kind,
        StorageErrorKind::Superseded
    );
    // a missing key stays NotFound, whatever version is asked for
    assert_eq!(
        s.get("nope.jpg", 10, Some(&now)).await.expect_err("missing").kind,
        StorageErrorKind::NotFound
    );
}

async fn suite(store: Arc<dyn ObjectStore>) {
    let s = store.as_ref();
    // missing objects
    assert_eq!(
        s.head("nope.jpg").await.expect_err("missing").kind,
        StorageErrorKind::NotFound
    );
    assert_eq!(
        s.get("nope.jpg", 10, None).await.expect_err("missing").kind,
        StorageErrorKind::NotFound
    );

    // round trip, including a Vietnamese key with spaces
    let key = "scans/hoá đơn 01.jpg";
    s.put(key, Bytes::from_static(b"first version"), "image/jpeg")
        .await
        .expect("put");
    let o = s.get(key, 1 << 20, None).await.expect("get");
    assert_eq!(&o.bytes[..], b"first version");
    assert_eq!(o.meta.size, 13);
    let h = s.head(key).await.expect("head");
    assert_eq!(h.size, 13);
    assert!(!h.etag.is_empty());

    versioned_reads(s, key, &h.etag).await;

    // size limit refused before download
    assert_eq!(
        s.get(key, 5, None).await.expect_err("too large").kind,
        StorageErrorKind::TooLarge
    );

    // listing: prefix filtering, sorted, complete across pages
    for i in 0..23 {
        s.put(
            &format!("list/p/{i:03}.json"),
            Bytes::from(format!("{{\"i\":{i}}}")),
            "application/json",
        )
        .await
        .expect("put many");
    }
    s.put("list/other.json", Bytes::from_static(b"{}"), "application/json")
        .await
        .expect("put");
    let listed = s.list("list/p/").await.expect("list");
    assert_eq!(listed.len(), 23);
    assert!(listed.windows(2).all(|w| w[0].key < w[1].key));
    assert_eq!(listed[0].key, "list/p/000.json");
    assert_eq!(s.list("list/").await.expect("list").len(), 24);
    assert!(s.list("absent/").await.expect("empty list").is_empty());

    // keys that could escape the root are refused
    for bad in ["../escape", "/abs", "a/../../b", "a//b"] {
        assert_eq!(
            s.put(bad, Bytes::new(), "x").await.expect_err(bad).kind,
            StorageErrorKind::InvalidKey
        );
    }

    // delete, and deleting again is fine
    s.delete(key).await.expect("delete");
    s.delete(key).await.expect("delete again");
    assert_eq!(
        s.head(key).await.expect_err("deleted").kind,
        StorageErrorKind::NotFound
    );
}

#[tokio::test]
async fn local_store_conforms() {
    let dir = tempfile::tempdir().expect("tmp");
    suite(Arc::new(LocalStore::new(dir.path()))).await;
    // no temporary files are left behind
    let leftovers: Vec<_> = walk(dir.path())
        .into_iter()
        .filter(|p| p.contains(".vinscan-tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[tokio::test]
async fn memory_store_conforms() {
    suite(Arc::new(MemoryStore::new("conformance"))).await;
}

/// The in-memory store is a versioned bucket: a version id reads that version after overwrites.
#[tokio::test]
async fn memory_store_keeps_versions() {
    let s = MemoryStore::new("versions");
    s.put("a.jpg", Bytes::from_static(b"one"), "image/jpeg")
        .await
        .expect("put");
    let v1 = ObjectVersion::VersionId(s.version_id("a.jpg").expect("version"));
    s.put("a.jpg", Bytes::from_static(b"two"), "image/jpeg")
        .await
        .expect("put");
    assert_eq!(
        &s.get("a.jpg", 10, Some(&v1)).await.expect("v1").bytes[..],
        b"one"
    );
    assert_eq!(&s.get("a.jpg", 10, None).await.expect("latest").bytes[..], b"two");
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).expect("read dir").flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p.display().to_string());
        }
    }
    out
}

/// The S3 half: only where the backend is built (the `s3` feature, on by default).
#[cfg(feature = "s3")]
mod s3 {
    use std::sync::atomic::{AtomicU32, Ordering};

    use vinscan_storage::{S3Client, S3Config, S3Store};

    use super::*;

    /// The S3 server `ops/test.sh` starts. A missing server fails the test: a service test
    /// never passes without its service.
    fn s3_config() -> S3Config {
        let endpoint = std::env::var("VINSCAN_TEST_S3_ENDPOINT").unwrap_or_else(|_| {
            panic!("VINSCAN_TEST_S3_ENDPOINT is unset: run the tests through ops/test.sh, which starts the S3 server")
        });
        let mut c = S3Config::from_env();
        c.endpoint = Some(endpoint);
        c.path_style = true;
        c
    }

    static BUCKETS: AtomicU32 = AtomicU32::new(0);

    fn bucket_name() -> String {
        format!(
            "conf-{}-{}",
            std::process::id(),
            BUCKETS.fetch_add(1, Ordering::Relaxed)
        )
    }

    #[tokio::test]
    async fn s3_store_conforms() {
        // two buckets through one client, as the daemon reads them
        let client = S3Client::new(&s3_config()).expect("client");
        let (a, b) = (client.bucket(&bucket_name()), client.bucket(&bucket_name()));
        a.create_bucket().await.expect("create bucket");
        b.create_bucket().await.expect("create bucket");
        suite(Arc::new(a)).await;
        suite(Arc::new(b)).await;
    }

    #[tokio::test]
    async fn s3_errors_have_kinds() {
        let config = s3_config();
        let missing = S3Store::new(&config, "no-such-bucket-vinscan").expect("client");
        assert_eq!(
            missing.head("a").await.expect_err("no bucket").kind,
            StorageErrorKind::NotFound
        );

        let mut wrong = config.clone();
        wrong.secret_access_key = Some("wrong-secret".into());
        let denied = S3Store::new(&wrong, &bucket_name()).expect("client");
        assert_eq!(
            denied.create_bucket().await.expect_err("bad signature").kind,
            StorageErrorKind::Denied
        );

        let mut down = config.clone();
        down.endpoint = Some("http://127.0.0.1:9".into());
        let unreachable = S3Store::new(&down, &bucket_name()).expect("client");
        assert_eq!(
            unreachable.head("a").await.expect_err("unreachable").kind,
            StorageErrorKind::Transient
        );
    }
}
