//! One consumed message, start to finish: classify it, run its jobs, write each job's result
//! event (and dead letter), and only then let its offset be committed. These are the delivery
//! rules, each with a table-driven test (`tests/delivery_rules.rs`):
//!
//! - a job that is done gets its output object, then its result event (`ok`);
//! - a job that fails for good (not found, corrupt, too large, invalid output, a retryable
//!   failure past its budget) gets a dead-letter record, then its result event
//!   (`dead_lettered`);
//! - a job whose source changed before it was read gets a result event (`superseded`), no
//!   output and no dead letter;
//! - a message that is not a job gets a dead-letter record (`poison`) carrying a bounded copy
//!   of it;
//! - a failure of this process rather than of the job — the engine is gone (`Unavailable`),
//!   the broker refuses a record for good — leaves the message undone (never dead-lettered)
//!   and stops the daemon, which exits non-zero so it is restarted and the message redelivered;
//! - a message whose work the shutdown interrupts is left undone, for redelivery;
//! - a job past its time limit is cancelled (decoding stops at its next step), retried once,
//!   then dead-lettered (`timeout`); the other messages in flight go on meanwhile;
//! - a message started more than `max_starts` times without finishing (the process died
//!   working on it) is not started again: each of its jobs gets a dead-letter record
//!   (`crashed`, with the starts) and a `dead_lettered` result event, so its partition moves on.
//!
//! A message is finished only when every one of its records is on the broker.

use std::sync::Arc;
use std::time::Instant;

use tracing::Instrument;
use vinscan_core::ErrorKind;
use vinscan_jobs::{DeadLetter, ErrorInfo, Job, JobStatus, OriginalMessage, ResultEvent, classify};

use crate::daemon::Daemon;
use crate::job::{Ended, backoff, run_with_retries};
use crate::metrics::{Outcome, Stage};
use crate::output::now_rfc3339;
use crate::ports::Delivery;

/// What became of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handled {
    /// Every record it called for is on the broker: commit it.
    Finished,
    /// Left undone, for redelivery.
    Abandoned,
}

/// Why a record could not be sent.
enum Unsent {
    /// The daemon stopped first.
    Stopped,
    /// The broker refused it for good; the daemon has been told to stop.
    Refused,
}

/// Sends a record until the broker has it. Retries only what retrying can fix; a record the
/// broker refuses for good (too large, not authorised) stops the daemon instead of spinning.
async fn publish(daemon: &Daemon, topic: &str, key: &str, payload: &[u8]) -> Result<(), Unsent> {
    let t = Instant::now();
    let mut delays = backoff(daemon);
    loop {
        match daemon.publisher.send(topic, key, payload).await {
            Ok(()) => {
                daemon.metrics.stage(Stage::Publish, t.elapsed().as_secs_f64());
                return Ok(());
            }
            Err(e) if !e.is_retryable() => {
                daemon.fault(&format!("the broker refused a record for {topic} for good: {e}"));
                return Err(Unsent::Refused);
            }
            Err(e) => {
                let delay = delays.next().unwrap_or(std::time::Duration::from_secs(1));
                tracing::warn!(topic, error = %e, delay_ms = delay.as_millis() as u64, "publish failed, retrying");
                if !daemon.pause(delay).await {
                    return Err(Unsent::Stopped);
                }
            }
        }
    }
}

async fn publish_json<T: serde::Serialize>(
    daemon: &Daemon,
    topic: &str,
    key: &str,
    record: &T,
) -> Result<(), Unsent> {
    match serde_json::to_vec(record) {
        Ok(bytes) => publish(daemon, topic, key, &bytes).await,
        Err(e) => {
            daemon.fault(&format!("cannot serialise a record: {e}"));
            Err(Unsent::Refused)
        }
    }
}

fn original(d: &Delivery) -> OriginalMessage {
    OriginalMessage::new(
        &d.id.topic,
        d.id.partition,
        d.id.offset,
        d.timestamp_ms,
        d.key.as_deref(),
        d.payload.as_deref().unwrap_or_default(),
    )
}

async fn dead_letter(daemon: &Daemon, d: &Delivery, record: DeadLetter) -> Result<(), Unsent> {
    let key = record
        .job_id
        .clone()
        .unwrap_or_else(|| format!("{}-{}-{}", d.id.topic, d.id.partition, d.id.offset));
    publish_json(daemon, &daemon.config.kafka.dead_letter_topic, &key, &record).await
}

