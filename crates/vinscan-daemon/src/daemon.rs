//! What every task of a running daemon shares: its configuration and ports, its metrics and
//! readiness, and the stop signal with its reason.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use vinscan_core::{Cancellation, Catalog, Extractor, VisionModel};
use vinscan_jobs::routing::Routes;
use vinscan_storage::BucketStores;

use crate::config::ServeConfig;
use crate::metrics::Metrics;
use crate::ports::Publisher;
use crate::readiness::{Check, Readiness};

/// Why the daemon stops taking work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// Still running.
    No,
    /// SIGTERM/SIGINT (or a caller's request): finish what can be finished, exit 0.
    Requested,
    /// This process can no longer make progress (the engine is gone, the broker refuses the
    /// records, a job task panicked): stop, leave the unfinished work for redelivery, exit
    /// non-zero so the orchestrator restarts it.
    Fault(String),
}

/// The ports and state a daemon's tasks share.
pub struct Daemon {
    pub config: ServeConfig,
    pub routes: Routes,
    pub catalog: Catalog,
    pub extractor: Arc<Extractor>,
    pub model: Arc<dyn VisionModel>,
    pub stores: Arc<dyn BucketStores>,
    pub publisher: Arc<dyn Publisher>,
    pub metrics: Arc<Metrics>,
    pub readiness: Arc<Readiness>,
    /// Raised when the grace period is over: inference in flight stops at its next step.
    pub cancel: Cancellation,
    stop: watch::Sender<Stop>,
    /// How many jobs are held by a systemic fault.
    held: watch::Sender<usize>,
    /// A message started again after an unfinished start (a suspect: the process may have
    /// died on it) runs alone, holding this for writing; every other message holds it for
    /// reading. So a suspect that kills the process again has only its own start counted, and
    /// a message that merely shared a crash with it finishes on its next, lone, run.
    pub(crate) isolation: tokio::sync::RwLock<()>,
}

impl Daemon {
    /// A daemon over these ports; nothing runs until the `run` module's loop is given it.
    #[allow(clippy::too_many_arguments)] // the ports, each named: a builder would hide none of them
    pub fn new(
        config: ServeConfig,
        routes: Routes,
        catalog: Catalog,
        extractor: Arc<Extractor>,
        model: Arc<dyn VisionModel>,
        stores: Arc<dyn BucketStores>,
        publisher: Arc<dyn Publisher>,
        metrics: Arc<Metrics>,
        readiness: Arc<Readiness>,
    ) -> Self {
        // no job is held yet
        readiness.set(Check::Jobs, true);
        Self {
            config,
            routes,
            catalog,
            extractor,
            model,
            stores,
            publisher,
            metrics,
            readiness,
            cancel: Cancellation::new(),
            stop: watch::channel(Stop::No).0,
            held: watch::channel(0).0,
            isolation: tokio::sync::RwLock::new(()),
        }
    }

    /// A job met a systemic fault: a failure that is not the job's (the store unreachable past
    /// the retry budget, access denied, the output bucket missing, the deployment's settings
    /// wrong). It is not dead-lettered: it waits and tries again, and while any job is held the
    /// daemon takes no new messages (its partitions paused) and `/readyz` is false
    /// ([`Check::Jobs`]). Each `hold` is paired with one [`release`](Self::release).
    pub fn hold(&self, job_id: &str, error: &vinscan_core::Error) {
        let mut first = false;
        // readiness follows the count inside the update, so a release and a hold racing
        // cannot leave it true with a job held
        self.held.send_modify(|n| {
            first = *n == 0;
            *n += 1;
            self.readiness.set(Check::Jobs, false);
        });
        self.metrics.held.inc();
        if first {
            tracing::warn!(job_id, kind = %error.kind(), error = %error, "systemic fault: the work in flight waits and no new message is taken until it clears");
        }
    }

    /// The held job is done with the fault (it succeeded, failed for its own reasons or was
    /// abandoned); the last release makes the daemon take messages again.
    pub fn release(&self) {
        let mut last = false;
        self.held.send_modify(|n| {
            *n = n.saturating_sub(1);
            last = *n == 0;
            if last {
                self.readiness.set(Check::Jobs, true);
            }
        });
        self.metrics.held.dec();
        if last {
            tracing::info!("the systemic fault cleared: taking messages again");
        }
    }

    /// Whether a job is held by a systemic fault.
    pub fn holding(&self) -> bool {
        *self.held.borrow() > 0
    }

    /// Follows the number of held jobs (the consume loop pauses and resumes on it).
    pub fn watch_held(&self) -> watch::Receiver<usize> {
        self.held.subscribe()
    }

    /// Asks the daemon to stop as on SIGTERM.
    pub fn request_stop(&self) {
        self.stop.send_if_modified(|s| {
            let changed = *s == Stop::No;
            if changed {
                *s = Stop::Requested;
            }
            changed
        });
    }

    /// Stops the daemon because this process cannot go on (logged at ERROR once): readiness
    /// turns false at once and the exit code will be non-zero.
    pub fn fault(&self, why: &str) {
        self.readiness.stop();
        let first = self.stop.send_if_modified(|s| {
            let changed = !matches!(s, Stop::Fault(_));
            if changed {
                *s = Stop::Fault(why.to_owned());
            }
            changed
        });
        if first {
            tracing::error!(
                reason = why,
                "stopping: this daemon cannot make progress; unfinished work is left for redelivery"
            );
        }
    }

    /// The current stop state.
    pub fn stop_state(&self) -> Stop {
        self.stop.borrow().clone()
    }

    pub fn is_stopping(&self) -> bool {
        *self.stop.borrow() != Stop::No
    }

    /// Waits until the daemon is asked to stop.
    pub async fn stopped(&self) {
        let mut rx = self.stop.subscribe();
        let _ = rx.wait_for(|s| *s != Stop::No).await;
    }

    /// Sleeps `d`, or less when the daemon stops; false when it stops.
    pub async fn pause(&self, d: Duration) -> bool {
        if self.is_stopping() {
            return false;
        }
        tokio::select! {
            _ = tokio::time::sleep(d) => !self.is_stopping(),
            _ = self.stopped() => false,
        }
    }
}
