#!/usr/bin/env bash
# Crash notification: how soon a webhook hears that a worker died, and what it hears
# (see crash.py for the method): l4ctl's crash reports vs a PM2 bus listener.
#
#   bench/crash.sh [--crashes N]
#
# Uses target/release/{l4ctl,l4ctl-send} (never built here: cargo build --release --bins).
# PM2 is installed locally (npm, no -g) into the git-ignored bench/.peers, once.
# Results: a table on stdout, raw numbers in bench/results/crash-<timestamp>.json.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

need node "node is required for PM2"
need python3 "python3 is required"
[ -x "$ROOT/target/release/l4ctl-send" ] || { echo "missing target/release/l4ctl-send: cargo build --release --bins" >&2; exit 1; }
mkdir -p "$PEERS" "$HERE/results"
install_pm2
exec python3 "$HERE/crash.py" "$@"
