//! One job to its end: fetch its sources (the versions it names), extract them on a blocking
//! thread, write the output object; retry what retrying can fix, with jittered exponential
//! backoff (`backon`) within the retry budget. The extraction is kept across attempts, so a
//! failed write does not redo the inference.

use std::sync::Arc;
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use bytes::Bytes;
use vinscan_core::hash::sha256_hex;
use vinscan_core::read_document::DocumentSource;
use vinscan_core::transcript::text_file_name;
use vinscan_core::{Cancellation, DocumentRecord, Error, ErrorKind, PageRecord, Pipeline, Unit};
use vinscan_jobs::keys::job_output_key;
use vinscan_jobs::{Job, JobTimings, ObjectRef};
use vinscan_storage::ObjectVersion;
use vinscan_storage::S3Uri;

use crate::daemon::Daemon;
use crate::deadline::{Deadline, PageBudget};
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
    records: Records,
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

/// Whether a failure can be systemic rather than the job's: a passing failure (retried within
/// the budget, systemic past it) or wrong settings or credentials (`Config`: access denied,
/// the output bucket missing, pdfium not loaded, a context too small for the pipeline).
fn maybe_systemic(kind: ErrorKind) -> bool {
    matches!(kind, ErrorKind::Transient | ErrorKind::Config)
}

/// Whether a `Config` failure of `job` is systemic: every bucket the job touches is one the
/// deployment names (routes, outputs), or the default output bucket does not answer either.
/// A job message may name any bucket: access refused to one the deployment never mentions is
/// that job's problem and must not hold the daemon.
fn systemic_config(daemon: &Daemon, job: &Job) -> bool {
    let configured = job
        .sources
        .iter()
        .all(|s| daemon.routes.configures_bucket(&s.bucket))
        && daemon.routes.configures_bucket(job.output_prefix.bucket());
    configured || !daemon.readiness.get(crate::readiness::Check::Store)
}

/// Runs `job` until it is done, fails for good or the daemon stops. A passing failure is
/// retried with backoff within the retry budget; past the budget, and at once for wrong
/// settings or credentials, the fault is systemic: the job is held ([`Daemon::hold`]) and
/// tried again every `retry_max_delay_ms` until it clears, never dead-lettered for it. An
/// attempt past its time limit ([`crate::deadline`]) is retried once; a second `Timeout` is
/// final.
pub async fn run_with_retries(daemon: &Arc<Daemon>, job: &Job) -> Ended {
    tracing::info!(job_id = %job.job_id, sources = job.sources.len(), "job started");
    let first_at = now_rfc3339();
    // the budget runs from the first failure: a long extraction does not use it up
    let mut first_failure: Option<Instant> = None;
    let mut delays = backoff(daemon);
    let mut attempts = 0u32;
    let mut cache = None;
    let mut held = false;
    let mut timed_out = false;
    let ended = loop {
        attempts += 1;
        let e = match attempt(daemon, job, &mut cache).await {
            Ok(out) => break Ended::Done(out, attempts),
            // a timeout is retried once, at once: a slow moment (a busy machine) gets a second
            // chance, a page that always runs long does not hold its partition twice more
            // cut short by a stop, not by the job: left for redelivery
            Err(e) if e.kind() == ErrorKind::Timeout && daemon.is_stopping() => break Ended::Abandoned,
            Err(e) if e.kind() == ErrorKind::Timeout && !timed_out => {
                timed_out = true;
                tracing::warn!(job_id = %job.job_id, attempt = attempts, error = %e, "job timed out, retrying once");
                continue;
            }
            Err(e) if !maybe_systemic(e.kind()) => break Ended::Failed(e, attempts, first_at),
            // refused for a bucket the deployment does not name (a job message's own choice),
            // while the default output answers: the job's fault, not a systemic one
            Err(e) if e.kind() == ErrorKind::Config && !systemic_config(daemon, job) => {
                break Ended::Failed(e, attempts, first_at);
            }
            Err(e) => e,
        };
        if daemon.is_stopping() {
            break Ended::Abandoned;
        }
        let delay = delays.next().unwrap_or(Duration::from_secs(1));
        let failing_for = first_failure.get_or_insert_with(Instant::now).elapsed();
        let systemic = e.kind() == ErrorKind::Config || failing_for + delay > daemon.config.retry_budget();
        let delay = if systemic {
            if !held {
                daemon.hold(&job.job_id, &e);
                held = true;
            }
            Duration::from_millis(daemon.config.daemon.retry_max_delay_ms)
        } else {
            delay
        };
        daemon.metrics.retry(e.kind().as_str());
        tracing::warn!(job_id = %job.job_id, attempt = attempts, kind = %e.kind(), error = %e, delay_ms = delay.as_millis() as u64, systemic, "job failed, retrying");
        if !daemon.pause(delay).await {
            break Ended::Abandoned;
        }
    };
    if held {
        daemon.release();
    }
    ended
}

