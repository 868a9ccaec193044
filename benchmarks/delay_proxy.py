"""A tiny HTTP/1.x reverse proxy that adds a fixed delay before each request.

It sits in front of nginx and models the latency of a remote server: every
request head that arrives from a client is held for ``--delay-ms`` and then
forwarded unchanged to the upstream; response bytes flow back untouched (no
parsing, so keep-alive, chunked encoding and ranges all just work). Each client
connection gets its own upstream connection.

Run it as its own process (so it never shares a GIL with the harness); once it
listens it prints ``READY <port>`` on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Awaitable, Callable

HEAD_END = b"\r\n\r\n"
MAX_HEAD = 64 * 1024
CHUNK = 256 * 1024


def body_length(head: bytes) -> int | None:
    """Content-Length of a request head; None when the body is not length-delimited."""
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"transfer-encoding":
            return None
        if name == b"content-length":
            length = int(value.strip())
    return length


async def copy_exact(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, count: int) -> None:
    """Forward exactly ``count`` bytes (a request body)."""
    while count > 0:
        data = await reader.read(min(count, CHUNK))
        if not data:
            raise ConnectionError("client closed inside a request body")
        writer.write(data)
        await writer.drain()
        count -= len(data)


async def copy_all(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Forward bytes until EOF, then half-close the other side."""
    while data := await reader.read(CHUNK):
        writer.write(data)
        await writer.drain()
    if writer.can_write_eof():
        writer.write_eof()


async def forward_requests(client: asyncio.StreamReader, upstream: asyncio.StreamWriter, delay: float) -> None:
    """Hold every request head for ``delay`` seconds, then pass it (and its body) on."""
    buf = b""
    while True:
        end = buf.find(HEAD_END)
        if end < 0:
            if len(buf) > MAX_HEAD:  # not HTTP we understand: pass the rest through
                upstream.write(buf)
                await copy_all(client, upstream)
                return
            data = await client.read(CHUNK)
            if not data:
                if upstream.can_write_eof():
                    upstream.write_eof()
                return
            buf += data
            continue
        head, buf = buf[: end + len(HEAD_END)], buf[end + len(HEAD_END) :]
        if delay > 0:
            await asyncio.sleep(delay)
        upstream.write(head)
        length = body_length(head)
        if length is None:  # chunked request body: unsupported framing, pass the rest through
            upstream.write(buf)
            await copy_all(client, upstream)
            return
        body, buf = buf[:length], buf[length:]
        upstream.write(body)
        await copy_exact(client, upstream, length - len(body))
        await upstream.drain()


async def close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def make_handler(upstream_host: str, upstream_port: int, delay: float) -> Handler:
    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection(upstream_host, upstream_port, limit=CHUNK)
        except OSError:
            await close(client_w)
            return
        tasks = [
            asyncio.create_task(forward_requests(client_r, up_w, delay)),
            asyncio.create_task(copy_all(up_r, client_w)),
        ]
        try:
            await asyncio.gather(*tasks)
        except (OSError, ValueError):
            for task in tasks:
                task.cancel()
        finally:
            await close(up_w)
            await close(client_w)

    return handle


async def serve(args: argparse.Namespace) -> None:
    host, _, port = args.upstream.rpartition(":")
    handler = make_handler(host, int(port), args.delay_ms / 1000.0)
    listen_host, _, listen_port = args.listen.rpartition(":")
    server = await asyncio.start_server(handler, listen_host, int(listen_port), limit=CHUNK, backlog=1024)
    bound = server.sockets[0].getsockname()[1]
    print(f"READY {bound}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1:0", help="host:port to listen on (port 0: any free port)")
    parser.add_argument("--upstream", required=True, help="host:port of the real server")
    parser.add_argument("--delay-ms", type=float, default=20.0, help="delay added before each request")
    args = parser.parse_args(argv)
    asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
