"""Benchmark xkcdcrawl against other bulk downloaders on a local nginx autoindex tree.

Generates a data set, serves it from a real nginx on 127.0.0.1 with an injected
per-request delay, mirrors it with every downloader (same URLs, same
parallelism, cold output directories, --repeat runs each, median reported),
verifies every output by sha256 and prints a table (optionally JSON).
See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import json
import os
import platform
import random
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
MIB = 1024 * 1024
GNU_TIME = Path("/usr/bin/time")
INSTALL_HINT = "apt-get install -y nginx libnginx-mod-http-lua wget curl aria2 lftp rclone"
# --silent --show-error still draws the --parallel progress meter in curl 7.88; this does not
CURL_QUIET = ("--fail", "--no-progress-meter")
LUA_MODULES = (
    Path("/usr/lib/nginx/modules/ndk_http_module.so"),
    Path("/usr/lib/nginx/modules/ngx_http_lua_module.so"),
)

# The one place that says how xkcdcrawl is run. {scrapy} is the project's venv scrapy,
# {base} the server URL without its trailing slash, {out} a fresh store, {jobs} --jobs.
XKCDCRAWL_TEMPLATE = (
    "{scrapy} crawl listing -a url={base}/ -s FILES_STORE={out}"
    " -s CONCURRENT_REQUESTS_PER_DOMAIN={jobs} -s CONCURRENT_REQUESTS={jobs} -s LOG_LEVEL=WARNING"
)


# --------------------------------------------------------------------------- data set


@dataclass(frozen=True)
class Dataset:
    root: Path
    digests: dict[str, str]  # relative path -> sha256 hex
    sizes: dict[str, int]
    dirs: list[str]
    big: list[str]

    @property
    def total_bytes(self) -> int:
        return sum(self.sizes.values())


def write_random(path: Path, rng: random.Random, size: int) -> str:
    """Write ``size`` pseudo-random bytes to ``path``; returns their sha256."""
    digest = hashlib.sha256()
    with path.open("wb") as fh:
        left = size
        while left > 0:
            block = rng.randbytes(min(left, MIB))
            digest.update(block)
            fh.write(block)
            left -= len(block)
    return digest.hexdigest()


def generate_dataset(root: Path, args: argparse.Namespace) -> Dataset:
    rng = random.Random(args.seed)
    dirs = [f"d{i:02d}" for i in range(args.dirs)]
    plan = [(f"{dirs[i % len(dirs)]}/f{i:05d}.bin", args.size) for i in range(args.files)]
    big = [f"big{j:02d}.bin" for j in range(args.big)]
    plan += [(name, args.big_size) for name in big]
    digests: dict[str, str] = {}
    sizes: dict[str, int] = {}
    for rel, size in plan:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        digests[rel] = write_random(path, rng, size)
        sizes[rel] = size
    return Dataset(root, digests, sizes, dirs, big)


# --------------------------------------------------------------------------- server


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


# --------------------------------------------------------------------------- input files


@dataclass(frozen=True)
class Inputs:
    urls: Path  # one URL a line
    aria2: Path  # aria2c -i file with out= per URL (keeps the tree)
    curl: Path  # curl -K config, outputs relative to --output-dir


def write_inputs(work: Path, base: str, dataset: Dataset) -> Inputs:
    inputs = Inputs(work / "urls.txt", work / "urls.aria2", work / "urls.curl")
    rels = sorted(dataset.digests)
    inputs.urls.write_text("".join(f"{base}/{rel}\n" for rel in rels))
    inputs.aria2.write_text("".join(f"{base}/{rel}\n  out={rel}\n" for rel in rels))
    inputs.curl.write_text("".join(f'url = "{base}/{rel}"\noutput = "{rel}"\n' for rel in rels))
    return inputs


# --------------------------------------------------------------------------- tools


@dataclass(frozen=True)
class Ctx:
    base: str
    jobs: int
    inputs: Inputs
    template: str
    python: str
    segments: int = 0  # parallel ranges per file for the tools that can (0: each tool's default)


@dataclass(frozen=True)
class Tool:
    name: str
    kind: str  # "cold": mirror into a fresh dir; "noop": re-run over a complete copy; "startup"
    mode: str  # how it finds the files, for the table
    binary: str  # executable that must exist
    argv: Callable[[Ctx, Path], list[str]]
    cwd: Path | None = None
    peer: bool = True  # False for xkcdcrawl itself


def wget_argv(ctx: Ctx, out: Path, *extra: str) -> list[str]:
    return ["wget", "-r", "-np", "-nH", "-l", "inf", "-e", "robots=off", "-q", *extra, "-P", str(out), ctx.base + "/"]


def aria2_argv(ctx: Ctx, out: Path) -> list[str]:
    split = str(ctx.segments or 1)
    return [
        "aria2c", "-j", str(ctx.jobs), "-x", split, "-s", split, "-i", str(ctx.inputs.aria2), "-d", str(out),
        "--file-allocation=none", "--auto-file-renaming=false", "--allow-overwrite=true",
        "--summary-interval=0", "--console-log-level=warn", "--quiet=true",
    ]  # fmt: skip


def curl_argv(ctx: Ctx, out: Path) -> list[str]:
    return [
        "curl", "--parallel", "--parallel-max", str(ctx.jobs), *CURL_QUIET,
        "--create-dirs", "--output-dir", str(out), "-K", str(ctx.inputs.curl),
    ]  # fmt: skip


def lftp_argv(ctx: Ctx, out: Path) -> list[str]:
    script = (
        "set cmd:fail-exit yes; set net:max-retries 2; set net:timeout 30; set xfer:clobber on; "
        f"open {ctx.base}/; mirror --parallel={ctx.jobs} --no-perms --ignore-time"
        f"{f' --use-pget-n={ctx.segments}' if ctx.segments else ''} . {shlex.quote(str(out))}"
    )
    return ["lftp", "-c", script]


def rclone_argv(ctx: Ctx, out: Path) -> list[str]:
    return [
        "rclone", "copy", "--http-url", ctx.base + "/", ":http:", str(out), "--http-no-head",
        "--transfers", str(ctx.jobs), "--checkers", str(ctx.jobs), "--config", "", "-q",
        *(["--multi-thread-streams", str(ctx.segments), "--multi-thread-cutoff", "64Mi"] if ctx.segments else []),
    ]  # fmt: skip


def threadpool_argv(ctx: Ctx, out: Path) -> list[str]:
    return [ctx.python, str(HERE / "threadpool_peer.py"), "--jobs", str(ctx.jobs), "--out", str(out), ctx.base + "/"]


def xkcdcrawl_argv(ctx: Ctx, out: Path) -> list[str]:
    scrapy = REPO / ".venv" / "bin" / "scrapy"
    fields = {"scrapy": str(scrapy), "base": ctx.base, "out": str(out), "jobs": str(ctx.jobs)}
    argv = shlex.split(ctx.template.format(**{k: shlex.quote(v) for k, v in fields.items()}))
    return [*argv, "-s", f"XKCDCRAWL_SPLIT_PARTS={ctx.segments}"] if ctx.segments else argv


def scrapy_version_argv(ctx: Ctx, out: Path) -> list[str]:
    return [str(REPO / ".venv" / "bin" / "scrapy"), "version"]


def all_tools() -> list[Tool]:
    scrapy = str(REPO / ".venv" / "bin" / "scrapy")
    return [
        Tool("wget", "cold", "crawl, sequential (ignores --jobs)", "wget", wget_argv),
        Tool("aria2c", "cold", "URL list", "aria2c", aria2_argv),
        Tool("curl", "cold", "URL list", "curl", curl_argv),
        Tool("lftp", "cold", "crawl", "lftp", lftp_argv),
        Tool("rclone", "cold", "crawl", "rclone", rclone_argv),
        Tool("threadpool", "cold", "crawl", sys.executable, threadpool_argv),
        Tool("xkcdcrawl", "cold", "crawl", scrapy, xkcdcrawl_argv, cwd=REPO, peer=False),
        Tool("wget-noop", "noop", "re-run -N, sequential", "wget", lambda c, o: wget_argv(c, o, "-N")),
        Tool("xkcdcrawl-noop", "noop", "re-run, same store", scrapy, xkcdcrawl_argv, cwd=REPO, peer=False),
        Tool("scrapy-version", "startup", "start-up only", scrapy, scrapy_version_argv, cwd=REPO, peer=False),
    ]


def missing_reason(tool: Tool, ctx: Ctx) -> str | None:
    """Why ``tool`` cannot run here, or None."""
    if not (shutil.which(tool.binary) or os.access(tool.binary, os.X_OK)):
        return f"{tool.binary} not installed ({INSTALL_HINT})"
    argv = tool.argv(ctx, Path("/nonexistent"))
    if "crawl" in argv and argv.index("crawl") + 1 < len(argv):
        spider = argv[argv.index("crawl") + 1]
        listed = scrapy_spiders(argv[0], tool.cwd)
        if spider not in listed:
            return f"spider {spider!r} not found by `scrapy list` (has: {', '.join(listed) or 'none'})"
    return None


@functools.cache
def scrapy_spiders(scrapy: str, cwd: Path | None) -> list[str]:
    proc = subprocess.run([scrapy, "list"], cwd=cwd, capture_output=True, text=True, timeout=300, check=False)
    return proc.stdout.split()


def tool_version(binary: str) -> str:
    flag = {"rclone": ["version"], "scrapy": ["version"], "nginx": ["-v"]}.get(Path(binary).name, ["--version"])
    try:
        proc = subprocess.run([binary, *flag], capture_output=True, text=True, timeout=60, check=False)
    except OSError as exc:
        return f"unavailable ({exc})"
    lines = [line.strip() for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    return lines[0] if lines else "?"


# --------------------------------------------------------------------------- measuring


@dataclass
class Run:
    wall_s: float
    cpu_s: float
    peak_rss_mib: float
    rc: int
    verified: int
    requests: int
    files_on_disk: int
    log: str


def timed(argv: list[str], cwd: Path | None, log: Path, timeout: float) -> tuple[float, float, float, int]:
    """Run ``argv``; returns (wall seconds, CPU seconds, peak RSS MiB, exit code).

    CPU is user + system time of the process and the descendants it waited for.

    Peak RSS comes from ``/usr/bin/time -f %M``: the largest resident set of the
    tool's process or of a descendant it waited for (not the sum of a process
    tree). Without GNU time it falls back to os.wait4's rusage, which also counts
    the RSS of the harness's forked child before exec (a ~25 MiB floor).
    """
    rss_file = log.with_suffix(".rss")
    wrapped = [str(GNU_TIME), "-f", "%M", "-o", str(rss_file), *argv] if GNU_TIME.exists() else argv
    with log.open("wb") as fh:
        start = time.perf_counter()
        proc = subprocess.Popen(
            wrapped, cwd=cwd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
        timer = threading.Timer(timeout, kill_group, (proc.pid,))
        timer.daemon = True
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:  # Ctrl-C: take the tool down with the harness
            kill_group(proc.pid)
            raise
        wall = time.perf_counter() - start
        timer.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)
    kill_group(proc.pid)  # leftovers a tool forked and did not reap
    cpu = usage.ru_utime + usage.ru_stime
    return wall, cpu, peak_rss_kib(rss_file, usage.ru_maxrss) / 1024.0, proc.returncode


def peak_rss_kib(rss_file: Path, fallback: int) -> int:
    """The last number GNU time wrote (it adds a line when the command was killed)."""
    with contextlib.suppress(OSError):
        numbers = [line for line in rss_file.read_text().split() if line.isdigit()]
        if numbers:
            return int(numbers[-1])
    return fallback


def kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(MIB), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify(out: Path, dataset: Dataset) -> tuple[int, int]:
    """(files whose sha256 matches under the expected relative path, regular files on disk).

    Tools lay files out differently (OUT/<path>, OUT/<host>/<path>, ...): a file
    counts when its path inside ``out`` ends with the expected relative path.
    """
    by_name: dict[str, list[Path]] = {}
    on_disk = 0
    for path in out.rglob("*"):
        if path.is_file():
            on_disk += 1
            by_name.setdefault(path.name, []).append(path)
    ok = 0
    for rel, digest in dataset.digests.items():
        for cand in by_name.get(Path(rel).name, []):
            inner = cand.relative_to(out).as_posix()
            if (inner == rel or inner.endswith("/" + rel)) and sha256_file(cand) == digest:
                ok += 1
                break
    return ok, on_disk


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
    os.sync()  # flush the deleted run's writeback now, not during the next timed run


def run_tool(tool: Tool, ctx: Ctx, out: Path, logs: Path, tag: str, env: Env) -> Run:
    before = count_lines(env.endpoints.access_log)
    log = logs / f"{tool.name}-{tag}.log"
    wall, cpu, rss, rc = timed(tool.argv(ctx, out), tool.cwd, log, env.timeout)
    time.sleep(0.05)  # let nginx finish logging the last requests
    requests = count_lines(env.endpoints.access_log) - before
    verified, on_disk = verify(out, env.dataset) if tool.kind != "startup" else (0, 0)
    return Run(round(wall, 4), round(cpu, 3), round(rss, 1), rc, verified, requests, on_disk, str(log))


# --------------------------------------------------------------------------- calibration


def curl_config(path: Path, urls: Iterable[str], outputs: Iterable[str]) -> Path:
    path.write_text("".join(f'url = "{u}"\noutput = "{o}"\n' for u, o in zip(urls, outputs, strict=True)))
    return path


def curl_parallel_all(cfg: Path, jobs: int) -> float:
    argv = ["curl", "--parallel", "--parallel-max", str(jobs), *CURL_QUIET, "-K", str(cfg)]
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def curl_bandwidth(cfg: Path) -> float:
    """Bytes/s of one sequential curl over the files in ``cfg`` (time to first byte excluded)."""
    argv = ["curl", *CURL_QUIET, "--create-dirs", "-w", "%{size_download} %{time_starttransfer} %{time_total}\\n"]
    out = subprocess.run([*argv, "-K", str(cfg)], check=True, capture_output=True, text=True).stdout
    nbytes = seconds = 0.0
    for line in out.splitlines():
        size, ttfb, total = (float(x) for x in line.split())
        nbytes, seconds = nbytes + size, seconds + max(total - ttfb, 1e-6)
    return nbytes / seconds


def bandwidth_files(dataset: Dataset) -> list[str]:
    """The big files, or (with --big 0) the largest files up to 64 MiB."""
    if dataset.big:
        return dataset.big
    chosen: list[str] = []
    for rel in sorted(dataset.sizes, key=lambda r: -dataset.sizes[r]):
        if sum(dataset.sizes[r] for r in chosen) >= 64 * MIB:
            break
        chosen.append(rel)
    return chosen


def calibrate(env: Env, work: Path, jobs: int, rounds: int, out_root: Path) -> dict[str, float]:
    """Loopback bandwidth for the lower bound, and what the delay mechanism itself costs.

    Mechanism cost: every file fetched by ``curl --parallel`` from plain nginx and
    through the delay mechanism set to 0 ms, interleaved, ``rounds`` times each.
    """
    rels = sorted(env.dataset.digests)
    big = bandwidth_files(env.dataset)
    ep = env.endpoints
    nulls = ["/dev/null"] * len(big)
    bw_bench = curl_config(work / "bw-bench.curl", (f"{ep.bench}/{r}" for r in big), nulls)
    bw_direct = curl_config(work / "bw-direct.curl", (f"{ep.direct}/{r}" for r in big), nulls)
    disk_dir = out_root / "bw-disk"
    bw_disk = curl_config(work / "bw-disk.curl", (f"{ep.bench}/{r}" for r in big), (str(disk_dir / r) for r in big))
    all_direct = curl_config(work / "all-direct.curl", (f"{ep.direct}/{r}" for r in rels), ["/dev/null"] * len(rels))
    all_zero = curl_config(work / "all-zero.curl", (f"{ep.zero}/{r}" for r in rels), ["/dev/null"] * len(rels))
    curl_parallel_all(all_direct, jobs)  # warm the page cache and nginx before measuring
    curl_parallel_all(all_zero, jobs)
    samples: dict[str, list[float]] = {"bench": [], "direct": [], "disk": [], "all_direct": [], "all_zero": []}
    for _ in range(rounds):
        samples["bench"].append(curl_bandwidth(bw_bench))
        samples["direct"].append(curl_bandwidth(bw_direct))
        samples["disk"].append(curl_bandwidth(bw_disk))
        remove_tree(disk_dir)
        samples["all_direct"].append(curl_parallel_all(all_direct, jobs))
        samples["all_zero"].append(curl_parallel_all(all_zero, jobs))
    t_direct, t_zero = statistics.median(samples["all_direct"]), statistics.median(samples["all_zero"])
    delay_budget = len(rels) * env.delay_ms / 1000.0 / jobs
    return {
        "loopback_MiB_s": max(samples["bench"]) / MIB,  # the tools' path; best run: a lower bound must stay low
        "loopback_direct_nginx_MiB_s": max(samples["direct"]) / MIB,
        "single_curl_to_out_dir_MiB_s": statistics.median(samples["disk"]) / MIB,
        "all_files_direct_nginx_s": t_direct,
        "all_files_direct_nginx_min_s": min(samples["all_direct"]),
        "all_files_direct_nginx_max_s": max(samples["all_direct"]),
        "all_files_zero_delay_s": t_zero,
        "all_files_zero_delay_min_s": min(samples["all_zero"]),
        "all_files_zero_delay_max_s": max(samples["all_zero"]),
        "delay_mechanism_overhead_s": t_zero - t_direct,
        "delay_budget_s": delay_budget,
    }


def mechanism_warnings(cal: dict[str, float]) -> list[str]:
    warnings = []
    extra = cal["delay_mechanism_overhead_s"]
    apart = cal["all_files_zero_delay_min_s"] > cal["all_files_direct_nginx_max_s"]  # beyond the noise
    if apart and extra > max(0.1 * cal["delay_budget_s"], 0.05):
        warnings.append(
            f"the delay mechanism at 0 ms adds {extra:.2f} s over plain nginx, more than 10% of the "
            f"{cal['delay_budget_s']:.2f} s the injected delay accounts for: it may be a bottleneck"
        )
    if cal["loopback_MiB_s"] < 0.8 * cal["loopback_direct_nginx_MiB_s"]:
        warnings.append("bandwidth through the delay mechanism is under 80% of plain nginx's")
    return warnings


def lower_bound(kind: str, env: Env, loopback_bps: float, jobs: int) -> float | None:
    """max(bytes / loopback bandwidth, requests x delay / jobs); None for start-up rows."""
    delay = env.delay_ms / 1000.0
    if kind == "cold":
        return max(env.dataset.total_bytes / loopback_bps, len(env.dataset.digests) * delay / jobs)
    if kind == "noop":  # a no-op re-run must still read every listing page (root + each folder)
        return (1 + len(env.dataset.dirs)) * delay / jobs
    return None


# --------------------------------------------------------------------------- the benchmark


@dataclass
class Env:
    dataset: Dataset
    endpoints: Endpoints
    delay_ms: float
    timeout: float


@dataclass
class Result:
    name: str
    kind: str
    mode: str
    command: str
    version: str
    runs: list[Run] = field(default_factory=list)
    wall_s: float = 0.0
    wall_min_s: float = 0.0
    wall_max_s: float = 0.0
    cpu_s: float = 0.0
    peak_rss_mib: float = 0.0
    requests: int = 0
    verified: int = 0
    expected: int = 0
    ratio_best_peer: float | None = None
    ratio_lower_bound: float | None = None
    note: str = ""


def rotated(items: list[Tool], k: int) -> list[Tool]:
    k %= max(len(items), 1)
    return items[k:] + items[:k]


def prime_noop(tool: Tool, ctx: Ctx, out: Path, logs: Path, env: Env, result: Result) -> None:
    """Make the complete copy a no-op re-run starts from (untimed)."""
    first = run_tool(tool, ctx, out, logs, "prime", env)
    if first.rc or first.verified != len(env.dataset.digests):
        result.note = f"priming run incomplete (rc={first.rc}, {first.verified} verified); "


def benchmark(tools: list[Tool], ctx: Ctx, env: Env, out_root: Path, logs: Path, repeat: int) -> list[Result]:
    results = {
        t.name: Result(t.name, t.kind, t.mode, shlex.join(t.argv(ctx, out_root / f"{t.name}-N")), "") for t in tools
    }
    noop_dirs = {t.name: out_root / f"{t.name}-store" for t in tools if t.kind == "noop"}
    for tool in tools:
        if tool.kind == "noop":
            prime_noop(tool, ctx, noop_dirs[tool.name], logs, env, results[tool.name])
    for rep in range(repeat):
        for tool in rotated(tools, rep):
            out = noop_dirs.get(tool.name, out_root / f"{tool.name}-{rep}")
            run = run_tool(tool, ctx, out, logs, str(rep), env)
            results[tool.name].runs.append(run)
            done = "-" if tool.kind == "startup" else f"{run.verified}/{len(env.dataset.digests)}"
            print(f"  [{rep + 1}/{repeat}] {tool.name:15s} {run.wall_s:8.2f} s  rc={run.rc}  {done} verified  "
                  f"cpu {run.cpu_s:.2f} s  {run.peak_rss_mib:.1f} MiB  {run.requests} requests", flush=True)  # fmt: skip
            if tool.kind == "cold":
                remove_tree(out)
    for path in noop_dirs.values():
        remove_tree(path)
    return list(results.values())


def summarize(results: list[Result], env: Env, calibration: dict[str, float], jobs: int) -> None:
    expected = len(env.dataset.digests)
    for res in results:
        walls = [r.wall_s for r in res.runs]
        res.wall_s, res.wall_min_s, res.wall_max_s = statistics.median(walls), min(walls), max(walls)
        res.cpu_s = statistics.median(r.cpu_s for r in res.runs)
        res.peak_rss_mib = statistics.median(r.peak_rss_mib for r in res.runs)
        res.requests = int(statistics.median(r.requests for r in res.runs))
        res.verified = min(r.verified for r in res.runs)
        res.expected = 0 if res.kind == "startup" else expected
        failed = [r.rc for r in res.runs if r.rc]
        if failed:
            res.note += f"exit codes {sorted(set(failed))} in {len(failed)}/{len(res.runs)} runs; "
        bound = lower_bound(res.kind, env, calibration["loopback_MiB_s"] * MIB, jobs)
        res.ratio_lower_bound = res.wall_s / bound if bound else None
    best = best_peer(results)
    for res in results:
        if best and res.kind == "cold":
            res.ratio_best_peer = res.wall_s / best.wall_s


def best_peer(results: list[Result]) -> Result | None:
    """Fastest cold peer that delivered every file in every run (any cold peer if none did)."""
    peers = [r for r in results if r.kind == "cold" and r.name != "xkcdcrawl"]
    complete = [r for r in peers if r.verified == r.expected and not any(x.rc for x in r.runs)]
    pool = complete or peers
    return min(pool, key=lambda r: r.wall_s) if pool else None


def fmt_ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def print_table(results: list[Result]) -> None:
    head = (
        "tool",
        "mode",
        "wall s",
        "min-max s",
        "CPU s",
        "RSS MiB",
        "requests",
        "verified",
        "x best peer",
        "x lower bnd",
    )
    rows = [head]
    for r in results:
        rows.append((
            r.name, r.mode, f"{r.wall_s:.2f}", f"{r.wall_min_s:.2f}-{r.wall_max_s:.2f}", f"{r.cpu_s:.2f}",
            f"{r.peak_rss_mib:.1f}",
            str(r.requests), f"{r.verified}/{r.expected}" if r.expected else "-",
            fmt_ratio(r.ratio_best_peer), fmt_ratio(r.ratio_lower_bound),
        ))  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    for n, row in enumerate(rows):
        print(
            "  ".join(
                cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if n == 0:
            print("  ".join("-" * w for w in widths))
    for r in results:
        if r.note:
            print(f"note: {r.name}: {r.note.rstrip('; ')}")


# --------------------------------------------------------------------------- command line


TOOL_NAMES = [t.name for t in all_tools()]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--files", type=int, default=1000, help="small files (default 1000)")
    p.add_argument("--size", type=int, default=16 * 1024, help="bytes per small file (default 16 KiB)")
    p.add_argument("--dirs", type=int, default=10, help="subfolders the small files are spread over (default 10)")
    p.add_argument("--big", type=int, default=5, help="big files at the top level (default 5)")
    p.add_argument("--big-size", type=int, default=20 * MIB, help="bytes per big file (default 20 MiB)")
    p.add_argument("--seed", type=int, default=1, help="random seed of the data set")
    p.add_argument("--delay-ms", type=float, default=20.0, help="delay added to every request (default 20)")
    p.add_argument("--delay-mode", choices=("auto", "lua", "proxy"), default="auto",
                   help="lua: nginx access_by_lua ngx.sleep (needs libnginx-mod-http-lua); proxy: delay_proxy.py "
                        "in front of nginx; auto: lua when installed (default)")  # fmt: skip
    p.add_argument("--jobs", type=int, default=8, help="parallel transfers for every tool (default 8)")
    p.add_argument("--limit-rate", help="nginx limit_rate per connection, e.g. 32m (default: none)")
    p.add_argument("--calibration-rounds", type=int, default=0,
                   help="rounds of the curl calibration (default: max(--repeat, 5)); 1 for slow rate-limited runs")  # fmt: skip
    p.add_argument("--segments", type=int, default=0,
                   help="parallel ranges per file: aria2c -x/-s, lftp --use-pget-n, rclone --multi-thread-streams, "
                        "xkcdcrawl XKCDCRAWL_SPLIT_PARTS (default: each tool's own)")  # fmt: skip
    p.add_argument("--repeat", type=int, default=3, help="runs per tool; the median is reported (default 3)")
    p.add_argument(
        "--only", action="append", default=[], help=f"run only these (comma list of {', '.join(TOOL_NAMES)})"
    )
    p.add_argument("--skip", action="append", default=[], help="skip these (comma list)")
    p.add_argument("--xkcdcrawl-cmd", default=XKCDCRAWL_TEMPLATE, help="command template for xkcdcrawl")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds before a run is killed (default 900)")
    p.add_argument("--workdir", type=Path, help="parent of the temporary work dir (default: $TMPDIR)")
    p.add_argument("--out-root", type=Path, help="where tools write their copies (default: inside the work dir)")
    p.add_argument("--json", type=Path, help="also write the results as JSON here")
    p.add_argument("--keep", action="store_true", help="keep the work dir (data set, logs, nginx.conf)")
    args = p.parse_args(argv)
    for name in split_names(args.only + args.skip):
        if name not in TOOL_NAMES:
            p.error(f"unknown tool {name!r}; known: {', '.join(TOOL_NAMES)}")
    return args


def split_names(values: list[str]) -> list[str]:
    return [name.strip() for value in values for name in value.split(",") if name.strip()]


def delay_mode(requested: str) -> str | None:
    have_lua = all(m.exists() for m in LUA_MODULES)
    if requested == "auto":
        return "lua" if have_lua else "proxy"
    if requested == "lua" and not have_lua:
        return None
    return requested


def select_tools(args: argparse.Namespace, ctx: Ctx) -> tuple[list[Tool], dict[str, str]]:
    only, skip = set(split_names(args.only)), set(split_names(args.skip))
    chosen = [t for t in all_tools() if (not only or t.name in only) and t.name not in skip]
    skipped: dict[str, str] = {}
    available: list[Tool] = []
    for tool in chosen:
        reason = missing_reason(tool, ctx)
        if reason:
            skipped[tool.name] = reason
            print(f"skip {tool.name}: {reason}")
        else:
            available.append(tool)
    return available, skipped


@contextlib.contextmanager
def work_dir(args: argparse.Namespace) -> Iterator[Path]:
    work = Path(tempfile.mkdtemp(prefix="xkcdcrawl-bench-", dir=args.workdir))
    try:
        yield work
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def environment(tools: list[Tool], endpoints: Endpoints) -> dict[str, object]:
    return {
        "kernel": platform.release(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "delay_mechanism": endpoints.mechanism,
        "versions": {t.name: tool_version(t.binary) for t in tools} | {"nginx": tool_version(find_nginx() or "nginx")},
    }


def print_header(args: argparse.Namespace, dataset: Dataset, endpoints: Endpoints, env_info: dict[str, object]) -> None:
    print(f"data set: {len(dataset.digests)} files, {dataset.total_bytes / MIB:.1f} MiB "
          f"({args.files} x {args.size} B in {args.dirs} folders + {args.big} x {args.big_size} B)")  # fmt: skip
    print(f"server:   {endpoints.bench}/ (nginx + {endpoints.mechanism}, {args.delay_ms:g} ms per request), "
          f"direct {endpoints.direct}/, zero-delay {endpoints.zero}/")  # fmt: skip
    print(f"jobs={args.jobs} repeat={args.repeat}")
    versions = env_info["versions"]
    assert isinstance(versions, dict)
    for name, version in versions.items():
        print(f"  {name:15s} {version}")


def print_calibration(cal: dict[str, float]) -> None:
    print(
        f"loopback bandwidth, one curl of the big files to /dev/null (best run): {cal['loopback_MiB_s']:.0f} MiB/s "
        f"(plain nginx {cal['loopback_direct_nginx_MiB_s']:.0f}); into the output dir: "
        f"{cal['single_curl_to_out_dir_MiB_s']:.0f} MiB/s"
    )
    print(
        f"every file via curl --parallel (median, min-max): plain nginx {cal['all_files_direct_nginx_s']:.2f} s "
        f"({cal['all_files_direct_nginx_min_s']:.2f}-{cal['all_files_direct_nginx_max_s']:.2f}), "
        f"delay mechanism at 0 ms {cal['all_files_zero_delay_s']:.2f} s "
        f"({cal['all_files_zero_delay_min_s']:.2f}-{cal['all_files_zero_delay_max_s']:.2f}); "
        f"mechanism cost {cal['delay_mechanism_overhead_s']:+.2f} s vs {cal['delay_budget_s']:.2f} s of injected delay"
    )
    for warning in mechanism_warnings(cal):
        print(f"WARNING: {warning}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if find_nginx() is None:
        print(f"nginx is not installed: {INSTALL_HINT}", file=sys.stderr)
        return 2
    mode = delay_mode(args.delay_mode)
    if mode is None:
        print("--delay-mode lua needs the nginx Lua module: apt-get install -y libnginx-mod-http-lua", file=sys.stderr)
        return 2
    with work_dir(args) as work, contextlib.ExitStack() as stack:
        dataset = generate_dataset(work / "data", args)
        endpoints = start_server(stack, work, dataset.root, args.delay_ms, mode, args.limit_rate)
        inputs = write_inputs(work, endpoints.bench, dataset)
        ctx = Ctx(endpoints.bench, args.jobs, inputs, args.xkcdcrawl_cmd, sys.executable, args.segments)
        tools, skipped = select_tools(args, ctx)
        env = Env(dataset, endpoints, args.delay_ms, args.timeout)
        env_info = environment(tools, endpoints)
        print_header(args, dataset, endpoints, env_info)
        out_root = Path(tempfile.mkdtemp(prefix="out-", dir=args.out_root or work))
        stack.callback(shutil.rmtree, out_root, True)
        logs = work / "logs"
        logs.mkdir()
        cal = calibrate(env, work, args.jobs, args.calibration_rounds or max(args.repeat, 5), out_root)
        print_calibration(cal)
        print("commands:")
        for tool in tools:
            print(f"  {tool.name:15s} {shlex.join(tool.argv(ctx, out_root / (tool.name + '-N')))}")
        results = benchmark(tools, ctx, env, out_root, logs, args.repeat)
        if not results:
            print("no tool to run")
            return 1
        summarize(results, env, cal, args.jobs)
        versions = env_info["versions"]
        assert isinstance(versions, dict)
        for res in results:
            res.version = versions.get(res.name, "?")
        print()
        print_table(results)
        bound = lower_bound("cold", env, cal["loopback_MiB_s"] * MIB, args.jobs)
        print(f"lower bound (cold): {bound:.2f} s = max({dataset.total_bytes / MIB:.1f} MiB / "
              f"{cal['loopback_MiB_s']:.0f} MiB/s, {len(dataset.digests)} x {args.delay_ms:g} ms / {args.jobs})")  # fmt: skip
        if args.json:
            write_json(args, env_info, cal, results, skipped)
    return 0 if all(r.verified == r.expected and not any(x.rc for x in r.runs) for r in results) else 1


def write_json(
    args: argparse.Namespace, env_info: dict[str, object], cal: dict[str, float], results: list[Result],
    skipped: dict[str, str],
) -> None:  # fmt: skip
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    doc = {"config": config, "environment": env_info, "calibration": cal,
           "results": [asdict(r) for r in results], "skipped": skipped}  # fmt: skip
    args.json.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    sys.exit(main())
