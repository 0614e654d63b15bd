//! The output of one page: the extraction and where it came from.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use vinscan_schema::{CheckResult, Correction};

use crate::review::Review;

/// One JSON object per page:
/// `{"source", "page", "pipeline", "schema", "data", "confidence", "checks", "corrections",
/// "review", "provenance"}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PageRecord {
    /// Where the document came from (a path or an object URL).
    pub source: String,
    /// 1-based page number.
    pub page: u32,
    pub pipeline: String,
    /// Repository-relative path of the schema `data` conforms to.
    pub schema: String,
    pub data: Value,
    /// Every leaf of `data`, keyed by JSON Pointer: the confidence in [0, 1] the model's token
    /// probabilities give it (`vinscan_core::confidence` says how). Empty when the model
    /// reports no probabilities.
    #[serde(default)]
    pub confidence: BTreeMap<String, f64>,
    /// The outcome of every check the schema declares (`x-vinscan-check`), in declaration
    /// order: `{pointer, check, status: pass|fail|warn|skipped, detail}`, `pointer` a JSON
    /// Pointer into `data`.
    #[serde(default)]
    pub checks: Vec<CheckResult>,
    /// Values in `data` a check replaced (`{pointer, printed, kept, source}`): an MRZ whose
    /// check digits pass overrides a printed ID number or date that disagrees with it.
    #[serde(default)]
    pub corrections: Vec<Correction>,
    /// Whether a person should look at this record, and why (the pipeline's `[review]` rules).
    #[serde(default)]
    pub review: Review,
    pub provenance: Provenance,
}

/// The shape of the records this vinscan writes, in `provenance.record_format`: 1 (absent in
/// the record) before per-field confidence, checks and review; 2 with them. `batch` reprocesses
/// an input whose outputs are in an older format.
pub const RECORD_FORMAT: u32 = 2;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Provenance {
    /// [`RECORD_FORMAT`] of the vinscan that wrote the record.
    #[serde(default = "first_format")]
    pub record_format: u32,
    pub source: String,
    pub source_sha256: String,
    pub source_format: String,
    pub page: u32,
    pub page_count: u32,
    pub pipeline: String,
    pub pipeline_sha256: String,
    pub schema_id: String,
    pub schema_sha256: String,
    pub model: ModelProvenance,
    pub vinscan_version: String,
    pub image: ImageProvenance,
    pub tiles: TilesProvenance,
    pub generation: GenerationProvenance,
    /// JSON pointers of values the normaliser changed.
    pub normalised: Vec<String>,
    pub timings_ms: Timings,
    /// RFC 3339 time the record was made.
    pub created_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelProvenance {
    pub name: Option<String>,
    pub file: String,
    pub sha256: String,
    pub mmproj_file: String,
    pub mmproj_sha256: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageProvenance {
    pub width: u32,
    pub height: u32,
    /// EXIF/TIFF orientation applied (absent when the page was already upright).
    pub orientation: Option<u8>,
    /// Render resolution, for PDF pages.
    pub dpi: Option<f32>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TilesProvenance {
    pub cols: u32,
    pub rows: u32,
    pub thumbnail: bool,
    /// Images the vision encoder saw (tiles + thumbnail).
    pub images: u32,
    /// The pipeline's budget and the one used after the projector's own limit.
    pub max_tiles_requested: u32,
    pub max_tiles_used: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GenerationProvenance {
    pub prompt_tokens: u32,
    pub image_tokens: u32,
    pub generated_tokens: u32,
    pub max_tokens: u32,
    pub stop: String,
    /// Forward passes of the LLM for the output (absent in records older than 0.1.0's batching).
    #[serde(default)]
    pub model_steps: u32,
    /// Output tokens forced by the grammar and fed without sampling.
    #[serde(default)]
    pub forced_tokens: u32,
    /// Prompt tokens whose KV cells were shared with earlier pages.
    #[serde(default)]
    pub reused_prompt_tokens: u32,
    /// The most pages decoded in one step with this one.
    #[serde(default)]
    pub peak_batch_pages: u32,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Timings {
    pub decode: f64,
    pub tiling: f64,
    pub encode_prefill: f64,
    pub generate: f64,
    pub sample: f64,
    /// Waiting for a sequence slot in the model.
    #[serde(default)]
    pub queue: f64,
    /// Of `sample`, computing token probabilities for per-field confidence.
    #[serde(default)]
    pub confidence: f64,
    pub validate: f64,
    pub total: f64,
}

fn first_format() -> u32 {
    1
}
