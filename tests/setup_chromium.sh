#!/bin/sh
# Install Debian's chromium for the report test (tests/test_report.py renders report.html headless
# and checks the page logs no console error), if missing. Quiet and idempotent: exits 0 at once when
# /usr/bin/chromium is there. Without root (and without password-less sudo) it says so and exits 0;
# the browser test then skips with that reason.
set -e
if [ -x /usr/bin/chromium ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO="sudo -n"
    else
        echo "setup_chromium.sh: chromium is not installed and this user cannot install it (not root);" \
             "the headless report test will be skipped" >&2
        exit 0
    fi
else
    SUDO=""
fi
export DEBIAN_FRONTEND=noninteractive
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends chromium; } >"$log" 2>&1; then
    cat "$log" >&2
    echo "setup_chromium.sh: could not install chromium" >&2
    exit 1
fi
