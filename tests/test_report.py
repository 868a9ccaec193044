"""What a person sees of a run: the bar, the progress lines, the end summary, the run report,
-a retry_failed=true and -a dry_run=true."""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import pty
import re
import select
import struct
import sys
import termios
import threading
import time
from http.server import ThreadingHTTPServer
from io import StringIO
from typing import TYPE_CHECKING, Any

import pytest
from conftest import PROJECT
from scrapy import Request
from scrapy.http.request import NO_CALLBACK
from scrapy.utils.misc import build_from_crawler
from scrapy.utils.test import get_crawler
from servers.countingsite import counting_site
from servers.faultserver import FaultServer, file_body
from servers.xkcdsite import Servers, Site, _handler, image_bytes

from xkcdcrawl.extensions.progress import Progress, size
from xkcdcrawl.extensions.report import RunReport, announce, latest_report, report_rows
from xkcdcrawl.naming import host_folder
from xkcdcrawl.spiders.urls import UrlsSpider

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from conftest import Crawl

FAST = ["-s", "XKCDCRAWL_RETRY_BACKOFF=0"]


def urls_arg(*urls: str) -> list[str]:
    return ["urls", "-a", "urls=" + ",".join(urls)]


# ---------------------------------------------------------------- components


def report_crawler(store: Path) -> tuple[Any, UrlsSpider]:
    crawler = get_crawler(UrlsSpider, {"FILES_STORE": str(store)})
    spider = UrlsSpider.from_crawler(crawler, urls="http://a.test/x.bin")
    crawler.spider = spider
    return crawler, spider


def test_progress_line_counts_file_bytes_only(monkeypatch: pytest.MonkeyPatch) -> None:
    final = False
    monkeypatch.setattr("xkcdcrawl.extensions.progress.listing_done", lambda crawler: final)
    crawler = get_crawler(settings_dict={"XKCDCRAWL_PROGRESS_INTERVAL": 5})
    progress = build_from_crawler(Progress, crawler)
    stats = crawler.stats
    assert stats is not None
    stats.set_value("files/expected", 10)
    stats.set_value("file_status_count/downloaded", 2)
    stats.set_value("file_status_count/failed", 1)
    file = Request("http://a.test/big.iso?mirror=1", callback=NO_CALLBACK)
    for _ in range(3):
        progress.bytes_received(b"x" * (1 << 20), file)
    progress.bytes_received(b"<html>" * 1000, Request("http://a.test/page.html"))  # a page: not counted
    robots = Request("http://a.test/robots.txt", callback=NO_CALLBACK, meta={"dont_obey_robotstxt": True})
    progress.bytes_received(b"User-agent: *", robots)
    line = progress.line(progress.figures())
    # Pages are still being read: more files may come, so no ETA yet.
    assert line.startswith("3/10 files, 3.0 MiB, ")
    assert line.endswith(" 1 failed")
    final = True
    assert re.search(r" 1 failed, ETA \d:\d\d:\d\d$", progress.line(progress.figures()))
    assert progress.in_flight() == " | big.iso 3.0 MiB"
    progress.request_left_downloader(file)
    assert progress.in_flight() == ""


