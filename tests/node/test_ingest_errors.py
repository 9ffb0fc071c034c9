"""Refusals and recovery: truncated (C000), UID mismatch (A900), out of space (A700),
leftover temp files and files without rows at start.

Truncated and mismatched objects cannot be produced by storescu (it parses the
file first), so a pynetdicom SCU sends the raw file bytes as they are.
"""

from __future__ import annotations

import resource
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from pynetdicom import AE, _config
from sqlalchemy import func, select

from storage.models import Instance
from tests.conftest import NO_WORKERS, NodeProcess, require_tool, storescu_responses, wait_for
from tests.factories import write_dx

DX = "1.2.840.10008.5.1.4.1.1.1.1"


@pytest.fixture()
def raw_sender() -> Iterator[None]:
    """pynetdicom sends file bytes unchanged (no re-encoding, no validation)."""
    before = _config.STORE_SEND_CHUNKED_DATASET
    _config.STORE_SEND_CHUNKED_DATASET = True
    yield
    _config.STORE_SEND_CHUNKED_DATASET = before


def send_raw(node: NodeProcess, path: Path) -> int:
    """C-STORE ``path`` as raw bytes; return the response status."""
    ts = pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID
    ae = AE(ae_title="RAWSCU")
    ae.add_requested_context(DX, [ts])
    assoc = ae.associate("127.0.0.1", node.port, ae_title=node.ae_title)
    assert assoc.is_established
    try:
        status = assoc.send_c_store(path)
        return int(status.Status)
    finally:
        assoc.release()


