//! Readiness: the checks `/readyz` answers from, each set by whoever observes it (the model
//! port's health, the broker probe, the output-store probe), plus the stop flag a daemon raises
//! when it can no longer make progress and is about to exit.

use std::sync::atomic::{AtomicBool, Ordering};

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use crate::metrics::CheckLabels;

/// What readiness depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Check {
    /// The model is loaded and its engine serves ([`vinscan_core::VisionModel::health`]).
    Model,
    /// The broker answers the job source's probe.
    Broker,
    /// The default output bucket answers.
    Store,
    /// No job is held by a systemic fault ([`crate::Daemon::hold`]).
    Jobs,
}

impl Check {
    pub const ALL: [Check; 4] = [Check::Model, Check::Broker, Check::Store, Check::Jobs];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Model => "model",
            Self::Broker => "broker",
            Self::Store => "store",
            Self::Jobs => "jobs",
        }
    }
}

/// The daemon's readiness, shared by the probes, the loop and the operations endpoint.
#[derive(Debug)]
pub struct Readiness {
    checks: [AtomicBool; 4],
    /// Raised when the daemon stops taking work for good (shutdown, or a fault that needs a
    /// restart): never ready again.
    stopping: AtomicBool,
    gauges: Family<CheckLabels, Gauge>,
}

impl Readiness {
    /// Not ready until every check has passed once; `gauges` is the `vinscan_ready{check}`
    /// family it keeps in step.
    pub fn new(gauges: Family<CheckLabels, Gauge>) -> Self {
        Self {
            checks: Default::default(),
            stopping: AtomicBool::new(false),
            gauges,
        }
    }

    fn index(check: Check) -> usize {
        match check {
            Check::Model => 0,
            Check::Broker => 1,
            Check::Store => 2,
            Check::Jobs => 3,
        }
    }

    /// Records a check's result; returns whether it changed.
    pub fn set(&self, check: Check, ok: bool) -> bool {
        let before = self.checks[Self::index(check)].swap(ok, Ordering::SeqCst);
        self.gauges
            .get_or_create(&CheckLabels {
                check: check.as_str(),
            })
            .set(i64::from(ok));
        before != ok
    }

    pub fn get(&self, check: Check) -> bool {
        self.checks[Self::index(check)].load(Ordering::SeqCst)
    }

    /// The daemon stops taking work: not ready from now on.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Every check passes and the daemon is not stopping.
    pub fn is_ready(&self) -> bool {
        !self.is_stopping() && Check::ALL.iter().all(|c| self.get(*c))
    }

    /// `model=true broker=false store=true jobs=true stopping=false`, for `/readyz`'s body.
    pub fn describe(&self) -> String {
        let mut s: Vec<String> = Check::ALL
            .iter()
            .map(|c| format!("{}={}", c.as_str(), self.get(*c)))
            .collect();
        s.push(format!("stopping={}", self.is_stopping()));
        s.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_every_check_passes_and_never_after_stopping() {
        let r = Readiness::new(Family::default());
        assert!(!r.is_ready());
        for c in Check::ALL {
            assert!(r.set(c, true));
        }
        assert!(r.is_ready());
        assert!(!r.set(Check::Broker, true), "unchanged");
        r.set(Check::Model, false);
        assert!(!r.is_ready());
        assert_eq!(
            r.describe(),
            "model=false broker=true store=true jobs=true stopping=false"
        );
        r.set(Check::Model, true);
        r.stop();
        assert!(!r.is_ready());
    }
}
