#!/usr/bin/env bash
# The main job (README): `vinscan batch` over a folder of scans, on a fresh machine.
#   ops/run.sh [SRC [OUT [PIPELINE]]]
#   defaults: ../shared/data/sroie-sample/images  out/receipts  receipt
# Model: VINSCAN_MODEL + VINSCAN_MMPROJ when set; otherwise `vinscan model pull` fetches
# Vintern-1B-v3.5 (Q8_0) from the Hugging Face Hub. Where the Hub cannot be reached and
# VINSCAN_REQUIRE_REAL_MODEL is not set, it falls back to the project's tiny random-weight test
# model and says so: outputs are then schema-valid but their values are meaningless.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
src=${1:-$root/../shared/data/sroie-sample/images}
out=${2:-$root/out/receipts}
pipeline=${3:-receipt}
cd "$root"
bash ops/setup.sh
# shellcheck source=ops/test-env.sh
source ops/test-env.sh
cargo build --release -p vinscan-cli
bin=$root/target/release/vinscan
if [ -z "${VINSCAN_MODEL:-}" ] || [ -z "${VINSCAN_MMPROJ:-}" ]; then
  if paths=$("$bin" model pull); then
    VINSCAN_MODEL=$(printf '%s' "$paths" | "$VINSCAN_PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["model"])')
    VINSCAN_MMPROJ=$(printf '%s' "$paths" | "$VINSCAN_PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["mmproj"])')
  elif [ -n "${VINSCAN_REQUIRE_REAL_MODEL:-}" ]; then
    echo "ops/run.sh: cannot download Vintern and VINSCAN_REQUIRE_REAL_MODEL is set" >&2
    exit 2
  else
    echo "ops/run.sh: WARNING: the Hub is unreachable; using the tiny random-weight TEST model" >&2
    echo "ops/run.sh: WARNING: outputs will be schema-valid but their values are meaningless" >&2
    VINSCAN_MODEL=$VINSCAN_TEST_MODEL_DIR/model.gguf
    VINSCAN_MMPROJ=$VINSCAN_TEST_MODEL_DIR/mmproj.gguf
  fi
fi
export VINSCAN_MODEL VINSCAN_MMPROJ
exec "$bin" batch "$src" --pipeline "$pipeline" --out "$out"
