//! `vinscan model convert`: a Vintern / InternVL 2.x–2.5 Hugging Face checkpoint
//! (`InternVLChatModel`: InternViT + MLP projector + Qwen2, safetensors; or the same model in
//! transformers' port, `InternVLForConditionalGeneration`, the `-hf` repositories: see `layout`)
//! to the GGUF pair that llama.cpp's current loaders read: a `qwen2` LLM with its byte-level BPE
//! tokenizer and chat template, and a `clip` mmproj with projector type `internvl`.
//!
//! The spec is the vendored llama.cpp: tensor names and hyper-parameters as `src/llama-arch.cpp`
//! and `tools/mtmd/clip-impl.h` name them, the graph in `tools/mtmd/models/internvl.cpp`. Every
//! source tensor is checked for presence and shape before anything is written; the files are
//! written under a temporary name and renamed when complete.
//!
//! One deliberate difference from upstream's Python converter: llama.cpp's InternVL graph
//! appends the class token *after* the patches, while InternViT puts it first; the learned
//! position embedding is therefore written rotated (class row last) so that every patch gets its
//! own position, as in the reference, and the projector says so under vinscan's key
//! ([`vinscan_core::model::projector_keys::POSITION_ORDER`]). `--upstream-position-order`
//! writes upstream's layout without the key (see docs/FIDELITY.md for the measured effect);
//! [`repair`] turns such a file, or one from llama.cpp's converter, into vinscan's.
//!
//! Architecture invariant: the planner and the GGUF writer (`config`, `plan`, `metadata`,
//! `gguf`, `hf`, `tokenizer`) are plain Rust and never name llama.cpp; they build and test
//! without it (`--no-default-features`). llama.cpp comes in two ways only:
//! - the `llama` feature (default): llama.cpp's quantised types (`q4_k_m`, …), made by
//!   [`vinscan_llama::quantize`] from the f16 file written here;
//! - the `trace` feature: [`fidelity`], which drives llama.cpp's C API directly
//!   (`llama-cpp-sys-2`) to record what it computes for one page. The safe wrapper the inference
//!   crate uses exposes neither mtmd's per-chunk embeddings nor raw logits, and these records
//!   are what the fidelity tests (`vinscan model trace`, docs/FIDELITY.md) and the benchmark's
//!   vision-encode figure need; none of it is on the serving path.

mod config;
mod error;
#[cfg(feature = "trace")]
pub mod fidelity;
mod gguf;
mod hf;
mod layout;
mod metadata;
mod plan;
pub mod repair;
mod tokenizer;
mod weights;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

pub use error::ConvertError;
pub use gguf::TensorType;
pub use weights::WeightType;

use config::shapes;
use hf::{Checkpoint, read_json};
use metadata::{llm_metadata, mmproj_metadata};
use plan::{check, llm_plan, mmproj_plan, write};

/// How to convert.
#[derive(Debug, Clone)]
pub struct ConvertOptions {
    pub weights: WeightType,
    /// The mmproj's weight type when it differs from the LLM's (f32, f16, bf16 or q8_0).
    pub mmproj_weights: Option<WeightType>,
    /// Write the position embedding in upstream llama.cpp's order (class row first).
    pub upstream_position_order: bool,
    /// Threads for llama.cpp's quantiser.
    pub threads: u32,
}

impl Default for ConvertOptions {
    fn default() -> Self {
        Self {
            weights: WeightType::F16,
            mmproj_weights: None,
            upstream_position_order: false,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
        }
    }
}

/// What a conversion wrote.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Converted {
    pub model: PathBuf,
    pub mmproj: PathBuf,
    pub model_tensors: usize,
    pub mmproj_tensors: usize,
    pub n_vocab: usize,
    pub weights: String,
    pub unused_tensors: Vec<String>,
}

