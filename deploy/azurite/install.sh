#!/usr/bin/env bash
# Installs Azurite (the Azure Storage emulator, version pinned in package.json) into deploy/azurite/node_modules for
# the LlavaMech.Storage tests, whose fixture starts its blob service on free loopback ports. Idempotent: fast when
# that version is already there. Needs Node.js (18+; 22+ avoids an engine warning) and npm; as root on Debian it
# installs them when missing. Usage: bash deploy/azurite/install.sh
set -euo pipefail
cd "$(dirname "$0")"
say() { printf '[azurite] %s\n' "$*" >&2; }

want=$(sed -n 's/.*"azurite": *"\([^"]*\)".*/\1/p' package.json)
if [ -x node_modules/.bin/azurite-blob ] && command -v node >/dev/null 2>&1; then
  have=$(node -p 'require("./node_modules/azurite/package.json").version' 2>/dev/null || true)
  if [ "$have" = "$want" ]; then
    say "azurite $have already installed in $(pwd)/node_modules"
    exit 0
  fi
fi

if ! command -v npm >/dev/null 2>&1; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing nodejs and npm with apt-get"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
  else
    say "ERROR: npm is not on PATH; install Node.js and npm, then run again"
    exit 1
  fi
fi

say "installing azurite $want into $(pwd)/node_modules (about a minute)"
npm install --no-audit --no-fund --package-lock=false --loglevel=error
node_modules/.bin/azurite-blob --version >/dev/null
say "azurite $(node -p 'require("./node_modules/azurite/package.json").version') ready: $(pwd)/node_modules/.bin/azurite-blob"
