"""Ingest throughput: the node vs DCMTK storescp, same files, same machine, same run.

Prints MB/s and instances/s for 1 and 4 parallel storescu senders against
``hipnode serve`` (fsync + rename + dir fsync + SQLite commit per instance) and
against ``storescp --fork`` (no fsync), the ratio, and the node's peak RSS while
it receives large (~70 MB) images. A benchmark, not a test: it prints figures.

    .venv/bin/python tests/bench/bench_ingest.py [--count 200] [--size-mb 10] [--large-mb 70]
    .venv/bin/hipnode bench ingest ...           (same options)

TCP_NODELAY=1 is set for storescu and storescp (DCMTK leaves Nagle on otherwise).
The load average is printed with the figures: on a shared 2-core machine the
numbers are pessimistic, and the same run varies +-30%, so every target runs
``--repeat`` rounds (order alternating) and the summary gives medians and each
round's paired ratio. Each run also prints CPU milliseconds per instance, of
the whole machine (senders and kernel included) and of the node's processes:
on a machine whose cores are all busy, throughput is that CPU cost, and it
varies far less between runs than MB/s does.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.factories import make_dx  # noqa: E402
from tests.outside_tools import which_outside_venv  # noqa: E402


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tool(name: str) -> str:
    path = which_outside_venv(name)
    if path is None:
        raise SystemExit(f"bench: {name} not found (install DCMTK)")
    return path


def make_images(directory: Path, count: int, size_mb: float, tag: str) -> list[Path]:
    """``count`` DX files of about ``size_mb`` MB sharing one pixel array (distinct UIDs)."""
    side = int(math.sqrt(size_mb * 1e6 / 2))
    template = make_dx(rows=side, columns=side, seed=1)
    pixels = template.PixelData
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        ds = make_dx(rows=8, columns=8, seed=i, patient_id=f"BENCH{tag}")
        ds.Rows = ds.Columns = side
        ds.PixelData = pixels
        path = directory / f"{tag}_{i:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


@dataclass
class Run:
    target: str
    senders: int
    instances: int
    megabytes: float
    seconds: float
    failures: int
    machine_cpu_s: float = 0.0  # busy CPU of the whole machine during the run (senders included)
    receiver_cpu_s: float | None = (
        None  # the node's processes (main + receivers); None for storescp
    )

    @property
    def mb_per_s(self) -> float:
        return self.megabytes / self.seconds

    @property
    def per_s(self) -> float:
        return self.instances / self.seconds


def send(
    port: int, aec: str, files: list[Path], senders: int, env: dict[str, str]
) -> tuple[float, int]:
    """Run ``senders`` storescu processes over disjoint slices; return (seconds, failed processes)."""
    slices = [files[i::senders] for i in range(senders)]
    start = time.perf_counter()
    procs = [
        subprocess.Popen(
            [_tool("storescu"), "-aec", aec, "127.0.0.1", str(port), *map(str, chunk)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for chunk in slices
    ]
    failures = 0
    for proc in procs:
        _, err = proc.communicate()
        if proc.returncode != 0:
            failures += 1
            sys.stderr.write(err.decode(errors="replace")[-500:])
    return time.perf_counter() - start, failures


class Target:
    """A receiver process started fresh (empty storage) for each run."""

    def __init__(
        self,
        kind: str,
        workdir: Path,
        env: dict[str, str],
        extra: list[str],
        receivers: str = "auto",
    ) -> None:
        self.kind, self.workdir, self.env, self.extra = kind, workdir, env, extra
        self.receivers = receivers
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.store: Path | None = None

    def start(self) -> None:
        self.port = _free_port()
        self.store = Path(tempfile.mkdtemp(prefix=f"{self.kind}-", dir=self.workdir))
        log = (self.store.parent / f"{self.store.name}.log").open("wb")
        if self.kind == "node":
            cmd = [
                sys.executable,
                "-m",
                "node",
                "--log-level",
                "INFO",
                "serve",
                "--storage",
                str(self.store),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--aet",
                "HIPNODE",
                *self.extra,
            ]
            # Ingest only: no analysis worker processes competing for the CPU.
            env = {
                **self.env,
                "HIPNODE_WORKERS": "0",
                "HIPNODE_RECEIVER_PROCESSES": str(self.receivers),
            }
            self.proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=log, stderr=log)
        else:
            cmd = [
                _tool("storescp"),
                "--fork",
                "-od",
                str(self.store),
                "-aet",
                "HIPNODE",
                *self.extra,
                str(self.port),
            ]
            self.proc = subprocess.Popen(
                cmd, env=self.env, stdout=log, stderr=log, start_new_session=True
            )
        log.close()
        deadline = time.monotonic() + 60
        if self.kind == "node":
            # The node logs "node listening" once every receiver process listens; a
            # C-ECHO may be answered earlier, by whichever process listens first.
            log_path = self.store.parent / f"{self.store.name}.log"
            while "node listening" not in log_path.read_text(errors="replace"):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"bench: node did not start (see {log_path})")
                time.sleep(0.1)
        while time.monotonic() < deadline:
            echo = subprocess.run(
                [_tool("echoscu"), "-aec", "HIPNODE", "127.0.0.1", str(self.port)],
                capture_output=True,
                env=self.env,
            )
            if echo.returncode == 0:
                return
            if self.proc.poll() is not None:
                raise SystemExit(f"bench: {self.kind} exited at start (see {log.name})")
            time.sleep(0.2)
        raise SystemExit(f"bench: {self.kind} did not answer C-ECHO")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            if self.kind == "storescp":
                os.killpg(self.proc.pid, signal.SIGTERM)
            else:
                self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=60)
        if self.store is not None:
            shutil.rmtree(self.store, ignore_errors=True)


_CLOCK_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent busy since boot (/proc/stat: all but idle and iowait)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / _CLOCK_TICK


def _process_table() -> tuple[dict[int, int], dict[int, float]]:
    """Every live process's parent and CPU seconds (user + system), from /proc."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        parents[int(entry.name)] = int(fields[1])
        times[int(entry.name)] = (int(fields[11]) + int(fields[12])) / _CLOCK_TICK
    return parents, times


