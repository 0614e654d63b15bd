//! `vinscan model convert`: a Vintern / InternVL 2.x–2.5 Hugging Face checkpoint
//! (`InternVLChatModel`: InternViT + MLP projector + Qwen2, safetensors) to the GGUF pair that
//! llama.cpp's current loaders read: a `qwen2` LLM with its byte-level BPE tokenizer and chat
//! template, and a `clip` mmproj with projector type `internvl`.
//!
//! The spec is the vendored llama.cpp: tensor names and hyper-parameters as `src/llama-arch.cpp`
//! and `tools/mtmd/clip-impl.h` name them, the graph in `tools/mtmd/models/internvl.cpp`. Every
//! source tensor is checked for presence and shape before anything is written; the files are
//! written under a temporary name and renamed when complete.
//!
//! One deliberate difference from upstream's Python converter: llama.cpp's InternVL graph
//! appends the class token *after* the patches, while InternViT puts it first; the learned
//! position embedding is therefore written rotated (class row last) so that every patch gets its
//! own position, as in the reference. `--upstream-position-order` writes upstream's layout
//! (see docs/FIDELITY.md for the measured effect).

mod gguf;
mod hf;
mod tokenizer;

use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde_json::Value;

pub use gguf::TensorType;
use gguf::{GgufFile, TensorInfo, Value as Kv};
use hf::{Checkpoint, read_json};

/// Why a conversion was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error("{0}")]
    Io(String),
    #[error("{0}")]
    Invalid(String),
    #[error("unsupported architecture: {0}")]
    UnknownArchitecture(String),
    #[error("unsupported configuration: {0}")]
    Unsupported(String),
    #[error("missing tensor {0}")]
    MissingTensor(String),
    #[error("tensor {name} has shape {found:?}, expected {expected:?}")]
    Shape {
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    #[error("quantisation failed: {0}")]
    Quantize(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ConvertError {
    fn io(path: &Path, e: std::io::Error) -> Self {
        Self::Io(format!("{}: {e}", path.display()))
    }
}

/// The weight type of the output files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightType {
    F32,
    F16,
    /// bfloat16, the dtype Vintern's checkpoints are published in: lossless for them.
    BF16,
    Q8_0,
    /// Any other llama.cpp file type, produced by `llama_model_quantize` from an f16 LLM.
    Llama {
        name: &'static str,
        ftype: u32,
    },
}

/// File types of `llama_model_quantize` that vinscan accepts by name.
const LLAMA_FTYPES: &[(&str, u32)] = &[
    ("q4_0", llama_cpp_sys_2::LLAMA_FTYPE_MOSTLY_Q4_0),
    ("q4_1", llama_cpp_sys_2::LLAMA_FTYPE_MOSTLY_Q4_1),
    ("q5_0", llama_cpp_sys_2::LLAMA_FTYPE_MOSTLY_Q5_0),
    ("q5_1", llama_cpp_sys_2::LLAMA_FTYPE_MOSTLY_Q5_1),
    ("q2_k", llama_cpp_sys_2::LLAMA_FTYPE_MOSTLY_Q2_K),
    ("q3_k_s", llama_cpp_sys_2::LLAMA_FTYPE_MOSTLY_Q3_K_S),
    ("q3_k_m", llama_cpp_sys_2::LLAMA_FTYPE_MOSTLY_Q3_K_M),
    ("q3_k_l", llama_cpp_sys_2::LLAMA_FTYPE_MOSTLY_Q3_K_L),
    ("q4_k_s", llama_cpp_sys_2::LLAMA_FTYPE_MOSTLY_Q4_K_S),
    ("q4_k_m", llama_cpp_sys_2::LLAMA_FTYPE_MOSTLY_Q4_K_M),
    ("q5_k_s", llama_cpp_sys_2::LLAMA_FTYPE_MOSTLY_Q5_K_S),
    ("q5_k_m", llama_cpp_sys_2::LLAMA_FTYPE_MOSTLY_Q5_K_M),
    ("q6_k", llama_cpp_sys_2::LLAMA_FTYPE_MOSTLY_Q6_K),
];

/// The name of a `general.file_type` value (llama.cpp's `llama_ftype`), as `--type` takes it;
/// `None` for a type vinscan does not know.
pub(crate) fn file_type_name(file_type: u32) -> Option<&'static str> {
    [("f32", 0), ("f16", 1), ("bf16", 32), ("q8_0", 7)]
        .iter()
        .chain(LLAMA_FTYPES)
        .find(|(_, t)| *t == file_type)
        .map(|(n, _)| *n)
}