def test_report_streams_rows_and_summary_names_the_first_20_failures(tmp_path: Path) -> None:
    crawler, spider = report_crawler(tmp_path)
    report = build_from_crawler(RunReport, crawler)
    report.spider_opened(spider)
    (tmp_path / "h").mkdir()
    (tmp_path / "h" / "ok.bin").write_bytes(b"12345")
    files: list[dict[str, str | None]] = [
        {"url": "http://a.test/ok.bin", "path": "h/ok.bin", "checksum": "c", "status": "downloaded"}
    ]
    files += [
        {"url": f"http://a.test/{n}", "path": f"h/{n}", "checksum": None, "status": "failed", "reason": "HTTP 500"}
        for n in range(25)
    ]
    for file in files:
        report.item_scraped({"folder": "h", "files": [file]}, spider)
    report.spider_closed(spider, "finished")
    # Scrapy's core stats, which the report keeps in CoreStats' place.
    assert crawler.stats is not None
    assert crawler.stats.get_value("item_scraped_count") == 26
    assert crawler.stats.get_value("finish_reason") == "finished"
    lines = report.summary_lines()
    assert lines[0].startswith("Files: ")
    assert lines[1].startswith("Downloaded 5 B in 0:00:0")
    assert "Failed (25):" in lines
    assert lines.count("  http://a.test/0: HTTP 500") == 1
    assert "  http://a.test/19: HTTP 500" in lines
    assert "  http://a.test/20: HTTP 500" not in lines
    assert f"  and 5 more, see {report.path}" in lines
    assert lines[-1] == f"Report: {report.path}"
    assert report.path is not None
    document = json.loads(report.path.read_text(encoding="utf-8"))
    assert document["spider"] == "urls"
    assert document["arguments"]["urls"] == "http://a.test/x.bin"
    assert document["settings"]["FILES_STORE"] == str(tmp_path)
    assert len(document["files"]) == 26
    assert document["files"][0] == {
        "url": "http://a.test/ok.bin",
        "path": "h/ok.bin",
        "size": 5,
        "checksum": "c",
        "outcome": "downloaded",
        "reason": None,
        "verified": None,
        "folder": "h",
        "name": None,
        "draw": None,
    }
    assert list(report_rows(report.path)) == document["files"]  # the line-by-line reader agrees
    assert latest_report(tmp_path, "urls").read_bytes() == report.path.read_bytes()
    assert [p.name for p in (tmp_path / ".xkcdcrawl" / "reports").iterdir()] == [report.path.name]


def test_interrupted_run_says_how_many_files_were_not_fetched(tmp_path: Path) -> None:
    crawler, spider = report_crawler(tmp_path)
    assert crawler.stats is not None
    crawler.stats.set_value("files/expected", 10)
    crawler.stats.set_value("file_status_count/downloaded", 4)
    report = build_from_crawler(RunReport, crawler)
    report.spider_opened(spider)
    report.spider_closed(spider, "shutdown")
    assert "interrupted: 6 files not fetched" in report.summary_lines()


def test_summary_prints_whatever_the_log_level() -> None:
    out = StringIO()
    handler = logging.StreamHandler(out)
    handler.setLevel(logging.ERROR)
    logging.root.addHandler(handler)
    try:
        announce("Files: 1 downloaded")
        logging.getLogger("xkcdcrawl.test").info("not shown")
    finally:
        logging.root.removeHandler(handler)
    assert out.getvalue() == "Files: 1 downloaded\n"


# ---------------------------------------------------------------- what a person sees