def process_tree_pids(root_pid: int) -> list[int]:
    """``root_pid`` and its live descendants (the node's receiver processes)."""
    parents, _ = _process_table()
    pids, todo = [], [root_pid]
    while todo:
        pid = todo.pop()
        pids.append(pid)
        todo.extend(child for child, parent in parents.items() if parent == pid)
    return pids


def process_tree_cpu_seconds(root_pid: int) -> float:
    """User + system CPU of ``root_pid`` and its live descendants."""
    _, times = _process_table()
    return sum(times.get(pid, 0.0) for pid in process_tree_pids(root_pid))


def throughput(target: Target, files: list[Path], senders: int, env: dict[str, str]) -> Run:
    target.start()
    assert target.proc is not None
    is_node = target.kind == "node"
    try:
        tree_before = process_tree_cpu_seconds(target.proc.pid) if is_node else 0.0
        busy_before = machine_busy_seconds()
        seconds, failures = send(target.port, "HIPNODE", files, senders, env)
        busy = machine_busy_seconds() - busy_before
        tree = process_tree_cpu_seconds(target.proc.pid) - tree_before if is_node else None
    finally:
        target.stop()
    megabytes = sum(p.stat().st_size for p in files) / 1e6
    label = (
        (f"node/{target.receivers}" if target.receivers == "auto" else f"node/r{target.receivers}")
        if is_node
        else target.kind
    )
    return Run(label, senders, len(files), megabytes, seconds, failures, busy, tree)


