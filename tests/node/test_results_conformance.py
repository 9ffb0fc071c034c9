"""All results of a pre/post pair together: validators per object and per study, idempotency."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest

from models.algorithms.results import PairAlignment
from node.results import encode_image_results, encode_pair_results, result_kind
from tests.node.results_sources import make_alignment, make_analysis, make_cdm, make_dx
from tests.node.results_validate import dcentvfy, dciodvfy, differing_attributes, require_tools

DELTAS = {
    "delta_leg_length_discrepancy": 0.75,
    "delta_femoral_offset_left": 2.5,
    "delta_hip_centre_height_left": -1.0,
    "delta_hip_centre_lateral_left": 1.25,
}


def _encode_all(pre_uid: str | None = None, post_uid: str | None = None):
    pre = make_dx(study_date="20240105", seed=1, sop_uid=pre_uid)  # ISO_IR 192
    post = make_dx(charset="ISO_IR 100", with_pixel_spacing=True, study_date="20240610", seed=2, sop_uid=post_uid)
    pre_a, post_a = make_analysis(), make_analysis(post_op=True, shift=1.0)
    pre_results = encode_image_results(pre, pre_a)
    post_results = encode_image_results(post, post_a)
    pair_results = encode_pair_results(pre, post, pre_a, post_a, make_alignment(), make_cdm(), DELTAS)
    return pre, post, pre_results, post_results, pair_results


@pytest.fixture(scope="module")
def study_files(tmp_path_factory: pytest.TempPathFactory):
    pre, post, pre_results, post_results, pair_results = _encode_all()
    root = tmp_path_factory.mktemp("studies")
    files: dict[str, list[Path]] = {"pre": [], "post": []}
    for label, source, results in (("pre", pre, pre_results), ("post", post, post_results + pair_results)):
        source_path = root / f"{label}_source.dcm"
        source.save_as(source_path, enforce_file_format=True)
        files[label].append(source_path)
        for ds in results:
            path = root / f"{label}_{result_kind(ds)}.dcm"
            ds.save_as(path, enforce_file_format=True)
            files[label].append(path)
    return pre, post, files


def test_kinds_and_series(study_files) -> None:
    pre, post, files = study_files
    kinds = sorted(p.stem.split("_", 1)[1] for p in files["post"][1:])
    assert kinds == ["cdm_sc", "overlay_sc", "seg", "sr", "sr_pair"]
    series = {}
    for path in files["pre"][1:] + files["post"][1:]:
        ds = pydicom.dcmread(path)
        assert ds.SeriesDescription.startswith("HipNode AI")
        series.setdefault(ds.SeriesInstanceUID, set()).add((int(ds.SeriesNumber), ds.SeriesDescription))
        expected_study = pre.StudyInstanceUID if path in files["pre"] else post.StudyInstanceUID
        assert ds.StudyInstanceUID == expected_study
        assert ds.SeriesInstanceUID not in (pre.SeriesInstanceUID, post.SeriesInstanceUID)
    assert all(len(v) == 1 for v in series.values())  # one number/description per series
    assert len(series) == 7  # 2 studies x (SEG, SR) + pair SR, map, overlay


def test_every_object_passes_dciodvfy(study_files) -> None:
    require_tools()
    _, _, files = study_files
    for path in files["pre"] + files["post"]:
        verdict = dciodvfy(path)
        assert verdict.errors == [], f"{path.name}:\n{verdict.output}"


def test_each_study_is_consistent(study_files) -> None:
    require_tools()
    _, _, files = study_files
    for label in ("pre", "post"):
        verdict = dcentvfy(files[label])
        assert verdict.errors == [], f"{label}:\n{verdict.output}"


def test_character_set_carried_through_bytes(study_files) -> None:
    _, _, files = study_files
    for label, charset, raw in (("pre", "ISO_IR 192", b"M\xc3\xbcller"), ("post", "ISO_IR 100", b"M\xfcller")):
        for path in files[label]:
            data = path.read_bytes()
            ds = pydicom.dcmread(path)
            assert ds.SpecificCharacterSet == charset, path.name
            assert raw in data, path.name
            assert str(ds.PatientName) == "Müller^Jürgen"


def test_re_encoding_is_idempotent() -> None:
    def uids(pre_uid: str, post_uid: str) -> list[str]:
        return [ds.SOPInstanceUID for group in _encode_all(pre_uid, post_uid)[2:] for ds in group]

    first = uids("1.2.3.4.1", "1.2.3.5.1")
    assert len(set(first)) == len(first) == 7
    assert uids("1.2.3.4.1", "1.2.3.5.1") == first  # same inputs and models: same objects
    assert set(uids("1.2.3.4.2", "1.2.3.5.1")).isdisjoint(first[:2])  # another pre image: new pre results


def test_pair_without_alignment_has_no_map(study_files, tmp_path: Path) -> None:
    pre, post, _ = study_files
    failed = PairAlignment(homography=None, method="weighted", matcher="orb", failure="too few inliers")
    results = encode_pair_results(pre, post, make_analysis(), make_analysis(post_op=True), failed, None, {})
    assert [result_kind(ds) for ds in results] == ["sr_pair", "overlay_sc"]
    path = tmp_path / "sr.dcm"
    results[0].save_as(path, enforce_file_format=True)
    require_tools()
    assert dciodvfy(path).errors == []


def test_not_analysable_is_refused() -> None:
    analysis = make_analysis()
    analysis.not_analysable = "lateral view"
    with pytest.raises(ValueError, match="lateral view"):
        encode_image_results(make_dx(), analysis)


def test_source_without_character_set() -> None:
    source = make_dx(patient_name="Doe^Jane")
    del source.SpecificCharacterSet
    for ds in encode_image_results(source, make_analysis()):
        assert "SpecificCharacterSet" not in ds


def test_sparse_compressed_monochrome1_source(tmp_path: Path) -> None:
    """Type 2 attributes absent, RLE-compressed MONOCHROME1 pixels: still valid results."""
    from pydicom.uid import RLELossless

    source = make_dx()
    for keyword in ("PatientBirthDate", "PatientSex", "AccessionNumber", "StudyID", "StudyTime",
                    "ReferringPhysicianName"):
        delattr(source, keyword)
    source.PhotometricInterpretation = "MONOCHROME1"
    source.compress(RLELossless)
    results = encode_image_results(source, make_analysis(), overlay=True)
    assert [result_kind(ds) for ds in results] == ["seg", "sr", "overlay_sc"]
    require_tools()
    for ds in results:
        path = tmp_path / f"{result_kind(ds)}.dcm"
        ds.save_as(path, enforce_file_format=True)
        verdict = dciodvfy(path)
        assert verdict.errors == [], f"{path.name}:\n{verdict.output}"
        assert pydicom.dcmread(path).PatientID == source.PatientID
    assert "PatientSex" not in source  # the caller's dataset is left alone


def test_real_colour_difference_map_and_deltas_encode(tmp_path: Path) -> None:
    """The align stage's CDM and the deltas module's output go straight into the encoders."""
    from models.algorithms.deltas import pre_post_deltas
    from models.align.cdm import colour_difference_map
    from node.imaging import radiograph_from_dataset

    pre, post = make_dx(seed=1), make_dx(seed=2, charset="ISO_IR 100")
    pre_a, post_a = make_analysis(), make_analysis(post_op=True, shift=1.5)
    alignment = make_alignment()
    pre_px, post_px = radiograph_from_dataset(pre).pixels, radiograph_from_dataset(post).pixels
    cdm = colour_difference_map(pre_px, post_px, alignment.homography)
    deltas = pre_post_deltas(pre_a.landmarks, post_a.landmarks, alignment.homography, pre_a.pixel_spacing_mm,
                             post_a.pixel_spacing_mm)
    results = encode_pair_results(
        pre, post, pre_a, post_a, alignment, cdm, deltas, pre_pixels=pre_px, post_pixels=post_px
    )
    assert [result_kind(ds) for ds in results] == ["sr_pair", "cdm_sc", "overlay_sc"]
    assert (results[1].pixel_array == cdm).all()
    require_tools()
    for ds in results:
        path = tmp_path / f"{result_kind(ds)}.dcm"
        ds.save_as(path, enforce_file_format=True)
        assert dciodvfy(path).errors == [], path.name


def test_re_encoding_gives_identical_objects() -> None:
    """Idempotent results: the same inputs and models give the same objects, attribute
    for attribute (creation times aside), so a re-run never sends a conflicting copy."""
    pre = make_dx(study_date="20240105", seed=1)
    post = make_dx(charset="ISO_IR 100", with_pixel_spacing=True, study_date="20240610", seed=2)
    pre_a, post_a = make_analysis(), make_analysis(post_op=True, shift=1.0)

    def encode() -> list:  # type: ignore[type-arg]
        return [
            *encode_image_results(pre, pre_a),
            *encode_image_results(post, post_a),
            *encode_pair_results(pre, post, pre_a, post_a, make_alignment(), make_cdm(), DELTAS),
        ]

    objects_first, objects_second = encode(), encode()
    assert len(objects_first) == len(objects_second) >= 5
    for a, b in zip(objects_first, objects_second):
        assert differing_attributes(a, b) == [], a.SOPClassUID.name
