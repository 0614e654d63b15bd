//! The checkpoint's `config.json`: the architectures vinscan converts, and the shapes that
//! matter, read and checked before anything else happens.

use serde_json::Value;

use crate::ConvertError;

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
pub(crate) struct Shapes {
    pub(crate) text: usize,
    pub(crate) layers: usize,
    pub(crate) heads: usize,
    pub(crate) kv_heads: usize,
    pub(crate) ff: usize,
    pub(crate) vocab: usize,
    pub(crate) ctx: usize,
    pub(crate) rope_theta: f64,
    pub(crate) rms_eps: f64,
    pub(crate) tied: bool,
    pub(crate) vit: usize,
    pub(crate) vit_layers: usize,
    pub(crate) vit_heads: usize,
    pub(crate) vit_ff: usize,
    pub(crate) vit_eps: f64,
    pub(crate) image: usize,
    pub(crate) patch: usize,
    pub(crate) merge: usize,
    pub(crate) min_tiles: usize,
    pub(crate) max_tiles: usize,
}

pub(crate) fn shapes(config: &Value) -> Result<Shapes, ConvertError> {
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    pub(crate) fn config() -> Value {
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
}