/// One attempt: fetch and extract (unless an earlier attempt did), then write the output.
async fn attempt(daemon: &Arc<Daemon>, job: &Job, cache: &mut Option<Extracted>) -> Result<Written, Error> {
    let pipeline = daemon.catalog.pipeline(&job.pipeline)?;
    let x = match cache {
        Some(x) => x,
        None => cache.insert(fetch_and_extract(daemon, job, &pipeline).await?),
    };
    let t = Instant::now();
    let prefix = output_prefix(
        &job.output_prefix,
        x.records.review_pages() > 0,
        daemon.config.daemon.review_output.as_ref(),
    );
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
        pages: match &x.records {
            Records::Pages(p) => p.clone(),
            Records::Document(_) => Vec::new(),
        },
        document: match &x.records {
            Records::Pages(_) => None,
            Records::Document(d) => Some(d.as_ref().clone()),
        },
        metadata: job.metadata.clone(),
        written_at: now_rfc3339(),
    };
    let body =
        serde_json::to_vec_pretty(&output).map_err(|e| Error::new(ErrorKind::Internal, e.to_string()))?;
    let out = daemon.stores.bucket(prefix.bucket());
    match x.records.transcript_file() {
        // beside the output, before it: an output is only there once its transcript is
        Some(text) => out
            .put(
                &text_file_name(&key),
                Bytes::from(text),
                "text/plain; charset=utf-8",
            )
            .await
            .map_err(|e| output_error(e, prefix.bucket()))?,
        // none now (a scan under `pdf-text`, or the transcriber changed): an earlier run's is
        // not this output's. Only where the pipeline transcribes, and never the job's failure
        // (a role allowed to put but not to delete still writes its outputs).
        None if pipeline.transcriber != vinscan_core::Transcriber::None => {
            if let Err(e) = out.delete(&text_file_name(&key)).await {
                tracing::warn!(job_id = %job.job_id, error = %e, "a stale transcript was not removed");
            }
        }
        None => {}
    }
    daemon
        .stores
        .bucket(prefix.bucket())
        .put(&key, Bytes::from(body), "application/json")
        .await
        .map_err(|e| output_error(e, prefix.bucket()))?;
    // with a review prefix, an attempt before a crash may have written the other side (its
    // verdict can differ: batch composition moves confidences, a date check moves with the
    // day): remove that copy, so one object per job remains
    if let Some(review) = &daemon.config.daemon.review_output {
        let other = if std::ptr::eq(prefix, review) {
            &job.output_prefix
        } else {
            review
        };
        let other_key = job_output_key(other.prefix(), &job.pipeline, &x.objects);
        if (other.bucket(), other_key.as_str()) != (prefix.bucket(), key.as_str()) {
            remove_own_copy(daemon, job, other.bucket(), &other_key).await;
        }
    }
    let write_ms = ms(t);
    daemon.metrics.stage(Stage::Write, t.elapsed().as_secs_f64());
    Ok(Written {
        output: format!("s3://{}/{key}", prefix.bucket()),
        pages: x.records.pages(),
        review_pages: x.records.review_pages(),
        timings: JobTimings {
            fetch_ms: x.fetch_ms,
            extract_ms: x.extract_ms,
            write_ms,
            total_ms: x.fetch_ms + x.extract_ms + write_ms,
        },
    })
}

