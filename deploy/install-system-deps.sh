#!/usr/bin/env bash
# Debian packages the node's tests and harness use: DCMTK (storescu/echoscu/storescp),
# dicom3tools (dciodvfy/dcentvfy), pixelmed (SR validator), Orthanc + plugins, Chromium,
# PostgreSQL (catalogue-on-PostgreSQL test), openssl (TLS test certificates).
set -euo pipefail
pkgs=(dcmtk dicom3tools pixelmed-apps orthanc orthanc-dicomweb orthanc-python chromium iproute2 util-linux nodejs postgresql openssl)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -q "${missing[@]}"
fi
