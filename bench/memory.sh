#!/usr/bin/env bash
# Memory ceiling reaction and sampling cost: l4ctl vs PM2, side by side in one run
# (see memory.py for the method and the targets).
#
#   L4CTL=/path/to/l4ctl bench/memory.sh [--quick] [other memory.py flags]
#
# L4CTL defaults to target/release/l4ctl; this script never builds it.
# PM2 is installed locally (npm, no -g) into the git-ignored bench/.peers, once, as
# supervisor.sh does.  The hog (workloads/hog.py) runs under the python3 that runs memory.py
# (its real path, not a pyenv shim), for both tools.
# Results: a table on stdout, raw numbers in bench/results/memory-<timestamp>.json.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
PEERS="$HERE/.peers"
export L4CTL=${L4CTL:-$ROOT/target/release/l4ctl}

[ -x "$L4CTL" ] || { echo "l4ctl binary not found: $L4CTL (set L4CTL=...)" >&2; exit 1; }
command -v node >/dev/null || { echo "node is required for PM2" >&2; exit 1; }
command -v python3 >/dev/null || { echo "python3 is required" >&2; exit 1; }
[ -f "$HERE/workloads/hog.py" ] || { echo "missing $HERE/workloads/hog.py" >&2; exit 1; }

mkdir -p "$PEERS" "$HERE/results"
if [ ! -x "$PEERS/node_modules/.bin/pm2" ]; then
  echo "installing pm2 into $PEERS (npm, local)" >&2
  # a package.json of its own, so npm does not walk up and install into another project
  [ -f "$PEERS/package.json" ] || echo '{"name":"layer4-bench-peers","private":true}' >"$PEERS/package.json"
  (cd "$PEERS" && npm install --no-audit --no-fund pm2 >&2)
fi

exec python3 "$HERE/memory.py" "$@"
