"""s3:// stores against an S3-compatible server on 127.0.0.1 (moto's, tests/servers/s3server.py).

Files stream to a local partial file and are uploaded from it in parts; the download archive and
the names book live in the bucket, so a re-run (on any machine) skips what is stored.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from conftest import PROJECT, run_crawl
from scrapy.exceptions import NotConfigured
from scrapy.utils.test import get_crawler
from servers.faultserver import FaultServer, file_body
from servers.s3server import S3Server, s3_server

from xkcdcrawl.extensions.progress import size
from xkcdcrawl.lock import StoreLockExtension
from xkcdcrawl.s3store import PART_SIZE, BucketLedger, bucket_ledger

if TYPE_CHECKING:
    from collections.abc import Iterator

    from servers.xkcdsite import Site

pytestmark = pytest.mark.e2e

BUCKET = "mirror"
TREE_DIRS = ["", "d0/", "d1/", "d0/d0/", "d0/d1/", "d1/d0/", "d1/d1/"]  # FaultServer's /tree/
TREE_FILES = [f"{folder}f{i}.bin" for folder in TREE_DIRS for i in range(5)]
MiB = 1 << 20
NOT_LOCKED = "remote stores are not locked: schedule one crawl per store (README)"


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    with s3_server() as server:
        server.client().create_bucket(Bucket=BUCKET)
        yield server


@pytest.fixture
def site() -> Iterator[FaultServer]:
    with FaultServer() as server:
        yield server


def s3_crawl(s3: S3Server, work: Path, store: str, *args: str) -> Any:
    """`scrapy crawl ARGS` into an s3:// store, its partial files under `work`."""
    settings = {
        **s3.settings(),
        "FILES_STORE": store,
        "XKCDCRAWL_WORK_DIR": str(work),
        "XKCDCRAWL_PROGRESS_INTERVAL": "0",
    }
    return run_crawl(*args, *[arg for name, value in settings.items() for arg in ("-s", f"{name}={value}")])


