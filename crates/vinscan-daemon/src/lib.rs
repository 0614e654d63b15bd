//! The vinscan daemon as a library. A fleet of daemons in one Kafka consumer group turns job
//! messages and S3 upload events into output objects, result events and dead-letter records.
//!
//! - [`config`]: the serve configuration (TOML, `VINSCAN_<SECTION>_<KEY>` overrides), validated
//!   without IO.
//! - [`handler`]: one message to its end — the delivery rules (retry, dead-letter, ack).
//! - [`run`]: the loop with backpressure, readiness probes and shutdown.
//! - [`ops`]: `/metrics`, `/healthz`, `/readyz` on axum.
//! - [`ports`]: what it needs from outside, as traits of plain data: a [`JobSource`], a
//!   [`Publisher`], object stores ([`vinscan_storage::BucketStores`]) and the model
//!   ([`vinscan_core::VisionModel`]). [`kafka`] implements the first two over `vinscan-kafka`
//!   (feature `kafka`); [`testsuite`] has in-memory fakes of all four (feature `testsuite`).
//!
//! Architecture invariant: this crate names no native library and no concrete engine. Kafka
//! comes in through [`ports`] (its adapter behind the `kafka` feature), stores through
//! `BucketStores`, the model through `VisionModel`; only the binary chooses implementations.

pub mod config;
mod daemon;
mod deadline;
mod guard;
pub mod handler;
mod job;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod metrics;
pub mod ops;
pub mod output;
pub mod ports;
mod readiness;
mod run;
#[cfg(feature = "testsuite")]
pub mod testsuite;

use std::sync::Arc;

pub use config::{
    ConfigError, KAFKA_PROPERTY_ENV_PREFIX, MANAGED_KAFKA_PROPERTIES, ServeConfig, check_kafka_properties,
    kafka_properties_from_env,
};
pub use daemon::{Daemon, Stop};
pub use guard::DeliveryGuard;
pub use metrics::Metrics;
pub use ports::{Delivery, DeliveryId, JobSource, PortError, PortErrorKind, Publisher};
pub use readiness::{Check, Readiness};
pub use run::{Exit, run};

/// Runs the daemon until SIGTERM or SIGINT (then as [`Daemon::request_stop`]) or a fault.
pub async fn serve(daemon: Arc<Daemon>, source: Arc<dyn JobSource>) -> Exit {
    let signals = tokio::spawn(stop_on_signal(daemon.clone()));
    let exit = run(daemon, source).await;
    signals.abort();
    exit
}

async fn stop_on_signal(daemon: Arc<Daemon>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
    else {
        daemon.fault("cannot install the SIGTERM/SIGINT handlers");
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM"),
        _ = int.recv() => tracing::info!("SIGINT"),
    }
    daemon.request_stop();
}
