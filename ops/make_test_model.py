#!/usr/bin/env python3
"""Deterministic random-weight Vintern-shaped model pairs (and a text model) in GGUF, written with llama.cpp's own
`gguf` package. The layout (tensor names, metadata keys) is what llama.cpp's loader reads for a
`qwen2` LLM and a `clip` projector of type `internvl` (see the vendored `src/llama-arch.cpp`,
`tools/mtmd/clip-impl.h` and `tools/mtmd/models/internvl.cpp`).

The tokenizer is byte-level BPE (GPT-2 byte alphabet, `qwen2` pre-tokenizer) carrying Qwen2.5's
special tokens and InternVL's image markers at their real ids in the full preset, so prompts
tokenise the way they do with Vintern.

The `tiny-llama` preset is the text stage's stand-in for VinaLLaMA (a LLaMA-2 chat model): one
`model.gguf` of the `llama` architecture with a SentencePiece vocabulary (`llama` tokenizer
model: `<unk>`, `<s>`, `</s>`, byte-fallback tokens `<0x00>`..`<0xFF>`, printable ASCII
pieces, `▁`) and VinaLLaMA's ChatML markers `<|im_start|>`/`<|im_end|>` with its template.
"""
import argparse
import os
import sys

import gguf
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from toy_vocab import CHATML, QWEN_FIRST_SPECIAL, byte_alphabet  # noqa: E402
from toy_vocab import vocabulary as toy_vocabulary  # noqa: E402

TOKEN_TYPES = {
    "normal": gguf.TokenType.NORMAL,
    "unused": gguf.TokenType.UNUSED,
    "control": gguf.TokenType.CONTROL,
    "user": gguf.TokenType.USER_DEFINED,
}


def vocabulary(n_ordinary):
    tokens, kinds, merges, ids = toy_vocabulary(n_ordinary)
    return tokens, [TOKEN_TYPES[k] for k in kinds], merges, ids


def normal(rng, shape, std=0.02):
    return (rng.standard_normal(shape, dtype=np.float32) * std).astype(np.float32)


