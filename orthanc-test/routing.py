"""Orthanc Python plugin: auto-route hip radiographs to the HipNode node.

Runs inside Orthanc's embedded Python (Debian's python3, not the project venv),
so it uses the standard library only. Settings come from the ``HipNodeRouting``
section of Orthanc's configuration:

``Mode``            ``"on-stored"`` routes each instance as soon as it is stored;
                    ``"stable-study"`` routes a study's instances once the study
                    has been quiet for Orthanc's ``StableAge``.
``Modality``        the ``DicomModalities`` key of the node (default ``"hipnode"``).
``NodeAet``         the node's AE title: instances it sent (its results) are never
                    routed back, or a stable study would bounce forever.
``Modalities``      DICOM Modality values worth routing (default CR, DX).
``BodyParts``       BodyPartExamined values that make an instance a hip image.
``DescriptionWords`` words in Study/Series/Protocol descriptions that do the same.

Every routed instance gets the user metadata ``HipNodeRouted`` (declared in
``UserMetadata``), so an instance is routed at most once, across restarts too.
"""

import json
import threading

import orthanc

_DEFAULTS = {
    "Mode": "on-stored",
    "Modality": "hipnode",
    "NodeAet": "HIPNODE",
    "Modalities": ["CR", "DX"],
    "BodyParts": ["HIP", "PELVIS", "LOWER LIMB", "LEG", "FEMUR"],
    "DescriptionWords": ["hip", "pelvis", "pelvic", "becken", "hüfte", "huefte", "tha", "arthroplasty"],
}
_ROUTED = "HipNodeRouted"
_LOCK = threading.Lock()  # one routing decision at a time: "route once" must not race


def _settings():
    config = json.loads(orthanc.GetConfiguration())
    settings = dict(_DEFAULTS)
    settings.update(config.get("HipNodeRouting", {}))
    if settings["Mode"] not in ("on-stored", "stable-study"):
        raise ValueError("HipNodeRouting.Mode must be 'on-stored' or 'stable-study', not %r" % settings["Mode"])
    return settings


SETTINGS = _settings()


def _get_json(uri):
    return json.loads(orthanc.RestApiGet(uri))


def _metadata(instance_id, name):
    try:
        return orthanc.RestApiGet("/instances/%s/metadata/%s" % (instance_id, name)).decode("utf-8", "replace")
    except Exception:  # absent metadata answers 404, which the SDK raises
        return None


def _is_hip_image(tags):
    """A CR/DX instance whose body part or descriptions name the hip or pelvis."""
    if tags.get("Modality", "").upper() not in SETTINGS["Modalities"]:
        return False
    if tags.get("BodyPartExamined", "").strip().upper() in SETTINGS["BodyParts"]:
        return True
    text = " ".join(tags.get(k, "") for k in ("StudyDescription", "SeriesDescription", "ProtocolName")).lower()
    return any(word in text for word in SETTINGS["DescriptionWords"])


def _should_route(instance_id):
    if _metadata(instance_id, _ROUTED) is not None:
        return False
    remote = (_metadata(instance_id, "RemoteAET") or "").strip()
    if remote == SETTINGS["NodeAet"]:  # loop guard: the node's own results
        return False
    return _is_hip_image(_get_json("/instances/%s/simplified-tags" % instance_id))


def _route(instance_ids):
    """Queue an asynchronous C-STORE job to the node and mark the instances routed."""
    if not instance_ids:
        return
    body = {"Resources": instance_ids, "Synchronous": False}
    job = json.loads(orthanc.RestApiPost("/modalities/%s/store" % SETTINGS["Modality"], json.dumps(body)))
    for instance_id in instance_ids:
        orthanc.RestApiPut("/instances/%s/metadata/%s" % (instance_id, _ROUTED), job.get("ID", "queued"))
    orthanc.LogWarning("hipnode routing: %d instance(s) -> %s (job %s)" % (
        len(instance_ids), SETTINGS["Modality"], job.get("ID")))


def _on_change(change_type, level, resource_id):
    try:
        with _LOCK:
            if SETTINGS["Mode"] == "on-stored" and change_type == orthanc.ChangeType.NEW_INSTANCE:
                if _should_route(resource_id):
                    _route([resource_id])
            elif SETTINGS["Mode"] == "stable-study" and change_type == orthanc.ChangeType.STABLE_STUDY:
                instances = [i["ID"] for i in _get_json("/studies/%s/instances" % resource_id)]
                _route([i for i in instances if _should_route(i)])
    except Exception as exc:  # never let one bad instance stop routing for the others
        orthanc.LogError("hipnode routing failed for %s %s: %s" % (level, resource_id, exc))


orthanc.RegisterOnChangeCallback(_on_change)
orthanc.LogWarning("hipnode routing loaded: mode %s, node %s (%s)" % (
    SETTINGS["Mode"], SETTINGS["Modality"], SETTINGS["NodeAet"]))
