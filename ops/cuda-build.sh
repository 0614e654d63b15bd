#!/usr/bin/env bash
# ops/cuda-build.sh: builds vinscan (and vinscan-bench) with `--features cuda` on a machine that
# has no CUDA toolkit installed, with the toolkit from PyPI's NVIDIA wheels.
#
#   ops/cuda-build.sh            # sm_90 (H100/H200) into target/cuda/release
#   CMAKE_CUDA_ARCHITECTURES=89 ops/cuda-build.sh   # one other architecture (L4/L40S: 89, A100: 80)
#
# What it does:
#   1. installs the CUDA 13.5 compiler (nvcc, cicc, the crt headers), the runtime, cuBLAS and the
#      CCCL headers from PyPI (`nvidia-*` wheels) into a toolkit folder cached outside the clone
#      by version (~/.cache/vinscan/cuda-13.5.37; VINSCAN_CUDA_HOME overrides), and adds the
#      unversioned library names (libcudart.so, libcublas.so) that CMake's FindCUDAToolkit looks for;
#   2. builds with llama.cpp as shared libraries (LLAMA_BUILD_SHARED_LIBS=1): llama-cpp-sys-2
#      links CUDA statically otherwise (cublas_static, culibos), and the wheels ship only
#      cuBLAS's shared libraries. The llama.cpp libraries are placed beside the binaries and found
#      through an `$ORIGIN` rpath; the CUDA libraries are found through LD_LIBRARY_PATH, which
#      the wrapper `target/cuda/release/vinscan-cuda` sets;
#   3. compiles for one GPU architecture only (CMAKE_CUDA_ARCHITECTURES, default 90): ggml's
#      default list is about ten, and each costs the whole CUDA compile again.
# ggml's virtual-memory pool (VMM) needs the driver library at link time, which no wheel ships, so
# the build sets GGML_CUDA_NO_VMM=ON (ggml then uses its own pool; the kernels are the same).
#
# Time: the CUDA kernels dominate (ggml-cuda's template instances). On a 2-core AMD EPYC with
# nothing installed (the Debian packages, the wheels, every crate) one run for sm_90 took 39.5 min,
# 38.9 of them the cargo build; libggml-cuda.so alone is 160 MB. The script prints its own time
# at the end. Not part of CI.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
start=$(date +%s)
say() { echo "== ops/cuda-build.sh $(( $(date +%s) - start )) s: $*" >&2; }

version=13.5.37
tk_root=${VINSCAN_CUDA_HOME:-$HOME/.cache/vinscan/cuda-$version}
arch=${CMAKE_CUDA_ARCHITECTURES:-90}
bash ops/setup.sh
if [ ! -x "$tk_root/nvidia/cu13/bin/nvcc" ]; then
  venv=$("$root/ops/python-env.sh")
  rm -rf "$tk_root.partial"
  # the wheels pinned together: compiler, device front end, crt headers and runtime of one
  # release; cuBLAS and CCCL as that release's pip index resolves them
  "$venv/bin/pip" install -q --disable-pip-version-check --no-deps --target "$tk_root.partial" \
    "nvidia-cuda-nvcc==$version" "nvidia-nvvm==$version" "nvidia-cuda-crt==$version" \
    "nvidia-cuda-runtime==$version" "nvidia-cublas>=13,<14" "nvidia-cuda-cccl>=13,<14" >&2
  rm -rf "$tk_root"
  mv "$tk_root.partial" "$tk_root"
fi
tk=$tk_root/nvidia/cu13
for lib in cudart cublas cublasLt; do
  so=$(cd "$tk/lib" && ls "lib$lib.so."* | head -n1)
  ln -sf "$so" "$tk/lib/lib$lib.so"
done
[ -e "$tk/lib64" ] || ln -s lib "$tk/lib64"
"$tk/bin/nvcc" --version | tail -n2 >&2
say "CUDA toolkit ready in $tk"

export PATH="$tk/bin:$PATH"
export CUDACXX="$tk/bin/nvcc"
export CUDAToolkit_ROOT="$tk"
export LD_LIBRARY_PATH="$tk/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
# llama-cpp-sys-2 passes CMAKE_* and GGML_* variables to llama.cpp's CMake
export CMAKE_CUDA_ARCHITECTURES="$arch"
export CMAKE_CUDA_COMPILER="$tk/bin/nvcc"
export GGML_CUDA_NO_VMM=ON
export LLAMA_BUILD_SHARED_LIBS=1
# RUSTFLAGS replaces .cargo/config.toml's rustflags, so it repeats them (target-cpu=native)
export RUSTFLAGS="-C target-cpu=native -C link-arg=-Wl,-rpath,\$ORIGIN"
export CARGO_TARGET_DIR="$root/target/cuda"
out=$CARGO_TARGET_DIR/release
# llama-cpp-sys-2's build script is not rerun when CMAKE_CUDA_ARCHITECTURES changes, CMake keeps
# the build type a build folder was configured with (Release since .cargo/config.toml sets
# LLAMA_LIB_PROFILE), and the build script keeps libraries already beside the binary: another
# architecture or build type than the last build's starts llama.cpp afresh
stamp=$CARGO_TARGET_DIR/cuda-architecture
key="$arch Release"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" != "$key" ]; then
  rm -rf "$out"/build/llama-cpp-sys-2-* "$out"/lib*.so* "$out"/deps/lib*.so*
fi
cargo build --release --locked -p vinscan-cli -p vinscan-bench --features vinscan-cli/cuda,vinscan-llama/cuda >&2
echo "$key" >"$stamp"
# the build script hard-links llama.cpp's libraries beside the binaries, but `libllama.so` and
# the like are symlinks to versioned files (and llama-common is not installed at all): copy the
# files themselves, under every name the binaries ask for
for dir in "$out"/build/llama-cpp-sys-2-*/out/lib "$out"/build/llama-cpp-sys-2-*/out/build/bin "$out"/build/llama-cpp-sys-2-*/out/build/common; do
  [ -d "$dir" ] || continue
  for so in "$dir"/lib*.so*; do
    [ -e "$so" ] || continue
    rm -f "$out/$(basename "$so")"
    cp -L "$so" "$out/"
  done
done
# the binaries' $ORIGIN rpath is a RUNPATH, which the loader applies to their own libraries
# only: libllama.so's libggml.so is found through LD_LIBRARY_PATH too
libs="$out:$tk/lib"
for bin in vinscan vinscan-bench; do
  cat >"$out/$bin-cuda" <<EOF
#!/usr/bin/env bash
# made by ops/cuda-build.sh: $bin built for CUDA (sm_$arch), with llama.cpp's and the toolkit's
# libraries on the path
export LD_LIBRARY_PATH="$libs\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
exec "$out/$bin" "\$@"
EOF
  chmod +x "$out/$bin-cuda"
done
missing=$(LD_LIBRARY_PATH="$libs" ldd "$out/vinscan" | grep 'not found' || true)
[ -z "$missing" ] || { echo "ops/cuda-build.sh: vinscan cannot find: $missing" >&2; exit 1; }
"$out/vinscan-cuda" --version >&2
say "built for CUDA sm_$arch: $out/vinscan-cuda, $out/vinscan-bench-cuda"