def storescu(node: NodeProcess, *paths: Path) -> dict[str, str]:
    """Send with storescu -v; return {file: response text}."""
    result = subprocess.run(
        [
            require_tool("storescu"),
            "-v",
            "-nh",
            "-aec",
            node.ae_title,
            "127.0.0.1",
            str(node.port),
            *map(str, paths),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return storescu_responses(result.stdout + result.stderr)


def all_success(responses: dict[str, str]) -> bool:
    return bool(responses) and all(text.startswith("Success") for text in responses.values())


def instance_count(node: NodeProcess) -> int:
    with node.session() as session:
        return int(session.scalar(select(func.count(Instance.id))) or 0)


def object_files(node: NodeProcess) -> list[Path]:
    return sorted((node.storage / "dicom").rglob("*.dcm"))


def temp_files(node: NodeProcess) -> list[Path]:
    return sorted((node.storage / "tmp").iterdir())


@pytest.fixture()
def node(start_node) -> NodeProcess:  # type: ignore[no-untyped-def]
    return start_node(env=NO_WORKERS)


@pytest.mark.parametrize("cut", ["pixel_data_tail", "inside_header", "before_pixel_data"])
def test_truncated_object_gets_c000_and_nothing_is_stored(
    node: NodeProcess, tmp_path: Path, raw_sender: None, cut: str
) -> None:
    full = write_dx(tmp_path / "full.dcm", rows=64, columns=64)
    data = full.read_bytes()
    pixel_header = data.rfind(b"\xe0\x7f\x10\x00")  # (7FE0,0010) little endian
    keep = {
        "pixel_data_tail": len(data) - 100,
        "inside_header": pixel_header - 3,
        "before_pixel_data": pixel_header,
    }[cut]
    truncated = tmp_path / "truncated.dcm"
    truncated.write_bytes(data[:keep])
    assert send_raw(node, truncated) == 0xC000
    assert instance_count(node) == 0 and object_files(node) == [] and temp_files(node) == []
    assert "instance refused" in node.log() and "status=0xC000" in node.log()
    assert send_raw(node, full) == 0x0000  # the association is usable afterwards
    assert instance_count(node) == 1


def test_uid_mismatch_gets_a900(node: NodeProcess, tmp_path: Path, raw_sender: None) -> None:
    path = write_dx(tmp_path / "a.dcm", rows=16, columns=16)
    ds = pydicom.dcmread(path)
    ds.file_meta.MediaStorageSOPInstanceUID = (
        pydicom.uid.generate_uid()
    )  # the command carries this one
    ds.save_as(path)  # not enforce_file_format: that would copy the data set's UIDs into the meta
    assert send_raw(node, path) == 0xA900
    ds = pydicom.dcmread(path)
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.1"  # data set says CR, command says DX
    ds.save_as(path)
    assert send_raw(node, path) == 0xA900
    assert instance_count(node) == 0 and object_files(node) == [] and temp_files(node) == []


def test_storage_cap_gives_a700_then_storing_works_again_after_freeing(
    start_node, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    files = [write_dx(tmp_path / f"{i}.dcm", rows=64, columns=64, seed=i) for i in range(4)]
    size = files[0].stat().st_size
    node = start_node(env=NO_WORKERS, config={"max_storage_bytes": 3 * size + size // 2})
    responses = storescu(node, *files)
    assert [responses[str(f)].split(":")[0] for f in files] == [
        "Success",
        "Success",
        "Success",
        "Refused",
    ]
    assert "OutOfResources" in responses[str(files[3])]
    assert instance_count(node) == 3 and len(object_files(node)) == 3 and temp_files(node) == []
    refused = [
        f
        for f in files
        if pydicom.dcmread(f).SOPInstanceUID not in {p.stem for p in object_files(node)}
    ]
    assert len(refused) == 1
    assert "status=0xA700" in node.log()
    # Free space: an operator removes one object (row and file).
    with node.session() as session:
        victim = session.scalars(select(Instance)).first()
        (node.storage / victim.path).unlink()
        session.delete(victim)
        session.commit()
    assert all_success(storescu(node, *refused))
    assert instance_count(node) == 3


def _limit_file_size() -> None:
    # Writes past 1 MiB fail with EFBIG (Python ignores SIGXFSZ), like a full quota.
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))


def test_write_error_efbig_gives_a700_with_no_partial_file(start_node, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    node = start_node(env=NO_WORKERS, preexec_fn=_limit_file_size)
    big = write_dx(tmp_path / "big.dcm", rows=1024, columns=768)  # 1.5 MiB
    small = write_dx(tmp_path / "small.dcm", rows=64, columns=64)
    assert "OutOfResources" in storescu(node, big)[str(big)]
    assert "status=0xA700" in node.log()
    assert instance_count(node) == 0 and object_files(node) == []
    wait_for(lambda: temp_files(node) == [], timeout=10, msg="temp file removed")
    assert all_success(storescu(node, small))
    assert instance_count(node) == 1


def test_start_removes_temp_files_and_reindexes_files_without_rows(
    start_node, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    node = start_node(env=NO_WORKERS)
    first = write_dx(tmp_path / "first.dcm", rows=32, columns=32, seed=1)
    assert all_success(storescu(node, first))
    assert node.stop() == 0
    # A crash between rename and commit leaves a file without a row; one mid-receive leaves a temp file.
    orphan_src = write_dx(tmp_path / "orphan.dcm", rows=32, columns=32, seed=2)
    ds = pydicom.dcmread(orphan_src)
    orphan = (
        node.storage
        / "dicom"
        / ds.StudyInstanceUID
        / ds.SeriesInstanceUID
        / f"{ds.SOPInstanceUID}.dcm"
    )
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(orphan_src.read_bytes())
    (node.storage / "tmp" / "tmpabc.part").write_bytes(b"half an object")
    (node.storage / "dicom" / "junk.dcm").write_bytes(b"not dicom")
    node.start()
    assert temp_files(node) == []
    assert instance_count(node) == 2
    with node.session() as session:
        row = session.scalars(
            select(Instance).where(Instance.sop_instance_uid == ds.SOPInstanceUID)
        ).one()
        assert row.path == orphan.relative_to(node.storage).as_posix()
    assert (
        "reindexed=1" in node.log()
        and "temp_files_removed=1" in node.log()
        and "unreadable=1" in node.log()
    )


def test_abort_mid_object_leaves_no_temp_file(node: NodeProcess, tmp_path: Path) -> None:
    """Half a C-STORE, then A-ABORT: the partial receive buffer is removed, nothing stored."""
    from io import BytesIO

    from pynetdicom.dimse_messages import C_STORE_RQ
    from pynetdicom.dimse_primitives import C_STORE

    from tests.factories import dataset_bytes

    path = write_dx(tmp_path / "big.dcm", rows=512, columns=512)
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    ae = AE(ae_title="ABORTER")
    ae.add_requested_context(DX, ["1.2.840.10008.1.2.1"])
    assoc = ae.associate("127.0.0.1", node.port, ae_title=node.ae_title, max_pdu=16384)
    assert assoc.is_established
    request = C_STORE()
    request.MessageID, request.Priority = 1, 2
    request.AffectedSOPClassUID, request.AffectedSOPInstanceUID = DX, ds.SOPInstanceUID
    request.DataSet = BytesIO(dataset_bytes(path))
    message = C_STORE_RQ()
    message.primitive_to_message(request)
    fragments = list(message.encode_msg(assoc.accepted_contexts[0].context_id, 16384))
    for primitive in fragments[: len(fragments) // 2]:
        assoc.dul.send_pdu(primitive)
    wait_for(lambda: temp_files(node) != [], timeout=10, msg="the node to start receiving")
    assoc.abort()
    wait_for(lambda: temp_files(node) == [], timeout=15, msg="the partial temp file to be removed")
    assert instance_count(node) == 0 and object_files(node) == []
    wait_for(lambda: "outcome=aborted" in node.log(), timeout=10, msg="the abort logged")
