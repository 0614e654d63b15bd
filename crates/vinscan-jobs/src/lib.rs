//! What the daemon consumes and how it keeps its promises, as pure functions:
//! - [`message::classify`]: a Kafka payload → jobs (vinscan job messages or S3 event
//!   notifications) or a poison verdict with its reason;
//! - [`routing::Routes`]: which pipeline and output prefix an uploaded object goes to;
//! - [`keys::job_output_key`]: a deterministic output key per job that cannot escape its
//!   prefix, so a redelivered job rewrites the same object;
//! - [`offsets::PartitionOffsets`]: per-partition contiguous commit positions, so a slow job
//!   holds back later offsets and nothing is committed past unfinished work.
//!
//! Architecture invariant: no IO and no broker client here; `vinscan-kafka` and the daemon
//! build on these.

pub mod keys;
pub mod message;
pub mod offsets;
pub mod routing;

pub use message::{Job, ObjectRef, Poison, classify};
