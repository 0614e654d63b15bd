//! A delivery's finalizer (Vector's finalizer-on-drop): whatever happens to the task working on
//! a message — it returns, it is aborted, it panics — the message is either finished or
//! abandoned, exactly once, so its partition's commits never freeze on it.

use std::sync::Arc;

use crate::metrics::{Metrics, Outcome};
use crate::ports::{DeliveryId, JobSource};

/// Abandons its delivery on drop unless [`finish`](Self::finish) was called.
pub struct DeliveryGuard {
    source: Arc<dyn JobSource>,
    metrics: Arc<Metrics>,
    id: Option<DeliveryId>,
}

impl DeliveryGuard {
    pub fn new(source: Arc<dyn JobSource>, metrics: Arc<Metrics>, id: DeliveryId) -> Self {
        Self {
            source,
            metrics,
            id: Some(id),
        }
    }

    /// The message's outcome is durable: commit it.
    pub fn finish(mut self) {
        if let Some(id) = self.id.take() {
            self.source.finish(&id);
        }
    }

    /// Leaves the message undone, for redelivery.
    pub fn abandon(mut self) {
        self.give_up();
    }

    fn give_up(&mut self) {
        if let Some(id) = self.id.take() {
            self.metrics.outcome(Outcome::Abandoned);
            tracing::info!(topic = %id.topic, partition = id.partition, offset = id.offset, "message abandoned uncommitted");
            self.source.abandon(&id);
        }
    }
}

impl Drop for DeliveryGuard {
    fn drop(&mut self) {
        self.give_up();
    }
}