/// Converts the checkpoint in `hf_dir` into `out_dir/model.gguf` and `out_dir/mmproj.gguf`.
pub fn convert(hf_dir: &Path, out_dir: &Path, options: &ConvertOptions) -> Result<Converted, ConvertError> {
    // llama.cpp's quantiser makes LLMs only: with a quantised LLM the mmproj stays f16
    let mmproj_type = match (options.mmproj_weights, options.weights) {
        (Some(WeightType::Llama { name }), _) => {
            return Err(ConvertError::Unsupported(format!(
                "mmproj type {name}: the mmproj takes f32, f16, bf16 or q8_0"
            )));
        }
        (Some(w), _) => w,
        (None, WeightType::Llama { .. }) => WeightType::F16,
        (None, w) => w,
    };
    let preprocessor = layout::image_processor(hf_dir)?;
    let (config, layout) =
        layout::original_config(&read_json(&hf_dir.join("config.json"))?, preprocessor.as_ref())?;
    let s = shapes(&config)?;
    let ckpt = Checkpoint::open(hf_dir)?;
    let llm = llm_plan(&s, options.weights.written()).in_layout(layout);
    let mmproj = mmproj_plan(&s, mmproj_type.written(), options.upstream_position_order).in_layout(layout);
    check(&llm, &ckpt)?;
    check(&mmproj, &ckpt)?;
    let tokenizer = tokenizer::read(hf_dir, s.vocab, &config)?;
    let used: HashSet<&str> = llm
        .tensors
        .iter()
        .chain(&mmproj.tensors)
        .map(|t| t.source.name())
        .collect();
    let unused_tensors: Vec<String> = ckpt
        .names()
        .filter(|n| !used.contains(n))
        .map(str::to_owned)
        .collect();
    for n in &unused_tensors {
        tracing::warn!(tensor = %n, "checkpoint tensor not used by the GGUF pair");
    }

    std::fs::create_dir_all(out_dir).map_err(|e| ConvertError::io(out_dir, e))?;
    let name = hf_dir
        .canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "vintern".into());
    let (model, mmproj_path) = (out_dir.join("model.gguf"), out_dir.join("mmproj.gguf"));
    let partial = |p: &Path| p.with_extension("gguf.partial");

    let mut meta = llm_metadata(&s, &name, options.weights.file_type());
    meta.extend(tokenizer.metadata);
    write(&partial(&model), &meta, &llm, &ckpt)?;
    if let WeightType::Llama { name: type_name } = options.weights {
        quantize(&partial(&model), type_name, options.threads)?;
    }
    let meta = mmproj_metadata(
        &s,
        &format!("{name}-mmproj"),
        mmproj_type.file_type(),
        !options.upstream_position_order,
    );
    write(&partial(&mmproj_path), &meta, &mmproj, &ckpt)?;
    for p in [&model, &mmproj_path] {
        std::fs::rename(partial(p), p).map_err(|e| ConvertError::io(p, e))?;
    }
    Ok(Converted {
        model,
        mmproj: mmproj_path,
        model_tensors: llm.tensors.len(),
        mmproj_tensors: mmproj.tensors.len(),
        n_vocab: s.vocab,
        weights: options.weights.name().to_owned(),
        unused_tensors,
    })
}

/// Replaces the f16 LLM at `path` by llama.cpp's quantisation of it to `type_name`.
#[cfg(feature = "llama")]
fn quantize(path: &Path, type_name: &str, threads: u32) -> Result<(), ConvertError> {
    tracing::info!(weights = type_name, "quantising the LLM with llama.cpp");
    let quantised = path.with_extension("quantised");
    vinscan_llama::quantize(path, &quantised, type_name, threads)
        .map_err(|e| ConvertError::Quantize(e.to_string()))?;
    std::fs::rename(&quantised, path).map_err(|e| ConvertError::io(path, e))
}

/// Without llama.cpp, [`WeightType::Llama`] cannot be parsed, so this is never reached.
#[cfg(not(feature = "llama"))]
fn quantize(_: &Path, type_name: &str, _: u32) -> Result<(), ConvertError> {
    Err(ConvertError::Quantize(format!(
        "{type_name}: this build has no llama.cpp quantiser (the `llama` feature)"
    )))
}
