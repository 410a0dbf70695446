#!/usr/bin/env bash
# Installs the system packages Latch needs to build and test on Debian (bookworm).
# Idempotent: installs only what is missing. Run as root (CI is root), or with sudo.
# `--bench` also installs what `cargo xtask bench --peer` needs (`bench_packages`).
set -euo pipefail

# Build: diesel's PostgreSQL driver links libpq, built from source into the binary (pq-sys
# `bundled`: cc and the OpenSSL headers, no libpq-dev); openssl-sys uses pkg-config;
# samael (SAML) runs bindgen (libclang) over libxml2 and xmlsec1.
# Test: the xmlsec1 command signs SAML for the pysaml2 IdP peer; Debian's Chromium runs the
# admin UI's browser tests (driven by npm playwright-core, which never downloads a browser).
# The Dockerfile's build stage installs `build_packages` (a test checks it).
build_packages=(pkg-config libssl-dev libclang-dev libxml2-dev libxmlsec1-dev)
# g++: libfuzzer-sys builds libFuzzer for the fuzz targets, which `cargo xtask test` builds.
test_packages=(xmlsec1 chromium g++)
# wrk: the HTTP load generator `cargo xtask bench --peer` drives Latch and oidc-provider with.
bench_packages=(wrk)
packages=("${build_packages[@]}" "${test_packages[@]}")
for arg in "$@"; do
  case "$arg" in
    --bench) packages+=("${bench_packages[@]}") ;;
    *) echo "install-deps: unknown argument $arg (known: --bench)" >&2; exit 2 ;;
  esac
done

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]})); then
  echo "install-deps: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "install-deps: system packages present"
fi
