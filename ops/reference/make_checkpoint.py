#!/usr/bin/env python3
"""Seeded random-weight Vintern checkpoints in the Hugging Face form Vintern publishes.

The model is built by transformers' InternVL port (`InternVLForConditionalGeneration`: InternViT
with layer scale, pixel-shuffle MLP projector, Qwen2) with Vintern-1B's shapes (`full`) or a tiny
variant (`tiny`), every weight drawn from a seeded generator, and saved the way Vintern's
checkpoints are laid out: `config.json` of `InternVLChatModel` (model_type `internvl_chat`, with
`llm_config` and `vision_config`), `model.safetensors` under InternVL's original tensor names
(fused `attn.qkv`, `ls1`/`ls2`, `mlp1.*`, `language_model.model.*`), and a Qwen2 byte-level BPE
tokenizer carrying ChatML and InternVL's image markers. `internvl_layout.py` holds the name
mapping; `parity.py` loads the directory back into the same transformers model.
"""
import argparse
import json
import os
import sys

import torch
from safetensors.torch import save_file
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers
from transformers import PreTrainedTokenizerFast

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from internvl_layout import build_model, to_original  # noqa: E402
from toy_vocab import CHATML, QWEN2_SPLIT, QWEN_FIRST_SPECIAL, vocabulary  # noqa: E402

PRESETS = {
    # Tiny: exercises every tensor kind and the tokenizer padding path (vocab_size > tokens);
    # untied output head. Float32 storage, so f32 conversions compare exactly.
    "tiny": dict(
        llm=dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                 intermediate_size=128, vocab_size=320, tie_word_embeddings=False),
        vit=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64),
        n_ordinary=None, dtype="float32", max_dynamic_patch=6),
    # Tiny with Vintern-3B's structure (Qwen2.5-3B: the output head tied to the embeddings,
    # 8 query heads per key/value head); the ViT is InternViT-300M as in the 1B.
    "tiny-3b": dict(
        llm=dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=8, num_key_value_heads=1,
                 intermediate_size=160, vocab_size=320, tie_word_embeddings=True),
        vit=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64),
        n_ordinary=None, dtype="float32", max_dynamic_patch=6),
    # Vintern-1B-v3.5 (InternVL2.5-1B's layout, 0.94B parameters): Qwen2.5-0.5B with its own
    # output head (untied) + InternViT-300M-448px, bf16.
    "full": dict(
        llm=dict(hidden_size=896, num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
                 intermediate_size=4864, vocab_size=151674, tie_word_embeddings=False),
        vit=dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096),
        n_ordinary=QWEN_FIRST_SPECIAL, dtype="bfloat16", max_dynamic_patch=12),
}


# Log-normal sigma of the per-token scale of vocabulary rows (see `randomise`).
ROW_SCALE_SIGMA = float(os.environ.get("VINSCAN_REF_ROW_SCALE_SIGMA", "1.0"))


def vintern_config(p, image_token_id):
    """config.json as Vintern ships it (InternVLChatModel remote code)."""
    llm, vit = p["llm"], p["vit"]
    return {
        "architectures": ["InternVLChatModel"],
        "model_type": "internvl_chat",
        "torch_dtype": p["dtype"],
        "downsample_ratio": 0.5,
        "dynamic_image_size": True,
        "force_image_size": 448,
        "min_dynamic_patch": 1,
        "max_dynamic_patch": p["max_dynamic_patch"],
        "ps_version": "v2",
        "select_layer": -1,
        "template": "Hermes-2",
        "use_thumbnail": True,
        "llm_config": {
            "architectures": ["Qwen2ForCausalLM"],
            "model_type": "qwen2",
            "hidden_act": "silu",
            "hidden_size": llm["hidden_size"],
            "intermediate_size": llm["intermediate_size"],
            "num_attention_heads": llm["num_attention_heads"],
            "num_hidden_layers": llm["num_hidden_layers"],
            "num_key_value_heads": llm["num_key_value_heads"],
            "max_position_embeddings": 32768,
            "rms_norm_eps": 1e-6,
            "rope_theta": 1000000.0,
            "tie_word_embeddings": llm["tie_word_embeddings"],
            "vocab_size": llm["vocab_size"],
            "bos_token_id": 151643 if p["n_ordinary"] else None,
            "torch_dtype": p["dtype"],
        },
        "vision_config": {
            "architectures": ["InternVisionModel"],
            "model_type": "intern_vit_6b",
            "hidden_act": "gelu",
            "hidden_size": vit["hidden_size"],
            "intermediate_size": vit["intermediate_size"],
            "num_attention_heads": vit["num_attention_heads"],
            "num_hidden_layers": vit["num_hidden_layers"],
            "image_size": 448,
            "patch_size": 14,
            "num_channels": 3,
            "layer_norm_eps": 1e-6,
            "norm_type": "layer_norm",
            "qk_normalization": False,
            "qkv_bias": True,
            "initializer_factor": 0.1,
            "drop_path_rate": 0.0,
            "use_flash_attn": False,
            "torch_dtype": p["dtype"],
        },
        "image_token_id": image_token_id,  # not in Vintern's file; convenient for the reference
    }


