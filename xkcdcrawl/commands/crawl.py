"""`scrapy crawl` that checks arguments, settings and the store first, and fails when a file failed."""

from __future__ import annotations

import contextlib
import difflib
import gc
import importlib
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from scrapy.commands.crawl import Command as ScrapyCrawl
from scrapy.exceptions import UsageError
from scrapy.settings import default_settings
from scrapy.spiderloader import get_spider_loader

from xkcdcrawl import settings as project_settings
from xkcdcrawl.args import usage
from xkcdcrawl.outcomes import EXIT_REFUSED, exit_status

if TYPE_CHECKING:
    import argparse

    from scrapy.settings import BaseSettings

# Read with int() by Scrapy or by us: 2.5 is as wrong there as abc.
WHOLE = frozenset(
    {
        "CONCURRENT_ITEMS",
        "CONCURRENT_REQUESTS",
        "CONCURRENT_REQUESTS_PER_DOMAIN",
        "CONCURRENT_REQUESTS_PER_IP",
        "RETRY_TIMES",
        "DOWNLOAD_MAXSIZE",
        "DOWNLOAD_WARNSIZE",
        "DEPTH_LIMIT",
        "REDIRECT_MAX_TIMES",
        "CLOSESPIDER_ERRORCOUNT",
        "CLOSESPIDER_ITEMCOUNT",
        "CLOSESPIDER_PAGECOUNT",
    }
)
# The least value that makes sense; other numbers (priorities) may be negative.
MINIMUM = {
    "CONCURRENT_ITEMS": 1,
    "CONCURRENT_REQUESTS": 1,
    "CONCURRENT_REQUESTS_PER_DOMAIN": 1,
    "DOWNLOAD_DELAY": 0,
    "DOWNLOAD_TIMEOUT": 0,
    "RETRY_TIMES": 0,
    "DOWNLOAD_MAXSIZE": 0,
    "XKCDCRAWL_PROGRESS_INTERVAL": 0,
    "XKCDCRAWL_RETRY_BACKOFF": 0,
    "XKCDCRAWL_RETRY_BACKOFF_MAX": 0,
    "XKCDCRAWL_RETRY_AFTER_MAX": 0,
}


def setting_types() -> dict[str, type]:
    """The type of every bool and number setting, from Scrapy's defaults and ours."""
    types: dict[str, type] = {}
    for module in (default_settings, project_settings):
        for name, value in vars(module).items():
            if name.isupper() and isinstance(value, bool | int | float):
                types[name] = type(value)
    return types


def bad_setting(settings: BaseSettings) -> str | None:
    """'-s NAME=VALUE: what is wrong' for the first setting that Scrapy or we could not read."""
    for name, kind in setting_types().items():
        value = settings.get(name)
        if not isinstance(value, str):
            # A setting given in Python (settings.py) has its right type already.
            continue
        try:
            if kind is bool:
                settings.getbool(name)
                continue
            number = int(value) if name in WHOLE else float(value)
        except ValueError:
            wanted = "true or false" if kind is bool else "a whole number" if name in WHOLE else "a number"
            return f"-s {name}={value!r}: not {wanted}"
        # NaN is the one number unequal to itself; neither it nor an infinity is a usable value.
        if number != number or number in {float("inf"), float("-inf")}:
            return f"-s {name}={value!r}: not a finite number"
        if (least := MINIMUM.get(name)) is not None and number < least:
            return f"-s {name}={value!r}: must be {least} or more"
    return None


def unusable_store(settings: BaseSettings) -> str | None:
    """Why a local FILES_STORE cannot be written (created like mkdir -p), or an s3:// one reached; or None."""
    uri = str(settings.get("FILES_STORE") or "")
    if uri.startswith("s3://"):
        from xkcdcrawl.s3store import unusable

        return unusable(settings)
    if not uri or ("://" in uri and not uri.startswith("file://")):
        # gs:// and ftp:// stores: Scrapy's stores say what is wrong themselves.
        return None
    probe = Path(uri.removeprefix("file://")) / ".xkcdcrawl"
    try:
        probe.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=probe, prefix="probe-"):
            pass
    except OSError as error:
        where = f" ({error.filename})" if error.filename else ""
        return f"FILES_STORE={uri!r}: cannot write there{where}: {error.strerror or error}"
    return None


class Command(ScrapyCrawl):
    def process_options(self, args: list[str], opts: argparse.Namespace) -> None:
        super().process_options(args, opts)
        if len(args) != 1:
            # run() says what is wrong.
            return
        assert self.settings is not None
        loader = get_spider_loader(self.settings)
        try:
            spidercls = loader.load(args[0])
        except KeyError:
            near = difflib.get_close_matches(args[0], loader.list(), n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else f"; spiders: {', '.join(sorted(loader.list()))}"
            self._refuse(args[0], f"no spider named {args[0]!r}{hint}")
        model = getattr(spidercls, "args_model", None)
        if model is None:
            return
        if "help" in opts.spargs:
            sys.stdout.write(usage(args[0], spidercls.__doc__ or "", model))
            raise SystemExit(0)
        try:
            spider_args = model.from_kwargs(opts.spargs)
            if check := getattr(spidercls, "check_settings", None):
                check(spider_args, self.settings)
        except ValueError as error:
            # ArgsError names every bad argument; check_settings() says what is missing.
            self._refuse(args[0], str(error))
        # Last: a refused argument or setting must leave no folder behind.
        if problem := bad_setting(self.settings) or unusable_store(self.settings):
            self._refuse(args[0], problem)

    def run(self, args: list[str], opts: argparse.Namespace) -> None:
        if len(args) != 1:
            raise UsageError("give exactly one spider name")
        assert self.settings is not None
        assert self.crawler_process is not None
        # The HTTP handler's TLS modules each build deprecated-class shims that call inspect.stack(),
        # whose cost grows with the import frames on the stack: one by one from here, not nested
        # three deep under the engine's handler loading, they take ~30 ms less of each start-up.
        # Only a head start: should a Scrapy upgrade move them, the handler imports what it needs.
        for module in ("scrapy.core.downloader.tls", "scrapy.core.downloader.contextfactory"):
            with contextlib.suppress(ImportError):
                importlib.import_module(module)

        crawler = self._create_crawler(args[0])
        self.crawler_process.crawl(crawler, **opts.spargs)
        self.crawler_process.start()
        # The process ends with this command: the collections at exit would walk every object
        # of the crawl (0.1-0.2 s of each run here). Files and feeds are closed by now.
        gc.freeze()
        fail_on_error = self.settings.getbool("XKCDCRAWL_FAIL_ON_ERROR")
        self.exitcode = exit_status(crawler, fail_on_error, self.crawler_process.bootstrap_failed)

    def _refuse(self, spider: str, problem: str) -> None:
        """One line and exit 2, like a usage error, without argparse's usage block."""
        assert self.settings is not None
        line = f"scrapy crawl {spider}: error: {problem}\n"
        sys.stderr.write(line)
        # scrapyd's job log, where its users look, gets the line too.
        if log_file := self.settings.get("LOG_FILE"):
            with Path(log_file).open("a", encoding="utf-8") as log:
                log.write(line)
        # The process ends here: see run().
        gc.freeze()
        raise SystemExit(EXIT_REFUSED) from None
