"""urls and album spiders: the seed programs' jobs, end to end against local servers."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

import pytest
from scrapy.http import HtmlResponse
from servers.faultserver import FaultServer, file_body
from servers.staticsite import StaticSite

from xkcdcrawl.spiders.album import album_folder, gallery_images, imgur_album_id, imgur_images

if TYPE_CHECKING:
    from pathlib import Path

    from conftest import Crawl

pytestmark = pytest.mark.e2e

QUIET = ["-s", "XKCDCRAWL_PROGRESS_INTERVAL=0"]


def test_url_list_file_with_comments_and_a_bad_line(tmp_path: Path, server: FaultServer, crawl: Crawl) -> None:
    listing = tmp_path / "urls.txt"
    lines = [
        "# IRS forms",
        "",
        server.url_for("/ok/irs-pdf/f1040.pdf"),
        "not a url",
        server.url_for("/ok/irs-prior/f1040.pdf"),
    ]
    commented = server.url_for("/ok/fw4.pdf") + "   # the W-4, a comment after the URL"
    listing.write_text("\n".join([*lines, "ftp://h/x.pdf", commented]) + "\n", encoding="utf-8")
    run = crawl("urls", "-a", f"file={listing}", *QUIET)
    assert run.returncode == 1  # the bad lines are part of the result
    assert f"{listing} line 4: 'not a url' is not an http(s) URL, skipped" in run.stderr
    assert f"{listing} line 6: 'ftp://h/x.pdf' is not an http(s) URL, skipped" in run.stderr
    assert "2 bad URLs in the list" in run.stderr
    stored = run.stored()
    assert stored[f"{server.folder}/f1040.pdf"] == file_body("irs-pdf/f1040.pdf")
    assert file_body("irs-prior/f1040.pdf") in stored.values()  # same name, other folder: not overwritten
    assert stored[f"{server.folder}/fw4.pdf"] == file_body("fw4.pdf")
    assert len(stored) == 3


def test_repeat_stores_each_draw_and_reports_identical_ones(server: FaultServer, crawl: Crawl) -> None:
    urls = f"urls={server.url_for('/random/20/30')},{server.url_for('/same/8/8')}"
    run = crawl("urls", "-a", urls, "-a", "repeat=10", *QUIET)
    assert run.returncode == 0, run.stderr
    stored = run.stored()
    randoms = {path: body for path, body in stored.items() if path.startswith(f"{server.folder}/30-")}
    assert sorted(randoms) == [f"{server.folder}/30-{i:02d}.png" for i in range(1, 11)]  # type from Content-Type
    assert len(set(randoms.values())) == 10  # ten different images: no request was collapsed
    assert server.hits["/random/20/30"] == 10
    assert "'urls/identical_draws': 9" in run.stderr
    again = crawl("urls", "-a", urls, "-a", "repeat=10", *QUIET)
    assert "Files: 0 downloaded, 20 uptodate" in again.stderr  # the names chosen last time are found
    assert server.hits["/random/20/30"] == 10


def test_name_from_content_disposition_or_query(server: FaultServer, crawl: Crawl) -> None:
    urls = [
        server.url_for("/disposition/get?filename=report.pdf"),
        server.url_for("/disposition/get?filename=b%C3%A4r.txt"),
    ]
    run = crawl("urls", "-a", "urls=" + ",".join(urls), *QUIET)
    assert run.returncode == 0, run.stderr
    assert run.stored() == {f"{server.folder}/{name}": file_body("get") for name in ("report.pdf", "bär.txt")}
    again = crawl("urls", "-a", "urls=" + ",".join(urls), *QUIET)
    assert "Files: 0 downloaded, 2 uptodate" in again.stderr


def test_same_name_with_different_queries_is_kept_apart(server: FaultServer, crawl: Crawl) -> None:
    urls = [server.url_for("/ok/download.php?id=1"), server.url_for("/ok/download.php?id=2&size=10")]
    run = crawl("urls", "-a", "urls=" + ",".join(urls), *QUIET)
    assert run.returncode == 0, run.stderr
    stored = run.stored()
    assert len(stored) == 2
    assert {file_body("download.php"), file_body("download.php", 10)} == set(stored.values())
    assert f"{server.folder}/download.php" in stored  # the first keeps the URL's name, as curl -O would


def test_a_small_run_ends_as_soon_as_its_files_are_done(server: FaultServer, crawl: Crawl) -> None:
    """Not on the engine's 5 s heartbeat: items from start() used to wait for it."""
    run = crawl("urls", "-a", f"urls={server.url_for('/ok/one.bin')}", *QUIET)
    assert run.returncode == 0, run.stderr
    assert run.stored() == {f"{server.folder}/one.bin": file_body("one.bin")}
    elapsed = float(re.findall(r"'elapsed_time_seconds': ([0-9.]+)", run.stderr)[0])
    assert elapsed < 4  # spider opened to closed; 5.0 and more before


def test_a_failed_file_is_one_error_line(server: FaultServer, crawl: Crawl) -> None:
    urls = [server.url_for("/status/500/x.bin"), server.url_for("/ok/fine.bin")]
    run = crawl("urls", "-a", "urls=" + ",".join(urls), "-s", "XKCDCRAWL_RETRY_BACKOFF=0", *QUIET)
    assert run.returncode == 1
    errors = [line.split("] ERROR: ")[1] for line in run.stderr.splitlines() if "] ERROR: " in line]
    assert errors == [f"File failed: {urls[0]} (HTTP 500)"]  # not Scrapy's "Gave up retrying" too
    assert "Gave up retrying" in run.stderr  # still there, as INFO


