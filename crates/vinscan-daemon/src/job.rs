//! One job to its end: fetch its sources (the versions it names), extract them on a blocking
//! thread, write the output object; retry what retrying can fix, with jittered exponential
//! backoff (`backon`) within the retry budget. The extraction is kept across attempts, so a
//! failed write does not redo the inference.

use std::sync::Arc;
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use bytes::Bytes;
use vinscan_core::hash::sha256_hex;
use vinscan_core::{Error, ErrorKind, PageRecord, Pipeline};
use vinscan_jobs::keys::job_output_key;
use vinscan_jobs::{Job, JobTimings, ObjectRef};
use vinscan_storage::ObjectVersion;

use crate::daemon::Daemon;
use crate::metrics::Stage;
use crate::output::{JobOutput, SourceSummary, now_rfc3339};
use vinscan_jobs::kinds::pipeline_error;

/// What a finished job produced.
#[derive(Debug)]
pub struct Written {
    /// `s3://…` of the output object.
    pub output: String,
    pub pages: u32,
    /// Pages whose record needs review.
    pub review_pages: u32,
    pub timings: JobTimings,
}

/// How a job ended.
#[derive(Debug)]
pub enum Ended {
    Done(Written, u32),
    /// Failed for good (or its retry budget ran out), after this many attempts, the first at
    /// the given time. The error's kind decides what is recorded (`Superseded` is not a
    /// failure of the job) and whether the message must be left undone (`Unavailable`,
    /// `Cancelled`).
    Failed(Error, u32, String),
    /// The daemon stopped between attempts: leave it for redelivery.
    Abandoned,
}

/// A job's sources fetched and extracted.
struct Extracted {
    objects: Vec<ObjectRef>,
    per_source: Vec<(String, u32)>,
    pages: Vec<PageRecord>,
    fetch_ms: u64,
    extract_ms: u64,
}

fn ms(t: Instant) -> u64 {
    t.elapsed().as_millis() as u64
}

/// The retry delays: exponential from `retry_initial_ms` to `retry_max_delay_ms`, with jitter
/// so that a fleet retrying after the same outage does not retry in step.
pub(crate) fn backoff(daemon: &Daemon) -> impl Iterator<Item = Duration> {
    let d = &daemon.config.daemon;
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(d.retry_initial_ms))
        .with_max_delay(Duration::from_millis(d.retry_max_delay_ms))
        .with_jitter()
        .without_max_times()
        .build()
}

/// Runs `job` until it is done, fails for good, exhausts its retry budget or the daemon stops.
pub async fn run_with_retries(daemon: &Arc<Daemon>, job: &Job) -> Ended {
    tracing::info!(job_id = %job.job_id, sources = job.sources.len(), "job started");
    let first_at = now_rfc3339();
    // the budget runs from the first failure: a long extraction does not use it up
    let mut first_failure: Option<Instant> = None;
    let mut delays = backoff(daemon);
    let mut attempts = 0u32;
    let mut cache = None;
    loop {
        attempts += 1;
        let e = match attempt(daemon, job, &mut cache).await {
            Ok(out) => return Ended::Done(out, attempts),
            Err(e) if !e.kind().is_retryable() => return Ended::Failed(e, attempts, first_at),
            Err(e) => e,
        };
        if daemon.is_stopping() {
            return Ended::Abandoned;
        }
        let delay = delays.next().unwrap_or(Duration::from_secs(1));
        let failing_for = first_failure.get_or_insert_with(Instant::now).elapsed();
        if failing_for + delay > daemon.config.retry_budget() {
            return Ended::Failed(e, attempts, first_at);
        }
        daemon.metrics.retry(e.kind().as_str());
        tracing::warn!(job_id = %job.job_id, attempt = attempts, kind = %e.kind(), error = %e, delay_ms = delay.as_millis() as u64, "job failed, retrying");
        if !daemon.pause(delay).await {
            return Ended::Abandoned;
        }
    }
}

