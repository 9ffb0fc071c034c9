"""OHIF in headless Chromium reads the results: radiograph, SEG overlay, colour map, SR.

One stack for the module (starting OHIF costs more than the checks). The viewer
script (``viewer/check-viewer.mjs``) measures; this test decides what must hold.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from collections.abc import Iterator
from typing import Any
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
SC_MIN_COLOURED_SHARE = 0.25
"""Of the colour SC's share of coloured pixels, the least that must be coloured on screen."""
COLOUR_SPREAD = 24  # a pixel is coloured when max(R,G,B) - min(R,G,B) exceeds this (as in check-viewer.mjs)


def coloured_fraction(ds: Any) -> float:
    """The share of an RGB image's pixels that are coloured, not grey (the viewer script's measure)."""
    import numpy as np

    rgb = ds.pixel_array.astype(np.int16)
    return float(((rgb.max(axis=-1) - rgb.min(axis=-1)) > COLOUR_SPREAD).mean())


class Loaded:
    def __init__(self, stack: HarnessStack, pair: SyntheticPair, post: StudyResults, artifacts: Path) -> None:
        self.stack, self.pair, self.post, self.artifacts = stack, pair, post, artifacts


@contextlib.contextmanager
def _load(receiver: str, encoders: str, name: str, tmp: Path) -> Iterator[Loaded]:
    """A stack with one routed pair whose results are in Orthanc; artifacts under ``artifacts/harness/<name>``."""
    artifacts = REPO_ROOT / "artifacts" / "harness" / name
    shutil.rmtree(artifacts, ignore_errors=True)
    artifacts.mkdir(parents=True)
    pair = make_pair(tmp)
    options = StackOptions(routing_mode="on-stored", receiver=receiver, node_aet=NODE_AET,  # type: ignore[arg-type]
                           viewer=True, artifacts_dir=artifacts)
    with HarnessStack(options) as stack:
        stack.send_to_orthanc([pair.pre, pair.post], calling_aet="MODALITY")
        if receiver == "storescp":
            files = wait_for(lambda: len(f := stack.received_files()) >= 2 and f, 30, "the routed pair")
            send_stand_in_results(stack, files, NODE_AET, encoders=encoders)  # type: ignore[arg-type]
        post = wait_for_results(stack, pair.post_study_uid, ("SEG", "SR", "OT"), 180 if receiver == "node" else 30)
        yield Loaded(stack, pair, post, artifacts)


@pytest.fixture(scope="module")
def loaded(harness_installed: None, receiver: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loaded]:
    """Results from the configured receiver: the harness's stand-in objects, or the node's own."""
    with _load(receiver, "harness", "viewer", tmp_path_factory.mktemp("viewer-pair")) as loaded_stack:
        yield loaded_stack


