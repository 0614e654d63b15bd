//! The benchmark's report: one typed structure the runner fills and the renderer reads, written
//! as `report.json`. Every field is required, unknown fields are refused, and a report of another
//! `format` is refused with a message instead of being interpreted.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::{Deserialize, Deserializer, Serialize};

use crate::stats::{Stats, median};

/// The shape of report.json this benchmark writes and reads. Format 1 was the untyped report of
/// `vinscan bench` (no `format` field); a change to any field here bumps it.
pub const FORMAT: u32 = 5;

/// Everything one benchmark run measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Report {
    /// Always [`FORMAT`].
    pub format: u32,
    pub build: Build,
    pub machine: Machine,
    pub settings: Settings,
    pub files: ModelFiles,
    /// Loading the model the per-page runs share (ms).
    pub load_ms: f64,
    /// Engine parity: a free string of exactly `settings.tokens` tokens, on the single-tile page.
    pub parity: Vec<ParityPage>,
    /// The pipeline's work (its schema, at most `settings.real_tokens`), every page.
    pub per_page: Vec<PageResult>,
    pub aggregate: Aggregate,
    /// Fresh processes, one page each: the projector every peer ran first, then the others.
    pub probes: Vec<Probe>,
    /// A fresh process like the first probe, with the language model's flash attention on
    /// (llama.cpp's default, which the peers run); `None` when the model is on the GPU, where
    /// vinscan leaves it to llama.cpp.
    #[serde(deserialize_with = "present")]
    pub llm_flash_attention: Option<Probe>,
    /// The same with flash attention off (the plain path), so the two settings are compared
    /// whichever one vinscan's engine picked; `None` when the model is on the GPU.
    #[serde(deserialize_with = "present")]
    pub llm_plain_attention: Option<Probe>,
    pub encode: VisionEncode,
    /// The llama-server peer, when it ran (`--llama-server`).
    #[serde(deserialize_with = "present")]
    pub llama_server: Option<ServerAggregate>,
    /// The transformers peer, when it ran (`--python` and `--checkpoint`).
    #[serde(deserialize_with = "present")]
    pub transformers: Option<Transformers>,
    /// Tesseract, when it ran (`--tesseract`).
    #[serde(deserialize_with = "present")]
    pub tesseract: Option<Vec<TesseractPage>>,
    /// Peak RSS of the benchmark process after the aggregate run (MB).
    pub peak_rss_mb: f64,
    pub timing: Timing,
}

/// An `Option` field that must be in the file (as `null` when absent), so that a field missing
/// from an older report is an error rather than `None`.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    Option::<T>::deserialize(d)
}

/// What was measured: vinscan's build and llama.cpp's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Build {
    pub version: String,
    /// vinscan's features in this build (`llama`, `pdf`).
    pub features: Vec<String>,
    /// The `llama-cpp-sys-2` version (the vendored llama.cpp), from Cargo.lock at build time.
    pub llama_cpp_sys_2: String,
    /// llama.cpp's CPU feature line.
    pub system_info: String,
}

/// Where it was measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Machine {
    /// The CPU's model name, when /proc/cpuinfo gives one.
    #[serde(deserialize_with = "present")]
    pub cpu: Option<String>,
    pub cores: usize,
    pub memory_gib: f64,
    pub os: String,
}

/// The settings every peer ran with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub threads: u32,
    /// Engine parity's exact output length.
    pub tokens: u32,
    /// The cap on the pipeline's real schema.
    pub real_tokens: u32,
    pub ctx_size: u32,
    /// Pages in flight in the aggregate run.
    pub parallel: u32,
    /// LLM layers on the GPU (`--gpu-layers`; 0: a CPU run).
    pub gpu_layers: u32,
    /// Whether vinscan's language model ran flash attention on the CPU in the per-page and
    /// aggregate runs (its engine's choice for `parallel` pages, or `--llm-flash-attention`);
    /// false on a GPU run, where llama.cpp's `auto` decides.
    pub llm_flash_attention: bool,
}

/// The GGUF pair every peer ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelFiles {
    pub model: PathBuf,
    pub mmproj: PathBuf,
    /// The projector's weight type (`q8_0`, `f16`, …).
    pub mmproj_type: String,
    pub model_mb: f64,
    pub mmproj_mb: f64,
}

