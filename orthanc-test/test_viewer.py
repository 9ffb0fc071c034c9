"""OHIF in headless Chromium reads the results: radiograph, SEG overlay, colour map, SR.

One stack for the module (starting OHIF costs more than the checks). The viewer
script (``viewer/check-viewer.mjs``) measures; this test decides what must hold.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import HarnessStack, StackOptions
from harness.pair import SyntheticPair, make_pair
from harness.processes import wait_for
from harness.results import StudyResults, send_stand_in_results, wait_for_results
from harness.stack import REPO_ROOT, VIEWER_DIR

pytestmark = [pytest.mark.harness, pytest.mark.usefixtures("harness_installed")]
VIEWER_TIMEOUT_S = 240
NODE_AET = "HIPNODE"


class Loaded:
    def __init__(self, stack: HarnessStack, pair: SyntheticPair, post: StudyResults) -> None:
        self.stack, self.pair, self.post = stack, pair, post


@pytest.fixture(scope="module")
def loaded(harness_installed: None, receiver: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loaded]:
    artifacts = REPO_ROOT / "artifacts" / "harness" / "viewer"
    artifacts.mkdir(parents=True, exist_ok=True)
    pair = make_pair(tmp_path_factory.mktemp("viewer-pair"))
    options = StackOptions(routing_mode="on-stored", receiver=receiver, node_aet=NODE_AET,  # type: ignore[arg-type]
                           viewer=True, artifacts_dir=artifacts)
    with HarnessStack(options) as stack:
        stack.send_to_orthanc([pair.pre, pair.post], calling_aet="MODALITY")
        if receiver == "storescp":
            files = wait_for(lambda: len(f := stack.received_files()) >= 2 and f, 30, "the routed pair")
            send_stand_in_results(stack, files, NODE_AET)  # type: ignore[arg-type]
        post = wait_for_results(stack, pair.post_study_uid, ("SEG", "SR", "OT"), 180 if receiver == "node" else 30)
        yield Loaded(stack, pair, post)


def test_proxy_serves_one_origin_with_isolation_headers(loaded: Loaded) -> None:
    from harness.orthanc import OrthancClient

    via_proxy = OrthancClient(loaded.stack.netns, loaded.stack.viewer_base_url or "")
    status, page = via_proxy.request("GET", "/viewer?StudyInstanceUIDs=1.2.3")
    assert status == 200 and b"<html" in page.lower(), "app routes fall back to index.html"
    status, config = via_proxy.request("GET", "/app-config.js")
    assert status == 200 and b"/dicom-web" in config
    assert via_proxy.request("GET", "/no-such-bundle.js")[0] == 404
    with loaded.stack.netns.entered():
        import urllib.request

        with urllib.request.urlopen(f"{loaded.stack.viewer_base_url}/", timeout=10) as resp:
            assert resp.headers["Cross-Origin-Opener-Policy"] == "same-origin"
            assert resp.headers["Cross-Origin-Embedder-Policy"] == "require-corp"
        with urllib.request.urlopen(f"{loaded.stack.viewer_base_url}/dicom-web/studies", timeout=10) as resp:
            assert resp.headers["Cross-Origin-Resource-Policy"] == "same-origin"


def test_proxy_decodes_encoded_commas_in_includefield(loaded: Loaded) -> None:
    """OHIF sends ``includefield=00081030%2C00080060``; Orthanc's DICOMweb 1.7 splits on ',' only."""
    from harness.orthanc import OrthancClient

    query = f"/dicom-web/studies?StudyInstanceUID={loaded.pair.post_study_uid}&includefield=00081030%2C00080060"
    direct = json.loads(loaded.stack.orthanc.request("GET", query, headers={"Accept": "application/dicom+json"})[1])
    via_proxy = OrthancClient(loaded.stack.netns, loaded.stack.viewer_base_url or "")
    proxied = json.loads(via_proxy.request("GET", query, headers={"Accept": "application/dicom+json"})[1])
    assert "00081030" not in direct[0], "the quirk is gone: the proxy workaround can go too"
    assert proxied[0]["00081030"]["Value"] == ["XR PELVIS AP POSTOP"]


def test_ohif_shows_radiograph_seg_overlay_colour_map_and_sr(loaded: Loaded) -> None:
    stack, post = loaded.stack, loaded.post
    out_dir = REPO_ROOT / "artifacts" / "harness" / "viewer"
    dx_series = [s for s in stack.orthanc.study_series(loaded.pair.post_study_uid)
                 if s["MainDicomTags"].get("Modality") == "DX"]
    args = {
        "baseUrl": stack.viewer_base_url, "studyUid": loaded.pair.post_study_uid,
        "studyTexts": ["XR PELVIS AP POSTOP", "XR PELVIS AP PREOP"],
        "imageSeries": int(dx_series[0]["MainDicomTags"]["SeriesNumber"]),
        "segSeries": post.series_numbers["SEG"], "srSeries": post.series_numbers["SR"],
        "scSeries": post.series_numbers["OT"], "outDir": str(out_dir), "timeoutMs": 60000,
    }
    started = time.monotonic()
    proc = stack.run(["node", str(VIEWER_DIR / "check-viewer.mjs"), json.dumps(args)],
                     timeout_s=VIEWER_TIMEOUT_S, env=stack.viewer_env())
    (out_dir / "check-viewer.json").write_text(proc.stdout + proc.stderr)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    report["seconds"] = round(time.monotonic() - started, 1)
    (out_dir / "check-viewer.json").write_text(json.dumps(report, indent=2))
    assert "error" not in report, report["error"]
    steps = report["steps"]

    assert steps["studyList"]["found"] == args["studyTexts"]
    radiograph = steps["radiograph"]
    assert radiograph["nonBlack"] > 0.3 * radiograph["pixels"], "the radiograph did not render"
    assert radiograph["coloured"] < 0.02 * radiograph["pixels"], "a grey radiograph has no colour yet"
    seg = steps["seg"]
    assert seg["coloured"] - radiograph["coloured"] > 0.03 * seg["pixels"], "no SEG overlay colours"
    assert seg["nonBlack"] > 0.3 * seg["pixels"], "the radiograph vanished under the overlay"
    sc = steps["sc"]
    assert sc["coloured"] > 0.3 * sc["pixels"], "the colour difference map did not render in colour"
    assert steps["sr"]["listed"] and "SR" in steps["sr"]["text"]
    crashes = [e for e in report["consoleErrors"] if "TypeError" in e or "ReferenceError" in e]
    assert not crashes, crashes
    for name in ("study-list", "radiograph", "seg-overlay", "colour-map"):
        assert (out_dir / f"{name}.png").stat().st_size > 1000
