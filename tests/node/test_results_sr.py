"""TID 1500 SR encoders: round trip of every landmark and measurement, references, validators."""

from __future__ import annotations

import re

import highdicom as hd
import pydicom
import pytest

from models.algorithms.vocabulary import DELTA_MEASUREMENTS, LANDMARKS, MEASUREMENTS
from node.results import EncodingError, encode_image_sr, encode_pair_sr, encode_seg
from node.results.codes import LOCAL_NAMES, LOCAL_SCHEME
from node.results.seg import segment_number
from node.results.sr import spec_point
from tests.node.results_sources import ALIGN_ALGO, LANDMARK_ALGO, make_alignment, make_analysis, make_dx
from tests.node.results_validate import dciodvfy, dsrdump, pixelmed_sr_many, require_tools

DELTAS = {
    "delta_leg_length_discrepancy": 1.5,
    "delta_femoral_offset_right": None,
    "delta_femoral_offset_left": 3.25,
    "delta_hip_centre_height_left": -1.125,
    "delta_hip_centre_lateral_left": 0.0,
}


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory):
    """Pre (UTF-8) and post (Latin-1, calibrated) images with their SEG, SR and the pair SR."""
    d = tmp_path_factory.mktemp("sr")
    pre = make_dx(study_date="20240105", seed=1)
    post = make_dx(with_pixel_spacing=True, charset="ISO_IR 100", study_date="20240610", seed=2)
    pre_a, post_a = make_analysis(), make_analysis(post_op=True, shift=2.0)
    out = {"pre": pre, "post": post, "pre_a": pre_a, "post_a": post_a}
    for label, ds, analysis in (("pre", pre, pre_a), ("post", post, post_a)):
        seg = encode_seg(ds, analysis)
        out[f"{label}_seg"] = seg
        sr = encode_image_sr(ds, analysis, seg)
        out[f"{label}_sr_path"] = d / f"{label}_sr.dcm"
        sr.save_as(out[f"{label}_sr_path"], enforce_file_format=True)
    out["pair_path"] = d / "pair_sr.dcm"
    encode_pair_sr(pre, post, pre_a, post_a, make_alignment(), DELTAS).save_as(
        out["pair_path"], enforce_file_format=True
    )
    return out


def _items(group) -> list:
    """Content items of a measurement group (highdicom wraps the container in a list)."""
    return list(group[0].ContentSequence)


def _algorithm(items) -> tuple[list[str], list[str]]:
    names = [i.TextValue for i in items if i.ConceptNameCodeSequence[0].CodeValue == "111001"]
    versions = [i.TextValue for i in items if i.ConceptNameCodeSequence[0].CodeValue == "111003"]
    return names, versions


def _name(code) -> str:
    return LOCAL_NAMES.get(code.value, code.meaning)


def test_every_landmark_is_a_scoord_point(written) -> None:
    sr = hd.sr.srread(written["post_sr_path"])
    analysis = written["post_a"]
    points = {}
    for group in sr.content.get_planar_roi_measurement_groups():
        if group.reference_type.value == "111030" and group.roi.graphic_type.value == "POINT":
            points[str(group.tracking_identifier)] = spec_point(group.roi.value[0])
            image = group.roi.ContentSequence[0]
            assert image.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == written["post"].SOPInstanceUID
    expected = {n: p for n, p in analysis.landmarks.items() if p is not None}
    assert set(points) == set(expected)
    assert "cup_rim_lateral_left" in points and "cup_rim_lateral_right" not in points  # None stays absent
    for name, (x, y) in expected.items():
        assert points[name] == pytest.approx((x, y), abs=1e-4), name
    assert set(expected) <= set(LANDMARKS)


def test_every_measurement_with_unit_calibration_and_algorithm(written) -> None:
    for label in ("pre", "post"):
        sr = hd.sr.srread(written[f"{label}_sr_path"])
        analysis = written[f"{label}_a"]
        groups = [*sr.content.get_planar_roi_measurement_groups(), *sr.content.get_image_measurement_groups()]
        found: dict[str, float] = {}
        for group in groups:
            names, versions = _algorithm(_items(group))
            assert names == [LANDMARK_ALGO.name] and versions == [LANDMARK_ALGO.version]
            for m in group.get_measurements():
                key = str(group.tracking_identifier)
                found[key] = m.value
                unit = m.unit.value
                assert unit == {"mm": "mm", "deg": "deg"}[unit]
                if unit == "mm":  # calibration source = Measurement Method of the value
                    assert m.method is not None and m.method.value == "CAL-MAG", key
                else:
                    assert m.method is None
                assert _name(m.name) in key  # concept = side-free spec name
        expected = {n: v for n, v in analysis.measurements.items() if v is not None}
        assert set(found) == set(expected)
        for name, value in expected.items():
            assert found[name] == pytest.approx(value, abs=1e-9), name
        assert set(expected) <= set(MEASUREMENTS)


