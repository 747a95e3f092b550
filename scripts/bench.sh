#!/usr/bin/env bash
# Run a benchmark from a fresh clone: ./scripts/bench.sh local|http|imports [args]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

usage() {
  cat <<USAGE
usage: scripts/bench.sh BENCHMARK [ARGS...]

Runs benchmarks/BENCHMARK.py with the workspace's .venv (\$MEMRERANKER_VENV), after
scripts/bootstrap.sh and the "bench" dependency group (sentence-transformers, tqdm) are
installed into it. Each prints a table of ratios against the alternatives measured in the
same run. "scripts/bench.sh BENCHMARK --help" lists the benchmark's own options.

benchmarks:
USAGE
  for file in benchmarks/*.py; do
    name="$(basename "$file" .py)"
    # The first line of the module docstring, without the quotes and reST backticks.
    summary="$(grep -m1 '^"""' "$file" | sed -e 's/^"""//' -e 's/``//g' -e 's/"""$//')"
    printf '  %-9s %s\n' "$name" "$summary"
  done
}

case "${1:-}" in
  -h | --help) usage; exit 0 ;;
  "") usage >&2; exit 2 ;;
esac
name="$1"
shift
if [ ! -f "benchmarks/$name.py" ]; then
  echo "scripts/bench.sh: no benchmark named '$name'" >&2
  usage >&2
  exit 2
fi

bash scripts/bootstrap.sh
venv="${MEMRERANKER_VENV:-$root/.venv}"
"$venv/bin/python" -m pip install -q --disable-pip-version-check --group bench
exec "$venv/bin/python" "benchmarks/$name.py" "$@"
