#!/usr/bin/env bash
# The whole test suite (and ruff), from a fresh clone: ./scripts/test.sh [pytest args]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/bootstrap.sh
venv="${MEMRERANKER_VENV:-$root/.venv}"
"$venv/bin/ruff" check .
# No network: weights can only come from disk, and nothing may try the Hub.
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
"$venv/bin/python" -m pytest "$@"
