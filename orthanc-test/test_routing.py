"""storescu -> Orthanc -> auto-routing -> node (or stand-in) -> results back into the same studies."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import time
from pathlib import Path

import pydicom
import pytest

from harness import HarnessStack, StackOptions
from harness.pair import SyntheticPair, make_pair
from harness.processes import ProcessExited, wait_for
from harness.results import referenced_instances, referenced_series, send_stand_in_results, wait_for_results

pytestmark = [pytest.mark.harness, pytest.mark.usefixtures("harness_installed")]
STABLE_AGE_S = 2
NODE_AET = "HIPNODE"


def _routed_jobs(stack: HarnessStack) -> list[dict]:
    jobs = stack.orthanc.get_json("/jobs?expand")
    return [j for j in jobs if j["Type"] == "DicomModalityStore"]


def _routed_instance_count(stack: HarnessStack) -> int:
    return sum(int(j["Content"].get("InstancesCount", 0)) for j in _routed_jobs(stack))


def _deliver(stack: HarnessStack, pair: SyntheticPair, encoders: str = "harness") -> None:
    """Send the chest image and the pair as a modality would, then let the node's results come back."""
    stack.send_to_orthanc([pair.chest, pair.pre, pair.post], calling_aet="MODALITY")
    if stack.options.receiver == "storescp":
        files = wait_for(lambda: (f := stack.received_files()) and len(f) >= 2 and f,
                         STABLE_AGE_S + 20, "the routed pair at the stand-in receiver")
        send_stand_in_results(stack, files, NODE_AET, encoders=encoders)  # type: ignore[arg-type]


# Stand-in results: the harness's objects in one mode, the project's encoders (node.results) in the other.
@pytest.mark.parametrize(("mode", "encoders"), [("on-stored", "harness"), ("stable-study", "node")])
def test_pair_is_routed_and_results_return(mode: str, encoders: str, receiver: str, synthetic_pair: SyntheticPair,
                                           artifacts_dir: Path) -> None:
    pair = synthetic_pair
    result_timeout_s = 180 if receiver == "node" else 30
    with HarnessStack(StackOptions(routing_mode=mode, receiver=receiver, node_aet=NODE_AET,  # type: ignore[arg-type]
                                   stable_age_s=STABLE_AGE_S, artifacts_dir=artifacts_dir)) as stack:
        sent_at = time.monotonic()
        _deliver(stack, pair, encoders)

        if receiver == "storescp":
            got = {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in stack.received_files()}
            assert got == {pair.sop_uids["pre"], pair.sop_uids["post"]}, "only the two hip images are routed"
            if mode == "stable-study":
                first = min(p.stat().st_mtime for p in stack.received_files())
                assert first - (time.time() - (time.monotonic() - sent_at)) >= STABLE_AGE_S - 0.5, \
                    "stable-study routing waits for the study to be quiet"

        post = wait_for_results(stack, pair.post_study_uid, ("SEG", "SR", "OT"), result_timeout_s)
        pre = wait_for_results(stack, pair.pre_study_uid, ("SEG", "SR"), result_timeout_s)

        # Same studies, correct references.
        for found in (pre, post):
            for items in found.by_modality.values():
                assert {d.StudyInstanceUID for d in items} == {found.study_uid}
                assert {d.PatientID for d in items} == {"HARNESS-001"}
        for seg in post.by_modality["SEG"]:
            assert referenced_series(seg) == {pair.post_series_uid}
            assert pair.sop_uids["post"] in referenced_instances(seg)
        for sr in post.by_modality["SR"]:  # the image's measurements (and, from the node, the pair's)
            assert pair.sop_uids["post"] in referenced_instances(sr)
        assert any(pair.sop_uids["pre"] in referenced_instances(sr) for sr in post.by_modality["SR"]), \
            "the pre/post comparison cites the pre-op exam as evidence"
        maps = [d for d in post.by_modality["OT"] if "difference" in str(d.get("SeriesDescription", "")).lower()]
        assert len(maps) == 1, [d.get("SeriesDescription") for d in post.by_modality["OT"]]
        assert maps[0].PhotometricInterpretation == "RGB"
        assert {pair.sop_uids["pre"], pair.sop_uids["post"]} <= referenced_instances(maps[0])

        # QIDO-RS shows the same series (what a viewer queries).
        series = stack.orthanc.qido(f"/studies/{pair.post_study_uid}/series")
        modalities = sorted({s["00080060"]["Value"][0] for s in series})
        assert modalities == ["DX", "OT", "SEG", "SR"]
        instances = {i["00080018"]["Value"][0] for i in stack.orthanc.qido(f"/studies/{pair.post_study_uid}/instances")}
        assert {d.SOPInstanceUID for items in post.by_modality.values() for d in items} <= instances

        # No loop: the results (and the studies becoming stable again) route nothing more.
        time.sleep(STABLE_AGE_S + 2.5)
        wait_for(lambda: all(j["State"] in ("Success", "Failure") for j in _routed_jobs(stack)), 20,
                 "routing jobs to finish")
        assert _routed_instance_count(stack) == 2, _routed_jobs(stack)
        assert all(j["State"] == "Success" for j in _routed_jobs(stack))
        if receiver == "storescp":
            assert len(stack.received_files()) == 2


