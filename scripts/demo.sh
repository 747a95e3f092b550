#!/usr/bin/env bash
# The demo: rerank an agent's memories. Uses $MEMRERANKER_MODEL or the Hub checkpoint, and
# falls back to a tiny random test model when no weights can be had.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/bootstrap.sh
venv="${MEMRERANKER_VENV:-$root/.venv}"
exec "$venv/bin/python" examples/agent_memory.py "$@"
