//! The vision-language model as the pipeline sees it: a small synchronous trait of plain data.
//! The llama.cpp implementation lives in `vinscan-llama`, on a thread of its own.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;
use serde_json::Value;

use crate::error::Result;

/// Context window in tokens when none is configured: room for a 7-image page (about 1,800
/// image tokens), the prompt, and a pipeline's output cap, for several pages in flight.
pub const DEFAULT_CTX_SIZE: u32 = 12288;

/// The smallest context window a Vintern model is run with, in tokens: one 448 px tile is 256
/// image tokens, so less would not hold a page with its prompt and an answer. Smaller settings
/// are refused where they are given (`--ctx-size`, serve's `[model] ctx_size`).
pub const MIN_CTX_SIZE: u32 = 1024;

/// What a loaded model is, for provenance and for tiling decisions.
#[derive(Debug, Clone, Serialize)]
pub struct ModelInfo {
    /// Model name from the GGUF metadata (`general.name`), if any.
    pub name: Option<String>,
    pub model_file: String,
    pub model_sha256: String,
    pub mmproj_file: String,
    pub mmproj_sha256: String,
    /// When the projector is a copy `vinscan model repair` made (its position table's class
    /// row moved last, [`projector_keys::REPAIRED_FROM`]): the sha256 of the file it was made
    /// from.
    pub mmproj_repaired_from: Option<String>,
    /// The largest tile grid the projector's preprocessor accepts (`clip.vision.preproc_max_tiles`).
    pub max_tiles: u32,
    /// The vision encoder's input side in pixels.
    pub image_size: u32,
    /// Embedding tokens the LLM reads per image (tile or thumbnail): InternVL's
    /// `(image_size / patch_size)² / scale_factor²`, 256 for Vintern's 448 px, 14 px patches and
    /// 0.5 pixel shuffle (llama.cpp `tools/mtmd/clip.cpp`, `clip_n_output_tokens`).
    pub tokens_per_image: u32,
    /// The context window in tokens: every image, the prompt and the output of one request
    /// must fit in it.
    pub ctx_size: u32,
    /// llama.cpp's CPU/GPU feature line, e.g. `CPU : SSE3 = 1 | AVX2 = 1 | ...`.
    pub system_info: String,
    /// Whether the language model runs flash attention: `None` where llama.cpp decides (layers
    /// on a GPU) or the engine does not say. How the engine computes, not what it read, so
    /// left out of provenance.
    #[serde(skip)]
    pub llm_flash_attention: Option<bool>,
}

/// One page, already stretched to its tile grid, as the model receives it.
#[derive(Debug, Clone)]
pub struct RequestImage {
    pub width: u32,
    pub height: u32,
    /// Packed RGB, `width * height * 3` bytes.
    pub rgb: Vec<u8>,
}

/// One read for the model: prompts, the pages (one, or the pages of a document read
/// together, in order), and what the output may be (JSON under a schema, or free text).
#[derive(Debug, Clone)]
pub struct GenerateRequest {
    pub system_prompt: String,
    /// The task text; the pages go before it. With one page the prompt is Vintern's single
    /// image form (`<image>\n{task}`); with several, InternVL's multi-image form, each page
    /// introduced by its number (`Image-1: <image>\nImage-2: <image>\n{task}`).
    pub user_prompt: String,
    /// At least one.
    pub images: Vec<RequestImage>,
    /// How many images (tiles + thumbnails, over all pages) the encoder must see.
    pub expected_images: u32,
    /// What the output is constrained to.
    pub output: OutputConstraint,
    pub max_tokens: u32,
    /// 1.0 disables the repetition penalty.
    pub repeat_penalty: f32,
    pub repeat_last_n: u32,
    /// Set by the caller to stop the page: the engine checks it before the page starts and at
    /// every decoding step, and answers `Cancelled`.
    pub cancel: Cancellation,
}

/// What a read's output may be.
#[derive(Debug, Clone, PartialEq)]
pub enum OutputConstraint {
    /// JSON conforming to this JSON Schema (compiled to a grammar by the engine; llguidance
    /// in `vinscan-llama`).
    JsonSchema(Arc<Value>),
    /// Any text: a page transcription. Only the model's end-of-generation token and
    /// `max_tokens` end it.
    FreeText,
}

/// A flag the caller raises to stop work in flight (shutdown). Cloning shares the flag.
#[derive(Debug, Clone, Default)]
pub struct Cancellation(Arc<AtomicBool>);

impl Cancellation {
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks every holder to stop at its next check.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// `Err(Cancelled)` once cancelled: a check between steps.
    pub fn check(&self, what: &str) -> Result<()> {
        if self.is_cancelled() {
            Err(crate::Error::new(
                crate::ErrorKind::Cancelled,
                format!("{what}: cancelled"),
            ))
        } else {
            Ok(())
        }
    }
}

/// Why decoding stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The model (or the grammar) ended the output.
    EndOfOutput,
    /// `max_tokens` was reached first: the output is probably incomplete.
    MaxTokens,
}

