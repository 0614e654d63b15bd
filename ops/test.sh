#!/usr/bin/env bash
# The test command (README): installs and starts what the tests need, then runs every test of
# the workspace against the real llama.cpp runtime, the real pdfium library, a real S3 server
# (s3s-fs), Apache Kafka (PLAINTEXT and SASL_SSL), the tiny random-weight Vintern-shaped model the
# project generates, and PyTorch + transformers as the reference for the fidelity tests.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
bash ops/setup.sh
# shellcheck source=ops/test-env.sh
source ops/test-env.sh
# PyTorch + transformers for the fidelity tests (crates/vinscan-cli/tests/fidelity/).
VINSCAN_REF_PYTHON="$(bash ops/reference-env.sh)/bin/python"
export VINSCAN_REF_PYTHON
s3_data=$(mktemp -d)
kafka_data=$(mktemp -d)
trap 'bash ops/s3-server.sh stop "$s3_data"; bash ops/kafka-broker.sh stop "$kafka_data"; rm -rf "$s3_data" "$kafka_data"' EXIT
eval "$(VINSCAN_S3_PORT=${VINSCAN_S3_PORT:-18014} bash ops/s3-server.sh start "$s3_data")"
eval "$(VINSCAN_KAFKA_PORT=${VINSCAN_KAFKA_PORT:-19092} bash ops/kafka-broker.sh start "$kafka_data")"
export VINSCAN_TEST_S3_ENDPOINT VINSCAN_TEST_S3_PID AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_REGION
export VINSCAN_TEST_KAFKA VINSCAN_TEST_KAFKA_PID VINSCAN_TEST_KAFKA_DATA VINSCAN_TEST_KAFKA_SASL_SSL
export VINSCAN_TEST_KAFKA_CA VINSCAN_TEST_KAFKA_USER VINSCAN_TEST_KAFKA_PASSWORD
cargo test --workspace --all-targets "$@"
# The crash-loop test needs the fault-injection build (a failpoint that aborts the process):
# only vinscan-cli and vinscan-daemon are rebuilt with it.
cargo test -p vinscan-cli --features failpoints --test serve "$@" -- crashing
