"""The toy Qwen2-style vocabulary shared by the GGUF test-model generator
(`make_test_model.py`) and the Hugging Face reference checkpoint generator
(`reference/make_checkpoint.py`): GPT-2's byte alphabet, a few merges frequent in JSON and
Vietnamese, optional filler up to Qwen2's first special id, then Qwen2.5's special tokens and
InternVL's image markers. No third-party imports, so both environments can use it."""

QWEN_SPECIALS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
    "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>", "<tool_call>",
    "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>",
    "<|repo_name|>", "<|file_sep|>",
]
INTERNVL_SPECIALS = ["<img>", "</img>", "<IMG_CONTEXT>", "<quad>", "</quad>", "<ref>", "</ref>", "<box>", "</box>"]
# Qwen2.5 marks its <|...|> tokens special and InternVL its image/box markers; llama.cpp keeps
# them out of generated text (CONTROL). <tool_call> tags are ordinary added tokens.
CONTROL = {s for s in QWEN_SPECIALS if s.startswith("<|")} | set(INTERNVL_SPECIALS)
# Qwen2's first special id: every ordinary token comes before it.
QWEN_FIRST_SPECIAL = 151643

CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

# Qwen2's pre-tokenizer split (llama.cpp's `qwen2` pre-tokenizer implements the same pattern).
QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# Pairs merged by the toy BPE (on top of the byte alphabet): frequent in JSON and Vietnamese.
PAIRS = ["Ġ t", "t h", "i n", "a n", "n g", "n h", "o n", "e r", "Ġ \"", "\" :", "{ \"", "\" ,",
         "Ġ n", "Ġ c", "Ġ đ", "h Ã", "c h", "t r", "Ġ 1", "0 0"]


def byte_alphabet():
    """GPT-2's reversible byte -> printable character table."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0xFF + 1))
    table, extra = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return [table[b] for b in range(256)]


def vocabulary(n_ordinary=None):
    """Ordinary tokens (bytes, merges, filler up to n_ordinary), then the specials.
    Returns (tokens, kinds, merges, ids) where kinds are "normal", "unused", "control" or
    "user" (an added token that is not special)."""
    tokens = byte_alphabet()
    merges = []
    for pair in PAIRS:
        a, b = pair.split(" ")
        if a in tokens and b in tokens and a + b not in tokens:
            merges.append(pair)
            tokens.append(a + b)
    kinds = ["normal"] * len(tokens)
    filler = 0
    while n_ordinary is not None and len(tokens) < n_ordinary:
        tokens.append(f"<unused{filler}>")  # unreachable from text: not a merge result
        kinds.append("unused")
        filler += 1
    ids = {}
    for s in QWEN_SPECIALS + INTERNVL_SPECIALS:
        ids[s] = len(tokens)
        tokens.append(s)
        kinds.append("control" if s in CONTROL else "user")
    return tokens, kinds, merges, ids
