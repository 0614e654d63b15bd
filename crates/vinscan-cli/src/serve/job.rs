//! One consumed message, start to finish: classify it, run its jobs with retries by error
//! kind, write each job's output object, announce it on the results topic, or dead-letter it
//! with the reason — and only then mark the offset finished. A message whose work cannot be
//! completed before shutdown is abandoned uncommitted, so it is redelivered.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::watch;
use tracing::Instrument;
use vinscan_core::hash::sha256_hex;
use vinscan_core::{Catalog, Error, ErrorKind, Extractor, PageRecord, Pipeline, VisionModel};
use vinscan_jobs::keys::job_output_key;
use vinscan_jobs::routing::Routes;
use vinscan_jobs::{Job, ObjectRef, classify};
use vinscan_kafka::{Delivery, JobConsumer, Publisher};
use vinscan_storage::{ObjectStore, S3Config, S3Store};

use super::config::ServeConfig;
use super::metrics::Metrics;
use crate::cmd_batch::storage_error;

/// Everything a message handler needs, shared by all of them.
pub struct Shared {
    pub config: ServeConfig,
    pub routes: Routes,
    pub catalog: Catalog,
    pub extractor: Arc<Extractor>,
    pub model: Arc<dyn VisionModel>,
    pub s3: S3Config,
    pub stores: Mutex<HashMap<String, Arc<S3Store>>>,
    pub publisher: Publisher,
    pub consumer: Arc<JobConsumer>,
    pub metrics: Arc<Metrics>,
    /// Becomes true on SIGTERM: retries stop and unfinished work is abandoned.
    pub shutdown: watch::Receiver<bool>,
}

impl Shared {
    pub fn store(&self, bucket: &str) -> Result<Arc<S3Store>, Error> {
        let mut stores = self.stores.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = stores.get(bucket) {
            return Ok(s.clone());
        }
        let store = Arc::new(S3Store::new(&self.s3, bucket).map_err(storage_error)?);
        stores.insert(bucket.to_owned(), store.clone());
        Ok(store)
    }

    fn shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Sleeps `d`, or less when shutdown begins; false when shutting down.
    async fn pause(&self, d: Duration) -> bool {
        let mut rx = self.shutdown.clone();
        if *rx.borrow() {
            return false;
        }
        tokio::select! {
            _ = tokio::time::sleep(d) => !self.shutting_down(),
            _ = rx.changed() => false,
        }
    }
}

/// `s3://bucket/prefix` → (bucket, prefix).
pub(super) fn split_s3(uri: &str) -> (&str, &str) {
    let rest = uri.strip_prefix("s3://").unwrap_or(uri);
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    (bucket, prefix.trim_matches('/'))
}

#[derive(Debug, Default, Clone, Copy, Serialize)]
struct JobTimings {
    fetch_ms: u64,
    extract_ms: u64,
    write_ms: u64,
    total_ms: u64,
}

/// What a finished job produced.
struct JobOutput {
    output: String,
    pages: u32,
    timings: JobTimings,
}

#[derive(Serialize)]
struct SourceSummary<'a> {
    uri: String,
    version: &'a str,
    sha256: String,
    pages: u32,
}

