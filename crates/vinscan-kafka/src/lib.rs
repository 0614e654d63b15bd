//! Kafka for vinscan, through `rdkafka` (vendored librdkafka 2.12):
//! - [`JobConsumer`]: a consumer-group member that hands out [`Delivery`]s, tracks every
//!   in-flight offset per partition and commits only contiguous finished offsets (a slow job
//!   holds back later offsets), pauses and resumes its partitions for backpressure, and
//!   commits what is done when partitions are revoked;
//! - [`Publisher`]: a producer for result events and dead-letter records that
//!   reports delivery only once the broker acknowledged it;
//! - [`admin`]: topic creation and offset inspection, for `vinscan enqueue`, readiness and tests;
//! - [`PartitionOffsets`]: the pure per-partition bookkeeping behind the commits.
//!
//! Architecture invariant: this is the only crate that names rdkafka; it moves bytes and
//! offsets and knows nothing of documents, models or stores. Its types are plain data.

pub mod admin;
mod consumer;
mod context;
mod error;
mod offsets;
mod producer;
mod settings;
mod starts;

pub use consumer::{Delivery, DeliveryId, JobConsumer};
pub use error::{KafkaError, KafkaErrorKind};
pub use offsets::PartitionOffsets;
pub use producer::Publisher;
pub use settings::{KafkaSettings, MaskedProperties, is_secret};
