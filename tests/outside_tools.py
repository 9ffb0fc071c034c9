"""Find the outside tools the tests drive (DCMTK, dicom3tools), never a same-named venv script.

pynetdicom 3 installs its own ``echoscu``, ``storescu`` and ``storescp``
console scripts into the virtual environment's ``bin``. With the venv
activated they come first on PATH, and they take other options than DCMTK's:
every test and benchmark that means DCMTK would silently drive pynetdicom.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path


def which_outside_venv(name: str) -> str | None:
    """``shutil.which(name)`` over PATH without this interpreter's ``bin`` (then with it)."""
    venv_bin = Path(sys.prefix, "bin").resolve()
    outside = [
        entry
        for entry in os.environ.get("PATH", "").split(os.pathsep)
        if entry and Path(entry).resolve() != venv_bin
    ]
    return shutil.which(name, path=os.pathsep.join(outside)) or shutil.which(name)
