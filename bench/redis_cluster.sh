#!/usr/bin/env bash
# chat-server's fan-out through one Redis vs a 3-shard Redis Cluster, 3 workers behind nginx,
# 30 rooms (see redis_cluster.py).
#
#   bench/redis_cluster.sh [--quick]
#
# Uses target/release/{chat-server,l4load,l4chat} (never built here: cargo build --release
# --bins), nginx, redis-server and redis-cli (Redis >= 7, for sharded pub/sub) and the machine's
# PostgreSQL on 127.0.0.1:5432 (trust; a database made for each run). Results: a table on stdout,
# raw numbers in bench/results/redis-cluster-<timestamp>.json.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

need nginx "nginx is required (apt-get install nginx)"
need redis-server "redis-server is required (apt-get install redis-server)"
need redis-cli "redis-cli is required (apt-get install redis-tools)"
need psql "psql is required to make the run's database (apt-get install postgresql-client)"
for bin in chat-server l4load l4chat; do
  [ -x "$ROOT/target/release/$bin" ] || { echo "missing target/release/$bin: cargo build --release --bins" >&2; exit 1; }
done
mkdir -p "$HERE/results"
ulimit -n "$(ulimit -Hn)"
exec python3 "$HERE/redis_cluster.py" "$@"
