#!/usr/bin/env bash
# Zero-downtime reload behind nginx: l4ctl + chat-server vs PM2 cluster mode + Node ws,
# side by side in one run (see reload.py for the method and the target).
#
#   bench/reload.sh [--quick]
#
# Uses target/release/{l4ctl,chat-server} (never built here: cargo build --release --bins),
# Debian's nginx and redis-server, PostgreSQL at 127.0.0.1:5432 (or L4_TEST_PG), node.
# PM2 and ws@8 are installed locally (npm, no -g) into the git-ignored bench/.peers, once.
# Results: a table on stdout, raw numbers in bench/results/reload-<timestamp>.json.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

need node "node is required for PM2 and the load"
for cmd in nginx redis-server redis-cli psql curl; do
  need "$cmd" "$cmd is required (apt-get install nginx redis-server postgresql-client curl)"
done
[ -x "$ROOT/target/release/chat-server" ] || { echo "missing target/release/chat-server: cargo build --release --bins" >&2; exit 1; }
mkdir -p "$PEERS" "$HERE/results"
install_pm2
if [ ! -d "$PEERS/node_modules/ws" ]; then
  echo "installing ws@8 into $PEERS (npm, local)" >&2
  (cd "$PEERS" && npm install --no-audit --no-fund ws@8 >&2)
fi
ulimit -n "$(ulimit -Hn)"
exec python3 "$HERE/reload.py" "$@"
