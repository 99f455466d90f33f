#!/bin/sh
# System packages the tests need (Debian): Chromium and its WebDriver for the web-page test of `imgclf serve`,
# and Chromium for the report.html screenshot test (tests/test_report.py).
# Installs only what is missing, and only when running as root (CI); otherwise it says what to install.
set -e
missing=""
command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
command -v chromedriver >/dev/null 2>&1 || missing="$missing chromium-driver"
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "Installing system packages:$missing"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing
else
    echo "Missing system packages:$missing (install them with: sudo apt-get install$missing); the browser test will be skipped." >&2
fi
