#!/usr/bin/env bash
# Build layer4's release binaries and install them; optionally start the supervisor.
#
#   ./install.sh [--prefix DIR] [--start] [--env NAME]
#
#   --prefix DIR  install the binaries into DIR/bin, the man page into DIR/share/man/man1 and
#                 bash completions into DIR/share/bash-completion/completions
#                 (default DIR: /usr/local as root, else ~/.local)
#   --start       then run `l4ctl start config/layer4.toml` (the main job)
#   --env NAME    with --start: use each app's [apps.env_NAME] table
#
# Idempotent: running it again rebuilds what changed and replaces the binaries.
# Honours CARGO_TARGET_DIR (where cargo builds).
# Every step is printed; any failure stops the script with a message.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if [ "$(id -u)" -eq 0 ]; then PREFIX=/usr/local; else PREFIX="$HOME/.local"; fi
START=0
ENV_NAME=""

die() { echo "install.sh: error: $*" >&2; exit 1; }
step() { echo "==> $*"; }

while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) [ $# -ge 2 ] || die "--prefix needs a folder"; PREFIX=$2; shift 2 ;;
    --prefix=*) PREFIX=${1#--prefix=}; shift ;;
    --start) START=1; shift ;;
    --env) [ $# -ge 2 ] || die "--env needs a name"; ENV_NAME=$2; shift 2 ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done

command -v cargo >/dev/null || die "cargo not found: install the Rust toolchain (https://rustup.rs)"
BIN="$PREFIX/bin"
TARGET=${CARGO_TARGET_DIR:-target}
case "$TARGET" in /*) ;; *) TARGET="$ROOT/$TARGET" ;; esac

step "building release binaries (cargo build --release --locked)"
(cd "$ROOT" && cargo build --release --locked --bins) || die "cargo build failed"

step "installing into $BIN"
mkdir -p "$BIN" || die "cannot create $BIN"
for name in l4ctl l4ctl-daemon l4ctl-send chat-server l4chat l4load; do
  src="$TARGET/release/$name"
  [ -x "$src" ] || die "$src was not built"
  install -m 0755 "$src" "$BIN/$name.new" && mv -f "$BIN/$name.new" "$BIN/$name" || die "cannot install $name"
  echo "    $BIN/$name"
done
MAN="$PREFIX/share/man/man1"
COMPLETIONS="$PREFIX/share/bash-completion/completions"
mkdir -p "$MAN" "$COMPLETIONS" || die "cannot create $MAN or $COMPLETIONS"
"$BIN/l4ctl" man > "$MAN/l4ctl.1.new" && mv -f "$MAN/l4ctl.1.new" "$MAN/l4ctl.1" || die "cannot install the man page"
echo "    $MAN/l4ctl.1"
"$BIN/l4ctl" completions bash > "$COMPLETIONS/l4ctl.new" && mv -f "$COMPLETIONS/l4ctl.new" "$COMPLETIONS/l4ctl" || die "cannot install the completions"
echo "    $COMPLETIONS/l4ctl"
mkdir -p "$ROOT/logs" "$ROOT/run"   # run/nginx: where `l4ctl nginx render` writes by default

case ":$PATH:" in
  *":$BIN:"*) ;;
  *) echo "    note: $BIN is not on your PATH; add it, e.g. export PATH=\"$BIN:\$PATH\"" ;;
esac

if [ "$START" -eq 1 ]; then
  step "starting the supervisor with config/layer4.toml"
  # The daemon inherits this PATH, so apps named by program (chat-server) are found.
  export PATH="$BIN:$PATH"
  args=(start "$ROOT/config/layer4.toml")
  [ -n "$ENV_NAME" ] && args+=(--env "$ENV_NAME")
  "$BIN/l4ctl" "${args[@]}" || die "l4ctl start failed (see the table above, and 'l4ctl describe APP')"
  echo "    status: $BIN/l4ctl status   (from any folder: one daemon per user, in ~/.layer4)"
fi
step "done"
