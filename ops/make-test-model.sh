#!/usr/bin/env bash
# ops/make-test-model.sh tiny|full OUT_DIR [--q8] [--max-tiles N]
# Writes OUT_DIR/model.gguf and OUT_DIR/mmproj.gguf: random-weight models in Vintern-1B's real
# GGUF architectures (qwen2 LLM + clip/internvl projector), deterministic for a given preset.
# tiny: a few hundred KB, for tests. full: Vintern-1B shapes (Qwen2-0.5B + InternViT-300M),
# about 1.6 GB in f16, for benchmarks; generated on demand, never committed.
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: $0 tiny|full OUT_DIR [--q8] [--max-tiles N]" >&2
  exit 2
fi
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=$("$root/ops/python-env.sh")
exec "$venv/bin/python" "$root/ops/make_test_model.py" "$@"
