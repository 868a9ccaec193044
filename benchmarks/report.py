"""Reporting: the header, the calibration lines, the results table and the JSON document."""

from __future__ import annotations

import json
import os
import platform
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from calibration import mechanism_warnings
from dataset import MIB
from nginx import find_nginx
from peers import tool_version

if TYPE_CHECKING:
    import argparse

    from dataset import Dataset
    from nginx import Endpoints
    from peers import Tool
    from rounds import Result


def fmt_ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def table_lines(results: list[Result]) -> list[str]:
    """The results table: a header, a rule, a row a tool (names left, figures right), then the notes."""
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
    lines = []
    for n, row in enumerate(rows):
        cells = zip(row, widths, strict=True)
        lines.append("  ".join(cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in enumerate(cells)))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return lines + [f"note: {r.name}: {r.note.rstrip('; ')}" for r in results if r.note]


def print_table(results: list[Result]) -> None:
    print("\n".join(table_lines(results)))


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


def write_json(
    args: argparse.Namespace, env_info: dict[str, object], cal: dict[str, float], results: list[Result],
    skipped: dict[str, str],
) -> None:  # fmt: skip
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    doc = {"config": config, "environment": env_info, "calibration": cal,
           "results": [asdict(r) for r in results], "skipped": skipped}  # fmt: skip
    args.json.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {args.json}")
