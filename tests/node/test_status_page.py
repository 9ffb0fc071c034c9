"""The status page of a real ``hipnode serve`` process, fed by a real storescu."""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import NO_WORKERS, NodeProcess, free_port, require_tool, wait_for
from tests.factories import make_dx

MARKUP = "<b>HIP</b> & PELVIS"


def _get(port: int, path: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            return response.status, response.headers["Content-Type"], response.read().decode("utf-8")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode("utf-8")


@pytest.fixture()
def node(tmp_path: Path) -> NodeProcess:
    web_port = free_port()
    started = NodeProcess(tmp_path / "node", config={"web": {"enabled": True, "port": web_port}},
                          env=NO_WORKERS).start()
    started.web_port = web_port  # type: ignore[attr-defined]
    yield started
    started.close()


def test_the_page_shows_a_received_study_and_stops_with_the_node(node: NodeProcess, tmp_path: Path) -> None:
    port = node.web_port  # type: ignore[attr-defined]
    status, kind, body = _get(port, "/healthz")
    assert (status, kind, json.loads(body)) == (200, "application/json", {"status": "ok"})
    assert f"status_page_port={port}" in node.log()
    assert "no studies" in _get(port, "/")[2].lower()

    ds = make_dx(patient_id="WEB-1", patient_name="Hidden^Name")
    ds.StudyDescription = MARKUP
    image = tmp_path / "hip.dcm"
    ds.save_as(image, enforce_file_format=True)
    sent = subprocess.run([require_tool("storescu"), "-aec", node.ae_title, "127.0.0.1", str(node.port), str(image)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert sent.returncode == 0, sent.stderr

    def listed() -> dict | None:
        view = json.loads(_get(port, "/api/status")[2])
        return view if view["studies"] else None

    view = wait_for(listed, timeout=20, msg="the study on /api/status")
    (study,) = view["studies"]
    assert study["study_instance_uid"] == ds.StudyInstanceUID and study["patient_id"] == "WEB-1"
    assert [i["sop_instance_uid"] for i in study["images"]] == [ds.SOPInstanceUID]
    assert study["images"][0]["verdict"] == "pending", "no workers: nothing has judged the image yet"
    assert view["summary"]["images_received"] == 1

    status, kind, page = _get(port, f"/?study={ds.StudyInstanceUID}")
    assert status == 200 and kind.startswith("text/html")
    assert ds.SOPInstanceUID in page and "&lt;b&gt;HIP&lt;/b&gt; &amp; PELVIS" in page and "<b>HIP" not in page
    assert "Hidden" not in page
    assert _get(port, "/nothing-here")[0] == 404
    status, kind, metrics = _get(port, "/metrics")
    assert status == 200 and kind.startswith("text/plain")
    samples = dict(line.rsplit(" ", 1) for line in metrics.splitlines() if not line.startswith("#"))
    assert samples["hipnode_images_received"] == "1" and samples['hipnode_deliveries{state="dead"}'] == "0"
    studies = {k: int(v) for k, v in samples.items() if k.startswith("hipnode_studies{")}
    assert set(studies) == {f'hipnode_studies{{state="{s}"}}' for s in ("receiving", "complete", "reopened")}
    assert sum(studies.values()) == 1 and "# TYPE hipnode_jobs gauge" in metrics

    assert node.stop() == 0
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5)


def test_the_page_is_off_unless_asked_for(tmp_path: Path) -> None:
    plain = NodeProcess(tmp_path / "node", env=NO_WORKERS).start()
    try:
        log = plain.log()
        assert "status_page_port=None" in log and "status page listening" not in log
    finally:
        plain.close()
