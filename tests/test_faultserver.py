"""Checks of the fault-injecting test server, with plain stdlib clients."""

from __future__ import annotations

import http.client
import socket
import struct
import threading
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterator
from email.utils import parsedate_to_datetime

import pytest
from servers.faultserver import FaultServer, file_body, make_png, same_png

# Every socket here has a deadline so a server bug fails a test, never hangs it.
TIMEOUT = 10.0


@pytest.fixture
def server() -> Iterator[FaultServer]:
    with FaultServer() as srv:
        yield srv
    # A handler crash would otherwise only show up as a confusing client error.
    assert srv.errors == []


def get(server: FaultServer, path: str, method: str = "GET") -> tuple[http.client.HTTPResponse, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=TIMEOUT)
    try:
        conn.request(method, path)
        response = conn.getresponse()
        return response, response.read()
    finally:
        conn.close()


def raw_exchange(server: FaultServer, path: str) -> tuple[bytes, bytes, str]:
    """Send one request on a bare socket; return (head, body, how it ended)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
        request = f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        sock.sendall(request.encode())
        data = b""
        ending = "eof"
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except ConnectionResetError:
            ending = "reset"
    head, _, body = data.partition(b"\r\n\r\n")
    return head, body, ending


def content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == b"content-length":
            return int(value)
    raise AssertionError("no Content-Length")


def png_pixels(data: bytes) -> tuple[int, int, bytes]:
    """Decode the PNGs we build (8-bit RGB, filter 0), checking every CRC."""
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    pos, width, height, idat = 8, 0, 0, b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        tag = data[pos + 4 : pos + 8]
        payload = data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert crc == zlib.crc32(tag + payload) & 0xFFFFFFFF
        if tag == b"IHDR":
            width, height = struct.unpack(">II", payload[:8])
            assert payload[8:] == b"\x08\x02\x00\x00\x00"
        elif tag == b"IDAT":
            idat += payload
        pos += 12 + length
    assert tag == b"IEND"
    raw = zlib.decompress(idat)
    assert len(raw) == height * (1 + 3 * width)
    return width, height, raw


# -- plain files ---------------------------------------------------------------


def test_file_body_is_deterministic_and_not_periodic() -> None:
    body = file_body("a.png", 100)
    assert body == file_body("a.png", 100)
    assert len(body) == 100
    assert body[:32] != body[32:64]
    assert file_body("a.png", 50) == body[:50]
    assert file_body("b.png", 100) != body


@pytest.mark.parametrize(
    ("name", "content_type"),
    [
        ("comic.png", "image/png"),
        ("comic.jpg", "image/jpeg"),
        ("comic.gif", "image/gif"),
        ("page.html", "text/html"),
        ("blob", "application/octet-stream"),
    ],
)
def test_ok_serves_file_with_type(server: FaultServer, name: str, content_type: str) -> None:
    response, body = get(server, f"/ok/{name}")
    assert response.status == 200
    assert response.headers["Content-Type"] == content_type
    assert response.headers["Content-Length"] == "1000"
    assert body == file_body(name, 1000)


def test_ok_size_and_nested_percent_decoded_name(server: FaultServer) -> None:
    response, body = get(server, "/ok/dir/my%20file.png?size=12345")
    assert response.status == 200
    assert body == file_body("dir/my file.png", 12345)


def test_head_has_headers_but_no_body(server: FaultServer) -> None:
    response, body = get(server, "/ok/a.png?size=77", method="HEAD")
    assert response.status == 200
    assert response.headers["Content-Length"] == "77"
    assert body == b""


def test_keep_alive_reuses_one_connection(server: FaultServer) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=TIMEOUT)
    try:
        conn.request("GET", "/ok/a.png")
        first = conn.getresponse()
        assert first.read() == file_body("a.png", 1000)
        sock = conn.sock
        conn.request("GET", "/status/503/b.png")
        second = conn.getresponse()
        assert second.status == 503
        second.read()
        conn.request("GET", "/ok/c.png?size=5")
        assert conn.getresponse().read() == file_body("c.png", 5)
        assert conn.sock is sock  # never reconnected
    finally:
        conn.close()
    assert server.hits["/ok/a.png"] == 1


@pytest.mark.parametrize("path", ["/robots.txt", "/nowhere", "/", "/okay/a.png"])
def test_unknown_paths_are_404(server: FaultServer, path: str) -> None:
    response, _ = get(server, path)
    assert response.status == 404


def test_bad_parameter_is_400(server: FaultServer) -> None:
    assert get(server, "/ok/a.png?size=big")[0].status == 400
    assert get(server, "/status/abc/a.png")[0].status == 400
    assert get(server, "/random/0/5")[0].status == 400


# -- delays --------------------------------------------------------------------


def test_slow_delays_the_status_line(server: FaultServer) -> None:
    start = time.monotonic()
    response, body = get(server, "/slow/a.png?delay=0.4&size=10")
    assert time.monotonic() - start >= 0.4
    assert response.status == 200
    assert body == file_body("a.png", 10)


def test_slow_beyond_client_timeout_times_out(server: FaultServer) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=0.2)
    try:
        conn.request("GET", "/slow/a.png?delay=2")
        with pytest.raises(TimeoutError):
            conn.getresponse()
    finally:
        conn.close()


def test_slowbody_sends_headers_first(server: FaultServer) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=TIMEOUT)
    try:
        start = time.monotonic()
        conn.request("GET", "/slowbody/a.png?delay=0.5&size=10")
        response = conn.getresponse()
        headers_after = time.monotonic() - start
        body = response.read()
        body_after = time.monotonic() - start
    finally:
        conn.close()
    assert headers_after < 0.4
    assert body_after >= 0.5
    assert body == file_body("a.png", 10)


# -- broken transfers ----------------------------------------------------------


def test_reset_delivers_k_bytes_then_rst(server: FaultServer) -> None:
    head, body, ending = raw_exchange(server, "/reset/a.bin?size=100000&after=30000")
    assert head.startswith(b"HTTP/1.1 200")
    assert content_length(head) == 100000
    assert body == file_body("a.bin", 100000)[:30000]
    assert ending == "reset"


def test_reset_default_is_half_and_permanent(server: FaultServer) -> None:
    for _ in range(3):
        _, body, ending = raw_exchange(server, "/reset/a.bin")
        assert (len(body), ending) == (500, "reset")


def test_reset_times_then_full_file(server: FaultServer) -> None:
    path = "/reset/r.png?after=10&times=2"
    assert raw_exchange(server, path)[2] == "reset"
    # The count is per path: a different query still counts as the same file.
    assert raw_exchange(server, "/reset/r.png?after=99&times=2")[2] == "reset"
    response, body = get(server, path)
    assert response.status == 200
    assert body == file_body("r.png", 1000)
    assert server.hits["/reset/r.png"] == 3


def test_reset_is_an_error_for_http_client(server: FaultServer) -> None:
    with pytest.raises((ConnectionResetError, http.client.IncompleteRead)):
        get(server, "/reset/a.png?after=10")


def test_short_closes_cleanly_with_fewer_bytes(server: FaultServer) -> None:
    head, body, ending = raw_exchange(server, "/short/a.png?size=2000&after=700")
    assert content_length(head) == 2000
    assert body == file_body("a.png", 2000)[:700]
    assert ending == "eof"
    with pytest.raises(http.client.IncompleteRead):
        get(server, "/short/b.png")


def test_short_times_then_full_file(server: FaultServer) -> None:
    assert len(raw_exchange(server, "/short/s.png?times=1")[1]) == 500
    _, body = get(server, "/short/s.png?times=1")
    assert body == file_body("s.png", 1000)


# -- statuses ------------------------------------------------------------------


@pytest.mark.parametrize("code", [500, 502, 503, 404, 403])
def test_status_times_then_ok(server: FaultServer, code: int) -> None:
    path = f"/status/{code}/a.png?times=2"
    assert [get(server, path)[0].status for _ in range(3)] == [code, code, 200]
    assert get(server, path)[1] == file_body("a.png", 1000)


def test_group_shares_its_faults_between_paths(server: FaultServer) -> None:
    paths = [f"/429/{name}.png?times=1&group=g" for name in "cab"]
    assert [get(server, path)[0].status for path in paths] == [429, 200, 200]
    assert get(server, "/429/c.png?times=1")[0].status == 200  # without the group: its own count, 2


def test_status_without_times_is_permanent(server: FaultServer) -> None:
    assert [get(server, "/status/503/a.png")[0].status for _ in range(4)] == [503] * 4


def test_status_204_has_no_body(server: FaultServer) -> None:
    response, body = get(server, "/status/204/a.png")
    assert (response.status, body) == (204, b"")


def test_429_retry_after_seconds(server: FaultServer) -> None:
    response, _ = get(server, "/429/a.png?retry_after=7&times=1")
    assert response.status == 429
    assert response.headers["Retry-After"] == "7"
    response, body = get(server, "/429/a.png?retry_after=7&times=1")
    assert response.status == 200
    assert body == file_body("a.png", 1000)


def test_429_retry_after_http_date(server: FaultServer) -> None:
    response, _ = get(server, "/429/a.png?retry_after=120&date=1")
    when = parsedate_to_datetime(response.headers["Retry-After"]).timestamp()
    assert response.status == 429
    assert 115 <= when - time.time() <= 121


# -- redirects -----------------------------------------------------------------


@pytest.mark.parametrize("code", [301, 302, 307])
def test_redirect_points_to_ok(server: FaultServer, code: int) -> None:
    response, _ = get(server, f"/redirect/{code}/a.png?size=10")
    assert response.status == code
    assert response.headers["Location"] == server.url + "/ok/a.png?size=10"
    with urllib.request.urlopen(server.url + f"/redirect/{code}/a.png?size=10") as r:
        assert r.read() == file_body("a.png", 10)


def test_loop_redirects_to_itself(server: FaultServer) -> None:
    response, _ = get(server, "/loop/a.png?x=1")
    assert response.headers["Location"] == server.url + "/loop/a.png?x=1"
    with pytest.raises(urllib.error.HTTPError, match="infinite loop"):
        urllib.request.urlopen(server.url + "/loop/a.png", timeout=TIMEOUT)


def test_redirect_chain_hops_then_file(server: FaultServer) -> None:
    with urllib.request.urlopen(server.url + "/redirect-chain/3/c.png") as r:
        assert r.read() == file_body("c.png", 1000)
    assert [path for _, _, path in server.log] == [
        "/redirect-chain/3/c.png",
        "/redirect-chain/2/c.png",
        "/redirect-chain/1/c.png",
        "/redirect-chain/0/c.png",
    ]


# -- names and images ----------------------------------------------------------


def test_disposition_ascii(server: FaultServer) -> None:
    response, body = get(server, "/disposition/x?filename=report.pdf&size=20")
    assert response.headers["Content-Disposition"] == ('attachment; filename="report.pdf"')
    assert response.headers["Content-Type"] == "application/pdf"
    assert body == file_body("x", 20)  # keyed on the path name, not filename


def test_disposition_non_ascii_and_quotes(server: FaultServer) -> None:
    response, _ = get(server, "/disposition/x?filename=caf%C3%A9%20%22q%22.png")
    assert response.headers["Content-Disposition"] == (
        'attachment; filename="caf_ \\"q\\".png"; filename*=UTF-8\'\'caf%C3%A9%20%22q%22.png'
    )


def test_random_gives_different_valid_pngs(server: FaultServer) -> None:
    bodies = []
    for _ in range(3):
        response, body = get(server, "/random/7/5")
        assert response.headers["Content-Type"] == "image/png"
        assert "Content-Disposition" not in response.headers
        assert png_pixels(body)[:2] == (7, 5)
        bodies.append(body)
    assert len(set(bodies)) == 3


def test_same_gives_identical_pngs(server: FaultServer) -> None:
    first, second = get(server, "/same/4/3")[1], get(server, "/same/4/3")[1]
    assert first == second == same_png(4, 3)
    assert png_pixels(first)[:2] == (4, 3)


def test_make_png_pixels_roundtrip() -> None:
    rgb = bytes(range(2 * 2 * 3))
    _, _, raw = png_pixels(make_png(2, 2, rgb))
    assert raw == b"\x00" + rgb[:6] + b"\x00" + rgb[6:]


# -- accounting ----------------------------------------------------------------


def fetch_in_threads(server: FaultServer, paths: list[str]) -> list[int]:
    statuses: list[int] = []
    lock = threading.Lock()

    def worker(path: str) -> None:
        status = get(server, path)[0].status
        with lock:
            statuses.append(status)

    threads = [threading.Thread(target=worker, args=(p,)) for p in paths]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT)
    return statuses


def test_max_in_flight_counts_parallel_delays(server: FaultServer) -> None:
    start = time.monotonic()
    paths = [f"/slow/{i}.png?delay=0.5" for i in range(10)]
    assert fetch_in_threads(server, paths) == [200] * 10
    assert time.monotonic() - start < 2.0  # they really overlapped
    assert server.max_in_flight == 10
    assert server.in_flight == 0


def test_sequential_requests_never_overlap(server: FaultServer) -> None:
    # The count drops before the last byte leaves, so a client that starts
    # the next request as soon as it has a response never sees two.
    for i in range(100):
        get(server, f"/ok/{i}.png?size=10")
        assert server.in_flight == 0
    for i in range(20):
        assert raw_exchange(server, f"/reset/{i}.png?size=10&after=3")[2] == "reset"
        assert server.in_flight == 0
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=TIMEOUT)
    try:
        for path in ["/slowbody/a.png?delay=0.05", "/status/204/a.png", "/ok/a.png?size=0"] * 20:
            conn.request("GET", path)
            conn.getresponse().read()
            assert server.in_flight == 0
        conn.request("HEAD", "/ok/a.png")
        conn.getresponse().read()
    finally:
        conn.close()
    assert server.in_flight == 0
    assert server.max_in_flight == 1


def test_handles_sixty_concurrent_connections(server: FaultServer) -> None:
    paths = [f"/slow/{i}.png?delay=2" for i in range(60)]
    assert fetch_in_threads(server, paths) == [200] * 60
    assert server.max_in_flight == 60
    assert len(server.hits) == 60


def test_hits_log_and_reset_counters(server: FaultServer) -> None:
    before = time.monotonic()
    get(server, "/ok/a.png?size=1")
    get(server, "/ok/a.png?size=2", method="HEAD")
    get(server, "/status/503/b.png?times=1")
    assert server.hits == {"/ok/a.png": 2, "/status/503/b.png": 1}
    assert [(m, p) for _, m, p in server.log] == [
        ("GET", "/ok/a.png?size=1"),
        ("HEAD", "/ok/a.png?size=2"),
        ("GET", "/status/503/b.png?times=1"),
    ]
    assert all(before <= t <= time.monotonic() for t, _, _ in server.log)
    server.reset_counters()
    assert (server.hits, server.log, server.max_in_flight) == ({}, [], 0)
    # times counting restarts with the counters.
    assert get(server, "/status/503/b.png?times=1")[0].status == 503


@pytest.mark.e2e
def test_exit_does_not_wait_for_stuck_clients() -> None:
    with FaultServer() as srv:
        idle = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=TIMEOUT)
        idle.request("GET", "/ok/a.png")
        idle.getresponse().read()  # connection now idle in keep-alive
        stuck = socket.create_connection(("127.0.0.1", srv.port), timeout=TIMEOUT)
        stuck.sendall(b"GET /slow/a.png?delay=60 HTTP/1.1\r\nHost: x\r\n\r\n")
        deadline = time.monotonic() + TIMEOUT
        while srv.in_flight == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        start = time.monotonic()
    try:
        assert time.monotonic() - start < 2.0
        with pytest.raises(urllib.error.URLError, match="refused"):
            urllib.request.urlopen(srv.url + "/ok/a.png", timeout=1)
    finally:
        idle.close()
        stuck.close()
