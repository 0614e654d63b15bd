//! The two layouts an InternVL checkpoint is published in, and how vinscan reads the second as
//! the first:
//! - **InternVL's original** (`InternVLChatModel`, remote code; what Vintern publishes):
//!   `config.json` with `llm_config` and `vision_config`, tensors `vision_model.*` with a fused
//!   `attn.qkv`, `mlp1.*`, `language_model.*`. The planner (the `plan` module) names these.
//! - **transformers' port** (`InternVLForConditionalGeneration`, the `-hf` repositories):
//!   `config.json` with `text_config` and `vision_config` under other keys, the tile budget in
//!   `preprocessor_config.json` (`min_patches` / `max_patches`), tensors `vision_tower.*` with
//!   separate q/k/v projections, `multi_modal_projector.*`, and the language model under the
//!   same names as the original. These are the names `save_pretrained` writes (transformers
//!   5.x applies its checkpoint conversion mapping in reverse on save).
//!
//! The mapping restates transformers' own InternVL conversion script
//! (`models/internvl/convert_internvl_weights_to_hf.py`) in the direction vinscan needs, as
//! `ops/reference/internvl_layout.py` does for the reference.

use serde_json::{Value, json};

use crate::ConvertError;

/// Which names a checkpoint's tensors have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Layout {
    /// InternVL's original names (the planner's).
    Original,
    /// transformers' port (`-hf`).
    Transformers,
}

/// The checkpoint's `config.json` in the original form the planner reads, and its layout.
/// `preprocessor` is the port's image processor settings, when the checkpoint has them
/// ([`image_processor`]): the port keeps the tile budget there.
///
/// # Errors
/// `UnknownArchitecture` for a port whose language model is not Qwen2; `Unsupported` for a
/// port setting llama.cpp's InternVL graph does not implement; `Invalid` for a missing key.
pub(crate) fn original_config(
    config: &Value,
    preprocessor: Option<&Value>,
) -> Result<(Value, Layout), ConvertError> {
    let arch = config
        .get("architectures")
        .and_then(Value::as_array)
        .and_then(|a| a.first())
        .and_then(Value::as_str);
    if arch != Some("InternVLForConditionalGeneration") {
        return Ok((config.clone(), Layout::Original));
    }
    let missing = |key: &str| ConvertError::Invalid(format!("config.json: {key} is missing"));
    let text = config.get("text_config").ok_or_else(|| missing("text_config"))?;
    let vision = config
        .get("vision_config")
        .ok_or_else(|| missing("vision_config"))?;
    let text_type = text.get("model_type").and_then(Value::as_str).unwrap_or("(none)");
    if text_type != "qwen2" {
        return Err(ConvertError::UnknownArchitecture(format!(
            "text_config.model_type is {text_type}; only qwen2 language models are supported (Vintern 1B/3B, InternVL2.5-1B/4B, InternVL3-1B/2B)"
        )));
    }
    let str_of = |v: &Value, key: &str, default: &'static str| -> String {
        v.get(key).and_then(Value::as_str).unwrap_or(default).to_owned()
    };
    for (key, value, wanted) in [
        (
            "projector_hidden_act",
            str_of(config, "projector_hidden_act", "gelu"),
            "gelu",
        ),
        (
            "vision_feature_select_strategy",
            str_of(config, "vision_feature_select_strategy", "default"),
            "default",
        ),
    ] {
        if value != wanted {
            return Err(ConvertError::Unsupported(format!(
                "{key} {value}: llama.cpp's InternVL graph implements {wanted} only"
            )));
        }
    }
    let flag = |v: &Value, key: &str, default: bool| v.get(key).and_then(Value::as_bool).unwrap_or(default);
    if !flag(vision, "use_absolute_position_embeddings", true) {
        return Err(ConvertError::Unsupported(
            "vision_config.use_absolute_position_embeddings false: llama.cpp's graph adds a learned position table".into(),
        ));
    }
    if !flag(vision, "use_mean_pooling", true) {
        return Err(ConvertError::Unsupported(
            "vision_config.use_mean_pooling false: the ViT's output then goes through a final layer norm llama.cpp's InternVL graph does not apply".into(),
        ));
    }
    // one layer's features: a list concatenates several, which llama.cpp's graph does not
    let select = config.get("vision_feature_layer").cloned().unwrap_or(json!(-1));
    if !select.is_i64() {
        return Err(ConvertError::Unsupported(format!(
            "vision_feature_layer {select}: llama.cpp's graph takes one layer's features"
        )));
    }
    if let Some(p) = preprocessor
        && !flag(p, "crop_to_patches", true)
    {
        return Err(ConvertError::Unsupported(
            "the image processor's crop_to_patches is false: llama.cpp always tiles (InternVL's dynamic 448 px tiles and the thumbnail)".into(),
        ));
    }
    // `[448, 448]` in the port, a number in the original
    let side = |key: &str| -> Result<Value, ConvertError> {
        match vision.get(key) {
            Some(Value::Array(a)) if a.len() == 2 && a[0] == a[1] => Ok(a[0].clone()),
            Some(n @ Value::Number(_)) => Ok(n.clone()),
            Some(other) => Err(ConvertError::Unsupported(format!(
                "vision_config.{key} {other}: vinscan reads square tiles"
            ))),
            None => Err(missing(&format!("vision_config.{key}"))),
        }
    };
    let image = side("image_size")?;
    let llm = llm_config(config, text);
    let vit = vision_config(vision, image.clone(), side("patch_size")?);
    let patches = |key: &str, default: u64| {
        preprocessor
            .and_then(|p| p.get(key))
            .and_then(Value::as_u64)
            .unwrap_or(default)
    };
    let original = json!({
        "architectures": ["InternVLChatModel"],
        "downsample_ratio": config.get("downsample_ratio").cloned().unwrap_or(json!(0.5)),
        "select_layer": select,
        // the port implements InternVL's pixel shuffle v2 and the thumbnail tile only
        "ps_version": "v2",
        "use_thumbnail": true,
        "force_image_size": image,
        "min_dynamic_patch": patches("min_patches", 1),
        "max_dynamic_patch": patches("max_patches", 12),
        "llm_config": llm,
        "vision_config": vit,
    });
    Ok((original, Layout::Transformers))
}

