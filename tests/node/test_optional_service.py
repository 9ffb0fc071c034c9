"""A missing optional service is logged and skipped, not a crash."""

from __future__ import annotations

import logging

import pytest

from node.app import _optional_service


def test_a_missing_service_module_is_logged_and_skipped(caplog: pytest.LogCaptureFixture) -> None:
    # A LogRecord field name in ``extra`` (such as "module") makes logging raise KeyError instead.
    with caplog.at_level(logging.WARNING, logger="node.app"):
        assert _optional_service("node.no_such_service_module", "Service", None, None) is None  # type: ignore[arg-type]
    (record,) = [r for r in caplog.records if "service not available" in r.getMessage()]
    assert record.service_module == "node.no_such_service_module"  # type: ignore[attr-defined]


def test_a_missing_dependency_of_an_existing_service_is_not_hidden(tmp_path, monkeypatch) -> None:
    """Only the service's own module may be absent; a module it fails to import must surface."""
    (tmp_path / "hipnode_tmp_service.py").write_text("import hipnode_no_such_dependency\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError, match="hipnode_no_such_dependency"):
        _optional_service("hipnode_tmp_service", "Service", None, None)  # type: ignore[arg-type]
