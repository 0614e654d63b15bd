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
use crate::readiness::Readiness;

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
        }
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
