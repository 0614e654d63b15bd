//! Kafka payloads: vinscan's own job messages (`schemas/messages/job.schema.json`) and the S3
//! event notifications that reach Kafka from real integrations:
//! - the AWS record format (`{"Records": [...]}`, what S3 → SQS/SNS → Kafka bridges forward;
//!   AWS S3 user guide, "Event message structure"), also inside MinIO's Kafka-target envelope
//!   (`{"EventName", "Key", "Records"}`: MinIO publishes the same records with its own
//!   `eventSource` "minio:s3");
//! - Amazon EventBridge's S3 events (`{"source": "aws.s3", "detail-type": "Object Created",
//!   "detail": {"bucket": {"name"}, "object": {"key", "etag", "version-id", "sequencer"}}}`;
//!   AWS S3 user guide, "EventBridge event message structure"), forwarded by an EventBridge →
//!   Kafka connector or pipe.
//!
//! Only object creations become jobs; deletions, restores, tag changes and `s3:TestEvent`
//! messages are acknowledged without a job. Anything else is poison, with a reason.

use percent_encoding::percent_decode_str;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use vinscan_storage::{ObjectVersion, S3Uri};

use crate::object::ObjectRef;
use crate::routing::Routes;
use crate::wire::{JobMessage, SourceSpec};

/// Largest payload accepted; larger ones are poison.
pub const MAX_PAYLOAD_BYTES: usize = 256 * 1024;
/// Most source objects in one job (e.g. the pages of one document).
pub const MAX_SOURCES: usize = 64;

/// A unit of work: one or more source objects through one pipeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    pub job_id: String,
    pub pipeline: String,
    pub sources: Vec<ObjectRef>,
    /// Where the output goes.
    pub output_prefix: S3Uri,
    /// Carried through to the result event untouched.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub metadata: Value,
}

/// Why a payload cannot become a job. Poison is dead-lettered with this reason, never retried.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct Poison {
    pub reason: String,
}

fn poison<T>(reason: impl Into<String>) -> Result<T, Poison> {
    Err(Poison {
        reason: reason.into(),
    })
}

/// Turns a payload into jobs. S3 events for objects that were not created (deletions, test
/// events) yield no job: they are consumed and acknowledged, not dead-lettered.
pub fn classify(payload: &[u8], routes: &Routes) -> Result<Vec<Job>, Poison> {
    if payload.len() > MAX_PAYLOAD_BYTES {
        return poison(format!(
            "payload of {} bytes exceeds {MAX_PAYLOAD_BYTES}",
            payload.len()
        ));
    }
    let value: Value = match serde_json::from_slice(payload) {
        Ok(v) => v,
        Err(e) => return poison(format!("not JSON: {e}")),
    };
    let Some(obj) = value.as_object() else {
        return poison("not a JSON object");
    };
    if obj.contains_key("Records")
        || obj.contains_key("Event") && obj.get("Event") == Some(&Value::from("s3:TestEvent"))
    {
        return s3_event(&value, routes);
    }
    if obj.get("source") == Some(&Value::from("aws.s3")) && obj.contains_key("detail-type") {
        return eventbridge_event(&value, routes);
    }
    if obj.contains_key("job_id") {
        return job_message(value, routes).map(|j| vec![j]);
    }
    poison(
        "neither a vinscan job (no \"job_id\") nor an S3 event notification (no \"Records\", \
         and no EventBridge \"source\": \"aws.s3\" with a \"detail-type\")",
    )
}

/// A job message's source as an object reference: a key is required, and a version id wins over
/// an ETag when both are given (it names the version exactly).
fn source_object(spec: &SourceSpec) -> Result<ObjectRef, String> {
    let (uri, version) = match spec {
        SourceSpec::Uri(uri) => (uri, None),
        SourceSpec::Versioned(v) => {
            let version = match (&v.version_id, &v.etag) {
                (Some(id), _) if !id.is_empty() => Some(ObjectVersion::VersionId(id.clone())),
                (_, Some(etag)) if !etag.is_empty() => {
                    Some(ObjectVersion::ETag(etag.trim_matches('"').to_owned()))
                }
                _ => None,
            };
            (&v.uri, version)
        }
    };
    if uri.key().is_empty() {
        return Err(format!("source {uri} names a bucket but no object key"));
    }
    // the key is read as written: one no store can hold (`a//b`, `a/`, `..`) is refused here
    vinscan_storage::check_key(uri.key()).map_err(|e| format!("source {uri}: {e}"))?;
    Ok(ObjectRef {
        bucket: uri.bucket().to_owned(),
        key: uri.key().to_owned(),
        version,
    })
}

