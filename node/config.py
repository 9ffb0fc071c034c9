"""One typed settings object for the node.

Sources, lowest to highest priority: defaults, a TOML file (``--config`` or
``HIPNODE_CONFIG``), environment variables ``HIPNODE_<FIELD>`` (nested with
``__``, e.g. ``HIPNODE_COMPLETION__QUIET_SECONDS=5``), then command-line flags.
A bad value fails at start with pydantic's message, which names the field.
"""

from __future__ import annotations

import os
import re
import tomllib
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

MAX_AUTO_RECEIVERS = 4  # beyond this the disk's fsyncs and SQLite's one writer are the limit, not the GIL
_AE_TITLE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")  # PS3.5 AE VR: no backslash, no control


def _check_ae(value: str) -> str:
    if not _AE_TITLE.match(value) or not value.strip():
        raise ValueError(f"{value!r} is not a valid AE title (1-16 printable characters, no backslash)")
    return value.strip()


class Strict(BaseModel):
    """Unknown keys are errors, so a typo in the TOML file fails loudly."""

    model_config = ConfigDict(extra="forbid")


class TlsSettings(Strict):
    """TLS for the SCP (and, per destination, for the SCU)."""

    enabled: bool = False
    cert_file: Path | None = None
    key_file: Path | None = None
    ca_file: Path | None = Field(None, description="CA bundle; when set, peers must present a certificate it signed")

    @model_validator(mode="after")
    def _files_when_enabled(self) -> TlsSettings:
        if self.enabled and (self.cert_file is None or self.key_file is None):
            raise ValueError("tls.enabled needs tls.cert_file and tls.key_file")
        return self


class Destination(Strict):
    """A C-STORE SCP the results are sent to."""

    name: str
    ae_title: str
    host: str
    port: int = Field(ge=1, le=65535)
    tls: bool = False
    enabled: bool = True

    _ae = field_validator("ae_title")(classmethod(lambda cls, v: _check_ae(v)))


class TimeoutSettings(Strict):
    """Seconds; ``None`` means wait forever (pynetdicom's meaning)."""

    acse_seconds: float = Field(30.0, gt=0)
    dimse_seconds: float = Field(60.0, gt=0)
    network_seconds: float = Field(60.0, gt=0)
    connection_seconds: float = Field(10.0, gt=0)


class CompletionSettings(Strict):
    """When a study counts as complete."""

    quiet_seconds: float = Field(10.0, gt=0, description="no new instance for this long completes the study")
    early_on_expected_views: bool = Field(True, description="complete at once when an AP pelvis/hip view arrived")
    early_delay_seconds: float = Field(1.0, ge=0, description="grace period after the expected view arrived")
    max_reopen: int = Field(5, ge=0, description="late instances re-open a completed study at most this often")


class OutboxSettings(Strict):
    """Retry policy of the result sender."""

    max_attempts: int = Field(8, ge=1)
    initial_backoff_seconds: float = Field(2.0, gt=0)
    max_backoff_seconds: float = Field(300.0, gt=0)
    jitter_fraction: float = Field(0.2, ge=0, le=1)
    poll_seconds: float = Field(1.0, gt=0)


class WebSettings(Strict):
    """The read-only status page (``/``, ``/api/status``, ``/healthz``, ``/metrics``); off unless enabled."""

    enabled: bool = False
    bind_address: str = Field("127.0.0.1", description="loopback by default: the page shows Patient IDs")
    port: int = Field(8080, ge=0, le=65535, description="0: any free port (tests)")
    studies_shown: int = Field(50, ge=1, description="most recent studies on the page")


