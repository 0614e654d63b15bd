//! The daemon's wire formats as types: the job message it consumes, the result event and the
//! dead-letter record it produces. Each has a JSON Schema in `schemas/messages/`
//! (`job`, `result`, `dead-letter`), and a test validates a serialised sample against it.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use vinscan_storage::S3Uri;

/// vinscan's own job message (`schemas/messages/job.schema.json`): one or more source objects
/// through one pipeline. `enqueue` builds it; the daemon parses it with [`crate::classify`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobMessage {
    /// The caller's id, 1–128 characters of `[A-Za-z0-9._:-]`, echoed in every record.
    pub job_id: String,
    pub pipeline: String,
    /// The objects to read, in order (an ID card's front and back, a document's pages).
    pub sources: Vec<SourceSpec>,
    /// Where the output goes; the daemon's default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_prefix: Option<S3Uri>,
    /// Carried through to the result event untouched (at most 16 KiB serialised).
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub metadata: Value,
}

/// One source of a job message: an `s3://bucket/key` string (the latest version is read), or
/// an object naming the version to read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum SourceSpec {
    Uri(S3Uri),
    Versioned(VersionedSource),
}

// By hand rather than `untagged`: serde's untagged error ("did not match any variant") would
// hide why a source was refused (not s3://, an invalid bucket, an unknown field).
impl<'de> Deserialize<'de> for SourceSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        match Value::deserialize(d)? {
            Value::String(s) => s.parse().map(Self::Uri).map_err(D::Error::custom),
            v @ Value::Object(_) => serde_json::from_value(v)
                .map(Self::Versioned)
                .map_err(D::Error::custom),
            other => Err(D::Error::custom(format!(
                "a source is an s3:// string or {{\"uri\", \"version_id\"|\"etag\"}}, not {other}"
            ))),
        }
    }
}

/// A source pinned to one version: a version id (versioned buckets) or an ETag (`If-Match`).
/// When the object has changed since, the job ends `superseded`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VersionedSource {
    pub uri: S3Uri,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
}

/// How a job ended, as its result event says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// The output object is written; `output` names it.
    Ok,
    /// The job failed for good; its dead-letter record says why.
    DeadLettered,
    /// A source was overwritten (or its version is gone) before the job read it: no output, no
    /// dead letter; the newer version has its own job.
    Superseded,
}

/// An error's kind (the pipeline's `ErrorKind`, snake case, or `poison`) and message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorInfo {
    pub kind: String,
    pub message: String,
}

/// A job output's review verdict in its result event.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReviewVerdict {
    /// Some page record of the output needs review.
    pub needed: bool,
    /// How many page records need review.
    pub pages: u32,
}

/// Milliseconds spent in each stage of a job.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobTimings {
    pub fetch_ms: u64,
    pub extract_ms: u64,
    pub write_ms: u64,
    pub total_ms: u64,
}

/// The result event of one job on the results topic (`schemas/messages/result.schema.json`),
/// keyed by `job_id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResultEvent {
    pub job_id: String,
    pub status: JobStatus,
    pub pipeline: String,
    /// `s3://…` of the output object (status `ok`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// Pages extracted (status `ok`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pages: Option<u32>,
    /// Whether the output needs a person (status `ok`): the pipeline's review rules applied to
    /// every page record of the output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review: Option<ReviewVerdict>,
    /// Why the job failed (`dead_lettered`) or which source changed (`superseded`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorInfo>,
    /// The sources as `s3://bucket/key`.
    pub sources: Vec<String>,
    /// Attempts made, retries included.
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timings_ms: Option<JobTimings>,
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub metadata: Value,
    /// RFC 3339, milliseconds, UTC.
    pub finished_at: String,
}

/// The most payload bytes a dead-letter record carries: a record must stay well under the
/// broker's message limit (Kafka's `message.max.bytes`, 1 MB by default) whatever was consumed.
pub const MAX_ORIGINAL_PAYLOAD_BYTES: usize = 16 * 1024;
/// The most key bytes a dead-letter record carries.
pub const MAX_ORIGINAL_KEY_BYTES: usize = 1024;

