"""Faults injected by a real local server: every file ends complete, or failed with a reason."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from typing import TYPE_CHECKING

import pytest
from conftest import PROJECT
from servers.faultserver import FaultServer, file_body

from xkcdcrawl import settings as project_settings

if TYPE_CHECKING:
    from pathlib import Path

    from conftest import Crawl, Run

FAST_RETRY = ["-s", "XKCDCRAWL_RETRY_BACKOFF=0.1", "-s", "XKCDCRAWL_PROGRESS_INTERVAL=0"]


def urls_file(tmp_path: Path, server: FaultServer, paths: list[str]) -> str:
    listing = tmp_path / "urls.txt"
    listing.write_text("".join(server.url_for(p) + "\n" for p in paths), encoding="utf-8")
    return f"file={listing}"


def by_name(run: Run) -> dict[str, dict[str, object]]:
    return {item["url"].rsplit("/", 1)[-1].split("?")[0]: item["files"][0] for item in run.items()}


def test_faults_are_retried_until_every_file_is_complete(tmp_path: Path, server: FaultServer, crawl: Crawl) -> None:
    paths = [
        "/reset/a.bin?after=300&times=1",
        "/short/b.bin?after=10&times=1",
        "/status/503/c.bin?times=2",
        "/status/500/d.bin?times=1",
        "/status/502/k.bin?times=1",
        "/429/e.bin?retry_after=1&times=1",
        "/429/f.bin?retry_after=1&date=1&times=1",
        "/redirect/301/g.bin",
        "/redirect/302/h.bin",
        "/redirect-chain/3/i.bin",
        "/slow/j.bin?delay=4&times=1",
    ]
    run = crawl("urls", "-a", urls_file(tmp_path, server, paths), "-s", "DOWNLOAD_TIMEOUT=2", *FAST_RETRY)
    assert run.returncode == 0, run.stderr
    names = "abcdefghijk"
    assert run.stored() == {f"{server.folder}/{n}.bin": file_body(f"{n}.bin") for n in names}
    assert all(f["status"] == "downloaded" for f in by_name(run).values())
    assert "Files: 11 downloaded, 0 uptodate, 0 failed" in run.stderr


def test_failed_files_are_reported_and_the_rest_complete(tmp_path: Path, server: FaultServer, crawl: Crawl) -> None:
    paths = ["/status/500/x.bin", "/loop/y.bin", "/reset/z.bin?after=5", "/status/404/w.bin", "/ok/fine.bin"]
    run = crawl("urls", "-a", urls_file(tmp_path, server, paths), *FAST_RETRY)
    assert run.returncode == 1  # cron and scrapyd see that files are missing
    assert run.stored() == {f"{server.folder}/fine.bin": file_body("fine.bin")}
    files = by_name(run)
    assert files["x.bin"] == {
        "url": server.url_for("/status/500/x.bin"),
        "path": f"{server.folder}/x.bin",
        "checksum": None,
        "status": "failed",
        "reason": "HTTP 500",
    }
    assert files["w.bin"]["reason"] == "HTTP 404"
    assert files["y.bin"]["status"] == "failed"
    assert "redirect" in str(files["y.bin"]["reason"]).lower()
    assert files["z.bin"]["reason"] == "ResponseDataLossError"  # the body was cut: retried, then given up
    assert server.hits["/status/500/x.bin"] == 4  # RETRY_TIMES = 3
    assert "Files: 1 downloaded, 0 uptodate, 4 failed, 0 filtered" in run.stderr
    assert "Traceback" not in run.stderr
    relaxed = crawl(
        "urls", "-a", urls_file(tmp_path, server, paths), *FAST_RETRY, "-s", "XKCDCRAWL_FAIL_ON_ERROR=false"
    )
    assert relaxed.returncode == 0


def test_retry_after_pauses_the_whole_host(tmp_path: Path, server: FaultServer, crawl: Crawl) -> None:
    # Files reach the downloader in no promised order: whichever is asked first gets the 429.
    paths = [f"/429/n{i}.bin?retry_after=2&times=1&group=host" for i in range(5)]
    run = crawl("urls", "-a", urls_file(tmp_path, server, paths), "-s", "CONCURRENT_REQUESTS_PER_DOMAIN=1", *FAST_RETRY)
    assert run.returncode == 0, run.stderr
    times = [t for t, _, target in server.log if target != "/robots.txt"]
    asked = times[0]  # the 429, with Retry-After: 2
    after = times[1:]
    assert len(after) == 5  # the four files that were still queued, and the retry of the first
    assert min(after) - asked >= 1.9  # nothing was sent to the host while it asked us to wait
    assert len(run.stored()) == 5


@pytest.mark.parametrize("delay", ["0", "0.05"])
def test_per_host_concurrency_holds_exactly(tmp_path: Path, server: FaultServer, crawl: Crawl, delay: str) -> None:
    paths = [f"/slow/f{i}.bin?delay=0.3" for i in range(12)]
    limit = ["-s", "CONCURRENT_REQUESTS_PER_DOMAIN=2", "-s", f"DOWNLOAD_DELAY={delay}"]
    run = crawl("urls", "-a", urls_file(tmp_path, server, paths), *limit, *FAST_RETRY)
    assert run.returncode == 0, run.stderr
    assert len(run.stored()) == 12
    # Twelve transfers of 0.3 s, one started at most every 0.05 s: the limit is reached, never passed.
    assert server.max_in_flight == 2


def test_stock_scrapy_downloader_overshoots_the_limit(tmp_path: Path, server: FaultServer, crawl: Crawl) -> None:
    """Why xkcdcrawl.politeness.HostGate exists: if this starts failing, Scrapy fixed the bug."""
    paths = [f"/slow/f{i}.bin?delay=0.3" for i in range(8)]
    without_gate = json.dumps({**project_settings.DOWNLOADER_MIDDLEWARES, "xkcdcrawl.politeness.HostGate": None})
    stock = ["-s", "CONCURRENT_REQUESTS_PER_DOMAIN=1", "-s", f"DOWNLOADER_MIDDLEWARES={without_gate}"]
    run = crawl("urls", "-a", urls_file(tmp_path, server, paths), *stock, *FAST_RETRY)
    assert run.returncode == 0, run.stderr
    assert server.max_in_flight > 1


def test_killed_crawl_leaves_no_partial_file_and_resumes(tmp_path: Path, server: FaultServer, crawl: Crawl) -> None:
    size = 400_000
    paths = [f"/slowbody/k{i}.bin?delay=0.4&size={size}" for i in range(10)]
    store = tmp_path / "store"
    cmd = [sys.executable, "-m", "scrapy", "crawl", "urls", "-a", urls_file(tmp_path, server, paths)]
    cmd += ["-s", f"FILES_STORE={store}", "-s", "CONCURRENT_REQUESTS_PER_DOMAIN=2"]
    proc = subprocess.Popen(cmd, cwd=PROJECT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(list(store.glob(f"{server.folder}/k*.bin"))) < 3:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    kept = {p.name: p.read_bytes() for p in store.glob(f"{server.folder}/k*.bin")}
    assert 3 <= len(kept) < 10
    assert all(body == file_body(name, size) for name, body in kept.items())  # whole, or not there
    again = crawl("urls", "-a", urls_file(tmp_path, server, paths), "-s", "CONCURRENT_REQUESTS_PER_DOMAIN=2")
    assert again.returncode == 0, again.stderr
    assert again.stored() == {f"{server.folder}/k{i}.bin": file_body(f"k{i}.bin", size) for i in range(10)}
    assert f"{10 - len(kept)} downloaded, {len(kept)} uptodate" in again.stderr  # nothing fetched twice


HOSTILE = [
    "/ok/%2e%2e/%2e%2e/%2e%2e/escape1.txt",
    "/ok/..%2f..%2f..%2fescape2.txt",
    "/ok/..%5c..%5cescape3.txt",
    "/ok/%252e%252e%252fescape4.txt",
    "/ok/CON",
    "/ok/nul.txt",
    "/ok/trailing.%20",
    "/ok/" + "x" * 300 + ".txt",
    "/ok/ctl%01%1f%7f.txt",
    "/ok/nul%00byte.txt",
    "/ok/Case.txt",
    "/ok/case.txt",
    "/ok/%E2%80%AEevil.txt",
]


def test_hostile_names_stay_in_the_store(tmp_path: Path, server: FaultServer, crawl: Crawl) -> None:
    run = crawl("urls", "-a", urls_file(tmp_path, server, HOSTILE), *FAST_RETRY)
    outside = [p for p in tmp_path.rglob("*") if p.is_file() and not p.is_relative_to(run.store)]
    assert sorted(p.name for p in outside) == sorted(["urls.txt", run.feed.name])
    stored = run.stored()
    assert {f"{server.folder}/{name}" for name in ("_CON.bin", "_nul.txt", "Case.txt", "case.txt")} <= set(stored)
    assert all(len(name.encode()) <= 255 for path in stored for name in path.split("/"))
    paths = {item["files"][0]["path"] for item in run.items()}
    assert paths == set(stored)
    assert len(paths) == len(HOSTILE)  # all distinct: none overwrote another


def test_file_over_files_maxsize_fails_visibly(tmp_path: Path, server: FaultServer, crawl: Crawl) -> None:
    paths = ["/ok/big.bin?size=50000", "/ok/small.bin"]
    run = crawl("urls", "-a", urls_file(tmp_path, server, paths), "-s", "XKCDCRAWL_FILES_MAXSIZE=10000", *FAST_RETRY)
    assert run.returncode == 1  # Scrapy's FilesPipeline drops it and exits 0
    assert run.stored() == {f"{server.folder}/small.bin": file_body("small.bin")}
    assert "larger than download max size (10000)" in str(by_name(run)["big.bin"]["reason"])
