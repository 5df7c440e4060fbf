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
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

need node "node is required for PM2"
need python3 "python3 is required"
[ -f "$HERE/workloads/hog.py" ] || { echo "missing $HERE/workloads/hog.py" >&2; exit 1; }

mkdir -p "$PEERS" "$HERE/results"
install_pm2

exec python3 "$HERE/memory.py" "$@"
