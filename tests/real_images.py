"""Real DICOM images from pydicom's test data (the ``pydicom-data`` package, MIT), for bad-input checks.

The project has no real hip radiographs, but pydicom's test data holds a real
CR chest (``RG1_*``), a real CR distal tibia (``RG3_*``) and ultrasound, MR and
CT images. ``pydicom-data`` is a test dependency (``pyproject.toml``); nothing
is downloaded at test time.
"""

from __future__ import annotations

from pathlib import Path

from pydicom import Dataset, dcmread


def pydicom_test_file(name: str) -> Path:
    """The path of one pydicom test file; FileNotFoundError (saying what to install) when absent."""
    from pydicom.data import get_testdata_file

    source = get_testdata_file(name, download=False)
    if source is None:
        raise FileNotFoundError(f"{name} not found among pydicom's test files: pip install pydicom-data")
    return Path(source)


def with_hip_film_header(name: str) -> Dataset:
    """A pydicom test image whose header now claims an AP pelvis radiograph (CR, PELVIS, AP)."""
    ds = dcmread(pydicom_test_file(name))
    ds.Modality, ds.BodyPartExamined, ds.ViewPosition = "CR", "PELVIS", "AP"
    return ds
