#!/usr/bin/env bash
# Installs the Debian packages the tests need, only when they are missing.
# Called by `make setup`; safe to run again. Needs root (or sudo) only if something is missing.
set -euo pipefail
# command -> Debian package
# Add an entry here when a test starts to need a system program (e.g. [mosquitto]=mosquitto).
declare -A NEED=(
  [systemd-analyze]=systemd
  [mosquitto]=mosquitto
  [Xvfb]=xvfb
  # the desk page's browser tests (tests/desk/test_web_browser.py): selenium drives
  # Debian's chromium through its chromedriver; nothing downloads a browser
  [chromium]=chromium
  [chromedriver]=chromium-driver
  # the shipped nginx site in front of the desk page (tests/desk/test_tls_proxy.py)
  [nginx]=nginx
  # the fleet tests' 3-node broker cluster (tests/sync/nats.py: JetStream + MQTT 3.1.1)
  [nats-server]=nats-server
  [openssl]=openssl
)
missing=()
for cmd in "${!NEED[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || missing+=("${NEED[$cmd]}")
done
# PostgreSQL for the desk service tests (tests/desk/ make a throwaway cluster with initdb);
# Debian keeps initdb off PATH, in /usr/lib/postgresql/<version>/bin.
if ! command -v initdb >/dev/null 2>&1 && ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
  missing+=(postgresql)
fi
# Libraries the Kivy touchscreen loads at start (multitouch input through mtdev).
dpkg -s libmtdev1 >/dev/null 2>&1 || missing+=(libmtdev1)
# A font with Cyrillic for the headless browser's pages and screenshots (docs/images/desk-*.png).
dpkg -s fonts-dejavu-core >/dev/null 2>&1 || missing+=(fonts-dejavu-core)
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing system packages: ${missing[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
