#!/bin/sh
# Install the Debian packages the test suite runs for real, those that are missing:
#   mosquitto   the MQTT broker (tests start their own on a free loopback port; the package's service
#               is not started here), with mosquitto_passwd
#   prometheus  the server the Prometheus test starts to scrape a run's /metrics
#   chromium    the headless browser the report test renders report.html in
# One `apt-get update` for all of them. Quiet and idempotent: exits 0 at once when every binary is
# there. Without root (and without password-less sudo) it names what is missing and exits 0; the tests
# that need it then skip with that reason.
# Usage: sh tests/setup_debian.sh [package ...]   (default: all three)
set -e
[ $# -gt 0 ] || set -- mosquitto prometheus chromium
missing=""
for pkg in "$@"; do
    case "$pkg" in
        mosquitto) bins="mosquitto /usr/sbin/mosquitto" ;;
        *) bins="$pkg /usr/bin/$pkg" ;;
    esac
    found=""
    for b in $bins; do
        if command -v "$b" >/dev/null 2>&1 || [ -x "$b" ]; then found=1; fi
    done
    [ -n "$found" ] || missing="$missing $pkg"
done
[ -n "$missing" ] || exit 0
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO="sudo -n"
    else
        echo "setup_debian.sh:$missing not installed and this user cannot install them (not root);" \
             "the tests that need them will be skipped" >&2
        exit 0
    fi
else
    SUDO=""
fi
export DEBIAN_FRONTEND=noninteractive
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# --no-install-recommends: the programs alone (no node exporter, no desktop extras)
# shellcheck disable=SC2086 # $missing is a list of package names
if ! { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends $missing; } >"$log" 2>&1; then
    cat "$log" >&2
    echo "setup_debian.sh: could not install$missing" >&2
    exit 1
fi
