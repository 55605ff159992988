#!/usr/bin/env bash
# Make sure a headless browser and its WebDriver are installed (Debian's chromium and
# chromium-driver, when run as root on Debian) and print the driver's path on stdout. The browser
# tests drive the incidents page with them through Selenium.
set -euo pipefail
packages=(chromium chromium-driver)
if ! command -v chromedriver >/dev/null || ! command -v chromium >/dev/null; then
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "ensure-chromium: chromium or chromedriver not found; install them (Debian: ${packages[*]})" >&2
    exit 1
  fi
  echo "installing Debian's ${packages[*]} ..." >&2
  install=(apt-get install -y -qq -o DPkg::Lock::Timeout=300 --no-install-recommends "${packages[@]}")
  DEBIAN_FRONTEND=noninteractive "${install[@]}" >&2 ||
    { apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive "${install[@]}" >&2; }
fi
command -v chromedriver
