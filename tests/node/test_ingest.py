"""C-STORE ingest against a real node subprocess, with DCMTK storescu as the sender.

Every syntax the brief names is produced by DCMTK's own compressors where
DCMTK has one (dcmcjpeg, dcmcjpls, dcmcrle, dcmconv) and by pydicom +
pylibjpeg-openjpeg for JPEG 2000 (DCMTK has no free J2K codec); storescu then
sends the file as it is under the syntax its option proposes.
"""

from __future__ import annotations

import subprocess
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import JPEG2000, JPEG2000Lossless
from sqlalchemy import select

from storage.models import Instance, Study
from tests.conftest import NO_WORKERS, NodeProcess, require_tool, wait_for
from tests.factories import dataset_bytes, make_dx, write_dx

LOSSLESS = True


def _dcmtk(tool: str, *args: str) -> None:
    subprocess.run([require_tool(tool), *args], check=True, capture_output=True, timeout=60)


def _python_j2k(src: Path, dst: Path, lossless: bool) -> None:
    ds = pydicom.dcmread(src)
    if lossless:
        ds.compress(JPEG2000Lossless)
    else:
        ds.compress(JPEG2000, j2k_cr=[5])
    ds.save_as(dst, enforce_file_format=True)


# name -> (how to produce the file from an explicit-LE source, storescu option, transfer syntax, lossless)
SYNTAXES: dict[str, tuple[Callable[[Path, Path], None], str, str, bool]] = {
    "explicit_le": (
        lambda s, d: _dcmtk("dcmconv", "+te", str(s), str(d)),
        "-xe",
        "1.2.840.10008.1.2.1",
        True,
    ),
    "implicit_le": (
        lambda s, d: _dcmtk("dcmconv", "+ti", str(s), str(d)),
        "-xi",
        "1.2.840.10008.1.2",
        True,
    ),
    "explicit_be": (
        lambda s, d: _dcmtk("dcmconv", "+tb", str(s), str(d)),
        "-xb",
        "1.2.840.10008.1.2.2",
        True,
    ),
    "deflated": (
        lambda s, d: _dcmtk("dcmconv", "+td", str(s), str(d)),
        "-xd",
        "1.2.840.10008.1.2.1.99",
        True,
    ),
    "jpeg_lossless_sv1": (
        lambda s, d: _dcmtk("dcmcjpeg", "+e1", str(s), str(d)),
        "-xs",
        "1.2.840.10008.1.2.4.70",
        True,
    ),
    "jpeg_extended_12bit": (
        lambda s, d: _dcmtk("dcmcjpeg", "+ee", str(s), str(d)),
        "-xx",
        "1.2.840.10008.1.2.4.51",
        False,
    ),
    "jpeg_ls_lossless": (
        lambda s, d: _dcmtk("dcmcjpls", "+el", str(s), str(d)),
        "-xt",
        "1.2.840.10008.1.2.4.80",
        True,
    ),
    "jpeg_ls_near_lossless": (
        lambda s, d: _dcmtk("dcmcjpls", "+en", str(s), str(d)),
        "-xu",
        "1.2.840.10008.1.2.4.81",
        False,
    ),
    "j2k_lossless": (lambda s, d: _python_j2k(s, d, True), "-xv", "1.2.840.10008.1.2.4.90", True),
    "j2k_lossy": (lambda s, d: _python_j2k(s, d, False), "-xw", "1.2.840.10008.1.2.4.91", False),
    "rle": (lambda s, d: _dcmtk("dcmcrle", str(s), str(d)), "-xr", "1.2.840.10008.1.2.5", True),
}


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    base = tmp_path_factory.mktemp("ingest")
    process = NodeProcess(
        base / "store", env=NO_WORKERS, config={"completion": {"quiet_seconds": 60.0}}
    )
    process.start()
    yield process
    process.close()


