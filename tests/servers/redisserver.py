"""A throwaway redis-server on 127.0.0.1 for tests: no persistence, stopped by its PID."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from servers.processes import free_port, stop
from servers.webservers import find_binary

if TYPE_CHECKING:
    from collections.abc import Iterator

START_TIMEOUT = 15.0


def redis_server_binary() -> str | None:
    """Path of redis-server (Debian: apt-get install redis-server), or None."""
    return find_binary("redis-server")


@contextmanager
def redis_server() -> Iterator[str]:
    """Run redis-server on a free 127.0.0.1 port until the block ends; yields redis://127.0.0.1:PORT.

    Nothing is saved (no RDB, no AOF) and its working folder is a fresh temporary one.
    """
    binary = redis_server_binary()
    if binary is None:
        raise FileNotFoundError("redis-server not found: apt-get install -y redis-server")
    work = Path(tempfile.mkdtemp(prefix="xkcdcrawl-redis-"))
    try:
        port = free_port()
        argv = [
            binary,
            "--bind", "127.0.0.1",
            "--port", str(port),
            "--save", "",
            "--appendonly", "no",
            "--dir", str(work),
            "--daemonize", "no",
            "--protected-mode", "yes",
            "--logfile", str(work / "redis.log"),
        ]  # fmt: skip
        proc = subprocess.Popen(argv, cwd=work, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        try:
            _wait_for_ping(proc, port, work)
            yield f"redis://127.0.0.1:{port}"
        finally:
            stop(proc)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def ping(port: int, timeout: float = 0.5) -> bool:
    """True when a Redis server answers PING on 127.0.0.1:port (RESP by hand: no client needed)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _wait_for_ping(proc: subprocess.Popen[bytes], port: int, work: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"redis-server exited with {proc.returncode}:\n{_log(work)}")
        if ping(port):
            return
        time.sleep(0.05)
    stop(proc)
    raise RuntimeError(f"redis-server did not answer PING on port {port}:\n{_log(work)}")


def _log(work: Path) -> str:
    log = work / "redis.log"
    return log.read_text(errors="replace") if log.exists() else "(no log)"


def fleet_settings(redis_url: str, job: str, store: Path) -> dict[str, str]:
    """What every worker of one crawl gets (README: Scaling out with scrapy-redis), as -s values."""
    return {
        "SPIDER_MODULES": "xkcdcrawl.scaleout",
        "SCHEDULER": "scrapy_redis.scheduler.Scheduler",
        "DUPEFILTER_CLASS": "xkcdcrawl.redisqueue.ReliableDupeFilter",
        "REDIS_URL": redis_url,
        "SCHEDULER_QUEUE_KEY": f"%(spider)s:{job}:requests",  # one frontier per crawl
        "SCHEDULER_DUPEFILTER_KEY": f"%(spider)s:{job}:dupefilter",
        "MAX_IDLE_TIME_BEFORE_CLOSE": "6",  # open at least 6 s: an idle worker polls at open, +5 s, +10 s
        "FILES_STORE": str(store),
        "XKCDCRAWL_PROGRESS_INTERVAL": "0",
    }