def randomise(model, seed):
    """Every parameter from one seeded generator, scaled per kind so that each one matters:
    norms near 1 (not exactly, so a swapped or missing norm shows), layer scales near 0.1,
    everything else N(0, 0.02) (position embeddings N(0, 0.2), so their order shows), as
    Qwen2's and InternViT's own initialisers draw them.

    The output head's rows (the shared matrix when tied) get a log-normal scale per token
    (sigma 1, clipped at 3 sigma: 0.05x to 20x), as token frequency gives a trained model:
    next-token distributions are then peaked, with a clear top-1 most of the time, instead of
    the near-uniform logits of an i.i.d. head whose argmax any rounding would flip. Unclipped,
    151k draws reach 80x and those few rows magnify every rounding error (docs/FIDELITY.md)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in sorted(model.named_parameters()):
            noise = torch.randn(param.shape, generator=g, dtype=torch.float32)
            if "norm" in name and name.endswith("weight"):
                value = 1.0 + 0.1 * noise
            elif "lambda_" in name:
                value = 0.1 + 0.02 * noise
            elif "position_embeddings" in name or "cls_token" in name:
                value = 0.2 * noise
            else:
                value = 0.02 * noise
            tied = model.config.tie_word_embeddings
            if name == "lm_head.weight" or (tied and name == "model.language_model.embed_tokens.weight"):
                rows = torch.randn((param.shape[0], 1), generator=g, dtype=torch.float32).clamp(-3.0, 3.0)
                value = value * torch.exp(ROW_SCALE_SIGMA * rows)
            param.copy_(value.to(param.dtype))


def tokenizer(n_ordinary, out_dir):
    tokens, kinds, merges, ids = vocabulary(n_ordinary)
    first_special = len(tokens) - len(ids)
    vocab = {t: i for i, t in enumerate(tokens[:first_special])}
    bpe = models.BPE(vocab=vocab, merges=[tuple(m.split(" ")) for m in merges])
    tok = Tokenizer(bpe)
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    for s, kind in zip(tokens[first_special:], kinds[first_special:]):
        added = AddedToken(s, special=kind == "control", normalized=False)
        n = tok.add_special_tokens([added]) if kind == "control" else tok.add_tokens([added])
        assert n == 1 and tok.token_to_id(s) == ids[s], s
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        model_max_length=32768, chat_template=CHATML)
    fast.save_pretrained(out_dir)
    return ids


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("preset", choices=sorted(PRESETS))
    ap.add_argument("out_dir")
    ap.add_argument("--seed", type=int, default=20261122)
    ap.add_argument("--layout", choices=["vintern", "hf"], default="vintern",
                    help="vintern: InternVL's original names (as Vintern publishes); hf: transformers' "
                         "InternVL port as its save_pretrained writes it (the `-hf` repositories)")
    a = ap.parse_args()
    p = PRESETS[a.preset]
    os.makedirs(a.out_dir, exist_ok=True)
    ids = tokenizer(p["n_ordinary"], a.out_dir)
    config = vintern_config(p, ids["<IMG_CONTEXT>"])
    model = build_model(config)
    randomise(model, a.seed)
    dtype = getattr(torch, p["dtype"])
    if a.layout == "hf":
        model.to(dtype).save_pretrained(a.out_dir)
        # the tile budget lives in the image processor's file in this layout
        with open(os.path.join(a.out_dir, "preprocessor_config.json"), "w") as f:
            json.dump({"image_processor_type": "GotOcr2ImageProcessorFast", "crop_to_patches": True,
                       "min_patches": 1, "max_patches": p["max_dynamic_patch"],
                       "size": {"height": 448, "width": 448}}, f, indent=2)
        n = sum(t.numel() for t in model.parameters())
        print(f"{a.out_dir}: transformers layout, {n} parameters ({p['dtype']})", file=sys.stderr)
        return
    tensors = {k: v.to(dtype).contiguous() for k, v in to_original(model.state_dict(), config).items()}
    save_file(tensors, os.path.join(a.out_dir, "model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(a.out_dir, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    n = sum(t.numel() for t in tensors.values())
    print(f"{a.out_dir}: {len(tensors)} tensors, {n} parameters ({p['dtype']})", file=sys.stderr)


if __name__ == "__main__":
    main()
