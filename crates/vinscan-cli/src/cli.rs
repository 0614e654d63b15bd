//! Command-line interface. Every flag can also be set by the environment variable named in its
//! help (`VINSCAN_*`, plus the Hugging Face variables for `model pull`).

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use vinscan_core::model::DEFAULT_CTX_SIZE;
use vinscan_storage::S3Uri;

use crate::model_load::ModelSettings;

#[derive(Debug, Parser)]
#[command(
    name = "vinscan",
    version,
    about = "Scans of Vietnamese documents in, schema-valid JSON out"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Log format on stderr.
    #[arg(
        long,
        env = "VINSCAN_LOG_FORMAT",
        value_enum,
        default_value = "text",
        global = true
    )]
    pub log_format: LogFormat,
    /// Debug logging (VINSCAN_LOG takes an EnvFilter directive instead).
    #[arg(long, short, env = "VINSCAN_VERBOSE", value_parser = clap::builder::BoolishValueParser::new(), action = clap::ArgAction::SetTrue, global = true)]
    pub verbose: bool,
    /// Directory of pipeline files (default: the pipelines built into vinscan); give
    /// --schemas-dir with it (a pipeline names its schema file).
    #[arg(long, env = "VINSCAN_PIPELINES_DIR", global = true, requires = "schemas_dir")]
    pub pipelines_dir: Option<PathBuf>,
    /// Directory of schema files (default: the schemas built into vinscan); give
    /// --pipelines-dir with it.
    #[arg(long, env = "VINSCAN_SCHEMAS_DIR", global = true, requires = "pipelines_dir")]
    pub schemas_dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Extract JSON from scans: one JSON object per document (or per page, for a page pipeline),
    /// as JSON Lines on stdout or files in --out.
    Extract(ExtractArgs),
    /// Process every scan under a folder into --out: resumable, with a manifest.
    Batch(BatchArgs),
    /// Model files: download Vintern, convert a Hugging Face checkpoint, trace for fidelity checks.
    Model {
        #[command(subcommand)]
        command: ModelCommand,
    },
    /// List and check the pipelines and their schemas.
    Pipelines(PipelinesArgs),
    /// Flatten a batch's records into a spreadsheet: CSV files or an XLSX workbook.
    Export(ExportArgs),
    /// Compare records with labels field by field: exact match after normalisation and
    /// character error rate, per field and overall (Markdown on stdout, JSON with --json).
    Eval(EvalArgs),
    /// Run the daemon: consume job messages and S3 upload events from Kafka, write outputs to S3.
    #[cfg(feature = "kafka")]
    Serve(ServeArgs),
    /// Put one job message per scan under an S3 prefix on a Kafka topic, for the daemons.
    #[cfg(feature = "kafka")]
    Enqueue(EnqueueArgs),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Daemon configuration (TOML; see README). Every setting can also come from
    /// `VINSCAN_<SECTION>_<KEY>`.
    #[arg(long, env = "VINSCAN_CONFIG")]
    pub config: PathBuf,
}

#[derive(Debug, Args)]
pub struct EnqueueArgs {
    /// `s3://bucket/prefix`: every scan under it becomes one job.
    pub source: S3Uri,
    /// Topic to put the jobs on.
    #[arg(long, env = "VINSCAN_ENQUEUE_TOPIC")]
    pub topic: String,
    /// Pipeline name (see `vinscan pipelines`).
    #[arg(long, short, env = "VINSCAN_PIPELINE")]
    pub pipeline: String,
    /// Kafka bootstrap servers.
    #[arg(long, env = "VINSCAN_KAFKA_BROKERS")]
    pub brokers: String,
    /// Where the daemons write the outputs (`s3://bucket/prefix`); their default when absent.
    #[arg(long, env = "VINSCAN_OUTPUT_PREFIX")]
    pub output_prefix: Option<S3Uri>,
    /// Create the topic with this many partitions first (an existing topic is left as is).
    #[arg(long, env = "VINSCAN_ENQUEUE_PARTITIONS")]
    pub create_partitions: Option<i32>,
    /// A librdkafka property, `KEY=VALUE` (repeatable), e.g. `security.protocol=SASL_SSL`.
    /// The variable holds one; give more, and secrets, as `VINSCAN_KAFKA_PROPERTY_<NAME>`
    /// (the property's name in capitals with `.` as `_`, e.g. `VINSCAN_KAFKA_PROPERTY_SASL_PASSWORD`).
    /// These flags win over those variables.
    #[arg(long = "kafka-property", env = "VINSCAN_ENQUEUE_KAFKA_PROPERTY", hide_env_values = true, value_parser = parse_property)]
    pub kafka_properties: Vec<(String, String)>,
    /// Where scheduled runs remember what they enqueued (`s3://bucket/key`; default
    /// `<prefix>/.vinscan/enqueued-<pipeline>.json` beside the scans): a run enqueues only
    /// objects that are new or replaced since.
    #[arg(long, env = "VINSCAN_ENQUEUE_STATE")]
    pub state: Option<S3Uri>,
    /// Enqueue every scan under the prefix, whatever the state says (it is still updated):
    /// to redo an archive, e.g. with a new model.
    #[arg(long, env = "VINSCAN_ENQUEUE_ALL", value_parser = clap::builder::BoolishValueParser::new(), action = clap::ArgAction::SetTrue)]
    pub all: bool,
    /// Hide the progress bar.
    #[arg(long, env = "VINSCAN_NO_PROGRESS", value_parser = clap::builder::BoolishValueParser::new(), action = clap::ArgAction::SetTrue)]
    pub no_progress: bool,
}

