"""Real nginx, Apache, lighttpd and http.server instances serving a folder, for tests."""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from servers.processes import free_port, stop

if TYPE_CHECKING:
    from collections.abc import Iterator

# Debian keeps the daemons in sbin, which a non-root PATH may lack.
_SBIN_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/local/sbin", "/usr/sbin", "/sbin"])
APACHE_MODULES = Path("/usr/lib/apache2/modules")
START_TIMEOUT = 15.0
IS_ROOT = os.geteuid() == 0
# Ignores *_proxy variables, so requests to these servers stay on 127.0.0.1.
LOCAL_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def find_binary(name: str) -> str | None:
    """Path of a server binary, also looking in the sbin folders."""
    return shutil.which(name, path=_SBIN_PATH)


# ---------------------------------------------------------------- servers


@contextmanager
def nginx(
    root: Path, *, access_log: Path | None = None, limit_rate: str | None = None, locations: str = ""
) -> Iterator[str]:
    """nginx with autoindex on, serving root; yields its base URL.

    access_log: one line per request, `<uri> <status> <Range header or -> <bytes sent>`;
    limit_rate: nginx's per-connection rate limit (e.g. "32m"); locations: more location blocks.
    """
    with _workdir("nginx") as work:
        port = free_port()
        conf = work / "nginx.conf"
        conf.write_text(_nginx_conf(root, work, port, access_log, limit_rate, locations), encoding="utf-8")
        # -e: the error log to use before the config is read (default is under /var/log).
        argv = [_binary("nginx"), "-p", f"{work}/", "-e", str(work / "error.log"), "-c", str(conf)]
        with _running(argv, work, port) as url:
            yield url


@contextmanager
def apache(root: Path) -> Iterator[str]:
    """Apache httpd with mod_autoindex (FancyIndexing, HTMLTable); yields its base URL.

    Apache refuses to serve as root and drops to nobody, who cannot read a
    tree under a 0700 folder (pytest's tmp_path): as root it serves a
    world-readable snapshot copy of root, so later changes to root don't show.
    """
    with _workdir("apache") as work:
        docroot = _readable_copy(root, work / "docroot") if IS_ROOT else root
        port = free_port()
        conf = work / "httpd.conf"
        conf.write_text(_apache_conf(docroot, work, port), encoding="utf-8")
        # -X: one process in the foreground, so stopping its PID stops the server.
        argv = [_binary("apache2"), "-X", "-d", str(work), "-f", str(conf)]
        with _running(argv, work, port) as url:
            yield url


@contextmanager
def lighttpd(root: Path) -> Iterator[str]:
    """lighttpd with mod_dirlisting on, serving root; yields its base URL."""
    with _workdir("lighttpd") as work:
        port = free_port()
        conf = work / "lighttpd.conf"
        conf.write_text(_lighttpd_conf(root, work, port), encoding="utf-8")
        with _running([_binary("lighttpd"), "-D", "-f", str(conf)], work, port) as url:
            yield url


@contextmanager
def python_http_server(root: Path) -> Iterator[str]:
    """Python's `http.server` serving root; yields its base URL."""
    with _workdir("python") as work:
        port = free_port()
        argv = [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "--directory", str(root), str(port)]
        with _running(argv, work, port) as url:
            yield url


# ---------------------------------------------------------------- configs


def _nginx_conf(
    root: Path, work: Path, port: int, access_log: Path | None, limit_rate: str | None, locations: str
) -> str:
    # master_process off: one process, so stopping its PID leaves no orphan
    # worker; it also keeps the starting user (no switch to nobody, who could
    # not read a 0700 tmp_path), so no `user` directive is needed.
    return f"""
daemon off;
master_process off;
pid {work}/nginx.pid;
error_log {work}/error.log warn;
events {{ worker_connections 64; }}
http {{
    log_format ranges '$request_uri $status $http_range $bytes_sent';
    access_log {f'"{access_log}" ranges' if access_log else "off"};
    {f"limit_rate {limit_rate};" if limit_rate else ""}
    client_body_temp_path {work}/client_body;
    proxy_temp_path {work}/proxy;
    fastcgi_temp_path {work}/fastcgi;
    uwsgi_temp_path {work}/uwsgi;
    scgi_temp_path {work}/scgi;
    types {{ text/plain txt; application/octet-stream bin; }}
    server {{
        listen 127.0.0.1:{port};
        server_name 127.0.0.1;
        root "{root}";
        location / {{ autoindex on; }}
        {locations}
    }}
}}
"""


_APACHE_MODULES = ("mpm_prefork", "authz_core", "dir", "mime", "autoindex")


def _apache_conf(docroot: Path, work: Path, port: int) -> str:
    modules = "\n".join(f"LoadModule {m}_module {APACHE_MODULES}/mod_{m}.so" for m in _APACHE_MODULES)
    # As root Apache must switch to an unprivileged user (it refuses root).
    user = "User nobody\nGroup nogroup" if IS_ROOT else ""
    return f"""
{modules}
{user}
ServerName 127.0.0.1
Listen 127.0.0.1:{port}
DefaultRuntimeDir "{work}"
PidFile "{work}/httpd.pid"
ErrorLog "{work}/error.log"
LogLevel warn
# -X serves one connection at a time: an idle keep-alive connection would hold up all the others.
KeepAlive Off
TypesConfig /etc/mime.types
DocumentRoot "{docroot}"
<Directory "{docroot}">
    Options Indexes
    AllowOverride None
    Require all granted
</Directory>
# Icons as in Debian's autoindex.conf; IconsAreLinks makes each entry linked twice, as on real sites.
IndexOptions FancyIndexing HTMLTable IconsAreLinks Charset=UTF-8
AddIcon /icons/back.gif ..
AddIcon /icons/folder.gif ^^DIRECTORY^^
AddIcon /icons/blank.gif ^^BLANKICON^^
DefaultIcon /icons/unknown.gif
"""


