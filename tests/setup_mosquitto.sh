#!/bin/sh
# Install Debian's mosquitto broker (and mosquitto_passwd) for the MQTT tests, if missing.
# The package does not start a service in this environment: the tests start their own broker
# on a free loopback port with a small config file. Quiet and idempotent.
set -e
if command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO="sudo -n"
    else
        echo "setup_mosquitto.sh: mosquitto is not installed and this user cannot install it (not root);" \
             "the mosquitto tests will be skipped" >&2
        exit 0
    fi
else
    SUDO=""
fi
export DEBIAN_FRONTEND=noninteractive
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq mosquitto; } >"$log" 2>&1; then
    cat "$log" >&2
    echo "setup_mosquitto.sh: could not install mosquitto" >&2
    exit 1
fi
