#!/usr/bin/env bash
# The declared dependency ranges at one end: ./scripts/test-bounds.sh lowest|highest [pytest args]
#
# Builds a fresh virtual environment (.venv/bounds-<end>) with every direct dependency of
# the three packages at its declared floor (lowest) or at the newest the index serves within
# our caps (highest), then runs every suite that needs no third-party server build (all but
# tests/thirdparty, and tests/test_install.py, which installs from the index anyway).
# --reuse skips the rebuild when that environment exists. torch stays at the build given by
# $MEMRERANKER_TORCH (default the CPU build torch==2.13.0) at both ends.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
end="${1:-}"
case "$end" in
  lowest | highest) shift ;;
  *) echo "usage: $0 lowest|highest [--reuse] [pytest args]" >&2; exit 2 ;;
esac
reuse=0
if [ "${1:-}" = "--reuse" ]; then reuse=1; shift; fi
venv="${MEMRERANKER_BOUNDS_VENV:-$root/.venv/bounds-$end}"
python="${PYTHON:-python3}"
torch="${MEMRERANKER_TORCH:-torch==2.13.0}"

start=$SECONDS
if [ "$reuse" = 0 ] || [ ! -x "$venv/bin/python" ]; then
  rm -rf "$venv"
  mkdir -p "$(dirname "$venv")"
  "$python" -m venv "$venv"
fi
if [ "$end" = lowest ]; then
  # uv finds the lowest version of each direct dependency that installs with the others;
  # pip (which knows this machine's torch build) then installs under those pins.
  "$venv/bin/python" -c "import uv" 2>/dev/null ||
    "$venv/bin/python" -m pip install -q --disable-pip-version-check uv
  # Every package with every extra (bounds_constraints.py requirements), torch as given.
  { "$python" scripts/bounds_constraints.py requirements; echo "$torch"; } >"$venv/requirements.in"
  compile() {  # compile OUT [extra pins file]: the lowest-direct resolution into OUT
    local out="$1"; shift
    "$venv/bin/python" -m uv pip compile -q --resolution lowest-direct \
      --python "$venv/bin/python" -o "$out" "$venv/requirements.in" "$@"
  }
  above() { "$python" scripts/bounds_constraints.py above "$1"; }
  compile "$venv/lowest-direct.txt"
  # uv lowers each direct dependency only as far as the rest of its resolution allows (a
  # transitive dependency resolved high can hold one above its floor): pin each such floor,
  # keeping the pins that install together, until a pass finds nothing more to lower (a
  # pin can lift another dependency, which the next pass tries again).
  : >"$venv/floors.txt"
  : >"$venv/floors.failed"
  for _pass in 1 2 3; do
    kept=0
    while read -r floor; do
      grep -qxF "$floor" "$venv/floors.failed" && continue
      { cat "$venv/floors.txt"; echo "$floor"; } >"$venv/floors.try"
      if compile "$venv/trial.txt" "$venv/floors.try" 2>/dev/null; then
        mv "$venv/floors.try" "$venv/floors.txt"
        mv "$venv/trial.txt" "$venv/lowest-direct.txt"
        kept=1
      else
        echo "$floor" >>"$venv/floors.failed"
        echo "test-bounds: $floor does not install with the other floors: kept higher" >&2
      fi
    done < <(above "$venv/lowest-direct.txt")
    [ "$kept" = 1 ] || break
  done
  rm -f "$venv/floors.try" "$venv/trial.txt" "$venv/floors.failed"
  above "$venv/lowest-direct.txt" | sed 's/^/test-bounds: above its floor: /' >&2
  "$python" scripts/bounds_constraints.py pins "$venv/lowest-direct.txt" "$torch" \
    >"$venv/constraints.new"
else
  echo "$torch" >"$venv/constraints.new"
fi
if ! cmp -s "$venv/constraints.new" "$venv/constraints.txt"; then
  rm -f "$venv"/.stamp-*  # new pins: bootstrap.sh installs again
fi
mv "$venv/constraints.new" "$venv/constraints.txt"
echo "test-bounds: $venv, constraints:" >&2
sed 's/^/  /' "$venv/constraints.txt" >&2
# bootstrap.sh installs exactly what a developer's .venv gets, here under the constraints
# (again only when a pyproject.toml changed; the demo's own bootstrap then finds it done).
PIP_CONSTRAINT="$venv/constraints.txt" MEMRERANKER_VENV="$venv" MEMRERANKER_TORCH="$torch" \
  PYTHON="$python" bash scripts/bootstrap.sh
"$venv/bin/python" -m pip list --format=freeze --disable-pip-version-check >"$venv/resolved.txt"
built=$((SECONDS - start))
echo "test-bounds: $end environment ready in ${built}s ($("$venv/bin/python" --version))" >&2
"$venv/bin/python" - "$venv/resolved.txt" <<'PY' >&2
import re, sys
sys.path.insert(0, "scripts")
from bounds_constraints import direct_names, normalize
names = sorted(direct_names())
pins = dict(line.strip().split("==", 1) for line in open(sys.argv[1]) if "==" in line)
pins = {normalize(k): v for k, v in pins.items()}
print("test-bounds: resolved direct dependencies:", ", ".join(
    f"{n}=={pins[n]}" for n in names if n in pins))
PY

export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
tests=$SECONDS
status=0
"$venv/bin/python" -m pytest -n "${MEMRERANKER_TEST_WORKERS:-2}" -p no:cacheprovider \
  --ignore=tests/thirdparty --ignore=tests/test_install.py "$@" || status=$?
echo "test-bounds: $end: environment ${built}s, tests $((SECONDS - tests))s, exit $status" >&2
exit $status
