#!/usr/bin/env bash
# Headless Chromium and its WebDriver for tests/browser (Debian packages; Playwright's browser
# download needs internet this project's CI does not have). Safe to run again: it does nothing
# when both are already installed.
set -euo pipefail
if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
    echo "chromium and chromedriver already installed: $(chromium --version)"
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update
$SUDO apt-get install -y chromium chromium-driver
chromium --version
chromedriver --version
