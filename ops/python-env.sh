#!/usr/bin/env bash
# Creates (or reuses) the project's Python virtual environment with the pinned packages of
# ops/requirements.txt and prints its path. VINSCAN_VENV overrides the location (default .venv).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${VINSCAN_VENV:-$root/.venv}
stamp="$venv/.vinscan-requirements"
if [ ! -x "$venv/bin/python" ] || ! cmp -s "$root/ops/requirements.txt" "$stamp"; then
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$root/ops/requirements.txt" >&2
  cp "$root/ops/requirements.txt" "$stamp"
fi
echo "$venv"