/// Fault injection, compiled only with the `failpoints` feature (tests; never a release
/// build): with `FAILPOINTS='vinscan::job::extract=return(TEXT)'` the process aborts
/// (SIGABRT, as a failed assertion in llama.cpp or pdfium would) when it is about to extract
/// a job whose id contains TEXT.
#[cfg(feature = "failpoints")]
fn abort_if_injected(job_id: &str) {
    if let Some(Some(target)) = fail::eval("vinscan::job::extract", |arg| arg)
        && !target.is_empty()
        && job_id.contains(&target)
    {
        eprintln!("failpoint vinscan::job::extract: aborting on job {job_id}");
        std::process::abort();
    }
}

/// A failed output write as a pipeline error. A write can only find nothing when the bucket
/// itself is missing (S3 `NoSuchBucket`): that is the deployment's settings, not the job's
/// input, so it is `Config` (systemic) rather than `NotFound`.
fn output_error(e: vinscan_storage::StorageError, bucket: &str) -> Error {
    if e.kind == vinscan_storage::StorageErrorKind::NotFound {
        return Error::new(
            ErrorKind::Config,
            format!("the output bucket {bucket} does not exist: {}", e.message),
        );
    }
    pipeline_error(e).context("writing the output")
}

/// Removes `bucket/key` if it holds this job's output (another job on the same sources may
/// share the key under the review prefix: its output is left alone). Best effort: a stale copy
/// is only confusing, never wrong, since it names its job and time.
async fn remove_own_copy(daemon: &Daemon, job: &Job, bucket: &str, key: &str) {
    let store = daemon.stores.bucket(bucket);
    let Ok(object) = store.get(key, 64 << 20, None).await else {
        return;
    };
    let owner = serde_json::from_slice::<serde_json::Value>(&object.bytes)
        .ok()
        .and_then(|v| v.get("job_id").and_then(|j| j.as_str()).map(str::to_owned));
    if owner.as_deref() == Some(job.job_id.as_str()) {
        // the transcript first: an output is never left without its own
        for k in [text_file_name(key), key.to_owned()] {
            if let Err(e) = store.delete(&k).await {
                tracing::warn!(job_id = %job.job_id, key = %k, error = %e, "a stale copy of the output was not removed");
            }
        }
    }
}

/// Where a job's output goes: under `review_output` when it is set and a record needs review,
/// else under the job's own prefix.
fn output_prefix<'a>(
    job_prefix: &'a S3Uri,
    review_needed: bool,
    review_output: Option<&'a S3Uri>,
) -> &'a S3Uri {
    match review_output {
        Some(review) if review_needed => review,
        _ => job_prefix,
    }
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

    #[cfg(feature = "failpoints")]
    abort_if_injected(&job.job_id);
    // decoding, rendering and inference block: off the async threads
    let t = Instant::now();
    let inputs: Vec<(String, Bytes)> = fetched.iter().map(|(o, b)| (o.uri(), b.clone())).collect();
    let cap = Duration::from_secs(daemon.config.daemon.job_timeout_s);
    let deadline = Deadline::start(daemon.cancel.clone(), cap);
    let budget = deadline.budget(
        cap,
        Duration::from_secs(u64::from(pipeline.limits.max_seconds_per_page)),
    );
    let extracted = extract_blocking(daemon, pipeline, inputs, deadline.cancellation(), budget).await;
    let (records, per_source) = match extracted {
        Err(e) if e.kind() == ErrorKind::Cancelled && deadline.timed_out() => {
            return Err(Error::new(
                ErrorKind::Timeout,
                format!(
                    "cancelled after {:.0} s: past its time limit of {:.0} s ({} s per page, at most daemon.job_timeout_s = {} s)",
                    deadline.elapsed().as_secs_f64(),
                    deadline.limit().as_secs_f64(),
                    pipeline.limits.max_seconds_per_page,
                    daemon.config.daemon.job_timeout_s
                ),
            ));
        }
        other => other?,
    };
    daemon.metrics.stage(Stage::Extract, t.elapsed().as_secs_f64());
    let reads: Vec<(u32, f64)> = match &records {
        Records::Pages(pages) => pages
            .iter()
            .map(|p| {
                (
                    p.provenance.generation.generated_tokens,
                    p.provenance.timings_ms.generate,
                )
            })
            .collect(),
        Records::Document(d) => d
            .provenance
            .groups
            .iter()
            .map(|g| (g.generation.generated_tokens, g.timings_ms.generate))
            .collect(),
    };
    for (tokens, generate_ms) in reads {
        daemon.metrics.generated_tokens.inc_by(u64::from(tokens));
        daemon.metrics.generate_seconds.inc_by(generate_ms / 1000.0);
    }
    daemon.metrics.pages.inc_by(u64::from(records.pages()));
    Ok(Extracted {
        objects: fetched.into_iter().map(|(o, _)| o).collect(),
        per_source,
        records,
        fetch_ms,
        extract_ms: ms(t),
    })
}