/// The original `llm_config` of the port's `text_config` (`tie_word_embeddings` may sit at
/// the top of the port's config).
fn llm_config(config: &Value, text: &Value) -> Value {
    let tied = text
        .get("tie_word_embeddings")
        .or_else(|| config.get("tie_word_embeddings"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    // transformers 5 keeps RoPE's base under `rope_parameters`
    let rope_theta = text
        .pointer("/rope_parameters/rope_theta")
        .or_else(|| text.get("rope_theta"))
        .cloned()
        .unwrap_or(Value::Null);
    let mut llm = copy(
        text,
        &[
            "hidden_size",
            "intermediate_size",
            "num_attention_heads",
            "num_hidden_layers",
            "num_key_value_heads",
            "max_position_embeddings",
            "rms_norm_eps",
            "vocab_size",
            "bos_token_id",
        ],
    );
    llm.insert("architectures".into(), json!(["Qwen2ForCausalLM"]));
    llm.insert("tie_word_embeddings".into(), json!(tied));
    llm.insert("rope_theta".into(), rope_theta);
    Value::Object(llm)
}

/// The original `vision_config` of the port's, with the square tile and patch sides.
fn vision_config(vision: &Value, image: Value, patch: Value) -> Value {
    let mut vit = copy(
        vision,
        &[
            "hidden_size",
            "intermediate_size",
            "num_attention_heads",
            "num_hidden_layers",
            "layer_norm_eps",
            "norm_type",
            "hidden_act",
        ],
    );
    vit.insert("model_type".into(), json!("intern_vit_6b"));
    vit.insert("image_size".into(), image);
    vit.insert("patch_size".into(), patch);
    vit.insert(
        "qk_normalization".into(),
        vision.get("use_qk_norm").cloned().unwrap_or(json!(false)),
    );
    vit.insert(
        "qkv_bias".into(),
        // transformers' default, as its port reads the file
        vision.get("attention_bias").cloned().unwrap_or(json!(false)),
    );
    Value::Object(vit)
}

/// `keys` of `from` that it has.
fn copy(from: &Value, keys: &[&str]) -> serde_json::Map<String, Value> {
    keys.iter()
        .filter_map(|k| Some(((*k).to_owned(), from.get(*k)?.clone())))
        .collect()
}

/// The image processor's settings of a checkpoint folder: `preprocessor_config.json`, or the
/// `image_processor` object of `processor_config.json` (where transformers 5's
/// `Processor.save_pretrained` puts them); `None` when it has neither.
///
/// # Errors
/// A file that cannot be read or is not JSON.
pub(crate) fn image_processor(dir: &std::path::Path) -> Result<Option<Value>, ConvertError> {
    let pre = dir.join("preprocessor_config.json");
    if pre.is_file() {
        return crate::hf::read_json(&pre).map(Some);
    }
    let processor = dir.join("processor_config.json");
    if processor.is_file() {
        return Ok(crate::hf::read_json(&processor)?.get("image_processor").cloned());
    }
    Ok(None)
}

/// Per-layer renames of InternViT, original → port.
const VIT_LAYER: [(&str, &str); 5] = [
    ("attn.proj.", "attention.projection_layer."),
    ("ls1", "lambda_1"),
    ("ls2", "lambda_2"),
    ("norm1.", "layernorm_before."),
    ("norm2.", "layernorm_after."),
];

/// Whole-name renames, original → port.
const FIXED: [(&str, &str); 10] = [
    (
        "vision_model.embeddings.class_embedding",
        "vision_tower.embeddings.cls_token",
    ),
    (
        "vision_model.embeddings.position_embedding",
        "vision_tower.embeddings.position_embeddings",
    ),
    (
        "vision_model.embeddings.patch_embedding.weight",
        "vision_tower.embeddings.patch_embeddings.projection.weight",
    ),
    (
        "vision_model.embeddings.patch_embedding.bias",
        "vision_tower.embeddings.patch_embeddings.projection.bias",
    ),
    ("mlp1.0.weight", "multi_modal_projector.layer_norm.weight"),
    ("mlp1.0.bias", "multi_modal_projector.layer_norm.bias"),
    ("mlp1.1.weight", "multi_modal_projector.linear_1.weight"),
    ("mlp1.1.bias", "multi_modal_projector.linear_1.bias"),
    ("mlp1.3.weight", "multi_modal_projector.linear_2.weight"),
    ("mlp1.3.bias", "multi_modal_projector.linear_2.bias"),
];

/// The port's name for the original tensor `name` (the language model's are the same).
pub(crate) fn port_name(name: &str) -> String {
    if let Some((_, port)) = FIXED.iter().find(|(orig, _)| *orig == name) {
        return (*port).to_owned();
    }
    if let Some(rest) = name.strip_prefix("vision_model.encoder.layers.")
        && let Some((layer, tail)) = rest.split_once('.')
    {
        let tail = VIT_LAYER
            .iter()
            .find_map(|(orig, port)| tail.strip_prefix(orig).map(|t| format!("{port}{t}")))
            .unwrap_or_else(|| tail.to_owned());
        return format!("vision_tower.encoder.layer.{layer}.{tail}");
    }
    name.to_owned()
}

/// The port's separate projection for part `k` (0 q, 1 k, 2 v) of the original fused
/// `vision_model.encoder.layers.N.attn.qkv.{weight,bias}`; `None` for another name.
pub(crate) fn port_qkv_part(fused: &str, k: usize) -> Option<String> {
    let rest = fused.strip_prefix("vision_model.encoder.layers.")?;
    let (layer, tail) = rest.split_once('.')?;
    let kind = tail.strip_prefix("attn.qkv.")?;
    let part = ["q", "k", "v"].get(k)?;
    Some(format!(
        "vision_tower.encoder.layer.{layer}.attention.{part}_proj.{kind}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn original_names_map_to_the_ports() {
        assert_eq!(
            port_name("vision_model.encoder.layers.3.attn.proj.weight"),
            "vision_tower.encoder.layer.3.attention.projection_layer.weight"
        );
        assert_eq!(
            port_name("vision_model.encoder.layers.0.ls2"),
            "vision_tower.encoder.layer.0.lambda_2"
        );
        assert_eq!(
            port_name("vision_model.encoder.layers.12.mlp.fc1.bias"),
            "vision_tower.encoder.layer.12.mlp.fc1.bias"
        );
        assert_eq!(port_name("mlp1.3.bias"), "multi_modal_projector.linear_2.bias");
        assert_eq!(
            port_name("language_model.model.layers.0.self_attn.q_proj.weight"),
            "language_model.model.layers.0.self_attn.q_proj.weight"
        );
        assert_eq!(
            port_qkv_part("vision_model.encoder.layers.5.attn.qkv.bias", 2).as_deref(),
            Some("vision_tower.encoder.layer.5.attention.v_proj.bias")
        );
        assert_eq!(port_qkv_part("mlp1.0.weight", 0), None);
    }

    #[test]
    fn a_port_config_reads_as_the_original_and_others_pass_through() {
        let port = json!({
            "architectures": ["InternVLForConditionalGeneration"], "downsample_ratio": 0.5,
            "vision_feature_layer": -1, "projector_hidden_act": "gelu", "tie_word_embeddings": true,
            "text_config": {"model_type": "qwen2", "hidden_size": 64, "num_attention_heads": 8,
                "num_key_value_heads": 1, "num_hidden_layers": 2, "intermediate_size": 160,
                "vocab_size": 320, "max_position_embeddings": 32768,
                "rope_parameters": {"rope_theta": 1000000.0}},
            "vision_config": {"hidden_size": 32, "num_attention_heads": 2, "num_hidden_layers": 2,
                "intermediate_size": 64, "image_size": [448, 448], "patch_size": [14, 14],
                "use_qk_norm": false, "attention_bias": true}
        });
        let pre = json!({"min_patches": 1, "max_patches": 6});
        let (c, layout) = original_config(&port, Some(&pre)).expect("port");
        assert_eq!(layout, Layout::Transformers);
        let s = crate::config::shapes(&c).expect("shapes");
        assert!(s.tied, "tied at the top level");
        assert_eq!(
            (s.heads, s.kv_heads, s.max_tiles, s.image, s.patch),
            (8, 1, 6, 448, 14)
        );
        assert_eq!(s.rope_theta, 1_000_000.0);
        let mut other = port.clone();
        other["text_config"]["model_type"] = json!("llama");
        let e = original_config(&other, None)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("text_config.model_type is llama"), "{e}");
        for (key, value) in [
            ("vision_feature_select_strategy", json!("full")),
            ("vision_feature_layer", json!([-1, -2])),
        ] {
            let mut other = port.clone();
            other[key] = value;
            assert!(original_config(&other, None).is_err(), "{key}");
        }
        let mut pooled = port.clone();
        pooled["vision_config"]["use_mean_pooling"] = json!(false);
        assert!(original_config(&pooled, None).is_err());
        assert!(original_config(&port, Some(&json!({"crop_to_patches": false}))).is_err());
        let original = crate::config::tests::config();
        assert_eq!(
            original_config(&original, None).expect("original"),
            (original.clone(), Layout::Original)
        );
    }
}
