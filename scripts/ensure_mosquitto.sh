#!/usr/bin/env bash
# Makes sure Debian's Mosquitto broker is installed: the MQTT tests (tests/test_live_mqtt.py)
# start their own `mosquitto` on a free local port and look for it the same way (`mosquitto`
# on PATH, else /usr/sbin/mosquitto). Called by `make broker`, which `make test` runs first.
# As root it installs the package (without starting or enabling the system service);
# otherwise it says which command to run and fails.
set -euo pipefail

have_mosquitto() { command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ]; }

have_mosquitto && exit 0

if [ "$(id -u)" -eq 0 ]; then
  echo "mosquitto not found: installing Debian's mosquitto package (needed by the MQTT tests)"
  export DEBIAN_FRONTEND=noninteractive
  # the tests run their own broker: the package's service must neither start now nor at boot
  policy=/usr/sbin/policy-rc.d
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod +x "$policy"
    trap 'rm -f "$policy"' EXIT
  fi
  apt-get update -q
  apt-get install -y -q --no-install-recommends mosquitto
  if command -v systemctl >/dev/null 2>&1; then
    systemctl disable mosquitto.service >/dev/null 2>&1 || true
  fi
  if ! have_mosquitto; then
    echo "error: apt-get installed mosquitto but no mosquitto executable was found" >&2
    exit 1
  fi
  exit 0
fi

cat >&2 <<'MSG'
error: the MQTT tests need the Mosquitto broker, and no `mosquitto` is on PATH
or at /usr/sbin/mosquitto. Install it once with:

    sudo apt-get install -y --no-install-recommends mosquitto

then run `make test` again.
MSG
exit 1
