#!/usr/bin/env bash
# A load run (not a test): N messages (default 1,000) through one `vinscan serve` with the tiny
# model, against Apache Kafka and the S3 server this script starts on their own ports. Prints
# a JSON report: throughput, peak resident memory, lag over time (crates/vinscan-cli/examples/load.rs).
#   ops/load.sh [MESSAGES] [MAX_IN_FLIGHT]
# VINSCAN_LOAD_PROFILE=debug uses the debug build (default: release, what users run).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
bash ops/setup.sh
# shellcheck source=ops/test-env.sh
source ops/test-env.sh
export VINSCAN_LOAD_MESSAGES=${1:-1000} VINSCAN_LOAD_MAX_IN_FLIGHT=${2:-4}
profile=${VINSCAN_LOAD_PROFILE:-release}
if [ "$profile" = release ]; then
  cargo build --release --quiet -p vinscan-cli --bin vinscan --example load
else
  cargo build --quiet -p vinscan-cli --bin vinscan --example load
fi
s3_data=$(mktemp -d)
kafka_data=$(mktemp -d)
trap 'bash ops/s3-server.sh stop "$s3_data"; bash ops/kafka-broker.sh stop "$kafka_data"; rm -rf "$s3_data" "$kafka_data"' EXIT
eval "$(VINSCAN_S3_PORT=${VINSCAN_S3_PORT:-18414} bash ops/s3-server.sh start "$s3_data")"
eval "$(VINSCAN_KAFKA_PORT=${VINSCAN_KAFKA_PORT:-19492} bash ops/kafka-broker.sh start "$kafka_data")"
export VINSCAN_TEST_S3_ENDPOINT AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_REGION VINSCAN_TEST_KAFKA
export VINSCAN_BIN="$root/target/$profile/vinscan"
"$root/target/$profile/examples/load"
