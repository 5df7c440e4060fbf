#!/usr/bin/env bash
# The daemon and chat-server under requests meant to hurt them (see abuse.py and
# chat_abuse.py for the sections, the method and the targets).
#
#   L4CTL=/path/to/l4ctl bench/abuse.sh [--only SECTION] [other abuse.py flags]
#
# L4CTL defaults to target/release/l4ctl (l4ctl-daemon must be beside it); this script never
# builds it. No peers: only l4ctl is measured, against its own targets.
# Results: a table on stdout, raw numbers in bench/results/abuse-<timestamp>.json.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

need python3 "python3 is required"
mkdir -p "$HERE/results"

exec python3 "$HERE/abuse.py" "$@"
