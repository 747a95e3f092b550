#!/usr/bin/env bash
# Create .venv and install every package of the workspace editable, with its extras and
# the dev tools. Re-running is cheap: it reinstalls only when a pyproject.toml changed.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
venv="${MEMRERANKER_VENV:-$root/.venv}"
python="${PYTHON:-python3}"

[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
stamp="$venv/.stamp-$(cat pyproject.toml packages/*/pyproject.toml scripts/bootstrap.sh | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "bootstrap: installing the workspace into $venv" >&2
  "$venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade "pip>=25.1"
  # torch first, pinned to the CPU build: an unpinned torch (pulled by an extra) would fetch
  # the CUDA build, several GB. Override with MEMRERANKER_TORCH="torch==X" for a GPU box.
  if ! "$venv/bin/python" -c "import torch" 2>/dev/null; then
    "$venv/bin/python" -m pip install -q --disable-pip-version-check "${MEMRERANKER_TORCH:-torch==2.13.0}"
  fi
  args=(-e "packages/memreranker[testing]")
  for pkg in packages/*/; do
    pkg="${pkg%/}"
    [ "$pkg" = packages/memreranker ] && continue
    [ -f "$pkg/pyproject.toml" ] && args+=(-e "$pkg")
  done
  "$venv/bin/python" -m pip install -q --disable-pip-version-check "${args[@]}" --group dev
  rm -f "$venv"/.stamp-*
  touch "$stamp"
fi