def objects(s3: S3Server, prefix: str) -> dict[str, bytes]:
    """Every object under the prefix but the bookkeeping folder: {key below the prefix: bytes}."""
    client, found = s3.client(), {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        for entry in page.get("Contents", []):
            key = entry["Key"].removeprefix(prefix)
            if not key.startswith(".xkcdcrawl/"):
                found[key] = client.get_object(Bucket=BUCKET, Key=entry["Key"])["Body"].read()
    return found


def puts(s3: S3Server, since: int) -> list[str]:
    """The objects written (PUT, POST of a multipart upload) since the server's request number `since`."""
    return [target for method, target, _ in s3.requests()[since:] if method in {"PUT", "POST"}]


def test_a_listing_mirrored_into_s3_is_exact_and_a_rerun_fetches_no_file(
    s3: S3Server, site: FaultServer, tmp_path: Path
) -> None:
    store = f"s3://{BUCKET}/listing"  # no trailing slash: the same as listing/
    first = s3_crawl(s3, tmp_path / "work", store, "listing", "-a", f"url={site.url_for('/tree/')}")
    assert first.returncode == 0, first.stderr[-3000:]
    expected = {f"{site.folder}/tree/{name}": file_body(name) for name in TREE_FILES}
    assert objects(s3, "listing/") == expected
    assert "Files: 35 downloaded" in first.stderr
    # The summary counts the bytes that went into the bucket, with no local file to look at.
    assert f"Downloaded {size(sum(map(len, expected.values())))} in " in first.stderr
    complaints = [
        line.split(" ", 2)[2] for line in first.stderr.splitlines() if " ERROR: " in line or " WARNING: " in line
    ]
    assert complaints == ["[scrapy.middleware] WARNING: Disabled xkcdcrawl.lock.StoreLockExtension: " + NOT_LOCKED]

    # Another machine (another work folder): the bucket alone says what is stored.
    before, seen = dict(site.hits), len(s3.requests())
    again = s3_crawl(s3, tmp_path / "elsewhere", store, "listing", "-a", f"url={site.url_for('/tree/')}")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "Files: 0 downloaded, 35 uptodate" in again.stderr
    file_hits = {path: n - before.get(path, 0) for path, n in site.hits.items() if path.endswith(".bin")}
    assert set(file_hits.values()) == {0}  # no file request at all
    assert puts(s3, seen) == []  # nothing written: no file, and the download archive and names book had nothing new
    assert objects(s3, "listing/") == expected
    assert not list((tmp_path / "elsewhere").rglob("*.part"))


def test_names_from_responses_are_kept_in_the_bucket(s3: S3Server, site: FaultServer, tmp_path: Path) -> None:
    urls = ",".join(site.url_for(f"/disposition/get?filename={name}") for name in ("report.pdf", "notes.txt"))
    store = f"s3://{BUCKET}/named/"
    first = s3_crawl(s3, tmp_path / "work", store, "urls", "-a", f"urls={urls}")
    assert first.returncode == 0, first.stderr[-3000:]
    assert objects(s3, "named/") == {f"{site.folder}/{name}": file_body("get") for name in ("report.pdf", "notes.txt")}
    again = s3_crawl(s3, tmp_path / "other", store, "urls", "-a", f"urls={urls}")
    assert "Files: 0 downloaded, 2 uptodate" in again.stderr  # the names book said where they went
    assert site.hits["/disposition/get"] == 2


def test_the_download_archive_in_the_bucket_skips_complete_comics(s3: S3Server, xkcd: Site, tmp_path: Path) -> None:
    args = ["xkcd", "-a", "start=1035", "-a", "end=1037", "-a", f"base_url={xkcd.origin}"]
    store = f"s3://{BUCKET}/comics/"
    first = s3_crawl(s3, tmp_path / "work", store, *args)
    assert first.returncode == 0, first.stderr[-3000:]
    assert len(objects(s3, "comics/")) == 2  # 1036 and 1037 share reviews.png
    xkcd.hits.clear()
    again = s3_crawl(s3, tmp_path / "other", store, *args)
    assert again.returncode == 0, again.stderr[-3000:]
    assert [hit for hit in xkcd.hits if "robots.txt" not in hit] == []  # not even a page
    assert "'archive/skipped': 3" in again.stderr


def test_a_big_file_is_uploaded_in_parts_and_verified(s3: S3Server, site: FaultServer, tmp_path: Path) -> None:
    size = 2 * PART_SIZE + 12345
    url = site.url_for(f"/range/big.bin?size={size}&digest=sha256")
    store = f"s3://{BUCKET}/big/"
    run = s3_crawl(s3, tmp_path / "work", store, "urls", "-a", f"urls={url}", "-s", "XKCDCRAWL_SPLIT_PARTS=1")
    assert run.returncode == 0, run.stderr[-3000:]
    body = file_body("big.bin@1", size)
    key = f"big/{site.folder}/big.bin"
    head = s3.client().head_object(Bucket=BUCKET, Key=key)
    assert re.fullmatch(r'"[0-9a-f]{32}-3"', head["ETag"])  # a multipart upload of three parts
    assert head["Metadata"]["sha256"] == hashlib.sha256(body).hexdigest()
    assert objects(s3, "big/") == {f"{site.folder}/big.bin": body}
    assert not list((tmp_path / "work").rglob("*.part"))  # the partial file went once uploaded
    again = s3_crawl(s3, tmp_path / "work", store, "urls", "-a", f"urls={url}")
    assert "Files: 0 downloaded, 1 uptodate" in again.stderr


def test_a_killed_crawl_resumes_its_partial_file_and_uploads_the_whole(
    s3: S3Server, site: FaultServer, tmp_path: Path
) -> None:
    size, work = 8 * MiB, tmp_path / "work"
    url = site.url_for(f"/range/resumed.bin?size={size}&rate={2 * MiB}")
    store = f"s3://{BUCKET}/resumed/"
    args = ["urls", "-a", f"urls={url}", "-s", "XKCDCRAWL_SPLIT_PARTS=1"]
    settings = {**s3.settings(), "FILES_STORE": store, "XKCDCRAWL_WORK_DIR": str(work)}
    cmd = [sys.executable, "-m", "scrapy", "crawl", *args, *[f"-s{k}={v}" for k, v in settings.items()]]
    proc = subprocess.Popen(cmd, cwd=PROJECT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while sum(p.stat().st_size for p in work.rglob("*.part")) < 2 * MiB:
            assert proc.poll() is None, "the crawl ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.02)
    finally:
        proc.kill()
        proc.wait()
    assert objects(s3, "resumed/") == {}
    kept = sum(p.stat().st_size for p in work.rglob("*.part"))
    again = s3_crawl(s3, work, store, *args)
    assert again.returncode == 0, again.stderr[-3000:]
    assert objects(s3, "resumed/") == {f"{site.folder}/resumed.bin": file_body("resumed.bin@1", size)}
    _, ranges, status, sent = site.ranges[-1]
    assert (status, ranges) == (206, f"bytes={kept}-")
    assert sent == size - kept  # only the rest came again
    assert not list(work.rglob("*.part"))


def test_a_bucket_that_cannot_be_used_is_one_line_before_any_request(
    s3: S3Server, site: FaultServer, tmp_path: Path
) -> None:
    url = site.url_for("/ok/a.bin")
    run = s3_crawl(s3, tmp_path / "work", "s3://no-such-bucket/x/", "urls", "-a", f"urls={url}")
    assert run.returncode == 2
    assert run.stderr.splitlines() == [
        "scrapy crawl urls: error: FILES_STORE='s3://no-such-bucket/x/': bucket 'no-such-bucket': 404 Not Found"
    ]
    assert site.hits == {}


def test_what_a_killed_run_recorded_is_written_back_by_the_next_run_there(s3: S3Server, tmp_path: Path) -> None:
    def open_names_book(work: Path) -> BucketLedger:
        settings = {**s3.settings(), "FILES_STORE": f"s3://{BUCKET}/book/", "XKCDCRAWL_WORK_DIR": str(work)}
        return bucket_ledger(get_crawler(settings_dict=settings), "names")

    killed, running = open_names_book(tmp_path / "work"), open_names_book(tmp_path / "work")
    killed.record("http://h.test/get?id=1", "h.test/report.pdf")
    running.record("http://h.test/get?id=2", "h.test/other.pdf")
    # killed dies: its copy stays behind under a process id that is gone.
    assert killed.path is not None
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    stem, _, token = killed.path.stem.rpartition("-")
    killed.path.rename(killed.path.with_name(f"{stem.rpartition('-')[0]}-{gone.pid}-{token}.jsonl"))

    after = open_names_book(tmp_path / "work")  # the next run on that machine
    assert after.get("http://h.test/get?id=1") == "h.test/report.pdf"
    assert after.get("http://h.test/get?id=2") is None  # a live run's is its own
    after.close()
    running.close()
    elsewhere = open_names_book(tmp_path / "other")
    assert elsewhere.data == {
        "http://h.test/get?id=1": "h.test/report.pdf",
        "http://h.test/get?id=2": "h.test/other.pdf",
    }
    elsewhere.close()
    assert len(s3.client().list_objects_v2(Bucket=BUCKET, Prefix="book/.xkcdcrawl/names/")["Contents"]) == 1  # merged


def test_remote_stores_take_no_lock() -> None:
    """A crawl has no lock on a bucket: one crawl per s3:// store is the scheduler's job (README)."""
    crawler = get_crawler(settings_dict={"FILES_STORE": f"s3://{BUCKET}/x/"})
    with pytest.raises(NotConfigured, match=re.escape(NOT_LOCKED)):
        StoreLockExtension.from_crawler(crawler)