def _lighttpd_conf(root: Path, work: Path, port: int) -> str:
    # Left unset, server.username keeps root, who can read a 0700 tmp_path.
    return f"""
server.modules = ("mod_dirlisting")
server.document-root = "{root}"
server.bind = "127.0.0.1"
server.port = {port}
server.errorlog = "{work}/error.log"
server.upload-dirs = ("{work}")
dir-listing.activate = "enable"
dir-listing.encoding = "utf-8"
"""


# ---------------------------------------------------------------- process plumbing


@contextmanager
def _workdir(server: str) -> Iterator[Path]:
    work = Path(tempfile.mkdtemp(prefix=f"xkcdcrawl-{server}-"))
    try:
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)


@contextmanager
def _running(argv: list[str], work: Path, port: int) -> Iterator[str]:
    """Run argv (logging to work/server.log) until it answers on port; stop it on exit."""
    log = work / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, cwd=work, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_for_port(proc, port, work)
        yield f"http://127.0.0.1:{port}/"
    finally:
        stop(proc)


def _wait_for_port(proc: subprocess.Popen[bytes], port: int, work: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}:\n{_logs(work)}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        except OSError:
            time.sleep(0.05)
        else:
            return
    raise RuntimeError(f"{proc.args!r} did not answer on port {port}:\n{_logs(work)}")


def _logs(work: Path) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')}" for p in sorted(work.glob("*.log")))


def _binary(name: str) -> str:
    path = find_binary(name)
    if path is None:
        raise FileNotFoundError(f"{name} not found: run scripts/install-system-deps.sh")
    return path


def _readable_copy(root: Path, dest: Path) -> Path:
    """Copy root to dest, readable by any user, with every parent up to / traversable."""
    shutil.copytree(root, dest, symlinks=True)
    for folder in [dest, *(p for p in dest.rglob("*") if p.is_dir() and not p.is_symlink())]:
        folder.chmod(0o755)
    for file in (p for p in dest.rglob("*") if p.is_file() and not p.is_symlink()):
        file.chmod(0o644)
    dest.parent.chmod(0o755)  # mkdtemp made it 0700; its parent is the system temp dir
    return dest


# ---------------------------------------------------------------- test tree

LONG_NAME = "long-" + "x" * 191 + ".txt"  # 200 bytes, near the usual 255-byte limit
ODD_NAMES = [
    "with space.txt",
    "café.txt",
    "日本語.txt",
    "a&b.txt",
    "hash#tag.txt",
    "100%.txt",
    "100%25.txt",  # what '100%.txt' becomes if a server forgets to encode '%'
    "plus+sign.txt",
    "semi;colon.txt",
    "it's.txt",
    "what?.txt",
    LONG_NAME,
]


def make_tree(root: Path) -> dict[str, bytes]:
    """Write a tree of awkward names and sizes under root; return {relative posix path: bytes}.

    Also makes the empty folder 'empty/', which holds no file and so is not in the result.
    """
    rng = random.Random(1234)  # fixed seed: the same bytes on every run
    files = {
        "readme.txt": b"a tree for directory-listing tests\n",
        "zero-bytes.bin": b"",
        "Makefile": b"all:\n",  # no extension: stored under exactly this name
        "level1/LICENSE": b"MIT\n",
        "level1/one.txt": b"one\n",
        "level1/level2/two.txt": b"two\n",
        "level1/level2/level3/three.txt": b"three\n",
        "with space/inner file.txt": b"spaced\n",
        "été/日本/深い.txt": "深い\n".encode(),
        "odd #%&+;'/x.txt": b"odd folder name\n",
        "big/random-1MiB.bin": rng.randbytes(1 << 20),
        "big/random-1MiB+1.bin": rng.randbytes((1 << 20) + 1),
        "big/repeat-1MB.bin": b"0123456789" * 100_000,
        **{name: f"{name}\n".encode() for name in ODD_NAMES},
    }
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    (root / "empty").mkdir()
    return files


def _save_root_listings(dest: Path) -> None:
    """Write each server's listing of a fresh make_tree() to dest/generated_<server>.html."""
    servers = {"nginx": nginx, "apache": apache, "lighttpd": lighttpd, "python": python_http_server}
    with tempfile.TemporaryDirectory() as tmp:
        make_tree(Path(tmp))
        for name, serve in servers.items():
            with serve(Path(tmp)) as url, LOCAL_OPENER.open(url, timeout=10) as reply:
                (dest / f"generated_{name}.html").write_bytes(reply.read())


if __name__ == "__main__":
    # Refresh the fixtures: PYTHONPATH=tests python -m servers.webservers tests/fixtures/pages/dirlist
    _save_root_listings(Path(sys.argv[1]))
