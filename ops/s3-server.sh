#!/usr/bin/env bash
# A real S3 server for tests and local use: s3s-fs 0.14.1 (HTTP + SigV4, filesystem-backed;
# 0.15+ needs a newer Rust). The binary is built once into a cache outside the clone, keyed by
# version ($VINSCAN_TOOLS, default ~/.cache/vinscan/tools).
#   ops/s3-server.sh install          build the binary if the cache lacks it, print its path
#   ops/s3-server.sh start DATA_DIR   start on 127.0.0.1:$VINSCAN_S3_PORT (default 8014), wait until it answers,
#                                     print `export ...` lines for the S3 settings; pid in DATA_DIR/.pid
#   ops/s3-server.sh stop DATA_DIR
set -euo pipefail
version=0.14.1
tools=${VINSCAN_TOOLS:-$HOME/.cache/vinscan/tools}
root="$tools/s3s-fs-$version"
bin="$root/bin/s3s-fs"
port=${VINSCAN_S3_PORT:-8014}
access_key=${VINSCAN_S3_TEST_ACCESS_KEY:-vinscan-test}
secret_key=${VINSCAN_S3_TEST_SECRET_KEY:-vinscan-test-secret}

install() {
  if [ ! -x "$bin" ]; then
    echo "ops/s3-server.sh: building s3s-fs $version into $root" >&2
    cargo install --locked --quiet --root "$root" "s3s-fs@$version" --features binary >&2
  fi
  echo "$bin"
}

case "${1:-}" in
  install) install ;;
  start)
    data=${2:?data dir}
    install >/dev/null
    mkdir -p "$data"
    "$bin" --host 127.0.0.1 --port "$port" --access-key "$access_key" --secret-key "$secret_key" "$data" \
      >"$data/.log" 2>&1 </dev/null &
    echo $! >"$data/.pid"
    for _ in $(seq 100); do
      if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        echo "export VINSCAN_TEST_S3_ENDPOINT=http://127.0.0.1:$port AWS_ACCESS_KEY_ID=$access_key AWS_SECRET_ACCESS_KEY=$secret_key AWS_REGION=us-east-1 VINSCAN_TEST_S3_PID=$(cat "$data/.pid")"
        exit 0
      fi
      sleep 0.1
    done
    echo "ops/s3-server.sh: s3s-fs did not start; log:" >&2
    cat "$data/.log" >&2
    exit 1
    ;;
  stop)
    data=${2:?data dir}
    [ -f "$data/.pid" ] && kill "$(cat "$data/.pid")" 2>/dev/null || true
    rm -f "$data/.pid"
    ;;
  *)
    echo "usage: $0 install | start DATA_DIR | stop DATA_DIR" >&2
    exit 2
    ;;
esac
