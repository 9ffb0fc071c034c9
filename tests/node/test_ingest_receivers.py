"""Several receiver processes on one port (SO_REUSEPORT): all instances land once,
completion hears of every study, and the receivers die with a killed node."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pydicom
from sqlalchemy import func, select

from storage.models import Instance, Patient
from tests.conftest import NO_WORKERS, NodeProcess, require_tool, start_storescu_senders, storescu_responses, wait_for
from tests.factories import write_dx


def test_two_receiver_processes_share_the_port(start_node, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    node: NodeProcess = start_node(
        env=NO_WORKERS,
        config={
            "receiver_processes": 2,
            "completion": {"quiet_seconds": 0.5, "early_delay_seconds": 0.1},
        },
    )
    pids = re.search(r"receiver processes listening count=1 pids=(\d+)", node.log())
    assert pids is not None, node.log()
    child = int(pids.group(1))
    # Every receiver listens before the node answers its first C-ECHO; otherwise the
    # first senders all land on the main process.
    assert _listening_sockets(node.port) == 2
    # Same patient in every file: the processes race to create the patient row.
    batches = [
        [
            write_dx(
                tmp_path / f"s{s}" / f"{i}.dcm",
                rows=32,
                columns=32,
                seed=s * 100 + i,
                patient_id="SHARED",
            )
            for i in range(12)
        ]
        for s in range(4)
    ]
    senders = start_storescu_senders(node, batches)
    responses: dict[str, str] = {}
    for sender in senders:
        responses.update(storescu_responses(sender.communicate(timeout=120)[0]))
    assert len(responses) == 48 and all(r == "Success" for r in responses.values()), responses
    with node.session() as session:
        assert session.scalar(select(func.count(Instance.id))) == 48
        assert session.scalar(select(func.count(Patient.id))) == 1
    study_uids = {
        pydicom.dcmread(p, stop_before_pixels=True).StudyInstanceUID for b in batches for p in b
    }
    # Stored by either process, every study is completed by the main process's completion service.
    wait_for(
        lambda: all(
            uid in node.log() and f"study completed study_instance_uid={uid}" in node.log()
            for uid in study_uids
        ),
        timeout=30,
        msg="completion of all 48 studies",
    )

    node.kill()
    wait_for(
        lambda: not os.path.exists(f"/proc/{child}") or _zombie(child),
        timeout=15,
        msg="the receiver process to die with the node",
    )
    node.start()  # the port is free again
    assert (
        subprocess.run(
            [require_tool("echoscu"), "-aec", node.ae_title, "127.0.0.1", str(node.port)],
            capture_output=True,
            timeout=30,
        ).returncode
        == 0
    )


def _listening_sockets(port: int) -> int:
    """TCP sockets in LISTEN state on ``port`` (IPv4 and IPv6), from /proc/net."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                count += 1
    return count


def _zombie(pid: int) -> bool:
    try:
        return "State:\tZ" in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True


def test_sigterm_to_the_process_group_stops_everything(start_node) -> None:  # type: ignore[no-untyped-def]
    """systemd, ``timeout`` and a terminal signal the whole group: no receiver may hang."""
    node: NodeProcess = start_node(
        env=NO_WORKERS, config={"receiver_processes": 2}, preexec_fn=os.setsid
    )
    match = re.search(r"receiver processes listening count=1 pids=(\d+)", node.log())
    assert match is not None and node.proc is not None
    child = int(match.group(1))
    os.killpg(node.proc.pid, signal.SIGTERM)
    assert node.proc.wait(timeout=60) == 0
    wait_for(
        lambda: not os.path.exists(f"/proc/{child}") or _zombie(child),
        timeout=15,
        msg="the receiver process to exit",
    )
    assert "node stopped" in node.log()


SIGTERM_DURING_START = """
import os, signal, sys
import node.app as app
calls = []
def start(self):
    os.kill(os.getpid(), signal.SIGTERM)  # systemd stops the unit while it is still starting
    calls.append("started")
app.Node.start = start
app.Node.stop = lambda self: calls.append("stopped")
from node.cli import main
rc = main(["serve", "--storage", sys.argv[1], "--port", "11999"])
print("result", rc, calls)
"""


def test_a_sigterm_during_start_up_stops_the_node_cleanly(tmp_path: Path) -> None:
    """The stop handlers are in place before start(): the signal waits for start-up, then stops, not kills."""
    proc = subprocess.run([sys.executable, "-c", SIGTERM_DURING_START, str(tmp_path)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
    assert "result 0 ['started', 'stopped']" in proc.stdout
