#!/usr/bin/env bash
# chat-server vs Socket.IO, three processes each behind one nginx with Redis between them,
# side by side in one run (see cluster.py).
#
#   bench/cluster.sh [--quick]
#
# Uses target/release/{chat-server,l4load,l4chat} (never built here: cargo build --release
# --bins) and the machine's PostgreSQL on 127.0.0.1:5432 (trust; a database made for the run).
# Socket.IO 4, @socket.io/redis-adapter 8, redis 4 and socket.io-client 4 are installed locally
# (npm, no -g) into the git-ignored bench/.peers, once; matplotlib (pip --target) for the plot.
# Results: a table on stdout, raw numbers and the plot in bench/results/cluster-<timestamp>.*.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

need node "node is required for the Socket.IO peer"
need nginx "nginx is required (apt-get install nginx)"
need redis-server "redis-server is required (apt-get install redis-server)"
need psql "psql is required to make the run's database (apt-get install postgresql-client)"
for bin in chat-server l4load l4chat; do
  [ -x "$ROOT/target/release/$bin" ] || { echo "missing target/release/$bin: cargo build --release --bins" >&2; exit 1; }
done
mkdir -p "$PEERS"
[ -f "$PEERS/package.json" ] || echo '{"name":"layer4-bench-peers","private":true}' >"$PEERS/package.json"
if [ ! -d "$PEERS/node_modules/@socket.io/redis-adapter" ] || [ ! -d "$PEERS/node_modules/socket.io-client" ]; then
  echo "installing socket.io, its Redis adapter and client into $PEERS (npm, local)" >&2
  (cd "$PEERS" && npm install --no-audit --no-fund socket.io@4 @socket.io/redis-adapter@8 redis@4 socket.io-client@4 >&2)
fi
if [ ! -d "$PEERS/py/matplotlib" ]; then
  echo "installing matplotlib into $PEERS/py (pip --target), for the plot" >&2
  python3 -m pip install -q --target "$PEERS/py" matplotlib >&2 || echo "no matplotlib: no plot" >&2
fi
mkdir -p "$HERE/results"
ulimit -n "$(ulimit -Hn)"
exec python3 "$HERE/cluster.py" "$@"
