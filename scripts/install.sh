#!/usr/bin/env bash
# Install kiosk-agent into a venv under PREFIX, with its units, config example and
# firmware profiles.   Usage: scripts/install.sh [--units-only] [PREFIX] [CONFIG]
#   PREFIX  default /opt/kiosk-agent        CONFIG  default /etc/kiosk/kiosk.toml
# It never overwrites an existing CONFIG. To enable on a terminal afterwards:
#   useradd --system --groups dialout kiosk
#   cp PREFIX/systemd/*.service /etc/systemd/system/ && systemctl daemon-reload
#   systemctl enable --now kiosk-agent kiosk-ui
set -euo pipefail
units_only=0
if [ "${1:-}" = "--units-only" ]; then units_only=1; shift; fi
PREFIX=$(realpath -m "${1:-/opt/kiosk-agent}")
CONFIG=$(realpath -m "${2:-/etc/kiosk/kiosk.toml}")
SRC=$(cd "$(dirname "$0")/.." && pwd)

render() {  # template -> destination, with @PREFIX@ and @CONFIG@ replaced
  sed -e "s#@PREFIX@#${PREFIX}#g" -e "s#@CONFIG@#${CONFIG}#g" "$1" > "$2"
}

install -d "$PREFIX/systemd"
for unit in kiosk-agent.service kiosk-ui.service; do
  render "$SRC/systemd/$unit" "$PREFIX/systemd/$unit"
done
install -m 0644 "$SRC/systemd/kiosk.tmpfiles.conf" "$PREFIX/systemd/kiosk.conf"
install -m 0644 "$SRC/systemd/99-kiosk-serial.rules" "$PREFIX/systemd/99-kiosk-serial.rules"
[ "$units_only" -eq 1 ] && exit 0

python3 -m venv "$PREFIX/venv"
"$PREFIX/venv/bin/pip" install -q --upgrade pip
# constraints.txt pins every dependency to the versions the tests passed with (make constraints).
"$PREFIX/venv/bin/pip" install -q -c "$SRC/constraints.txt" "$SRC${KIOSK_EXTRAS:+[$KIOSK_EXTRAS]}"
install -d "$PREFIX/share/doc"
install -m 0644 "$SRC"/docs/*.md "$PREFIX/share/doc/"
install -d "$PREFIX/share/doc/protocols"
install -m 0644 "$SRC"/docs/protocols/*.md "$PREFIX/share/doc/protocols/"
install -d "$(dirname "$CONFIG")"
install -m 0644 "$SRC/config.example.toml" "$(dirname "$CONFIG")/kiosk.toml.example"
if [ ! -e "$CONFIG" ]; then
  install -m 0640 "$SRC/config.example.toml" "$CONFIG"
  echo "wrote $CONFIG from the example: edit it (terminal id, ports, PIN hash) before starting"
fi
echo "installed kiosk-agent in $PREFIX (units in $PREFIX/systemd)"
