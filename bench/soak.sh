#!/usr/bin/env bash
# The deployment plan's success metrics under churn and faults: nginx (rendered by
# `l4ctl nginx render`) in front of 3 chat-server workers under l4ctl, a private PostgreSQL and
# Redis, 2,000 `l4load soak` users, and a schedule of reloads, SIGKILLs, memory-ceiling restarts
# and backend restarts (see soak.py).
#
#   bench/soak.sh [--minutes 30] [--clients 2000] [--bin-dir target/release] [--ceiling 32M] [--no-plot]
#
# Uses BIN_DIR/{l4ctl,l4ctl-daemon,chat-server,l4load,l4chat} (never built here: cargo build
# --release --bins; CI runs `--minutes 2 --bin-dir target/debug --ceiling 48M --no-plot`), nginx, redis-server and
# Debian's PostgreSQL server binaries (/usr/lib/postgresql/*/bin; as root, the cluster runs as the
# postgres user). matplotlib (pip --target, into the git-ignored bench/.peers/py) for the plot.
# Results: a table on stdout, raw numbers and the plot in bench/results/soak-<timestamp>.*; the
# exit status is 1 when a target is missed.
set -euo pipefail
bin_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/target/release"
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  [ "${args[$i]}" = "--bin-dir" ] && bin_dir=$(cd "${args[$((i + 1))]}" && pwd)
done
export L4CTL="$bin_dir/l4ctl"
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

need nginx "nginx is required (apt-get install nginx)"
need redis-server "redis-server is required (apt-get install redis-server)"
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { echo "PostgreSQL's server binaries are required (apt-get install postgresql)" >&2; exit 1; }
for bin in l4ctl l4ctl-daemon chat-server l4load l4chat; do
  [ -x "$bin_dir/$bin" ] || { echo "missing $bin_dir/$bin: cargo build --release --bins" >&2; exit 1; }
done
if [ ! -d "$PEERS/py/matplotlib" ] && [[ " $* " != *" --no-plot "* ]]; then
  echo "installing matplotlib into $PEERS/py (pip --target), for the plot" >&2
  python3 -m pip install -q --target "$PEERS/py" matplotlib >&2 || echo "no matplotlib: no plot" >&2
fi
mkdir -p "$HERE/results"
ulimit -n "$(ulimit -Hn)"
exec python3 "$HERE/soak.py" "$@"
