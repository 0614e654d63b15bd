#!/usr/bin/env bash
# ops/bench.sh: the benchmark by one command, on a clean clone.
#   1. installs what the peers need (cmake etc., Tesseract 5 with `vie`, the reference venv with
#      torch + transformers, matplotlib);
#   2. builds vinscan and vinscan-bench (release, with what the bench runs: llama.cpp and pdfium, not
#      Kafka or S3) while the installs run beside it, then llama.cpp's `llama-mtmd-cli`: its one source file from the
#      llama.cpp that llama-cpp-sys-2 vendors, linked against the static libraries of that
#      crate's build, so the peer runs the very kernels vinscan runs; and `llama-server`, the
#      aggregate peer, from llama-cpp-python's sdist (ops/bench/build_llama_server.sh);
#   3. generates the full-size random-weight Vintern-1B checkpoint and converts it with
#      `vinscan model convert`: the q8_0 model (q8_0 LLM and projector), which every peer runs,
#      and the f16 and bf16 projectors (f32 too with VINSCAN_BENCH_F32=1), which are probed;
#   4. makes the pages, runs `vinscan-bench` (which measures vinscan through the product's own
#      extraction call), rewrites docs/BENCHMARKS.md and docs/bench/report.json, writes this
#      CPU's machine-dependent figures to docs/bench/machines/ (BENCHMARKS.md compares every CPU
#      there) and draws docs/bench/time-per-page.png.
# Environment: VINSCAN_THREADS (default: all cores), VINSCAN_BENCH_* (see `vinscan-bench --help`).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
start=$(date +%s)
# a clean clone: nothing built, no models; only then does the report judge the 30-minute goal
clean=false
[ -e target/release/vinscan ] || [ -e "${VINSCAN_BENCH_MODELS:-$root/target/bench/models}" ] || clean=true
say() { echo "== ops/bench.sh $(( $(date +%s) - start )) s: $*" >&2; }