fn ms(t: Instant) -> u64 {
    t.elapsed().as_millis() as u64
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A job's sources fetched and extracted: kept across attempts, so a failed write or publish
/// does not redo the inference.
struct Extracted {
    objects: Vec<ObjectRef>,
    per_source: Vec<(String, u32)>,
    pages: Vec<PageRecord>,
    fetch_ms: u64,
    extract_ms: u64,
}

async fn fetch_and_extract(shared: &Shared, job: &Job, pipeline: &Arc<Pipeline>) -> Result<Extracted, Error> {
    let max_bytes = pipeline
        .limits
        .max_bytes
        .min(shared.config.daemon.max_object_bytes);
    let t = Instant::now();
    let mut fetched = Vec::with_capacity(job.sources.len());
    for source in &job.sources {
        let store = shared.store(&source.bucket)?;
        let object = store.get(&source.key, max_bytes).await.map_err(storage_error)?;
        // the output identity: the version the message named, else the object's ETag
        let version = source.version.clone().unwrap_or(object.meta.etag.clone());
        fetched.push((
            ObjectRef {
                version: Some(version),
                ..source.clone()
            },
            object.bytes,
        ));
    }
    let fetch_ms = ms(t);
    shared.metrics.stage("fetch", t.elapsed().as_secs_f64());

    // decoding, rendering and inference block: off the async threads. Several jobs decode
    // and tile while one runs on the model.
    let t = Instant::now();
    let extractor = shared.extractor.clone();
    let model = shared.model.clone();
    let pipeline_c = pipeline.clone();
    let inputs: Vec<(String, Bytes)> = fetched.iter().map(|(o, b)| (o.uri(), b.clone())).collect();
    let extracted = tokio::task::spawn_blocking(move || {
        let mut pages: Vec<PageRecord> = Vec::new();
        let mut per_source = Vec::new();
        for (uri, bytes) in inputs {
            let bytes = bytes.to_vec();
            let sha = sha256_hex(&bytes);
            let doc = extractor.open(&uri, bytes, &pipeline_c)?;
            for index in 0..doc.page_count() {
                pages.push(extractor.extract_page(model.as_ref(), &doc, &sha, index, &pipeline_c)?);
            }
            per_source.push((sha, doc.page_count()));
        }
        Ok::<_, Error>((pages, per_source))
    })
    .await
    .map_err(|e| Error::new(ErrorKind::Internal, format!("extraction task: {e}")))?;
    let (pages, per_source) = extracted?;
    shared.metrics.stage("extract", t.elapsed().as_secs_f64());
    for p in &pages {
        let g = &p.provenance.generation;
        shared
            .metrics
            .generated_tokens
            .inc_by(u64::from(g.generated_tokens));
        shared.metrics.pages.inc();
        let secs = p.provenance.timings_ms.generate / 1000.0;
        if secs > 0.0 {
            shared
                .metrics
                .tokens_per_second
                .set(f64::from(g.generated_tokens) / secs);
        }
    }
    Ok(Extracted {
        objects: fetched.into_iter().map(|(o, _)| o).collect(),
        per_source,
        pages,
        fetch_ms,
        extract_ms: ms(t),
    })
}

/// One attempt at a job: fetch and extract (unless an earlier attempt did), then write the
/// output object.
async fn attempt(shared: &Shared, job: &Job, cache: &mut Option<Extracted>) -> Result<JobOutput, Error> {
    let pipeline = shared.catalog.pipeline(&job.pipeline)?;
    let x = match cache {
        Some(x) => x,
        None => cache.insert(fetch_and_extract(shared, job, &pipeline).await?),
    };

    let t = Instant::now();
    let (bucket, prefix) = split_s3(&job.output_prefix);
    let key = job_output_key(prefix, &job.pipeline, &x.objects);
    let sources: Vec<SourceSummary<'_>> = x
        .objects
        .iter()
        .zip(&x.per_source)
        .map(|(o, (sha, pages))| SourceSummary {
            uri: o.uri(),
            version: o.version.as_deref().unwrap_or_default(),
            sha256: sha.clone(),
            pages: *pages,
        })
        .collect();
    let document = json!({
        "job_id": job.job_id,
        "pipeline": job.pipeline,
        "schema": pipeline.schema.id(),
        "sources": sources,
        "pages": x.pages,
        "metadata": job.metadata,
        "written_at": now_rfc3339(),
    });
    let body =
        serde_json::to_vec_pretty(&document).map_err(|e| Error::new(ErrorKind::Internal, e.to_string()))?;
    let out_store = shared.store(bucket)?;
    out_store
        .put(&key, Bytes::from(body), "application/json")
        .await
        .map_err(|e| storage_error(e).context("writing the output"))?;
    let write_ms = ms(t);
    shared.metrics.stage("write", t.elapsed().as_secs_f64());

    Ok(JobOutput {
        output: format!("s3://{bucket}/{key}"),
        pages: x.pages.len() as u32,
        timings: JobTimings {
            fetch_ms: x.fetch_ms,
            extract_ms: x.extract_ms,
            write_ms,
            total_ms: x.fetch_ms + x.extract_ms + write_ms,
        },
    })
}

/// How a job ended.
enum Ended {
    Done(JobOutput, u32),
    Failed(Error, u32, String),
    /// Shutdown came first: leave it for redelivery.
    Abandoned,
}

fn backoff(config: &ServeConfig, attempt: u32) -> Duration {
    let base = config
        .daemon
        .retry_initial_ms
        .saturating_mul(1 << attempt.min(16));
    Duration::from_millis(base.min(config.daemon.retry_max_delay_ms))
}

async fn run_with_retries(shared: &Shared, job: &Job) -> Ended {
    let first = Instant::now();
    let first_at = now_rfc3339();
    let mut attempts = 0u32;
    let mut cache = None;
    loop {
        attempts += 1;
        match attempt(shared, job, &mut cache).await {
            Ok(out) => return Ended::Done(out, attempts),
            Err(e) if e.kind().is_retryable() => {
                if shared.shutting_down() {
                    return Ended::Abandoned;
                }
                let delay = backoff(&shared.config, attempts - 1);
                if first.elapsed() + delay > shared.config.retry_budget() {
                    return Ended::Failed(e, attempts, first_at);
                }
                shared
                    .metrics
                    .retries
                    .get_or_create(&super::metrics::KindLabels {
                        kind: e.kind().as_str(),
                    })
                    .inc();
                tracing::warn!(job_id = %job.job_id, attempt = attempts, kind = %e.kind(), error = %e, delay_ms = delay.as_millis() as u64, "job failed, retrying");
                if !shared.pause(delay).await {
                    return Ended::Abandoned;
                }
            }
            Err(e) => return Ended::Failed(e, attempts, first_at),
        }
    }
}

/// Sends a record until the broker has it; false when shutdown came first.
async fn publish(shared: &Shared, topic: &str, key: &str, payload: &Value) -> bool {
    let bytes = match serde_json::to_vec(payload) {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = %e, "cannot serialise a record");
            return false;
        }
    };
    let t = Instant::now();
    let mut failures = 0u32;
    loop {
        match shared.publisher.send(topic, key, &bytes, &[]).await {
            Ok(_) => {
                shared.metrics.stage("publish", t.elapsed().as_secs_f64());
                return true;
            }
            Err(e) => {
                failures += 1;
                tracing::warn!(topic, error = %e, failures, "publish failed, retrying");
                if !shared.pause(backoff(&shared.config, failures)).await {
                    return false;
                }
            }
        }
    }
}

