"""Start-up: a run imports what it uses. An empty crawl takes no cookie code, a bad argument no crawl machinery."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest
from conftest import PROJECT
from servers.staticsite import StaticSite

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.e2e

# `scrapy crawl ...`, writing the names of the modules it imported to the file named by $MODULES at exit.
RECORDING = """
import atexit, os, sys
atexit.register(lambda: open(os.environ["MODULES"], "w").write("\\n".join(sorted(sys.modules))))
from scrapy.cmdline import execute
sys.argv = ["scrapy", *sys.argv[1:]]
execute()
"""
OTHER_SPIDERS = {"xkcdcrawl.spiders.album", "xkcdcrawl.spiders.urls", "xkcdcrawl.spiders.xkcd"}
COOKIE_CODE = {"scrapy.downloadermiddlewares.cookies", "tldextract", "requests"}


def modules_of(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    record = tmp_path / "modules.txt"
    env = {**os.environ, "PYTHONPATH": str(PROJECT), "MODULES": str(record)}
    run = subprocess.run(
        [sys.executable, "-c", RECORDING, *args], cwd=PROJECT, env=env, capture_output=True, text=True, timeout=120
    )
    return run, set(record.read_text(encoding="utf-8").split())


def test_an_empty_crawl_imports_neither_cookie_code_nor_other_spiders(tmp_path: Path) -> None:
    with StaticSite({"/pub/": ("text/html", b"<html><body></body></html>")}) as site:
        run, modules = modules_of(
            tmp_path, "crawl", "listing", "-a", f"url={site.url}/pub/", "-s", f"FILES_STORE={tmp_path}"
        )
    assert run.returncode == 0, run.stderr
    assert "Empty listing" in run.stderr
    assert "xkcdcrawl.spiders.listing" in modules
    assert not modules & (COOKIE_CODE | OTHER_SPIDERS)


def test_a_bad_argument_imports_no_crawl_machinery(tmp_path: Path) -> None:
    run, modules = modules_of(tmp_path, "crawl", "listing", "-a", "nope=1")
    assert run.returncode == 2
    assert "unknown argument 'nope'" in run.stderr
    crawl_machinery = {"scrapy.core.downloader.contextfactory", "xkcdcrawl.handlers", "xkcdcrawl.pipelines"}
    assert not modules & (crawl_machinery | COOKIE_CODE | OTHER_SPIDERS)


def test_a_cookie_the_listing_sets_is_sent_with_the_files(tmp_path: Path) -> None:
    """Scrapy's cookie middleware, imported late, still keeps the first cookie for every later request."""
    page = ("text/html", b'<a href="a.txt">a.txt</a>', {"Set-Cookie": "session=s1; Path=/"})
    with StaticSite({"/pub/": page, "/pub/a.txt": ("text/plain", b"a")}) as site:
        run, modules = modules_of(
            tmp_path, "crawl", "listing", "-a", f"url={site.url}/pub/", "-s", f"FILES_STORE={tmp_path}"
        )
    assert run.returncode == 0, run.stderr
    sent = {path: headers.get("Cookie") for path, headers in site.requests}
    assert sent["/pub/"] is None
    assert sent["/pub/a.txt"] == "session=s1"
    assert "scrapy.downloadermiddlewares.cookies" in modules
