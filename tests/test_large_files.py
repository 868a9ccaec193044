"""Big files: streamed to disk in flat memory, resumed after a kill or a cut, fetched in parallel ranges."""

from __future__ import annotations

import contextlib
import hashlib
import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from conftest import PROJECT, run_crawl, urls_arg
from servers.faultserver import FaultServer, file_body
from servers.webservers import nginx, python_http_server

from xkcdcrawl.bodyfile import PartialState
from xkcdcrawl.naming import host_folder
from xkcdcrawl.stores import AtomicFSFilesStore

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from conftest import Crawl

pytestmark = pytest.mark.e2e

FAST = ["-s", "XKCDCRAWL_RETRY_BACKOFF=0.1", "-s", "XKCDCRAWL_PROGRESS_INTERVAL=0"]
ONE_STREAM = ["-s", "XKCDCRAWL_SPLIT_PARTS=1"]
MiB = 1 << 20


def pattern_file(path: Path, size: int, seed: str) -> str:
    """A file of `size` bytes no two blocks of which are alike; returns its sha256."""
    block = hashlib.sha256(seed.encode()).digest() * (MiB // 32)
    digest = hashlib.sha256()
    with path.open("wb") as out:
        for start in range(0, size, MiB):
            # Each MiB starts with its own number: a byte written at a wrong offset shows.
            chunk = (start.to_bytes(8, "big") + block[8:])[: size - start]
            out.write(chunk)
            digest.update(chunk)
    return digest.hexdigest()


def sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def access(log: Path, uri: str) -> list[tuple[int, str, int]]:
    """(status, Range header, bytes sent) of each request nginx logged for uri."""
    entries = []
    for line in log.read_text(encoding="utf-8").splitlines():
        target, status, ranges, sent = line.split(" ")
        if target == uri:
            entries.append((int(status), ranges, int(sent)))
    return entries


def partial_folder(store: Path) -> list[str]:
    folder = store / ".xkcdcrawl" / "partial"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def start_crawl(*args: str) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "scrapy", "crawl", *args]
    return subprocess.Popen(cmd, cwd=PROJECT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def kill_when(proc: subprocess.Popen[bytes], ready: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not ready():
        assert proc.poll() is None, "the crawl ended before it could be interrupted"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def partial_size(store: Path) -> int:
    folder = store / ".xkcdcrawl" / "partial"
    return sum(p.stat().st_size for p in folder.glob("*.part")) if folder.exists() else 0


def test_a_cut_body_is_resumed_with_a_range(tmp_path: Path, server: FaultServer, crawl: Crawl) -> None:
    size = 3 * MiB
    url = server.url_for(f"/range/cut.bin?size={size}&cut={MiB}&times=1")
    run = crawl("urls", "-a", urls_arg(tmp_path, [url]), *ONE_STREAM, *FAST)
    assert run.returncode == 0, run.stderr
    assert run.stored() == {f"{server.folder}/cut.bin": file_body("cut.bin@1", size)}
    first, again = server.ranges
    assert first == ("/range/cut.bin", "", 200, MiB)
    assert again[2] == 206
    resumed_from = int(again[1].removeprefix("bytes=").removesuffix("-"))
    assert 0 < resumed_from <= MiB
    assert again[3] == size - resumed_from  # only the rest came again
    assert partial_folder(run.store) == []
    assert run.items()[0]["files"][0]["checksum"] == hashlib.sha256(file_body("cut.bin@1", size)).hexdigest()


def test_split_file_holds_the_per_host_limit(tmp_path: Path, server: FaultServer, crawl: Crawl) -> None:
    size = 8 * MiB
    url = server.url_for(f"/range/split.bin?size={size}&rate={4 * MiB}")
    # A file at the threshold: four ranges of a quarter each.
    split = ["-s", f"XKCDCRAWL_SPLIT_SIZE={size}", "-s", "XKCDCRAWL_SPLIT_PARTS=4"]
    run = crawl("urls", "-a", urls_arg(tmp_path, [url]), *split, "-s", "CONCURRENT_REQUESTS_PER_DOMAIN=2", *FAST)
    assert run.returncode == 0, run.stderr
    assert run.stored() == {f"{server.folder}/split.bin": file_body("split.bin@1", size)}
    quarter = size // 4
    # The first request is left once it has its quarter: the server sees the client hang up.
    assert server.hits["/range/split.bin"] == 4
    asked = sorted(r for _, r, _, _ in server.ranges)
    assert asked == [f"bytes={a}-{a + quarter - 1}" for a in range(quarter, size, quarter)]
    assert server.max_in_flight == 2  # the ranges wait their turn, as any request to that host


def test_a_big_file_streams_in_flat_memory(tmp_path: Path) -> None:
    """Over 1 GiB, fetched in four ranges at once, verified; the crawl's memory stays small."""
    root = tmp_path / "root"
    root.mkdir()
    size = 1100 * MiB
    expected = pattern_file(root / "big.bin", size, "big")
    store = tmp_path / "store"
    with nginx(root) as url:
        proc = start_crawl("listing", "-a", f"url={url}", "-s", f"FILES_STORE={store}", *FAST)
        peak_kib = 0
        # The kernel's high-water mark of the crawl's own memory (ru_maxrss would count this
        # test process too, copied into the child before its exec).
        while proc.poll() is None:
            with contextlib.suppress(OSError):
                status = Path(f"/proc/{proc.pid}/status").read_text(encoding="utf-8")
                if "VmHWM:" in status:  # not once it has exited
                    peak_kib = max(peak_kib, int(status.split("VmHWM:")[1].split()[0]))
            time.sleep(0.02)
    assert proc.returncode == 0
    assert sha256(store / host_folder(url) / "big.bin") == expected
    assert 30_000 < peak_kib < 130_000, f"peak RSS {peak_kib // 1024} MiB for a {size // MiB} MiB file"
    assert partial_folder(store) == []


def test_a_killed_crawl_resumes_the_rest_of_a_big_file(tmp_path: Path) -> None:
    root, log, store = tmp_path / "root", tmp_path / "access.log", tmp_path / "store"
    root.mkdir()
    size = 8 * MiB
    expected = pattern_file(root / "big.bin", size, "kill")
    with nginx(root, access_log=log, limit_rate="2m") as url:
        args = ("listing", "-a", f"url={url}", "-s", f"FILES_STORE={store}", *ONE_STREAM, *FAST)
        kill_when(start_crawl(*args), lambda: partial_size(store) >= 2 * MiB)
        assert not (store / host_folder(url) / "big.bin").exists()
        kept = partial_size(store)
        again = run_crawl(*args)
    assert again.returncode == 0, again.stderr
    assert sha256(store / host_folder(url) / "big.bin") == expected
    status, ranges, sent = access(log, "/big.bin")[-1]
    assert (status, ranges) == (206, f"bytes={kept}-")
    assert size - kept <= sent < size - kept + 1000  # the rest, and its headers
    assert partial_folder(store) == []


def test_a_killed_split_download_resumes_only_its_missing_ranges(tmp_path: Path) -> None:
    root, log, store = tmp_path / "root", tmp_path / "access.log", tmp_path / "store"
    root.mkdir()
    size = 16 * MiB
    expected = pattern_file(root / "big.bin", size, "split")
    split = ["-s", f"XKCDCRAWL_SPLIT_SIZE={size}", "-s", "XKCDCRAWL_SPLIT_PARTS=4"]
    state_path: Path | None = None

    def ranges_under_way() -> bool:
        assert state_path is not None
        state = PartialState.load(state_path)
        return state is not None and all(done > MiB // 2 for _, _, done in state.segments[1:])

    # 4 s a range: a busy machine has seconds to spare between "under way" and "done".
    with nginx(root, access_log=log, limit_rate="1m") as url:
        state_path = AtomicFSFilesStore(store).partial_for(f"{host_folder(url)}/big.bin")[1]
        args = ("listing", "-a", f"url={url}", "-s", f"FILES_STORE={store}", *split, *FAST)
        kill_when(start_crawl(*args), ranges_under_way)
        state = PartialState.load(state_path)
        assert state is not None
        # nginx logs a request once it sees its client gone: the whole file's, and three ranges.
        deadline = time.monotonic() + 10
        while len(access(log, "/big.bin")) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        before = len(access(log, "/big.bin"))
        assert before == 4
        again = run_crawl(*args)
    assert again.returncode == 0, again.stderr
    assert sha256(store / host_folder(url) / "big.bin") == expected
    resumed = access(log, "/big.bin")[before:]
    missing = [f"bytes={a + done}-{b}" for a, b, done in state.segments if a + done <= b]
    assert len(missing) >= 3
    assert sorted(r for _, r, _ in resumed) == sorted(missing)
    assert all(status == 206 for status, _, _ in resumed)
    assert sum(sent for _, _, sent in resumed) < size - sum(done for _, _, done in state.segments) + 4000
    assert partial_folder(store) == []


def fake_partial(store: Path, path: str, url: str, data: bytes, validator: str) -> Path:
    """What a killed run leaves: part of a file, and the version it was part of."""
    part, state = AtomicFSFilesStore(store).partial_for(path)
    part.write_bytes(data)
    PartialState(url, validator, None).save(state)
    return part


def test_a_file_changed_on_the_server_is_fetched_afresh(tmp_path: Path) -> None:
    root, log, store = tmp_path / "root", tmp_path / "access.log", tmp_path / "store"
    root.mkdir()
    size = 3 * MiB
    expected = pattern_file(root / "f.bin", size, "new version")
    with nginx(root, access_log=log) as url:
        # Half of the old version, with the old version's ETag: If-Range does not match.
        fake_partial(store, f"{host_folder(url)}/f.bin", f"{url}f.bin", b"o" * (size // 2), '"0-old"')
        run = run_crawl("listing", "-a", f"url={url}", "-s", f"FILES_STORE={store}")
    assert run.returncode == 0, run.stderr
    assert sha256(store / host_folder(url) / "f.bin") == expected  # never spliced
    [(status, ranges, sent)] = access(log, "/f.bin")
    assert (status, ranges) == (200, f"bytes={size // 2}-")
    assert sent > size
    assert partial_folder(store) == []


def test_a_server_without_ranges_starts_over(tmp_path: Path) -> None:
    root, store = tmp_path / "root", tmp_path / "store"
    root.mkdir()
    expected = pattern_file(root / "f.bin", 3 * MiB, "no ranges")
    with python_http_server(root) as url:
        fake_partial(store, f"{host_folder(url)}/f.bin", f"{url}f.bin", b"x" * MiB, "Mon, 01 Jan 2024 00:00:00 GMT")
        run = run_crawl("listing", "-a", f"url={url}", "-s", f"FILES_STORE={store}")
    assert run.returncode == 0, run.stderr
    assert sha256(store / host_folder(url) / "f.bin") == expected
    assert partial_folder(store) == []


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB file system (tmpfs): the tests run as root here, as in CI."""
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def test_a_full_disk_fails_that_file_and_leaves_nothing(
    tmp_path: Path, server: FaultServer, crawl: Crawl, small_disk: Path
) -> None:
    big = server.url_for(f"/range/big.bin?size={6 * MiB}")
    run = crawl("urls", "-a", urls_arg(tmp_path, [big]), *FAST, store=small_disk)
    assert run.returncode == 1
    [item] = run.items()
    assert item["files"][0]["status"] == "failed"
    assert "No space left on device" in item["files"][0]["reason"]
    assert "Traceback" not in run.stderr
    assert run.stored() == {}
    assert partial_folder(small_disk) == []  # the space is given back
    after = crawl("urls", "-a", urls_arg(tmp_path, [server.url_for("/ok/small.txt")]), *FAST, store=small_disk)
    assert after.returncode == 0, after.stderr
    assert after.stored() == {f"{server.folder}/small.txt": file_body("small.txt")}


def test_files_are_not_capped_by_download_maxsize_but_by_their_own_setting(
    tmp_path: Path, server: FaultServer, crawl: Crawl
) -> None:
    urls = [server.url_for(f"/range/big.bin?size={2 * MiB}"), server.url_for(f"/ok/mid.bin?size={200_000}")]
    run = crawl("urls", "-a", urls_arg(tmp_path, urls), "-s", "DOWNLOAD_MAXSIZE=100000", *FAST)
    assert run.returncode == 0, run.stderr
    assert set(run.stored()) == {f"{server.folder}/big.bin", f"{server.folder}/mid.bin"}
    cap = ["-s", "XKCDCRAWL_FILES_MAXSIZE=1000000"]
    capped = crawl("urls", "-a", urls_arg(tmp_path, urls[:1]), *cap, *FAST, store=tmp_path / "capped")
    assert capped.returncode == 1
    assert "larger than download max size (1000000)" in capped.items()[0]["files"][0]["reason"]
    assert json.dumps(capped.items()).count("failed") == 1


def test_a_listed_file_redirected_to_another_host_is_streamed_there(tmp_path: Path) -> None:
    """The start host bounds the pages; a listed file is fetched wherever it redirects (a CDN, a mirror)."""
    root, log, store = tmp_path / "root", tmp_path / "access.log", tmp_path / "store"
    (root / "real").mkdir(parents=True)
    expected = pattern_file(root / "real" / "a.bin", 2 * MiB, "moved")
    (root / "a.bin").write_bytes(b"listed here, served elsewhere")
    # a.bin answers 302 to the same server under another name: another host to the crawler.
    moved = "location = /a.bin { return 302 http://localhost:$server_port/real/a.bin; }"
    with nginx(root, access_log=log, locations=moved) as url:
        run = run_crawl("listing", "-a", f"url={url}", "-a", "depth=0", "-s", f"FILES_STORE={store}", *FAST)
    assert run.returncode == 0, run.stderr
    assert sha256(store / host_folder(url) / "a.bin") == expected  # under the listed name
    assert access(log, "/a.bin") == [(302, "-", access(log, "/a.bin")[0][2])]
    assert [status for status, _, _ in access(log, "/real/a.bin")] == [200]
    assert "Filtered offsite" not in run.stderr


def test_a_big_file_comes_in_ranges_asked_in_file_order(tmp_path: Path, server: FaultServer, crawl: Crawl) -> None:
    """Beyond the threshold, ranges of threshold / parts, parts at a time: hashed as they come, in order."""
    size = 8 * MiB
    url = server.url_for(f"/range/many.bin?size={size}&rate={16 * MiB}")
    split = ["-s", f"XKCDCRAWL_SPLIT_SIZE={2 * MiB}", "-s", "XKCDCRAWL_SPLIT_PARTS=2"]
    run = crawl("urls", "-a", urls_arg(tmp_path, [url]), *split, *FAST)
    assert run.returncode == 0, run.stderr
    assert run.stored() == {f"{server.folder}/many.bin": file_body("many.bin@1", size)}
    assert run.items()[0]["files"][0]["checksum"] == hashlib.sha256(file_body("many.bin@1", size)).hexdigest()
    # Eight ranges of 1 MiB: the first on the first request, seven more, asked in order, two at a time.
    asked = [int(r.removeprefix("bytes=").split("-")[0]) for _, r, _, _ in server.ranges]
    assert sorted(asked) == list(range(MiB, size, MiB))
    assert server.max_in_flight == 2


def test_xkcdcrawl_file_hosts_bounds_where_files_come_from(tmp_path: Path) -> None:
    """XKCDCRAWL_FILE_HOSTS: a listed file redirected to another host is filtered, not fetched there."""
    root, log, store = tmp_path / "root", tmp_path / "access.log", tmp_path / "store"
    (root / "real").mkdir(parents=True)
    pattern_file(root / "real" / "a.bin", 2 * MiB, "moved")
    (root / "a.bin").write_bytes(b"listed here, served elsewhere")
    (root / "b.bin").write_bytes(b"served here")
    moved = "location = /a.bin { return 302 http://localhost:$server_port/real/a.bin; }"
    hosts = ["-s", "XKCDCRAWL_FILE_HOSTS=127.0.0.1"]
    with nginx(root, access_log=log, locations=moved) as url:
        run = run_crawl("listing", "-a", f"url={url}", "-a", "depth=0", "-s", f"FILES_STORE={store}", *hosts, *FAST)
    assert run.returncode == 0, run.stderr
    assert (store / host_folder(url) / "b.bin").read_bytes() == b"served here"
    assert not (store / host_folder(url) / "a.bin").exists()
    assert access(log, "/real/a.bin") == []
    assert "not in XKCDCRAWL_FILE_HOSTS" in run.stderr, run.stderr
