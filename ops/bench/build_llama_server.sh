#!/usr/bin/env bash
# ops/bench/build_llama_server.sh OUT_DIR PYTHON: builds llama.cpp's `llama-server` for the bench's
# throughput peer and prints the path of the binary (stdout); the llama.cpp it was built from is
# written to OUT_DIR/source.txt.
#
# llama-cpp-sys-2 vendors llama.cpp without tools/server's sources, so the server comes from the
# one registry source here that ships them: the sdist of llama-cpp-python (PyPI), whose
# vendor/llama.cpp is a whole llama.cpp tree. That tree is a few weeks newer than
# llama-cpp-sys-2's (docs/BENCHMARKS.md names both); it is built as llama-cpp-sys-2 builds its own,
# for this CPU (GGML_NATIVE, OpenMP, ggml's AMX kernels left out as in .cargo/config.toml), with
# the same release flags. Grammar-constrained decoding uses llama.cpp's JSON-Schema-to-GBNF
# converter: its llguidance option fetches llguidance from GitHub at configure time, which a
# machine with only the package registries cannot do.
set -euo pipefail
out=${1:?OUT_DIR}
python=${2:?PYTHON}
version=0.3.36
mkdir -p "$out"
# the build folder is named by version, so a new version builds anew
build=$out/build-$version
exe=$build/bin/llama-server
if [ ! -x "$exe" ]; then
  src=$out/llama-cpp-python-$version
  if [ ! -d "$src" ]; then
    # pip fetches the sdist from the package index (checking the index's hash); it installs the
    # sdist's build backend only to read its metadata: nothing of it is built
    rm -rf "$out/sdist" && mkdir -p "$out/sdist"
    "$python" -m pip download -q --disable-pip-version-check --no-deps --no-binary llama-cpp-python \
      -d "$out/sdist" "llama-cpp-python==$version" >&2
    rm -rf "$src.partial" && mkdir -p "$src.partial"
    tar xzf "$out/sdist/llama_cpp_python-$version.tar.gz" -C "$src.partial" --strip-components=1
    rm -r "$out/sdist"
    mv "$src.partial" "$src"
  fi
  flags="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
  CFLAGS="$flags" CXXFLAGS="$flags" cmake -S "$src/vendor/llama.cpp" -B "$build" -DCMAKE_BUILD_TYPE=Release \
    -DGGML_NATIVE=ON -DBUILD_SHARED_LIBS=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
    -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=ON -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
    -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_LLGUIDANCE=OFF >&2
  cmake --build "$build" --target llama-server -j "$(nproc)" >&2
fi
echo "llama.cpp vendored in llama-cpp-python $version (PyPI sdist), built with GGML_NATIVE" >"$out/source.txt"
echo "$exe"