def test_empty_list_file(tmp_path: Path, crawl: Crawl) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing yet\n\n", encoding="utf-8")
    run = crawl("urls", "-a", f"file={empty}")
    assert run.returncode == 2
    assert f"no usable URL in {empty}" in run.stderr


GALLERY = """<html><head><title>Cats</title></head><body>
<img src="/img/a-small.jpg" srcset="/img/a-small.jpg 400w, /img/a-large.jpg 1600w, /img/a-medium.jpg 800w">
<img src="/img/b.png" srcset="/img/b.png 1x, /img/b@2x.png 2x">
<img src="data:image/gif;base64,R0lGODlhAQABAAAAACw=">
<img data-src="/img/lazy.webp" src="/img/placeholder.gif">
<a href="/img/full/c.gif">full size</a> <a href="/about.html">about</a>
<a href="/other/b.png">same name, other image</a>
</body></html>"""


def test_gallery_images_on_a_page() -> None:
    page = HtmlResponse("https://h.test/albums/cats.html", body=GALLERY.encode())
    assert gallery_images(page) == [
        "https://h.test/img/a-large.jpg",
        "https://h.test/img/b@2x.png",
        "https://h.test/img/lazy.webp",
        "https://h.test/img/full/c.gif",
        "https://h.test/other/b.png",
    ]
    assert album_folder(page.url) == "cats"


PICTURE = """<html><body><picture>
<source type="image/avif" srcset="/img/p-800.avif 800w, /img/p-2000.avif 2000w">
<source type="image/webp" srcset="/img/p-1200.webp 1200w">
<img src="/img/p-fallback.jpg" srcset="/img/p-400.jpg 400w">
</picture><img src="/img/plain.png"></body></html>"""


def test_picture_sources_give_their_largest_candidate(crawl: Crawl) -> None:
    routes = {"/pics/": ("text/html", PICTURE.encode())}
    routes |= {path: ("image/png", path.encode()) for path in ("/img/p-2000.avif", "/img/plain.png")}
    with StaticSite(routes) as site:
        run = crawl("album", "-a", f"url={site.url}/pics/", *QUIET)
    assert run.returncode == 0, run.stderr
    assert run.stored() == {"pics/p-2000.avif": b"/img/p-2000.avif", "pics/plain.png": b"/img/plain.png"}
    assert not [path for path in site.paths() if "p-fallback" in path or "p-400" in path]


def test_imgur_ids_and_api_answer() -> None:
    assert imgur_album_id("https://imgur.com/a/AbC12") == "AbC12"
    assert imgur_album_id("https://imgur.com/gallery/AbC12/") == "AbC12"
    assert imgur_album_id("https://example.com/a/AbC12") is None
    payload = {
        "data": [{"id": "x", "link": "https://i.imgur.com/x.jpg"}, {"id": "y", "link": "https://i.imgur.com/y.png"}],
        "success": True,
    }
    assert imgur_images(payload) == ["https://i.imgur.com/x.jpg", "https://i.imgur.com/y.png"]
    assert imgur_images({"data": {"images": payload["data"]}}) == [
        "https://i.imgur.com/x.jpg",
        "https://i.imgur.com/y.png",
    ]


def test_gallery_page_crawl(crawl: Crawl) -> None:
    images = ["/img/a-large.jpg", "/img/b@2x.png", "/img/lazy.webp", "/img/full/c.gif", "/other/b.png"]
    routes = {"/albums/cats.html": ("text/html", GALLERY.encode())}
    routes |= {path: ("image/png", path.encode() * 50) for path in images}
    with StaticSite(routes) as site:
        run = crawl("album", "-a", f"url={site.url}/albums/cats.html", *QUIET)
    assert run.returncode == 0, run.stderr
    stored = run.stored()
    assert len(stored) == 5
    assert stored["cats/a-large.jpg"] == b"/img/a-large.jpg" * 50
    assert b"/other/b.png" * 50 in stored.values()
    assert "/img/a-small.jpg" not in site.paths()  # only the largest candidate


def test_imgur_album_through_the_api(crawl: Crawl) -> None:
    with StaticSite({}) as site:
        data = [{"id": f"i{n}", "type": "image/jpeg", "link": f"{site.url}/i{n}.jpg"} for n in range(3)]
        site.routes["/3/album/AbC12/images"] = (
            "application/json",
            json.dumps({"data": data, "success": True, "status": 200}).encode(),
        )
        site.routes |= {f"/i{n}.jpg": ("image/jpeg", b"jpeg%d" % n) for n in range(3)}
        args = [
            "-a",
            "url=https://imgur.com/a/AbC12",
            "-s",
            f"XKCDCRAWL_IMGUR_API_URL={site.url}",
            "-s",
            "IMGUR_CLIENT_ID=test-client",
        ]
        run = crawl("album", *args, *QUIET)
    assert run.returncode == 0, run.stderr
    assert run.stored() == {f"imgur-AbC12/i{n}.jpg": b"jpeg%d" % n for n in range(3)}
    api_headers = dict(site.requests)["/3/album/AbC12/images"]
    assert api_headers["Authorization"] == "Client-ID test-client"
