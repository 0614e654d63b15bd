//! The 61 messages every daemon test starts from, and what each must become: 28 jobs, 2
//! two-source jobs, 10 S3 upload events with keys that need URL-encoding, 5 jobs on missing
//! objects, 5 corrupt scans, 4 oversized objects, 6 poison messages and a 600 KB binary one.

use bytes::Bytes;
use image::ImageFormat;
use serde_json::json;
use sha2::Digest;
use vinscan_jobs::ObjectRef;
use vinscan_jobs::keys::job_output_key;
use vinscan_kafka::{Publisher, admin};
use vinscan_storage::{ObjectStore, ObjectVersion, S3Store};

use crate::common;
use crate::fixture::{Fixture, event_key};

/// (key, payload) of a message to send.
type Message = (String, String);

impl Fixture {
    fn object(&self, key: &str, etag: &str) -> ObjectRef {
        ObjectRef {
            bucket: self.input.clone(),
            key: key.to_owned(),
            version: Some(ObjectVersion::ETag(etag.to_owned())),
        }
    }

    /// Puts an object in the input bucket; returns its key and ETag.
    async fn put(&self, key: String, bytes: Vec<u8>) -> (String, String) {
        let input = S3Store::new(&self.s3, &self.input).expect("client");
        input
            .put(&key, Bytes::from(bytes), "application/octet-stream")
            .await
            .expect("put");
        let etag = input.head(&key).await.expect("head").etag;
        (key, etag)
    }

    /// Buckets, topics and the messages.
    pub async fn populate(&mut self) {
        for bucket in [&self.input, &self.output] {
            S3Store::new(&self.s3, bucket)
                .expect("client")
                .create_bucket()
                .await
                .expect("bucket");
        }
        admin::create_topics(
            &self.settings(),
            &[
                (&self.jobs_topic, 4),
                (&self.results_topic, 1),
                (&self.dlq_topic, 1),
            ],
        )
        .await
        .expect("topics");
        let mut messages = Vec::new();
        self.valid_jobs(&mut messages).await;
        self.upload_events(&mut messages).await;
        self.bad_jobs(&mut messages).await;
        self.poison(&mut messages);
        assert_eq!(messages.len(), 60);
        self.send(messages).await;
    }

    /// 28 single-source jobs, some with their own output prefix, and 2 two-source jobs.
    async fn valid_jobs(&mut self, messages: &mut Vec<Message>) {
        for i in 0..28u32 {
            let (w, h) = [(320, 240), (240, 320), (448, 448), (500, 180)][i as usize % 4];
            let img = common::scan(w, h, i);
            let (ext, fmt) = if i % 2 == 0 {
                ("png", ImageFormat::Png)
            } else {
                ("jpg", ImageFormat::Jpeg)
            };
            let (key, etag) = self
                .put(format!("scans/r{i:02}.{ext}"), common::encode(&img, fmt))
                .await;
            let job_id = format!("valid-{i:02}");
            let mut m = json!({"job_id": job_id, "pipeline": "receipt", "sources": [format!("s3://{}/{key}", self.input)]});
            let prefix = if i % 7 == 3 {
                m["output_prefix"] = json!(format!("s3://{}/custom/batch-1/", self.output));
                "custom/batch-1"
            } else {
                "results"
            };
            if i % 5 == 0 {
                m["metadata"] = json!({"customer": "ACME", "n": i});
            }
            let out = job_output_key(prefix, "receipt", &[self.object(&key, &etag)]);
            self.expected.ok.insert(job_id, out);
            self.expected.pages += 1;
            messages.push((format!("valid-{i:02}"), m.to_string()));
        }
        for i in 0..2u32 {
            let front = common::encode(&common::scan(400, 250, 100 + i), ImageFormat::Png);
            let (kf, ef) = self.put(format!("cards/{i}/front.png"), front).await;
            let back = common::encode(&common::scan(400, 250, 200 + i), ImageFormat::Png);
            let (kb, eb) = self.put(format!("cards/{i}/back.png"), back).await;
            let job_id = format!("card-{i}");
            let m = json!({"job_id": job_id, "pipeline": "receipt", "sources": [
                format!("s3://{}/{kf}", self.input), format!("s3://{}/{kb}", self.input)]});
            let out = job_output_key(
                "results",
                "receipt",
                &[self.object(&kf, &ef), self.object(&kb, &eb)],
            );
            self.expected.ok.insert(job_id.clone(), out);
            self.expected.pages += 2;
            messages.push((job_id, m.to_string()));
        }
    }

