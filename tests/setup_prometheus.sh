#!/bin/sh
# Install Debian's prometheus server for the Prometheus scrape test, if missing.
# The package's service is not started in this environment: the test starts its own server on a
# free loopback port with a small config file that scrapes the run's /metrics. Quiet and idempotent.
set -e
if command -v prometheus >/dev/null 2>&1 || [ -x /usr/bin/prometheus ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO="sudo -n"
    else
        echo "setup_prometheus.sh: prometheus is not installed and this user cannot install it (not root);" \
             "the Prometheus scrape test will be skipped" >&2
        exit 0
    fi
else
    SUDO=""
fi
export DEBIAN_FRONTEND=noninteractive
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# --no-install-recommends: the server alone (no node exporter, no web assets beyond the package)
if ! { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends prometheus; } >"$log" 2>&1; then
    cat "$log" >&2
    echo "setup_prometheus.sh: could not install prometheus" >&2
    exit 1
fi
