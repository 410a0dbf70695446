#!/usr/bin/env bash
# Installs the real protocol peers the end-to-end tests drive (npm packages under peers/).
set -euo pipefail
cd "$(dirname "$0")/../peers"
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "install-peers: node and npm are required (Debian: apt-get install nodejs npm)" >&2
  exit 1
fi
if [ -f package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
else
  npm install --no-audit --no-fund --loglevel=error
fi
echo "install-peers: $(node -e "console.log('openid-client', require('./node_modules/openid-client/package.json').version)")"
