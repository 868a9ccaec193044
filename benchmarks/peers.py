"""The peers: each downloader's command line for the same tree, the URL lists some of them read,
and whether a tool can run here."""

from __future__ import annotations

import functools
import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

    from dataset import Dataset

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
# The project's venv: xkcdcrawl, and the stock-Scrapy peer, run from it.
VENV_SCRAPY = REPO / ".venv" / "bin" / "scrapy"
VENV_PYTHON = REPO / ".venv" / "bin" / "python"
INSTALL_HINT = "apt-get install -y nginx libnginx-mod-http-lua wget curl aria2 lftp rclone"
# --silent --show-error still draws the --parallel progress meter in curl 7.88; this does not
CURL_QUIET = ("--fail", "--no-progress-meter")

# The one place that says how xkcdcrawl is run. {scrapy} is the project's venv scrapy,
# {base} the server URL without its trailing slash, {out} a fresh store, {jobs} --jobs.
XKCDCRAWL_TEMPLATE = (
    "{scrapy} crawl listing -a url={base}/ -s FILES_STORE={out}"
    " -s CONCURRENT_REQUESTS_PER_DOMAIN={jobs} -s CONCURRENT_REQUESTS={jobs} -s LOG_LEVEL=WARNING"
)


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


def scrapy_files_argv(ctx: Ctx, out: Path) -> list[str]:
    return [
        str(VENV_PYTHON),
        str(HERE / "scrapy_peer.py"),
        "--jobs",
        str(ctx.jobs),
        "--out",
        str(out),
        str(ctx.inputs.urls),
    ]


def xkcdcrawl_argv(ctx: Ctx, out: Path) -> list[str]:
    fields = {"scrapy": str(VENV_SCRAPY), "base": ctx.base, "out": str(out), "jobs": str(ctx.jobs)}
    argv = shlex.split(ctx.template.format(**{k: shlex.quote(v) for k, v in fields.items()}))
    return [*argv, "-s", f"XKCDCRAWL_SPLIT_PARTS={ctx.segments}"] if ctx.segments else argv


def scrapy_version_argv(ctx: Ctx, out: Path) -> list[str]:
    return [str(VENV_SCRAPY), "version"]


def all_tools() -> list[Tool]:
    scrapy = str(VENV_SCRAPY)
    return [
        Tool("wget", "cold", "crawl, sequential (ignores --jobs)", "wget", wget_argv),
        Tool("aria2c", "cold", "URL list", "aria2c", aria2_argv),
        Tool("curl", "cold", "URL list", "curl", curl_argv),
        Tool("lftp", "cold", "crawl", "lftp", lftp_argv),
        Tool("rclone", "cold", "crawl", "rclone", rclone_argv),
        Tool("threadpool", "cold", "crawl", sys.executable, threadpool_argv),
        # Scrapy itself, what xkcdcrawl costs on top of it: run outside the project (no xkcdcrawl settings).
        Tool(
            "scrapy-files",
            "cold",
            "URL list, stock FilesPipeline",
            str(VENV_PYTHON),
            scrapy_files_argv,
        ),
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
