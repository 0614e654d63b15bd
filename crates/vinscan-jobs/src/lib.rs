//! What the daemon consumes and produces, as types and pure functions:
//! - [`wire`]: the job message, the result event and the dead-letter record (serde types, each
//!   with a JSON Schema in `schemas/messages/`);
//! - [`message::classify`]: a Kafka payload → jobs (vinscan job messages or S3 event
//!   notifications) or a poison verdict with its reason;
//! - [`routing::Routes`]: which pipeline and output prefix an uploaded object goes to;
//! - [`kinds::pipeline_error`]: storage failures as the pipeline's error kinds;
//! - [`keys::job_output_key`]: a deterministic output key per job that cannot escape its
//!   prefix, so a redelivered job rewrites the same object.
//!
//! Architecture invariant: no IO and no broker client here; `vinscan-daemon` builds on these
//! (it names `vinscan-storage` for its plain-data `S3Uri`, `ObjectVersion` and error kinds,
//! and `vinscan-core` for the pipeline's `ErrorKind`).

pub mod keys;
pub mod kinds;
pub mod message;
mod object;
pub mod routing;
pub mod schedule;
pub mod wire;

pub use message::{Job, Poison, classify};
pub use object::ObjectRef;
pub use wire::{
    DeadLetter, ErrorInfo, Excerpt, JobMessage, JobStatus, JobTimings, OriginalMessage, ResultEvent,
    ReviewVerdict, SourceSpec, VersionedSource,
};