/// Wall-clock milliseconds of the model's stages for one page.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct ModelTimings {
    /// Vision encoding of every tile plus the LLM prefill of the whole prompt.
    pub encode_prefill_ms: f64,
    /// Token-by-token generation, sampling included.
    pub generate_ms: f64,
    /// Of `generate_ms`, the part spent in sampling and the grammar constraint.
    pub sample_ms: f64,
    /// This page's share of the model steps that carried its output tokens: each step's
    /// `llama_decode` time split over the pages in it by the tokens each fed. With several
    /// pages in flight `generate_ms` also counts the steps' other pages and their prompts;
    /// this does not, so summed over pages it is the model's whole generation time.
    pub step_share_ms: f64,
    /// Waiting for a free sequence slot before any work on this page began.
    pub queue_ms: f64,
    /// Of `sample_ms`, computing the chosen tokens' probabilities for per-field confidence.
    pub confidence_ms: f64,
}

/// The model's answer for one read (a page, or the pages of a document read together).
#[derive(Debug, Clone, Serialize)]
pub struct Generation {
    pub text: String,
    pub stop: StopReason,
    pub prompt_tokens: u32,
    pub image_tokens: u32,
    /// Image chunks the encoder produced (must equal `expected_images`).
    pub images: u32,
    pub generated_tokens: u32,
    /// Model forward passes that produced this page's output tokens; fewer than
    /// `generated_tokens` when the grammar forced tokens that were fed without a step of their own.
    pub model_steps: u32,
    /// Output tokens the grammar forced (keys, punctuation), fast-forwarded without sampling.
    pub forced_tokens: u32,
    /// Prompt tokens whose KV cells were shared from an earlier page with the same prompt prefix.
    pub reused_prompt_tokens: u32,
    /// The most pages that shared one decoding step with this one (itself included). Floating
    /// point sums depend on a batch's shape, so a near-tie can resolve differently beside other
    /// pages than alone; `--parallel 1` makes outputs independent of what else is in flight.
    pub peak_batch_pages: u32,
    /// Times the page was stopped to free KV cells for others and started again.
    pub restarts: u32,
    /// Every output token in order: where its bytes end in `text` and the probability the
    /// model gave it under the grammar (`None` when forced). Empty when the model does not
    /// report them; then records carry no confidence.
    pub tokens: Vec<crate::confidence::OutputToken>,
    pub timings: ModelTimings,
}

/// A loaded vision-language model. Implementations serialise access internally.
pub trait VisionModel: Send + Sync {
    fn info(&self) -> &ModelInfo;
    /// One read's answer. Errors of kind `Unavailable` mean the engine is gone for good (every
    /// later call fails the same way); `Cancelled` that `request.cancel` was raised.
    fn generate(&self, request: GenerateRequest) -> Result<Generation>;
    /// `Ok` while the engine can serve; once it cannot, an `Unavailable` error saying why.
    /// Cheap: readiness probes call it every few seconds.
    fn health(&self) -> Result<()>;
}

/// What a loaded text model is, for provenance and the context budget.
#[derive(Debug, Clone)]
pub struct TextModelInfo {
    /// `general.name` of the GGUF, if any.
    pub name: Option<String>,
    pub file: String,
    pub sha256: String,
    /// The context window in tokens: the prompt and the output of one request must fit.
    pub ctx_size: u32,
}

/// One request to the text model: chat messages and the schema the output is constrained to.
#[derive(Debug, Clone)]
pub struct TextRequest {
    pub system_prompt: String,
    pub user_prompt: String,
    /// JSON Schema the output is constrained to (compiled to a grammar by the engine).
    pub output_schema: Arc<Value>,
    pub max_tokens: u32,
    /// 1.0 disables the repetition penalty.
    pub repeat_penalty: f32,
    pub repeat_last_n: u32,
    pub cancel: Cancellation,
}

/// A chat LLM that answers [`TextRequest`]s. Implemented by `vinscan-llama` (llama.cpp, the
/// model's own chat template); the core never names llama.cpp.
pub trait TextModel: Send + Sync {
    /// Known without loading the model (file and hash), so a run can decide whether existing
    /// outputs are current before loading it.
    fn info(&self) -> &TextModelInfo;
    /// The answer: `Generation` with no images. Errors: `Unavailable` when the engine is gone,
    /// `Cancelled`, `Config` when the model cannot load or the schema cannot be compiled.
    fn complete(&self, request: TextRequest) -> Result<Generation>;
}

/// GGUF keys vinscan writes into an InternVL projector (llama.cpp ignores keys it does not
/// know).
pub mod projector_keys {
    /// The row order of the vision position table (`v.position_embd.weight`):
    /// [`CLASS_LAST`] when the class token's row is last, as llama.cpp's InternVL graph
    /// (`tools/mtmd/models/internvl.cpp`) appends the class token after the patches. Written
    /// by `vinscan model convert` and `vinscan model repair`; absent from files made by
    /// llama.cpp's own converter, whose table is class row first (docs/FIDELITY.md).
    pub const POSITION_ORDER: &str = "vinscan.clip.position_embd_order";
    /// [`POSITION_ORDER`]'s value for the graph's order.
    pub const CLASS_LAST: &str = "class-last";
    /// On a projector `vinscan model repair` wrote: the sha256 of the file it repaired.
    pub const REPAIRED_FROM: &str = "vinscan.clip.repaired_from_sha256";
}