#[derive(Debug, Clone, Args)]
pub struct ModelArgs {
    /// Vintern LLM GGUF (default: the file `vinscan model pull` downloads, if cached).
    #[arg(long, env = "VINSCAN_MODEL")]
    pub model: Option<PathBuf>,
    /// Vintern vision projector GGUF (mmproj).
    #[arg(long, env = "VINSCAN_MMPROJ")]
    pub mmproj: Option<PathBuf>,
    /// CPU threads for inference (default: all cores).
    #[arg(long, env = "VINSCAN_THREADS")]
    pub threads: Option<u32>,
    /// Context window in tokens (image tokens + prompt + output); at least 1024.
    #[arg(long, env = "VINSCAN_CTX_SIZE", default_value_t = DEFAULT_CTX_SIZE, value_parser = clap::value_parser!(u32).range(i64::from(vinscan_core::model::MIN_CTX_SIZE)..))]
    pub ctx_size: u32,
    /// Layers offloaded to the GPU (builds with `--features cuda`): a count, or `all` (also
    /// llama.cpp's `-1`) for every layer.
    #[arg(long, env = "VINSCAN_GPU_LAYERS", default_value = "0", value_parser = parse_gpu_layers, allow_hyphen_values = true)]
    pub gpu_layers: u32,
    /// Pages the model decodes together (one batch per output step); pages in flight beyond
    /// this wait for a slot. They share the `--ctx-size` KV cells. `extract` and `batch` read
    /// this many inputs at once (each one page at a time).
    #[arg(long, env = "VINSCAN_PARALLEL", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub parallel: u32,
    /// A llama.cpp text model for pipelines with a `[text_stage]`: a GGUF path, or a name
    /// `vinscan model pull --text NAME` downloaded (`vinallama-2.7b`, `vinallama-7b`). Their
    /// records then come from the document's transcripts read by this model instead of Vintern
    /// reading the page images. Loaded on first use.
    #[arg(long, env = "VINSCAN_TEXT_MODEL")]
    pub text_model: Option<PathBuf>,
    /// The text model's context window in tokens (transcripts + task + output); longer
    /// transcripts are read in chunks and merged.
    #[arg(long, env = "VINSCAN_TEXT_CTX_SIZE", default_value_t = vinscan_core::text_stage::DEFAULT_TEXT_CTX_SIZE, value_parser = clap::value_parser!(u32).range(512..=131072))]
    pub text_ctx_size: u32,
}

impl ModelArgs {
    /// How to run the model.
    pub fn settings(&self) -> ModelSettings {
        ModelSettings {
            threads: self.threads,
            ctx_size: self.ctx_size,
            gpu_layers: self.gpu_layers,
            parallel: self.parallel,
        }
    }

    /// The extractor (with the text model, when one is given) and the lazily loaded Vintern
    /// for a run of `pipeline`. Vintern's files must resolve unless the text stage reads pages
    /// Vintern does not transcribe; then missing files would fail only a load, which never
    /// comes.
    pub fn extractor_and_model(
        &self,
        pipeline: &vinscan_core::Pipeline,
    ) -> anyhow::Result<(vinscan_core::Extractor, crate::model_load::LazyModel)> {
        let extractor = crate::model_load::with_text_model(
            crate::pdf::extractor(),
            self.text_model.as_deref(),
            self.text_ctx_size,
            self.settings(),
        )?;
        if self.text_model.is_some() && pipeline.text_stage.is_none() {
            tracing::warn!(
                pipeline = %pipeline.name,
                "--text-model is not used: the pipeline has no [text_stage]"
            );
        }
        // before any page is read: a context too small fails every document alike
        extractor.check_text_stage(pipeline)?;
        let files = crate::model_files::ModelFiles::resolve(self.model.as_deref(), self.mmproj.as_deref());
        if extractor.needs_vision_model(pipeline) {
            files.as_ref().map_err(|e| anyhow::anyhow!("{e:#}"))?;
        }
        Ok((
            extractor,
            crate::model_load::LazyModel::new(files, self.settings()),
        ))
    }
}

