#!/usr/bin/env bash
# Creates (or reuses) the reference Python environment of ops/reference/requirements.txt
# (PyTorch + transformers, for fidelity tests and the reference checkpoint generator) and prints
# its path. Kept apart from .venv because it is large (~6 GB). VINSCAN_REF_VENV overrides the
# location (default .venv-ref).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VINSCAN_VENV=${VINSCAN_REF_VENV:-$root/.venv-ref} \
  VINSCAN_REQUIREMENTS=$root/ops/reference/requirements.txt \
  exec "$root/ops/python-env.sh"
