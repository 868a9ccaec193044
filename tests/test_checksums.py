"""Checksums the server publishes: digest headers and checksum files, parsed; files checked against them end to end."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import TYPE_CHECKING

import pytest
from conftest import run_crawl, urls_arg
from servers.faultserver import FaultServer, file_body
from servers.webservers import nginx

from xkcdcrawl.checksums import header_digests, parse_sums, sums_algorithm
from xkcdcrawl.naming import host_folder

if TYPE_CHECKING:
    from pathlib import Path

    from conftest import Crawl

FAST = ["-s", "XKCDCRAWL_RETRY_BACKOFF=0.1", "-s", "XKCDCRAWL_PROGRESS_INTERVAL=0"]
BODY = b"the file"
SHA256 = hashlib.sha256(BODY).hexdigest()
B64_SHA256 = base64.b64encode(hashlib.sha256(BODY).digest()).decode()
B64_MD5 = base64.b64encode(hashlib.md5(BODY).digest()).decode()


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({b"Repr-Digest": f"sha-256=:{B64_SHA256}:".encode()}, {"sha256": SHA256}),
        ({b"Digest": f"SHA-256={B64_SHA256}".encode()}, {"sha256": SHA256}),
        ({b"Content-MD5": B64_MD5.encode()}, {"md5": hashlib.md5(BODY).hexdigest()}),
        ({b"Repr-Digest": f"unixsum=:12:, sha-256=:{B64_SHA256}:".encode()}, {"sha256": SHA256}),
        ({b"Repr-Digest": b"sha-256=:not base64!:"}, {}),
        ({b"Content-MD5": B64_SHA256.encode()}, {}),  # the wrong length for an md5
        ({}, {}),
    ],
)
def test_header_digests(headers: dict[bytes, bytes], expected: dict[str, str]) -> None:
    assert header_digests(headers) == expected


def test_checksum_files_gnu_and_bsd_lines() -> None:
    text = f"{SHA256}  a.iso\n{SHA256} *./b.bin\nSHA256 (c d.txt) = {SHA256}\nnot a line\n{'0' * 32}  md5-sized\n"
    assert parse_sums(text, "sha256") == {"a.iso": SHA256, "b.bin": SHA256, "c d.txt": SHA256}
    assert [sums_algorithm(n) for n in ("SHA256SUMS", "MD5SUMS", "x.iso.sha256", "x.md5", "x.iso")] == [
        "sha256",
        "md5",
        "sha256",
        "md5",
        None,
    ]


@pytest.mark.parametrize("size", [5000, 3 << 20], ids=["in memory", "streamed"])
def test_files_are_checked_against_the_digest_the_server_publishes(
    tmp_path: Path, server: FaultServer, crawl: Crawl, size: int
) -> None:
    urls = [
        server.url_for(f"/range/good.bin?size={size}&digest=sha256"),
        server.url_for(f"/range/md5.bin?size={size}&digest=md5"),
        server.url_for(f"/range/bad.bin?size={size}&digest=bad"),
    ]
    run = crawl("urls", "-a", urls_arg(tmp_path, urls), "-s", "XKCDCRAWL_SPLIT_PARTS=1", *FAST)
    assert run.returncode == 1
    folder = server.folder
    assert run.stored() == {f"{folder}/{n}.bin": file_body(f"{n}.bin@1", size) for n in ("good", "md5")}
    files = {item["files"][0]["path"]: item["files"][0] for item in run.items()}
    assert files[f"{folder}/good.bin"]["verified"] == ["sha256"]
    assert files[f"{folder}/md5.bin"]["verified"] == ["md5"]
    bad = files[f"{folder}/bad.bin"]
    assert bad["status"] == "failed"
    assert "checksum mismatch: sha256 is" in bad["reason"]
    assert server.hits["/range/bad.bin"] == 2  # fetched once more before it counts as failed
    assert not list((run.store / ".xkcdcrawl" / "partial").iterdir())  # nothing of it kept


@pytest.mark.e2e
def test_a_listing_s_checksum_files_are_checked(tmp_path: Path) -> None:
    """SHA256SUMS and x.sha256 beside the files: each file is checked against them before it is kept."""
    root, store = tmp_path / "root", tmp_path / "store"
    (root / "sub").mkdir(parents=True)
    bodies = {"a.bin": b"a" * 5000, "b.bin": b"b" * (2 << 20), "sub/c.iso": b"c" * 3000}
    for name, body in bodies.items():
        (root / name).write_bytes(body)
    digest = {name: hashlib.sha256(body).hexdigest() for name, body in bodies.items()}
    # b.bin's line is wrong, as on a mirror that has not caught up.
    (root / "SHA256SUMS").write_text(f"{digest['a.bin']}  a.bin\n{'0' * 64}  b.bin\n", encoding="utf-8")
    (root / "sub" / "c.iso.sha256").write_text(f"{digest['sub/c.iso']}\n", encoding="utf-8")
    with nginx(root) as url:
        run = run_crawl("listing", "-a", f"url={url}", "-s", f"FILES_STORE={store}", *FAST)
        folder = host_folder(url)
    assert run.returncode == 1
    assert (store / folder / "a.bin").read_bytes() == bodies["a.bin"]
    assert (store / folder / "sub" / "c.iso").read_bytes() == bodies["sub/c.iso"]
    assert not (store / folder / "b.bin").exists()  # never under its final name
    assert "checksum mismatch: sha256 is" in run.stderr
    assert f"{url}b.bin" in run.stderr
    report = json.loads((store / ".xkcdcrawl" / "report-listing.json").read_text(encoding="utf-8"))
    verified = {row["path"]: row for row in report["files"]}
    assert verified[f"{folder}/a.bin"]["outcome"] == "downloaded"
    assert verified[f"{folder}/a.bin"]["verified"] == ["sha256"]
    assert verified[f"{folder}/sub/c.iso"]["verified"] == ["sha256"]
    assert verified[f"{folder}/b.bin"]["outcome"] == "failed"


@pytest.mark.e2e
def test_a_checksum_file_reject_leaves_out_checks_nothing(tmp_path: Path) -> None:
    """-a reject=SHA256SUMS: the files are fetched unchecked, as if it were not there."""
    root, store = tmp_path / "root", tmp_path / "store"
    root.mkdir()
    (root / "a.bin").write_bytes(b"a" * 5000)
    (root / "SHA256SUMS").write_text(f"{'0' * 64}  a.bin\n", encoding="utf-8")
    with nginx(root) as url:
        run = run_crawl("listing", "-a", f"url={url}", "-a", "reject=SHA256SUMS", "-s", f"FILES_STORE={store}", *FAST)
    assert run.returncode == 0, run.stderr
    assert (store / host_folder(url) / "a.bin").read_bytes() == b"a" * 5000
    assert not (store / host_folder(url) / "SHA256SUMS").exists()
    assert "Traceback" not in run.stderr