class Settings(BaseSettings):
    """Effective configuration of one node process."""

    model_config = SettingsConfigDict(
        env_prefix="HIPNODE_", env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    ae_title: str = "HIPNODE"
    bind_address: str = "0.0.0.0"
    port: int = Field(11112, ge=1, le=65535)
    allowed_calling_aets: list[str] = Field(
        default_factory=list, description="empty list: any calling AE title is accepted"
    )
    require_called_aet: bool = True
    maximum_associations: int = Field(16, ge=1)
    maximum_pdu_size: int = Field(0, ge=0, description="0 = unlimited; large PDUs are much faster")
    receiver_processes: int | Literal["auto"] = Field(
        "auto",
        description="processes sharing the port (SO_REUSEPORT) to receive C-STOREs; 'auto': one "
        f"per usable CPU core, at most {MAX_AUTO_RECEIVERS} (one Python process, bound by the GIL, "
        "cannot keep up with several parallel senders)",
    )
    storage_dir: Path = Path("./hipnode-data")
    database_url: str | None = Field(None, description="default: sqlite file in storage_dir")
    max_storage_bytes: int | None = Field(None, gt=0, description="refuse with A700 above this size")
    direct_io: bool = Field(
        True,
        description="write received objects with O_DIRECT (they are fsync'd anyway, so the page "
        "cache copy is wasted CPU); falls back to buffered writes where the file system refuses",
    )
    destinations: list[Destination] = Field(default_factory=list)
    return_to_sender: bool = Field(
        True, description="send results to the calling AE of the study when it names a destination"
    )
    completion: CompletionSettings = CompletionSettings()
    outbox: OutboxSettings = OutboxSettings()
    timeouts: TimeoutSettings = TimeoutSettings()
    tls: TlsSettings = TlsSettings()
    web: WebSettings = WebSettings()
    workers: int = Field(1, ge=0, description="analysis worker processes (0: catalogue and forward only)")
    worker_niceness: int = Field(
        10, ge=0, le=19,
        description="scheduling priority of the worker processes below the receivers' (0: the same), so "
        "analysis takes only the CPU that receiving leaves; an idle machine runs it at full speed all the same",
    )
    prefetch: bool = Field(
        True,
        description="analyse each image while its study is still receiving, so the study job finds it "
        "done (the completion timer's idle time); used with one worker process only",
    )

    _ae = field_validator("ae_title")(classmethod(lambda cls, v: _check_ae(v)))

    @field_validator("allowed_calling_aets")
    @classmethod
    def _check_allow_list(cls, value: list[str]) -> list[str]:
        return [_check_ae(v) for v in value]

    @field_validator("receiver_processes")
    @classmethod
    def _check_receiver_processes(cls, value: int | str) -> int | str:
        if isinstance(value, int) and not 1 <= value <= 64:
            raise ValueError("must be 'auto' or a whole number from 1 to 64")
        return value

    @property
    def receiver_process_count(self) -> int:
        """How many processes receive C-STOREs, with ``"auto"`` resolved for this machine."""
        if self.receiver_processes == "auto":
            return max(1, min(len(os.sched_getaffinity(0)), MAX_AUTO_RECEIVERS))
        return self.receiver_processes

    @property
    def effective_database_url(self) -> str:
        """The database URL, defaulting to ``storage_dir/hipnode.sqlite3``."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.storage_dir / 'hipnode.sqlite3').resolve()}"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Flags (init) beat the environment, which beats the TOML file."""
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        toml_path = _TOML_PATH.get()
        if toml_path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_path))
        return tuple(sources)


_TOML_PATH: ContextVar[Path | None] = ContextVar("hipnode_toml_path", default=None)


def load_settings(config_file: Path | str | None = None, **flags: Any) -> Settings:
    """Load settings: defaults < TOML file (``config_file`` or ``HIPNODE_CONFIG``) < env < flags.

    Flags whose value is ``None`` are ignored (not given on the command line).
    Raises ``pydantic.ValidationError`` (naming the field) or ``ValueError`` when
    the file is missing or not valid TOML.
    """
    path_text = config_file or os.environ.get("HIPNODE_CONFIG")
    path = Path(path_text) if path_text else None
    if path is not None:
        if not path.is_file():
            raise ValueError(f"config file {path} does not exist")
        try:
            tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"config file {path}: {exc}") from exc
    token = _TOML_PATH.set(path)
    try:
        return Settings(**{k: v for k, v in flags.items() if v is not None})
    finally:
        _TOML_PATH.reset(token)
