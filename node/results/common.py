"""What every result object shares: series layout, identity, patient/study copy.

Each result kind lives in its own series of the patient's study, with a
series number and a description that mark it as AI-generated. The node's own
identity (manufacturer, software version, device UID) and the models'
identities (Contributing Equipment) are filled the same way in every object.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import highdicom as hd
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

from models.algorithms.results import AlgorithmInfo, ImageAnalysis
from node.results import codes as hn_codes
from node.results.uids import NAMESPACE

# kind -> (Series Number, Series Description). Numbers sit far above what
# modalities use, so results sort after the images in a viewer.
SERIES: dict[str, tuple[int, str]] = {
    "seg": (9101, "HipNode AI SEG"),
    "sr": (9102, "HipNode AI SR measurements"),
    "sr_pair": (9103, "HipNode AI SR pre/post comparison"),
    "cdm_sc": (9104, "HipNode AI colour difference map"),
    "overlay_sc": (9105, "HipNode AI overlay"),
}

# Patient, Patient Study and General Study attributes that highdicom does not
# copy from the source but that belong to the same patient and study; copied
# when present so dcentvfy and the pairing (PatientID + Issuer) see one study.
_CARRIED_KEYWORDS: tuple[str, ...] = (
    "IssuerOfPatientID",
    "IssuerOfPatientIDQualifiersSequence",
    "OtherPatientIDsSequence",
    "PatientBirthTime",
    "StudyDescription",
    "ProcedureCodeSequence",
    "PatientAge",
    "PatientSize",
    "PatientWeight",
)


class EncodingError(ValueError):
    """The inputs cannot be encoded as a valid result; ``str()`` says why."""


@dataclass(frozen=True)
class NodeIdentity:
    """The equipment that writes the results (General/Enhanced General Equipment)."""

    manufacturer: str = "HipNode"
    model_name: str = "HipNode node"
    software_version: str = "0.1.0"
    device_serial_number: str = "hipnode-0"
    institution_name: str | None = None
    device_uid: str = field(
        default_factory=lambda: str(hd.UID.from_uuid(str(uuid.uuid5(NAMESPACE, "device|hipnode-0"))))
    )


DEFAULT_IDENTITY = NodeIdentity()


# Type 2 patient/study attributes highdicom reads from the reference image
# unconditionally; a source that lacks one gets it empty (Type 2 allows that).
_TYPE2_KEYWORDS: tuple[str, ...] = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "AccessionNumber",
    "StudyID",
    "ReferringPhysicianName",
)


def header_copy(source: Dataset, *, drop: Iterable[str] = ()) -> Dataset:
    """A copy of ``source`` without pixel data or ``drop`` keywords, Type 2 gaps filled empty.

    Encoders work on this copy: the source is never modified, highdicom never
    trips over a missing Type 2 attribute, and no pixel data is deep-copied.
    """
    header = Dataset()
    for element in source:
        if element.keyword in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"):
            continue
        if element.keyword in drop:
            continue
        header.add(copy.deepcopy(element))
    for keyword in _TYPE2_KEYWORDS:
        if keyword not in header:
            setattr(header, keyword, "")
    header.file_meta = copy.deepcopy(getattr(source, "file_meta", Dataset()))
    return header


def check_source(source: Dataset) -> None:
    """Raise :class:`EncodingError` unless ``source`` has what every result copies."""
    missing = [
        k
        for k in ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "Rows", "Columns")
        if k not in source
    ]
    if missing:
        raise EncodingError(f"source image lacks {', '.join(missing)}")
    if int(source.get("NumberOfFrames", 1) or 1) != 1:
        raise EncodingError("source is multi-frame; a single projection radiograph is expected")


def charset(source: Dataset) -> str | list[str] | None:
    """The source's Specific Character Set, carried through unchanged."""
    value = source.get("SpecificCharacterSet")
    if value is None:
        return None
    return list(value) if not isinstance(value, str) else str(value)


def carry_patient_study(target: Dataset, source: Dataset) -> None:
    """Copy the patient/study attributes highdicom leaves out."""
    for keyword in _CARRIED_KEYWORDS:
        if keyword in source and keyword not in target:
            target[keyword] = copy.deepcopy(source[keyword])


def algorithms_of(analysis: ImageAnalysis) -> tuple[AlgorithmInfo, ...]:
    """The analysis's algorithms; an unidentified result is refused."""
    if not analysis.algorithms:
        raise EncodingError("the analysis names no algorithm: results must identify the model and version")
    return analysis.algorithms


def algorithm_sequence(algorithm: AlgorithmInfo) -> hd.AlgorithmIdentificationSequence:
    """Algorithm Identification Sequence (SEG segments)."""
    return hd.AlgorithmIdentificationSequence(
        name=algorithm.name, family=codes.DCM.ArtificialIntelligence, version=algorithm.version
    )


def algorithm_template(algorithm: AlgorithmInfo) -> hd.sr.AlgorithmIdentification:
    """TID 4019 Algorithm Identification (SR groups and measurements)."""
    return hd.sr.AlgorithmIdentification(name=algorithm.name, version=algorithm.version)


def contributing_equipment(algorithms: Sequence[AlgorithmInfo]) -> list[hd.ContributingEquipment]:
    """One Contributing Equipment item per model that produced the content."""
    return [
        hd.ContributingEquipment(
            manufacturer=a.manufacturer,
            purpose_of_reference=codes.DCM.ProcessingEquipment,
            manufacturer_model_name=a.name,
            software_versions=a.version,
            contribution_description=f"AI algorithm {a.name} {a.version}",
        )
        for a in algorithms
    ]


def common_kwargs(kind: str, source: Dataset, identity: NodeIdentity) -> dict[str, object]:
    """Constructor arguments shared by every highdicom result class."""
    number, description = SERIES[kind]
    kwargs: dict[str, object] = {
        "series_number": number,
        "series_description": description,
        "coding_schemes": [hn_codes.LOCAL_SCHEME_ITEM],
        "specific_character_set": charset(source),
        "institution_name": identity.institution_name,
    }
    return kwargs


def instance_number(source: Dataset) -> int:
    """The source's Instance Number (results sort with their image), else 1."""
    try:
        value = int(source.get("InstanceNumber") or 1)
    except (TypeError, ValueError):
        return 1
    return value if value >= 1 else 1