impl FromStr for WeightType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let lower = s.to_ascii_lowercase();
        match lower.as_str() {
            "f32" => Ok(Self::F32),
            "f16" => Ok(Self::F16),
            "bf16" => Ok(Self::BF16),
            "q8_0" => Ok(Self::Q8_0),
            other => LLAMA_FTYPES
                .iter()
                .find(|(n, _)| *n == other)
                .map(|(name, ftype)| Self::Llama { name, ftype: *ftype })
                .ok_or_else(|| {
                    let names: Vec<&str> = LLAMA_FTYPES.iter().map(|(n, _)| *n).collect();
                    format!(
                        "unknown weight type {s:?}: f32, f16, bf16, q8_0, {}",
                        names.join(", ")
                    )
                }),
        }
    }
}

impl WeightType {
    /// What vinscan itself writes: the final type, or f16 before llama.cpp quantises.
    fn written(self) -> TensorType {
        match self {
            Self::F32 => TensorType::F32,
            Self::F16 | Self::Llama { .. } => TensorType::F16,
            Self::BF16 => TensorType::BF16,
            Self::Q8_0 => TensorType::Q8_0,
        }
    }

    /// `general.file_type` (llama_ftype) of what vinscan writes.
    fn file_type(self) -> u32 {
        match self.written() {
            TensorType::F32 => 0,
            TensorType::F16 => 1,
            TensorType::Q8_0 => 7,
            TensorType::BF16 => 32,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ConvertOptions {
    pub weights: WeightType,
    /// The mmproj's weight type when it differs from the LLM's (f32, f16, bf16 or q8_0).
    pub mmproj_weights: Option<WeightType>,
    /// Write the position embedding in upstream llama.cpp's order (class row first).
    pub upstream_position_order: bool,
    /// Threads for `llama_model_quantize`.
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

/// Where a GGUF tensor's values come from.
#[derive(Debug, Clone)]
enum Source {
    /// The checkpoint tensor as is.
    Copy(String),
    /// Part `index` of 3 along the first axis (fused `attn.qkv`).
    QkvPart(String, usize),
    /// InternViT's position embedding, class row moved last (unless `upstream`).
    Positions { name: String, upstream: bool },
}

impl Source {
    fn name(&self) -> &str {
        match self {
            Self::Copy(n) | Self::QkvPart(n, _) | Self::Positions { name: n, .. } => n,
        }
    }
}

struct Planned {
    info: TensorInfo,
    source: Source,
    /// The checkpoint tensor's expected shape (outermost first, as PyTorch writes it).
    expected: Vec<usize>,
}

/// Numeric fields of config.json with error messages that name the key.
struct Cfg<'a> {
    root: &'a Value,
}

impl Cfg<'_> {
    fn get(&self, path: &str) -> Option<&Value> {
        path.split('.').try_fold(self.root, |v, k| v.get(k))
    }

    fn usize(&self, path: &str) -> Result<usize, ConvertError> {
        self.get(path)
            .and_then(Value::as_u64)
            .map(|v| v as usize)
            .ok_or_else(|| ConvertError::Invalid(format!("config.json: {path} is missing or not a number")))
    }

    fn f64_or(&self, path: &str, default: f64) -> Result<f64, ConvertError> {
        match self.get(path) {
            None | Some(Value::Null) => Ok(default),
            Some(v) => v
                .as_f64()
                .ok_or_else(|| ConvertError::Invalid(format!("config.json: {path} is not a number"))),
        }
    }

    fn str_or<'s>(&'s self, path: &str, default: &'s str) -> &'s str {
        self.get(path).and_then(Value::as_str).unwrap_or(default)
    }

    fn bool_or(&self, path: &str, default: bool) -> bool {
        self.get(path).and_then(Value::as_bool).unwrap_or(default)
    }

    fn first_architecture(&self, path: &str) -> Option<&str> {
        self.get(path)
            .and_then(Value::as_array)
            .and_then(|a| a.first())
            .and_then(Value::as_str)
    }
}

/// The shapes that matter, read and checked from config.json.
struct Shapes {
    text: usize,
    layers: usize,
    heads: usize,
    kv_heads: usize,
    ff: usize,
    vocab: usize,
    ctx: usize,
    rope_theta: f64,
    rms_eps: f64,
    tied: bool,
    vit: usize,
    vit_layers: usize,
    vit_heads: usize,
    vit_ff: usize,
    vit_eps: f64,
    image: usize,
    patch: usize,
    merge: usize,
    min_tiles: usize,
    max_tiles: usize,
}

fn shapes(config: &Value) -> Result<Shapes, ConvertError> {
    let c = Cfg { root: config };
    let arch = c.first_architecture("architectures").unwrap_or("(none)");
    if arch != "InternVLChatModel" {
        return Err(ConvertError::UnknownArchitecture(format!(
            "config.json declares {arch}; vinscan converts InternVLChatModel checkpoints (Vintern, InternVL 2.x-2.5 with a Qwen2 LLM)"
        )));
    }
    let llm = c
        .first_architecture("llm_config.architectures")
        .unwrap_or("(none)");
    if llm != "Qwen2ForCausalLM" {
        return Err(ConvertError::UnknownArchitecture(format!(
            "llm_config declares {llm}; only Qwen2ForCausalLM language models are supported (Vintern 1B/3B, InternVL2.5-1B/4B)"
        )));
    }
    let vit_type = c.str_or("vision_config.model_type", "(none)");
    if vit_type != "intern_vit_6b" {
        return Err(ConvertError::UnknownArchitecture(format!(
            "vision_config.model_type is {vit_type}; expected intern_vit_6b (InternViT)"
        )));
    }
    let unsupported = |what: String| Err(ConvertError::Unsupported(what));
    if c.bool_or("vision_config.qk_normalization", false) {
        return unsupported("vision_config.qk_normalization (InternViT-6B) is not supported".into());
    }
    let norm = c.str_or("vision_config.norm_type", "layer_norm");
    if norm != "layer_norm" {
        return unsupported(format!(
            "vision_config.norm_type {norm} (only layer_norm: InternViT-300M)"
        ));
    }
    let act = c.str_or("vision_config.hidden_act", "gelu");
    if act != "gelu" {
        return unsupported(format!(
            "vision_config.hidden_act {act} (llama.cpp's InternVL graph here uses gelu)"
        ));
    }
    if !c.bool_or("vision_config.qkv_bias", true) {
        return unsupported("vision_config.qkv_bias false (llama.cpp's graph expects q/k/v biases)".into());
    }
    let ps = c.str_or("ps_version", "v1");
    if ps != "v2" {
        return unsupported(format!(
            "ps_version {ps}: llama.cpp implements pixel shuffle v2 only"
        ));
    }
    let select = c.get("select_layer").and_then(Value::as_i64).unwrap_or(-1);
    if select != -1 {
        return unsupported(format!(
            "select_layer {select}: llama.cpp uses the last ViT layer"
        ));
    }
    if !c.bool_or("use_thumbnail", true) {
        return unsupported("use_thumbnail false: llama.cpp always adds the thumbnail tile".into());
    }
    let ratio = c.f64_or("downsample_ratio", 0.5)?;
    let merge = (1.0 / ratio).round();
    if !(ratio > 0.0 && (merge * ratio - 1.0).abs() < 1e-6) {
        return unsupported(format!("downsample_ratio {ratio} is not 1/n"));
    }
    let image = c
        .get("force_image_size")
        .and_then(Value::as_u64)
        .map_or_else(|| c.usize("vision_config.image_size"), |v| Ok(v as usize))?;
    let patch = c.usize("vision_config.patch_size")?;
    if image != 448 || patch != 14 {
        return unsupported(format!(
            "image size {image} / patch {patch}: vinscan tiles at 448 px with patch 14"
        ));
    }
    let text = c.usize("llm_config.hidden_size")?;
    let heads = c.usize("llm_config.num_attention_heads")?;
    let vit = c.usize("vision_config.hidden_size")?;
    let vit_heads = c.usize("vision_config.num_attention_heads")?;
    if heads == 0 || text % heads != 0 || vit_heads == 0 || vit % vit_heads != 0 {
        return Err(ConvertError::Invalid(
            "config.json: hidden sizes are not multiples of the head counts".into(),
        ));
    }
    let min_tiles = c.get("min_dynamic_patch").and_then(Value::as_u64).unwrap_or(1) as usize;
    let max_tiles = c.get("max_dynamic_patch").and_then(Value::as_u64).unwrap_or(12) as usize;
    if min_tiles == 0 || min_tiles > max_tiles {
        return Err(ConvertError::Invalid(format!(
            "config.json: min_dynamic_patch {min_tiles} / max_dynamic_patch {max_tiles}"
        )));
    }
    Ok(Shapes {
        text,
        layers: c.usize("llm_config.num_hidden_layers")?,
        heads,
        kv_heads: c.usize("llm_config.num_key_value_heads")?,
        ff: c.usize("llm_config.intermediate_size")?,
        vocab: c.usize("llm_config.vocab_size")?,
        ctx: c.usize("llm_config.max_position_embeddings")?,
        rope_theta: c.f64_or("llm_config.rope_theta", 1_000_000.0)?,
        rms_eps: c.f64_or("llm_config.rms_norm_eps", 1e-6)?,
        tied: c.bool_or("llm_config.tie_word_embeddings", false),
        vit,
        vit_layers: c.usize("vision_config.num_hidden_layers")?,
        vit_heads,
        vit_ff: c.usize("vision_config.intermediate_size")?,
        vit_eps: c.f64_or("vision_config.layer_norm_eps", 1e-6)?,
        image,
        patch,
        merge: merge as usize,
        min_tiles,
        max_tiles,
    })
}

/// A weight matrix's type: the requested one, f16 where a q8_0 row would not fill its blocks.
fn matrix_type(ne0: usize, weights: TensorType) -> TensorType {
    match weights {
        TensorType::Q8_0 if !ne0.is_multiple_of(32) => TensorType::F16,
        t => t,
    }
}

struct Plan {
    tensors: Vec<Planned>,
}

impl Plan {
    fn add(&mut self, gguf: String, source: Source, expected: &[usize], ty: TensorType) {
        let ne = expected.iter().rev().map(|d| *d as u64).collect();
        self.tensors.push(Planned {
            info: TensorInfo { name: gguf, ne, ty },
            source,
            expected: expected.to_vec(),
        });
    }

    fn matrix(&mut self, gguf: String, hf: String, expected: &[usize], weights: TensorType) {
        let ty = matrix_type(expected[expected.len() - 1], weights);
        self.add(gguf, Source::Copy(hf), expected, ty);
    }

    fn vector(&mut self, gguf: String, hf: String, n: usize) {
        self.add(gguf, Source::Copy(hf), &[n], TensorType::F32);
    }
}

fn llm_plan(s: &Shapes, weights: TensorType) -> Plan {
    let mut p = Plan { tensors: Vec::new() };
    let kv = s.kv_heads * (s.text / s.heads);
    let lm = "language_model.model.";
    p.matrix(
        "token_embd.weight".into(),
        format!("{lm}embed_tokens.weight"),
        &[s.vocab, s.text],
        weights,
    );
    p.vector("output_norm.weight".into(), format!("{lm}norm.weight"), s.text);
    if !s.tied {
        p.matrix(
            "output.weight".into(),
            "language_model.lm_head.weight".into(),
            &[s.vocab, s.text],
            weights,
        );
    }
    for i in 0..s.layers {
        let (b, h) = (format!("blk.{i}."), format!("{lm}layers.{i}."));
        p.vector(
            format!("{b}attn_norm.weight"),
            format!("{h}input_layernorm.weight"),
            s.text,
        );
        for (g, hf, rows) in [
            ("attn_q", "q_proj", s.text),
            ("attn_k", "k_proj", kv),
            ("attn_v", "v_proj", kv),
        ] {
            p.matrix(
                format!("{b}{g}.weight"),
                format!("{h}self_attn.{hf}.weight"),
                &[rows, s.text],
                weights,
            );
            p.vector(format!("{b}{g}.bias"), format!("{h}self_attn.{hf}.bias"), rows);
        }
        p.matrix(
            format!("{b}attn_output.weight"),
            format!("{h}self_attn.o_proj.weight"),
            &[s.text, s.text],
            weights,
        );
        p.vector(
            format!("{b}ffn_norm.weight"),
            format!("{h}post_attention_layernorm.weight"),
            s.text,
        );
        p.matrix(
            format!("{b}ffn_gate.weight"),
            format!("{h}mlp.gate_proj.weight"),
            &[s.ff, s.text],
            weights,
        );
        p.matrix(
            format!("{b}ffn_up.weight"),
            format!("{h}mlp.up_proj.weight"),
            &[s.ff, s.text],
            weights,
        );
        p.matrix(
            format!("{b}ffn_down.weight"),
            format!("{h}mlp.down_proj.weight"),
            &[s.text, s.ff],
            weights,
        );
    }
    p
}

fn mmproj_plan(s: &Shapes, weights: TensorType, upstream_positions: bool) -> Plan {
    let mut p = Plan { tensors: Vec::new() };
    let (e, n_pos) = (s.vit, (s.image / s.patch).pow(2) + 1);
    let emb = "vision_model.embeddings.";
    // ggml's convolution (im2col) wants an f16 or f32 kernel, whatever the other weights are.
    let conv = if weights == TensorType::F32 {
        TensorType::F32
    } else {
        TensorType::F16
    };
    p.add(
        "v.patch_embd.weight".into(),
        Source::Copy(format!("{emb}patch_embedding.weight")),
        &[e, 3, s.patch, s.patch],
        conv,
    );
    p.vector(
        "v.patch_embd.bias".into(),
        format!("{emb}patch_embedding.bias"),
        e,
    );
    p.add(
        "v.class_embd".into(),
        Source::Copy(format!("{emb}class_embedding")),
        &[1, 1, e],
        TensorType::F32,
    );
    p.add(
        "v.position_embd.weight".into(),
        Source::Positions {
            name: format!("{emb}position_embedding"),
            upstream: upstream_positions,
        },
        &[1, n_pos, e],
        TensorType::F32,
    );
    for i in 0..s.vit_layers {
        let (b, h) = (format!("v.blk.{i}."), format!("vision_model.encoder.layers.{i}."));
        for (k, g) in ["attn_q", "attn_k", "attn_v"].iter().enumerate() {
            let ty = matrix_type(e, weights);
            p.add(
                format!("{b}{g}.weight"),
                Source::QkvPart(format!("{h}attn.qkv.weight"), k),
                &[3 * e, e],
                ty,
            );
            p.add(
                format!("{b}{g}.bias"),
                Source::QkvPart(format!("{h}attn.qkv.bias"), k),
                &[3 * e],
                TensorType::F32,
            );
        }
        p.matrix(
            format!("{b}attn_out.weight"),
            format!("{h}attn.proj.weight"),
            &[e, e],
            weights,
        );
        p.vector(format!("{b}attn_out.bias"), format!("{h}attn.proj.bias"), e);
        for (g, hf) in [("ln1", "norm1"), ("ln2", "norm2")] {
            p.vector(format!("{b}{g}.weight"), format!("{h}{hf}.weight"), e);
            p.vector(format!("{b}{g}.bias"), format!("{h}{hf}.bias"), e);
        }
        p.vector(format!("{b}ls1.weight"), format!("{h}ls1"), e);
        p.vector(format!("{b}ls2.weight"), format!("{h}ls2"), e);
        p.matrix(
            format!("{b}ffn_up.weight"),
            format!("{h}mlp.fc1.weight"),
            &[s.vit_ff, e],
            weights,
        );
        p.vector(format!("{b}ffn_up.bias"), format!("{h}mlp.fc1.bias"), s.vit_ff);
        p.matrix(
            format!("{b}ffn_down.weight"),
            format!("{h}mlp.fc2.weight"),
            &[e, s.vit_ff],
            weights,
        );
        p.vector(format!("{b}ffn_down.bias"), format!("{h}mlp.fc2.bias"), e);
    }
    let wide = e * s.merge * s.merge;
    p.vector("mm.model.mlp.0.weight".into(), "mlp1.0.weight".into(), wide);
    p.vector("mm.model.mlp.0.bias".into(), "mlp1.0.bias".into(), wide);
    p.matrix(
        "mm.model.mlp.1.weight".into(),
        "mlp1.1.weight".into(),
        &[s.text, wide],
        weights,
    );
    p.vector("mm.model.mlp.1.bias".into(), "mlp1.1.bias".into(), s.text);
    p.matrix(
        "mm.model.mlp.3.weight".into(),
        "mlp1.3.weight".into(),
        &[s.text, s.text],
        weights,
    );
    p.vector("mm.model.mlp.3.bias".into(), "mlp1.3.bias".into(), s.text);
    // The planned QkvPart infos carry the fused shape; fix their ne to one third.
    for t in &mut p.tensors {
        if let Source::QkvPart(..) = t.source
            && let Some(outer) = t.info.ne.last_mut()
        {
            *outer /= 3;
        }
    }
    p
}

/// Checks every planned source against the checkpoint before anything is written.
fn check(plan: &Plan, ckpt: &Checkpoint) -> Result<(), ConvertError> {
    for t in &plan.tensors {
        let name = t.source.name();
        let found = ckpt
            .shape(name)
            .ok_or_else(|| ConvertError::MissingTensor(name.to_owned()))?;
        // A 1-element leading axis is optional (class and position embeddings are stored
        // with and without it).
        let squeeze = |s: &[usize]| -> Vec<usize> {
            let first = s.iter().position(|d| *d != 1).unwrap_or(s.len());
            s[first..].to_vec()
        };
        if squeeze(found) != squeeze(&t.expected) {
            return Err(ConvertError::Shape {
                name: name.to_owned(),
                expected: t.expected.clone(),
                found: found.to_vec(),
            });
        }
    }
    Ok(())
}

fn values(source: &Source, ckpt: &Checkpoint) -> Result<Vec<f32>, ConvertError> {
    match source {
        Source::Copy(name) => ckpt.read_f32(name),
        Source::QkvPart(name, k) => ckpt.read_f32_part(name, *k, 3),
        Source::Positions { name, upstream } => {
            let mut all = ckpt.read_f32(name)?;
            if !upstream {
                let e = ckpt.shape(name).and_then(|s| s.last().copied()).unwrap_or(1);
                all.rotate_left(e); // class row (first) to the end, patch rows move up one
            }
            Ok(all)
        }
    }
}

fn write(path: &Path, metadata: &[(&str, Kv)], plan: &Plan, ckpt: &Checkpoint) -> Result<(), ConvertError> {
    let infos = plan.tensors.iter().map(|t| t.info.clone()).collect();
    let mut file = GgufFile::create(path, metadata, infos)?;
    let mut buf = Vec::new();
    for t in &plan.tensors {
        let v = values(&t.source, ckpt)?;
        t.info.ty.encode(&v, &mut buf);
        file.write_tensor(&buf)?;
    }
    file.finish()
}

fn llm_metadata(s: &Shapes, name: &str, file_type: u32) -> Vec<(&'static str, Kv)> {
    vec![
        ("general.architecture", Kv::Str("qwen2".into())),
        ("general.name", Kv::Str(name.to_owned())),
        ("general.file_type", Kv::U32(file_type)),
        ("qwen2.context_length", Kv::U32(s.ctx as u32)),
        ("qwen2.embedding_length", Kv::U32(s.text as u32)),
        ("qwen2.block_count", Kv::U32(s.layers as u32)),
        ("qwen2.feed_forward_length", Kv::U32(s.ff as u32)),
        ("qwen2.attention.head_count", Kv::U32(s.heads as u32)),
        ("qwen2.attention.head_count_kv", Kv::U32(s.kv_heads as u32)),
        ("qwen2.rope.freq_base", Kv::F32(s.rope_theta as f32)),
        (
            "qwen2.attention.layer_norm_rms_epsilon",
            Kv::F32(s.rms_eps as f32),
        ),
    ]
}

fn mmproj_metadata(s: &Shapes, name: &str, file_type: u32) -> Vec<(&'static str, Kv)> {
    vec![
        ("general.architecture", Kv::Str("clip".into())),
        ("general.type", Kv::Str("mmproj".into())),
        ("general.name", Kv::Str(name.to_owned())),
        ("general.file_type", Kv::U32(file_type)),
        ("clip.has_vision_encoder", Kv::Bool(true)),
        ("clip.projector_type", Kv::Str("internvl".into())),
        ("clip.vision.projection_dim", Kv::U32(s.text as u32)),
        ("clip.vision.image_size", Kv::U32(s.image as u32)),
        ("clip.vision.patch_size", Kv::U32(s.patch as u32)),
        ("clip.vision.embedding_length", Kv::U32(s.vit as u32)),
        ("clip.vision.feed_forward_length", Kv::U32(s.vit_ff as u32)),
        ("clip.vision.block_count", Kv::U32(s.vit_layers as u32)),
        ("clip.vision.attention.head_count", Kv::U32(s.vit_heads as u32)),
        (
            "clip.vision.attention.layer_norm_epsilon",
            Kv::F32(s.vit_eps as f32),
        ),
        // InternVL normalises with ImageNet's statistics (its `build_transform`).
        ("clip.vision.image_mean", Kv::ArrF32(vec![0.485, 0.456, 0.406])),
        ("clip.vision.image_std", Kv::ArrF32(vec![0.229, 0.224, 0.225])),
        ("clip.use_gelu", Kv::Bool(true)),
        ("clip.vision.projector.scale_factor", Kv::U32(s.merge as u32)),
        ("clip.vision.preproc_min_tiles", Kv::U32(s.min_tiles as u32)),
        ("clip.vision.preproc_max_tiles", Kv::U32(s.max_tiles as u32)),
    ]
}

fn llama_quantize(input: &Path, output: &Path, ftype: u32, threads: u32) -> Result<(), ConvertError> {
    crate::engine::backend().map_err(|e| ConvertError::Quantize(e.to_string()))?;
    let c = |p: &Path| {
        std::ffi::CString::new(p.as_os_str().as_encoded_bytes())
            .map_err(|_| ConvertError::Invalid(format!("{}: path contains NUL", p.display())))
    };
    let (inp, out) = (c(input)?, c(output)?);
    // SAFETY: plain-data defaults from llama.cpp; the paths outlive the call.
    let rc = unsafe {
        let mut params = llama_cpp_sys_2::llama_model_quantize_default_params();
        params.ftype = ftype;
        params.nthread = i32::try_from(threads).unwrap_or(1);
        llama_cpp_sys_2::llama_model_quantize(inp.as_ptr(), out.as_ptr(), &params)
    };
    if rc != 0 {
        return Err(ConvertError::Quantize(format!(
            "llama_model_quantize({}) returned {rc}",
            input.display()
        )));
    }
    Ok(())
}

/// Converts the checkpoint in `hf_dir` into `out_dir/model.gguf` and `out_dir/mmproj.gguf`.
pub fn convert(hf_dir: &Path, out_dir: &Path, options: &ConvertOptions) -> Result<Converted, ConvertError> {
    let config = read_json(&hf_dir.join("config.json"))?;
    let s = shapes(&config)?;
    let ckpt = Checkpoint::open(hf_dir)?;
    let llm_weights = options.weights.written();
    let mmproj_weights = options.mmproj_weights.unwrap_or(options.weights).written();
    let llm = llm_plan(&s, llm_weights);
    let mmproj = mmproj_plan(&s, mmproj_weights, options.upstream_position_order);
    check(&llm, &ckpt)?;
    check(&mmproj, &ckpt)?;
    let tokenizer = tokenizer::read(hf_dir, s.vocab, &config)?;
    let used: std::collections::HashSet<&str> = llm
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
    if let WeightType::Llama { ftype, name: tname } = options.weights {
        tracing::info!(weights = tname, "quantising the LLM with llama.cpp");
        let quantised = model.with_extension("gguf.quantised");
        llama_quantize(&partial(&model), &quantised, ftype, options.threads)?;
        std::fs::rename(&quantised, partial(&model)).map_err(|e| ConvertError::io(&model, e))?;
    }
    let mmproj_type = options.mmproj_weights.unwrap_or(options.weights);
    let meta = mmproj_metadata(&s, &format!("{name}-mmproj"), mmproj_type.file_type());
    write(&partial(&mmproj_path), &meta, &mmproj, &ckpt)?;
    for p in [&model, &mmproj_path] {
        std::fs::rename(partial(p), p).map_err(|e| ConvertError::io(p, e))?;
    }
    let weights = match options.weights {
        WeightType::F32 => "f32",
        WeightType::F16 => "f16",
        WeightType::BF16 => "bf16",
        WeightType::Q8_0 => "q8_0",
        WeightType::Llama { name, .. } => name,
    };
    Ok(Converted {
        model,
        mmproj: mmproj_path,
        model_tensors: llm.tensors.len(),
        mmproj_tensors: mmproj.tensors.len(),
        n_vocab: s.vocab,
        weights: weights.to_owned(),
        unused_tensors,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config() -> Value {
        json!({
            "architectures": ["InternVLChatModel"], "downsample_ratio": 0.5, "ps_version": "v2",
            "select_layer": -1, "use_thumbnail": true, "force_image_size": 448,
            "min_dynamic_patch": 1, "max_dynamic_patch": 6,
            "llm_config": {"architectures": ["Qwen2ForCausalLM"], "hidden_size": 64, "num_attention_heads": 4,
                "num_key_value_heads": 2, "num_hidden_layers": 2, "intermediate_size": 128, "vocab_size": 320,
                "max_position_embeddings": 32768},
            "vision_config": {"model_type": "intern_vit_6b", "hidden_size": 32, "num_attention_heads": 2,
                "num_hidden_layers": 2, "intermediate_size": 64, "patch_size": 14, "image_size": 448}
        })
    }

    #[test]
    fn accepts_vintern_and_refuses_others_by_name() {
        assert!(shapes(&config()).is_ok());
        let mut c = config();
        c["architectures"] = json!(["LlavaForConditionalGeneration"]);
        let e = shapes(&c).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("LlavaForConditionalGeneration"), "{e}");
        let mut c = config();
        c["llm_config"]["architectures"] = json!(["InternLM2ForCausalLM"]);
        let e = shapes(&c).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("InternLM2ForCausalLM"), "{e}");
        let mut c = config();
        c["ps_version"] = json!("v1");
        let e = shapes(&c).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("ps_version v1"), "{e}");
        let mut c = config();
        c["llm_config"]["hidden_size"] = json!("wide");
        let e = shapes(&c).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("llm_config.hidden_size"), "{e}");
    }

