#!/usr/bin/env bash
# ops/fidelity.sh [tiny|full] [OUT_DIR]
# The fidelity check end to end, by one command: a seeded random-weight Vintern checkpoint in
# Hugging Face form (tiny, or Vintern-1B's full shapes: ~1.8 GB bf16), converted by
# `vinscan model convert` (f32 for tiny, then q8_0, f16 and bf16; VINSCAN_FIDELITY_TYPES picks),
# traced through llama.cpp by `vinscan model trace`, and compared with PyTorch + transformers by ops/reference/parity.py.
# Prints one summary line per weight type and leaves the JSON reports in OUT_DIR
# (default target/fidelity/PRESET). Exits non-zero when a parity check fails.
# VINSCAN_FIDELITY_DIAGNOSE=1 adds parity.py's q8_0 diagnostics to the q8_0 report (the reference
# with q8_0-rounded weights, and how large a perturbation its top-1 survives: docs/FIDELITY.md).
set -euo pipefail
preset=${1:-full}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=${2:-$root/target/fidelity/$preset}
cd "$root"
bash ops/setup.sh
ref=$("$root/ops/reference-env.sh")
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
threads=${VINSCAN_THREADS:-$(nproc)}
# The dev profile builds llama.cpp optimised (see Cargo.toml), as the tests use it.
cargo build --quiet -p vinscan-cli
vinscan=$root/target/debug/vinscan
mkdir -p "$out"
ckpt=$out/checkpoint
if [ ! -f "$ckpt/model.safetensors" ]; then
  "$ref/bin/python" ops/reference/make_checkpoint.py "$preset" "$ckpt"
fi
page=$out/page.png
"$ref/bin/python" - "$page" <<'PY'
import sys
import numpy as np
from PIL import Image, ImageDraw
rng = np.random.default_rng(20261122)
w, h = 1200, 600  # InternVL's grid: 2x1 tiles + the thumbnail
x = np.linspace(235, 250, w)[None, :] + 0 * np.linspace(0, 1, h)[:, None]
img = Image.fromarray(np.stack([x, x, x - 8], -1).astype(np.uint8))
d = ImageDraw.Draw(img)
d.rectangle([40, 30, w - 40, 90], fill=(30, 60, 140))
for row in range(14):
    y = 120 + row * 32
    x0 = 50
    while x0 < w - 120:
        n = int(rng.integers(20, 110))
        d.rectangle([x0, y, x0 + n, y + 12], fill=tuple(int(v) for v in rng.integers(0, 90, 3)))
        x0 += n + int(rng.integers(8, 30))
img.save(sys.argv[1])
PY
types=${VINSCAN_FIDELITY_TYPES:-q8_0 f16 bf16}
[ "$preset" = tiny ] && types=${VINSCAN_FIDELITY_TYPES:-f32 q8_0 f16 bf16}
status=0
for t in $types; do
  diagnose=()
  if [ "$t" = q8_0 ] && [ "${VINSCAN_FIDELITY_DIAGNOSE:-0}" = 1 ]; then
    diagnose=(--q8-weight-reference --q8-sensitivity)
  fi
  start=$(date +%s)
  "$vinscan" model convert "$ckpt" --out "$out/gguf-$t" --type "$t" --threads "$threads" >/dev/null
  "$vinscan" model trace "$page" --out "$out/trace-$t" --threads "$threads" --ctx-size 4096 \
    --model "$out/gguf-$t/model.gguf" --mmproj "$out/gguf-$t/mmproj.gguf" >/dev/null
  if ! "$ref/bin/python" ops/reference/parity.py "$ckpt" "$out/trace-$t" --weights "$t" \
      --threads "$threads" --report "$out/parity-$t.json" "${diagnose[@]}"; then
    status=1
  fi
  echo "== $preset $t: $(( $(date +%s) - start )) s, report $out/parity-$t.json"
done
exit $status
