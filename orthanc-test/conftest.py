"""Fixtures of the Orthanc + OHIF harness suite (``pytest -m harness``; part of ``make test``).

The receiver that Orthanc routes hip studies to is chosen in one place:
``RECEIVER`` below (or ``HIPNODE_HARNESS_RECEIVER``). ``"node"`` (the default)
runs ``python -m node serve`` and waits for its own results; ``"storescp"`` is
DCMTK's storescp standing in for the node, with the test sending results back
as the node would (quicker, and independent of the model weights).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
for _path in (HERE, HERE.parent):  # the harness package, and the project (node.results for the encoders)
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from harness.pair import SyntheticPair, make_pair  # noqa: E402
from harness.stack import CACHE_DIR, OHIF_DIST, REPO_ROOT  # noqa: E402

# "node" (the real pipeline) or "storescp" (stand-in).
RECEIVER = os.environ.get("HIPNODE_HARNESS_RECEIVER", "node")
if RECEIVER not in ("storescp", "node"):
    raise RuntimeError(f"HIPNODE_HARNESS_RECEIVER must be 'storescp' or 'node', not {RECEIVER!r}")
REQUIRED_TOOLS = ["/usr/sbin/Orthanc", "storescu", "storescp", "echoscu", "nsenter", "unshare", "ip",
                  "/usr/bin/chromium", "node"]


def _missing_tools() -> list[str]:
    return [t for t in REQUIRED_TOOLS if shutil.which(t) is None]


def _npm_parts_missing() -> bool:
    return not (OHIF_DIST / "index.html").is_file() or not (
        CACHE_DIR / "node_modules" / "playwright-core" / "package.json").is_file()


@pytest.fixture(scope="session")
def harness_installed() -> None:
    """Install what is missing (Debian packages, npm parts) instead of skipping; fail if that fails."""
    if _missing_tools():
        subprocess.run([str(REPO_ROOT / "deploy" / "install-system-deps.sh")], check=True)
    if _npm_parts_missing():
        subprocess.run([str(HERE / "install.sh")], check=True)
    still = _missing_tools() + (["OHIF dist / playwright-core"] if _npm_parts_missing() else [])
    if still:
        pytest.fail(f"harness tools missing after installing: {still}")
    if os.geteuid() != 0:
        pytest.fail("the harness needs root (or CAP_SYS_ADMIN) for its private network namespace")


@pytest.fixture
def artifacts_dir(request: pytest.FixtureRequest) -> Path:
    """``artifacts/harness/<test>/``: screenshots and Orthanc/receiver logs, kept after the run."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
    path = REPO_ROOT / "artifacts" / "harness" / name
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


@pytest.fixture(scope="session")
def receiver() -> str:
    """Where Orthanc routes hip studies in the end-to-end tests: ``"storescp"`` or ``"node"``."""
    return RECEIVER


@pytest.fixture
def synthetic_pair(tmp_path: Path) -> SyntheticPair:
    return make_pair(tmp_path / "pair")
