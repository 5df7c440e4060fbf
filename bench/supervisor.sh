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
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

need node "node is required for PM2"
need gcc "gcc is required for the port worker"
# hyperfine times the status commands without the ~1 ms of Python fork/exec.
if ! command -v hyperfine >/dev/null && [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
  echo "installing hyperfine (apt)" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq hyperfine >&2 || echo "hyperfine not installed; timing with perf_counter" >&2
fi

mkdir -p "$PEERS/bin" "$HERE/results"
install_pm2
compile_workload port_worker

exec python3 "$HERE/supervisor.py" "$@"