/// One page every peer processes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Unit {
    pub name: String,
    pub source: PathBuf,
    /// 0-based page index in `source`.
    pub page: u32,
    /// The image file transformers and Tesseract read (the original, or the rendered PDF page).
    pub image: PathBuf,
    /// The page stretched to InternVL's tile grid, for `llama-mtmd-cli`: its own slicing
    /// (LLaVA-UHD's best-resolution search) picks other grids than InternVL's
    /// `dynamic_preprocess` for some pages (600×600: 2×2 + thumbnail instead of 1 tile), while on
    /// an image already at grid size it cuts exactly InternVL's tiles; vinscan hands mtmd the
    /// same stretched image internally.
    pub grid_image: PathBuf,
    /// Images the encoder sees (tiles + thumbnail).
    pub images: u32,
    /// Tile grid (columns, rows).
    pub grid: (u32, u32),
}

/// Why decoding stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stop {
    /// The JSON closed.
    End,
    /// The token budget ran out first.
    #[default]
    Cap,
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::End => "end",
            Self::Cap => "cap",
        })
    }
}

/// One vinscan run on a page, stage by stage (milliseconds).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VinscanRun {
    pub read: f64,
    /// Opening the document and decoding (or rendering) the page.
    pub decode: f64,
    pub tiling: f64,
    pub encode_prefill: f64,
    pub generate: f64,
    /// The page's share of the model steps' decode time (`ModelTimings::step_share_ms`).
    pub steps_ms: f64,
    /// Of `generate`, sampling and the grammar.
    pub sample: f64,
    /// Of `sample`, the chosen tokens' probabilities for per-field confidence (absent in
    /// reports made before vinscan computed them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<f64>,
    /// The whole page, file read included.
    pub total: f64,
    pub prompt_tokens: u32,
    pub generated: u32,
    pub steps: u32,
    pub forced: u32,
    pub stop: Stop,
    /// The model's output (compared with llama-mtmd-cli's, not kept in the report).
    #[serde(skip)]
    pub text: String,
    /// The product's validation of the output (the per-page table keeps the first run's).
    #[serde(skip)]
    pub validation: Validation,
}

/// One `llama-mtmd-cli` process on a page (milliseconds).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MtmdRun {
    pub wall: f64,
    /// Until it reports model and projector loaded.
    pub load: f64,
    /// The rest of its run.
    pub compute: f64,
    pub output_chars: usize,
    /// `end` when its output is a whole JSON value.
    pub stop: Stop,
    /// Peak RSS of the process (wait4), MB.
    pub peak_rss_mb: f64,
    #[serde(skip)]
    pub text: String,
}

/// Parse + validate of a page's output by the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Validation {
    pub ms: f64,
    pub valid: bool,
}

/// Engine parity on one page: alternating A/B runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParityPage {
    pub unit: Unit,
    pub vinscan: Vec<VinscanRun>,
    pub mtmd: Vec<MtmdRun>,
}

/// The pipeline's work on one page: alternating A/B runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageResult {
    pub unit: Unit,
    pub vinscan: Vec<VinscanRun>,
    pub mtmd: Vec<MtmdRun>,
    /// The first runs' outputs are byte for byte the same.
    pub same_output: bool,
    /// The pipeline's validation of vinscan's first output.
    pub validate: Validation,
}

/// Medians of a page's runs, in milliseconds.
pub trait Runs {
    /// vinscan's runs.
    fn vinscan(&self) -> &[VinscanRun];
    /// llama-mtmd-cli's runs.
    fn mtmd(&self) -> &[MtmdRun];

    /// Median of a field of vinscan's runs.
    fn vinscan_median(&self, field: impl Fn(&VinscanRun) -> f64) -> f64 {
        median(self.vinscan(), field)
    }

    /// Median of a field of llama-mtmd-cli's runs.
    fn mtmd_median(&self, field: impl Fn(&MtmdRun) -> f64) -> f64 {
        median(self.mtmd(), field)
    }

    /// vinscan's whole page against llama-mtmd-cli's compute (its loading left out).
    fn ratio(&self) -> f64 {
        let v = Stats::of_field(self.vinscan(), |r| r.total).in_seconds();
        let c = Stats::of_field(self.mtmd(), |r| r.compute).in_seconds();
        v.median / c.median
    }
}

impl Runs for ParityPage {
    fn vinscan(&self) -> &[VinscanRun] {
        &self.vinscan
    }
    fn mtmd(&self) -> &[MtmdRun] {
        &self.mtmd
    }
}

impl Runs for PageResult {
    fn vinscan(&self) -> &[VinscanRun] {
        &self.vinscan
    }
    fn mtmd(&self) -> &[MtmdRun] {
        &self.mtmd
    }
}

