//! The daemon's loop: take messages while fewer than `max_in_flight` are in progress (beyond
//! that the source is paused, but still polled, so the member stays in its group), give each a
//! task with a [`DeliveryGuard`], and probe readiness. On a stop — a signal, or a fault that
//! needs a restart — take no more messages, give the work in flight the grace period, then
//! cancel inference in flight, abandon what is left, commit and leave the group off the async
//! threads, and report how the daemon ended.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use vinscan_storage::StorageErrorKind;

use crate::daemon::{Daemon, Stop};
use crate::guard::DeliveryGuard;
use crate::handler::{Handled, handle};
use crate::ports::{Delivery, JobSource};
use crate::readiness::Check;

/// How long cancelled work may take to notice before its task is dropped (its delivery is
/// abandoned either way), and how long closing the source and flushing the publisher may take.
const AFTER_GRACE: Duration = Duration::from_secs(2);

/// How the daemon ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// Stopped on request: exit 0.
    Stopped,
    /// Stopped because it could not make progress: exit non-zero so it is restarted.
    Fault(String),
}

/// Runs the daemon over `source` until it stops; see the module docs.
pub async fn run(daemon: Arc<Daemon>, source: Arc<dyn JobSource>) -> Exit {
    let probes = tokio::spawn(probe_readiness(daemon.clone(), source.clone()));
    let mut tasks = JoinSet::new();
    consume(&daemon, &source, &mut tasks).await;
    drain(&daemon, &source, &mut tasks).await;
    probes.abort();
    close(&daemon, &source).await;
    match daemon.stop_state() {
        Stop::Fault(why) => Exit::Fault(why),
        Stop::No | Stop::Requested => Exit::Stopped,
    }
}

/// How many times the message started before; 1 when the source cannot say (treated as a
/// suspect: it runs alone, so a crash is not shared).
async fn prior_starts(source: Arc<dyn JobSource>, d: &Delivery) -> u32 {
    let id = d.id.clone();
    match tokio::task::spawn_blocking(move || source.starts(&id)).await {
        Ok(Ok(n)) => n,
        _ => 1,
    }
}

/// Records the message's start before its work (so a crash during the work is counted) and
/// returns its starts. When the broker cannot record it, the work goes ahead counted as
/// `prior + 1`: a start that is not durable only delays the `crashed` verdict, a refused
/// start would stall the partition.
async fn record_start(daemon: &Daemon, source: Arc<dyn JobSource>, d: &Delivery, prior: u32) -> u32 {
    let id = d.id.clone();
    match tokio::task::spawn_blocking(move || source.record_start(&id)).await {
        Ok(Ok(n)) => {
            if n > 1 {
                tracing::warn!(topic = %d.id.topic, partition = d.id.partition, offset = d.id.offset, starts = n, max_starts = daemon.config.daemon.max_starts, "message started again after an earlier start never finished");
            }
            n
        }
        Ok(Err(e)) => {
            tracing::warn!(topic = %d.id.topic, partition = d.id.partition, offset = d.id.offset, error = %e, "could not record the message's start");
            prior + 1
        }
        Err(_) => prior + 1,
    }
}

fn set_paused(daemon: &Daemon, source: &dyn JobSource, paused: bool) {
    match source.set_paused(paused) {
        Ok(()) => {
            daemon.metrics.paused.set(i64::from(paused));
            tracing::debug!(paused, "consumption paused or resumed");
        }
        Err(e) => tracing::warn!(error = %e, paused, "pause or resume failed"),
    }
}

async fn consume(daemon: &Arc<Daemon>, source: &Arc<dyn JobSource>, tasks: &mut JoinSet<()>) {
    let max = daemon.config.daemon.max_in_flight;
    let mut paused = false;
    let mut consume_backoff = Duration::from_millis(200);
    let mut held = daemon.watch_held();
    loop {
        // paused while `max_in_flight` messages are worked on (backpressure) and while a
        // systemic fault holds a job; polling goes on either way
        let pause = tasks.len() >= max || daemon.holding();
        if pause != paused {
            set_paused(daemon, source.as_ref(), pause);
            paused = pause;
        }
        tokio::select! {
            biased;
            () = daemon.stopped() => return,
            Ok(()) = held.changed() => {}
            Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                if let Err(e) = joined
                    && e.is_panic()
                {
                    // its guard abandoned the message; this process cannot be trusted to redo it
                    daemon.fault(&format!("a job task panicked: {e}"));
                }
            }
            r = source.recv() => match r {
                Ok(d) => {
                    daemon.metrics.messages.inc();
                    let guard = DeliveryGuard::new(source.clone(), daemon.metrics.clone(), d.id.clone());
                    let worker = daemon.clone();
                    let starter = source.clone();
                    // (a message fetched before a pause still arrives: it is worked on, and
                    // waits out a systemic fault like the others)
                    tasks.spawn(async move {
                        // a suspect (started before, never finished) runs alone; its start is
                        // recorded once it has its turn, so waiting is never counted
                        let prior = prior_starts(starter.clone(), &d).await;
                        let (alone, shared) = if prior > 0 {
                            (Some(worker.isolation.write().await), None)
                        } else {
                            (None, Some(worker.isolation.read().await))
                        };
                        // a stop while it waited: never started, left for redelivery
                        let handled = if worker.is_stopping() {
                            Handled::Abandoned
                        } else {
                            let starts = record_start(&worker, starter, &d, prior).await;
                            handle(&worker, &d, starts).await
                        };
                        drop((alone, shared));
                        match handled {
                            Handled::Finished => guard.finish(),
                            Handled::Abandoned => guard.abandon(),
                        }
                    });
                }
                // refused for good (not authorised for the topic or group): no message will
                // ever come; stop loudly instead of polling forever while looking ready
                Err(e) if !e.is_retryable() => daemon.fault(&format!("the broker refuses to deliver: {e}")),
                Err(e) => {
                    // back off (0.2 s doubling to 2 s) so a lasting fault (refused credentials,
                    // no broker) is not logged five times a second
                    tracing::warn!(error = %e, "consume error");
                    // (cut short by a stop)
                    daemon.pause(consume_backoff).await;
                    consume_backoff = (consume_backoff * 2).min(Duration::from_secs(2));
                    continue;
                }
            },
        }
        consume_backoff = Duration::from_millis(200);
        daemon.metrics.in_flight.set(tasks.len() as i64);
    }
}