#[derive(Debug, Args)]
pub struct ExtractArgs {
    /// Scans: JPEG, PNG, TIFF (every page), WebP, BMP or PDF (every page); a folder stands
    /// for the files under it, sub-folders included, in natural name order (`p2` before `p10`).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Pipeline name (see `vinscan pipelines`).
    #[arg(long, short, env = "VINSCAN_PIPELINE")]
    pub pipeline: String,
    /// Write one `.json` file per record here instead of JSON Lines on stdout: named after the
    /// input file (`NAME.json` per document, `NAME.pNNNN.json` per page), made unique when two
    /// inputs share a name.
    #[arg(long, env = "VINSCAN_OUT")]
    pub out: Option<PathBuf>,
    /// Read the files given as the pages of one document, in order (an ID card's front and
    /// back): one record for them all. A folder given must hold only files (no sub-folders).
    #[arg(long, env = "VINSCAN_AS_DOCUMENT", value_parser = clap::builder::BoolishValueParser::new(), action = clap::ArgAction::SetTrue)]
    pub as_document: bool,
    #[command(flatten)]
    pub model: ModelArgs,
}

#[derive(Debug, Args)]
pub struct BatchArgs {
    /// Folder to walk (recursively), a single file, or `s3://bucket/prefix`.
    pub source: OsString,
    /// Pipeline name (see `vinscan pipelines`).
    #[arg(long, short, env = "VINSCAN_PIPELINE")]
    pub pipeline: String,
    /// Output folder or `s3://bucket/prefix`: one `.json` per page, mirroring the source tree,
    /// plus `manifest.jsonl`. S3 settings come from the environment (see README).
    #[arg(long, env = "VINSCAN_OUT")]
    pub out: OsString,
    /// A folder or `s3://bucket/prefix` where records that need review (the pipeline's
    /// `[review]` rules) are written instead of --out, at the same relative name.
    #[arg(long, env = "VINSCAN_REVIEW_OUT")]
    pub review_out: Option<OsString>,
    /// Read the files of each leaf folder (one without sub-folders) as the pages of one
    /// document, in natural name order (`p2` before `p10`): an archive scanned page by page,
    /// one folder per document. Needs a document pipeline; writes `OUT/<folder>.json`.
    #[arg(long, env = "VINSCAN_FOLDER_DOCUMENTS", value_parser = clap::builder::BoolishValueParser::new(), action = clap::ArgAction::SetTrue)]
    pub folder_documents: bool,
    /// Process inputs even when their outputs exist and match.
    #[arg(long, env = "VINSCAN_FORCE", value_parser = clap::builder::BoolishValueParser::new(), action = clap::ArgAction::SetTrue)]
    pub force: bool,
    /// Hide the progress bar (and, where stderr is not a terminal, the per-input progress
    /// lines logged instead).
    #[arg(long, env = "VINSCAN_NO_PROGRESS", value_parser = clap::builder::BoolishValueParser::new(), action = clap::ArgAction::SetTrue)]
    pub no_progress: bool,
    #[command(flatten)]
    pub model: ModelArgs,
}

#[derive(Debug, Subcommand)]
pub enum ModelCommand {
    /// Download Vintern from the Hugging Face Hub into the standard cache (honours
    /// HF_ENDPOINT, HF_HOME and HF_HUB_OFFLINE) and print the GGUF pair's paths: the published
    /// 1B-v3.5 pair by default, another variant by name (converted here when only its
    /// checkpoint is published), or a text model with --text.
    Pull(PullArgs),
    /// Convert a Vintern / InternVL 2.x-2.5 Hugging Face checkpoint (InternVLChatModel with a
    /// Qwen2 LLM, safetensors) into OUT/model.gguf and OUT/mmproj.gguf.
    #[cfg(feature = "llama")]
    Convert(ConvertArgs),
    /// Record what llama.cpp computes for one page (prompt ids, per-tile vision embeddings,
    /// teacher-forced logits, greedy tokens) as .npy/.json files for the parity tests.
    #[cfg(feature = "llama")]
    Trace(TraceArgs),
    /// Write a copy of an InternVL projector from llama.cpp's own converter with its position
    /// table in the order llama.cpp's graph reads it (the class token's row last; every other
    /// byte kept), and print its path. `model pull` does this by itself (docs/FIDELITY.md).
    #[cfg(feature = "llama")]
    Repair(RepairArgs),
}

