#!/usr/bin/env bash
# Run a benchmark from a fresh clone: ./scripts/bench.sh local|http|imports [args]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/bootstrap.sh
venv="${MEMRERANKER_VENV:-$root/.venv}"
"$venv/bin/python" -m pip install -q --disable-pip-version-check --group bench
name="${1:?usage: scripts/bench.sh local|http|imports [args]}"
shift
exec "$venv/bin/python" "benchmarks/$name.py" "$@"
