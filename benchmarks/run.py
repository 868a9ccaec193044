"""Benchmark xkcdcrawl against other bulk downloaders on a local nginx autoindex tree.

Generates a data set, serves it from a real nginx on 127.0.0.1 with an injected
per-request delay, mirrors it with every downloader (same URLs, same
parallelism, cold output directories, --repeat runs each, median reported),
verifies every output by sha256 and prints a table (optionally JSON).
See benchmarks/README.md.

The command line; each concern has its module here: dataset, nginx, peers, measure,
calibration, rounds, report.
"""

from __future__ import annotations

import argparse
import contextlib
import shlex
import shutil
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from calibration import calibrate, lower_bound
from dataset import MIB, generate_dataset
from measure import Env
from nginx import delay_mode, find_nginx, start_server
from peers import INSTALL_HINT, XKCDCRAWL_TEMPLATE, Ctx, Tool, all_tools, missing_reason, write_inputs
from report import environment, print_calibration, print_header, print_table, write_json
from rounds import benchmark, summarize

if TYPE_CHECKING:
    from collections.abc import Iterator

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


if __name__ == "__main__":
    sys.exit(main())
