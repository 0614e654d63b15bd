#!/usr/bin/env bash
# Creates (or reuses) the reference Python environment of ops/reference/requirements.txt
# (PyTorch + transformers, for fidelity tests and the reference checkpoint generator) and prints
# its path. Kept apart from .venv because it is large (~6 GB). VINSCAN_REF_VENV overrides the
# location (default .venv-ref).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${VINSCAN_REF_VENV:-$root/.venv-ref}
req="$root/ops/reference/requirements.txt"
stamp="$venv/.vinscan-requirements"
if [ ! -x "$venv/bin/python" ] || ! cmp -s "$req" "$stamp"; then
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$req" >&2
  cp "$req" "$stamp"
fi
echo "$venv"
