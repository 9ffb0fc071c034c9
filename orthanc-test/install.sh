#!/usr/bin/env bash
# Installs the viewer harness's npm parts into orthanc-test/.cache (gitignored), idempotently:
#   .cache/ohif/          the prebuilt OHIF viewer (dist/ of `npm pack @ohif/app@$OHIF_VERSION`)
#   .cache/node_modules/  playwright-core (drives Debian's /usr/bin/chromium; never downloads a browser)
# Debian packages (Orthanc + plugins, DCMTK, Chromium, iproute2) come from deploy/install-system-deps.sh.
set -euo pipefail
OHIF_VERSION="${OHIF_VERSION:-3.13.2}"
here="$(cd "$(dirname "$0")" && pwd)"
cache="$here/.cache"
mkdir -p "$cache"
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1

command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || {
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -q nodejs npm
}

# playwright-core 1.62+ needs Node 20; Debian 12's own nodejs is 18.
if [ -z "${PLAYWRIGHT_VERSION:-}" ]; then
  if [ "$(node -p 'process.versions.node.split(".")[0]')" -ge 20 ]; then PLAYWRIGHT_VERSION=1.65.1; else PLAYWRIGHT_VERSION=1.60.0; fi
fi

# OHIF: a marker file names the installed version, so a re-run is a no-op.
if [ "$(cat "$cache/ohif/.version" 2>/dev/null || true)" != "$OHIF_VERSION" ]; then
  work="$(mktemp -d "$cache/ohif-pack.XXXXXX")"
  trap 'rm -rf "$work"' EXIT
  (cd "$work" && npm pack --silent "@ohif/app@$OHIF_VERSION" >/dev/null)
  tar -xzf "$work"/ohif-app-*.tgz -C "$work" package/dist
  [ -f "$work/package/dist/index.html" ] || { echo "install.sh: no dist/index.html in @ohif/app@$OHIF_VERSION" >&2; exit 1; }
  rm -rf "$cache/ohif"
  mkdir -p "$cache/ohif"
  mv "$work/package/dist" "$cache/ohif/dist"
  echo "$OHIF_VERSION" > "$cache/ohif/.version"
  rm -rf "$work"
  trap - EXIT
fi

# playwright-core, pinned, installed as a private package in .cache.
if [ "$(node -p "try{require('$cache/node_modules/playwright-core/package.json').version}catch(e){''}" 2>/dev/null)" != "$PLAYWRIGHT_VERSION" ]; then
  [ -f "$cache/package.json" ] || echo '{"name":"hipnode-harness-cache","private":true}' > "$cache/package.json"
  (cd "$cache" && npm install --silent --no-audit --no-fund "playwright-core@$PLAYWRIGHT_VERSION" >/dev/null)
fi
echo "orthanc-test/install.sh: OHIF $OHIF_VERSION and playwright-core $PLAYWRIGHT_VERSION in $cache"
