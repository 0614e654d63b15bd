#!/usr/bin/env bash
# Sourced by ops/test.sh and ops/run.sh: the Python environment, the pdfium library from the
# pypdfium2 wheel, OpenMP's passive wait policy, and the tiny test models (Vintern-shaped, and a
# llama-architecture text model for the text stage).
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=$("$root/ops/python-env.sh")
export VINSCAN_PYTHON="$venv/bin/python"
VINSCAN_PDFIUM_LIB=$("$VINSCAN_PYTHON" -c 'import os, pypdfium2_raw; print(os.path.join(os.path.dirname(pypdfium2_raw.__file__), "libpdfium.so"))')
export VINSCAN_PDFIUM_LIB
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
export VINSCAN_TEST_MODEL_DIR="$root/target/test-models/tiny"
"$VINSCAN_PYTHON" "$root/ops/make_test_model.py" tiny "$VINSCAN_TEST_MODEL_DIR"
export VINSCAN_TEST_TEXT_MODEL_DIR="$root/target/test-models/tiny-llama"
"$VINSCAN_PYTHON" "$root/ops/make_test_model.py" tiny-llama "$VINSCAN_TEST_TEXT_MODEL_DIR"
