"""Orthanc as the harness PACS: its configuration and a small REST/QIDO client."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from harness.netns import NetNamespace

PLUGIN_DIR = Path("/usr/share/orthanc/plugins")
PLUGINS = [PLUGIN_DIR / "libOrthancDicomWeb.so", PLUGIN_DIR / "libOrthancPython.so"]
ROUTING_SCRIPT = Path(__file__).resolve().parents[1] / "routing.py"
ORTHANC_BINARY = Path("/usr/sbin/Orthanc")


def orthanc_config(work_dir: Path, *, aet: str, dicom_port: int, http_port: int, routing_mode: str,
                   node_aet: str, node_host: str, node_port: int, stable_age_s: int) -> dict[str, Any]:
    """The JSON configuration of one harness Orthanc (storage under ``work_dir``)."""
    for plugin in PLUGINS:
        if not plugin.exists():
            raise FileNotFoundError(f"{plugin} is missing: run deploy/install-system-deps.sh")
    return {
        "Name": "hipnode-harness",
        "StorageDirectory": str(work_dir / "storage"),
        "IndexDirectory": str(work_dir / "index"),
        "HttpPort": http_port,
        "DicomPort": dicom_port,
        "DicomAet": aet,
        "DicomCheckCalledAet": False,
        "RemoteAccessAllowed": True,
        "AuthenticationEnabled": False,
        "SaveJobs": False,
        "StableAge": stable_age_s,
        "OverwriteInstances": False,
        "DicomModalities": {"hipnode": [node_aet, node_host, node_port]},
        "UserMetadata": {"HipNodeRouted": 4096},
        "Plugins": [str(p) for p in PLUGINS],
        "PythonScript": str(ROUTING_SCRIPT),
        "PythonVerbose": False,
        # No "Host" here: BulkDataURIs then follow the request's Host header (behind the proxy).
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": True, "WadoRoot": "/wado",
                     "Ssl": False, "StudiesMetadata": "Full", "SeriesMetadata": "Full"},
        "HipNodeRouting": {"Mode": routing_mode, "Modality": "hipnode", "NodeAet": node_aet},
    }


def write_config(path: Path, config: dict[str, Any]) -> Path:
    for key in ("StorageDirectory", "IndexDirectory"):
        Path(config[key]).mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config, indent=2), encoding="utf-8")
    return path


class OrthancClient:
    """REST and DICOMweb calls to the harness Orthanc, made from inside its namespace."""

    def __init__(self, netns: NetNamespace | None, base_url: str, timeout_s: float = 15.0) -> None:
        self._netns = netns
        self.base_url = base_url.rstrip("/")
        self._timeout_s = timeout_s

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        req = urllib.request.Request(self.base_url + path, data=body, method=method, headers=headers or {})
        if self._netns is None:
            return self._send(req)
        with self._netns.entered():
            return self._send(req)

    def _send(self, req: urllib.request.Request) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(req, timeout=self._timeout_s) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def get_json(self, path: str) -> Any:
        status, body = self.request("GET", path, headers={"Accept": "application/json"})
        if status != 200:
            raise RuntimeError(f"GET {path}: HTTP {status}: {body[:300]!r}")
        return json.loads(body) if body else None

    def post_json(self, path: str, payload: Any) -> Any:
        status, body = self.request("POST", path, json.dumps(payload).encode(), {"Content-Type": "application/json"})
        if status != 200:
            raise RuntimeError(f"POST {path}: HTTP {status}: {body[:300]!r}")
        return json.loads(body) if body else None

    def system(self) -> dict[str, Any]:
        return self.get_json("/system")

    def find_study(self, study_uid: str) -> str | None:
        """Orthanc's ID of the study with this StudyInstanceUID, or ``None``."""
        status, body = self.request("POST", "/tools/lookup", study_uid.encode())
        if status != 200:
            raise RuntimeError(f"lookup {study_uid}: HTTP {status}")
        for item in json.loads(body):
            if item["Type"] == "Study":
                return item["ID"]
        return None

    def study_series(self, study_uid: str) -> list[dict[str, Any]]:
        """The study's series with their MainDicomTags (empty when the study is unknown)."""
        study_id = self.find_study(study_uid)
        return [] if study_id is None else self.get_json(f"/studies/{study_id}/series")

    def qido(self, path: str, **params: str) -> list[dict[str, Any]]:
        """A QIDO-RS query under ``/dicom-web`` (DICOM JSON answers)."""
        query = ("?" + urllib.parse.urlencode(params)) if params else ""
        status, body = self.request("GET", "/dicom-web" + path + query, headers={"Accept": "application/dicom+json"})
        if status == 204 or not body:
            return []
        if status != 200:
            raise RuntimeError(f"QIDO {path}: HTTP {status}: {body[:300]!r}")
        return json.loads(body)

    def instance_metadata(self, instance_id: str) -> dict[str, str]:
        return self.get_json(f"/instances/{instance_id}/metadata?expand")