@pytest.fixture(scope="module")
def node_encoders_report(harness_installed: None, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """What OHIF shows of the objects ``node.results`` encodes (known masks, no model weights needed)."""
    with _load("storescp", "node", "viewer-node-encoders", tmp_path_factory.mktemp("enc-pair")) as loaded_stack:
        return _run_viewer(loaded_stack, sc_word="difference")


def _run_viewer(loaded: Loaded, sc_word: str = "") -> dict[str, Any]:
    """Run ``check-viewer.mjs`` on the post-op study; its JSON report (also saved as an artifact)."""
    stack, post = loaded.stack, loaded.post
    dx_series = [s for s in stack.orthanc.study_series(loaded.pair.post_study_uid)
                 if s["MainDicomTags"].get("Modality") == "DX"]
    sc_series = post.series_number("OT", sc_word)
    sc = next(ds for ds in post.by_modality["OT"] if int(ds.SeriesNumber) == sc_series)
    args = {
        "baseUrl": stack.viewer_base_url, "studyUid": loaded.pair.post_study_uid,
        "studyTexts": ["XR PELVIS AP POSTOP", "XR PELVIS AP PREOP"],
        "imageSeries": int(dx_series[0]["MainDicomTags"]["SeriesNumber"]),
        "segSeries": post.series_number("SEG"), "srSeries": post.series_number("SR"),
        "scSeries": sc_series, "scColouredFraction": round(coloured_fraction(sc), 5),
        "scMinColouredShare": SC_MIN_COLOURED_SHARE, "outDir": str(loaded.artifacts), "timeoutMs": 60000,
        "segTimeoutMs": 30000,
    }
    started = time.monotonic()
    proc = stack.run(["node", str(VIEWER_DIR / "check-viewer.mjs"), json.dumps(args)],
                     timeout_s=VIEWER_TIMEOUT_S, env=stack.viewer_env())
    (loaded.artifacts / "check-viewer.json").write_text(proc.stdout + proc.stderr)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    report["seconds"] = round(time.monotonic() - started, 1)
    report["args"] = args
    (loaded.artifacts / "check-viewer.json").write_text(json.dumps(report, indent=2))
    return report


def _assert_renders(report: dict[str, Any], *, seg: bool) -> None:
    """What a reader must see: both studies listed, the radiograph, the SR, the colour map (and the SEG)."""
    assert "error" not in report, report["error"]
    steps = report["steps"]
    assert steps["studyList"].get("found") == report["args"]["studyTexts"], steps["studyList"]
    radiograph = steps["radiograph"]
    assert "error" not in radiograph, radiograph["error"]
    assert radiograph["nonBlack"] > 0.3 * radiograph["pixels"], "the radiograph did not render"
    assert radiograph["coloured"] < 0.02 * radiograph["pixels"], "a grey radiograph has no colour yet"
    assert steps["sr"].get("listed") and "SR" in steps["sr"]["text"], steps["sr"]
    sc = steps["sc"]
    assert "error" not in sc, sc["error"]
    assert sc["nonBlack"] > 0.3 * sc["pixels"], "the colour difference map did not render (black viewport)"
    # A real map is grey where the pair agrees and coloured only where it differs: ask for the
    # colour the file itself has (scaled down to the viewport: resampling softens thin edges).
    in_file = report["args"]["scColouredFraction"]
    assert in_file > 0.001, f"the colour map under test is grey ({in_file:.2%} coloured): nothing to check"
    assert sc["coloured"] >= SC_MIN_COLOURED_SHARE * in_file * sc["nonBlack"], (
        f"the colour difference map did not render in colour: {sc['coloured'] / sc['nonBlack']:.2%} of the "
        f"image coloured on screen, {in_file:.2%} in the file")
    if seg:
        overlay = steps["seg"]
        assert "error" not in overlay, overlay["error"][:500]
        assert overlay["coloured"] - radiograph["coloured"] > 0.03 * overlay["pixels"], "no SEG overlay colours"
        assert overlay["nonBlack"] > 0.3 * overlay["pixels"], "the radiograph vanished under the overlay"
        crashes = [e for e in report["consoleErrors"] if "TypeError" in e or "ReferenceError" in e]
        assert not crashes, crashes


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


def test_same_origin_shows_what_the_node_made_of_the_study(loaded: Loaded, receiver: str) -> None:
    """``/hipnode/`` on the viewer's origin is the node's status page (``hipnode demo`` prints its URL)."""
    from harness.orthanc import OrthancClient

    via_proxy = OrthancClient(loaded.stack.netns, loaded.stack.viewer_base_url or "")
    status, body = via_proxy.request("GET", f"/hipnode/api/status?study={loaded.pair.post_study_uid}")
    if receiver == "storescp":  # no node, no page: the path is one of OHIF's app routes
        assert status == 200 and b"<html" in body.lower()
        return
    assert status == 200, body[:300]
    (study,) = json.loads(body)["studies"]
    assert study["study_instance_uid"] == loaded.pair.post_study_uid
    assert [i["verdict"] for i in study["images"]] == ["analysed"], study["images"]
    assert study["jobs"] and all(j["state"] == "done" for j in study["jobs"]), study["jobs"]
    assert study["results"]["deliveries"].get("done", 0) >= 3 and study["results"]["dead"] == []
    status, page = via_proxy.request("GET", f"/hipnode/?study={loaded.pair.post_study_uid}")
    assert status == 200 and loaded.pair.sop_uids["post"].encode() in page
    assert f'href="?study={loaded.pair.post_study_uid}"'.encode() in page, "links stay under the prefix"
    assert via_proxy.request("GET", "/hipnode/healthz")[0] == 200


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
    report = _run_viewer(loaded)
    _assert_renders(report, seg=True)
    for name in ("study-list", "radiograph", "seg-overlay", "colour-map"):
        assert (loaded.artifacts / f"{name}.png").stat().st_size > 1000


def test_ohif_shows_the_node_encoders_radiograph_sr_and_colour_map(node_encoders_report: dict[str, Any]) -> None:
    _assert_renders(node_encoders_report, seg=False)


def test_ohif_shows_the_node_encoders_seg_overlay(node_encoders_report: dict[str, Any]) -> None:
    _assert_renders(node_encoders_report, seg=True)