bash ops/setup.sh
# vinscan (for `vinscan model convert`) is built with what the bench runs (llama.cpp, pdfium), not
# Kafka's vendored librdkafka nor the AWS SDK and aws-lc (the `kafka` and `s3` features), so that
# it and vinscan-bench (llama.cpp and pdfium only) share one llama.cpp build;
# the build starts now and the installs below run beside it
export OMP_WAIT_POLICY=PASSIVE
build() { cargo build --release --quiet -p vinscan-cli -p vinscan-bench --no-default-features --features vinscan-cli/llama,vinscan-cli/pdf "$@"; }
build &
build_pid=$!
if ! command -v tesseract >/dev/null 2>&1 || ! tesseract --list-langs 2>/dev/null | grep -qx vie \
  || [ ! -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends tesseract-ocr tesseract-ocr-vie fonts-dejavu-core >&2
fi
# pdfium comes from the pypdfium2 wheel in the project venv (vinscan looks in $VIRTUAL_ENV)
VIRTUAL_ENV=$("$root/ops/python-env.sh")
export VIRTUAL_ENV
ref=$("$root/ops/reference-env.sh")
"$ref/bin/python" -c "import matplotlib" 2>/dev/null || "$ref/bin/pip" install -q -r ops/bench/requirements.txt
say "tools ready"

models=${VINSCAN_BENCH_MODELS:-$root/target/bench/models}
mkdir -p "$models"
threads=${VINSCAN_THREADS:-$(nproc)}
if [ ! -f "$models/checkpoint/model.safetensors" ]; then
  "$ref/bin/python" ops/reference/make_checkpoint.py full "$models/checkpoint"
fi
wait "$build_pid"
vinscan=$root/target/release/vinscan
bench=$root/target/release/vinscan-bench
say "vinscan and vinscan-bench built, checkpoint ready"

# llama-mtmd-cli: only mtmd-cli.cpp is compiled (seconds); it links the static llama.cpp
# libraries of the build above (llama-cpp-sys-2's OUT_DIR), so both peers run the same kernels
llama_src=$(cargo metadata --format-version 1 --locked 2>/dev/null | "$ref/bin/python" -c '
import json, os, sys
for p in json.load(sys.stdin)["packages"]:
    if p["name"] == "llama-cpp-sys-2":
        print(os.path.join(os.path.dirname(p["manifest_path"]), "llama.cpp")); break')
[ -f "$llama_src/tools/mtmd/mtmd-cli.cpp" ] || { echo "no vendored llama.cpp at '$llama_src'" >&2; exit 1; }
mtmd_cli=$root/target/bench/llama-mtmd-cli
build --message-format=json \
  | "$ref/bin/python" ops/bench/link_mtmd_cli.py --llama-src "$llama_src" --out "$mtmd_cli" >&2
say "llama-mtmd-cli ready: $mtmd_cli"
# llama-server, the aggregate peer: llama-cpp-sys-2 vendors no server sources, so it is built from
# the llama.cpp in llama-cpp-python's sdist (see the script); VINSCAN_BENCH_SERVER=0 leaves it out
server_args=()
if [ "${VINSCAN_BENCH_SERVER:-1}" = 1 ]; then
  server=$(bash ops/bench/build_llama_server.sh "$root/target/bench/llama-server" "$ref/bin/python")
  server_args=(--llama-server "$server" --llama-server-source "$(cat "$root/target/bench/llama-server/source.txt")")
  say "llama-server ready: $server"
fi

if [ ! -f "$models/q8_0/mmproj.gguf" ]; then
  "$vinscan" model convert "$models/checkpoint" --out "$models/q8_0" --type q8_0 --mmproj-type f16 --threads "$threads" >/dev/null
fi
if [ ! -f "$models/q8_0-mmproj/mmproj.gguf" ]; then
  "$vinscan" model convert "$models/checkpoint" --out "$models/q8_0-mmproj" --type q8_0 --mmproj-type q8_0 --threads "$threads" >/dev/null
fi
# the f32 projector (the slowest and largest) is measured only on request: about a minute of
# conversion and probing that the 30-minute budget does without
probes=(--probe-mmproj "$models/q8_0/mmproj.gguf")
if [ "${VINSCAN_BENCH_F32:-0}" = 1 ]; then
  if [ ! -f "$models/f32-mmproj/mmproj.gguf" ]; then
    "$vinscan" model convert "$models/checkpoint" --out "$models/f32-mmproj" --type q8_0 --mmproj-type f32 --threads "$threads" >/dev/null
  fi
  probes+=(--probe-mmproj "$models/f32-mmproj/mmproj.gguf")
fi
if [ ! -f "$models/bf16-mmproj/mmproj.gguf" ]; then
  "$vinscan" model convert "$models/checkpoint" --out "$models/bf16-mmproj" --type q8_0 --mmproj-type bf16 --threads "$threads" >/dev/null
fi
probes+=(--probe-mmproj "$models/bf16-mmproj/mmproj.gguf")
say "models ready in $models"

# every peer runs the q8_0 model (q8_0 LLM and projector: the pair the memory goal names);
# the other projectors (f16 in $models/q8_0, bf16, f32) are probed on one page each
pages=$root/target/bench/pages
# transformers runs every page (its goal is "faster on every page"); fewer with the variable
export VINSCAN_BENCH_TRANSFORMERS_PAGES=${VINSCAN_BENCH_TRANSFORMERS_PAGES:-1000}
"$ref/bin/python" ops/bench/make_pages.py "$pages" "$root/../shared/data/sroie-sample/images" 150
"$bench" --pages "$pages" --model "$models/q8_0-mmproj/model.gguf" --mmproj "$models/q8_0-mmproj/mmproj.gguf" \
  "${probes[@]}" --mtmd-cli "$mtmd_cli" "${server_args[@]}" \
  --python "$ref/bin/python" --checkpoint "$models/checkpoint" --tesseract "$(command -v tesseract)" \
  --threads "$threads" --report docs/BENCHMARKS.md --report-json docs/bench/report.json --work-dir target/bench \
  --setup-s "$(( $(date +%s) - start ))" $([ "$clean" = true ] && echo --clean-clone)
mkdir -p docs/bench
"$ref/bin/python" ops/bench/plot.py docs/bench/report.json docs/bench/time-per-page.png
say "docs/BENCHMARKS.md, docs/bench/report.json, this CPU's file in docs/bench/machines/ and docs/bench/time-per-page.png written"