/// Every page through one freshly loaded model, `settings.parallel` in flight, against
/// llama-mtmd-cli once per page one after another.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Aggregate {
    pub pages: usize,
    /// Wall time, model loading included.
    pub vinscan_ms: f64,
    pub load_ms: f64,
    pub model_steps: u32,
    /// Output tokens over all pages.
    pub tokens: u32,
    /// Summed over the pages: vision encode + prefill, and their shares of the model steps.
    pub encode_prefill_ms: f64,
    pub steps_ms: f64,
    /// The sum of llama-mtmd-cli's median wall times per page, loading included.
    pub mtmd_sequential_ms: f64,
}

/// A fresh process that loads the model with one projector and extracts the smallest page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Probe {
    pub page: String,
    pub mmproj: PathBuf,
    /// The projector's weight type.
    pub projector: String,
    pub mmproj_mb: f64,
    pub load_ms: f64,
    pub run: VinscanRun,
    pub peak_rss_mb: f64,
}

/// llama.cpp's vision encoder alone, through the tracer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VisionEncode {
    pub per_tile_ms: Stats,
    /// From the projector's hyper-parameters, when its file has them all.
    #[serde(deserialize_with = "present")]
    pub flops_per_tile: Option<f64>,
    /// The page with the most tiles encoded tile by tile and through mtmd's batch API.
    pub batching: TileBatching,
    /// ggml's CPU matrix product at the encoder's shape, per weight type
    /// (`vinscan_llama::matmul`); empty when the model is on the GPU.
    pub matmul: Vec<MatmulProbe>,
}

/// One weight type's rate in ggml's CPU matrix product: InternViT-300M's MLP up-projection over
/// one tile (1,024 × 4,096 weights, 1,025 token rows), the fastest of three runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatmulProbe {
    /// `f32`, `f16`, `bf16` or `q8_0`.
    pub weights: String,
    /// GFLOP/s: 2·K·N·M floating-point operations over the fastest run's seconds, / 1e9.
    pub gflops: f64,
}

/// One page's tiles encoded one graph per tile (`mtmd_encode_chunk`, what vinscan's engine runs)
/// and in batches (`mtmd_batch_encode`, what `llama-mtmd-cli` runs), through the tracer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TileBatching {
    pub page: String,
    /// Image chunks of the page: its tiles and the thumbnail.
    pub tiles: usize,
    pub unbatched_per_tile_ms: Stats,
    pub batched_per_tile_ms: Stats,
    /// Tiles per `mtmd_batch_encode` call.
    pub batch_sizes: Vec<usize>,
    /// Largest absolute difference between the two ways' embeddings.
    pub max_abs_diff: f64,
}

/// The llama-server peer's aggregate run (`--llama-server`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerAggregate {
    /// Where the binary's llama.cpp came from.
    pub source: String,
    /// Slots, and concurrent clients.
    pub parallel: u32,
    /// Start until `/health` answered (not counted in `wall_ms`).
    pub load_ms: f64,
    /// First request to last answer.
    pub wall_ms: f64,
    pub pages: Vec<ServerPage>,
}

/// One page's answer from llama-server, with the server's own timings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerPage {
    pub page: String,
    /// Request to answer, as its client saw it.
    pub wall_ms: f64,
    /// The server's `timings.prompt_ms`: vision encode + prefill.
    pub prompt_ms: f64,
    /// The server's `timings.predicted_ms`: generation.
    pub predicted_ms: f64,
    pub tokens: u32,
    pub prompt_tokens: u32,
    /// The server's `stop_type`: `eos`, `limit` (the cap), `word`.
    pub stop: String,
}

/// The transformers peer (`ops/bench/transformers_peer.py`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Transformers {
    /// Loading the checkpoint (not counted against it).
    pub load_ms: f64,
    /// The machine's f32 GEMM peak, measured by torch in the same process.
    pub gemm: Gemm,
    pub pages: Vec<TransformersPage>,
}

/// `{"op": "gemm"}`'s answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gemm {
    pub gflops: f64,
    pub threads: u32,
}

/// One page through transformers, beside vinscan's time for the same work on it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransformersPage {
    pub page: String,
    pub result: TransformersResult,
    /// vinscan's whole page (warm) for engine parity's free string of `settings.tokens`
    /// tokens, the transformers peer's work: the parity runs' median on the parity page, one
    /// run on every other page. (Reports from 2b34da7 and earlier held the pipeline's work
    /// here on pages other than the parity page.)
    pub vinscan_ms: f64,
    /// `llama-mtmd-cli`'s compute on the page: the free string's median on the parity page,
    /// the pipeline's work (its only runs there) on every other page.
    pub mtmd_compute_ms: f64,
}

