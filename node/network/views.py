"""Which stored image counts as the study's "expected view".

One pure rule, shared by the C-STORE handler and the completion service: an AP
(or PA) projection radiograph of the pelvis or hip. An empty ViewPosition is
accepted because many DX/CR devices leave it blank on AP pelvis films.
"""

from __future__ import annotations

EXPECTED_MODALITIES = frozenset({"DX", "CR"})
EXPECTED_BODY_PARTS = frozenset({"PELVIS", "HIP"})
EXPECTED_VIEW_POSITIONS = frozenset({"AP", "PA", ""})


def is_expected_view(
    modality: str | None, body_part_examined: str | None, view_position: str | None
) -> bool:
    """True for a DX/CR image of the pelvis or hip taken AP/PA (or with no view position).

    >>> is_expected_view("DX", "PELVIS", "AP")
    True
    >>> is_expected_view("CR", "hip", None)
    True
    >>> is_expected_view("DX", "PELVIS", "LL")
    False
    >>> is_expected_view("SR", "PELVIS", "AP")
    False
    """
    modality_n = (modality or "").strip().upper()
    body_part_n = (body_part_examined or "").strip().upper()
    view_n = (view_position or "").strip().upper()
    return (
        modality_n in EXPECTED_MODALITIES
        and body_part_n in EXPECTED_BODY_PARTS
        and view_n in EXPECTED_VIEW_POSITIONS
    )
