#!/usr/bin/env bash
# Runs one libFuzzer target for MINUTES minutes (default 10): cargo-fuzz on the nightly
# toolchain with AddressSanitizer. Not part of CI (the proptests are); run it by hand or on a
# schedule. A crash leaves its input in fuzz/artifacts/TARGET/: add a regression test named
# after it beside the code it broke, then fix.
#   ops/fuzz.sh TARGET [MINUTES]    TARGET: decode | pdf | classify | pipeline_toml | schema_load
# The pdf target loads pdfium as the product does (VINSCAN_PDFIUM_LIB or the pypdfium2 wheel
# that ops/setup.sh installs).
# cargo-fuzz is built once into $VINSCAN_TOOLS (default ~/.cache/vinscan/tools), by version.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
target=${1:?usage: ops/fuzz.sh TARGET [MINUTES]}
minutes=${2:-10}
version=0.12.0
tools=${VINSCAN_TOOLS:-$HOME/.cache/vinscan/tools}
fuzz_root="$tools/cargo-fuzz-$version"
if [ ! -x "$fuzz_root/bin/cargo-fuzz" ]; then
  echo "ops/fuzz.sh: building cargo-fuzz $version into $fuzz_root" >&2
  cargo install --locked --quiet --root "$fuzz_root" "cargo-fuzz@$version" >&2
fi
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal >&2
# seeds: the project's own inputs of the target's kind
corpus="$root/fuzz/corpus/$target"
mkdir -p "$corpus"
seed() { for f in "$@"; do [ -f "$f" ] && cp -n "$f" "$corpus/" 2>/dev/null || true; done; }
case "$target" in
  decode) seed "$root"/tests/fixtures/* "$root"/tests/fixtures/*/* "$root"/tests/fixtures/*/*/* ;;
  pdf) seed "$root"/tests/fixtures/*.pdf "$root"/tests/fixtures/*/*.pdf ;;
  classify)
    printf '%s' '{"job_id":"j-1","pipeline":"receipt","sources":["s3://uploads/a.png",{"uri":"s3://uploads/b.png","version_id":"v1"}],"metadata":{"k":1}}' >"$corpus/job.json"
    printf '%s' '{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"uploads"},"object":{"key":"ho%C3%A1+%C4%91%C6%A1n.pdf","eTag":"e","sequencer":"0A1"}}}]}' >"$corpus/s3.json"
    printf '%s' '{"EventName":"s3:ObjectCreated:Put","Key":"uploads/a.png","Records":[{"eventName":"s3:ObjectCreated:Put","s3":{"bucket":{"name":"uploads"},"object":{"key":"a.png"}}}]}' >"$corpus/minio.json"
    printf '%s' '{"version":"0","source":"aws.s3","detail-type":"Object Created","detail":{"bucket":{"name":"uploads"},"object":{"key":"a.png","version-id":"v","sequencer":"617f"}}}' >"$corpus/eventbridge.json"
    ;;
  pipeline_toml) seed "$root"/pipelines/*.toml ;;
  schema_load) seed "$root"/schemas/*.json ;;
  *) echo "ops/fuzz.sh: unknown target $target" >&2; exit 2 ;;
esac
cd "$root/fuzz"
PATH="$fuzz_root/bin:$PATH" cargo +nightly fuzz run "$target" "$corpus" -- \
  -max_total_time=$((minutes * 60)) -rss_limit_mb=4096 -timeout=30 -print_final_stats=1
