//! One source object as a job names it, and its identity: what makes two jobs the same work.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use vinscan_storage::ObjectVersion;

/// One object in a store, and the version of it the job is about (from the S3 event or the job
/// message); without one, the daemon reads the latest and records its ETag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRef {
    pub bucket: String,
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<ObjectVersion>,
}

impl ObjectRef {
    /// `s3://bucket/key` (the key as is, not encoded).
    pub fn uri(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.key)
    }

    /// Hex sha256 of everything that identifies the output of this object through `pipeline`:
    /// the pipeline, bucket, key and version (the version id or ETag; empty when unknown).
    pub fn identity(&self, pipeline: &str) -> String {
        let mut h = Sha256::new();
        for part in [
            pipeline,
            &self.bucket,
            &self.key,
            self.version.as_ref().map_or("", ObjectVersion::as_str),
        ] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
        hex::encode(h.finalize())
    }
}
