"""Every private Scrapy (and Twisted) detail xkcdcrawl relies on, pinned: an upgrade that changes one fails here, by name.

When a test here fails, read the upstream change, adapt the module named in the test's
parameters, then update the pin. Public APIs are not listed: Scrapy deprecates those first.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
from typing import Any

import pytest
import scrapy
from scrapy.utils.test import get_crawler

from xkcdcrawl import settings as project_settings

# (module, dotted name, parameters it must take, who relies on it)
CALLABLES = [
    (
        "scrapy.core.downloader.handlers.http11",
        "_ScrapyAgent.__init__",
        [
            "self",
            "contextFactory",
            "connectTimeout",
            "bindAddress",
            "pool",
            "maxsize",
            "warnsize",
            "fail_on_dataloss",
            "crawler",
            "tls_verbose_logging",
        ],
        "xkcdcrawl.handlers",
    ),
    (
        "scrapy.core.downloader.handlers.http11",
        "_ScrapyAgent.download_request",
        ["self", "request"],
        "xkcdcrawl.handlers",
    ),
    (
        "scrapy.core.downloader.handlers.http11",
        "_ScrapyAgent._cb_bodyready",
        ["self", "txresponse", "request"],
        "xkcdcrawl.handlers",
    ),
    (
        "scrapy.core.downloader.handlers.http11",
        "_ScrapyAgent._cb_bodydone",
        ["self", "result", "url"],
        "xkcdcrawl.handlers",
    ),
    (
        "scrapy.core.downloader.handlers.http11",
        "_ScrapyAgent._headers_from_twisted_response",
        ["response"],
        "xkcdcrawl.handlers",
    ),
    (
        "scrapy.utils._download_handlers",
        "get_maxsize_msg",
        ["size", "limit", "request", "expected"],
        "xkcdcrawl.handlers",
    ),
    ("scrapy.utils._download_handlers", "wrap_twisted_exceptions", [], "xkcdcrawl.handlers"),
    (
        "scrapy.pipelines.media",
        "MediaPipeline._check_media_to_download",
        ["self", "request", "info", "item"],
        "xkcdcrawl.pipelines",
    ),
    ("scrapy.pipelines.media", "MediaPipeline._modify_media_request", ["self", "request"], "xkcdcrawl.pipelines"),
    ("scrapy.pipelines.media", "_MediaRequestFiltered", None, "xkcdcrawl.pipelines"),
    ("scrapy.core.scraper", "Scraper._check_if_closing", ["self"], "xkcdcrawl.spiders.urls"),
    ("scrapy_redis.queue", "Base._decode_request", ["self", "encoded_request"], "xkcdcrawl.redisqueue"),
]

# Source fragments of Scrapy and Twisted code whose behaviour a project module depends on.
SOURCES = [
    # The download timeout is a DelayedCall the handler pushes back while a body streams.
    ("scrapy.core.downloader.handlers.http11", "_ScrapyAgent.download_request", "self._timeout_cl = reactor.callLater"),
    # How Scrapy itself aborts a response's connection (the handler does the same).
    (
        "scrapy.core.downloader.handlers.http11",
        "_ScrapyAgent._cancel",
        "txresponse._transport._producer.abortConnection()",
    ),
    # The handler's own reader must end as Scrapy's does, with these result keys.
    ("scrapy.core.downloader.handlers.http11", "_ScrapyAgent._cb_bodydone", 'result.get("flags")'),
    # Twisted keeps the response's transport there.
    ("twisted.web._newclient", "Response.__init__", "self._transport = _transport"),
    # What the progress extension reads to know that no page is left (xkcdcrawl.extensions.progress).
    ("scrapy.core.engine", "ExecutionEngine.__init__", "self._start"),
    ("scrapy.core.engine", "ExecutionEngine.__init__", "self._slot"),
]

# Methods the project keeps a modified copy of, or mirrors step by step: pinned whole, since
# any upstream change to them must be read and carried over.
COPIED = [
    ("scrapy.core.downloader.handlers.http11", "_ScrapyAgent._cb_bodyready", "xkcdcrawl.handlers._StreamingAgent"),
    ("scrapy.core.downloader.handlers.http11", "_ResponseReader.connectionLost", "xkcdcrawl.handlers._BodyFileReader"),
]
PINNED = {
    "_ScrapyAgent._cb_bodyready": "3b4c90f33215a794",
    "_ResponseReader.connectionLost": "9113f540875dce09",
}

# Attributes an HTTP11DownloadHandler has once built (xkcdcrawl.handlers passes them on).
HANDLER_ATTRIBUTES = [
    "_contextFactory",
    "_bind_address",
    "_pool",
    "_default_maxsize",
    "_default_warnsize",
    "_fail_on_dataloss",
    "_tls_verbose_logging",
    "_crawler",
]
# Attributes a _ScrapyAgent has once built (xkcdcrawl.handlers reads them).
AGENT_ATTRIBUTES = ["_connectTimeout", "_crawler", "_fail_on_dataloss", "_maxsize", "_txresponse"]


def resolve(module: str, dotted: str) -> Any:
    target: Any = importlib.import_module(module)
    for part in dotted.split("."):
        target = getattr(target, part)
    return target


def test_scrapy_is_the_pinned_version() -> None:
    """Every pin below was read in this version: an upgrade must read them again."""
    assert scrapy.__version__ == "2.19.0"


@pytest.mark.parametrize(("module", "name", "parameters", "user"), CALLABLES, ids=[c[1] for c in CALLABLES])
def test_private_callable(module: str, name: str, parameters: list[str] | None, user: str) -> None:
    target = resolve(module, name)
    if parameters is not None:
        assert list(inspect.signature(target).parameters) == parameters, f"{module}.{name} changed: see {user}"


@pytest.mark.parametrize(("module", "name", "fragment"), SOURCES, ids=[f"{s[1]}: {s[2]}" for s in SOURCES])
def test_private_behaviour(module: str, name: str, fragment: str) -> None:
    assert fragment in inspect.getsource(resolve(module, name)), f"{module}.{name} no longer has {fragment!r}"


@pytest.mark.parametrize(("module", "name", "copy"), COPIED, ids=[c[1] for c in COPIED])
def test_copied_method_is_unchanged(module: str, name: str, copy: str) -> None:
    source = inspect.getsource(resolve(module, name))
    assert hashlib.sha256(source.encode()).hexdigest()[:16] == PINNED[name], (
        f"{module}.{name} changed: carry it to {copy}"
    )


def test_handler_and_agent_attributes() -> None:
    from xkcdcrawl.handlers import StreamingDownloadHandler, _StreamingAgent

    crawler = get_crawler(settings_dict={"DOWNLOAD_HANDLERS": project_settings.DOWNLOAD_HANDLERS})
    handler = StreamingDownloadHandler(crawler)
    missing = [a for a in HANDLER_ATTRIBUTES if not hasattr(handler, a)]
    assert missing == [], f"HTTP11DownloadHandler lost {missing}: see xkcdcrawl.handlers"
    agent = _StreamingAgent(
        writer=handler.writer,
        contextFactory=handler._contextFactory,
        pool=handler._pool,
        crawler=crawler,
    )
    missing = [a for a in AGENT_ATTRIBUTES if not hasattr(agent, a)]
    assert missing == [], f"_ScrapyAgent lost {missing}: see xkcdcrawl.handlers"
