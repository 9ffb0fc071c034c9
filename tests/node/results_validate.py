"""Run the outside DICOM validators on files and return their complaints.

dciodvfy / dcentvfy (dicom3tools) and pixelmed's DicomSRValidator are real
peers installed here and in CI; each function returns the ``Error`` lines and
the full output, so a test asserts "no errors" and shows why when it fails.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

PIXELMED_JAR = "/usr/share/java/pixelmed.jar"
PIXELMED_FLAGS = (
    # C1-only JIT and the serial GC: same verdicts, about 40% less CPU for a short run.
    "-XX:TieredStopAtLevel=1",
    "-XX:+UseSerialGC",
    "-Djdk.xml.xpathExprOpLimit=0",
    "-Djdk.xml.xpathExprGrpLimit=0",
    "-Djdk.xml.xpathTotalOpLimit=0",
)


@dataclass
class Verdict:
    """Errors (lines starting with ``Error``) and the whole output of one run."""

    errors: list[str]
    output: str


def require_tools() -> None:
    """Fail loudly (not skip) when a validator is missing: CI installs them."""
    missing = [t for t in ("dciodvfy", "dcentvfy", "java", "dsrdump") if shutil.which(t) is None]
    if not Path(PIXELMED_JAR).exists():
        missing.append(PIXELMED_JAR)
    if missing:
        raise RuntimeError(f"validators missing (deploy/install-system-deps.sh installs them): {missing}")


def _run(cmd: Sequence[str], timeout: float) -> str:
    proc = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, errors="replace")
    return proc.stdout + proc.stderr


def _errors(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("Error")]


def dciodvfy(path: Path) -> Verdict:
    """IOD check of one object."""
    out = _run(["dciodvfy", str(path)], 120)
    return Verdict(_errors(out), out)


def dcentvfy(paths: Sequence[Path]) -> Verdict:
    """Patient/study/series consistency across the objects of one study."""
    out = _run(["dcentvfy", *map(str, paths)], 120)
    return Verdict(_errors(out), out)


def pixelmed_sr_command(path: Path) -> list[str]:
    return ["java", *PIXELMED_FLAGS, "-cp", PIXELMED_JAR, "com.pixelmed.validate.DicomSRValidator", str(path)]


def pixelmed_sr_many(paths: Sequence[Path], timeout: float = 300) -> dict[Path, Verdict]:
    """Validate several SRs, one JVM each, run side by side (the JVM start dominates)."""
    procs = {
        p: subprocess.Popen(
            pixelmed_sr_command(p), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
        )
        for p in paths
    }
    verdicts = {}
    for p, proc in procs.items():
        out, _ = proc.communicate(timeout=timeout)
        if "Root Template Validation Complete" not in out:
            # The validator did not get through the tree: count that as an error.
            verdicts[p] = Verdict(["Error: pixelmed did not complete template validation"], out)
        else:
            verdicts[p] = Verdict(_errors(out), out)
    return verdicts


def dsrdump(path: Path) -> str:
    """DCMTK's text rendering of an SR tree (``-Ee``: no charset conversion, expand)."""
    return _run(["dsrdump", "-Ee", str(path)], 60)


CREATION_TIMES = frozenset({
    "ContentDate", "ContentTime", "InstanceCreationDate", "InstanceCreationTime",
    "ContributionDateTime", "DateOfSecondaryCapture", "TimeOfSecondaryCapture",
})
"""Attributes that record when an object was encoded: the only ones a re-run may change."""


def attributes_apart_from_times(ds, prefix: str = "") -> dict[str, object]:  # type: ignore[no-untyped-def]
    """Every attribute of ``ds`` (sequences flattened to ``Seq[i].Keyword``) except creation times."""
    out: dict[str, object] = {}
    for element in ds:
        if element.keyword in CREATION_TIMES:
            continue
        key = f"{prefix}{element.keyword or element.tag}"
        if element.VR == "SQ":
            for index, item in enumerate(element.value):
                out.update(attributes_apart_from_times(item, f"{key}[{index}]."))
        else:
            out[key] = element.value
    return out


def differing_attributes(first, second) -> list[str]:  # type: ignore[no-untyped-def]
    """Names of the attributes (creation times aside) in which two objects differ."""
    a, b = attributes_apart_from_times(first), attributes_apart_from_times(second)
    return sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
