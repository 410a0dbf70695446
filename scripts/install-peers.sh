#!/usr/bin/env bash
# Installs the real protocol peers the end-to-end tests drive:
#   - npm packages under peers/ (openid-client, oidc-provider);
#   - a Python venv at peers/.venv with peers/requirements.txt (pysaml2, for peers/saml_idp.py;
#     schemathesis, whose `st` checks the management API against its OpenAPI document;
#     scim2-tester and scim2-cli, the SCIM compliance checker peers/scim_check.py runs).
# Idempotent; the Python part skips pip when peers/.venv/.requirements.sha256 matches.
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

# --- Python peers (pysaml2 SAML IdP, schemathesis, scim2-tester) ---
if ! command -v xmlsec1 >/dev/null; then
  echo "install-peers: the xmlsec1 command is required by pysaml2 (run scripts/install-deps.sh, or apt-get install xmlsec1)" >&2
  exit 1
fi
PYTHON="${PYTHON:-python3}"
if ! command -v "$PYTHON" >/dev/null; then
  echo "install-peers: python3 (with the venv module) is required" >&2
  exit 1
fi
venv=.venv
stamp="$venv/.requirements.sha256"
want="$( (sha256sum requirements.txt; "$PYTHON" -c 'import sys; print(sys.version)') | sha256sum | cut -d' ' -f1)"
if [ ! -x "$venv/bin/python" ] || [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  rm -rf "$venv"
  "$PYTHON" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input -r requirements.txt
  echo "$want" > "$stamp"
fi
echo "install-peers: $("$venv/bin/python" -c 'from importlib.metadata import version; print("pysaml2", version("pysaml2"), "schemathesis", version("schemathesis"), "scim2-tester", version("scim2-tester"), "scim2-cli", version("scim2-cli"))')"
# The SCIM checker runs (imports, and its CLI answers).
"$venv/bin/python" -c 'import scim2_tester, scim2_client.engines.httpx2, httpx2' \
  || { echo "install-peers: scim2-tester does not import" >&2; exit 1; }
"$venv/bin/scim" test --help >/dev/null \
  || { echo "install-peers: the scim2-cli command does not run" >&2; exit 1; }
