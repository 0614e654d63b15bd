//! A job attempt's time limit. The extraction gets a cancellation of its own, raised when the
//! daemon's is (shutdown) or when the attempt has run past its limit: the pipeline's
//! `max_seconds_per_page` times the pages opened so far, capped by the daemon's
//! `job_timeout_s` (the cap alone until the first document is open). The model stops at its
//! next decoding step; the caller turns that cancellation into a `Timeout`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use vinscan_core::Cancellation;

/// How often the watcher looks at the clock and the daemon's cancellation.
const TICK: Duration = Duration::from_millis(100);

/// A running attempt's clock; dropping it stops the watcher.
#[derive(Debug)]
pub(crate) struct Deadline {
    cancel: Cancellation,
    fired: Arc<AtomicBool>,
    limit_ms: Arc<AtomicU64>,
    started: Instant,
    watcher: tokio::task::JoinHandle<()>,
}

impl Deadline {
    /// Starts the clock for an attempt capped at `cap`; `daemon_cancel` (the shutdown's
    /// cancellation) is passed through. Call inside the runtime.
    pub(crate) fn start(daemon_cancel: Cancellation, cap: Duration) -> Self {
        let cancel = Cancellation::new();
        let fired = Arc::new(AtomicBool::new(false));
        let limit_ms = Arc::new(AtomicU64::new(cap.as_millis() as u64));
        let started = Instant::now();
        let watcher = tokio::spawn({
            let (cancel, fired, limit_ms) = (cancel.clone(), fired.clone(), limit_ms.clone());
            async move {
                loop {
                    tokio::time::sleep(TICK).await;
                    if daemon_cancel.is_cancelled() {
                        cancel.cancel();
                        return;
                    }
                    if started.elapsed().as_millis() as u64 >= limit_ms.load(Ordering::SeqCst) {
                        fired.store(true, Ordering::SeqCst);
                        cancel.cancel();
                        return;
                    }
                }
            }
        });
        Self {
            cancel,
            fired,
            limit_ms,
            started,
            watcher,
        }
    }

    /// The cancellation the extraction checks.
    pub(crate) fn cancellation(&self) -> Cancellation {
        self.cancel.clone()
    }

    /// The limit's updater for the blocking extraction, which learns the page count.
    pub(crate) fn budget(&self, cap: Duration, per_page: Duration) -> PageBudget {
        PageBudget {
            limit_ms: self.limit_ms.clone(),
            cap_ms: cap.as_millis() as u64,
            per_page_ms: per_page.as_millis() as u64,
            pages: 0,
        }
    }

    /// Whether the limit (not a shutdown) cancelled the attempt.
    pub(crate) fn timed_out(&self) -> bool {
        self.fired.load(Ordering::SeqCst)
    }

    pub(crate) fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// The limit now in force.
    pub(crate) fn limit(&self) -> Duration {
        Duration::from_millis(self.limit_ms.load(Ordering::SeqCst))
    }
}

impl Drop for Deadline {
    fn drop(&mut self) {
        self.watcher.abort();
    }
}

/// Raises an attempt's limit as documents are opened and their pages counted.
#[derive(Debug)]
pub(crate) struct PageBudget {
    limit_ms: Arc<AtomicU64>,
    cap_ms: u64,
    per_page_ms: u64,
    pages: u64,
}

impl PageBudget {
    /// `pages` more pages: the limit becomes the time for all pages so far, at most the cap.
    pub(crate) fn add_pages(&mut self, pages: u32) {
        self.pages += u64::from(pages);
        let limit = self.per_page_ms.saturating_mul(self.pages).min(self.cap_ms);
        self.limit_ms.store(limit, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_limit_is_the_pages_time_capped_and_fires_once_passed() {
        let d = Deadline::start(Cancellation::new(), Duration::from_secs(10));
        let mut budget = d.budget(Duration::from_secs(10), Duration::from_secs(3));
        assert_eq!(
            d.limit(),
            Duration::from_secs(10),
            "the cap until pages are known"
        );
        budget.add_pages(2);
        assert_eq!(d.limit(), Duration::from_secs(6));
        budget.add_pages(5);
        assert_eq!(d.limit(), Duration::from_secs(10), "capped");
        assert!(!d.cancellation().is_cancelled());

        let d = Deadline::start(Cancellation::new(), Duration::from_millis(150));
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(d.cancellation().is_cancelled() && d.timed_out());

        let shutdown = Cancellation::new();
        let d = Deadline::start(shutdown.clone(), Duration::from_secs(60));
        shutdown.cancel();
        tokio::time::sleep(Duration::from_millis(1000)).await;
        assert!(
            d.cancellation().is_cancelled() && !d.timed_out(),
            "a shutdown is not a timeout"
        );
    }
}
