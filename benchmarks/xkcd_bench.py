"""Benchmark the xkcd spider against the tutorial's 14-thread script on a delayed local mirror.

Starts benchmarks/xkcd_mirror.py (pages and JSON API on one port, images on another, every
response delayed), then alternates runs of `scrapy crawl xkcd -a start=1 -a end=1400` at 14
requests per host and of the tutorial's script (benchmarks/tutorial_xkcd.py: 14 threads,
comics 0..1399, one page and one image request each), each into a fresh folder. Reports
medians of wall time, CPU and peak RSS, requests by kind, the ratio xkcdcrawl / tutorial,
and checks every image byte for byte. A last xkcdcrawl run over a complete store checks
that a re-run makes no request. See benchmarks/README.md.

    python3 benchmarks/xkcd_bench.py                 # 3 rounds, 50 ms, 1..1400, 14 per host
    python3 benchmarks/xkcd_bench.py --rounds 5 --json /tmp/xkcd-bench.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO / "tests"))

from measure import remove_tree, timed
from servers.xkcdsite import Site, image_bytes

TUTORIAL = HERE / "tutorial_xkcd.py"
TUTORIAL_RANGE = range(1400)  # range(0, 1400, 100) threads of i..i+99: fixed in the script


@dataclass
class Run:
    tool: str
    wall_s: float
    cpu_s: float
    peak_rss_mib: float
    rc: int
    requests: dict[str, int]
    verified: int
    expected: int
    corrupt: list[str]
    log: str


@dataclass
class Tool:
    name: str
    argv: Callable[[Path], list[str]]
    cwd: Callable[[Path], Path]
    images: Callable[[Path], Path]  # where the tool puts the images, given its output folder
    expected: dict[str, bytes] = field(default_factory=dict)  # file name -> bytes


@contextlib.contextmanager
def mirror(last: int, delay_ms: float, log: Path) -> Iterator[tuple[str, str]]:
    """The mirror in its own process: (site origin, image origin)."""
    cmd = [
        sys.executable,
        str(HERE / "xkcd_mirror.py"),
        "--first",
        "0",
        "--last",
        str(last),
        "--delay-ms",
        str(delay_ms),
    ]
    with log.open("wb") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("site="):
            sys.exit(f"the mirror did not start: {log.read_text()}")
        site, images = (part.split("=", 1)[1] for part in line.split())
        yield site, images
    finally:
        proc.terminate()
        proc.wait(10)


def control(site: str, what: str) -> dict[str, int]:
    with urllib.request.urlopen(f"{site}/__{what}__", timeout=10) as answer:
        counts: dict[str, int] = json.load(answer)
        return counts


def expected_images(nums: range, page_image: Callable[[int], str | None]) -> dict[str, bytes]:
    """File name -> the bytes the image host serves, for the image each comic names."""
    wanted = {}
    for num in nums:
        url = page_image(num)
        if url:
            path = "/comics/" + url.split("/comics/", 1)[1]
            wanted[path.rsplit("/", 1)[-1]] = image_bytes(path)
    return wanted


def verify(folder: Path, expected: dict[str, bytes]) -> tuple[int, list[str]]:
    """(images present and byte-exact, names present with other bytes or not expected)."""
    ok, bad = 0, []
    on_disk = {p.name: p for p in folder.iterdir() if p.is_file()} if folder.is_dir() else {}
    for name, body in expected.items():
        if name in on_disk and on_disk[name].read_bytes() == body:
            ok += 1
        elif name in on_disk:
            bad.append(name)
    bad += sorted(set(on_disk) - set(expected))
    return ok, bad


def tools(args: argparse.Namespace, site: str, origin: Site) -> list[Tool]:
    xkcdcrawl_cmd = [
        args.python, "-m", "scrapy", "crawl", "xkcd", "-a", "start=1", "-a", f"end={args.last}",
        "-a", f"base_url={site}", "-s", f"CONCURRENT_REQUESTS_PER_DOMAIN={args.per_host}",
        "-s", "LOG_LEVEL=WARNING",
    ]  # fmt: skip

    def stored_by_spider(num: int) -> str | None:
        # 1608/1663 name a folder: the spider stores nothing for them (image_or_none() in the spider).
        img = str((origin.api.get(num) or {}).get("img") or "")
        return img if img and not img.endswith("/") else None

    return [
        Tool(
            "xkcdcrawl",
            lambda out: [*xkcdcrawl_cmd, "-s", f"FILES_STORE={out}"],
            lambda out: args.repo,
            lambda out: out / "xkcd",
            expected_images(range(1, args.last + 1), stored_by_spider),
        ),
        Tool(
            "tutorial",
            lambda out: [args.tutorial_python, str(TUTORIAL)],
            lambda out: out,
            lambda out: out / "xkcd",
            expected_images(TUTORIAL_RANGE, lambda num: args.page_images.get(num)),
        ),
    ]


def run_once(tool: Tool, out: Path, logs: Path, tag: str, site: str, timeout: float) -> Run:
    out.mkdir(parents=True, exist_ok=True)
    control(site, "reset")
    env_before = os.environ.get("XKCD_MIRROR")
    os.environ["XKCD_MIRROR"] = site
    try:
        log = logs / f"{tool.name}-{tag}.log"
        wall, cpu, rss, rc = timed(tool.argv(out), tool.cwd(out), log, timeout)
    finally:
        if env_before is None:
            os.environ.pop("XKCD_MIRROR", None)
        else:
            os.environ["XKCD_MIRROR"] = env_before
    requests = control(site, "stats")
    ok, bad = verify(tool.images(out), tool.expected)
    return Run(
        tool.name, round(wall, 3), round(cpu, 3), round(rss, 1), rc, requests, ok, len(tool.expected), bad, str(log)
    )


def median(runs: list[Run], key: Callable[[Run], float]) -> float:
    return statistics.median(key(r) for r in runs)


def print_table(runs: list[Run], rerun: Run | None) -> None:
    kinds = ("site:page", "site:api", "images:image")
    print(
        f"{'tool':<16} {'wall s':>7} {'min-max s':>11} {'CPU s':>6} {'RSS MiB':>8} {'pages':>6} {'api':>5} {'images':>6} {'verified':>10}"
    )
    rows = {name: [r for r in runs if r.tool == name] for name in dict.fromkeys(r.tool for r in runs)}
    if rerun:
        rows["xkcdcrawl re-run"] = [rerun]
    for name, group in rows.items():
        walls = [r.wall_s for r in group]
        req = [int(median(group, lambda r, k=k: r.requests.get(k, 0))) for k in kinds]
        worst = min(group, key=lambda r: r.verified)
        verified = f"{worst.verified}/{worst.expected}" if name != "xkcdcrawl re-run" else "-"
        print(
            f"{name:<16} {statistics.median(walls):>7.2f} {min(walls):>5.2f}-{max(walls):<5.2f} "
            f"{median(group, lambda r: r.cpu_s):>6.2f} {median(group, lambda r: r.peak_rss_mib):>8.1f} "
            f"{req[0]:>6} {req[1]:>5} {req[2]:>6} {verified:>10}"
        )
    ours, theirs = rows.get("xkcdcrawl"), rows.get("tutorial")
    if ours and theirs:
        ratio = median(ours, lambda r: r.wall_s) / median(theirs, lambda r: r.wall_s)
        cpu = median(ours, lambda r: r.cpu_s) / median(theirs, lambda r: r.cpu_s)
        print(f"xkcdcrawl / tutorial: wall {ratio:.2f}x, CPU {cpu:.2f}x (target: wall <= 0.50x)")


def failures(runs: list[Run], rerun: Run | None) -> list[str]:
    problems = [f"{r.tool} {Path(r.log).name}: exit {r.rc}" for r in runs if r.rc != 0]
    problems += [f"{r.tool}: {r.verified}/{r.expected} images exact, wrong or unexpected: {r.corrupt[:5]}" for r in runs
                 if r.verified != r.expected or r.corrupt]  # fmt: skip
    if rerun is not None and (rerun.rc != 0 or sum(v for k, v in rerun.requests.items() if "robots" not in k)):
        problems.append(f"re-run: exit {rerun.rc}, requests {rerun.requests} (expected none)")
    return problems


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (median reported)")
    parser.add_argument("--last", type=int, default=1400, help="xkcdcrawl's end=; the tutorial's range is fixed")
    parser.add_argument("--delay-ms", type=float, default=50.0)
    parser.add_argument("--per-host", type=int, default=14, help="CONCURRENT_REQUESTS_PER_DOMAIN")
    default_python = REPO / ".venv" / "bin" / "python"
    parser.add_argument("--python", default=str(default_python if default_python.exists() else sys.executable),
                        help="the Python with Scrapy and xkcdcrawl's requirements")  # fmt: skip
    parser.add_argument("--repo", type=Path, default=REPO, help="the xkcdcrawl checkout to run (another commit, say)")
    parser.add_argument("--tutorial-python", default="/usr/bin/python3", help="a Python with requests and bs4")
    parser.add_argument("--out-root", type=Path, default=None, help="where the output folders go (default: a temp dir)")
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--json", type=Path, default=None, help="write every run here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for python, modules in ((args.python, "scrapy"), (args.tutorial_python, "requests, bs4")):
        if subprocess.run([python, "-c", f"import {modules}"], capture_output=True, check=False).returncode:
            print(f"{python} cannot import {modules} (see benchmarks/README.md, xkcd)", file=sys.stderr)
            return 2
    with tempfile.TemporaryDirectory(prefix="xkcd-bench-", dir=args.out_root) as tmp:
        work = Path(tmp)
        logs = work / "logs"
        logs.mkdir()
        with mirror(args.last, args.delay_ms, logs / "mirror.log") as (site, images):
            from xkcd_mirror import Mirror  # the pages exactly as served, for what the tutorial finds

            origin = Site()
            origin.origin, origin.images = site, images
            args.page_images = Mirror(origin, 0, args.last).page_images
            plan = tools(args, site, origin)
            print(f"mirror: pages and API {site}, images {images}, {args.delay_ms:g} ms before every response")
            for tool in plan:
                print(f"{tool.name}: {' '.join(tool.argv(work / 'OUT'))}  (cwd {tool.cwd(work / 'OUT')})")
            runs: list[Run] = []
            for k in range(args.rounds):
                for tool in plan if k % 2 == 0 else plan[::-1]:
                    out = work / f"{tool.name}-{k}"
                    run = run_once(tool, out, logs, str(k), site, args.timeout)
                    runs.append(run)
                    print(f"  round {k + 1} {tool.name}: {run.wall_s:.2f} s, CPU {run.cpu_s:.2f} s, "
                          f"{run.peak_rss_mib:.0f} MiB, {run.requests}, {run.verified}/{run.expected} exact", flush=True)  # fmt: skip
                    if not (tool.name == "xkcdcrawl" and k == args.rounds - 1):  # kept for the re-run
                        remove_tree(out)
            last = work / f"xkcdcrawl-{args.rounds - 1}"
            rerun = run_once(plan[0], last, logs, "rerun", site, args.timeout) if last.exists() else None
    print()
    print_table(runs, rerun)
    if args.json:
        args.json.write_text(
            json.dumps({"runs": [asdict(r) for r in runs], "rerun": rerun and asdict(rerun)}, indent=1)
        )
    problems = failures(runs, rerun)
    for problem in problems:
        print(f"FAILED: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
