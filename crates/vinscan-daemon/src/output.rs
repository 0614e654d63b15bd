//! The output object of one job: every page record of every source, in order (a page
//! pipeline), or the one record of the document its sources make (a document pipeline), with
//! where each source came from and which version of it was read.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use vinscan_core::{DocumentRecord, PageRecord};

/// One source of a job as read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceSummary {
    /// `s3://bucket/key`.
    pub uri: String,
    /// The version read: the one the message named, else the object's ETag at the read.
    pub version: String,
    /// Hex sha256 of the bytes read.
    pub sha256: String,
    pub pages: u32,
}

/// The JSON written to `<output_prefix>/<pipeline>/<id>/<first source name>.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobOutput {
    pub job_id: String,
    pub pipeline: String,
    /// The `$id` of the schema every page's `data` conforms to.
    pub schema: String,
    pub sources: Vec<SourceSummary>,
    /// A page pipeline's records, one per page of every source in order (absent for a
    /// document pipeline).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pages: Vec<PageRecord>,
    /// A document pipeline's one record for all the job's sources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub document: Option<DocumentRecord>,
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub metadata: Value,
    /// RFC 3339, milliseconds, UTC.
    pub written_at: String,
}

/// Now, as every record of the daemon writes time: RFC 3339 with milliseconds, UTC.
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
