//! The wire types and their published schemas (`schemas/messages/*.schema.json`) agree: a
//! serialised sample of every shape validates, and the schema refuses what the type refuses.

use serde_json::{Value, json};
use vinscan_jobs::{
    DeadLetter, ErrorInfo, JobMessage, JobStatus, JobTimings, OriginalMessage, ResultEvent, ReviewVerdict,
    SourceSpec, VersionedSource,
};

fn schema(name: &str) -> jsonschema::Validator {
    let path = format!(
        "{}/../../schemas/messages/{name}.schema.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let document: Value = serde_json::from_str(&text).expect("schema JSON");
    jsonschema::draft202012::meta::validate(&document).expect("a valid 2020-12 schema");
    jsonschema::draft202012::new(&document).expect("schema compiles")
}

fn assert_valid(validator: &jsonschema::Validator, instance: &Value) {
    let errors: Vec<String> = validator.iter_errors(instance).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{instance}: {errors:?}");
}

#[test]
fn job_messages_match_their_schema() {
    let v = schema("job");
    let plain = JobMessage {
        job_id: "cccd-7731".into(),
        pipeline: "id-card".into(),
        sources: vec![
            SourceSpec::Uri("s3://uploads/cccd/7731-front.jpg".parse().expect("uri")),
            SourceSpec::Versioned(VersionedSource {
                uri: "s3://uploads/cccd/7731-back.jpg".parse().expect("uri"),
                version_id: Some("3HL4kqtJlcpXroDTDmJ".into()),
                etag: None,
            }),
            SourceSpec::Versioned(VersionedSource {
                uri: "s3://uploads/cccd/7731-extra.jpg".parse().expect("uri"),
                version_id: None,
                etag: Some("9b2cf535f27731c974343645a3985328".into()),
            }),
        ],
        output_prefix: Some("s3://results/cards".parse().expect("uri")),
        metadata: json!({"customer": "ACME"}),
    };
    let value = serde_json::to_value(&plain).expect("json");
    assert_valid(&v, &value);
    let back: JobMessage = serde_json::from_value(value).expect("round trip");
    assert_eq!(back, plain);
    // the README's example
    assert_valid(
        &v,
        &json!({"job_id": "cccd-7731", "pipeline": "id-card",
                "sources": ["s3://uploads/cccd/7731-front.jpg", "s3://uploads/cccd/7731-back.jpg"],
                "output_prefix": "s3://results/cards", "metadata": {"customer": "ACME"}}),
    );
    for bad in [
        json!({"job_id": "j", "pipeline": "p", "sources": ["/etc/passwd"]}),
        json!({"job_id": "j", "pipeline": "p", "sources": ["s3://Upper/x.jpg"]}),
        json!({"job_id": "j", "pipeline": "p", "sources": [{"uri": "s3://in/x.jpg", "extra": 1}]}),
        json!({"job_id": "j", "pipeline": "p", "sources": []}),
    ] {
        assert!(!v.is_valid(&bad), "schema accepts {bad}");
        assert!(serde_json::from_value::<JobMessage>(bad.clone()).is_err() || bad["sources"] == json!([]));
    }
}

fn result(status: JobStatus) -> ResultEvent {
    let ok = status == JobStatus::Ok;
    ResultEvent {
        job_id: "valid-01".into(),
        status,
        pipeline: "receipt".into(),
        output: ok.then(|| "s3://out/results/receipt/0123456789abcdef/r01.jpg.json".into()),
        pages: ok.then_some(2),
        review: ok.then_some(ReviewVerdict {
            needed: true,
            pages: 1,
        }),
        error: (!ok).then(|| ErrorInfo {
            kind: if status == JobStatus::Superseded {
                "superseded"
            } else {
                "not_found"
            }
            .into(),
            message: "s3://in/r01.jpg: no such key".into(),
        }),
        sources: vec!["s3://in/r01.jpg".into()],
        attempts: 1,
        timings_ms: ok.then_some(JobTimings {
            fetch_ms: 3,
            extract_ms: 900,
            write_ms: 4,
            total_ms: 907,
        }),
        metadata: json!({"n": 1}),
        finished_at: "2026-11-30T17:05:14.123Z".into(),
    }
}

#[test]
fn result_events_match_their_schema() {
    let v = schema("result");
    for status in [JobStatus::Ok, JobStatus::DeadLettered, JobStatus::Superseded] {
        let value = serde_json::to_value(result(status)).expect("json");
        assert_valid(&v, &value);
        assert_eq!(
            serde_json::from_value::<ResultEvent>(value).expect("round trip"),
            result(status)
        );
    }
    let mut no_output = serde_json::to_value(result(JobStatus::Ok)).expect("json");
    no_output.as_object_mut().expect("object").remove("output");
    assert!(!v.is_valid(&no_output), "an ok event must name its output");
}

#[test]
fn dead_letters_match_their_schema() {
    let v = schema("dead-letter");
    let binary: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
    for (job_id, payload, key) in [
        (
            Some("missing-1"),
            br#"{"job_id":"missing-1"}"#.to_vec(),
            Some(&b"missing-1"[..]),
        ),
        (None, binary, None),
        (
            None,
            "không phải JSON".as_bytes().to_vec(),
            Some(&[0xffu8, 0xfe][..]),
        ),
    ] {
        let record = DeadLetter {
            job_id: job_id.map(str::to_owned),
            error: ErrorInfo {
                kind: if job_id.is_some() { "not_found" } else { "poison" }.into(),
                message: "why".into(),
            },
            attempts: u32::from(job_id.is_some()),
            first_attempt_at: "2026-11-30T17:05:14.123Z".into(),
            failed_at: "2026-11-30T17:05:15.456Z".into(),
            original: OriginalMessage::new("jobs", 2, 41, Some(1_764_522_314_123), key, &payload),
        };
        let value = serde_json::to_value(&record).expect("json");
        assert_valid(&v, &value);
        assert_eq!(
            serde_json::from_value::<DeadLetter>(value).expect("round trip"),
            record
        );
    }
}