    /// 10 S3 upload events with keys that need URL-encoding.
    async fn upload_events(&mut self, messages: &mut Vec<Message>) {
        let routes = vinscan_jobs::routing::Routes::new(
            vec![vinscan_jobs::routing::Route {
                bucket: self.input.clone(),
                prefix: "uploads/".into(),
                pipeline: "receipt".into(),
                output_prefix: format!("s3://{}/uploads", self.output).parse().expect("uri"),
            }],
            ["receipt"],
            format!("s3://{}/results", self.output).parse().expect("uri"),
        )
        .expect("routes");
        for i in 0..10u32 {
            let name = ["hoá đơn", "biên lai+thu", "scan (1)", "ảnh chụp", "a&b=c"][i as usize % 5];
            let scan = common::encode(&common::scan(360, 270, 300 + i), ImageFormat::Jpeg);
            let (key, etag) = self.put(format!("uploads/{name} {i}.jpg"), scan).await;
            let event = json!({"Records": [{
                "eventVersion": "2.1", "eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
                "eventTime": "2026-11-22T00:00:00.000Z",
                "s3": {"bucket": {"name": self.input, "arn": format!("arn:aws:s3:::{}", self.input)},
                       "object": {"key": event_key(&key), "size": 1, "eTag": etag, "sequencer": format!("00{i:014X}")}}
            }]});
            let jobs = vinscan_jobs::classify(event.to_string().as_bytes(), &routes).expect("valid event");
            assert_eq!(jobs[0].sources[0].key, key, "the test's encoding round-trips");
            let out = job_output_key("uploads", "receipt", &[self.object(&key, &etag)]);
            self.expected.ok.insert(jobs[0].job_id.clone(), out);
            self.expected.pages += 1;
            messages.push((format!("event-{i}"), event.to_string()));
        }
    }

    /// 5 jobs on missing objects, 5 corrupt scans, 4 objects above the 1 MB limit.
    async fn bad_jobs(&mut self, messages: &mut Vec<Message>) {
        for i in 0..5 {
            let job_id = format!("missing-{i}");
            let m = json!({"job_id": job_id, "pipeline": "receipt", "sources": [format!("s3://{}/scans/nothing-{i}.png", self.input)]});
            self.expected.bad_jobs.insert(job_id.clone(), vec!["not_found"]);
            messages.push((job_id, m.to_string()));
        }
        for i in 0..5u32 {
            let bytes = if i % 2 == 0 {
                let jpg = common::encode(&common::scan(300, 200, 400 + i), ImageFormat::Jpeg);
                jpg[..jpg.len() / 3].to_vec()
            } else {
                b"this is not an image at all".repeat(10)
            };
            let (key, _) = self.put(format!("scans/corrupt-{i}.jpg"), bytes).await;
            let job_id = format!("corrupt-{i}");
            let m = json!({"job_id": job_id, "pipeline": "receipt", "sources": [format!("s3://{}/{key}", self.input)]});
            self.expected
                .bad_jobs
                .insert(job_id.clone(), vec!["invalid_input", "unsupported"]);
            messages.push((job_id, m.to_string()));
        }
        for i in 0..4u32 {
            let (key, _) = self
                .put(format!("scans/huge-{i}.png"), vec![7u8; 1_200_000 + i as usize])
                .await;
            let job_id = format!("huge-{i}");
            let m = json!({"job_id": job_id, "pipeline": "receipt", "sources": [format!("s3://{}/{key}", self.input)]});
            self.expected.bad_jobs.insert(job_id.clone(), vec!["too_large"]);
            messages.push((job_id, m.to_string()));
        }
    }

    /// 6 messages that are not jobs.
    fn poison(&mut self, messages: &mut Vec<Message>) {
        for p in [
            "this is not JSON".to_owned(),
            "[1, 2, 3]".to_owned(),
            json!({"job_id": "p-1", "pipeline": "no-such-pipeline", "sources": ["s3://xyz/y.png"]}).to_string(),
            json!({"job_id": "bad id!", "pipeline": "receipt", "sources": ["s3://xyz/y.png"]}).to_string(),
            json!({"job_id": "p-2", "pipeline": "receipt", "sources": []}).to_string(),
            json!({"Records": [{"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": "unrouted-bucket"}, "object": {"key": "x.png"}}}]}).to_string(),
        ] {
            self.expected.poison.push(p.clone());
            messages.push(("poison".into(), p));
        }
    }

    /// Sends the messages in a fixed shuffled order, with a 600 KB binary message (an image
    /// published by mistake) among them: its dead letter must carry a bounded copy, or the
    /// broker refuses it and the partition never commits past it.
    async fn send(&mut self, messages: Vec<Message>) {
        let mut state = 0x9e37_79b9u32;
        let binary: Vec<u8> = (0..600_000)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                state as u8
            })
            .collect();
        self.expected
            .binary_poison
            .push(hex::encode(sha2::Sha256::digest(&binary)));
        let mut order: Vec<usize> = (0..messages.len()).collect();
        let mut s = 0x9e37_79b9u64;
        for i in (1..order.len()).rev() {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            order.swap(i, (s % (i as u64 + 1)) as usize);
        }
        let publisher = Publisher::new(&self.settings()).expect("producer");
        for i in order {
            let (k, p) = &messages[i];
            publisher
                .send(&self.jobs_topic, k, p.as_bytes(), &[])
                .await
                .expect("produce");
            if i == 30 {
                publisher
                    .send(&self.jobs_topic, "binary", &binary, &[])
                    .await
                    .expect("produce the binary poison");
            }
        }
    }
}