/// A dead-letter record (`schemas/messages/dead-letter.schema.json`): a job that failed for
/// good, or a message that is not a job (`job_id` null, kind `poison`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeadLetter {
    pub job_id: Option<String>,
    pub error: ErrorInfo,
    pub attempts: u32,
    pub first_attempt_at: String,
    pub failed_at: String,
    pub original: OriginalMessage,
}

/// Where the failed message came from, and a bounded copy of it: the first
/// [`MAX_ORIGINAL_PAYLOAD_BYTES`] of the payload, with its whole length and sha256 so the
/// original can be found and checked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OriginalMessage {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub timestamp_ms: Option<i64>,
    pub key: Option<Excerpt>,
    pub payload: Excerpt,
    /// The whole payload's length in bytes.
    pub payload_bytes: u64,
    /// Hex sha256 of the whole payload.
    pub payload_sha256: String,
    /// Whether `payload` holds less than the whole payload.
    pub payload_truncated: bool,
}

/// Bytes as a record carries them: text when they are UTF-8, else hex.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Excerpt {
    Text(String),
    Hex { hex: String },
}

impl Excerpt {
    /// At most `max` bytes of `bytes`: the longest UTF-8 prefix when the kept part is text
    /// (a cut never splits a character), else the first `max` bytes as hex.
    pub fn bounded(bytes: &[u8], max: usize) -> Self {
        let kept = &bytes[..bytes.len().min(max)];
        match std::str::from_utf8(kept) {
            Ok(s) => Self::Text(s.to_owned()),
            // a character cut at the end is still text
            Err(e) if e.error_len().is_none() && bytes.len() > max => {
                Self::Text(String::from_utf8_lossy(&kept[..e.valid_up_to()]).into_owned())
            }
            Err(_) => Self::Hex {
                hex: hex::encode(kept),
            },
        }
    }
}

impl OriginalMessage {
    /// A bounded copy of a consumed message.
    pub fn new(
        topic: &str,
        partition: i32,
        offset: i64,
        timestamp_ms: Option<i64>,
        key: Option<&[u8]>,
        payload: &[u8],
    ) -> Self {
        Self {
            topic: topic.to_owned(),
            partition,
            offset,
            timestamp_ms,
            key: key.map(|k| Excerpt::bounded(k, MAX_ORIGINAL_KEY_BYTES)),
            payload: Excerpt::bounded(payload, MAX_ORIGINAL_PAYLOAD_BYTES),
            payload_bytes: payload.len() as u64,
            payload_sha256: hex::encode(Sha256::digest(payload)),
            payload_truncated: payload.len() > MAX_ORIGINAL_PAYLOAD_BYTES,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpts_are_bounded_text_or_hex() {
        assert_eq!(Excerpt::bounded(b"hello", 10), Excerpt::Text("hello".into()));
        assert_eq!(Excerpt::bounded(b"hello", 3), Excerpt::Text("hel".into()));
        // "đ" is two bytes: a cut in its middle keeps the text before it
        assert_eq!(Excerpt::bounded("ađb".as_bytes(), 2), Excerpt::Text("a".into()));
        assert_eq!(
            Excerpt::bounded(&[0xff, 0x00, 0x41], 2),
            Excerpt::Hex { hex: "ff00".into() }
        );
    }

    #[test]
    fn a_huge_binary_payload_gives_a_small_record() {
        let payload: Vec<u8> = (0..600_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let original = OriginalMessage::new("jobs", 3, 77, None, Some(b"k"), &payload);
        assert!(original.payload_truncated);
        assert_eq!(original.payload_bytes, 600_000);
        let record = DeadLetter {
            job_id: None,
            error: ErrorInfo {
                kind: "poison".into(),
                message: "not JSON".into(),
            },
            attempts: 0,
            first_attempt_at: "2026-11-30T00:00:00.000Z".into(),
            failed_at: "2026-11-30T00:00:00.000Z".into(),
            original,
        };
        let bytes = serde_json::to_vec(&record).expect("json");
        assert!(
            bytes.len() < 2 * MAX_ORIGINAL_PAYLOAD_BYTES + 1024,
            "{}",
            bytes.len()
        );
    }
}
