#!/usr/bin/env bash
# ops/bench.sh: the benchmark by one command, on a clean clone.
#   1. installs what the peers need (cmake etc., Tesseract 5 with `vie`, the reference venv with
#      torch + transformers, matplotlib);
#   2. builds vinscan (release) and llama.cpp's `llama-mtmd-cli` from the llama.cpp source that
#      llama-cpp-sys-2 vendors: same CMake build type, same CPU flags (cached in $VINSCAN_TOOLS,
#      keyed by crate version, build type and this CPU's flags);
#   3. generates the full-size random-weight Vintern-1B checkpoint and converts it
#      (q8_0 LLM with an f16 projector, and a q8_0 projector) with `vinscan model convert`;
#   4. makes the pages, runs `vinscan bench`, rewrites docs/BENCHMARKS.md and draws
#      docs/bench/time-per-page.png.
# Environment: VINSCAN_THREADS (default: all cores), VINSCAN_BENCH_* (see `vinscan bench --help`).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
start=$(date +%s)
say() { echo "== ops/bench.sh $(( $(date +%s) - start )) s: $*" >&2; }

bash ops/setup.sh
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

export OMP_WAIT_POLICY=PASSIVE
cargo build --release --quiet -p vinscan-cli
vinscan=$root/target/release/vinscan
say "vinscan built"

# llama-mtmd-cli from the vendored llama.cpp, configured as llama-cpp-sys-2 configures it for
# `target-cpu=native` release builds (.cargo/config.toml, Cargo.toml [profile.release])
sys_version=0.1.161
llama_src=$(cargo metadata --format-version 1 --locked 2>/dev/null | "$ref/bin/python" -c '
import json, os, sys
for p in json.load(sys.stdin)["packages"]:
    if p["name"] == "llama-cpp-sys-2":
        print(os.path.join(os.path.dirname(p["manifest_path"]), "llama.cpp")); break')
[ -f "$llama_src/tools/mtmd/mtmd-cli.cpp" ] || { echo "no vendored llama.cpp at '$llama_src'" >&2; exit 1; }
build_type=$(grep -h '^CMAKE_BUILD_TYPE:' target/release/build/llama-cpp-sys-2-*/out/build/CMakeCache.txt 2>/dev/null | head -1 | cut -d= -f2)
build_type=${build_type:-RelWithDebInfo}
cpu_key=$(grep -m1 '^flags' /proc/cpuinfo | sha256sum | cut -c1-12)
tools=${VINSCAN_TOOLS:-$HOME/.cache/vinscan/tools}
mtmd_cli=$tools/llama-mtmd-cli-$sys_version-$build_type-native-$cpu_key/llama-mtmd-cli
if [ ! -x "$mtmd_cli" ]; then
  bdir=$(mktemp -d)
  cmake -S ops/bench/mtmd-cli -B "$bdir" -DLLAMA_SRC="$llama_src" -DCMAKE_BUILD_TYPE="$build_type" \
    -DGGML_NATIVE=ON -DGGML_OPENMP=ON -DBUILD_SHARED_LIBS=OFF -DLLAMA_OPENSSL=OFF \
    "-DCMAKE_C_FLAGS=-ffunction-sections -fdata-sections -fPIC -m64" \
    "-DCMAKE_CXX_FLAGS=-ffunction-sections -fdata-sections -fPIC -m64" >"$bdir/configure.log"
  cmake --build "$bdir" --target llama-mtmd-cli -j "$(nproc)" >"$bdir/build.log"
  mkdir -p "$(dirname "$mtmd_cli")"
  cp "$bdir/llama-mtmd-cli" "$mtmd_cli.tmp" && mv "$mtmd_cli.tmp" "$mtmd_cli"
  rm -rf "$bdir"
fi
say "llama-mtmd-cli ready: $mtmd_cli"

models=${VINSCAN_BENCH_MODELS:-$root/target/bench/models}
mkdir -p "$models"
threads=${VINSCAN_THREADS:-$(nproc)}
if [ ! -f "$models/checkpoint/model.safetensors" ]; then
  "$ref/bin/python" ops/reference/make_checkpoint.py full "$models/checkpoint"
fi
if [ ! -f "$models/q8_0/mmproj.gguf" ]; then
  "$vinscan" model convert "$models/checkpoint" --out "$models/q8_0" --type q8_0 --mmproj-type f16 --threads "$threads" >/dev/null
fi
if [ ! -f "$models/q8_0-mmproj/mmproj.gguf" ]; then
  "$vinscan" model convert "$models/checkpoint" --out "$models/q8_0-mmproj" --type q8_0 --mmproj-type q8_0 --threads "$threads" >/dev/null
fi
say "models ready in $models"

pages=$root/target/bench/pages
"$ref/bin/python" ops/bench/make_pages.py "$pages" "$root/../shared/data/sroie-sample/images" 150
"$vinscan" bench --pages "$pages" --model "$models/q8_0/model.gguf" --mmproj "$models/q8_0/mmproj.gguf" \
  --mmproj-q8 "$models/q8_0-mmproj/mmproj.gguf" --mtmd-cli "$mtmd_cli" \
  --python "$ref/bin/python" --checkpoint "$models/checkpoint" --tesseract "$(command -v tesseract)" \
  --threads "$threads" --report docs/BENCHMARKS.md --work-dir target/bench
mkdir -p docs/bench
"$ref/bin/python" ops/bench/plot.py target/bench/report.json docs/bench/time-per-page.png
say "docs/BENCHMARKS.md and docs/bench/time-per-page.png written"
