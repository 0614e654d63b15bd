//! The output of one page: the extraction and where it came from.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use vinscan_schema::{CheckResult, Correction};

use crate::grounding::FieldGrounding;
use crate::review::Review;
use crate::transcript::{PageTranscript, TranscriptProvenance};

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
    /// Where each string of `data` (keyed by JSON Pointer) is in the page's transcript, when
    /// the pipeline makes one: `{found, score, source, page, bbox}` (`vinscan_core::grounding`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub grounding: BTreeMap<String, FieldGrounding>,
    pub provenance: Provenance,
    /// The page's transcript when the pipeline makes one: written beside the record as
    /// `<name>.txt`, never inside it (its provenance is in `provenance.transcript`).
    #[serde(skip)]
    pub transcript: Option<PageTranscript>,
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
    /// How the page's transcript was made; absent when the pipeline makes none or the page
    /// has none (`transcriber = "pdf-text"` on a scan).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transcript: Option<TranscriptProvenance>,
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
    /// When the projector is a repaired copy (`vinscan model repair`: the class token's
    /// position row moved last): the sha256 of the published file it was made from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mmproj_repaired_from: Option<String>,
}

/// The text stage's model (the `text_stage` module).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TextModelProvenance {
    /// `general.name` of the GGUF, if any.
    pub name: Option<String>,
    pub file: String,
    pub sha256: String,
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

impl Timings {
    /// One read's timings: decoding and tiling measured by the caller, the model's stages from
    /// its own `timings`, then validation and the total (milliseconds each).
    pub fn of_read(
        decode: f64,
        tiling: f64,
        model: &crate::model::ModelTimings,
        validate: f64,
        total: f64,
    ) -> Self {
        Self {
            decode,
            tiling,
            encode_prefill: model.encode_prefill_ms,
            generate: model.generate_ms,
            sample: model.sample_ms,
            queue: model.queue_ms,
            confidence: model.confidence_ms,
            validate,
            total,
        }
    }
}

fn first_format() -> u32 {
    1
}

/// One JSON object per document, for a pipeline with `unit = "document"`:
/// `{"sources", "pages", "pipeline", "schema", "data", "confidence", "checks", "corrections",
/// "review", "provenance"}`. `data` is what every page of the document says together: read in
/// one prompt, or in page groups whose partial records were merged by the schema's rules
/// (`vinscan_core::merge`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DocumentRecord {
    /// The files or objects the document's pages came from, in reading order.
    pub sources: Vec<String>,
    /// Every page of the document in reading order.
    pub pages: Vec<PageRef>,
    pub pipeline: String,
    /// Repository-relative path of the schema `data` conforms to.
    pub schema: String,
    pub data: Value,
    /// As [`PageRecord::confidence`]; a merged value keeps the confidence of the value chosen,
    /// and a concatenated array element the confidence it had in its page group.
    #[serde(default)]
    pub confidence: BTreeMap<String, f64>,
    /// As [`PageRecord::checks`], run on the merged `data`.
    #[serde(default)]
    pub checks: Vec<CheckResult>,
    #[serde(default)]
    pub corrections: Vec<Correction>,
    #[serde(default)]
    pub review: Review,
    /// As [`PageRecord::grounding`], over every page's transcript.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub grounding: BTreeMap<String, FieldGrounding>,
    pub provenance: DocumentProvenance,
    /// Each page's transcript, in the order of `pages` (`None` for a page without one, and for
    /// every page when the pipeline makes none): written beside the record as `<name>.txt`.
    #[serde(skip)]
    pub transcripts: Vec<Option<PageTranscript>>,
}

/// A page of a document: which source, which page of it (1-based).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageRef {
    pub source: String,
    pub page: u32,
}

/// Where a document record came from and how it was read.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DocumentProvenance {
    /// [`RECORD_FORMAT`] of the vinscan that wrote the record.
    pub record_format: u32,
    pub sources: Vec<SourceProvenance>,
    pub pipeline: String,
    pub pipeline_sha256: String,
    pub schema_id: String,
    pub schema_sha256: String,
    /// The vision model that read the pages or transcribed them; absent when none did (an
    /// e-invoice XML, whose values are taken as they are; the text stage over transcripts from
    /// the text layer or OCR).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelProvenance>,
    /// The text model that read the transcripts, when the pipeline's text stage ran (then
    /// `pages` is empty: no image was read for the record, and `model` is present only when
    /// Vintern made the transcripts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text_model: Option<TextModelProvenance>,
    pub vinscan_version: String,
    /// Every image the model read, in reading order: each page, or each segment of a page cut
    /// for the tile grid.
    pub pages: Vec<DocumentPage>,
    /// The reads the document took: one when every page fit in one prompt, else one per page
    /// group, merged.
    pub groups: Vec<GroupProvenance>,
    /// Values on which page groups disagreed, and which was kept (empty with one group).
    pub disagreements: Vec<crate::merge::Disagreement>,
    /// JSON Pointers of values the normaliser changed, each into its group's own record.
    pub normalised: Vec<String>,
    /// Summed over the groups.
    pub timings_ms: Timings,
    /// How each page's transcript was made, in page order (pages without one are left out).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub transcripts: Vec<TranscriptProvenance>,
    /// RFC 3339 time the record was made.
    pub created_at: String,
}

/// One source file or object of a document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceProvenance {
    pub source: String,
    pub sha256: String,
    pub format: String,
    pub page_count: u32,
}

/// One image of a document as the model saw it: a page, or a segment of one.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DocumentPage {
    pub source: String,
    pub page: u32,
    /// The part of the page this image is, when the page was too tall or wide for the tile
    /// grid and was cut into overlapping segments (`vinscan_core::segment`); absent for a whole
    /// page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment: Option<crate::segment::Segment>,
    /// 1-based number of the page group (read) it was in.
    pub group: u32,
    /// Its number in the prompt of that read (`Image-N`), 1-based.
    pub image_in_prompt: u32,
    pub image: ImageProvenance,
    pub tiles: TilesProvenance,
}

/// One read of a document: the pages read together in one prompt.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GroupProvenance {
    /// 1-based positions in `provenance.pages` (the images read: pages, or segments of one);
    /// for a text-stage read, in the record's `pages` (the pages whose transcript it read).
    pub pages: Vec<u32>,
    /// The tile budget each page of the read had, lowered from the pipeline's so that every
    /// image, the prompt and the output fit the context.
    pub max_tiles_per_page: u32,
    /// The length, in this read's own record, of every array merged by concatenation (by JSON
    /// Pointer): how many of the document's line items came from these pages.
    #[serde(default)]
    pub array_lengths: BTreeMap<String, usize>,
    pub generation: GenerationProvenance,
    pub timings_ms: Timings,
}

impl PageRecord {
    /// The page's `.txt` beside the record (see [`crate::transcript::text_file`]), when it has
    /// a transcript.
    pub fn transcript_file(&self) -> Option<String> {
        self.transcript
            .as_ref()
            .map(|t| crate::transcript::text_file([Some(t)]))
    }
}

impl DocumentRecord {
    /// The document's `.txt` beside the record: every page in order, form-feed separated;
    /// `None` when no page has a transcript.
    pub fn transcript_file(&self) -> Option<String> {
        self.transcripts
            .iter()
            .any(Option::is_some)
            .then(|| crate::transcript::text_file(self.transcripts.iter().map(Option::as_ref)))
    }
}
