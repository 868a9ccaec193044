"""Ctrl-C on a crawl in progress: exit status 130, nothing half-written, and the next run completes the set."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from typing import TYPE_CHECKING

import pytest
from conftest import PROJECT
from servers.faultserver import FaultServer, file_body

if TYPE_CHECKING:
    from pathlib import Path

    from conftest import Crawl

pytestmark = pytest.mark.e2e

SIZE = 300_000
FILES = 10


def start_crawl(server: FaultServer, store: Path, urls: str) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "scrapy", "crawl", "urls", "-a", urls, "-s", f"FILES_STORE={store}"]
    # CONCURRENT_REQUESTS=2: the spider keeps 4 files in the pipeline, so a Ctrl-C leaves some unfetched.
    cmd += [
        "-s",
        "CONCURRENT_REQUESTS=2",
        "-s",
        "CONCURRENT_REQUESTS_PER_DOMAIN=2",
        "-s",
        "XKCDCRAWL_PROGRESS_INTERVAL=0",
    ]
    env = {**os.environ, "PYTHONPATH": str(PROJECT)}
    return subprocess.Popen(cmd, cwd=PROJECT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_files(store: Path, folder: str, count: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(list((store / folder).glob("k*.bin"))) < count:
        time.sleep(0.02)


@pytest.mark.parametrize("presses", [1, 2])
def test_ctrl_c_exits_130_and_the_next_run_completes(
    server: FaultServer, crawl: Crawl, tmp_path: Path, presses: int
) -> None:
    store = tmp_path / "store"
    urls = "urls=" + ",".join(server.url_for(f"/slowbody/k{i}.bin?delay=0.5&size={SIZE}") for i in range(FILES))
    proc = start_crawl(server, store, urls)
    wait_for_files(store, server.folder, 2)
    for _ in range(presses):
        proc.send_signal(signal.SIGINT)
        time.sleep(0.1)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    kept = {p.name: p.read_bytes() for p in (store / server.folder).glob("*")}
    assert 2 <= len(kept) < FILES
    assert all(body == file_body(name, SIZE) for name, body in kept.items())  # whole, or not there
    again = crawl("urls", "-a", urls, "-s", "CONCURRENT_REQUESTS_PER_DOMAIN=2", store=store)
    assert again.returncode == 0, again.stderr
    assert again.stored() == {f"{server.folder}/k{i}.bin": file_body(f"k{i}.bin", SIZE) for i in range(FILES)}
    assert f"{FILES - len(kept)} downloaded, {len(kept)} uptodate" in again.stderr


def test_ctrl_c_on_a_listing_exits_130_and_the_next_run_completes(
    server: FaultServer, crawl: Crawl, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    args = ["listing", "-a", f"url={server.url_for('/tree/')}", "-s", "CONCURRENT_REQUESTS_PER_DOMAIN=2"]
    cmd = [sys.executable, "-m", "scrapy", "crawl", *args, "-s", f"FILES_STORE={store}"]
    env = {**os.environ, "PYTHONPATH": str(PROJECT)}
    proc = subprocess.Popen(cmd, cwd=PROJECT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not list((store / server.folder).rglob("f*.bin")):
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    kept = {p.relative_to(store).as_posix() for p in (store / server.folder).rglob("f*.bin")}
    assert 1 <= len(kept) < 35
    # The first Ctrl-C begins no new file: those still queued are counted, not fetched.
    parked = re.search(r"(\d+) interrupted", stderr)
    assert parked is not None, stderr
    assert re.search(r"interrupted: (\d+) files not fetched", stderr)
    assert f"Files: {len(kept)} downloaded, 0 uptodate, 0 failed" in stderr
    again = crawl(*args, store=store)
    assert again.returncode == 0, again.stderr
    assert len(again.stored()) == 35  # /tree/, d0/, d1/ and their d0/, d1/: 5 files each
    assert f"Files: {35 - len(kept)} downloaded, {len(kept)} uptodate, 0 failed" in again.stderr
    assert all(body == file_body(path.split("/", 2)[2], 1000) for path, body in again.stored().items())