/// A job's records: one per page of every source (a page pipeline), or one for all its
/// sources read as one document (a document pipeline).
#[derive(Debug, Clone)]
enum Records {
    Pages(Vec<PageRecord>),
    Document(Box<DocumentRecord>),
}

impl Records {
    /// The job's transcripts as one text file (pages in order, form-feed separated), when its
    /// pipeline made any.
    fn transcript_file(&self) -> Option<String> {
        match self {
            Self::Pages(p) => p
                .iter()
                .any(|r| r.transcript.is_some())
                .then(|| vinscan_core::transcript::text_file(p.iter().map(|r| r.transcript.as_ref()))),
            Self::Document(d) => d.transcript_file(),
        }
    }

    fn pages(&self) -> u32 {
        match self {
            Self::Pages(p) => p.len() as u32,
            Self::Document(d) => d.pages.len() as u32,
        }
    }

    /// Pages covered by records that need review.
    fn review_pages(&self) -> u32 {
        match self {
            Self::Pages(p) => p.iter().filter(|p| p.review.needed).count() as u32,
            Self::Document(d) => u32::from(d.review.needed) * d.pages.len() as u32,
        }
    }
}

type PagesAndSources = (Records, Vec<(String, u32)>);

/// Every page of every source, on a blocking thread: a record per page, stopping at the first
/// failing page, or for a document pipeline one record for every source read as one document.
/// Stops at the next decoding step once the daemon's cancellation is raised.
async fn extract_blocking(
    daemon: &Arc<Daemon>,
    pipeline: &Arc<Pipeline>,
    inputs: Vec<(String, Bytes)>,
    cancel: Cancellation,
    mut budget: PageBudget,
) -> Result<PagesAndSources, Error> {
    let daemon = daemon.clone();
    let pipeline = pipeline.clone();
    tokio::task::spawn_blocking(move || {
        if pipeline.unit == Unit::Document {
            let mut docs = Vec::with_capacity(inputs.len());
            for (uri, bytes) in inputs {
                let bytes = bytes.to_vec();
                let sha = sha256_hex(&bytes);
                let doc = daemon.extractor.open(&uri, bytes, &pipeline)?;
                budget.add_pages(doc.page_count());
                docs.push((doc, sha));
            }
            let sources: Vec<DocumentSource<'_>> = docs
                .iter()
                .map(|(doc, sha256)| DocumentSource { doc, sha256 })
                .collect();
            let extractor = &daemon.extractor;
            // an e-invoice XML is read without a model, by extract_as_document
            let xml = sources
                .iter()
                .any(|s| s.doc.format() == vinscan_core::Format::Xml);
            let record = if extractor.text_stage_applies(&pipeline) && !xml {
                extractor.extract_text_document(Some(daemon.model.as_ref()), &sources, &pipeline, &cancel)?
            } else {
                extractor.extract_as_document(daemon.model.as_ref(), &sources, &pipeline, &cancel)?
            };
            let per_source = docs
                .iter()
                .map(|(d, sha)| (sha.clone(), d.page_count()))
                .collect();
            return Ok((Records::Document(Box::new(record)), per_source));
        }
        let mut pages = Vec::new();
        let mut per_source = Vec::new();
        for (uri, bytes) in inputs {
            let bytes = bytes.to_vec();
            let sha = sha256_hex(&bytes);
            let doc = daemon.extractor.open(&uri, bytes, &pipeline)?;
            budget.add_pages(doc.page_count());
            for page in
                daemon
                    .extractor
                    .extract_document(daemon.model.as_ref(), &doc, &sha, &pipeline, &cancel)
            {
                pages.push(page?);
            }
            per_source.push((sha, doc.page_count()));
        }
        Ok((Records::Pages(pages), per_source))
    })
    .await
    .map_err(|e| Error::new(ErrorKind::Internal, format!("extraction task: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_outputs_needing_review_go_to_the_review_prefix() {
        let job: S3Uri = "s3://out/results".parse().expect("uri");
        let review: S3Uri = "s3://out/review".parse().expect("uri");
        assert_eq!(output_prefix(&job, true, Some(&review)), &review);
        assert_eq!(output_prefix(&job, false, Some(&review)), &job);
        assert_eq!(
            output_prefix(&job, true, None),
            &job,
            "unset: the job's own prefix"
        );
    }

    #[test]
    fn a_jobs_transcripts_go_beside_its_output() {
        assert_eq!(
            text_file_name("results/a.png.archive-page.json"),
            "results/a.png.archive-page.txt"
        );
        let page = |n: u32, text: Option<&str>| {
            let mut r: PageRecord = serde_json::from_value(serde_json::json!({
                "source": "s3://in/a.tif", "page": n, "pipeline": "archive-page", "schema": "s", "data": {},
                "provenance": {"record_format": 2, "source": "s3://in/a.tif", "source_sha256": "", "source_format": "tiff",
                    "page": n, "page_count": 2, "pipeline": "archive-page", "pipeline_sha256": "", "schema_id": "",
                    "schema_sha256": "", "model": {"name": null, "file": "", "sha256": "", "mmproj_file": "", "mmproj_sha256": ""},
                    "vinscan_version": "", "image": {"width": 1, "height": 1, "orientation": null, "dpi": null},
                    "tiles": {"cols": 1, "rows": 1, "thumbnail": false, "images": 1, "max_tiles_requested": 1, "max_tiles_used": 1},
                    "generation": {"prompt_tokens": 0, "image_tokens": 0, "generated_tokens": 0, "max_tokens": 0, "stop": "",
                        "model_steps": 0, "forced_tokens": 0, "reused_prompt_tokens": 0, "peak_batch_pages": 0},
                    "normalised": [], "timings_ms": {"decode": 0.0, "tiling": 0.0, "encode_prefill": 0.0, "generate": 0.0, "sample": 0.0, "queue": 0.0, "confidence": 0.0, "validate": 0.0, "total": 0.0}, "created_at": ""}
            }))
            .expect("page record");
            r.transcript = text.map(|t| {
                vinscan_core::PageTranscript::new(
                    vinscan_core::TranscriptSource::Tesseract,
                    t,
                    Vec::new(),
                    "t".into(),
                    0.0,
                )
            });
            r
        };
        let none = Records::Pages(vec![page(1, None), page(2, None)]);
        assert_eq!(none.transcript_file(), None);
        let some = Records::Pages(vec![page(1, Some("trang một")), page(2, None)]);
        assert_eq!(some.transcript_file().as_deref(), Some("trang một\n\u{c}\n\n"));
    }
}
