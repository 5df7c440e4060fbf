#!/usr/bin/env bash
# `watch` on a 100,000-file tree: l4ctl with and without watch, and PM2 with watch, side by side
# in one run (see watch.py for the method and the targets).
#
#   L4CTL=/path/to/l4ctl bench/watch.sh [--files N] [--idle S] [--reps N]
#
# L4CTL defaults to target/release/l4ctl; this script never builds it. PM2 is installed locally
# (npm, no -g) into the git-ignored bench/.peers, once. Results: a table on stdout, raw numbers in
# bench/results/watch-<timestamp>.json.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

need node "node is required for PM2"
mkdir -p "$PEERS" "$HERE/results"
install_pm2

exec python3 "$HERE/watch.py" "$@"
