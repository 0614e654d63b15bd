//! Kafka message classification: any payload as a job message, an S3 event notification (AWS
//! records, MinIO's envelope, EventBridge) or poison. Whatever it yields keeps the job
//! invariants.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vinscan_jobs::routing::{Route, Routes};

fuzz_target!(|data: &[u8]| {
    let Ok(output) = "s3://results/jobs".parse() else {
        return;
    };
    let Ok(uploads) = "s3://results/uploads".parse() else {
        return;
    };
    let Ok(routes) = Routes::new(
        vec![Route {
            bucket: "uploads".into(),
            prefix: String::new(),
            pipeline: "receipt".into(),
            output_prefix: uploads,
        }],
        ["receipt", "invoice", "id-card"],
        output,
    ) else {
        return;
    };
    if let Ok(jobs) = vinscan_jobs::classify(data, &routes) {
        for job in jobs {
            assert!(!job.job_id.is_empty() && job.job_id.len() <= 200);
            assert!(!job.sources.is_empty());
            assert!(job.sources.iter().all(|s| !s.bucket.is_empty() && !s.key.is_empty()));
        }
    }
});