fn valid_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 128 && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c))
}

fn job_message(value: Value, routes: &Routes) -> Result<Job, Poison> {
    let m: JobMessage = match serde_json::from_value(value) {
        Ok(m) => m,
        Err(e) => return poison(format!("invalid job message: {e}")),
    };
    if !valid_id(&m.job_id) {
        return poison(format!(
            "job_id {:?} must be 1-128 characters of [A-Za-z0-9-_.:]",
            m.job_id
        ));
    }
    if !routes.knows_pipeline(&m.pipeline) {
        return poison(format!("unknown pipeline {:?}", m.pipeline));
    }
    if m.sources.is_empty() || m.sources.len() > MAX_SOURCES {
        return poison(format!(
            "a job needs 1 to {MAX_SOURCES} sources, got {}",
            m.sources.len()
        ));
    }
    let sources = match m.sources.iter().map(source_object).collect::<Result<Vec<_>, _>>() {
        Ok(s) => s,
        Err(e) => return poison(e),
    };
    let output_prefix = m.output_prefix.unwrap_or_else(|| routes.default_output().clone());
    if !(m.metadata.is_null() || m.metadata.is_object()) {
        return poison("metadata must be a JSON object");
    }
    if serde_json::to_vec(&m.metadata).map_or(0, |v| v.len()) > 16 * 1024 {
        return poison("metadata larger than 16 KiB");
    }
    Ok(Job {
        job_id: m.job_id,
        pipeline: m.pipeline,
        sources,
        output_prefix,
        metadata: m.metadata,
    })
}

/// S3 keys in event notifications are URL-encoded with `+` for spaces.
pub fn decode_event_key(raw: &str) -> Result<String, String> {
    let plus_as_space = raw.replace('+', " ");
    percent_decode_str(&plus_as_space)
        .decode_utf8()
        .map(|k| k.into_owned())
        .map_err(|_| format!("object key {raw:?} is not valid UTF-8 once decoded"))
}

/// The parts of an object-created notification that name the object, as written in the event
/// (the key still URL-encoded).
struct CreatedObject<'a> {
    bucket: &'a str,
    raw_key: &'a str,
    version_id: Option<String>,
    etag: Option<String>,
    sequencer: &'a str,
}

/// One job for a created object. The job id is the object's identity (bucket, key, version,
/// pipeline) plus the event's sequencer, so the same upload gives the same id whichever format
/// announced it, and a redelivered event is recognised as the same job.
fn created_object_job(what: &str, o: CreatedObject<'_>, routes: &Routes) -> Result<Job, Poison> {
    let key = match decode_event_key(o.raw_key) {
        Ok(k) if !k.is_empty() && !o.bucket.is_empty() => k,
        Ok(_) => return poison(format!("{what}: empty bucket or key")),
        Err(e) => return poison(format!("{what}: {e}")),
    };
    // the event's exact version: its version id in a versioned bucket, else its ETag
    let version = o
        .version_id
        .map(ObjectVersion::VersionId)
        .or_else(|| o.etag.map(ObjectVersion::ETag));
    let Some(route) = routes.route(o.bucket, &key) else {
        return poison(format!("{what}: no route for s3://{}/{key}", o.bucket));
    };
    let object = ObjectRef {
        bucket: o.bucket.to_owned(),
        key,
        version,
    };
    let job_id = format!("s3-{}", &object.identity(&route.pipeline)[..24]);
    let sequencer = sequencer(o.sequencer);
    let job_id = if sequencer.is_empty() {
        job_id
    } else {
        format!("{job_id}-{sequencer}")
    };
    Ok(Job {
        job_id,
        pipeline: route.pipeline.clone(),
        sources: vec![object],
        output_prefix: route.output_prefix.clone(),
        metadata: Value::Null,
    })
}