class Writer:
    def __init__(self, path, arch, dtype, q8):
        self.w = gguf.GGUFWriter(path, arch)
        self.dtype, self.q8 = dtype, q8

    def matrix(self, name, arr):
        """2-D weights: q8_0 when asked and the row length allows, else the preset's float type."""
        if self.q8 and arr.ndim == 2 and arr.shape[-1] % 32 == 0:
            q = gguf.quants.quantize(arr, gguf.GGMLQuantizationType.Q8_0)
            self.w.add_tensor(name, q, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        else:
            self.w.add_tensor(name, arr.astype(self.dtype))

    def f32(self, name, arr):
        self.w.add_tensor(name, arr.astype(np.float32))

    def finish(self):
        self.w.write_header_to_file()
        self.w.write_kv_data_to_file()
        self.w.write_tensors_to_file()
        self.w.close()


def file_type(dtype, q8):
    if q8:
        return gguf.LlamaFileType.MOSTLY_Q8_0
    return gguf.LlamaFileType.MOSTLY_F16 if dtype == np.float16 else gguf.LlamaFileType.ALL_F32


# Tokens the tiny preset's "closing bias" favours: they end strings, numbers, arrays and objects.
CLOSERS = ['"', ",", "]", "}"]


def closing_bias(embd, tokens, strength):
    """Adds a constant direction to the residual stream (column 0 of the tied embedding) and
    tilts it towards JSON-closing tokens. Greedy decoding of purely random weights fills every
    string to its maxLength (thousands of tokens per page with a byte-level vocabulary); with
    this bias outputs stay short yet still depend on the image, so tests stay fast. Only the
    tiny preset uses it; the full preset is purely random."""
    alphabet = byte_alphabet()
    embd[:, 0] = 1.0
    for ch in CLOSERS:
        embd[tokens.index(alphabet[ord(ch)]), 0] += strength
    return embd


def write_llm(path, p, q8, seed):
    rng = np.random.default_rng(seed)
    tokens, types, merges, ids = vocabulary(p.get("n_ordinary"))
    E, L, H, KV, FF = p["embd"], p["layers"], p["heads"], p["kv_heads"], p["ff"]
    head = E // H
    out = Writer(path, "qwen2", p["dtype"], q8)
    w = out.w
    w.add_name(p["name"])
    w.add_context_length(p["ctx"])
    w.add_embedding_length(E)
    w.add_block_count(L)
    w.add_feed_forward_length(FF)
    w.add_head_count(H)
    w.add_head_count_kv(KV)
    w.add_rope_freq_base(1_000_000.0)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_file_type(file_type(p["dtype"], q8))
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen2")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(ids["<|endoftext|>"])
    w.add_eos_token_id(ids["<|im_end|>"])
    w.add_pad_token_id(ids["<|endoftext|>"])
    w.add_add_bos_token(False)
    w.add_chat_template(CHATML)
    embd = normal(rng, (len(tokens), E))
    if p.get("closing_bias"):
        embd = closing_bias(embd, tokens, p["closing_bias"])
    out.matrix("token_embd.weight", embd)  # tied with the output head
    out.f32("output_norm.weight", np.ones(E))
    for i in range(L):
        b = f"blk.{i}."
        out.f32(b + "attn_norm.weight", np.ones(E))
        out.matrix(b + "attn_q.weight", normal(rng, (E, E)))
        out.matrix(b + "attn_k.weight", normal(rng, (KV * head, E)))
        out.matrix(b + "attn_v.weight", normal(rng, (KV * head, E)))
        out.f32(b + "attn_q.bias", normal(rng, (E,)))
        out.f32(b + "attn_k.bias", normal(rng, (KV * head,)))
        out.f32(b + "attn_v.bias", normal(rng, (KV * head,)))
        out.matrix(b + "attn_output.weight", normal(rng, (E, E)))
        out.f32(b + "ffn_norm.weight", np.ones(E))
        out.matrix(b + "ffn_gate.weight", normal(rng, (FF, E)))
        out.matrix(b + "ffn_up.weight", normal(rng, (FF, E)))
        out.matrix(b + "ffn_down.weight", normal(rng, (E, FF)))
    out.finish()
    return len(tokens)


def write_mmproj(path, v, n_text, q8, seed, max_tiles):
    rng = np.random.default_rng(seed)
    E, L, H, FF, P, S, M = v["embd"], v["layers"], v["heads"], v["ff"], v["patch"], v["image"], v["merge"]
    n_pos = (S // P) ** 2 + 1  # patches + class token
    out = Writer(path, "clip", v["dtype"], q8)
    w = out.w
    w.add_type(gguf.GGUFType.MMPROJ)
    w.add_name(v["name"])
    w.add_file_type(file_type(v["dtype"], q8))
    w.add_clip_has_vision_encoder(True)
    w.add_clip_projector_type(gguf.VisionProjectorType.INTERNVL)
    # as vinscan's converter marks its projectors (random weights: the row order means nothing)
    w.add_string("vinscan.clip.position_embd_order", "class-last")
    w.add_vision_projection_dim(n_text)
    w.add_vision_image_size(S)
    w.add_vision_patch_size(P)
    w.add_vision_embedding_length(E)
    w.add_vision_feed_forward_length(FF)
    w.add_vision_block_count(L)
    w.add_vision_head_count(H)
    w.add_vision_attention_layernorm_eps(1e-6)
    w.add_vision_image_mean([0.485, 0.456, 0.406])  # ImageNet, as InternVL normalises
    w.add_vision_image_std([0.229, 0.224, 0.225])
    w.add_vision_use_gelu(True)
    w.add_vision_projector_scale_factor(M)  # 1 / downsample_ratio (0.5)
    w.add_vision_preproc_min_tiles(1)
    w.add_vision_preproc_max_tiles(max_tiles)
    out.w.add_tensor("v.patch_embd.weight", normal(rng, (E, 3, P, P)).astype(v["dtype"]))
    out.f32("v.patch_embd.bias", normal(rng, (E,)))
    out.f32("v.class_embd", normal(rng, (1, 1, E)))
    out.f32("v.position_embd.weight", normal(rng, (1, n_pos, E)))
    for i in range(L):
        b = f"v.blk.{i}."
        for t in ("attn_q", "attn_k", "attn_v", "attn_out"):
            out.matrix(b + t + ".weight", normal(rng, (E, E)))
            out.f32(b + t + ".bias", normal(rng, (E,)))
        for n in ("ln1", "ln2"):
            out.f32(b + n + ".weight", np.ones(E))
            out.f32(b + n + ".bias", np.zeros(E))
        out.f32(b + "ls1.weight", np.full(E, 0.1))  # InternViT layer scale
        out.f32(b + "ls2.weight", np.full(E, 0.1))
        out.matrix(b + "ffn_up.weight", normal(rng, (FF, E)))
        out.f32(b + "ffn_up.bias", normal(rng, (FF,)))
        out.matrix(b + "ffn_down.weight", normal(rng, (E, FF)))
        out.f32(b + "ffn_down.bias", normal(rng, (E,)))
    # MLP projector after pixel shuffle: LayerNorm(E*M*M) -> Linear -> GELU -> Linear
    wide = E * M * M
    out.f32("mm.model.mlp.0.weight", np.ones(wide))
    out.f32("mm.model.mlp.0.bias", np.zeros(wide))
    out.matrix("mm.model.mlp.1.weight", normal(rng, (n_text, wide)))
    out.f32("mm.model.mlp.1.bias", normal(rng, (n_text,)))
    out.matrix("mm.model.mlp.3.weight", normal(rng, (n_text, n_text)))
    out.f32("mm.model.mlp.3.bias", normal(rng, (n_text,)))
    out.finish()


def spm_vocabulary():
    """A SentencePiece vocabulary as llama.cpp's `llama` tokenizer reads it (`src/llama-vocab.cpp`):
    tokens, scores and types; byte fallback covers any UTF-8."""
    tokens, scores, types = ["<unk>", "<s>", "</s>"], [0.0, 0.0, 0.0], [
        gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL]
    for b in range(256):
        tokens.append(f"<0x{b:02X}>")
        scores.append(0.0)
        types.append(gguf.TokenType.BYTE)
    pieces = ["\u2581"] + [chr(c) for c in range(0x21, 0x7F)] + ["\u2581" + w for w in ("S", "Tr", "ng", "Công")]
    for i, piece in enumerate(pieces):
        tokens.append(piece)
        scores.append(-float(i + 1))
        types.append(gguf.TokenType.NORMAL)
    for special in ("<|im_start|>", "<|im_end|>"):
        tokens.append(special)
        scores.append(0.0)
        types.append(gguf.TokenType.CONTROL)
    return tokens, scores, types


def write_llama_text(path, p, seed):
    """A random-weight `llama` text model (the text stage's test model)."""
    rng = np.random.default_rng(seed)
    tokens, scores, types = spm_vocabulary()
    E, L, H, KV, FF = p["embd"], p["layers"], p["heads"], p["kv_heads"], p["ff"]
    head = E // H
    out = Writer(path, "llama", np.float32, False)
    w = out.w
    w.add_name(p["name"])
    w.add_context_length(p["ctx"])
    w.add_embedding_length(E)
    w.add_block_count(L)
    w.add_feed_forward_length(FF)
    w.add_head_count(H)
    w.add_head_count_kv(KV)
    w.add_rope_dimension_count(head)
    w.add_rope_freq_base(10_000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(tokens.index("<|im_end|>"))
    w.add_unk_token_id(0)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    w.add_chat_template(CHATML)
    embd = normal(rng, (len(tokens), E))
    # the closing bias of the tiny preset (see `closing_bias`), on the SPM pieces
    embd[:, 0] = 1.0
    for ch in CLOSERS:
        embd[tokens.index(ch), 0] += p["closing_bias"]
    out.matrix("token_embd.weight", embd)  # no `output.weight`: llama.cpp ties it to the embedding
    out.f32("output_norm.weight", np.ones(E))
    for i in range(L):
        b = f"blk.{i}."
        out.f32(b + "attn_norm.weight", np.ones(E))
        out.matrix(b + "attn_q.weight", normal(rng, (E, E)))
        out.matrix(b + "attn_k.weight", normal(rng, (KV * head, E)))
        out.matrix(b + "attn_v.weight", normal(rng, (KV * head, E)))
        out.matrix(b + "attn_output.weight", normal(rng, (E, E)))
        out.f32(b + "ffn_norm.weight", np.ones(E))
        out.matrix(b + "ffn_gate.weight", normal(rng, (FF, E)))
        out.matrix(b + "ffn_up.weight", normal(rng, (FF, E)))
        out.matrix(b + "ffn_down.weight", normal(rng, (E, FF)))
    out.finish()
    return len(tokens)


TEXT_PRESETS = {
    "tiny-llama": dict(name="vinscan-tiny-llama", embd=64, layers=2, heads=4, kv_heads=2, ff=128, ctx=8192,
                       closing_bias=float(os.environ.get("VINSCAN_TINY_CLOSING_BIAS", "0.03"))),
}


PRESETS = {
    "tiny": {
        "llm": dict(name="vinscan-tiny-qwen2", embd=64, layers=2, heads=4, kv_heads=2, ff=128, ctx=32768,
                    dtype=np.float32, closing_bias=float(os.environ.get("VINSCAN_TINY_CLOSING_BIAS", "0.03"))),
        "vit": dict(name="vinscan-tiny-internvit", embd=32, layers=2, heads=2, ff=64, patch=14, image=448, merge=2,
                    dtype=np.float32),
    },
    "full": {
        # Vintern-1B-v3.5: Qwen2.5-0.5B (896 wide, 24 layers, 14 heads / 2 KV heads, ff 4864,
        # vocabulary 151674 with InternVL's markers) + InternViT-300M-448px (1024 wide, 24 layers).
        "llm": dict(name="vinscan-full-qwen2-0.5b-shape", embd=896, layers=24, heads=14, kv_heads=2, ff=4864,
                    ctx=32768, n_ordinary=QWEN_FIRST_SPECIAL, dtype=np.float16),
        "vit": dict(name="vinscan-full-internvit-300m-shape", embd=1024, layers=24, heads=16, ff=4096, patch=14,
                    image=448, merge=2, dtype=np.float16),
    },
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("preset", choices=sorted(PRESETS) + sorted(TEXT_PRESETS))
    ap.add_argument("out_dir")
    ap.add_argument("--q8", action="store_true", help="store 2-D weights as q8_0")
    ap.add_argument("--max-tiles", type=int, default=12, help="clip.vision.preproc_max_tiles (default 12)")
    ap.add_argument("--seed", type=int, default=20261122)
    a = ap.parse_args()
    os.makedirs(a.out_dir, exist_ok=True)
    if a.preset in TEXT_PRESETS:
        model = os.path.join(a.out_dir, "model.gguf")
        n_vocab = write_llama_text(model + ".tmp", TEXT_PRESETS[a.preset], a.seed)
        os.replace(model + ".tmp", model)
        print(f"{model}: {os.path.getsize(model)} bytes, n_vocab {n_vocab}", file=sys.stderr)
        return
    p = PRESETS[a.preset]
    model, mmproj = os.path.join(a.out_dir, "model.gguf"), os.path.join(a.out_dir, "mmproj.gguf")
    n_vocab = write_llm(model + ".tmp", p["llm"], a.q8, a.seed)
    write_mmproj(mmproj + ".tmp", p["vit"], p["llm"]["embd"], a.q8, a.seed + 1, a.max_tiles)
    os.replace(model + ".tmp", model)
    os.replace(mmproj + ".tmp", mmproj)
    print(f"{model}: {os.path.getsize(model)} bytes, n_vocab {n_vocab}", file=sys.stderr)
    print(f"{mmproj}: {os.path.getsize(mmproj)} bytes", file=sys.stderr)


if __name__ == "__main__":
    main()