/// One attempt: fetch and extract (unless an earlier attempt did), then write the output.
async fn attempt(daemon: &Arc<Daemon>, job: &Job, cache: &mut Option<Extracted>) -> Result<Written, Error> {
    let pipeline = daemon.catalog.pipeline(&job.pipeline)?;
    let x = match cache {
        Some(x) => x,
        None => cache.insert(fetch_and_extract(daemon, job, &pipeline).await?),
    };
    let t = Instant::now();
    let prefix = &job.output_prefix;
    let key = job_output_key(prefix.prefix(), &job.pipeline, &x.objects);
    let output = JobOutput {
        job_id: job.job_id.clone(),
        pipeline: job.pipeline.clone(),
        schema: pipeline.schema.id().to_owned(),
        sources: x
            .objects
            .iter()
            .zip(&x.per_source)
            .map(|(o, (sha, pages))| SourceSummary {
                uri: o.uri(),
                version: o.version.as_ref().map_or("", ObjectVersion::as_str).to_owned(),
                sha256: sha.clone(),
                pages: *pages,
            })
            .collect(),
        pages: x.pages.clone(),
        metadata: job.metadata.clone(),
        written_at: now_rfc3339(),
    };
    let body =
        serde_json::to_vec_pretty(&output).map_err(|e| Error::new(ErrorKind::Internal, e.to_string()))?;
    daemon
        .stores
        .bucket(prefix.bucket())
        .put(&key, Bytes::from(body), "application/json")
        .await
        .map_err(|e| pipeline_error(e).context("writing the output"))?;
    let write_ms = ms(t);
    daemon.metrics.stage(Stage::Write, t.elapsed().as_secs_f64());
    Ok(Written {
        output: format!("s3://{}/{key}", prefix.bucket()),
        pages: x.pages.len() as u32,
        review_pages: x.pages.iter().filter(|p| p.review.needed).count() as u32,
        timings: JobTimings {
            fetch_ms: x.fetch_ms,
            extract_ms: x.extract_ms,
            write_ms,
            total_ms: x.fetch_ms + x.extract_ms + write_ms,
        },
    })
}

async fn fetch_and_extract(
    daemon: &Arc<Daemon>,
    job: &Job,
    pipeline: &Arc<Pipeline>,
) -> Result<Extracted, Error> {
    let max_bytes = pipeline
        .limits
        .max_bytes
        .min(daemon.config.daemon.max_object_bytes);
    let t = Instant::now();
    let mut fetched = Vec::with_capacity(job.sources.len());
    for source in &job.sources {
        let store = daemon.stores.bucket(&source.bucket);
        // exactly the version the message named: never another version's bytes under its key
        let object = store
            .get(&source.key, max_bytes, source.version.as_ref())
            .await
            .map_err(pipeline_error)?;
        // the output's identity: the version the message named, else the ETag just read
        let version = source
            .version
            .clone()
            .unwrap_or(ObjectVersion::ETag(object.meta.etag.clone()));
        let object_ref = ObjectRef {
            version: Some(version),
            ..source.clone()
        };
        fetched.push((object_ref, object.bytes));
    }
    let fetch_ms = ms(t);
    daemon.metrics.stage(Stage::Fetch, t.elapsed().as_secs_f64());

    // decoding, rendering and inference block: off the async threads
    let t = Instant::now();
    let inputs: Vec<(String, Bytes)> = fetched.iter().map(|(o, b)| (o.uri(), b.clone())).collect();
    let (pages, per_source) = extract_blocking(daemon, pipeline, inputs).await?;
    daemon.metrics.stage(Stage::Extract, t.elapsed().as_secs_f64());
    for p in &pages {
        daemon
            .metrics
            .generated_tokens
            .inc_by(u64::from(p.provenance.generation.generated_tokens));
        daemon
            .metrics
            .generate_seconds
            .inc_by(p.provenance.timings_ms.generate / 1000.0);
        daemon.metrics.pages.inc();
    }
    Ok(Extracted {
        objects: fetched.into_iter().map(|(o, _)| o).collect(),
        per_source,
        pages,
        fetch_ms,
        extract_ms: ms(t),
    })
}

type PagesAndSources = (Vec<PageRecord>, Vec<(String, u32)>);

/// Every page of every source, on a blocking thread; stops at the first failing page, and at
/// the next decoding step once the daemon's cancellation is raised.
async fn extract_blocking(
    daemon: &Arc<Daemon>,
    pipeline: &Arc<Pipeline>,
    inputs: Vec<(String, Bytes)>,
) -> Result<PagesAndSources, Error> {
    let daemon = daemon.clone();
    let pipeline = pipeline.clone();
    tokio::task::spawn_blocking(move || {
        let mut pages = Vec::new();
        let mut per_source = Vec::new();
        for (uri, bytes) in inputs {
            let bytes = bytes.to_vec();
            let sha = sha256_hex(&bytes);
            let doc = daemon.extractor.open(&uri, bytes, &pipeline)?;
            for page in daemon.extractor.extract_document(
                daemon.model.as_ref(),
                &doc,
                &sha,
                &pipeline,
                &daemon.cancel,
            ) {
                pages.push(page?);
            }
            per_source.push((sha, doc.page_count()));
        }
        Ok((pages, per_source))
    })
    .await
    .map_err(|e| Error::new(ErrorKind::Internal, format!("extraction task: {e}")))?
}
