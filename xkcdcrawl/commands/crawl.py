"""`scrapy crawl` that checks spider arguments first and fails when a file failed."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError
from scrapy.commands.crawl import Command as ScrapyCrawl
from scrapy.exceptions import UsageError
from scrapy.spiderloader import get_spider_loader

from xkcdcrawl.args import describe
from xkcdcrawl.extensions.progress import failures
from xkcdcrawl.lock import REFUSED

if TYPE_CHECKING:
    import argparse


class Command(ScrapyCrawl):
    def process_options(self, args: list[str], opts: argparse.Namespace) -> None:
        super().process_options(args, opts)
        if len(args) != 1:
            return  # run() says what is wrong
        assert self.settings is not None
        try:
            spidercls = get_spider_loader(self.settings).load(args[0])
        except KeyError:
            raise UsageError(f"no spider named {args[0]!r}", print_help=False) from None
        model = getattr(spidercls, "args_model", None)
        if model is None:
            return
        try:
            spider_args = model.from_kwargs(opts.spargs)
            if check := getattr(spidercls, "check_settings", None):
                check(spider_args, self.settings)
        except (ValidationError, ValueError) as error:
            # One line and exit 2, like a usage error, without argparse's usage block.
            problem = describe(error) if isinstance(error, ValidationError) else str(error)
            line = f"scrapy crawl {args[0]}: error: {problem}\n"
            sys.stderr.write(line)
            if log_file := self.settings.get("LOG_FILE"):  # scrapyd's job log, where its users look
                with Path(log_file).open("a", encoding="utf-8") as log:
                    log.write(line)
            raise SystemExit(2) from None

    def run(self, args: list[str], opts: argparse.Namespace) -> None:
        if len(args) != 1:
            raise UsageError("give exactly one spider name")
        assert self.settings is not None
        assert self.crawler_process is not None
        crawler = self._create_crawler(args[0])
        self.crawler_process.crawl(crawler, **opts.spargs)
        self.crawler_process.start()
        failed = failures(crawler.stats) if crawler.stats else 0
        if self.crawler_process.bootstrap_failed:
            self.exitcode = 1
        elif crawler.stats and crawler.stats.get_value("finish_reason") == REFUSED:
            self.exitcode = 2  # another crawl holds the store (xkcdcrawl.lock)
        elif failed and self.settings.getbool("XKCDCRAWL_FAIL_ON_ERROR"):
            self.exitcode = 1  # cron and scrapyd users see that files are missing
