#!/usr/bin/env bash
# WebSocket conformance: the Autobahn TestSuite's cases, run by kosoku (PyPI), against
# chat-server's test-only echo route (`ECHO_ROUTE=1`, `GET /echo`: the same WebSocket
# settings, outbox and limits as `/ws`). See autobahn.py for what is run and the target.
#
#   CHAT_SERVER=/path/to/chat-server bench/autobahn.sh [autobahn.py flags]
#
# CHAT_SERVER defaults to target/release/chat-server (never built here). kosoku is installed
# once into a venv of its own, bench/.peers/kosoku (git-ignored), at the pinned version.
# Results: the verdict table on stdout, raw numbers in bench/results/autobahn-<timestamp>.json
# and kosoku's HTML reports in bench/results/autobahn-<timestamp>/.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
KOSOKU_VERSION=0.1.0
VENV="$HERE/.peers/kosoku"

export CHAT_SERVER=${CHAT_SERVER:-$ROOT/target/release/chat-server}
[ -x "$CHAT_SERVER" ] || { echo "chat-server binary not found: $CHAT_SERVER (cargo build --release --bins, or set CHAT_SERVER=...)" >&2; exit 1; }
command -v python3 >/dev/null || { echo "python3 is required" >&2; exit 1; }

if [ "$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("kosoku"))' 2>/dev/null)" != "$KOSOKU_VERSION" ]; then
  echo "installing kosoku==$KOSOKU_VERSION into $VENV (pip)" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "kosoku==$KOSOKU_VERSION" >&2
fi
export KOSOKU="$VENV/bin/kosoku"
mkdir -p "$HERE/results"
exec python3 "$HERE/autobahn.py" "$@"
