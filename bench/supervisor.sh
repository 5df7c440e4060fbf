#!/usr/bin/env bash
# l4ctl vs PM2, side by side in one run (see supervisor.py for the method and the targets).
#
#   L4CTL=/path/to/l4ctl bench/supervisor.sh [--quick] [other supervisor.py flags]
#
# L4CTL defaults to target/release/l4ctl; this script never builds it.
# PM2 is installed locally (npm, no -g) into the git-ignored bench/.peers, once;
# the C port worker is compiled into bench/.peers/bin on every run (it takes ~0.1 s).
# Results: a table on stdout, raw numbers in bench/results/supervisor-<timestamp>.json.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
PEERS="$HERE/.peers"
export L4CTL=${L4CTL:-$ROOT/target/release/l4ctl}

[ -x "$L4CTL" ] || { echo "l4ctl binary not found: $L4CTL (set L4CTL=...)" >&2; exit 1; }
command -v node >/dev/null || { echo "node is required for PM2" >&2; exit 1; }
command -v gcc >/dev/null || { echo "gcc is required for the port worker" >&2; exit 1; }
# hyperfine times the status commands without the ~1 ms of Python fork/exec.
if ! command -v hyperfine >/dev/null && [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
  echo "installing hyperfine (apt)" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq hyperfine >&2 || echo "hyperfine not installed; timing with perf_counter" >&2
fi

mkdir -p "$PEERS/bin" "$HERE/results"
if [ ! -x "$PEERS/node_modules/.bin/pm2" ]; then
  echo "installing pm2 into $PEERS (npm, local)" >&2
  # a package.json of its own, so npm does not walk up and install into another project
  [ -f "$PEERS/package.json" ] || echo '{"name":"layer4-bench-peers","private":true}' >"$PEERS/package.json"
  (cd "$PEERS" && npm install --no-audit --no-fund pm2 >&2)
fi
gcc -O2 -Wall -o "$PEERS/bin/port_worker" "$HERE/workloads/port_worker.c"

exec python3 "$HERE/supervisor.py" "$@"
