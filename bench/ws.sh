#!/usr/bin/env bash
# chat-server vs Node `ws` (README broadcast recipe), side by side in one run (see ws.py).
#
#   bench/ws.sh [--quick] [other ws.py flags]
#
# Uses target/release/{chat-server,l4load,l4chat} (never built here: cargo build --release).
# `ws@8` is installed locally (npm, no -g) into the git-ignored bench/.peers, once.
# Results: a table on stdout, raw numbers in bench/results/ws-<timestamp>.json.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

need node "node is required for the ws peer"
need nginx "nginx is required for the through-nginx rows (apt-get install nginx)"
need openssl "openssl makes the through-nginx rows' certificate"
for bin in chat-server l4load l4chat; do
  [ -x "$ROOT/target/release/$bin" ] || { echo "missing target/release/$bin: cargo build --release --bins" >&2; exit 1; }
done
if [ ! -d "$PEERS/node_modules/ws" ]; then
  echo "installing ws@8 into $PEERS (npm, local)" >&2
  mkdir -p "$PEERS"
  [ -f "$PEERS/package.json" ] || echo '{"name":"layer4-bench-peers","private":true}' >"$PEERS/package.json"
  (cd "$PEERS" && npm install --no-audit --no-fund ws@8 >&2)
fi
mkdir -p "$HERE/results"
# 10,000 connections need 10,000 fds on each side.
ulimit -n "$(ulimit -Hn)"
exec python3 "$HERE/ws.py" "$@"
