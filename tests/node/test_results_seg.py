"""SEG encoder: round trip through highdicom's reader, codes, study placement, dciodvfy."""

from __future__ import annotations

from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest

from models.algorithms.results import AlgorithmInfo
from models.algorithms.vocabulary import SEGMENTS
from node.results import EncodingError, encode_seg
from node.results.codes import LOCAL_SCHEME
from tests.node.results_sources import SEG_ALGO, make_analysis, make_dx
from tests.node.results_validate import dcentvfy, dciodvfy, differing_attributes, require_tools


@pytest.fixture(scope="module", params=["detector", "calibrated"])
def written(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """(source, analysis, seg path): one DX without and one with PixelSpacing (the pitfall)."""
    calibrated = request.param == "calibrated"
    source = make_dx(with_pixel_spacing=calibrated, charset="ISO_IR 100" if calibrated else "ISO_IR 192")
    analysis = make_analysis(post_op=calibrated)
    directory = tmp_path_factory.mktemp(f"seg-{request.param}")
    source.save_as(directory / "source.dcm", enforce_file_format=True)
    path = directory / "seg.dcm"
    encode_seg(source, analysis).save_as(path, enforce_file_format=True)
    return source, analysis, path


def test_round_trip_labels_and_masks(written) -> None:
    source, analysis, path = written
    seg = hd.seg.segread(path)
    labels = [seg.get_segment_description(n).segment_label for n in seg.get_segment_numbers()]
    assert labels == list(SEGMENTS)
    pixels = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=[source.SOPInstanceUID], combine_segments=False, skip_overlap_checks=True
    )
    assert pixels.shape == (1, source.Rows, source.Columns, len(SEGMENTS))
    for index, name in enumerate(SEGMENTS):
        assert np.array_equal(pixels[0, :, :, index].astype(bool), analysis.masks[name]), name


def test_empty_segments_keep_a_frame(written) -> None:
    _, analysis, path = written
    ds = pydicom.dcmread(path)
    assert int(ds.NumberOfFrames) == len(SEGMENTS)  # frame i = segment i, even when empty
    assert not analysis.masks["implant_right"].any()
    numbers = [int(f.SegmentIdentificationSequence[0].ReferencedSegmentNumber) for f in ds.PerFrameFunctionalGroupsSequence]
    assert numbers == list(range(1, len(SEGMENTS) + 1))


def test_codes_laterality_and_local_scheme(written) -> None:
    _, _, path = written
    ds = pydicom.dcmread(path)
    by_label = {s.SegmentLabel: s for s in ds.SegmentSequence}
    head = by_label["femoral_head_left"]
    assert head.SegmentedPropertyTypeCodeSequence[0].CodeValue == "2812003"
    assert head.SegmentedPropertyTypeCodeSequence[0].CodingSchemeDesignator == "SCT"
    modifier = head.AnatomicRegionSequence[0].AnatomicRegionModifierSequence[0]
    assert (modifier.CodeValue, modifier.CodeMeaning) == ("7771000", "Left")
    assert by_label["femur_right"].AnatomicRegionSequence[0].AnatomicRegionModifierSequence[0].CodeValue == "24028007"
    assert "AnatomicRegionModifierSequence" not in by_label["pelvis"].AnatomicRegionSequence[0]
    roof = by_label["acetabular_roof_right"].SegmentedPropertyTypeCodeSequence[0]
    assert roof.CodingSchemeDesignator == LOCAL_SCHEME
    assert [i.CodingSchemeDesignator for i in ds.CodingSchemeIdentificationSequence] == [LOCAL_SCHEME]
    algorithm = head.SegmentationAlgorithmIdentificationSequence[0]
    assert (algorithm.AlgorithmName, algorithm.AlgorithmVersion) == (SEG_ALGO.name, SEG_ALGO.version)
    assert "Laterality" not in ds  # laterality lives in the segments


