"""``hipnode serve`` and ``hipnode config``: association checks, TLS, limits, timeouts, configuration."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pynetdicom import AE
from pynetdicom.sop_class import Verification

from node.config import MAX_AUTO_RECEIVERS, Settings
from tests.conftest import (
    NO_WORKERS,
    REPO_ROOT,
    NodeProcess,
    free_port,
    require_tool,
    storescu_responses,
    wait_for,
)
from tests.factories import write_dx


def echoscu(
    node: NodeProcess, calling: str = "ECHOSCU", called: str | None = None, *extra: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            require_tool("echoscu"),
            "-v",
            "-aet",
            calling,
            "-aec",
            called or node.ae_title,
            *extra,
            "127.0.0.1",
            str(node.port),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


def hipnode(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "node", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def test_echo_wrong_called_ae_and_allow_list(start_node) -> None:  # type: ignore[no-untyped-def]
    node = start_node(env=NO_WORKERS, config={"allowed_calling_aets": ["MODALITY1", "ECHOSCU"]})
    assert echoscu(node).returncode == 0
    wrong_called = echoscu(node, "ECHOSCU", "NOT_THE_NODE")
    assert (
        wrong_called.returncode != 0
        and "Association Rejected" in wrong_called.stdout + wrong_called.stderr
    )
    unknown_calling = echoscu(node, "STRANGER")
    assert unknown_calling.returncode != 0
    assert "Association Rejected" in unknown_calling.stdout + unknown_calling.stderr
    wait_for(lambda: node.log().count("outcome=rejected") >= 2, timeout=10, msg="rejections logged")
    assert "calling_aet=STRANGER" in node.log()


def test_released_associations_are_logged_released(start_node) -> None:  # type: ignore[no-untyped-def]
    """echoscu closes as soon as it has our A-RELEASE-RP, often before pynetdicom's
    EVT_RELEASED fires: the association line must still say released, not aborted."""
    node = start_node(env=NO_WORKERS)
    for _ in range(15):
        assert echoscu(node).returncode == 0
    wait_for(
        lambda: node.log().count("calling_aet=ECHOSCU") >= 15,
        timeout=10,
        msg="association lines",
    )
    lines = [line for line in node.log().splitlines() if "node.scp association" in line]
    assert lines and all("outcome=released" in line for line in lines), lines


def test_association_limit(start_node) -> None:  # type: ignore[no-untyped-def]
    node = start_node(env=NO_WORKERS, config={"maximum_associations": 1})
    ae = AE(ae_title="HOLDER")
    ae.add_requested_context(Verification)
    held = ae.associate("127.0.0.1", node.port, ae_title=node.ae_title)
    assert held.is_established
    try:
        over = echoscu(node)
        assert over.returncode != 0 and "Local Limit Exceeded" in over.stdout + over.stderr
    finally:
        held.release()
    wait_for(lambda: echoscu(node).returncode == 0, timeout=20, msg="a free association slot")


def test_association_limit_holds_for_the_whole_node_across_receiver_processes(start_node) -> None:  # type: ignore[no-untyped-def]
    node = start_node(env=NO_WORKERS, config={"maximum_associations": 2, "receiver_processes": 2})
    ae = AE(ae_title="HOLDER")
    ae.add_requested_context(Verification)
    held = [ae.associate("127.0.0.1", node.port, ae_title=node.ae_title) for _ in range(2)]
    try:
        assert all(a.is_established for a in held)
        # The kernel spreads connections over both processes by address hash: counted per
        # process, some of these would land on a process holding fewer than 2 and pass.
        for _ in range(6):
            over = echoscu(node)
            assert over.returncode != 0 and "Local Limit Exceeded" in over.stdout + over.stderr
    finally:
        for a in held:
            a.release()
    wait_for(lambda: echoscu(node).returncode == 0, timeout=20, msg="a free association slot")


def test_acse_timeout_closes_silent_connections(start_node) -> None:  # type: ignore[no-untyped-def]
    node = start_node(
        env=NO_WORKERS, config={"timeouts": {"acse_seconds": 1.0, "network_seconds": 1.0}}
    )
    with socket.create_connection(("127.0.0.1", node.port), timeout=30) as sock:
        start = time.monotonic()
        while sock.recv(1024):  # never sends A-ASSOCIATE-RQ; a timeout here (30 s) fails the test
            pass
        elapsed = time.monotonic() - start
    assert 0.5 < elapsed < 20, f"silent connection closed after {elapsed:.1f} s"


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(
        [require_tool("openssl"), *args], cwd=cwd, check=True, capture_output=True, timeout=60
    )


def _make_pki(directory: Path) -> None:
    """A CA and two certificates it signs (node and client), RSA 2048, valid one day."""
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "1",
        "-subj",
        "/CN=HipNode test CA",
        cwd=directory,
    )
    for name in ("node", "client"):
        _openssl(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            f"{name}.key",
            "-out",
            f"{name}.csr",
            "-subj",
            f"/CN={name}",
            cwd=directory,
        )
        _openssl(
            "x509",
            "-req",
            "-in",
            f"{name}.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            f"{name}.crt",
            "-days",
            "1",
            cwd=directory,
        )


def test_tls_with_client_certificates(start_node, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    pki = tmp_path / "pki"
    pki.mkdir()
    _make_pki(pki)
    node = start_node(
        env=NO_WORKERS,
        config={
            "tls": {
                "enabled": True,
                "cert_file": str(pki / "node.crt"),
                "key_file": str(pki / "node.key"),
                "ca_file": str(pki / "ca.crt"),
            }
        },
    )
    image = write_dx(tmp_path / "tls.dcm", rows=32, columns=32)
    result = subprocess.run(
        [
            require_tool("storescu"),
            "-v",
            "-aec",
            node.ae_title,
            "+tls",
            str(pki / "client.key"),
            str(pki / "client.crt"),
            "+cf",
            str(pki / "ca.crt"),
            "127.0.0.1",
            str(node.port),
            str(image),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert storescu_responses(result.stdout + result.stderr) == {str(image): "Success"}, (
        result.stderr
    )
    plain = subprocess.run(
        [require_tool("storescu"), "-aec", node.ae_title, "127.0.0.1", str(node.port), str(image)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert plain.returncode != 0  # no TLS, no association
    no_client_cert = subprocess.run(
        [
            require_tool("echoscu"),
            "-aec",
            node.ae_title,
            "+tla",
            "+cf",
            str(pki / "ca.crt"),
            "127.0.0.1",
            str(node.port),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert no_client_cert.returncode != 0  # the node requires a certificate signed by its CA


def test_sigterm_stops_cleanly(start_node) -> None:  # type: ignore[no-untyped-def]
    node = start_node(env=NO_WORKERS)
    # The default receives on one process per usable core (at most 4).
    expected = min(len(os.sched_getaffinity(0)), MAX_AUTO_RECEIVERS)
    assert f"receiver_processes={expected}" in node.log()
    assert node.stop() == 0
    assert "node stopped" in node.log()


def test_receiver_processes_auto_resolves_to_the_usable_cores() -> None:
    cores = len(os.sched_getaffinity(0))
    assert Settings().receiver_processes == "auto"
    assert Settings().receiver_process_count == min(cores, MAX_AUTO_RECEIVERS)
    assert Settings(receiver_processes=3).receiver_process_count == 3
    assert Settings(receiver_processes="2").receiver_process_count == 2  # an environment value


def test_config_show_reflects_file_env_and_defaults(tmp_path: Path) -> None:
    config = tmp_path / "node.toml"
    config.write_text(
        'ae_title = "FROMFILE"\nport = 4242\n[completion]\nquiet_seconds = 3.5\n', encoding="utf-8"
    )
    shown = hipnode(
        "config",
        "show",
        "--config",
        str(config),
        "--format",
        "json",
        env={"HIPNODE_PORT": "5151", "HIPNODE_STORAGE_DIR": str(tmp_path / "s")},
    )
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    assert data["ae_title"] == "FROMFILE" and data["port"] == 5151  # env beats file
    assert data["completion"]["quiet_seconds"] == 3.5
    assert data["effective_database_url"].endswith("/s/hipnode.sqlite3")
    toml_text = hipnode("config", "show", "--config", str(config)).stdout
    assert 'ae_title = "FROMFILE"' in toml_text and "[completion]" in toml_text
    # What `config show` prints is itself a valid config file.
    round_trip = tmp_path / "shown.toml"
    round_trip.write_text(toml_text, encoding="utf-8")
    assert hipnode("config", "check", "--config", str(round_trip)).returncode == 0


@pytest.mark.parametrize(
    ("content", "field"),
    [
        ("maximum_associations = 0\n", "maximum_associations"),
        ('[timeouts]\nacse_seconds = "soon"\n', "timeouts.acse_seconds"),
        ('ae_title = "THIS_AE_TITLE_IS_TOO_LONG"\n', "ae_title"),
        ("[tls]\nenabled = true\n", "tls"),
        ("[completion]\nquiet_seconds = -1\n", "completion.quiet_seconds"),
        ("prot = 11112\n", "prot"),
        ("receiver_processes = 0\n", "receiver_processes"),
        ('receiver_processes = "many"\n', "receiver_processes"),
    ],
)
def test_bad_config_fails_at_start_naming_the_field(
    tmp_path: Path, content: str, field: str
) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(content, encoding="utf-8")
    served = hipnode(
        "serve",
        "--config",
        str(config),
        "--storage",
        str(tmp_path / "s"),
        "--port",
        str(free_port()),
    )
    assert served.returncode == 2
    assert f"{field}" in served.stderr and "invalid configuration" in served.stderr
    assert not (tmp_path / "s").exists()  # nothing was started or created
    assert hipnode("config", "check", "--config", str(config)).returncode == 2


def test_bad_flag_fails_naming_the_field(tmp_path: Path) -> None:
    served = hipnode("serve", "--storage", str(tmp_path / "s"), "--port", "70000")
    assert served.returncode == 2 and "port" in served.stderr


def test_flags_override_the_file(start_node, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    node = start_node(env=NO_WORKERS, config={"ae_title": "FILEAE", "port": 1})
    # NodeProcess passes --aet/--port/--storage: they win over the file's values.
    assert echoscu(node).returncode == 0
    assert f"port={node.port}" in node.log() and "ae_title=HIPNODE" in node.log()
