//! The GGUF metadata of the two files, under the keys llama.cpp's loaders read
//! (`src/llama-arch.cpp`, `tools/mtmd/clip-impl.h`).

use crate::config::Shapes;
use crate::gguf::Value as Kv;

pub(crate) fn llm_metadata(s: &Shapes, name: &str, file_type: u32) -> Vec<(&'static str, Kv)> {
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

/// The projector's keys; with `class_last`, vinscan's key saying the position table is in the
/// graph's order ([`vinscan_core::model::projector_keys`]).
pub(crate) fn mmproj_metadata(
    s: &Shapes,
    name: &str,
    file_type: u32,
    class_last: bool,
) -> Vec<(&'static str, Kv)> {
    use vinscan_core::model::projector_keys::{CLASS_LAST, POSITION_ORDER};
    let mut keys = vec![
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
    ];
    if class_last {
        keys.push((POSITION_ORDER, Kv::Str(CLASS_LAST.into())));
    }
    keys
}