/// After a stop: no new work; the work in flight gets the grace period, then is cancelled.
async fn drain(daemon: &Arc<Daemon>, source: &Arc<dyn JobSource>, tasks: &mut JoinSet<()>) {
    let grace = daemon.config.shutdown_grace();
    tracing::info!(in_flight = tasks.len(), grace_s = grace.as_secs(), stop = ?daemon.stop_state(), "stopping");
    daemon.readiness.stop();
    set_paused(daemon, source.as_ref(), true);
    let deadline = tokio::time::Instant::now() + grace;
    loop {
        tokio::select! {
            joined = tasks.join_next() => match joined {
                None => return,
                Some(Err(e)) if e.is_panic() => daemon.fault(&format!("a job task panicked: {e}")),
                Some(_) => {}
            },
            // keep serving the source (rebalances); a prefetched message that still arrives is
            // abandoned (its guard drops) for redelivery
            r = source.recv() => match r {
                Ok(d) => drop(DeliveryGuard::new(source.clone(), daemon.metrics.clone(), d.id)),
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            },
            () = tokio::time::sleep_until(deadline) => break,
        }
    }
    tracing::warn!(
        in_flight = tasks.len(),
        "grace period over: cancelling and abandoning unfinished work"
    );
    daemon.cancel.cancel();
    let settle = tokio::time::sleep(AFTER_GRACE);
    tokio::pin!(settle);
    loop {
        tokio::select! {
            joined = tasks.join_next() => if joined.is_none() { return },
            () = &mut settle => break,
        }
    }
    // dropping a task drops its guard: the delivery is abandoned
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
}

/// Commits and leaves the group, and flushes the publisher: blocking calls, off the async
/// threads, each bounded.
async fn close(daemon: &Arc<Daemon>, source: &Arc<dyn JobSource>) {
    let s = source.clone();
    match tokio::time::timeout(AFTER_GRACE * 2, tokio::task::spawn_blocking(move || s.close())).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => {
            tracing::warn!(error = %e, "final commit failed; finished work since the last commit will be redone")
        }
        _ => {
            tracing::warn!("leaving the group timed out; finished work since the last commit will be redone")
        }
    }
    let p = daemon.publisher.clone();
    match tokio::time::timeout(
        AFTER_GRACE,
        tokio::task::spawn_blocking(move || p.flush(AFTER_GRACE)),
    )
    .await
    {
        Ok(Ok(Ok(()))) => {}
        _ => tracing::warn!("flushing the publisher failed or timed out"),
    }
    tracing::info!("stopped");
}

/// Every two seconds: does the model's engine serve, does the broker answer (and how far behind
/// is the group), does the default output bucket answer. A model that is gone stops the daemon.
async fn probe_readiness(daemon: Arc<Daemon>, source: Arc<dyn JobSource>) {
    let bucket = daemon.config.daemon.default_output.bucket().to_owned();
    loop {
        match daemon.model.health() {
            Ok(()) => {
                daemon.readiness.set(Check::Model, true);
            }
            Err(e) => {
                daemon.readiness.set(Check::Model, false);
                daemon.fault(&format!("the model is unavailable: {e}"));
            }
        }
        let s = source.clone();
        let broker = tokio::task::spawn_blocking(move || s.probe(Duration::from_secs(3))).await;
        let broker_ok = match broker {
            Ok(Ok(lag)) => {
                daemon.metrics.consumer_lag.set(lag);
                true
            }
            Ok(Err(e)) => {
                if daemon.readiness.get(Check::Broker) {
                    tracing::warn!(error = %e, "broker not answering");
                }
                false
            }
            Err(_) => false,
        };
        daemon.readiness.set(Check::Broker, broker_ok);
        let store = daemon.stores.bucket(&bucket);
        let store_ok =
            match tokio::time::timeout(Duration::from_secs(5), store.head("vinscan-readyz-probe")).await {
                Ok(Ok(_)) => true,
                Ok(Err(e)) => e.kind == StorageErrorKind::NotFound,
                Err(_) => false,
            };
        if daemon.readiness.set(Check::Store, store_ok) && !store_ok {
            tracing::warn!(bucket = %bucket, "output bucket not answering");
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}