    #[test]
    fn plans_name_every_tensor_llama_cpp_loads() {
        let s = shapes(&config()).expect("shapes");
        let llm = llm_plan(&s, TensorType::Q8_0);
        // embeddings, norm, untied head, 12 per layer
        assert_eq!(llm.tensors.len(), 3 + 12 * 2);
        let mm = mmproj_plan(&s, TensorType::Q8_0, false);
        assert_eq!(mm.tensors.len(), 4 + 18 * 2 + 6);
        let q = mm
            .tensors
            .iter()
            .find(|t| t.info.name == "v.blk.0.attn_q.weight")
            .expect("q");
        assert_eq!(q.info.ne, vec![32, 32]);
        assert_eq!(q.info.ty, TensorType::Q8_0);
        let down = mm
            .tensors
            .iter()
            .find(|t| t.info.name == "v.blk.1.ffn_down.weight")
            .expect("down");
        assert_eq!(down.info.ne, vec![64, 32]);
        let patch = mm
            .tensors
            .iter()
            .find(|t| t.info.name == "v.patch_embd.weight")
            .expect("patch");
        assert_eq!(patch.info.ty, TensorType::F16);
        assert_eq!(patch.info.ne, vec![14, 14, 3, 32]);
    }

    #[test]
    fn weight_types_parse() {
        assert_eq!("Q8_0".parse::<WeightType>(), Ok(WeightType::Q8_0));
        assert_eq!("bf16".parse::<WeightType>(), Ok(WeightType::BF16));
        assert_eq!(WeightType::BF16.file_type(), 32);
        // what the converter writes reads back under the name it was asked for
        for name in ["f32", "f16", "bf16", "q8_0"] {
            let w: WeightType = name.parse().expect("type");
            assert_eq!(file_type_name(w.file_type()), Some(name));
        }
        assert_eq!(
            file_type_name(llama_cpp_sys_2::LLAMA_FTYPE_MOSTLY_Q4_K_M),
            Some("q4_k_m")
        );
        // 4 is a retired llama_ftype: unknown values are not guessed
        assert_eq!(file_type_name(4), None);
        assert!(matches!(
            "q4_k_m".parse::<WeightType>(),
            Ok(WeightType::Llama { name: "q4_k_m", .. })
        ));
        assert!("q9".parse::<WeightType>().is_err());
    }
}
