//! Batch runs: every file of a local folder, or object of an S3 prefix, through one pipeline
//! into a folder or an S3 prefix — what `vinscan batch` and `vinscan extract` do.
//!
//! - [`inputs`]: what a run reads, each input with the name it has in the manifest and the
//!   unique NFC name its outputs get; local folders are read as folders, not as buckets.
//! - [`document`]: one document's pages through the pipeline, a record per page
//!   ([`process_document`]) or one for the document ([`process_as_document`]).
//! - [`run`]: a run over many inputs, `parallel` at a time, resumable, with a manifest line per
//!   input found (ok, skipped, failed, unsupported).
//! - [`eval`]: records compared with labels (vinscan's JSON Lines or SROIE key files), exact
//!   match and character error rate per field (`vinscan eval`).
//! - [`export`]: records flattened into CSV files or an XLSX workbook (`vinscan export`).
//! - [`local`], [`resume`]: atomic local writes, bounded reads, and whether existing outputs
//!   still match.
//!
//! Architecture invariant: no native library and no concrete engine; the model comes through
//! [`ModelOnDemand`] (the binary loads llama.cpp on first use), stores through `ObjectStore`.

pub mod document;
pub mod eval;
pub mod export;
pub mod inputs;
pub mod local;
pub mod resume;
pub mod run;

use vinscan_core::{Error, VisionModel};

pub use document::{process_as_document, process_document};
pub use run::{Batch, ManifestEntry, Place, Progress, Summary};

/// The model of a run, loaded the first time a page needs it: a run that finds nothing to do
/// never loads it.
pub trait ModelOnDemand: Sync {
    /// The model, loading it on the first call. An error here stops the whole run.
    fn model(&self) -> Result<&dyn VisionModel, Error>;
    /// Whether it was loaded.
    fn loaded(&self) -> bool;
    /// sha256 of the model and projector files, which existing outputs must match to be reused.
    fn files_sha256(&self) -> (&str, &str);
}
