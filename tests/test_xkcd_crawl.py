"""End-to-end xkcd crawls against the local mirror: bytes on disk, feed, exit status."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from servers.xkcdsite import image_bytes

if TYPE_CHECKING:
    from conftest import Crawl
    from servers.xkcdsite import Site


pytestmark = pytest.mark.e2e


def xkcd_args(site: Site, *more: str) -> list[str]:
    return ["xkcd", "-a", f"base_url={site.origin}", *more]


def test_range_with_404_downloads_real_names_and_exports_each_comic(xkcd: Site, crawl: Crawl) -> None:
    run = crawl(*xkcd_args(xkcd, "-a", "start=402", "-a", "end=406"))
    assert run.returncode == 0, run.stderr
    names = {402: "1000_miles_north.png", 403: "convincing_pickup_line.png", 405: "journal_3.png", 406: "venting.png"}
    assert run.stored() == {f"xkcd/{n}": image_bytes(f"/comics/{n}") for n in names.values()}
    items = {item["num"]: item for item in run.items()}
    assert sorted(items) == [402, 403, 405, 406]  # 404 does not exist: no item, no error
    first = items[402]
    assert first["title"] == first["safe_title"] == "1,000 Miles North"
    assert first["date"] == "2008-03-28"
    assert first["page_url"] == f"{xkcd.origin}/402/"
    assert first["files"] == [
        {
            "url": f"{xkcd.images}/comics/1000_miles_north.png",
            "path": "xkcd/1000_miles_north.png",
            "checksum": first["files"][0]["checksum"],
            "status": "downloaded",
            "size": len(image_bytes("/comics/1000_miles_north.png")),
        }
    ]
    assert "'xkcd/comics_missing': 1" in run.stderr
    assert "Comic 404 does not exist (HTTP 404)" in run.stderr
    assert "ERROR" not in run.stderr


def test_second_run_makes_no_request_for_complete_comics(xkcd: Site, crawl: Crawl) -> None:
    args = xkcd_args(xkcd, "-a", "start=1035", "-a", "end=1037")  # 1036 and 1037 share reviews.png
    assert crawl(*args).returncode == 0
    xkcd.hits.clear()
    again = crawl(*args)
    assert again.returncode == 0, again.stderr
    assert [hit for hit in xkcd.hits if "robots.txt" not in hit] == []
    assert "'archive/skipped': 3" in again.stderr
    assert "Skipped 3 comics already complete" in again.stderr
    assert again.items() == []


def test_second_run_skips_the_comic_xkcd_never_had(xkcd: Site, crawl: Crawl) -> None:
    args = xkcd_args(xkcd, "-a", "start=403", "-a", "end=405")
    assert crawl(*args).returncode == 0
    xkcd.hits.clear()
    again = crawl(*args)
    assert again.returncode == 0, again.stderr
    assert [hit for hit in xkcd.hits if "robots.txt" not in hit] == []  # not even /404/info.0.json
    assert "'archive/skipped': 3" in again.stderr


def test_a_404_past_the_newest_comic_is_asked_again(xkcd: Site, crawl: Crawl) -> None:
    xkcd.newest = 2
    args = xkcd_args(xkcd, "-a", "start=2", "-a", "end=3")
    assert "Comic 3 does not exist (HTTP 404)" in crawl(*args).stderr
    xkcd.newest = 3  # published since
    again = crawl(*args)
    assert again.returncode == 0, again.stderr
    assert [item["num"] for item in again.items()] == [3]
    assert "xkcd/island_color.jpg" in again.stored()


def test_deleted_file_is_fetched_again(xkcd: Site, crawl: Crawl) -> None:
    args = xkcd_args(xkcd, "-a", "start=1", "-a", "end=2")
    first = crawl(*args)
    (first.store / "xkcd" / "barrel_cropped_(1).jpg").unlink()
    again = crawl(*args)
    assert again.returncode == 0
    assert "'file_status_count/downloaded': 1" in again.stderr
    assert again.stored() == first.stored()


def test_interactive_comic_without_image_is_reported(xkcd: Site, crawl: Crawl) -> None:
    run = crawl(*xkcd_args(xkcd, "-a", "start=1607", "-a", "end=1609"))
    assert run.returncode == 0, run.stderr
    items = {item["num"]: item for item in run.items()}
    assert items[1608]["image_url"] is None
    assert items[1608]["files"] == []
    assert "Comic 1608 (Hoverboard): no image (interactive comic), skipped" in run.stderr
    assert set(run.stored()) == {"xkcd/supreme_court.png", "xkcd/food_combinations.png"}


def test_hires_stores_the_2x_image_where_there_is_one(xkcd: Site, crawl: Crawl) -> None:
    run = crawl(*xkcd_args(xkcd, "-a", "start=1897", "-a", "end=1898", "-a", "hires=true"))
    assert run.returncode == 0, run.stderr
    assert set(run.stored()) == {"xkcd/self_driving.png", "xkcd/october_2017_2x.png"}
    by_num = {item["num"]: item for item in run.items()}
    assert by_num[1898]["image_2x_url"] == f"{xkcd.images}/comics/october_2017_2x.png"


def test_without_end_crawls_up_to_the_newest_comic(xkcd: Site, crawl: Crawl) -> None:
    xkcd.newest = 3
    run = crawl(*xkcd_args(xkcd))
    assert run.returncode == 0, run.stderr
    assert sorted(item["num"] for item in run.items()) == [1, 2, 3]
    assert "Newest comic is 3" in run.stderr


def test_broken_api_answers_are_errors_not_tracebacks(xkcd: Site, crawl: Crawl) -> None:
    xkcd.faults = {"/5/info.0.json": (200, b"<html>maintenance</html>"), "/6/info.0.json": (500, b"")}
    run = crawl(*xkcd_args(xkcd, "-a", "start=4", "-a", "end=7", "-s", "XKCDCRAWL_RETRY_BACKOFF=0"))
    assert run.returncode == 1  # comics are missing: cron should notice
    assert sorted(item["num"] for item in run.items()) == [4, 7]
    assert f"Comic 5: unreadable answer from {xkcd.origin}/5/info.0.json: JSONDecodeError" in run.stderr
    assert f"Cannot read {xkcd.origin}/6/info.0.json: HTTP 500" in run.stderr
    assert "Traceback" not in run.stderr


def page_host_hits(site: Site) -> list[str]:
    """What the crawl asked the page host (pages and API), robots.txt aside, in order."""
    return sorted(hit for hit in site.hits if hit.startswith("site:") and hit != "site:/robots.txt")


def test_a_comic_costs_one_request_on_the_page_host(xkcd: Site, crawl: Crawl) -> None:
    run = crawl(*xkcd_args(xkcd, "-a", "start=302", "-a", "end=303"))
    assert run.returncode == 0, run.stderr
    assert page_host_hits(xkcd) == ["site:/302/info.0.json", "site:/303/info.0.json"]  # no /302/, /303/
    assert sorted(hit for hit in xkcd.hits if hit.startswith("images:/comics/")) == [
        "images:/comics/compiling.png",
        "images:/comics/names.png",
    ]
    assert run.stored() == {f"xkcd/{n}": image_bytes(f"/comics/{n}") for n in ("names.png", "compiling.png")}
    items = {item["num"]: item for item in run.items()}
    assert items[302]["image_url"] == f"{xkcd.images}/comics/names.png"
    assert items[302]["image_2x_url"] is None  # only a page read for hires=true gives it


def test_hires_reads_the_page_for_the_2x_image(xkcd: Site, crawl: Crawl) -> None:
    run = crawl(*xkcd_args(xkcd, "-a", "start=1898", "-a", "end=1898", "-a", "hires=true"))
    assert run.returncode == 0, run.stderr
    assert page_host_hits(xkcd) == ["site:/1898/", "site:/1898/info.0.json"]
    assert [hit for hit in xkcd.hits if hit.startswith("images:/comics/")] == ["images:/comics/october_2017_2x.png"]


def test_a_record_without_image_falls_back_to_the_page(xkcd: Site, crawl: Crawl) -> None:
    # Comic 1's record gets 1608's bare-folder img; its real captured page still names the image.
    xkcd.api[1] = {**xkcd.api[1], "img": xkcd.api[1608]["img"]}
    run = crawl(*xkcd_args(xkcd, "-a", "start=1", "-a", "end=2"))
    assert run.returncode == 0, run.stderr
    assert page_host_hits(xkcd) == ["site:/1/", "site:/1/info.0.json", "site:/2/info.0.json"]
    assert run.stored() == {
        "xkcd/barrel_cropped_(1).jpg": image_bytes("/comics/barrel_cropped_(1).jpg"),
        "xkcd/tree_cropped_(1).jpg": image_bytes("/comics/tree_cropped_(1).jpg"),
    }


def test_interactive_comic_is_looked_up_on_its_page(xkcd: Site, crawl: Crawl) -> None:
    run = crawl(*xkcd_args(xkcd, "-a", "start=1607", "-a", "end=1609"))
    assert run.returncode == 0, run.stderr
    assert page_host_hits(xkcd) == [
        "site:/1607/info.0.json",
        "site:/1608/",
        "site:/1608/info.0.json",
        "site:/1609/info.0.json",
    ]