def read_pty(args: list[str], columns: int = 200) -> str:
    """Run `scrapy crawl ARGS` on a pseudo-terminal; everything it wrote, escapes and all."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: stdin, stdout and stderr are the terminal
        try:
            os.chdir(PROJECT)
            os.environ["PYTHONPATH"] = str(PROJECT)
            os.execv(sys.executable, [sys.executable, "-m", "scrapy", "crawl", *args])
        finally:
            os._exit(127)  # never go on running pytest in the child
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    out = b""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 1)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
    os.waitpid(pid, 0)
    os.close(fd)
    return out.decode(errors="replace")


def screen_lines(raw: str) -> tuple[list[str], list[str]]:
    """A small terminal: every state a line showed before it was cleared or left, and the final screen."""
    rows: list[str] = [""]
    row = col = 0
    shown: list[str] = []
    for token in re.findall(r"\x1b\[[0-9;?]*[A-Za-z]|\r|\n|[^\x1b\r\n]+", raw):
        if token == "\r":
            col = 0
        elif token == "\n":
            shown.append(rows[row])
            row += 1
            col = 0
            if row == len(rows):
                rows.append("")
        elif token.startswith("\x1b["):
            if token.endswith("A"):
                row = max(row - int(token[2:-1] or 1), 0)
            elif token.endswith("K"):
                shown.append(rows[row])
                rows[row] = ""
        else:
            line = rows[row].ljust(col)
            rows[row] = line[:col] + token + line[col + len(token) :]
            col += len(token)
    return [s for s in shown if s.strip()], rows


@pytest.mark.e2e
def test_bar_on_a_terminal_keeps_log_lines_off_its_line(tmp_path: Path) -> None:
    with FaultServer() as server:
        raw = read_pty(
            [
                *urls_arg(f"{server.url}/slowbody/big.bin?delay=2&size=3000000", f"{server.url}/status/404/gone.txt"),
                *FAST,
                "-s",
                f"FILES_STORE={tmp_path}",
            ]
        )
    shown, final = screen_lines(raw)
    bars = [line for line in shown if line.startswith("files ━")]
    assert any(
        re.search(r"━ 1/2 files, [\d.]+ (B|KiB), [\d.]+ (B|KiB|MiB)/s, 1 failed, ETA \d:\d\d:\d\d$", b) for b in bars
    )
    assert any(" 2/2 files, 2.9 MiB, " in bar for bar in bars), bars[-3:]
    logs = [line for line in shown if re.search(r"\d\d:\d\d:\d\d \[[\w.]+\] [A-Z]+: ", line)]
    assert any("File failed: " in line for line in logs)
    assert not [line for line in logs if "━" in line]  # no log line ever shared the bar's line
    text = [line.rstrip() for line in final if line.strip()]
    # The bar is gone; the summary is the last thing on the screen.
    assert not any("━" in line for line in text)
    assert text[-5].endswith("INFO: Files: 1 downloaded, 0 uptodate, 1 failed, 0 filtered")
    assert text[-2] == f"  {server.url}/status/404/gone.txt: HTTP 404"
    assert text[-1].startswith(f"Report: {tmp_path}/.xkcdcrawl/reports/urls-")


def test_without_a_terminal_one_line_per_interval_and_the_summary_last(crawl: Crawl) -> None:
    with FaultServer() as server:
        run = crawl(
            *urls_arg(f"{server.url}/slowbody/a.bin?delay=2", f"{server.url}/ok/b.txt"),
            "-s",
            "XKCDCRAWL_PROGRESS_INTERVAL=0.5",
        )
    assert run.returncode == 0, run.stderr
    lines = re.findall(r"INFO: Progress: (.*)", run.stderr)
    assert len(lines) >= 3
    # b.txt is done at once, a.bin after 2 s: lines while it waits say so, with an ETA.
    assert any(re.fullmatch(r"1/2 files, 1000 B, [\d.]+ (B|KiB)/s, 0 failed, ETA 0:00:0\d", x) for x in lines)
    assert all(
        re.fullmatch(r"\d/2 files, [\d.]+ (B|KiB), [\d.]+ (B|KiB)/s, 0 failed(, ETA \d:\d\d:\d\d)?", x) for x in lines
    )
    tail = run.stderr.rstrip("\n").split("\n")
    assert tail[-3].endswith("INFO: Files: 2 downloaded, 0 uptodate, 0 failed, 0 filtered")
    assert re.fullmatch(r"Downloaded 2\.0 KiB in 0:00:0\d, [\d.]+ (B|KiB)/s", tail[-2])
    assert run.stderr.index("Dumping Scrapy stats") < run.stderr.index("INFO: Files: ")


def test_summary_and_report_match_the_store_at_warning_level(crawl: Crawl) -> None:
    with FaultServer() as server:
        good = [f"{server.url}/ok/{name}?size={n}" for name, n in (("a.bin", 3000), ("b.bin", 5000), ("c.txt", 7))]
        run = crawl(
            *urls_arg(*good, f"{server.url}/status/500/bad.bin"),
            *FAST,
            "-s",
            "LOG_LEVEL=WARNING",
            "-s",
            "CONCURRENT_REQUESTS_PER_DOMAIN=3",
        )
    assert run.returncode == 1
    stored = run.stored()
    folder = server.folder
    assert stored == {
        f"{folder}/{name}": file_body(name, n) for name, n in (("a.bin", 3000), ("b.bin", 5000), ("c.txt", 7))
    }
    assert "Files: 3 downloaded, 0 uptodate, 1 failed, 0 filtered" in run.stderr
    assert f"Downloaded {size(sum(map(len, stored.values())))} in " in run.stderr
    assert f"Failed (1):\n  {server.url}/status/500/bad.bin: HTTP 500\n" in run.stderr
    report = latest_report(run.store, "urls")
    path = re.search(r"Report: (\S+)", run.stderr)
    assert path is not None
    assert report.read_bytes() == (run.store / ".xkcdcrawl" / "reports" / path[1].rpartition("/")[2]).read_bytes()
    document = json.loads(report.read_text(encoding="utf-8"))
    assert document["counts"]["downloaded"] == 3
    assert document["counts"]["failed"] == 1
    assert document["close_reason"] == "finished"
    assert document["settings"]["CONCURRENT_REQUESTS_PER_DOMAIN"] == 3  # an int, though -s gave a string
    assert document["settings"]["DOWNLOAD_DELAY"] == 0.0
    rows = {row["path"]: row for row in document["files"]}
    assert rows[f"{folder}/bad.bin"]["outcome"] == "failed"
    assert rows[f"{folder}/bad.bin"]["reason"] == "HTTP 500"
    for path_, body in stored.items():
        assert rows[path_]["outcome"] == "downloaded"
        assert rows[path_]["size"] == len(body)
        assert rows[path_]["checksum"] == hashlib.sha256(body).hexdigest()
    assert document["bytes_downloaded"] == sum(map(len, stored.values()))


def test_retry_failed_fetches_only_the_failed_file(crawl: Crawl) -> None:
    with FaultServer() as server:
        urls = [f"{server.url}/ok/a.bin", f"{server.url}/status/503/b.bin?times=1", f"{server.url}/ok/c.bin"]
        first = crawl(*urls_arg(*urls), "-s", "RETRY_TIMES=0")
        assert first.returncode == 1
        assert set(first.stored()) == {f"{server.folder}/a.bin", f"{server.folder}/c.bin"}
        (first.store / server.folder / "a.bin").unlink()  # retry_failed must not look at what was not failed
        before = dict(server.hits)
        again = crawl(*urls_arg(*urls), "-a", "retry_failed=true")
        asked = {path: n - before.get(path, 0) for path, n in server.hits.items() if n != before.get(path, 0)}
    assert again.returncode == 0, again.stderr
    assert asked == {"/status/503/b.bin": 1, "/robots.txt": 1}
    assert set(again.stored()) == {f"{server.folder}/b.bin", f"{server.folder}/c.bin"}
    assert "Files: 1 downloaded, 0 uptodate, 0 failed, 0 filtered" in again.stderr
    assert "retry_failed=true: 1 files failed in the run of " in again.stderr
    # The retry's own report is now the latest: nothing is left to retry.
    third = crawl(*urls_arg(*urls), "-a", "retry_failed=true")
    assert "Files: 0 downloaded, 0 uptodate, 0 failed, 0 filtered" in third.stderr


def test_retry_failed_without_an_earlier_report_is_one_error(crawl: Crawl) -> None:
    run = crawl(*urls_arg("http://127.0.0.1:9/a.bin"), "-a", "retry_failed=true")
    assert run.returncode == 1
    assert "ERROR: retry_failed=true: no report of an earlier urls run (" in run.stderr
    assert "Traceback" not in run.stderr


@pytest.fixture
def listing(tmp_path: Path) -> Iterator[tuple[str, list[tuple[str, str]]]]:
    root = tmp_path / "served"
    (root / "pub" / "sub").mkdir(parents=True)
    (root / "pub" / "a.txt").write_bytes(b"a" * 10)
    (root / "pub" / "b.bin").write_bytes(b"b" * 3000)
    (root / "pub" / "sub" / "c.txt").write_bytes(b"c" * 20)
    with counting_site(root) as (url, requests):
        yield f"{url}/pub/", requests


def test_dry_run_lists_what_it_would_fetch_and_fetches_no_file(
    listing: tuple[str, list[tuple[str, str]]], crawl: Crawl, tmp_path: Path
) -> None:
    url, requests = listing
    folder = host_folder(url)
    stored = tmp_path / "store" / folder / "pub" / "a.txt"
    stored.parent.mkdir(parents=True)
    stored.write_bytes(b"a" * 10)
    run = crawl("listing", "-a", f"url={url}", "-a", "dry_run=true", "-s", "LOG_LEVEL=WARNING")
    assert run.returncode == 0, run.stderr
    assert sorted(requests) == [
        ("GET", "/pub/"),
        ("GET", "/pub/sub/"),
        ("GET", "/robots.txt"),
        ("HEAD", "/pub/b.bin"),
        ("HEAD", "/pub/sub/c.txt"),
    ]
    assert run.stored() == {f"{folder}/pub/a.txt": b"a" * 10}  # nothing written
    assert f"stored       {url}a.txt -> {folder}/pub/a.txt\n" in run.stderr
    assert f"would fetch  {url}b.bin -> {folder}/pub/b.bin (2.9 KiB)\n" in run.stderr
    assert f"would fetch  {url}sub/c.txt -> {folder}/pub/sub/c.txt (20 B)\n" in run.stderr
    assert "Files: 0 downloaded, 1 uptodate, 0 failed, 2 filtered" in run.stderr
    assert "Dry run: 2 files to fetch, 2.9 KiB for the 2 of known size; nothing fetched" in run.stderr
    # A dry run keeps the latest report for retry_failed as it was.
    assert not latest_report(run.store, "listing").exists()


def test_retry_failed_xkcd_fetches_the_images_without_reading_the_api_again(crawl: Crawl) -> None:
    site = Site()
    servers = Servers(site)
    images = servers.httpds["images"]
    port = images.server_port
    images.shutdown()
    images.server_close()  # the image host is down for the first run
    try:
        args = ["xkcd", "-a", f"base_url={site.origin}", "-a", "start=1", "-a", "end=2", "-s", "RETRY_TIMES=0"]
        first = crawl(*args)
        assert first.returncode == 1
        assert first.stored() == {}
        assert "Files: 0 downloaded, 0 uptodate, 2 failed" in first.stderr
        servers.httpds["images"] = ThreadingHTTPServer(("127.0.0.1", port), _handler(site, "images"))
        threading.Thread(target=servers.httpds["images"].serve_forever, daemon=True).start()
        site.hits.clear()
        again = crawl(*args, "-a", "retry_failed=true")
        hits = list(site.hits)
        # A comic fetched by a retry is not in the download archive: a normal run reads it once more
        # and finds its file stored.
        normal = crawl(*args)
    finally:
        servers.close()
    assert again.returncode == 0, again.stderr
    assert sorted(hit for hit in hits if "robots.txt" not in hit) == [
        "images:/comics/barrel_cropped_(1).jpg",
        "images:/comics/tree_cropped_(1).jpg",
    ]
    assert again.stored() == {
        "xkcd/barrel_cropped_(1).jpg": image_bytes("/comics/barrel_cropped_(1).jpg"),
        "xkcd/tree_cropped_(1).jpg": image_bytes("/comics/tree_cropped_(1).jpg"),
    }
    assert "Files: 0 downloaded, 2 uptodate, 0 failed" in normal.stderr
    assert "Traceback" not in again.stderr
