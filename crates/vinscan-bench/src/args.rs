//! `vinscan-bench`'s flags. Every flag also reads the environment variable named in it (the
//! names `vinscan bench` had before the benchmark left the product binary).

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;

/// Benchmark vinscan against llama-mtmd-cli, transformers and Tesseract; writes report.json and
/// docs/BENCHMARKS.md (ops/bench.sh builds the peers and the models, then runs this).
#[derive(Debug, Clone, Parser)]
#[command(name = "vinscan-bench", version)]
pub struct BenchArgs {
    /// Folder of pages: images and PDFs (every PDF page is a page).
    #[arg(long, env = "VINSCAN_BENCH_PAGES", required_unless_present = "rewrite_report")]
    pub pages: Option<PathBuf>,
    /// The q8_0 LLM GGUF.
    #[arg(long, env = "VINSCAN_MODEL", required_unless_present = "rewrite_report")]
    pub model: Option<PathBuf>,
    /// The projector GGUF every peer runs (its weight type is read from the file).
    #[arg(long, env = "VINSCAN_MMPROJ", required_unless_present = "rewrite_report")]
    pub mmproj: Option<PathBuf>,
    /// Other projectors of the same checkpoint (f16, bf16, f32, …), each measured in a fresh
    /// process on the smallest page: encode + prefill time and peak RSS. Their weight types are
    /// read from the files.
    #[arg(
        long = "probe-mmproj",
        env = "VINSCAN_BENCH_PROBE_MMPROJ",
        value_delimiter = ','
    )]
    pub probe_mmproj: Vec<PathBuf>,
    /// Seconds the calling command spent before the bench (installs, builds, models), counted in
    /// the one-command goal (`ops/bench.sh` passes it).
    #[arg(long, env = "VINSCAN_BENCH_SETUP_S")]
    pub setup_s: Option<f64>,
    /// That setup started from a clean clone (nothing built, no models), so the one-command
    /// goal can be judged; otherwise it is only reported.
    #[arg(long, env = "VINSCAN_BENCH_CLEAN_CLONE", value_parser = clap::builder::BoolishValueParser::new(), action = clap::ArgAction::SetTrue)]
    pub clean_clone: bool,
    /// llama.cpp's `llama-mtmd-cli`, built from the same llama.cpp source.
    #[arg(
        long,
        env = "VINSCAN_BENCH_MTMD_CLI",
        required_unless_present_any = ["rewrite_report", "aggregate_only", "rss_probe"]
    )]
    pub mtmd_cli: Option<PathBuf>,
    /// llama.cpp's `llama-server`, the aggregate peer: `--parallel` slots, as many concurrent
    /// clients (ops/bench/build_llama_server.sh builds it).
    #[arg(long, env = "VINSCAN_BENCH_LLAMA_SERVER")]
    pub llama_server: Option<PathBuf>,
    /// Where that binary's llama.cpp came from, for the report.
    #[arg(long, env = "VINSCAN_BENCH_LLAMA_SERVER_SOURCE", default_value = "unknown")]
    pub llama_server_source: String,
    /// Python with torch and transformers (the reference venv), for the transformers peer.
    #[arg(long, env = "VINSCAN_BENCH_PYTHON")]
    pub python: Option<PathBuf>,
    /// The Hugging Face checkpoint the GGUF pair was converted from.
    #[arg(long, env = "VINSCAN_BENCH_CHECKPOINT")]
    pub checkpoint: Option<PathBuf>,
    /// The transformers peer's script.
    #[arg(
        long,
        env = "VINSCAN_BENCH_PEER_SCRIPT",
        default_value = "ops/bench/transformers_peer.py"
    )]
    pub peer_script: PathBuf,
    /// Pages the transformers peer runs (the first N).
    #[arg(long, env = "VINSCAN_BENCH_TRANSFORMERS_PAGES", default_value_t = 1)]
    pub transformers_pages: usize,
    /// Tesseract 5 with the `vie` language data.
    #[arg(long, env = "VINSCAN_BENCH_TESSERACT")]
    pub tesseract: Option<PathBuf>,
    /// Output tokens of the engine-parity runs (one free JSON string, nothing forced), for
    /// every peer, transformers included.
    #[arg(long, env = "VINSCAN_BENCH_TOKENS", default_value_t = 64)]
    pub tokens: u32,
    /// Output cap on the pipeline's real schema: the per-page, aggregate and memory runs
    /// decode the pipeline's schema with this many tokens at most, for every peer.
    #[arg(long, env = "VINSCAN_BENCH_REAL_TOKENS", default_value_t = 256)]
    pub real_tokens: u32,
    /// A/B repetitions (each peer once per repetition, the order alternating) of a single-tile
    /// image page.
    #[arg(long, env = "VINSCAN_BENCH_REPS", default_value_t = 3)]
    pub reps: u32,
    /// A/B repetitions of every other page (larger pages, PDF pages).
    #[arg(long, env = "VINSCAN_BENCH_REPS_LARGE", default_value_t = 1)]
    pub reps_large: u32,
    /// Pages in flight in the aggregate run.
    #[arg(long, env = "VINSCAN_PARALLEL", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub parallel: u32,
    /// Model layers offloaded to the GPU in a `--features cuda` build (vinscan, llama-mtmd-cli and
    /// llama-server alike; the projector goes with them when it is above 0).
    #[arg(long, env = "VINSCAN_GPU_LAYERS", default_value_t = 0)]
    pub gpu_layers: u32,
    /// CPU threads for every peer.
    #[arg(long, env = "VINSCAN_THREADS", default_value_t = 2)]
    pub threads: u32,
    /// Context window in tokens (image tokens + prompt + output).
    #[arg(long, env = "VINSCAN_CTX_SIZE", default_value_t = 12288)]
    pub ctx_size: u32,
    /// Pipeline whose prompts (and real schema) the benchmark uses.
    #[arg(long, env = "VINSCAN_PIPELINE", default_value = "receipt")]
    pub pipeline: String,
    /// Directory of pipeline files (default: the pipelines built into vinscan).
    #[arg(long, env = "VINSCAN_PIPELINES_DIR", requires = "schemas_dir")]
    pub pipelines_dir: Option<PathBuf>,
    /// Directory of schema files (default: the schemas built into vinscan).
    #[arg(long, env = "VINSCAN_SCHEMAS_DIR", requires = "pipelines_dir")]
    pub schemas_dir: Option<PathBuf>,
    /// Scratch folder: rendered pages, the schemas handed to llama-mtmd-cli, report.json.
    #[arg(long, env = "VINSCAN_BENCH_WORK", default_value = "target/bench")]
    pub work_dir: PathBuf,
    /// The Markdown report to (re)write.
    #[arg(long, env = "VINSCAN_BENCH_REPORT", default_value = "docs/BENCHMARKS.md")]
    pub report: PathBuf,
    /// The committed report.json: a measuring run writes it (as well as WORK_DIR/report.json),
    /// `--rewrite-report` reads it.
    #[arg(
        long,
        env = "VINSCAN_BENCH_REPORT_JSON",
        default_value = "docs/bench/report.json"
    )]
    pub report_json: PathBuf,
    /// Internal: load the model, extract the smallest page once, print peak RSS as JSON, exit
    /// (the benchmark runs itself this way for a memory figure of a fresh process).
    #[arg(long, hide = true)]
    pub rss_probe: bool,
    /// The language model's flash attention forced on (`--llm-flash-attention`) or off
    /// (`--llm-flash-attention=false`) instead of vinscan's engine's choice (on the CPU: the
    /// faster of the two at load, `vinscan_llama::attention`). For the memory probes, and by hand with
    /// `--aggregate-only` to compare the two.
    #[arg(long, hide = true, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub llm_flash_attention: Option<bool>,
    /// Only the aggregate run (every page through one loaded model, `--parallel` in flight),
    /// printed as one JSON line; no peers, no report. For comparing `--parallel` settings.
    #[arg(long, env = "VINSCAN_BENCH_AGGREGATE_ONLY")]
    pub aggregate_only: bool,
    /// Measure nothing: rewrite the Markdown report from REPORT_JSON (after a change to the
    /// report's wording).
    #[arg(long, env = "VINSCAN_BENCH_REWRITE_REPORT")]
    pub rewrite_report: bool,
}

