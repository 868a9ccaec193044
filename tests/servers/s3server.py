"""A throwaway S3-compatible server on 127.0.0.1 for tests: moto's, in memory, stopped by its PID."""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from servers.processes import free_port, stop

if TYPE_CHECKING:
    from collections.abc import Iterator

START_TIMEOUT = 30.0
KEY_ID, SECRET, REGION = "testing", "testing", "us-east-1"  # moto takes any
# werkzeug's access log: 127.0.0.1 - - [01/Dec/2026 21:15:33] "PUT /bucket/key HTTP/1.1" 200 -
ACCESS = re.compile(r'"(?P<method>[A-Z]+) (?P<target>\S+) HTTP/[\d.]+" (?P<status>\d{3})')


@dataclass
class S3Server:
    endpoint: str
    log: Path

    def settings(self) -> dict[str, str]:
        """Scrapy's settings for a FILES_STORE=s3://... on this server."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": KEY_ID,
            "AWS_SECRET_ACCESS_KEY": SECRET,
            "AWS_REGION_NAME": REGION,
        }

    def client(self) -> Any:
        import botocore.session  # type: ignore[import-untyped]

        return botocore.session.get_session().create_client(
            "s3", endpoint_url=self.endpoint, aws_access_key_id=KEY_ID, aws_secret_access_key=SECRET, region_name=REGION
        )

    def requests(self) -> list[tuple[str, str, int]]:
        """(method, target, status) of every request the server has answered so far."""
        text = self.log.read_text(encoding="utf-8", errors="replace")
        return [(m["method"], m["target"], int(m["status"])) for m in ACCESS.finditer(text)]


@contextmanager
def s3_server() -> Iterator[S3Server]:
    """Run moto's server on a free 127.0.0.1 port until the block ends."""
    with tempfile.TemporaryDirectory(prefix="xkcdcrawl-s3-") as work:
        log = Path(work) / "access.log"
        port = free_port()
        argv = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
        with log.open("wb") as out:
            proc = subprocess.Popen(argv, cwd=work, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        try:
            server = S3Server(f"http://127.0.0.1:{port}", log)
            _wait_until_up(proc, server)
            yield server
        finally:
            stop(proc)


def _wait_until_up(proc: subprocess.Popen[bytes], server: S3Server) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"moto server exited with {proc.returncode}:\n{server.log.read_text()}")
        with suppress(OSError), urllib.request.urlopen(f"{server.endpoint}/moto-api/", timeout=1):
            return
        time.sleep(0.05)
    stop(proc)
    raise RuntimeError(f"moto server did not answer on {server.endpoint}:\n{server.log.read_text()}")