#[cfg(feature = "llama")]
#[derive(Debug, Args)]
pub struct RepairArgs {
    /// The projector (mmproj) GGUF.
    pub file: PathBuf,
    /// Where to write the copy (a file, or a folder to put `<stem>.repaired.gguf` in);
    /// default: beside FILE, named `<stem>.repaired.gguf`.
    #[arg(long, env = "VINSCAN_REPAIR_OUT")]
    pub out: Option<PathBuf>,
}

#[cfg(feature = "llama")]
#[derive(Debug, Args)]
pub struct ConvertArgs {
    /// Checkpoint directory: config.json, *.safetensors, tokenizer.json.
    pub hf_dir: PathBuf,
    /// Output directory for model.gguf and mmproj.gguf.
    #[arg(long, env = "VINSCAN_CONVERT_OUT")]
    pub out: PathBuf,
    /// Weight type: f32, f16, bf16, q8_0, or a llama.cpp quantisation of the LLM (q4_0, q4_k_m, q5_k_m,
    /// q6_k, ...; the mmproj then stays f16).
    #[arg(long = "type", env = "VINSCAN_CONVERT_TYPE", default_value = "f16")]
    pub weights: String,
    /// Weight type of the mmproj when it should differ: f32, f16, bf16 or q8_0.
    #[arg(long, env = "VINSCAN_CONVERT_MMPROJ_TYPE")]
    pub mmproj_type: Option<String>,
    /// Write InternViT's position embedding in upstream llama.cpp's order (class row first),
    /// which shifts every patch's position by one; for comparison only (docs/FIDELITY.md).
    #[arg(long, env = "VINSCAN_CONVERT_UPSTREAM_POSITION_ORDER", value_parser = clap::builder::BoolishValueParser::new(), action = clap::ArgAction::SetTrue)]
    pub upstream_position_order: bool,
    /// Threads for llama.cpp's quantiser.
    #[arg(long, env = "VINSCAN_THREADS")]
    pub threads: Option<u32>,
}

#[cfg(feature = "llama")]
#[derive(Debug, Args)]
pub struct TraceArgs {
    /// The page: an image file (the first page of a TIFF or PDF is not rendered here).
    pub image: PathBuf,
    /// Output directory.
    #[arg(long, env = "VINSCAN_TRACE_OUT")]
    pub out: PathBuf,
    /// System prompt.
    #[arg(
        long,
        env = "VINSCAN_TRACE_SYSTEM",
        default_value = "Bạn là Vintern, trợ lý trích xuất dữ liệu từ ảnh tài liệu."
    )]
    pub system: String,
    /// User prompt (the image marker goes before it, as in Vintern's template).
    #[arg(
        long,
        env = "VINSCAN_TRACE_PROMPT",
        default_value = "Trích xuất thông tin hóa đơn dưới dạng JSON."
    )]
    pub prompt: String,
    /// Teacher-forced continuation length: logits are recorded after the prompt and after each.
    #[arg(long, env = "VINSCAN_TRACE_TEACHER_TOKENS", default_value_t = 200)]
    pub teacher_tokens: usize,
    /// Greedy continuation length.
    #[arg(long, env = "VINSCAN_TRACE_GREEDY_TOKENS", default_value_t = 32)]
    pub greedy_tokens: usize,
    /// Most tiles (default: the projector's preproc_max_tiles).
    #[arg(long, env = "VINSCAN_TRACE_MAX_TILES")]
    pub max_tiles: Option<u32>,
    #[command(flatten)]
    pub model: ModelArgs,
}

