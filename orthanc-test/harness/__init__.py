"""Orthanc + OHIF harness: a private network namespace holding Orthanc (DICOMweb +
Python routing plugin), a stand-in receiver or the real node, and a one-origin
proxy in front of the OHIF viewer. Everything it starts is torn down on exit."""

from harness.stack import HarnessStack, StackOptions

__all__ = ["HarnessStack", "StackOptions"]
