#!/usr/bin/env bash
# Installs what the browser and infra tests use, where this machine allows it.
# Tests that need a missing tool skip with a reason; CI (root, Debian) gets them all.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing chromium and chromium-driver (Debian packages) for the browser tests"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
  else
    echo "note: chromium not installed and not root; the browser tests will skip"
  fi
fi

if command -v npm >/dev/null; then
  if [ ! -x infra/node_modules/.bin/osls ] && [ -f infra/package.json ]; then
    echo "installing the osls packager (npm) for the infra tests"
    npm ci --prefix infra --no-audit --no-fund --loglevel=error
  fi
else
  echo "note: npm not installed; the serverless packaging test will skip"
fi
