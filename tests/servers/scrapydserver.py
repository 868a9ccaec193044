"""A real scrapyd on 127.0.0.1 for tests: its own config, folders and port, and a clean environment.

scrapyd 1.6 reads, in this order (later files win): its defaults, /etc/scrapyd/scrapyd.conf,
/etc/scrapyd/conf.d/*, ./scrapyd.conf, ~/.scrapyd.conf, the closest scrapy.cfg, and then lets the
SCRAPYD_BIND_ADDRESS, SCRAPYD_HTTP_PORT, SCRAPYD_USERNAME and SCRAPYD_PASSWORD variables override.
So it runs in its own folder (./scrapyd.conf is ours, and no scrapy.cfg is above /tmp), with HOME
pointing there (no ~/.scrapyd.conf, ~/.netrc or ~/.config/scrapy.cfg) and an environment holding
none of our variables (no SCRAPYD_*, SCRAPY_*, PYTHONPATH, *_proxy). Every option /etc could set
is set here too; only extra [settings] or [services] sections in /etc/scrapyd could still add.

The jobs scrapyd starts inherit that environment, so they import the project from the uploaded egg,
never from this checkout.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from servers.processes import free_port

if TYPE_CHECKING:
    from collections.abc import Iterator

START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
START_ATTEMPTS = 3  # a free port can be taken between finding it and scrapyd binding it
MAX_PROC = 2
OUTPUT = "scrapyd.out"  # scrapyd's own log (stdout and stderr), in its folder
# Ignores *_proxy variables, so requests to scrapyd stay on 127.0.0.1.
LOCAL_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def python() -> str:
    """The interpreter of the project's venv, which has scrapyd (sys.executable under .venv/bin/python)."""
    return sys.executable


def clean_env(home: Path) -> dict[str, str]:
    """Only what a process needs to run: nothing from our environment can reconfigure it.

    Its temporary files go in home too: scrapyd-deploy --build-egg leaves its scrapydeploy-* folder.
    """
    return {"PATH": os.environ.get("PATH", os.defpath), "HOME": str(home), "TMPDIR": str(home), "LANG": "C.UTF-8"}


def conf_text(root: Path, port: int, username: str | None, password: str | None) -> str:
    """scrapyd.conf: everything under root, basic auth when both are given, jobs started at once."""
    lines = {
        "bind_address": "127.0.0.1",
        "http_port": str(port),
        "unix_socket_path": "",
        "username": username or "",
        "password": password or "",
        "max_proc": str(MAX_PROC),
        "poll_interval": "0.2",  # default 5 s: a scheduled job would wait up to 5 s to start
        "eggs_dir": str(root / "eggs"),
        "logs_dir": str(root / "logs"),
        "items_dir": str(root / "items"),
        "dbs_dir": str(root / "dbs"),
        "jobs_dir": "",
        "jobs_to_keep": "100",
        "finished_to_keep": "100",
        "debug": "off",
    }
    for key, value in lines.items():
        if "\n" in value or "\r" in value:
            raise ValueError(f"{key} cannot hold a line break")
    # ConfigParser interpolation: a literal % is written %%.
    body = "".join(f"{key} = {value.replace('%', '%%')}\n" for key, value in lines.items())
    return f"[scrapyd]\n{body}"


def auth_header(username: str | None, password: str | None) -> dict[str, str]:
    if username is None or password is None:
        return {}
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def daemon_status(url: str, headers: dict[str, str]) -> dict[str, object] | None:
    """daemonstatus.json, or None while scrapyd does not answer it."""
    request = urllib.request.Request(f"{url}/daemonstatus.json", headers=headers)
    try:
        with LOCAL_OPENER.open(request, timeout=2) as response:
            data: dict[str, object] = json.loads(response.read())
            return data
    except (OSError, ValueError):  # URLError and HTTPError are OSErrors
        return None


@contextmanager
def scrapyd(tmp: Path, *, username: str | None = None, password: str | None = None) -> Iterator[str]:
    """Run scrapyd in tmp until the block ends; yields its base URL (http://127.0.0.1:PORT, no slash).

    Its eggs, logs (tmp/logs/PROJECT/SPIDER/JOB.log), items, dbs and own output (tmp/scrapyd.out)
    stay in tmp.
    """
    if cfg := next((d / "scrapy.cfg" for d in (tmp, *tmp.parents) if (d / "scrapy.cfg").exists()), None):
        raise RuntimeError(f"scrapyd in {tmp} would read {cfg}: give it a folder outside any Scrapy project")
    tmp.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, START_ATTEMPTS + 1):
        port = free_port()
        (tmp / "scrapyd.conf").write_text(conf_text(tmp, port, username, password), encoding="utf-8")
        proc = start(tmp)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_until_ready(proc, url, auth_header(username, password), tmp)
        except PortTaken:
            stop(proc)
            if attempt == START_ATTEMPTS:
                raise
            continue
        except BaseException:
            stop(proc)
            raise
        try:
            yield url
        finally:
            stop(proc)
        return


class PortTaken(RuntimeError):
    pass


def start(tmp: Path) -> subprocess.Popen[bytes]:
    with (tmp / OUTPUT).open("ab") as out:  # the child keeps its own descriptor
        return subprocess.Popen(
            [python(), "-m", "scrapyd"],
            cwd=tmp,
            env=clean_env(tmp),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its jobs share its process group: see stop()
        )


def wait_until_ready(proc: subprocess.Popen[bytes], url: str, headers: dict[str, str], tmp: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            output = output_of(tmp)
            error = PortTaken if "Address already in use" in output else RuntimeError
            raise error(f"scrapyd exited with {proc.returncode}:\n{output}")
        if daemon_status(url, headers) is not None:
            return
        time.sleep(0.05)
    raise RuntimeError(f"scrapyd did not answer {url}/daemonstatus.json in {START_TIMEOUT} s:\n{output_of(tmp)}")


def output_of(tmp: Path) -> str:
    """What scrapyd has logged so far (its own log, not the jobs')."""
    path = tmp / OUTPUT
    return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop scrapyd by its PID, then any job it left running (scrapyd does not stop them on exit).

    start_new_session made scrapyd the leader of a process group that only it and its jobs are in.
    """
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