#[derive(Debug, Args)]
pub struct PullArgs {
    /// A published Vintern by name: `vintern-1b-v3.5` (the default: its GGUF pair),
    /// `vintern-1b-v2` or `vintern-3b` (5CD-AI's checkpoints, converted here to a q8_0 pair);
    /// the repository and file flags below then do not apply.
    #[arg(env = "VINSCAN_PULL_VARIANT", value_parser = clap::builder::PossibleValuesParser::new(crate::variants::VARIANTS.map(|v| v.name)), conflicts_with = "text")]
    pub variant: Option<String>,
    /// Hub repository.
    #[arg(long, env = "VINSCAN_MODEL_REPO", default_value = crate::model_files::DEFAULT_REPO)]
    pub repo: String,
    /// Revision (branch, tag or commit).
    #[arg(long, env = "VINSCAN_MODEL_REVISION", default_value = "main")]
    pub revision: String,
    /// LLM file in the repository.
    #[arg(long, env = "VINSCAN_MODEL_FILE", default_value = crate::model_files::DEFAULT_MODEL_FILE)]
    pub model_file: String,
    /// Projector file in the repository.
    #[arg(long, env = "VINSCAN_MMPROJ_FILE", default_value = crate::model_files::DEFAULT_MMPROJ_FILE)]
    pub mmproj_file: String,
    /// Download a text model for the text stage instead of Vintern: `vinallama-2.7b`
    /// (vilm/vinallama-2.7b-chat-GGUF, q5_0) or `vinallama-7b`; prints `{"text_model": PATH}`.
    #[arg(long, env = "VINSCAN_PULL_TEXT", value_parser = clap::builder::PossibleValuesParser::new(crate::model_files::TEXT_MODELS.map(|(n, _, _)| n)))]
    pub text: Option<String>,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// A batch's output folder: every `*.json` record under it is exported.
    pub out: PathBuf,
    /// `csv`: `export.csv` (one row per record) and `export.<array>.csv` per array of objects
    /// (an invoice's `items`); `xlsx`: one workbook with those tables as sheets.
    #[arg(long, env = "VINSCAN_EXPORT_FORMAT", value_enum)]
    pub format: ExportFormat,
    /// Where to write: the workbook's path (xlsx) or a folder (csv). Default: OUT.
    #[arg(long, env = "VINSCAN_EXPORT_OUTPUT")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Labels: a JSON Lines file of `{"source", "data"}` (vinscan's format), or a folder of SROIE
    /// key files (`NAME.json`/`NAME.txt`: company, date, address, total; read as the receipt
    /// schema's fields).
    #[arg(long, env = "VINSCAN_EVAL_LABELS")]
    pub labels: PathBuf,
    /// A folder of records (`batch --out`, `extract --out`): every `*.json` under it.
    #[arg(long, env = "VINSCAN_EVAL_OUTPUTS")]
    pub outputs: PathBuf,
    /// Also write the report as JSON to this file.
    #[arg(long, env = "VINSCAN_EVAL_JSON")]
    pub json: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ExportFormat {
    Csv,
    Xlsx,
}

#[derive(Debug, Args)]
pub struct PipelinesArgs {
    /// Print the pipelines as JSON.
    #[arg(long, env = "VINSCAN_PIPELINES_JSON")]
    pub json: bool,
    /// Also list, for each pipeline, every default bound applied to its schema where the schema
    /// sets none (JSON Pointer, keyword, value).
    #[arg(long, env = "VINSCAN_PIPELINES_CHECK")]
    pub check: bool,
}

/// `--gpu-layers`: a layer count, or `all`/`-1` for every layer (`u32::MAX`, which llama.cpp
/// caps at the model's layer count).
fn parse_gpu_layers(s: &str) -> Result<u32, String> {
    match s.trim() {
        "all" | "-1" => Ok(u32::MAX),
        n => n
            .parse()
            .map_err(|_| format!("`{n}` is not a layer count: give a number, or `all` for every layer")),
    }
}

/// `KEY=VALUE` for `--kafka-property`. The error never repeats the text: it may be a secret.
fn parse_property(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.to_owned())),
        _ => Err("expected KEY=VALUE (a librdkafka property)".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::{Cli, Command, parse_gpu_layers};

    #[test]
    fn gpu_layers_take_a_count_or_all() {
        assert_eq!(parse_gpu_layers("0"), Ok(0));
        assert_eq!(parse_gpu_layers("99"), Ok(99));
        assert_eq!(parse_gpu_layers("all"), Ok(u32::MAX));
        assert_eq!(parse_gpu_layers("-1"), Ok(u32::MAX));
        let e = parse_gpu_layers("-2").expect_err("refused");
        assert!(e.contains("`-2` is not a layer count"), "{e}");
        // llama.cpp's `-ngl -1` on the command line, not taken for a flag
        let cli = Cli::try_parse_from([
            "vinscan",
            "extract",
            "a.jpg",
            "-p",
            "receipt",
            "--gpu-layers",
            "-1",
        ])
        .expect("parses");
        let Command::Extract(args) = cli.command else {
            panic!("not extract")
        };
        assert_eq!(args.model.gpu_layers, u32::MAX);
    }
}
