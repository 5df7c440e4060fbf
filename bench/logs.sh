#!/usr/bin/env bash
# Log capture under a flood: l4ctl vs PM2 (+ pm2-logrotate) vs supervisord vs a direct write,
# side by side in one run (see logs.py for the method and the targets).
#
#   L4CTL=/path/to/l4ctl bench/logs.sh [--quick] [other logs.py flags]
#
# L4CTL defaults to target/release/l4ctl; this script never builds it.
# Into the git-ignored bench/.peers, once each:
#   - PM2 (npm, local, no -g), as supervisor.sh does;
#   - pm2-logrotate, into its own PM2_HOME bench/.peers/pm2home-logrotate (`pm2 install`,
#     falling back to `npm install pm2-logrotate` into the same layout);
#   - a Python venv bench/.peers/venv with `supervisor` from pip.
# workloads/spam.c is compiled into bench/.peers/bin on every run (it takes ~0.1 s).
# Results: a table on stdout, raw numbers in bench/results/logs-<timestamp>.json.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
LR_HOME="$PEERS/pm2home-logrotate"

need node "node is required for PM2"
need gcc "gcc is required for the spam worker"
need python3 "python3 is required"

mkdir -p "$PEERS/bin" "$HERE/results"
install_pm2

# pm2-logrotate lives in a PM2_HOME of its own: the flood runs use a plain PM2 home without it.
if [ ! -f "$LR_HOME/modules/pm2-logrotate/node_modules/pm2-logrotate/app.js" ]; then
  echo "installing pm2-logrotate into PM2_HOME=$LR_HOME" >&2
  mkdir -p "$LR_HOME"
  if ! PM2_HOME="$LR_HOME" "$PM2" install pm2-logrotate >&2; then
    # the same layout `pm2 install` makes: npm install into modules/<name>, then register the
    # module in module_conf.json ("module-db-v2"), which is what makes the daemon start it
    echo "pm2 install failed; trying npm install pm2-logrotate into $LR_HOME/modules" >&2
    npm install --no-audit --no-fund --prefix "$LR_HOME/modules/pm2-logrotate" pm2-logrotate >&2
    node -e '
      const fs = require("fs"), f = process.argv[1];
      let c = {}; try { c = JSON.parse(fs.readFileSync(f, "utf8")); } catch (e) {}
      c["module-db-v2"] = Object.assign(c["module-db-v2"] || {}, {"pm2-logrotate": {}});
      fs.writeFileSync(f, JSON.stringify(c, null, 4));' "$LR_HOME/module_conf.json"
  fi
  # stop the daemon `pm2 install` started (logs.py starts its own); only if it is running,
  # since `pm2 kill` would otherwise spawn one just to stop it
  if [ -f "$LR_HOME/pm2.pid" ] && kill -0 "$(cat "$LR_HOME/pm2.pid")" 2>/dev/null; then
    PM2_HOME="$LR_HOME" "$PM2" kill >&2
  fi
  [ -f "$LR_HOME/modules/pm2-logrotate/node_modules/pm2-logrotate/app.js" ] || { echo "pm2-logrotate did not install into $LR_HOME" >&2; exit 1; }
fi

if [ ! -x "$PEERS/venv/bin/supervisord" ]; then
  echo "creating $PEERS/venv with supervisor (pip)" >&2
  python3 -m venv "$PEERS/venv"
  "$PEERS/venv/bin/pip" install --quiet --disable-pip-version-check supervisor >&2
fi

compile_workload spam

exec python3 "$HERE/logs.py" "$@"
