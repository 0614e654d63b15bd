#!/usr/bin/env python3
"""Builds llama.cpp's `llama-mtmd-cli` against the very llama.cpp build that vinscan links.

Reads `cargo build --message-format=json` from stdin, takes the `build-script-executed`
message of llama-cpp-sys-2 (its OUT_DIR, static libraries and search paths), compiles only
`tools/mtmd/mtmd-cli.cpp` from the vendored source with that build's type flags and links it
against the same static libraries (ggml, ggml-cpu, llama, mtmd, llama-common). The benchmark's
peer therefore runs the same compiled kernels as vinscan, not a second build of them.

usage: cargo build --release -p vinscan-cli --message-format=json \
         | link_mtmd_cli.py --llama-src DIR --out PATH
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys


def cmake_cache(build_dir):
    values = {}
    try:
        with open(os.path.join(build_dir, "CMakeCache.txt"), encoding="utf-8") as f:
            for line in f:
                m = re.match(r"^([A-Za-z0-9_]+):[A-Z]+=(.*)$", line.rstrip("\n"))
                if m:
                    values[m.group(1)] = m.group(2)
    except OSError as e:
        sys.exit(f"link_mtmd_cli: no CMake cache in {build_dir}: {e}")
    return values


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--llama-src", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    script = None
    for line in sys.stdin:
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if msg.get("reason") == "build-script-executed" and "llama-cpp-sys-2" in msg.get("package_id", ""):
            script = msg
    if script is None:
        sys.exit("link_mtmd_cli: cargo reported no llama-cpp-sys-2 build script (was the build run?)")

    out_dir = script["out_dir"]
    cache = cmake_cache(os.path.join(out_dir, "build"))
    build_type = cache.get("CMAKE_BUILD_TYPE", "Release") or "Release"
    type_flags = cache.get(f"CMAKE_CXX_FLAGS_{build_type.upper()}", "-O2 -DNDEBUG").split()
    src = args.llama_src
    cli = os.path.join(src, "tools", "mtmd", "mtmd-cli.cpp")
    if not os.path.isfile(cli):
        sys.exit(f"link_mtmd_cli: {cli} not found")

    search = [p.split("=", 1)[-1] for p in script["linked_paths"]]
    statics, dylibs = [], []
    for lib in script["linked_libs"]:
        kind, _, name = lib.rpartition("=")
        if name == "llama_cpp_sys_2_common_wrapper":
            continue  # the Rust bindings' own shim, not part of llama.cpp
        (statics if kind == "static" else dylibs).append(name)
    # llama-common's argument parser reaches its model downloader, which vinscan never calls
    # (so the crate does not link it): cpp-httplib, with OpenSSL when CMake found it
    httplib = os.path.join(out_dir, "build", "vendor", "cpp-httplib")
    if os.path.isfile(os.path.join(httplib, "libcpp-httplib.a")):
        search.append(httplib)
        statics.append("cpp-httplib")
        if cache.get("LLAMA_OPENSSL", "OFF").upper() in ("ON", "TRUE", "1") and cache.get("OPENSSL_SSL_LIBRARY"):
            dylibs += ["ssl", "crypto"]
    defines = ["-DGGML_USE_CPU"]
    if cache.get("GGML_CUDA", "OFF").upper() in ("ON", "TRUE", "1"):
        defines.append("-DGGML_USE_CUDA")
    if cache.get("GGML_OPENMP_ENABLED", cache.get("GGML_OPENMP", "OFF")).upper() in ("ON", "TRUE", "1"):
        dylibs.append("gomp")

    statics = list(dict.fromkeys(statics))
    cxx = os.environ.get("CXX", "c++")
    tmp = args.out + ".tmp"
    cmd = (
        [cxx, "-std=c++17", "-ffunction-sections", "-fdata-sections", "-fPIC", "-m64", *type_flags, *defines]
        + [f"-I{os.path.join(src, d)}" for d in ("common", "vendor", "include", "ggml/include", "tools/mtmd")]
        + [cli, "-o", tmp, "-Wl,--gc-sections"]
        + [f"-L{p}" for p in search]
        + ["-Wl,--start-group", *[f"-l{s}" for s in statics], "-Wl,--end-group"]
        + [f"-l{d}" for d in dict.fromkeys(dylibs)]
        + ["-lpthread"]
    )
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.stderr.write(" ".join(cmd) + "\n" + r.stderr[-6000:])
        sys.exit(f"link_mtmd_cli: compiling {cli} failed")
    shutil.move(tmp, args.out)
    print(json.dumps({"out": args.out, "llama_build": out_dir, "build_type": build_type, "libs": statics}))


if __name__ == "__main__":
    main()