/// Handles one message to its end; see the module docs for the rules. `starts`: how many
/// times the message has started, this time included ([`crate::JobSource::record_start`]).
pub async fn handle(daemon: &Arc<Daemon>, d: &Delivery, starts: u32) -> Handled {
    let Some(payload) = d.payload.as_deref() else {
        tracing::info!(topic = %d.id.topic, partition = d.id.partition, offset = d.id.offset, "tombstone (null value) skipped");
        daemon.metrics.outcome(Outcome::Tombstone);
        return Handled::Finished;
    };
    let jobs = match classify(payload, &daemon.routes) {
        Ok(jobs) => jobs,
        Err(poison) => {
            tracing::warn!(topic = %d.id.topic, partition = d.id.partition, offset = d.id.offset, reason = %poison, bytes = payload.len(), "poison message");
            let now = now_rfc3339();
            let record = DeadLetter {
                job_id: None,
                error: ErrorInfo {
                    kind: "poison".into(),
                    message: poison.reason,
                },
                attempts: 0,
                first_attempt_at: now.clone(),
                failed_at: now,
                original: original(d),
            };
            return match dead_letter(daemon, d, record).await {
                Ok(()) => {
                    daemon.metrics.outcome(Outcome::Poison);
                    Handled::Finished
                }
                Err(_) => Handled::Abandoned,
            };
        }
    };
    if jobs.is_empty() {
        daemon.metrics.outcome(Outcome::Ignored);
        return Handled::Finished;
    }
    let max_starts = daemon.config.daemon.max_starts;
    for job in &jobs {
        let ended = if starts > max_starts {
            let e = vinscan_core::Error::new(
                ErrorKind::Crashed,
                format!(
                    "the process died each of the {} times it worked on this message (a native abort or out of memory); not started again (daemon.max_starts = {max_starts})",
                    starts - 1
                ),
            );
            Ended::Failed(e, starts - 1, now_rfc3339())
        } else {
            let span = tracing::info_span!("job", job_id = %job.job_id, pipeline = %job.pipeline);
            run_with_retries(daemon, job).instrument(span).await
        };
        if record_job(daemon, d, job, ended).await.is_err() {
            return Handled::Abandoned;
        }
    }
    Handled::Finished
}

fn event(job: &Job, status: JobStatus, attempts: u32) -> ResultEvent {
    ResultEvent {
        job_id: job.job_id.clone(),
        status,
        pipeline: job.pipeline.clone(),
        output: None,
        pages: None,
        review: None,
        error: None,
        sources: job.sources.iter().map(|s| s.uri()).collect(),
        attempts,
        timings_ms: None,
        metadata: job.metadata.clone(),
        finished_at: now_rfc3339(),
    }
}

/// Publishes what a job's end calls for. `Err` when the message must be left undone.
async fn record_job(daemon: &Daemon, d: &Delivery, job: &Job, ended: Ended) -> Result<(), Unsent> {
    let results = &daemon.config.kafka.results_topic;
    match ended {
        Ended::Done(out, attempts) => {
            let mut ev = event(job, JobStatus::Ok, attempts);
            ev.output = Some(out.output.clone());
            ev.pages = Some(out.pages);
            ev.review = Some(vinscan_jobs::ReviewVerdict {
                needed: out.review_pages > 0,
                pages: out.review_pages,
            });
            ev.timings_ms = Some(out.timings);
            publish_json(daemon, results, &job.job_id, &ev).await?;
            daemon.metrics.outcome(Outcome::Ok);
            daemon
                .metrics
                .stage(Stage::Job, out.timings.total_ms as f64 / 1000.0);
            tracing::info!(job_id = %job.job_id, output = %out.output, pages = out.pages, attempts, total_ms = out.timings.total_ms, "job done");
        }
        Ended::Abandoned => return Err(Unsent::Stopped),
        Ended::Failed(e, _, _) if e.kind() == ErrorKind::Cancelled => return Err(Unsent::Stopped),
        Ended::Failed(e, _, _) if e.kind() == ErrorKind::Unavailable => {
            // not the job's fault: nothing is recorded, the message is redone after a restart
            daemon.fault(&format!("the model is unavailable: {e}"));
            return Err(Unsent::Refused);
        }
        Ended::Failed(e, attempts, _) if e.kind() == ErrorKind::Superseded => {
            let mut ev = event(job, JobStatus::Superseded, attempts);
            ev.error = Some(ErrorInfo {
                kind: e.kind().as_str().into(),
                message: e.message().into(),
            });
            publish_json(daemon, results, &job.job_id, &ev).await?;
            daemon.metrics.outcome(Outcome::Superseded);
            tracing::info!(job_id = %job.job_id, reason = %e, "job superseded: a source changed before it was read");
        }
        Ended::Failed(e, attempts, first_at) => {
            tracing::warn!(job_id = %job.job_id, kind = %e.kind(), error = %e, attempts, "job dead-lettered");
            let error = ErrorInfo {
                kind: e.kind().as_str().into(),
                message: e.message().into(),
            };
            let record = DeadLetter {
                job_id: Some(job.job_id.clone()),
                error: error.clone(),
                attempts,
                first_attempt_at: first_at,
                failed_at: now_rfc3339(),
                original: original(d),
            };
            dead_letter(daemon, d, record).await?;
            let mut ev = event(job, JobStatus::DeadLettered, attempts);
            ev.error = Some(error);
            publish_json(daemon, results, &job.job_id, &ev).await?;
            daemon.metrics.outcome(Outcome::DeadLettered);
        }
    }
    Ok(())
}
