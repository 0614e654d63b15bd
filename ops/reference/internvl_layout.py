"""Vintern's checkpoint layout (InternVL's original `InternVLChatModel` remote code) and
transformers' InternVL port: the config translation and the tensor name mapping both ways.
The mapping restates what transformers' InternVL conversion script does, in reverse."""
import re

import torch
from transformers import InternVLConfig, InternVLForConditionalGeneration

VIT = "model.vision_tower."
# Per-layer renames: transformers' port -> InternVL's original names.
VIT_LAYER = [
    ("attention.projection_layer.", "attn.proj."),
    ("lambda_1", "ls1"),
    ("lambda_2", "ls2"),
    ("layernorm_before.", "norm1."),
    ("layernorm_after.", "norm2."),
    ("mlp.fc1.", "mlp.fc1."),
    ("mlp.fc2.", "mlp.fc2."),
]
FIXED = {
    VIT + "embeddings.cls_token": "vision_model.embeddings.class_embedding",
    VIT + "embeddings.position_embeddings": "vision_model.embeddings.position_embedding",
    VIT + "embeddings.patch_embeddings.projection.weight": "vision_model.embeddings.patch_embedding.weight",
    VIT + "embeddings.patch_embeddings.projection.bias": "vision_model.embeddings.patch_embedding.bias",
    "model.multi_modal_projector.layer_norm.weight": "mlp1.0.weight",
    "model.multi_modal_projector.layer_norm.bias": "mlp1.0.bias",
    "model.multi_modal_projector.linear_1.weight": "mlp1.1.weight",
    "model.multi_modal_projector.linear_1.bias": "mlp1.1.bias",
    "model.multi_modal_projector.linear_2.weight": "mlp1.3.weight",
    "model.multi_modal_projector.linear_2.bias": "mlp1.3.bias",
    "lm_head.weight": "language_model.lm_head.weight",
}


def port_config(vintern):
    """transformers' InternVLConfig equivalent to a Vintern config.json."""
    llm, vit = dict(vintern["llm_config"]), vintern["vision_config"]
    tie = bool(llm.get("tie_word_embeddings", False))
    text = {k: llm[k] for k in (
        "hidden_size", "intermediate_size", "num_attention_heads", "num_hidden_layers", "num_key_value_heads",
        "max_position_embeddings", "rms_norm_eps", "rope_theta", "vocab_size", "hidden_act")}
    text.update(model_type="qwen2", tie_word_embeddings=tie)
    vision = dict(
        hidden_size=vit["hidden_size"], intermediate_size=vit["intermediate_size"],
        num_attention_heads=vit["num_attention_heads"], num_hidden_layers=vit["num_hidden_layers"],
        image_size=vit["image_size"], patch_size=vit["patch_size"], layer_norm_eps=vit["layer_norm_eps"],
        norm_type=vit["norm_type"], use_qk_norm=vit["qk_normalization"], attention_bias=vit["qkv_bias"],
        hidden_act=vit["hidden_act"], use_mean_pooling=True, use_absolute_position_embeddings=True)
    return InternVLConfig(
        vision_config=vision, text_config=text, image_token_id=vintern["image_token_id"],
        image_seq_length=int((vit["image_size"] // vit["patch_size"]) ** 2 * vintern["downsample_ratio"] ** 2),
        downsample_ratio=vintern["downsample_ratio"], projector_hidden_act="gelu",
        vision_feature_layer=vintern["select_layer"], vision_feature_select_strategy="default",
        tie_word_embeddings=tie)


def build_model(vintern):
    torch.manual_seed(0)
    return InternVLForConditionalGeneration(port_config(vintern)).float().eval()


def to_original(state, vintern):
    """transformers' state dict -> InternVL's original names (q/k/v fused into attn.qkv)."""
    out, qkv = {}, {}
    for name, t in state.items():
        if name in FIXED:
            out[FIXED[name]] = t
        elif name.startswith("model.language_model."):
            out["language_model.model." + name[len("model.language_model."):]] = t
        elif m := re.match(r"model\.vision_tower\.encoder\.layer\.(\d+)\.(.*)$", name):
            i, rest = m.groups()
            base = f"vision_model.encoder.layers.{i}."
            if q := re.match(r"attention\.([qkv])_proj\.(weight|bias)$", rest):
                qkv.setdefault((base, q.group(2)), {})[q.group(1)] = t
                continue
            for port, orig in VIT_LAYER:
                if rest.startswith(port):
                    out[base + orig + rest[len(port):]] = t
                    break
            else:
                raise KeyError(name)
        else:
            raise KeyError(name)
    for (base, kind), parts in qkv.items():
        out[f"{base}attn.qkv.{kind}"] = torch.cat([parts["q"], parts["k"], parts["v"]], dim=0)
    if vintern["llm_config"].get("tie_word_embeddings"):
        out.pop("language_model.lm_head.weight", None)
    return out


def from_original(tensors, vintern):
    """InternVL's original names -> transformers' state dict (attn.qkv split in three)."""
    inverse = {v: k for k, v in FIXED.items()}
    out = {}
    for name, t in tensors.items():
        if name in inverse:
            out[inverse[name]] = t
        elif name.startswith("language_model.model."):
            out["model.language_model." + name[len("language_model.model."):]] = t
        elif m := re.match(r"vision_model\.encoder\.layers\.(\d+)\.(.*)$", name):
            i, rest = m.groups()
            base = f"{VIT}encoder.layer.{i}."
            if q := re.match(r"attn\.qkv\.(weight|bias)$", rest):
                for part, chunk in zip("qkv", torch.chunk(t, 3, dim=0)):
                    out[f"{base}attention.{part}_proj.{q.group(1)}"] = chunk
                continue
            for port, orig in VIT_LAYER:
                if rest.startswith(orig):
                    out[base + port + rest[len(orig):]] = t
                    break
            else:
                raise KeyError(name)
        else:
            raise KeyError(name)
    if vintern["llm_config"].get("tie_word_embeddings"):
        out["lm_head.weight"] = out["model.language_model.embed_tokens.weight"]
    return out
