#!/usr/bin/env bash
# Makes sure Debian's Chromium is installed: the browser tests (tests/test_dashboard_browser.py)
# drive it through Playwright and look for it the same way (`chromium` on PATH, else
# /usr/bin/chromium). Called by `make browser`, which `make test` runs first.
# As root it installs the package; otherwise it says which command to run and fails.
set -euo pipefail

have_chromium() { command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ]; }

have_chromium && exit 0

if [ "$(id -u)" -eq 0 ]; then
  echo "chromium not found: installing Debian's chromium package (needed by the browser tests)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends chromium
  if ! have_chromium; then
    echo "error: apt-get installed chromium but no chromium executable is on PATH" >&2
    exit 1
  fi
  exit 0
fi

cat >&2 <<'MSG'
error: the browser tests need Chromium, and no `chromium` is on PATH.
Install it once with:

    sudo apt-get install -y chromium

then run `make test` again.
MSG
exit 1
