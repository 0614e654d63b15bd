#!/usr/bin/env bash
# The test command (README): installs what the tests need, then runs every test of the
# workspace against the real llama.cpp runtime, the real pdfium library and the tiny
# random-weight Vintern-shaped model the project generates.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
bash ops/setup.sh
# shellcheck source=ops/test-env.sh
source ops/test-env.sh
cargo test --workspace --all-targets "$@"
