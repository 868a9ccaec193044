"""Every private Scrapy (and Twisted) detail xkcdcrawl relies on, pinned: an upgrade that changes one fails here, by name.

When a test here fails, read the upstream change, adapt the module named in the test's
parameters, then update the pin. Public APIs are not listed: Scrapy deprecates those first.
The last test reads xkcdcrawl's code for any other private name of Scrapy, Twisted or
scrapy-redis (imported, read, or overridden in a subclass) and names each one no pin lists.
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import inspect
import pkgutil
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import scrapy
from scrapy.utils.test import get_crawler

import xkcdcrawl
from xkcdcrawl import settings as project_settings

if TYPE_CHECKING:
    from collections.abc import Iterator

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
    (
        "scrapy.commands",
        "BaseRunSpiderCommand._create_crawler",
        ["self", "spidercls"],
        "xkcdcrawl.commands.crawl",
    ),
    ("scrapy.core.scraper", "Scraper._check_if_closing", ["self"], "xkcdcrawl.spiders.urls"),
    ("scrapy_redis.queue", "Base._decode_request", ["self", "encoded_request"], "xkcdcrawl.redisqueue"),
    ("scrapy_redis.queue", "Base._encode_request", ["self", "request"], "xkcdcrawl.redisqueue"),
    ("scrapy.pipelines.files", "FilesPipeline._update_stores", ["settings"], "xkcdcrawl.pipelines"),
    ("scrapy.pipelines.files", "S3FilesStore._onsuccess", ["boto_key"], "xkcdcrawl.s3store"),
    ("scrapy.pipelines.files", "S3FilesStore._headers_to_botocore_kwargs", ["self", "headers"], "xkcdcrawl.s3store"),
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
    # The s3:// store's client, bucket and key prefix (xkcdcrawl.s3store).
    ("scrapy.pipelines.files", "S3FilesStore.__init__", "self.s3_client = session.create_client("),
    ("scrapy.pipelines.files", "S3FilesStore.__init__", 'self.bucket, self.prefix = uri[5:].split("/", 1)'),
    ("scrapy.pipelines.files", "S3FilesStore.persist_file", 'key_name = f"{self.prefix}{path}"'),
    # The pipeline forgets a file's result under the fingerprint Scrapy keeps it by.
    ("scrapy.pipelines.media", "MediaPipeline.__init__", "self._fingerprinter"),
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

# What xkcdcrawl.politeness.HostGate reads of Scrapy's downloader and of its slots: public
# names, not private ones, but not in Scrapy's documentation either, so pinned as well.
DOWNLOADER_ATTRIBUTES = ["get_slot_key", "slots", "per_slot_settings", "ip_concurrency", "domain_concurrency"]
SLOT_ATTRIBUTES = ["download_delay"]

# Every private name in the pins above: the project may use these, and no other of Scrapy's,
# Twisted's or scrapy-redis's.
PINS = (CALLABLES, SOURCES, COPIED, HANDLER_ATTRIBUTES, AGENT_ATTRIBUTES)
PINNED_NAMES = set(re.findall(r"\b_[A-Za-z]\w*", repr(PINS)))
FOREIGN = ("scrapy", "twisted", "scrapy_redis")
PACKAGE = Path(xkcdcrawl.__file__).parent


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


def test_downloader_and_slot_attributes() -> None:
    from scrapy.core.downloader import Downloader, Slot

    downloader = Downloader(get_crawler())
    missing = [a for a in DOWNLOADER_ATTRIBUTES if not hasattr(downloader, a)]
    missing += [f"Slot.{a}" for a in SLOT_ATTRIBUTES if not hasattr(Slot(1, 0.0), a)]
    assert missing == [], f"Scrapy's downloader lost {missing}: see xkcdcrawl.politeness"


def test_every_private_name_the_project_uses_is_pinned() -> None:
    """A private name of another package that xkcdcrawl reads, imports or overrides, and no pin above names."""
    used = [*private_names_read(), *private_names_overridden()]
    unpinned = sorted(f"{where} uses {name}" for where, name in used if name not in PINNED_NAMES)
    assert unpinned == [], "pin these in tests/test_scrapy_internals.py:\n" + "\n".join(unpinned)


def is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def private_names_read() -> Iterator[tuple[str, str]]:
    """(file:line, name) of each private name xkcdcrawl's code reads or imports and does not define itself."""
    trees = {path: ast.parse(path.read_text(encoding="utf-8")) for path in sorted(PACKAGE.rglob("*.py"))}
    own = {name for tree in trees.values() for name in names_defined(tree)}
    for path, tree in trees.items():
        where = path.relative_to(PACKAGE.parent).as_posix()
        for line, name in names_read(tree):
            if name not in own:
                yield f"{where}:{line}", name


def names_defined(tree: ast.AST) -> Iterator[str]:
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            yield node.name
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            yield node.id
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store) and is_self(node.value):
            yield node.attr
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "xkcdcrawl":
            yield from (alias.asname or alias.name for alias in node.names)


def names_read(tree: ast.AST) -> Iterator[tuple[int, str]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in FOREIGN:
            names = [*node.module.split("."), *(alias.name for alias in node.names)]  # type: ignore[union-attr]
            yield from ((node.lineno, name) for name in names if is_private(name))
        elif isinstance(node, ast.Attribute) and is_private(node.attr):
            yield node.lineno, node.attr
        elif (name := attribute_named(node)) is not None and is_private(name):
            yield node.lineno, name  # type: ignore[attr-defined]


def attribute_named(node: ast.AST) -> str | None:
    """The name in getattr(obj, "name", ...) or hasattr(obj, "name")."""
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in {"getattr", "hasattr"}):
        return None
    name = node.args[1] if len(node.args) > 1 else None
    return name.value if isinstance(name, ast.Constant) and isinstance(name.value, str) else None


def is_self(node: ast.expr) -> bool:
    return isinstance(node, ast.Name) and node.id in {"self", "cls"}


def private_names_overridden() -> Iterator[tuple[str, str]]:
    """(class, name) of each private method or attribute a project class redefines over a foreign base's."""
    for info in pkgutil.walk_packages(xkcdcrawl.__path__, "xkcdcrawl."):
        module = importlib.import_module(info.name)
        for cls in vars(module).values():
            if not inspect.isclass(cls) or cls.__module__ != info.name:
                continue
            foreign = [base for base in cls.__mro__[1:] if base.__module__.split(".")[0] in FOREIGN]
            for name in vars(cls):
                # ABC's own bookkeeping is on every abstract class, ours and Scrapy's alike.
                if is_private(name) and name != "_abc_impl" and any(name in vars(base) for base in foreign):
                    yield f"{info.name}.{cls.__qualname__}", name
