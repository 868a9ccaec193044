"""split_listing against the real output of nginx, Apache, lighttpd and http.server."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pytest
from scrapy.http import HtmlResponse
from servers.webservers import LOCAL_OPENER, apache, find_binary, lighttpd, make_tree, nginx, python_http_server

from xkcdcrawl.listing_parse import relative_path, split_listing

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from contextlib import AbstractContextManager
    from pathlib import Path

    Server = Callable[[Path], AbstractContextManager[str]]

pytestmark = pytest.mark.e2e

# server -> (context manager, binary it needs, or None for this Python)
SERVERS: dict[str, tuple[Server, str | None]] = {
    "nginx": (nginx, "nginx"),
    "apache": (apache, "apache2"),
    "lighttpd": (lighttpd, "lighttpd"),
    "python": (python_http_server, None),
}
MAX_PAGES = 100  # the tree has about a dozen folders: more means the walk loops


def _fetch(url: str) -> tuple[int, HtmlResponse]:
    with LOCAL_OPENER.open(url, timeout=10) as reply:
        # Keep the server's Content-Type so the encoding is found as a spider would.
        headers = {"Content-Type": reply.headers.get("Content-Type", "")}
        return reply.status, HtmlResponse(url, body=reply.read(), headers=headers)


def _walk(base: str) -> dict[str, str]:
    """{relative path: URL} of every file found by following listed sub-folders."""
    files: dict[str, str] = {}
    queue, pages = [base], 0
    while queue:
        pages += 1
        assert pages <= MAX_PAGES
        dirs, found = split_listing(_fetch(queue.pop())[1], base)
        queue.extend(dirs)
        files.update({relative_path(url, base): url for url in found})
    return files


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, bytes]]:
    root = tmp_path_factory.mktemp("served")
    return root, make_tree(root)


@pytest.fixture(params=SERVERS)
def served(request: pytest.FixtureRequest, tree: tuple[Path, dict[str, bytes]]) -> Iterator[str]:
    start, binary = SERVERS[request.param]
    if binary and not find_binary(binary):
        message = f"{binary} not installed: run scripts/install-system-deps.sh"
        # A green CI must not hide a missing install step.
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    with start(tree[0]) as base:
        yield base


def test_root_listing_has_exactly_the_top_level_entries(served: str, tree: tuple[Path, dict[str, bytes]]) -> None:
    status, response = _fetch(served)
    assert status == 200
    dirs, files = split_listing(response, served)
    top = tree[0].iterdir()
    expected = {p.name + "/" if p.is_dir() else p.name for p in top}
    assert {relative_path(url, served) for url in dirs + files} == expected
    assert len(dirs + files) == len(expected)


def test_walk_finds_every_file_with_its_bytes(served: str, tree: tuple[Path, dict[str, bytes]]) -> None:
    files = _walk(served)
    assert set(files) == set(tree[1])
    for rel, url in files.items():
        with LOCAL_OPENER.open(url, timeout=10) as reply:
            assert reply.read() == tree[1][rel], rel