def test_joint_space_width_references_its_segment_without_frame_numbers(written) -> None:
    ds = pydicom.dcmread(written["pre_sr_path"])
    sr = hd.sr.srread(written["pre_sr_path"])
    seg = written["pre_seg"]
    refs = {}
    for group in sr.content.get_planar_roi_measurement_groups():
        if group.reference_type.value == "121214":
            item = group.roi if group.roi is not None else None
            seg_ref = [i for i in _items(group) if i.ValueType == "IMAGE"][0].ReferencedSOPSequence[0]
            refs[str(group.tracking_identifier)] = seg_ref
            assert item is None
    assert set(refs) == {"min_joint_space_width_right", "min_joint_space_width_left"}
    for name, ref in refs.items():
        side = name.rsplit("_", 1)[1]
        assert ref.ReferencedSOPInstanceUID == seg.SOPInstanceUID
        assert int(ref.ReferencedSegmentNumber) == segment_number(f"joint_space_{side}")
        assert "ReferencedFrameNumber" not in ref
    evidence = {
        i.ReferencedSOPInstanceUID
        for s in ds.CurrentRequestedProcedureEvidenceSequence
        for r in s.ReferencedSeriesSequence
        for i in r.ReferencedSOPSequence
    }
    assert evidence == {written["pre"].SOPInstanceUID, seg.SOPInstanceUID}


def test_empty_segment_falls_back_to_image_group(written) -> None:
    # post-op left: joint space empty (implant); its JSW is None there, so
    # force a value to see the fallback: no segment to point at, no lines.
    post, analysis = written["post"], make_analysis(post_op=True)
    analysis.measurements["min_joint_space_width_left"] = 2.0
    sr = hd.sr.Comprehensive3DSR.from_dataset(encode_image_sr(post, analysis, encode_seg(post, analysis)))
    groups = {str(g.tracking_identifier): g for g in sr.content.get_image_measurement_groups()}
    assert "min_joint_space_width_left" in groups
    assert groups["min_joint_space_width_left"].get_measurements()[0].value == 2.0


def test_pair_sr_deltas_reference_both_exams(written) -> None:
    sr = hd.sr.srread(written["pair_path"])
    pre, post = written["pre"], written["post"]
    assert sr.StudyInstanceUID == post.StudyInstanceUID
    assert sr.SpecificCharacterSet == "ISO_IR 100" and str(sr.PatientName) == "Müller^Jürgen"
    (group,) = sr.content.get_image_measurement_groups()
    values = {}
    for m in group.get_measurements():
        laterality = m.finding_sites[0].laterality.meaning.lower()
        name = LOCAL_NAMES[m.name.value] + ("" if m.name.value == "D-LLD" else f"_{laterality}")
        values[name] = m.value
        refs = {r.ReferencedSOPSequence[0].ReferencedSOPInstanceUID for r in m.referenced_images}
        assert refs == {pre.SOPInstanceUID, post.SOPInstanceUID}
    expected = {k: v for k, v in DELTAS.items() if v is not None}
    assert values == pytest.approx(expected)
    assert set(values) <= set(DELTA_MEASUREMENTS)
    current = {i.StudyInstanceUID for i in sr.CurrentRequestedProcedureEvidenceSequence}
    other = {i.StudyInstanceUID for i in sr.PertinentOtherEvidenceSequence}
    assert current == {post.StudyInstanceUID} and other == {pre.StudyInstanceUID}
    assert all(m.method.value == "CAL-MAG" for m in group.get_measurements())
    assert group.method.value == "ALIGN-WEIGHTED"
    names, versions = _algorithm(_items(group))
    assert names == [ALIGN_ALGO.name] and versions == [ALIGN_ALGO.version]


def test_dsrdump_shows_values_and_points(written) -> None:
    require_tools()
    text = dsrdump(written["post_sr_path"])
    assert "Imaging Measurement Report" in text
    x, y = written["post_a"].landmarks["femoral_head_centre_left"]
    assert f"{x + 0.5:g}/{y + 0.5:g}" in text  # SCOORD: pixel centre at +0.5
    numbers = [float(v) for v in re.findall(r'<contains NUM:\(.*?\)="([^"]+)" \(', text)]
    expected = [v for v in written["post_a"].measurements.values() if v is not None]
    assert sorted(numbers) == pytest.approx(sorted(expected))
    assert LOCAL_SCHEME in text


def test_validators_zero_errors(written, tmp_path) -> None:
    require_tools()
    paths = [written["post_sr_path"], written["pair_path"]]
    for path in [written["pre_sr_path"], *paths]:
        verdict = dciodvfy(path)
        assert verdict.errors == [], verdict.output
        assert "Comprehensive3DSR" in verdict.output
    # A control the validators must reject: the report without its measurements container.
    broken = pydicom.dcmread(written["pair_path"])
    broken.ContentSequence = [c for c in broken.ContentSequence if c.ConceptNameCodeSequence[0].CodeValue != "126010"]
    broken_path = tmp_path / "broken.dcm"
    broken.save_as(broken_path)
    verdicts = pixelmed_sr_many([*paths, broken_path])
    assert verdicts.pop(broken_path).errors, "pixelmed accepted a TID 1500 report without measurements"
    for path, verdict in verdicts.items():
        assert "Found Root Template TID_1500" in verdict.output, verdict.output
        assert verdict.errors == [], f"{path.name}: {verdict.output}"


def test_bad_inputs_give_clear_errors(written) -> None:
    analysis = make_analysis()
    analysis.measurements["femoral_offset_left"] = float("nan")
    with pytest.raises(EncodingError, match="femoral_offset_left"):
        encode_image_sr(written["pre"], analysis)
    analysis = make_analysis()
    analysis.calibration = "guessed"
    with pytest.raises(EncodingError, match="calibration"):
        encode_image_sr(written["pre"], analysis)
    with pytest.raises(EncodingError, match="outside the spec"):
        encode_pair_sr(
            written["pre"], written["post"], written["pre_a"], written["post_a"], make_alignment(), {"delta_x": 1.0}
        )
