#!/usr/bin/env bash
# The whole test suite (and ruff), from a fresh clone: ./scripts/test.sh [pytest args]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/bootstrap.sh
venv="${MEMRERANKER_VENV:-$root/.venv}"
"$venv/bin/ruff" check .
# The whole suite needs Infinity's own venv (tests/thirdparty, near the end): build it in the
# background meanwhile (a minute or more on a fresh clone); the fixture waits for it.
if [ $# -eq 0 ]; then
  PYTHONPATH=tests "$venv/bin/python" -m servers.infinity >/dev/null 2>&1 &
  prebuild=$!
  trap 'kill "$prebuild" 2>/dev/null || true' EXIT
fi
# No network: weights can only come from disk, and nothing may try the Hub.
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
# Two workers by default (MEMRERANKER_TEST_WORKERS=N, or -n N / -n 0 among the arguments).
"$venv/bin/python" -m pytest -n "${MEMRERANKER_TEST_WORKERS:-2}" "$@"