def test_in_patient_study_with_charset(written) -> None:
    source, _, path = written
    ds = pydicom.dcmread(path)
    assert ds.StudyInstanceUID == source.StudyInstanceUID
    assert ds.SeriesInstanceUID != source.SeriesInstanceUID
    assert ds.SpecificCharacterSet == source.SpecificCharacterSet
    assert str(ds.PatientName) == "Müller^Jürgen"
    assert ds.PatientID == source.PatientID and ds.IssuerOfPatientID == source.IssuerOfPatientID
    assert ds.PatientOrientation == source.PatientOrientation
    assert ds.SeriesDescription == "HipNode AI SEG" and int(ds.SeriesNumber) == 9101
    models = {(e.get("ManufacturerModelName"), e.get("SoftwareVersions")) for e in ds.ContributingEquipmentSequence}
    assert ("hipnode-seg", "1.2.0") in models and ("hipnode-landmarks", "0.9.1") in models
    assert ds.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID


def test_dciodvfy_and_dcentvfy_clean(written) -> None:
    require_tools()
    _, _, path = written
    verdict = dciodvfy(path)
    assert verdict.errors == [], verdict.output
    assert "Segmentation" in verdict.output  # the IOD was recognised, not skipped
    study = dcentvfy([path.parent / "source.dcm", path])
    assert study.errors == [], study.output


def test_dciodvfy_catches_the_patient_orientation_pitfall(written, tmp_path: Path) -> None:
    """Control: without the PatientOrientation fix dciodvfy reports an error we would see.

    PatientOrientation is Type 2C: required when there is no Plane Orientation,
    so the control removes both (the encoder writes both).
    """
    require_tools()
    ds = pydicom.dcmread(written[2])
    del ds.PatientOrientation
    del ds.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence
    path = tmp_path / "no-orientation.dcm"
    ds.save_as(path)
    assert any("PatientOrientation" in e for e in dciodvfy(path).errors)


def test_uid_is_deterministic_and_versioned() -> None:
    source, analysis = make_dx(), make_analysis()
    first, second = encode_seg(source, analysis), encode_seg(source, analysis)
    assert first.SOPInstanceUID == second.SOPInstanceUID
    assert first.SeriesInstanceUID == second.SeriesInstanceUID
    analysis.algorithms = (AlgorithmInfo("hipnode-seg", "1.3.0"), analysis.algorithms[1])
    assert encode_seg(source, analysis).SOPInstanceUID != first.SOPInstanceUID


def test_re_encoding_gives_the_same_object() -> None:
    """Every UID, the Dimension Organization's included (highdicom draws it at random),
    so a re-run sends the PACS an identical object, not a conflicting copy."""
    source, analysis = make_dx(), make_analysis()
    first, second = encode_seg(source, analysis), encode_seg(source, analysis)
    differing = differing_attributes(first, second)
    assert differing == [], differing
    organization = first.DimensionOrganizationSequence[0].DimensionOrganizationUID
    assert all(item.DimensionOrganizationUID == organization for item in first.DimensionIndexSequence)


def test_bad_inputs_give_clear_errors() -> None:
    source = make_dx()
    analysis = make_analysis()
    analysis.masks["pelvis"] = np.zeros((10, 10), bool)
    with pytest.raises(EncodingError, match="pelvis.*shape"):
        encode_seg(source, analysis)
    analysis = make_analysis()
    analysis.masks["kidney"] = np.zeros((source.Rows, source.Columns), bool)
    with pytest.raises(EncodingError, match="outside the spec"):
        encode_seg(source, analysis)
    analysis = make_analysis()
    analysis.algorithms = ()
    with pytest.raises(EncodingError, match="algorithm"):
        encode_seg(source, analysis)
    del source.StudyInstanceUID
    with pytest.raises(EncodingError, match="StudyInstanceUID"):
        encode_seg(source, make_analysis())


def test_all_segments_empty_is_still_valid(tmp_path: Path) -> None:
    source, analysis = make_dx(), make_analysis()
    analysis.masks = {}
    path = tmp_path / "seg.dcm"
    encode_seg(source, analysis).save_as(path, enforce_file_format=True)
    seg = hd.seg.segread(path)
    assert seg.number_of_segments == len(SEGMENTS)
    require_tools()
    assert dciodvfy(path).errors == []