@pytest.mark.parametrize("mode", ["on-stored", "stable-study"])
def test_hip_image_from_the_node_is_not_routed_back(mode: str, tmp_path: Path, artifacts_dir: Path) -> None:
    """The loop guard is the calling AE: a hip DX arriving from the node's AE stays in Orthanc."""
    from_node = make_pair(tmp_path / "node", patient_id="HARNESS-002")
    from_modality = make_pair(tmp_path / "modality", patient_id="HARNESS-003")
    with HarnessStack(StackOptions(routing_mode=mode, receiver="storescp", node_aet=NODE_AET,
                                   stable_age_s=STABLE_AGE_S, artifacts_dir=artifacts_dir)) as stack:
        stack.send_to_orthanc([from_node.post], calling_aet=NODE_AET)
        stack.send_to_orthanc([from_modality.post], calling_aet="MODALITY")
        wait_for(lambda: stack.received_files(), STABLE_AGE_S + 20, "the modality's image to be routed")
        time.sleep(STABLE_AGE_S + 2)
        got = {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in stack.received_files()}
        assert got == {from_modality.sop_uids["post"]}
        assert _routed_instance_count(stack) == 1


def test_teardown_stops_everything_when_the_test_fails(tmp_path: Path) -> None:
    stack = HarnessStack(StackOptions(receiver="storescp"))
    with pytest.raises(RuntimeError, match="boom"):
        with stack:
            pids = [int(line.split()[0]) for line in (stack.work_dir / "logs" / "pids.txt").read_text().splitlines()]
            assert len(pids) == 3  # namespace holder, receiver, Orthanc
            raise RuntimeError("boom")
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or _is_zombie(pid), f"process {pid} survived teardown"
    assert not stack.work_dir.exists()


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")
    except (FileNotFoundError, IndexError):
        return True


def test_routing_settings_reject_an_unknown_mode(tmp_path: Path, artifacts_dir: Path) -> None:
    """A typo in the routing mode stops Orthanc's start with a clear message, not silent non-routing."""
    with pytest.raises(ProcessExited, match="HipNodeRouting.Mode must be"):
        with HarnessStack(StackOptions(routing_mode="on-every-instance", start_timeout_s=8,  # type: ignore[arg-type]
                                       artifacts_dir=artifacts_dir)):
            pass
    assert "HipNodeRouting.Mode must be" in (artifacts_dir / "logs" / "orthanc.log").read_text()




def test_routing_reaches_the_real_node(synthetic_pair: SyntheticPair, artifacts_dir: Path) -> None:
    """``python -m node serve`` behind Orthanc: both hip images stored by the node, the chest image not."""
    pair = synthetic_pair
    with HarnessStack(StackOptions(routing_mode="on-stored", receiver="node", node_aet=NODE_AET,
                                   artifacts_dir=artifacts_dir)) as stack:
        stack.send_to_orthanc([pair.chest, pair.pre, pair.post], calling_aet="MODALITY")

        def stored() -> set[str]:
            return {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID
                    for p in stack.received_dir.rglob("*.dcm")}

        wait_for(lambda: len(stored()) >= 2, 30, "the node to store the routed pair")
        time.sleep(1)
        assert stored() == {pair.sop_uids["pre"], pair.sop_uids["post"]}
        wait_for(lambda: all(j["State"] == "Success" for j in _routed_jobs(stack)), 20, "routing jobs to succeed")
        assert _routed_instance_count(stack) == 2


def test_a_killed_test_runner_takes_the_stack_down(tmp_path: Path) -> None:
    """SIGKILL of the process holding the stack (a CI timeout) still stops Orthanc and the receiver."""
    import subprocess
    import sys

    script = (
        "import sys, time; sys.path.insert(0, sys.argv[1])\n"
        "from harness import HarnessStack, StackOptions\n"
        "stack = HarnessStack(StackOptions()).__enter__()\n"
        "print(stack.work_dir, flush=True)\n"
        "time.sleep(600)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", script, str(Path(__file__).parent)], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout is not None
        work_dir = Path(holder.stdout.readline().strip())
        pids = [int(line.split()[0]) for line in (work_dir / "logs" / "pids.txt").read_text().splitlines()]
        assert len(pids) == 3 and all(Path(f"/proc/{p}").exists() for p in pids)
        holder.kill()
        holder.wait(timeout=10)
        wait_for(lambda: all(not Path(f"/proc/{p}").exists() or _is_zombie(p) for p in pids), 15,
                 "the stack's processes to die with their parent")
    finally:
        if holder.poll() is None:
            holder.kill()
        holder.wait(timeout=10)
        for pid in locals().get("pids", []):  # a failed test must not leak the processes it checks
            if _still_ours(pid, work_dir):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        if "work_dir" in locals():
            shutil.rmtree(work_dir, ignore_errors=True)  # nobody else removes it after a SIGKILL


def _still_ours(pid: int, work_dir: Path) -> bool:
    """Alive and still the harness's process (not a reused PID): its command names the work dir or is the holder."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    return not _is_zombie(pid) and (str(work_dir) in cmdline or cmdline.strip() == "sleep infinity")