/// Whether a record's `eventName` announces new object content: AWS's `ObjectCreated:Put`,
/// `Post`, `Copy` and `CompleteMultipartUpload` (with or without the `s3:` prefix). MinIO also
/// sends `ObjectCreated:PutTagging`, `DeleteTagging`, `PutRetention` and `PutLegalHold`,
/// which change no byte of the object: they are not jobs.
fn is_creation(event_name: &str) -> bool {
    matches!(
        event_name.trim_start_matches("s3:"),
        "ObjectCreated:Put"
            | "ObjectCreated:Post"
            | "ObjectCreated:Copy"
            | "ObjectCreated:CompleteMultipartUpload"
    )
}

/// An event's sequencer in one spelling: S3 writes the same hex value with and without
/// leading zeros and in either case, so it is upper-cased and stripped of leading zeros.
/// Anything but 1-32 hex digits is left out of the job id.
fn sequencer(raw: &str) -> String {
    let s = raw.trim_start_matches('0').to_ascii_uppercase();
    if (1..=32).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        s
    } else {
        String::new()
    }
}

/// A non-empty string field at a JSON Pointer, without the quotes S3 puts around ETags.
fn text_at(value: &Value, pointer: &str) -> Option<String> {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .filter(|v| !v.is_empty())
        .map(|v| v.trim_matches('"').to_owned())
}

fn s3_event(value: &Value, routes: &Routes) -> Result<Vec<Job>, Poison> {
    let Some(records) = value.get("Records").and_then(Value::as_array) else {
        // s3:TestEvent sent when notifications are configured
        return Ok(Vec::new());
    };
    let mut jobs = Vec::new();
    for (i, r) in records.iter().enumerate() {
        let name = r.get("eventName").and_then(Value::as_str).unwrap_or_default();
        if !is_creation(name) {
            continue;
        }
        let bucket = r.pointer("/s3/bucket/name").and_then(Value::as_str);
        let raw_key = r.pointer("/s3/object/key").and_then(Value::as_str);
        let (Some(bucket), Some(raw_key)) = (bucket, raw_key) else {
            return poison(format!("record {i}: missing s3.bucket.name or s3.object.key"));
        };
        let object = CreatedObject {
            bucket,
            raw_key,
            version_id: text_at(r, "/s3/object/versionId"),
            etag: text_at(r, "/s3/object/eTag"),
            sequencer: r
                .pointer("/s3/object/sequencer")
                .and_then(Value::as_str)
                .unwrap_or_default(),
        };
        jobs.push(created_object_job(&format!("record {i}"), object, routes)?);
    }
    Ok(jobs)
}