def _status_mb(pid: int, field: str) -> float:
    """One ``/proc/PID/status`` field (kB) in MB; 0 once the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return 0.0


def peak_rss(
    workdir: Path,
    env: dict[str, str],
    node_args: list[str],
    large_mb: float,
    count: int,
    senders: int,
    receivers: str = "auto",
) -> tuple[float, float, int, int]:
    """The node's RSS, all its processes together: (idle MB, peak MB, failed senders, processes).

    The peak is the sum of each process's own high-water mark (VmHWM), an upper
    bound of the total at any one moment.
    """
    files = make_images(workdir / "large", count, large_mb, "L")
    target = Target("node", workdir, env, node_args, receivers=receivers)
    target.start()
    assert target.proc is not None
    pids = process_tree_pids(target.proc.pid)
    idle = sum(_status_mb(pid, "VmRSS") for pid in pids)
    try:
        _, failures = send(target.port, "HIPNODE", files, senders, env)
        peak = sum(_status_mb(pid, "VmHWM") for pid in pids)
    finally:
        target.stop()
        shutil.rmtree(workdir / "large", ignore_errors=True)
    return idle, peak, failures, len(pids)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


def _at_least_one(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _receivers(text: str) -> str:
    if text != "auto" and not (text.isdigit() and int(text) >= 1):
        raise argparse.ArgumentTypeError(f"must be 'auto' or at least 1, got {text!r}")
    return text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--count", type=int, default=200, help="instances per run")
    parser.add_argument("--size-mb", type=float, default=10.0, help="size of each instance")
    parser.add_argument(
        "--senders", type=int, nargs="+", default=[1, 4], help="parallel storescu senders"
    )
    parser.add_argument(
        "--large-mb", type=float, default=70.0, help="image size for the peak-RSS run"
    )
    parser.add_argument("--large-count", type=int, default=6)
    parser.add_argument(
        "--workdir", type=Path, default=None, help="where files and stores go (default: a temp dir)"
    )
    parser.add_argument(
        "--storescp-pdu",
        type=int,
        default=131072,
        help="storescp's receive PDU size (the node accepts unlimited)",
    )
    parser.add_argument(
        "--receivers",
        type=_receivers,
        nargs="+",
        default=["auto", "1"],
        help="node receiver_processes settings to measure ('auto' is the node's default)",
    )
    parser.add_argument(
        "--repeat",
        type=_at_least_one,
        default=3,
        help="rounds of every target, interleaved (medians reported)",
    )
    parser.add_argument("--skip-rss", action="store_true")


def _print_run(result: Run, senders: int) -> None:
    per_instance = 1000.0 / result.instances
    node_cpu = (
        f", node {result.receiver_cpu_s * per_instance:.1f}"
        if result.receiver_cpu_s is not None
        else ""
    )
    print(
        f"  {result.target:9s} senders={senders}  {result.mb_per_s:7.1f} MB/s  {result.per_s:6.1f} inst/s  "
        f"({result.instances} in {result.seconds:.2f} s, failed senders {result.failures})  "
        f"CPU ms/instance: machine {result.machine_cpu_s * per_instance:.1f}{node_cpu}  "
        f"load {os.getloadavg()[0]:.2f}",
        flush=True,
    )


def summarize(runs: list[Run], senders: int) -> list[str]:
    """One line per node setting: medians, the ratio of medians and the per-round ratios."""
    dcmtk = [r for r in runs if r.target == "storescp" and r.senders == senders]
    dcmtk_median = statistics.median(r.mb_per_s for r in dcmtk)
    lines = []
    for label in dict.fromkeys(r.target for r in runs if r.target.startswith("node")):
        node = [r for r in runs if r.target == label and r.senders == senders]
        node_median = statistics.median(r.mb_per_s for r in node)
        paired = sorted(n.mb_per_s / d.mb_per_s for n, d in zip(node, dcmtk, strict=True))
        cpu = statistics.median(r.machine_cpu_s * 1000.0 / r.instances for r in node)
        dcmtk_cpu = statistics.median(r.machine_cpu_s * 1000.0 / r.instances for r in dcmtk)
        lines.append(
            f"senders={senders}: {label} {node_median:.1f} MB/s, storescp {dcmtk_median:.1f} MB/s "
            f"(medians of {len(node)}), ratio {node_median / dcmtk_median:.2f} (target >= 0.8); "
            f"per round {', '.join(f'{x:.2f}' for x in paired)}; machine CPU ms/instance "
            f"{cpu:.1f} vs {dcmtk_cpu:.1f}"
        )
    return lines


def run(args: argparse.Namespace) -> int:
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="hipnode-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "TCP_NODELAY": "1"}
    print(
        f"bench ingest: {args.count} x {args.size_mb:g} MB DX, senders {args.senders}, workdir {workdir}"
    )
    print(f"cpu count {os.cpu_count()}, load average at start {os.getloadavg()}")
    try:
        files = make_images(workdir / "images", args.count, args.size_mb, "B")
        runs: list[Run] = []
        for senders in args.senders:
            targets = [Target("storescp", workdir, env, ["-pdu", str(args.storescp_pdu)])]
            targets += [Target("node", workdir, env, [], receivers=r) for r in args.receivers]
            for round_index in range(args.repeat):
                # Alternate the order so neither side always runs on the calmer machine.
                for target in targets if round_index % 2 == 0 else targets[::-1]:
                    result = throughput(target, files, senders, env)
                    runs.append(result)
                    _print_run(result, senders)
        print(
            "summary (median over rounds; MB/s varies a lot between identical runs on a shared VM):"
        )
        for senders in args.senders:
            for line in summarize(runs, senders):
                print(f"  {line}")
        if not args.skip_rss:
            idle, peak, failures, processes = peak_rss(
                workdir, env, [], args.large_mb, args.large_count, 2, args.receivers[0]
            )
            print(
                f"  peak RSS receiving {args.large_count} x {args.large_mb:g} MB from 2 senders, "
                f"receiver_processes={args.receivers[0]}: {peak:.0f} MB summed over the node's "
                f"{processes} processes (idle {idle:.0f} MB, failed senders {failures}; "
                "target <= 300 MB)"
            )
        print(f"load average at end {os.getloadavg()}")
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
