"""Spider arguments in process: how each spider binds its model, and how `scrapy crawl` refuses a bad one."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

import pytest
from scrapy.spiderloader import SpiderLoader
from scrapy.utils.project import get_project_settings
from scrapy.utils.test import get_crawler

from xkcdcrawl.args import ArgsError, ListingArgs, SpiderArgs, UrlsArgs, XkcdArgs, usage
from xkcdcrawl.commands.crawl import Command
from xkcdcrawl.spiders import ArgsSpider
from xkcdcrawl.spiders.xkcd import XkcdSpider

if TYPE_CHECKING:
    from pathlib import Path

LOADER = SpiderLoader.from_settings(get_project_settings())
# Arguments each spider can start with: none of them is read before start().
GOOD = {
    "album": {"url": "http://a.test/gallery.html"},
    "listing": {"url": "http://a.test/pub/", "depth": "1", "accept": "*.zip"},
    "urls": {"urls": "http://a.test/a.bin,http://a.test/b.bin", "repeat": "2"},
    "xkcd": {"start": "2", "end": "5", "base_url": "http://a.test"},
}


def test_every_spider_has_good_arguments_here() -> None:
    assert sorted(GOOD) == sorted(LOADER.list())


@pytest.mark.parametrize("name", sorted(GOOD))
def test_from_crawler_binds_the_spiders_argument_model(name: str) -> None:
    spidercls = LOADER.load(name)
    # scrapyd adds -a _job=<id> to every job.
    spider = spidercls.from_crawler(get_crawler(spidercls), _job="1f2e", **GOOD[name])
    assert isinstance(spider, ArgsSpider)
    model = spider.args_model
    assert type(spider.args) is model
    assert model is not SpiderArgs
    assert spider.args == model.from_kwargs(GOOD[name])
    # No raw -a string is set as an attribute, as Scrapy's Spider.__init__(**kwargs) would.
    assert all(vars(spider).get(key) != value for key, value in GOOD[name].items())


def test_runner_arguments_are_dropped_and_values_typed() -> None:
    # scrapyd adds -a _job=<id> to every job.
    spider = XkcdSpider.from_crawler(get_crawler(XkcdSpider), _job="1f2e", start="2", end="5", hires="true")
    assert (spider.args.start, spider.args.end, spider.args.hires) == (2, 5, True)
    # Scrapy's Spider.__init__(**kwargs) would have set self.start = "2" over start().
    assert callable(spider.start)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"strat": "1"}, "unknown argument 'strat' (did you mean 'start'?)"),
        ({"start": "5", "end": "2"}, "end (2) is before start (5)"),
        ({"end": "x"}, "end='x': not a whole number"),
        ({"hires": "maybe", "start": "0"}, "hires='maybe': not true or false; start='0': must be 1 or more"),
        ({"base_url": "file:///etc"}, "base_url='file:///etc': 'file:///etc' is not an http(s) URL"),
    ],
)
def test_a_bad_argument_fails_in_from_crawler_with_one_line(kwargs: dict[str, str], message: str) -> None:
    with pytest.raises(ArgsError) as error:
        XkcdSpider.from_crawler(get_crawler(XkcdSpider), **kwargs)
    assert str(error.value) == message


def test_values_already_typed_are_taken_and_flags_read_as_words() -> None:
    args = XkcdArgs.from_kwargs({"start": 3, "hires": "Yes", "dry_run": "off"})
    assert (args.start, args.hires, args.dry_run) == (3, True, False)
    with pytest.raises(ArgsError, match="start=True: not a whole number"):
        XkcdArgs.from_kwargs({"start": True})


def test_a_missing_required_argument_is_named_with_an_example() -> None:
    with pytest.raises(ArgsError) as error:
        ListingArgs.from_kwargs({"depth": "1"})
    assert error.value.problems == ["missing -a url=...: the listing to mirror, e.g. -a url=https://host/pub/"]


def test_usage_lists_every_argument_with_default_meaning_and_example() -> None:
    text = usage("xkcd", "Comics.", XkcdArgs)
    lines = text.splitlines()
    assert lines[:3] == ["Comics.", "", "arguments of xkcd (-a NAME=VALUE):"]
    assert [line.split()[0] for line in lines[3:]] == ["dry_run", "retry_failed", "start", "end", "base_url", "hires"]
    # One column for the defaults, whatever the names' lengths.
    assert len({line.index("default:") for line in lines[3:]}) == 1
    assert "  end          default: none" in text
    assert "last comic number (none: the newest) (e.g. -a end=1400)" in text
    assert "None" not in text
    assert "(required)" in usage("listing", "Listings.", ListingArgs)


def crawl_command(store: Path, *argv: str) -> tuple[Command, argparse.Namespace, list[str]]:
    """`scrapy crawl ARGV` up to its process_options(), with the project's settings and store."""
    command = Command()
    command.settings = get_project_settings().copy()
    command.settings.set("FILES_STORE", str(store), priority="cmdline")
    parser = argparse.ArgumentParser()
    command.add_options(parser)
    opts, args = parser.parse_known_args(argv)
    return command, opts, args


def test_the_crawl_command_refuses_a_bad_argument_with_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    command, opts, args = crawl_command(tmp_path / "store", "xkcd", "-a", "start=1", "-a", "ned=3")
    with pytest.raises(SystemExit) as exit_:
        command.process_options(args, opts)
    assert exit_.value.code == 2
    assert capsys.readouterr().err == "scrapy crawl xkcd: error: unknown argument 'ned' (did you mean 'end'?)\n"
    assert not (tmp_path / "store").exists()  # refused before the store is touched


def test_the_crawl_command_lets_good_arguments_through(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    command, opts, args = crawl_command(tmp_path / "store", "urls", "-a", "urls=http://a.test/a.bin")
    command.process_options(args, opts)
    assert opts.spargs == {"urls": "http://a.test/a.bin"}
    assert capsys.readouterr().err == ""


def test_the_report_writes_the_arguments_as_json_values(tmp_path: Path) -> None:
    listed = tmp_path / "urls.txt"
    listed.write_text("http://a.test/a.bin\n", encoding="utf-8")
    args = UrlsArgs.from_kwargs({"file": str(listed), "repeat": "3"})
    assert args.as_json() == {"dry_run": False, "retry_failed": False, "file": str(listed), "urls": None, "repeat": 3}