/// `{"op": "page"}`'s answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransformersResult {
    pub tiles: u32,
    pub prompt_tokens: u32,
    pub generated: u32,
    pub preprocess_ms: f64,
    pub total_ms: f64,
}

/// One page through Tesseract.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TesseractPage {
    pub page: String,
    pub ms: f64,
    pub chars: usize,
}

/// How long the benchmark took.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timing {
    /// The measurements (s).
    pub wall_s: f64,
    /// What the calling command spent before (installs, builds, models), when it said.
    #[serde(deserialize_with = "present")]
    pub setup_s: Option<f64>,
    /// That setup started from a clean clone.
    pub clean_clone: bool,
}

/// Just the `format` field, read first so that another shape gets a message of its own.
#[derive(Deserialize)]
struct FormatOnly {
    format: Option<serde_json::Value>,
}

impl Report {
    /// Parses a report.json, refusing any other format than [`FORMAT`] and any missing or
    /// unknown field.
    pub fn from_json(bytes: &[u8]) -> anyhow::Result<Self> {
        let shape: FormatOnly = serde_json::from_slice(bytes).context("not a JSON object")?;
        match shape.format {
            None => bail!(
                "no `format` field: this is a report of the old `vinscan bench` (format 1), which is not interpreted; run the benchmark again (ops/bench.sh)"
            ),
            Some(f) if f != serde_json::json!(FORMAT) => bail!(
                "report format {f}, this benchmark reads format {FORMAT}; run the benchmark again (ops/bench.sh)"
            ),
            Some(_) => {}
        }
        serde_json::from_slice(bytes)
            .with_context(|| format!("a format {FORMAT} report with missing or unknown fields"))
    }

    /// Reads and parses a report.json.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let bytes = std::fs::read(path).with_context(|| path.display().to_string())?;
        Self::from_json(&bytes).with_context(|| path.display().to_string())
    }

    /// Writes the report as pretty JSON (creating the folder).
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| dir.display().to_string())?;
        }
        let mut json = serde_json::to_vec_pretty(self)?;
        json.push(b'\n');
        std::fs::write(path, json).with_context(|| path.display().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn committed() -> serde_json::Value {
        serde_json::from_str(include_str!("../../../docs/bench/report.json")).unwrap_or_default()
    }

    fn refusal(value: &serde_json::Value) -> String {
        let bytes = serde_json::to_vec(value).unwrap_or_default();
        Report::from_json(&bytes)
            .err()
            .map(|e| format!("{e:#}"))
            .unwrap_or_default()
    }

    /// Regression: FORMAT went to 5 while the plot still refused anything but 4, so
    /// `ops/bench.sh` failed at its last step after a whole run.
    #[test]
    fn the_plot_reads_this_format() {
        let plot = include_str!("../../../ops/bench/plot.py");
        assert!(
            plot.contains(&format!("report.get(\"format\") != {FORMAT}:")),
            "ops/bench/plot.py does not read report format {FORMAT}"
        );
    }

    #[test]
    fn the_committed_report_round_trips() {
        let bytes = include_bytes!("../../../docs/bench/report.json");
        let report = Report::from_json(bytes).expect("docs/bench/report.json");
        let again = serde_json::to_vec(&report).expect("serialise");
        assert_eq!(Report::from_json(&again).expect("parse"), report);
    }

    #[test]
    fn reports_of_another_format_are_refused() {
        let mut old = committed();
        old.as_object_mut().map(|o| o.remove("format"));
        assert!(refusal(&old).contains("old `vinscan bench`"), "{}", refusal(&old));
        let mut newer = committed();
        newer["format"] = serde_json::json!(FORMAT + 1);
        let said = format!("report format {}", FORMAT + 1);
        assert!(refusal(&newer).contains(&said), "{}", refusal(&newer));
    }

    #[test]
    fn missing_and_unknown_fields_are_refused_not_defaulted() {
        let mut r = committed();
        r["aggregate"].as_object_mut().map(|o| o.remove("steps_ms"));
        assert!(
            refusal(&r).contains("missing field `steps_ms`"),
            "{}",
            refusal(&r)
        );
        // an Option must be written, as null when absent
        let mut r = committed();
        r["timing"].as_object_mut().map(|o| o.remove("setup_s"));
        assert!(refusal(&r).contains("missing field `setup_s`"), "{}", refusal(&r));
        let mut r = committed();
        r["per_page"][0]["vinscan"][0]["totl"] = serde_json::json!(1.0);
        assert!(refusal(&r).contains("unknown field `totl`"), "{}", refusal(&r));
    }
}