/// The inputs every measuring mode needs, checked present.
#[derive(Debug, Clone)]
pub struct Inputs {
    pub pages: PathBuf,
    pub model: PathBuf,
    pub mmproj: PathBuf,
}

impl BenchArgs {
    /// The pages and the GGUF pair (clap requires them unless `--rewrite-report`).
    pub fn inputs(&self) -> anyhow::Result<Inputs> {
        Ok(Inputs {
            pages: self.pages.clone().context("--pages is required to measure")?,
            model: self.model.clone().context("--model is required to measure")?,
            mmproj: self.mmproj.clone().context("--mmproj is required to measure")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<BenchArgs, clap::Error> {
        BenchArgs::try_parse_from(std::iter::once("vinscan-bench").chain(args.iter().copied()))
    }

    #[test]
    fn rewriting_needs_no_inputs_and_measuring_needs_them_all() {
        let a = parse(&["--rewrite-report"]).expect("rewrite");
        assert_eq!(a.report_json, PathBuf::from("docs/bench/report.json"));
        assert!(a.inputs().is_err());
        let pair = ["--pages", "p", "--model", "m", "--mmproj", "j"];
        assert!(parse(&pair).is_err(), "llama-mtmd-cli is required for a full run");
        let a = parse(&[&pair[..], &["--aggregate-only"]].concat()).expect("aggregate only");
        assert_eq!(a.inputs().map(|i| i.pages).ok(), Some(PathBuf::from("p")));
    }
}
