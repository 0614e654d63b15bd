//! The tensors of the two GGUF files, planned from the shapes: each one's llama.cpp name, type
//! and dimensions and where its values come from in the checkpoint; the plan is checked against
//! the checkpoint before anything is written, then written tensor by tensor.

use std::path::Path;

use crate::ConvertError;
use crate::config::Shapes;
use crate::gguf::{GgufFile, TensorInfo, TensorType, Value as Kv};
use crate::hf::Checkpoint;
use crate::layout::{Layout, port_name, port_qkv_part};

/// Where a GGUF tensor's values come from.
#[derive(Debug, Clone)]
pub(crate) enum Source {
    /// The checkpoint tensor as is.
    Copy(String),
    /// Part `index` of 3 along the first axis (fused `attn.qkv`).
    QkvPart(String, usize),
    /// InternViT's position embedding, class row moved last (unless `upstream`).
    Positions { name: String, upstream: bool },
}

impl Source {
    pub(crate) fn name(&self) -> &str {
        match self {
            Self::Copy(n) | Self::QkvPart(n, _) | Self::Positions { name: n, .. } => n,
        }
    }
}

pub(crate) struct Planned {
    pub(crate) info: TensorInfo,
    pub(crate) source: Source,
    /// The checkpoint tensor's expected shape (outermost first, as PyTorch writes it).
    expected: Vec<usize>,
}

/// A weight matrix's type: the requested one, f16 where a q8_0 row would not fill its blocks.
fn matrix_type(ne0: usize, weights: TensorType) -> TensorType {
    match weights {
        TensorType::Q8_0 if !ne0.is_multiple_of(32) => TensorType::F16,
        t => t,
    }
}

pub(crate) struct Plan {
    pub(crate) tensors: Vec<Planned>,
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

    /// This plan reading a checkpoint in `layout`: the planner names InternVL's original
    /// tensors; transformers' port has other names and q, k and v apart
    /// ([`crate::layout`]).
    pub(crate) fn in_layout(mut self, layout: Layout) -> Self {
        if layout == Layout::Original {
            return self;
        }
        for t in &mut self.tensors {
            t.source = match std::mem::replace(&mut t.source, Source::Copy(String::new())) {
                Source::Copy(name) => Source::Copy(port_name(&name)),
                Source::Positions { name, upstream } => Source::Positions {
                    name: port_name(&name),
                    upstream,
                },
                Source::QkvPart(name, k) => {
                    // the fused tensor's first axis holds q, k and v: each is a third of it
                    if let Some(outer) = t.expected.first_mut() {
                        *outer /= 3;
                    }
                    Source::Copy(port_qkv_part(&name, k).unwrap_or(name))
                }
            };
        }
        self
    }
}

pub(crate) fn llm_plan(s: &Shapes, weights: TensorType) -> Plan {
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

pub(crate) fn mmproj_plan(s: &Shapes, weights: TensorType, upstream_positions: bool) -> Plan {
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
pub(crate) fn check(plan: &Plan, ckpt: &Checkpoint) -> Result<(), ConvertError> {
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

pub(crate) fn write(
    path: &Path,
    metadata: &[(&str, Kv)],
    plan: &Plan,
    ckpt: &Checkpoint,
) -> Result<(), ConvertError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::shapes;
    use crate::config::tests::config;

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
}
