# Sourced (not run) by the bench/*.sh entry points, after their `set -euo pipefail`: the setup
# they share.  Sets HERE (bench/), ROOT (the repository), PEERS (the git-ignored bench/.peers)
# and PM2 (the local pm2 there), and exports L4CTL (default target/release/l4ctl; never built
# here), exiting unless it is executable.

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
PEERS="$HERE/.peers"
PM2="$PEERS/node_modules/.bin/pm2"
export L4CTL=${L4CTL:-$ROOT/target/release/l4ctl}

[ -x "$L4CTL" ] || { echo "l4ctl binary not found: $L4CTL (set L4CTL=...)" >&2; exit 1; }

# need COMMAND MESSAGE: exit with MESSAGE unless COMMAND is on PATH
need() {
  command -v "$1" >/dev/null || { echo "$2" >&2; exit 1; }
}

# PM2 from npm into $PEERS (local, no -g), once
install_pm2() {
  if [ ! -x "$PM2" ]; then
    echo "installing pm2 into $PEERS (npm, local)" >&2
    # a package.json of its own, so npm does not walk up and install into another project
    [ -f "$PEERS/package.json" ] || echo '{"name":"layer4-bench-peers","private":true}' >"$PEERS/package.json"
    (cd "$PEERS" && npm install --no-audit --no-fund pm2 >&2)
  fi
}

# compile_workload NAME: workloads/NAME.c into $PEERS/bin/NAME (every run; it takes ~0.1 s)
compile_workload() {
  gcc -O2 -Wall -o "$PEERS/bin/$1" "$HERE/workloads/$1.c"
}
