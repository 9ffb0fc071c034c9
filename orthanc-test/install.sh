#!/usr/bin/env bash
# Installs the viewer harness's npm parts (OHIF dist, playwright-core) into orthanc-test/.cache.
# Filled in by the harness work (issue 7); a no-op until then.
set -euo pipefail
