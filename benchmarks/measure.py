"""Measuring one run: wall time, CPU, peak RSS and exit code of a tool, and its copy verified by sha256."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dataset import MIB
from nginx import count_lines

if TYPE_CHECKING:
    from dataset import Dataset
    from nginx import Endpoints
    from peers import Ctx, Tool

GNU_TIME = Path("/usr/bin/time")


@dataclass
class Run:
    wall_s: float
    cpu_s: float
    peak_rss_mib: float
    rc: int
    verified: int
    requests: int
    files_on_disk: int
    log: str


@dataclass
class Env:
    dataset: Dataset
    endpoints: Endpoints
    delay_ms: float
    timeout: float


def timed(argv: list[str], cwd: Path | None, log: Path, timeout: float) -> tuple[float, float, float, int]:
    """Run ``argv``; returns (wall seconds, CPU seconds, peak RSS MiB, exit code).

    CPU is user + system time of the process and the descendants it waited for.

    Peak RSS comes from ``/usr/bin/time -f %M``: the largest resident set of the
    tool's process or of a descendant it waited for (not the sum of a process
    tree). Without GNU time it falls back to os.wait4's rusage, which also counts
    the RSS of the harness's forked child before exec (a ~25 MiB floor).
    """
    rss_file = log.with_suffix(".rss")
    wrapped = [str(GNU_TIME), "-f", "%M", "-o", str(rss_file), *argv] if GNU_TIME.exists() else argv
    with log.open("wb") as fh:
        start = time.perf_counter()
        proc = subprocess.Popen(
            wrapped, cwd=cwd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
        timer = threading.Timer(timeout, kill_group, (proc.pid,))
        timer.daemon = True
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:  # Ctrl-C: take the tool down with the harness
            kill_group(proc.pid)
            raise
        wall = time.perf_counter() - start
        timer.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)
    kill_group(proc.pid)  # leftovers a tool forked and did not reap
    cpu = usage.ru_utime + usage.ru_stime
    return wall, cpu, peak_rss_kib(rss_file, usage.ru_maxrss) / 1024.0, proc.returncode


def peak_rss_kib(rss_file: Path, fallback: int) -> int:
    """The last number GNU time wrote (it adds a line when the command was killed)."""
    with contextlib.suppress(OSError):
        numbers = [line for line in rss_file.read_text().split() if line.isdigit()]
        if numbers:
            return int(numbers[-1])
    return fallback


def kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(MIB), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify(out: Path, dataset: Dataset) -> tuple[int, int]:
    """(files whose sha256 matches under the expected relative path, regular files on disk).

    Tools lay files out differently (OUT/<path>, OUT/<host>/<path>, ...): a file
    counts when its path inside ``out`` ends with the expected relative path.
    """
    by_name: dict[str, list[Path]] = {}
    on_disk = 0
    for path in out.rglob("*"):
        if path.is_file():
            on_disk += 1
            by_name.setdefault(path.name, []).append(path)
    ok = 0
    for rel, digest in dataset.digests.items():
        for cand in by_name.get(Path(rel).name, []):
            inner = cand.relative_to(out).as_posix()
            if (inner == rel or inner.endswith("/" + rel)) and sha256_file(cand) == digest:
                ok += 1
                break
    return ok, on_disk


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
    os.sync()  # flush the deleted run's writeback now, not during the next timed run


def run_tool(tool: Tool, ctx: Ctx, out: Path, logs: Path, tag: str, env: Env) -> Run:
    before = count_lines(env.endpoints.access_log)
    log = logs / f"{tool.name}-{tag}.log"
    wall, cpu, rss, rc = timed(tool.argv(ctx, out), tool.cwd, log, env.timeout)
    time.sleep(0.05)  # let nginx finish logging the last requests
    requests = count_lines(env.endpoints.access_log) - before
    verified, on_disk = verify(out, env.dataset) if tool.kind != "startup" else (0, 0)
    return Run(round(wall, 4), round(cpu, 3), round(rss, 1), rc, verified, requests, on_disk, str(log))
