"""The server: a real nginx on 127.0.0.1 serving the data set, with a delay added to every request.

Three ports: bench (the delay, what the tools use), zero (the same mechanism at 0 ms) and direct
(plain nginx). The delay is nginx's Lua ngx.sleep(), or delay_proxy.py in front of nginx.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dataset import MIB

if TYPE_CHECKING:
    from collections.abc import Iterable

HERE = Path(__file__).resolve().parent
LUA_MODULES = (
    Path("/usr/lib/nginx/modules/ndk_http_module.so"),
    Path("/usr/lib/nginx/modules/ngx_http_lua_module.so"),
)


@dataclass(frozen=True)
class Endpoints:
    bench: str  # base URL (no trailing slash) with the injected delay: what the tools use
    zero: str  # same delay mechanism with a 0 ms delay: measures the mechanism's own cost
    direct: str  # plain nginx
    access_log: Path
    mechanism: str


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def nginx_server_block(port: int, root: Path, delay_s: float | None, limit_rate: str | None = None) -> str:
    # Debian's nginx lacks OpenResty's delayed-events patch: ngx.sleep(0) logs a warning on every request,
    # so a 0 ms server runs the same Lua handler and skips the sleep.
    lua = f"local delay = {delay_s or 0.0:.6f} if delay > 0 then ngx.sleep(delay) end"
    access = "" if delay_s is None else f"access_by_lua_block {{ {lua} }}"
    # A per-connection rate limit, as many mirrors and CDNs have: what parallel ranges are for.
    access += f" limit_rate {limit_rate};" if limit_rate else ""
    return f"""
  server {{
    listen 127.0.0.1:{port} backlog=1024;
    root {root};
    location / {{ autoindex on; autoindex_exact_size on; {access} }}
  }}"""


def nginx_conf(work: Path, servers: Iterable[str], lua: bool) -> str:
    modules = "".join(f"load_module {m};\n" for m in LUA_MODULES) if lua else ""
    temps = " ".join(f"{kind}_temp_path {work / ('tmp_' + kind)};" for kind in ("client_body", "proxy", "fastcgi"))
    temps += f" uwsgi_temp_path {work / 'tmp_uwsgi'}; scgi_temp_path {work / 'tmp_scgi'};"
    # Started by root, nginx's workers would drop to "nobody", who cannot read a private temp dir.
    user = "user root;\n" if os.geteuid() == 0 else ""
    return f"""{modules}{user}worker_processes auto;
daemon off;
pid {work / "nginx.pid"};
error_log {work / "nginx-error.log"} warn;
events {{ worker_connections 4096; }}
http {{
  access_log {work / "access.log"};
  {temps}
  sendfile on; tcp_nopush on; tcp_nodelay on;
  keepalive_requests 100000; keepalive_timeout 60s;
  types {{ }} default_type application/octet-stream;
  {"".join(servers)}
}}
"""


def spawn(
    stack: contextlib.ExitStack, argv: list[str], log: Path, stdout: int | None = None
) -> subprocess.Popen[bytes]:
    """Start a helper process that is stopped when ``stack`` closes."""
    with log.open("ab") as fh:
        proc = subprocess.Popen(argv, stdout=fh if stdout is None else stdout, stderr=fh, stdin=subprocess.DEVNULL)

    def stop() -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    stack.callback(stop)
    return proc


def start_proxy(stack: contextlib.ExitStack, work: Path, upstream: int, delay_ms: float) -> int:
    argv = [sys.executable, str(HERE / "delay_proxy.py"), "--upstream", f"127.0.0.1:{upstream}"]
    argv += ["--delay-ms", str(delay_ms)]
    proc = spawn(stack, argv, work / "proxy.log", stdout=subprocess.PIPE)
    assert proc.stdout is not None
    line = proc.stdout.readline().decode().split()
    if len(line) != 2 or line[0] != "READY":
        raise RuntimeError(f"delay proxy failed to start, see {work / 'proxy.log'}")
    return int(line[1])


def start_server(
    stack: contextlib.ExitStack, work: Path, data: Path, delay_ms: float, mode: str, limit_rate: str | None = None
) -> Endpoints:
    nginx = find_nginx()
    assert nginx is not None
    direct = free_port()
    blocks = [nginx_server_block(direct, data, None, limit_rate)]
    if mode == "lua":
        zero, bench = free_port(), free_port()
        blocks += [
            nginx_server_block(zero, data, 0.0, limit_rate),
            nginx_server_block(bench, data, delay_ms / 1000.0, limit_rate),
        ]
    conf = work / "nginx.conf"
    conf.write_text(nginx_conf(work, blocks, lua=mode == "lua"))
    argv = [nginx, "-p", str(work), "-c", str(conf), "-e", str(work / "nginx-error.log")]
    spawn(stack, argv, work / "nginx.out")
    wait_port(direct)
    if mode == "lua":
        wait_port(zero)
        wait_port(bench)
    else:
        zero = start_proxy(stack, work, direct, 0.0)
        bench = start_proxy(stack, work, direct, delay_ms)
    mechanism = "nginx access_by_lua_block ngx.sleep()" if mode == "lua" else "asyncio delay proxy (delay_proxy.py)"

    def url(port: int) -> str:
        return f"http://127.0.0.1:{port}"

    return Endpoints(url(bench), url(zero), url(direct), work / "access.log", mechanism)


def find_nginx() -> str | None:
    return shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if Path(p).exists()), None)


def count_lines(path: Path) -> int:
    with path.open("rb") as fh:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(MIB), b""))


def delay_mode(requested: str) -> str | None:
    have_lua = all(m.exists() for m in LUA_MODULES)
    if requested == "auto":
        return "lua" if have_lua else "proxy"
    if requested == "lua" and not have_lua:
        return None
    return requested
