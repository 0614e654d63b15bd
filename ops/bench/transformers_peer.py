"""The reference Python peer of `vinscan-bench`: transformers' InternVL model with the benchmark's
checkpoint (Vintern-1B's config, random weights) on CPU, run the way the Vintern model card runs
it: InternVL's dynamic tiling (Pillow bicubic, 448 px tiles, a thumbnail), ImageNet
normalisation, the ChatML prompt with <img><IMG_CONTEXT>*256 per tile</img>, greedy generation.

A long-lived worker, so model loading is not counted against it: one JSON request per stdin line,
one JSON answer per stdout line.
  {"op": "page", "image": PATH, "max_tiles": 6, "tokens": 64, "system": "...", "prompt": "..."}
    -> {"tiles": N, "prompt_tokens": P, "generated": T, "preprocess_ms": .., "total_ms": ..}
  {"op": "gemm", "n": 2048} -> {"gflops": ..}   (torch f32 matmul: the machine's GEMM peak)
"""
import json
import os
import sys
import time

import torch
from PIL import Image
from transformers import PreTrainedTokenizerFast

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "reference"))
from parity import dynamic_preprocess, load_reference, pixel_values, reference_prompt_ids  # noqa: E402


def main():
    hf_dir, threads = sys.argv[1], int(sys.argv[2])
    torch.set_num_threads(threads)
    t = time.perf_counter()
    model, config = load_reference(hf_dir)
    tokenizer = PreTrainedTokenizerFast.from_pretrained(hf_dir)
    image_seq = model.config.image_seq_length
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    print(json.dumps({"ready": True, "load_ms": (time.perf_counter() - t) * 1e3}), flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        if req["op"] == "gemm":
            n = int(req.get("n", 2048))
            a, b = torch.randn(n, n), torch.randn(n, n)
            a @ b
            best = 0.0
            for _ in range(5):
                t = time.perf_counter()
                a @ b
                best = max(best, 2 * n**3 / (time.perf_counter() - t) / 1e9)
            print(json.dumps({"gflops": best, "threads": threads}), flush=True)
            continue
        t0 = time.perf_counter()
        image = Image.open(req["image"]).convert("RGB")
        tiles = dynamic_preprocess(image, req["max_tiles"])
        pv = pixel_values(tiles)
        ids = reference_prompt_ids(tokenizer, req["system"], req["prompt"], len(tiles), image_seq)
        t1 = time.perf_counter()
        n = int(req["tokens"])
        with torch.no_grad():
            out = model.generate(
                input_ids=torch.tensor([ids]), pixel_values=pv, max_new_tokens=n, min_new_tokens=n,
                do_sample=False, eos_token_id=eos, pad_token_id=eos)
        t2 = time.perf_counter()
        print(json.dumps({
            "tiles": len(tiles), "prompt_tokens": len(ids), "generated": int(out.shape[1] - len(ids)),
            "preprocess_ms": (t1 - t0) * 1e3, "total_ms": (t2 - t0) * 1e3}), flush=True)


if __name__ == "__main__":
    main()
