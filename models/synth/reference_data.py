"""Where the bundled pelvic-ref label maps live.

The three MIT-licensed label maps of real pelvic CT anatomy (see
``pelvic_ref/README.md`` and ``pelvic_ref/LICENSE``) ship inside the package,
so the generator, its tests and CI work from a clean checkout. They are a copy
of the team's ``shared/data/pelvic-ref``; any other map of the same format can
be given by path (``hipnode synth --labels PATH``).
"""

from __future__ import annotations

from pathlib import Path

PELVIC_REF_DIR = Path(__file__).resolve().parent / "pelvic_ref"
ANATOMIES: tuple[str, ...] = ("Pelvic-Ref-001", "Pelvic-Ref-002", "Pelvic-Ref-004")


def label_map(anatomy: str) -> Path:
    """The ``label.mhd`` of one bundled anatomy, e.g. ``label_map("Pelvic-Ref-004")``."""
    if anatomy not in ANATOMIES:
        raise ValueError(f"unknown bundled anatomy {anatomy!r}; choose one of {', '.join(ANATOMIES)}")
    return PELVIC_REF_DIR / anatomy / "label.mhd"


def label_maps() -> list[Path]:
    """Every bundled ``label.mhd``, in name order."""
    return [label_map(name) for name in ANATOMIES]