/// An EventBridge event from S3: `Object Created` is one job; every other `detail-type`
/// (`Object Deleted`, `Object Restore Completed`, `Object Tags Added`, …) is acknowledged
/// without one. The key is URL-encoded as in the record format.
fn eventbridge_event(value: &Value, routes: &Routes) -> Result<Vec<Job>, Poison> {
    if value.get("detail-type").and_then(Value::as_str) != Some("Object Created") {
        return Ok(Vec::new());
    }
    let bucket = value.pointer("/detail/bucket/name").and_then(Value::as_str);
    let raw_key = value.pointer("/detail/object/key").and_then(Value::as_str);
    let (Some(bucket), Some(raw_key)) = (bucket, raw_key) else {
        return poison("EventBridge event: missing detail.bucket.name or detail.object.key");
    };
    let object = CreatedObject {
        bucket,
        raw_key,
        version_id: text_at(value, "/detail/object/version-id"),
        etag: text_at(value, "/detail/object/etag"),
        sequencer: value
            .pointer("/detail/object/sequencer")
            .and_then(Value::as_str)
            .unwrap_or_default(),
    };
    created_object_job("EventBridge event", object, routes).map(|j| vec![j])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::Route;
    use serde_json::json;

    fn routes() -> Routes {
        Routes::new(
            vec![
                Route {
                    bucket: "uploads".into(),
                    prefix: "invoices/".into(),
                    pipeline: "invoice".into(),
                    output_prefix: "s3://results/invoices".parse().expect("uri"),
                },
                Route {
                    bucket: "uploads".into(),
                    prefix: "".into(),
                    pipeline: "receipt".into(),
                    output_prefix: "s3://results/other".parse().expect("uri"),
                },
            ],
            ["invoice", "receipt", "id-card"],
            "s3://results/jobs".parse().expect("uri"),
        )
        .expect("routes")
    }

    fn check(payload: &str, expected: Result<usize, &str>) -> Vec<Job> {
        match (classify(payload.as_bytes(), &routes()), expected) {
            (Ok(jobs), Ok(n)) => {
                assert_eq!(jobs.len(), n, "{payload}");
                jobs
            }
            (Err(p), Err(fragment)) => {
                assert!(p.reason.contains(fragment), "{payload}: {}", p.reason);
                Vec::new()
            }
            (got, want) => panic!("{payload}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn job_messages() {
        let j = check(
            r#"{"job_id":"j-1","pipeline":"id-card","sources":["s3://src/a/front.jpg","s3://src/a/back.jpg"],"metadata":{"customer":7}}"#,
            Ok(1),
        );
        assert_eq!(j[0].sources[1].key, "a/back.jpg");
        assert_eq!(j[0].output_prefix.to_string(), "s3://results/jobs");
        assert_eq!(j[0].sources[0].version, None);
        assert_eq!(j[0].metadata, json!({"customer": 7}));
        check(
            r#"{"job_id":"j-1","pipeline":"nope","sources":["s3://src/a.jpg"]}"#,
            Err("unknown pipeline"),
        );
        check(
            r#"{"job_id":"j 1","pipeline":"receipt","sources":["s3://src/a.jpg"]}"#,
            Err("job_id"),
        );
        check(
            r#"{"job_id":"j","pipeline":"receipt","sources":[]}"#,
            Err("1 to 64 sources"),
        );
        check(
            r#"{"job_id":"j","pipeline":"receipt","sources":["/etc/passwd"]}"#,
            Err("not an s3://"),
        );
        check(
            r#"{"job_id":"j","pipeline":"receipt","sources":["s3://src/a.jpg"],"extra":1}"#,
            Err("unknown field"),
        );
        check(
            r#"{"job_id":"j","pipeline":"receipt","sources":["s3://src/a.jpg"],"output_prefix":"file:///tmp"}"#,
            Err("not an s3://"),
        );
        check(
            r#"{"job_id":"j","pipeline":"receipt","sources":["s3://src/a.jpg"],"output_prefix":"s3://Results/x"}"#,
            Err("lowercase"),
        );
        check(
            r#"{"job_id":"j","pipeline":"receipt","sources":["s3://src"]}"#,
            Err("no object key"),
        );
        check(
            r#"{"job_id":"j","pipeline":"receipt","sources":["s3://src//x.png"]}"#,
            Err("absolute"),
        );
        check(
            r#"{"job_id":"j","pipeline":"receipt","sources":["s3://src/a.jpg"],"metadata":[1]}"#,
            Err("metadata must be a JSON object"),
        );
        check(
            r#"{"job_id":"j","pipeline":"receipt","sources":[{"uri":"s3://src/a.jpg","versoin_id":"v"}]}"#,
            Err("unknown field"),
        );
        // a source pinned to a version: the version id wins over the ETag
        let j = check(
            r#"{"job_id":"j","pipeline":"receipt","sources":[{"uri":"s3://src/a.jpg","etag":"\"e1\""},{"uri":"s3://src/b.jpg","version_id":"v7","etag":"e2"}]}"#,
            Ok(1),
        );
        assert_eq!(j[0].sources[0].version, Some(ObjectVersion::ETag("e1".into())));
        assert_eq!(
            j[0].sources[1].version,
            Some(ObjectVersion::VersionId("v7".into()))
        );
    }

    #[test]
    fn s3_events_one_job_per_created_record_with_decoded_keys() {
        let event = json!({"Records": [
            {"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": "uploads"},
                "object": {"key": "invoices/ho%C3%A1+%C4%91%C6%A1n+01.jpg", "eTag": "abc", "sequencer": "0A1"}}},
            {"eventName": "ObjectRemoved:Delete", "s3": {"bucket": {"name": "uploads"}, "object": {"key": "x.jpg"}}},
            {"eventName": "s3:ObjectCreated:CompleteMultipartUpload", "s3": {"bucket": {"name": "uploads"},
                "object": {"key": "scan%2B1.png", "versionId": "v2"}}}
        ]});
        let jobs = check(&event.to_string(), Ok(2));
        assert_eq!(jobs[0].sources[0].key, "invoices/hoá đơn 01.jpg");
        assert_eq!(jobs[0].pipeline, "invoice");
        assert_eq!(
            jobs[0].sources[0].version,
            Some(ObjectVersion::ETag("abc".into()))
        );
        assert_eq!(jobs[1].sources[0].key, "scan+1.png");
        assert_eq!(jobs[1].pipeline, "receipt");
        assert_eq!(
            jobs[1].sources[0].version,
            Some(ObjectVersion::VersionId("v2".into()))
        );
        // the same record always yields the same job id
        assert_eq!(check(&event.to_string(), Ok(2))[0].job_id, jobs[0].job_id);
    }

    /// Amazon EventBridge's `Object Created` event, as in the S3 user guide's example, with a
    /// URL-encoded key: one job, versioned by `version-id`, with the id the record format gives
    /// the same upload; other detail types are acknowledged without a job.
    #[test]
    fn eventbridge_object_created_is_a_job_and_other_detail_types_are_ignored() {
        let created = |detail_type: &str| {
            json!({
                "version": "0", "id": "17793124-05d4-b198-2fde-7ededc63b103",
                "detail-type": detail_type, "source": "aws.s3", "account": "111122223333",
                "time": "2026-11-12T00:00:00Z", "region": "ap-southeast-1",
                "resources": ["arn:aws:s3:::uploads"],
                "detail": {"version": "0", "bucket": {"name": "uploads"},
                    "object": {"key": "invoices/ho%C3%A1+%C4%91%C6%A1n.pdf", "size": 5,
                        "etag": "b1946ac92492d2347c6235b4d2611184",
                        "version-id": "IYV3p45BT0ac8hjHg1houSdS1a.Mro8e",
                        "sequencer": "617f08299329d189"},
                    "request-id": "N4N7GDK58NMKJ12R", "requester": "123456789012",
                    "reason": "PutObject"}
            })
            .to_string()
        };
        let jobs = check(&created("Object Created"), Ok(1));
        assert_eq!(jobs[0].pipeline, "invoice");
        assert_eq!(jobs[0].sources[0].key, "invoices/hoá đơn.pdf");
        assert_eq!(
            jobs[0].sources[0].version,
            Some(ObjectVersion::VersionId(
                "IYV3p45BT0ac8hjHg1houSdS1a.Mro8e".into()
            ))
        );
        assert!(
            jobs[0].job_id.ends_with("-617F08299329D189"),
            "{}",
            jobs[0].job_id
        );
        let record = json!({"Records": [{"eventName": "ObjectCreated:Put", "s3": {
            "bucket": {"name": "uploads"},
            "object": {"key": "invoices/ho%C3%A1+%C4%91%C6%A1n.pdf",
                "versionId": "IYV3p45BT0ac8hjHg1houSdS1a.Mro8e", "sequencer": "00617F08299329D189"}}}]});
        assert_eq!(check(&record.to_string(), Ok(1))[0].job_id, jobs[0].job_id);
        for other in ["Object Deleted", "Object Restore Completed", "Object Tags Added"] {
            check(&created(other), Ok(0));
        }
        check(
            r#"{"source":"aws.s3","detail-type":"Object Created","detail":{"bucket":{"name":"uploads"}}}"#,
            Err("detail.object.key"),
        );
        check(
            r#"{"source":"aws.s3","detail-type":"Object Created","detail":{"bucket":{"name":"elsewhere"},"object":{"key":"a.png"}}}"#,
            Err("no route"),
        );
    }

    /// MinIO's Kafka target wraps the AWS records in its own envelope (`EventName`, `Key`,
    /// `Records`; minio/minio issue 7665 shows one): a put is a job, a delete is ignored.
    #[test]
    fn minio_kafka_target_envelope() {
        let event = |name: &str| {
            json!({"EventName": name, "Key": "uploads/scans/biên+lai.png",
                "Records": [{"eventVersion": "2.0", "eventSource": "minio:s3", "awsRegion": "",
                    "eventTime": "2026-11-30T07:34:32.000Z", "eventName": name,
                    "userIdentity": {"principalId": "minio"},
                    "s3": {"s3SchemaVersion": "1.0", "configurationId": "Config",
                        "bucket": {"name": "uploads", "arn": "arn:aws:s3:::uploads"},
                        "object": {"key": "scans%2Fbi%C3%AAn+lai.png", "size": 1024,
                            "eTag": "\"d41d8cd98f00b204e9800998ecf8427e\"",
                            "contentType": "image/png", "sequencer": "187C0A1B2C3D4E5F"}}}]})
            .to_string()
        };
        let jobs = check(&event("s3:ObjectCreated:Put"), Ok(1));
        assert_eq!(jobs[0].sources[0].key, "scans/biên lai.png");
        assert_eq!(
            jobs[0].sources[0].version,
            Some(ObjectVersion::ETag("d41d8cd98f00b204e9800998ecf8427e".into()))
        );
        check(&event("s3:ObjectRemoved:Delete"), Ok(0));
        // MinIO's metadata-only "creations" change no byte of the object
        for name in [
            "s3:ObjectCreated:PutTagging",
            "s3:ObjectCreated:DeleteTagging",
            "s3:ObjectCreated:PutRetention",
            "s3:ObjectCreated:PutLegalHold",
        ] {
            check(&event(name), Ok(0));
        }
        for name in [
            "s3:ObjectCreated:Copy",
            "s3:ObjectCreated:CompleteMultipartUpload",
            "ObjectCreated:Post",
        ] {
            check(&event(name), Ok(1));
        }
    }

    #[test]
    fn sequencers_are_spelled_one_way_and_junk_is_left_out() {
        assert_eq!(sequencer("00617f08299329D189"), "617F08299329D189");
        assert_eq!(sequencer("0000"), "");
        assert_eq!(sequencer("12 34"), "");
        assert_eq!(sequencer(&"A".repeat(33)), "");
    }

    #[test]
    fn poison_payloads() {
        check("{not json", Err("not JSON"));
        check("[1,2]", Err("not a JSON object"));
        check(r#"{"hello":"world"}"#, Err("neither"));
        check(
            r#"{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"elsewhere"},"object":{"key":"a.jpg"}}}]}"#,
            Err("no route"),
        );
        check(
            r#"{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"uploads"}}}]}"#,
            Err("missing"),
        );
        check(
            r#"{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"uploads"},"object":{"key":"%FF%FE"}}}]}"#,
            Err("UTF-8"),
        );
        let big = format!("{{\"job_id\":\"{}\"}}", "x".repeat(MAX_PAYLOAD_BYTES));
        check(&big, Err("exceeds"));
        check(r#"{"Event":"s3:TestEvent","Bucket":"uploads"}"#, Ok(0));
        check(
            r#"{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"uploads"},"object":{"key":""}}}]}"#,
            Err("empty bucket or key"),
        );
    }

    proptest::proptest! {
        /// Fuzzing stand-in (stable toolchain, no cargo-fuzz): arbitrary bytes and mutations of
        /// valid messages never panic, and whatever they yield keeps the job invariants.
        #[test]
        fn classify_never_panics(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400),
            which in 0usize..3,
            at in 0usize..400,
            cut in proptest::prelude::any::<bool>(),
            byte in proptest::prelude::any::<u8>(),
        ) {
            let _ = classify(&bytes, &routes());
            let seeds = [
                r#"{"job_id":"j-1","pipeline":"id-card","sources":["s3://src/a/front.jpg"],"metadata":{"k":[1,2]}}"#,
                r#"{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"uploads"},"object":{"key":"invoices/a%20b.jpg","eTag":"e"}}}]}"#,
                r#"{"Event":"s3:TestEvent"}"#,
            ];
            let mut m = seeds[which].as_bytes().to_vec();
            let i = at % m.len();
            if cut { m.truncate(i) } else { m[i] = byte }
            if let Ok(jobs) = classify(&m, &routes()) {
                for j in jobs {
                    proptest::prop_assert!(!j.job_id.is_empty() && !j.sources.is_empty());
                    proptest::prop_assert!(j.output_prefix.to_string().starts_with("s3://"));
                    proptest::prop_assert!(j.sources.iter().all(|s| !s.bucket.is_empty() && !s.key.is_empty()));
                }
            }
        }
    }
}
