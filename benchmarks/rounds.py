"""The timed rounds: every tool --repeat times in a rotating order, then the medians of its runs."""

from __future__ import annotations

import shlex
import statistics
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from calibration import lower_bound
from dataset import MIB
from measure import Run, remove_tree, run_tool

if TYPE_CHECKING:
    from pathlib import Path

    from measure import Env
    from peers import Ctx, Tool


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