def storescu(
    node: NodeProcess, *args: str, calling: str = "STORESCU"
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            require_tool("storescu"),
            "-aet",
            calling,
            "-aec",
            node.ae_title,
            "127.0.0.1",
            str(node.port),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def stored_instance(node: NodeProcess, sop_uid: str) -> Instance | None:
    with node.session() as session:
        return session.scalars(select(Instance).where(Instance.sop_instance_uid == sop_uid)).first()


@pytest.mark.parametrize("modality", ["DX", "CR"])
@pytest.mark.parametrize("syntax", list(SYNTAXES))
def test_each_transfer_syntax_is_stored_and_decodes(
    node: NodeProcess, tmp_path: Path, modality: str, syntax: str
) -> None:
    produce, option, ts_uid, lossless = SYNTAXES[syntax]
    source = write_dx(
        tmp_path / "src.dcm", rows=64, columns=80, modality=modality, seed=hash(syntax) % 1000
    )
    encoded = tmp_path / "encoded.dcm"
    produce(source, encoded)
    sent = pydicom.dcmread(encoded, stop_before_pixels=True)
    assert sent.file_meta.TransferSyntaxUID == ts_uid  # the file really is in that syntax

    result = storescu(node, "-R", option, str(encoded))
    assert result.returncode == 0, result.stderr

    row = wait_for(
        lambda: stored_instance(node, sent.SOPInstanceUID), timeout=10, msg="instance row"
    )
    assert row.transfer_syntax_uid == ts_uid
    assert row.modality == modality
    stored = pydicom.dcmread(node.storage / row.path)
    assert stored.file_meta.TransferSyntaxUID == ts_uid
    received, sent_bytes = dataset_bytes(node.storage / row.path), dataset_bytes(encoded)
    if syntax == "deflated":  # storescu re-deflates: compare the inflated streams
        received, sent_bytes = (zlib.decompress(b, -zlib.MAX_WBITS) for b in (received, sent_bytes))
    assert received == sent_bytes  # bit-identical data set
    pixels = stored.pixel_array
    original = pydicom.dcmread(source).pixel_array
    assert pixels.shape == original.shape == (64, 80)
    if lossless:
        np.testing.assert_array_equal(pixels, original)
    else:
        # lossy: same picture (a codec may shift levels slightly; the bytes are checked above)
        assert (
            np.corrcoef(pixels.ravel().astype(float), original.ravel().astype(float))[0, 1] > 0.99
        )


def test_catalogue_rows_carry_the_header_facts(node: NodeProcess, tmp_path: Path) -> None:
    path = write_dx(
        tmp_path / "a.dcm",
        rows=32,
        columns=32,
        patient_id="PX-7",
        laterality="R",
        imager_pixel_spacing=(0.15, 0.15),
    )
    ds = pydicom.dcmread(path)
    assert storescu(node, str(path)).returncode == 0
    row = wait_for(lambda: stored_instance(node, ds.SOPInstanceUID), timeout=10, msg="row")
    assert (row.body_part_examined, row.view_position, row.laterality) == ("PELVIS", "AP", "R")
    assert row.photometric_interpretation == "MONOCHROME2"
    assert row.pixel_spacing_source == "detector_plane" and row.pixel_spacing_mm == [0.15, 0.15]
    assert (
        row.calling_aet == "STORESCU" and row.size_bytes == (node.storage / row.path).stat().st_size
    )
    assert row.rows == 32 and row.columns == 32 and not row.derived_by_node
    with node.session() as session:
        study = session.scalars(
            select(Study).where(Study.study_instance_uid == ds.StudyInstanceUID)
        ).one()
        assert study.patient.patient_id == "PX-7"
        assert study.calling_aet == "STORESCU"
    # One line per instance with its UIDs, never the patient's name.
    line = next(line for line in node.log().splitlines() if ds.SOPInstanceUID in line and " instance " in line)
    assert f"study_instance_uid={ds.StudyInstanceUID}" in line and "status=0x0000" in line
    assert "Test^Patient" not in node.log() and "PX-7" not in node.log()


def test_duplicate_keeps_first_copy_and_counts_different_content(
    node: NodeProcess, tmp_path: Path
) -> None:
    first = write_dx(tmp_path / "first.dcm", rows=32, columns=32, seed=1)
    uid = pydicom.dcmread(first).SOPInstanceUID
    ds = pydicom.dcmread(first)
    second = tmp_path / "second.dcm"
    ds.PixelData = bytes(len(ds.PixelData))  # same UIDs, other content
    ds.save_as(second, enforce_file_format=True)

    assert storescu(node, str(first)).returncode == 0
    row = wait_for(lambda: stored_instance(node, uid), timeout=10, msg="row")
    assert storescu(node, str(first)).returncode == 0  # identical re-send: not counted
    assert stored_instance(node, uid).duplicate_count == 0
    result = storescu(node, str(second))
    assert result.returncode == 0, result.stderr
    again = stored_instance(node, uid)
    assert again.duplicate_count == 1 and again.sha256 == row.sha256
    assert dataset_bytes(node.storage / row.path) == dataset_bytes(first)
    assert "duplicate SOP Instance UID with different content" in node.log()


def test_seg_and_sr_contexts_are_accepted(node: NodeProcess) -> None:
    from pynetdicom import AE

    from node.network.contexts import SEGMENTATION, SR_SOP_CLASSES

    ae = AE(ae_title="CTXTEST")
    for uid in [SEGMENTATION, *SR_SOP_CLASSES]:
        ae.add_requested_context(uid)
    assoc = ae.associate("127.0.0.1", node.port, ae_title=node.ae_title)
    try:
        assert assoc.is_established
        accepted = {cx.abstract_syntax for cx in assoc.accepted_contexts}
        assert accepted == {SEGMENTATION, *SR_SOP_CLASSES}
    finally:
        assoc.release()


def test_sr_document_is_stored(node: NodeProcess, tmp_path: Path) -> None:
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    base = make_dx(rows=8, columns=8)
    sr = Dataset()
    sr.file_meta = base.file_meta
    sr.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.88.33"
    for keyword in (
        "PatientID",
        "PatientName",
        "StudyInstanceUID",
        "StudyDate",
        "StudyTime",
        "AccessionNumber",
    ):
        setattr(sr, keyword, base.get(keyword))
    sr.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.33"
    sr.SOPInstanceUID = base.SOPInstanceUID
    sr.SeriesInstanceUID = pydicom.uid.generate_uid()
    sr.Modality = "SR"
    sr.ValueType = "CONTAINER"
    concept = Dataset()
    concept.CodeValue, concept.CodingSchemeDesignator, concept.CodeMeaning = (
        "126000",
        "DCM",
        "Imaging Measurement Report",
    )
    sr.ConceptNameCodeSequence = Sequence([concept])
    sr.ContinuityOfContent = "SEPARATE"
    sr.ContentSequence = Sequence([])
    path = tmp_path / "sr.dcm"
    sr.save_as(path, enforce_file_format=True)
    result = storescu(node, "-R", str(path))
    assert result.returncode == 0, result.stderr
    row = wait_for(lambda: stored_instance(node, sr.SOPInstanceUID), timeout=10, msg="SR row")
    assert row.modality == "SR"


def _scu_config(path: Path, ts_uid: str) -> Path:
    """storescu --config-file profile proposing exactly ``ts_uid`` for DX and CR (no -x option does)."""
    path.write_text(
        "[[TransferSyntaxes]]\n[Only]\nTransferSyntax1 = " + ts_uid + "\n"
        "[[PresentationContexts]]\n[Contexts]\n"
        "PresentationContext1 = 1.2.840.10008.5.1.4.1.1.1.1\\Only\n"
        "PresentationContext2 = 1.2.840.10008.5.1.4.1.1.1\\Only\n"
        "[[Profiles]]\n[Only]\nPresentationContexts = Contexts\n",
        encoding="ascii",
    )
    return path


@pytest.mark.parametrize("modality", ["DX", "CR"])
@pytest.mark.parametrize(
    ("option", "ts_uid", "bits", "lossless"),
    [
        ("+el", "1.2.840.10008.1.2.4.57", 16, True),  # JPEG lossless, process 14
        ("+eb", "1.2.840.10008.1.2.4.50", 8, False),  # JPEG baseline needs 8-bit data
    ],
)
def test_jpeg_p14_and_baseline_via_storescu_profile(
    node: NodeProcess,
    tmp_path: Path,
    modality: str,
    option: str,
    ts_uid: str,
    bits: int,
    lossless: bool,
) -> None:
    ds = make_dx(rows=48, columns=64, modality=modality, seed=bits)
    if bits == 8:
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
        ds.PixelData = (np.add.outer(np.arange(48), np.arange(64)) * 2 % 256).astype("u1").tobytes()
    source = tmp_path / "src.dcm"
    ds.save_as(source, enforce_file_format=True)
    encoded = tmp_path / "enc.dcm"
    _dcmtk("dcmcjpeg", option, str(source), str(encoded))
    sent = pydicom.dcmread(
        encoded, stop_before_pixels=True
    )  # lossy encoding makes a new SOP Instance UID
    assert sent.file_meta.TransferSyntaxUID == ts_uid
    config = _scu_config(tmp_path / "scu.cfg", ts_uid)
    result = storescu(node, "-xf", str(config), "Only", str(encoded))
    assert result.returncode == 0, result.stderr
    row = wait_for(lambda: stored_instance(node, sent.SOPInstanceUID), timeout=10, msg="row")
    stored = pydicom.dcmread(node.storage / row.path)
    assert stored.file_meta.TransferSyntaxUID == ts_uid
    original = pydicom.dcmread(source).pixel_array
    if lossless:
        np.testing.assert_array_equal(stored.pixel_array, original)
    else:
        assert (
            np.corrcoef(stored.pixel_array.ravel().astype(float), original.ravel().astype(float))[
                0, 1
            ]
            > 0.99
        )
