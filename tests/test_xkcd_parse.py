"""The xkcd parse functions on real captured pages and real API records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from scrapy.http import HtmlResponse
from servers.xkcdsite import load_api

from xkcdcrawl.spiders.xkcd import NO_PAGE, PageComic, comic_from_info, comic_from_page, with_page

FIXTURES = Path(__file__).parent / "fixtures"
API = load_api()


def page(name: str, url: str) -> HtmlResponse:
    return HtmlResponse(url, body=(FIXTURES / "pages" / name).read_bytes())


@pytest.mark.parametrize(
    ("name", "num", "image"),
    [
        ("2011-07_front_latest-0919_old-layout.html", 919, "http://imgs.xkcd.com/comics/tween_bromance.png"),
        ("2013-11_front_latest-1258.html", 1258, "http://imgs.xkcd.com/comics/first.png"),
        ("2017-10_comic_0302.html", 302, "https://imgs.xkcd.com/comics/names.png"),
        ("2017-10_comic_0303.html", 303, "https://imgs.xkcd.com/comics/compiling.png"),
        ("2017-10_comic_1898.html", 1898, "https://imgs.xkcd.com/comics/october_2017.png"),
        ("2017-10_comic_1899_latest.html", 1899, "https://imgs.xkcd.com/comics/ears.png"),
        ("2018-08_comic_0001.html", 1, "https://imgs.xkcd.com/comics/barrel_cropped_(1).jpg"),
        ("2019-11_front_latest-2228.html", 2228, "https://imgs.xkcd.com/comics/machine_learning_captcha.png"),
        ("2019-12_comic_0353.html", 353, "https://imgs.xkcd.com/comics/python.png"),
        ("2022-08_comic_0353.html", 353, "https://imgs.xkcd.com/comics/python.png"),
    ],
)
def test_every_page_era_gives_the_comic_image(name: str, num: int, image: str) -> None:
    parsed = comic_from_page(page(name, f"https://xkcd.com/{num}/"))
    assert parsed.image_url == image  # protocol-relative src made absolute, old http:// kept
    assert parsed.image_url.rsplit("/", 1)[-1] == API[num]["img"].rsplit("/", 1)[-1]


@pytest.mark.parametrize(
    ("name", "num", "image_2x"),
    [
        ("2017-10_comic_1898.html", 1898, "https://imgs.xkcd.com/comics/october_2017_2x.png"),
        ("2019-11_front_latest-2228.html", 2228, "https://imgs.xkcd.com/comics/machine_learning_captcha_2x.png"),
        ("2022-08_comic_0353.html", 353, None),  # old comics have no srcset
    ],
)
def test_srcset_gives_the_2x_image(name: str, num: int, image_2x: str | None) -> None:
    assert comic_from_page(page(name, f"https://xkcd.com/{num}/")).image_2x_url == image_2x


def test_image_wrapped_in_a_link_to_the_large_version() -> None:
    body = (FIXTURES / "pages" / "2022-08_comic_0353.html").read_text(encoding="utf-8")
    img = '<img src="//imgs.xkcd.com/comics/python.png"'
    wrapped = body.replace(img, f'<a href="//xkcd.com/657/large/">{img}', 1).replace(
        'style="image-orientation:none" />', 'style="image-orientation:none" /></a>', 1
    )
    parsed = comic_from_page(HtmlResponse("https://xkcd.com/657/", body=wrapped.encode()))
    assert parsed.image_url == "https://imgs.xkcd.com/comics/python.png"
    assert parsed.link == "https://xkcd.com/657/large/"


def test_page_without_comic_image() -> None:
    response = HtmlResponse("https://xkcd.com/1608/", body=b'<div id="comic"><div id="explore"></div></div>')
    assert comic_from_page(response) == NO_PAGE


def test_info_record_fields() -> None:
    item = comic_from_info(API[1137], "https://xkcd.com/1137/")
    assert (item.num, item.title, item.date) == (1137, "\u202eLTR", "2012-11-21")  # title kept as published
    assert item.image_url == "https://imgs.xkcd.com/comics/rtl.png"
    assert item.page_url == "https://xkcd.com/1137/"


@pytest.mark.parametrize("num", [1608, 1663])
def test_bare_comics_folder_is_no_image(num: int) -> None:
    item = with_page(comic_from_info(API[num], f"https://xkcd.com/{num}/"), NO_PAGE, hires=False)
    assert item.image_url is None
    assert item.file_urls == []


@pytest.mark.parametrize(
    ("num", "name"),
    [
        (1, "barrel_cropped_(1).jpg"),
        (859, "(.png"),
        (961, "eternal_flame.gif"),
        (1446, "landing/awake.png"),
        (1036, "reviews.png"),
        (1037, "reviews.png"),
        (2198, "throw.png"),
    ],
)
def test_odd_image_urls(num: int, name: str) -> None:
    item = comic_from_info(API[num], f"https://xkcd.com/{num}/")
    assert item.image_url == f"https://imgs.xkcd.com/comics/{name}"


def test_2014_wire_format_with_escaped_slashes() -> None:
    raw = (FIXTURES / "api" / "1409_info.0.json_2014-08.json").read_bytes()
    item = comic_from_info(json.loads(raw), "https://xkcd.com/1409/")
    assert item.image_url == "http://imgs.xkcd.com/comics/query.png"
    assert (item.title, item.alt, item.date) == ("Query", "SELECT * FROM GHOSTS", "2014-08-18")


def test_hires_takes_the_2x_image_and_falls_back() -> None:
    item = comic_from_info(API[1898], "https://xkcd.com/1898/")
    page_2x = PageComic(
        "https://imgs.xkcd.com/comics/october_2017.png", "https://imgs.xkcd.com/comics/october_2017_2x.png", None
    )
    assert with_page(item, page_2x, hires=True).file_urls == ["https://imgs.xkcd.com/comics/october_2017_2x.png"]
    assert with_page(item, page_2x, hires=False).file_urls == ["https://imgs.xkcd.com/comics/october_2017.png"]
    assert with_page(item, NO_PAGE, hires=True).file_urls == ["https://imgs.xkcd.com/comics/october_2017.png"]
