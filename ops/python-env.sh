#!/usr/bin/env bash
# Creates (or reuses) a Python virtual environment with pinned packages and prints its path.
# Default: the project's .venv with ops/requirements.txt. VINSCAN_VENV overrides the location and
# VINSCAN_REQUIREMENTS the requirements file (ops/reference-env.sh uses both). The environment is
# rebuilt when the requirements file changes.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${VINSCAN_VENV:-$root/.venv}
req=${VINSCAN_REQUIREMENTS:-$root/ops/requirements.txt}
stamp="$venv/.vinscan-requirements"
if [ ! -x "$venv/bin/python" ] || ! cmp -s "$req" "$stamp"; then
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$req" >&2
  cp "$req" "$stamp"
fi
echo "$venv"
