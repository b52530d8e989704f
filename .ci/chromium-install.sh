#!/usr/bin/env bash
# Install Debian's Chromium and its WebDriver for tests/test_site_browser.py, if missing.
# Needs root (or sudo) and a Debian/Ubuntu apt; does nothing when both are already installed.
set -euo pipefail

if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
  echo "chromium and chromedriver already installed: $(chromium --version 2>/dev/null | head -n1)"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "chromium-install.sh: run as root (or install sudo) to apt-get install chromium chromium-driver" >&2
    exit 1
  fi
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "chromium-install.sh: no apt-get; install Chromium and a matching chromedriver another way" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq chromium chromium-driver >/dev/null
echo "installed: $(chromium --version 2>/dev/null | head -n1); $(chromedriver --version | head -n1)"
