"""Completeness checks on received objects, from a table of damaged files."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from pydicom.uid import RLELossless

from node.network.status import StoreStatus
from node.network.validate import InvalidObject, check_object
from node.network.views import is_expected_view
from tests.factories import make_dx, write_dx


def _write(ds: pydicom.Dataset, path: Path) -> Path:
    ds.save_as(path, enforce_file_format=True)
    return path


def test_complete_native_and_encapsulated(tmp_path: Path) -> None:
    native = check_object(write_dx(tmp_path / "a.dcm", rows=16, columns=16))
    assert (
        native.pixel_data is not None
        and native.pixel_data.length == 512
        and not native.pixel_data.encapsulated
    )
    ds = make_dx(rows=16, columns=16)
    ds.compress(RLELossless)
    encapsulated = check_object(_write(ds, tmp_path / "rle.dcm"))
    assert encapsulated.pixel_data is not None and encapsulated.pixel_data.encapsulated
    assert encapsulated.pixel_data.fragments == 1


def _damaged(tmp_path: Path, kind: str) -> Path:
    path = write_dx(tmp_path / "x.dcm", rows=16, columns=16)
    data = path.read_bytes()
    if kind == "short_pixels":  # header says 16x16x2 bytes, element length matches only half
        ds = make_dx(rows=16, columns=16)
        ds.PixelData = ds.PixelData[:256]
        return _write(ds, path)
    if kind == "cut_in_pixels":
        path.write_bytes(data[:-10])
    elif kind == "no_pixels":
        ds = make_dx(rows=16, columns=16)
        del ds.PixelData
        return _write(ds, path)
    elif kind == "garbage":
        path.write_bytes(b"\x00" * 128 + b"NOPE" + b"\x01" * 50)
    elif kind == "encapsulated_without_delimiter":
        ds = make_dx(rows=16, columns=16)
        ds.compress(RLELossless)
        _write(ds, path)
        path.write_bytes(path.read_bytes()[:-8])  # drop the sequence delimiter
    return path


@pytest.mark.parametrize(
    "kind",
    ["short_pixels", "cut_in_pixels", "no_pixels", "garbage", "encapsulated_without_delimiter"],
)
def test_damaged_objects_are_c000(tmp_path: Path, kind: str) -> None:
    with pytest.raises(InvalidObject) as info:
        check_object(_damaged(tmp_path, kind))
    assert info.value.status == StoreStatus.CANNOT_UNDERSTAND


def test_identity_mismatch_and_missing_uids_are_a900(tmp_path: Path) -> None:
    path = write_dx(tmp_path / "a.dcm", rows=8, columns=8)
    ds = pydicom.dcmread(path)
    with pytest.raises(InvalidObject) as info:
        check_object(path, sop_class_uid=ds.SOPClassUID, sop_instance_uid="1.2.3")
    assert info.value.status == StoreStatus.DATASET_MISMATCH
    with pytest.raises(InvalidObject) as info:
        check_object(
            path, sop_class_uid="1.2.840.10008.5.1.4.1.1.1", sop_instance_uid=ds.SOPInstanceUID
        )
    assert info.value.status == StoreStatus.DATASET_MISMATCH
    del ds.StudyInstanceUID
    _write(ds, path)
    with pytest.raises(InvalidObject) as info:
        check_object(path)
    assert (
        info.value.status == StoreStatus.DATASET_MISMATCH
        and "StudyInstanceUID" in info.value.reason
    )


@pytest.mark.parametrize(
    ("modality", "body_part", "view", "expected"),
    [
        ("DX", "PELVIS", "AP", True),
        ("CR", "HIP", "PA", True),
        ("DX", "PELVIS", "", True),
        ("DX", "PELVIS", None, True),
        ("dx", " pelvis ", "ap", True),
        ("DX", "PELVIS", "LAT", False),
        ("DX", "CHEST", "AP", False),
        ("DX", None, "AP", False),
        ("SEG", "PELVIS", "AP", False),
        ("SR", "HIP", "", False),
    ],
)
def test_expected_view_rule(
    modality: str, body_part: str | None, view: str | None, expected: bool
) -> None:
    assert is_expected_view(modality, body_part, view) is expected
