"""Calibration: loopback bandwidth for the lower bound, what the delay mechanism itself costs,
and the lower bound of a run."""

from __future__ import annotations

import statistics
import subprocess
import time
from typing import TYPE_CHECKING

from dataset import MIB
from measure import remove_tree
from peers import CURL_QUIET

if TYPE_CHECKING:
    from collections.abc import Iterable
    from pathlib import Path

    from dataset import Dataset
    from measure import Env


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
