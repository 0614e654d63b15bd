#!/usr/bin/env bash
# A real Kafka-protocol broker for tests and local use: Nisshi 0.8.1 (formerly Tansu; Apache
# Kafka and Redpanda cannot be installed on these machines). Consumer groups, offset commits,
# CreateTopics and rebalances behave as vinscan needs (see docs/ARCHITECTURE.md).
# The binary is built once into a cache outside the clone, keyed by version
# ($VINSCAN_TOOLS, default ~/.cache/vinscan/tools). It is an unoptimised build without debug
# info: about 2/3 of the release build's time, and fast enough for tests.
#   ops/kafka-broker.sh install          build the binary if the cache lacks it, print its path
#   ops/kafka-broker.sh start DATA_DIR   start on 127.0.0.1:$VINSCAN_KAFKA_PORT (default 19092) with
#                                        in-memory storage, wait until it answers, print `export ...`
#                                        lines; pid in DATA_DIR/.pid, log in DATA_DIR/.log
#   ops/kafka-broker.sh stop DATA_DIR
set -euo pipefail
version=0.8.1
tools=${VINSCAN_TOOLS:-$HOME/.cache/vinscan/tools}
root="$tools/nisshi-$version-dev"
bin="$root/bin/nisshi"
port=${VINSCAN_KAFKA_PORT:-19092}

install() {
  if [ ! -x "$bin" ]; then
    echo "ops/kafka-broker.sh: building nisshi $version into $root (about 12 min on 2 cores)" >&2
    local target
    target=$(mktemp -d)
    # --ignore-rust-version: nisshi's lockfile pins rama 0.4.0, which declares rustc 1.96 but
    # builds with 1.95. dynostore is the feature with the memory:// storage engine.
    CARGO_TARGET_DIR="$target" CARGO_PROFILE_DEV_DEBUG=0 \
      cargo install --locked --quiet --debug --ignore-rust-version --root "$root" \
      "nisshi@$version" --no-default-features --features dynostore >&2
    rm -rf "$target"
  fi
  echo "$bin"
}

case "${1:-}" in
  install) install ;;
  start)
    data=${2:?data dir}
    install >/dev/null
    mkdir -p "$data"
    # 127.0.0.1 for both: librdkafka may resolve `localhost` to ::1, the broker listens on IPv4
    "$bin" broker --listener-url "tcp://127.0.0.1:$port" \
      --advertised-listener-url "tcp://127.0.0.1:$port" \
      --storage-engine memory://nisshi/ --group-initial-rebalance-delay 0s \
      >"$data/.log" 2>&1 </dev/null &
    echo $! >"$data/.pid"
    for _ in $(seq 200); do
      if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        echo "export VINSCAN_TEST_KAFKA=127.0.0.1:$port VINSCAN_TEST_KAFKA_PID=$(cat "$data/.pid")"
        exit 0
      fi
      sleep 0.1
    done
    echo "ops/kafka-broker.sh: nisshi did not start; log:" >&2
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
