//! Object storage behind one trait, [`ObjectStore`], with a local-directory backend and an
//! S3-compatible backend; both pass the same conformance suite (`tests/conformance.rs`).
//! The S3 backend (the AWS SDK, and aws-lc's C build under it) is the `s3` feature, on by
//! default; without it [`open_location`] refuses `s3://` locations with a clear error.
//!
//! Keys are `/`-separated, relative to the store's root (a directory, or a bucket). Keys that
//! could escape the root (`..`, absolute, NUL, empty segments) are refused by every backend.
//!
//! Architecture invariant: this is the only crate that names the AWS SDK; it knows nothing of
//! documents, models or pipelines.

mod error;
mod local;
mod location;
#[cfg(feature = "testsuite")]
mod memory;
#[cfg(feature = "s3")]
mod s3;
mod s3_config;
mod uri;

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

pub use error::{StorageError, StorageErrorKind};
pub use local::LocalStore;
pub use location::{Location, open_location};
#[cfg(feature = "testsuite")]
pub use memory::{Fault, MemoryBuckets, MemoryStore, Op};
#[cfg(feature = "s3")]
pub use s3::{S3Client, S3Store};
pub use s3_config::S3Config;
pub use uri::{S3Uri, S3UriError};

/// Size and version of a stored object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    pub key: String,
    pub size: u64,
    /// Entity tag (quotes removed): the MD5 for simple S3 uploads, a content hash for local files;
    /// it changes whenever the bytes do.
    pub etag: String,
}

/// Which version of an object a reader wants: the one it was told about, not whatever was
/// written since.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectVersion {
    /// An S3 version id (`x-amz-version-id`, a versioned bucket's `versionId`): that exact
    /// version, even after the key was overwritten.
    VersionId(String),
    /// An entity tag (quotes removed): the object only while it still has this content
    /// (`If-Match`); once overwritten the read fails with [`StorageErrorKind::Superseded`].
    #[serde(rename = "etag")]
    ETag(String),
}

impl ObjectVersion {
    /// The version id or the ETag itself.
    pub fn as_str(&self) -> &str {
        match self {
            Self::VersionId(v) | Self::ETag(v) => v,
        }
    }
}

/// An object's bytes and metadata.
#[derive(Debug, Clone)]
pub struct Object {
    pub meta: ObjectMeta,
    pub bytes: Bytes,
}

#[async_trait]
pub trait ObjectStore: Send + Sync + std::fmt::Debug {
    /// `s3://bucket` or `file:///dir`: how the store is named in logs and provenance.
    fn uri(&self) -> String;
    /// Size and etag, or `NotFound`.
    async fn head(&self, key: &str) -> Result<ObjectMeta, StorageError>;
    /// The object, refused with `TooLarge` before download when it exceeds `max_bytes`. With a
    /// `version`, exactly that version: a version the store no longer has (the key was
    /// overwritten since the ETag was taken, the version id is unknown, or the store keeps no
    /// versions) fails with `Superseded`, never with other bytes.
    async fn get(
        &self,
        key: &str,
        max_bytes: u64,
        version: Option<&ObjectVersion>,
    ) -> Result<Object, StorageError>;
    /// Writes (or overwrites) an object whole: readers see the old or the new bytes, never a mix.
    async fn put(&self, key: &str, bytes: Bytes, content_type: &str) -> Result<(), StorageError>;
    /// Every object under `prefix`, sorted by key.
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StorageError>;
    /// Removes an object; removing a missing object succeeds.
    async fn delete(&self, key: &str) -> Result<(), StorageError>;
    /// Whether this store can hold `key` ([`check_key`]'s rules; a local directory on Unix also
    /// takes backslashes): what a caller checks before doing work whose result goes there.
    fn check_key(&self, key: &str) -> Result<(), StorageError> {
        check_key(key)
    }
}

/// The stores of one service by bucket name: one client (connections, credentials) shared by
/// every bucket a job names, so naming many buckets costs nothing per bucket.
pub trait BucketStores: Send + Sync {
    /// The store for `bucket`. Cheap; nothing is requested until the store is used.
    fn bucket(&self, bucket: &str) -> Arc<dyn ObjectStore>;
}

/// Refuses keys that could escape the store's root or that stores treat differently: empty,
/// over 1024 bytes (S3's limit), absolute, NUL, a backslash (a separator to some S3 clients and
/// on Windows), or an empty, `.` or `..` segment.
pub fn check_key(key: &str) -> Result<(), StorageError> {
    check_key_with(key, false)
}

/// [`check_key`] with the backslash allowed: on Unix it is an ordinary character of a file
/// name, and a local directory must take every name its files have.
pub(crate) fn check_key_with(key: &str, allow_backslash: bool) -> Result<(), StorageError> {
    let bad = |why: &str| {
        Err(StorageError::new(
            StorageErrorKind::InvalidKey,
            format!("key {key:?}: {why}"),
        ))
    };
    if key.is_empty() {
        return bad("empty");
    }
    if key.len() > 1024 {
        return bad("longer than 1024 bytes");
    }
    if key.starts_with('/') {
        return bad("absolute");
    }
    if key.contains('\0') {
        return bad("contains NUL");
    }
    if key.contains('\\') && !allow_backslash {
        return bad("contains a backslash");
    }
    if key.split('/').any(|s| s.is_empty() || s == "." || s == "..") {
        return bad("has an empty, '.' or '..' segment");
    }
    Ok(())
}

/// Joins a prefix and a relative key with one `/`.
pub fn join_key(prefix: &str, rest: &str) -> String {
    let prefix = prefix.trim_end_matches('/');
    if prefix.is_empty() {
        rest.to_owned()
    } else {
        format!("{prefix}/{rest}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        for ok in ["a", "a/b.json", "hoá đơn/ảnh 1.jpg", "x/.hidden"] {
            assert!(check_key(ok).is_ok(), "{ok}");
        }
        for bad in ["", "/a", "a/../b", "..", "a//b", "a/", "a\\b", "a\0b", "./a"] {
            assert!(check_key(bad).is_err(), "{bad:?}");
        }
        assert_eq!(join_key("out/", "a.json"), "out/a.json");
        assert_eq!(join_key("", "a.json"), "a.json");
    }
}
