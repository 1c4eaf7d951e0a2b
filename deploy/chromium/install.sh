#!/usr/bin/env bash
# Installs Debian's chromium for the viewer's browser tests (tests/LlavaMech.Viewer.Tests drive it headless through
# Microsoft.Playwright's ExecutablePath; no browser is ever downloaded by Playwright). Idempotent: fast when
# chromium is already on PATH. As root on Debian it installs the package with apt-get; otherwise it says what to run.
# Usage: bash deploy/chromium/install.sh
set -euo pipefail
say() { printf '[chromium] %s\n' "$*" >&2; }

if command -v chromium >/dev/null 2>&1; then
  say "$(chromium --version 2>/dev/null || echo chromium) already installed: $(command -v chromium)"
  exit 0
fi
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  say "installing Debian's chromium with apt-get (about a minute)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
  say "$(chromium --version 2>/dev/null) ready: $(command -v chromium)"
else
  say "ERROR: chromium is not on PATH; run as root: apt-get install chromium (or set LLAVAMECH_CHROMIUM=/path/to/chromium)"
  exit 1
fi
