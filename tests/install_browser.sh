#!/bin/sh
# Installs headless Chromium and its WebDriver (Debian's chromium + chromium-driver) for tests/test_app_browser.py.
# Idempotent: does nothing when both are there. Where they cannot be installed (not root, no apt-get, no network) it
# says why and exits 0: the browser test then skips with the same reason.
set -u
if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
    exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "install_browser.sh: cannot install chromium and chromium-driver here (needs root and apt-get); the browser test will skip" >&2
    exit 0
fi
echo "install_browser.sh: installing chromium and chromium-driver for the browser test" >&2
if ! { DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null &&
       DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; }; then
    echo "install_browser.sh: apt-get could not install chromium and chromium-driver; the browser test will skip" >&2
fi
exit 0