fn original(d: &Delivery) -> Value {
    let text = |b: &[u8]| match std::str::from_utf8(b) {
        Ok(s) => json!(s),
        Err(_) => json!({ "hex": hex::encode(b) }),
    };
    json!({
        "topic": d.id.topic,
        "partition": d.id.partition,
        "offset": d.id.offset,
        "timestamp_ms": d.timestamp_ms,
        "key": d.key.as_deref().map(text),
        "payload": text(&d.payload),
    })
}

/// Writes a dead-letter record; false when shutdown came first.
async fn dead_letter(
    shared: &Shared,
    d: &Delivery,
    job_id: Option<&str>,
    kind: &str,
    reason: &str,
    attempts: u32,
    first_attempt_at: &str,
) -> bool {
    let record = json!({
        "job_id": job_id,
        "error": { "kind": kind, "message": reason },
        "attempts": attempts,
        "first_attempt_at": first_attempt_at,
        "failed_at": now_rfc3339(),
        "original": original(d),
    });
    let key = job_id.map_or_else(
        || format!("{}-{}-{}", d.id.topic, d.id.partition, d.id.offset),
        str::to_owned,
    );
    publish(shared, &shared.config.kafka.dead_letter_topic, &key, &record).await
}

/// Handles one message to the end. Always calls `finish` or `abandon` for it.
pub async fn handle(shared: Arc<Shared>, d: Delivery) {
    let finished = handle_inner(&shared, &d).await;
    if finished {
        shared.consumer.finish(&d.id);
    } else {
        shared.metrics.job("abandoned");
        tracing::info!(topic = %d.id.topic, partition = d.id.partition, offset = d.id.offset, "message abandoned uncommitted");
        shared.consumer.abandon(&d.id);
    }
}

async fn handle_inner(shared: &Shared, d: &Delivery) -> bool {
    let jobs = match classify(&d.payload, &shared.routes) {
        Ok(jobs) => jobs,
        Err(poison) => {
            tracing::warn!(topic = %d.id.topic, partition = d.id.partition, offset = d.id.offset, reason = %poison, "poison message");
            let ok = dead_letter(shared, d, None, "poison", &poison.reason, 0, &now_rfc3339()).await;
            if ok {
                shared.metrics.job("poison");
            }
            return ok;
        }
    };
    if jobs.is_empty() {
        shared.metrics.job("ignored");
        return true;
    }
    for job in &jobs {
        let span = tracing::info_span!("job", job_id = %job.job_id, pipeline = %job.pipeline);
        match run_with_retries(shared, job).instrument(span).await {
            Ended::Done(out, attempts) => {
                let event = json!({
                    "job_id": job.job_id,
                    "status": "ok",
                    "pipeline": job.pipeline,
                    "output": out.output,
                    "pages": out.pages,
                    "sources": job.sources.iter().map(ObjectRef::uri).collect::<Vec<_>>(),
                    "attempts": attempts,
                    "timings_ms": out.timings,
                    "metadata": job.metadata,
                    "finished_at": now_rfc3339(),
                });
                if !publish(shared, &shared.config.kafka.results_topic, &job.job_id, &event).await {
                    return false;
                }
                shared.metrics.job("ok");
                shared.metrics.stage("job", out.timings.total_ms as f64 / 1000.0);
                tracing::info!(job_id = %job.job_id, output = %out.output, pages = out.pages, attempts, total_ms = out.timings.total_ms, "job done");
            }
            Ended::Failed(e, attempts, first_at) => {
                tracing::warn!(job_id = %job.job_id, kind = %e.kind(), error = %e, attempts, "job dead-lettered");
                if !dead_letter(
                    shared,
                    d,
                    Some(&job.job_id),
                    e.kind().as_str(),
                    e.message(),
                    attempts,
                    &first_at,
                )
                .await
                {
                    return false;
                }
                let event = json!({
                    "job_id": job.job_id,
                    "status": "dead_lettered",
                    "pipeline": job.pipeline,
                    "error": { "kind": e.kind().as_str(), "message": e.message() },
                    "sources": job.sources.iter().map(ObjectRef::uri).collect::<Vec<_>>(),
                    "attempts": attempts,
                    "metadata": job.metadata,
                    "finished_at": now_rfc3339(),
                });
                if !publish(shared, &shared.config.kafka.results_topic, &job.job_id, &event).await {
                    return false;
                }
                shared.metrics.job("dead_lettered");
            }
            Ended::Abandoned => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_uris_split() {
        assert_eq!(split_s3("s3://out/a/b/"), ("out", "a/b"));
        assert_eq!(split_s3("s3://out"), ("out", ""));
    }
}
