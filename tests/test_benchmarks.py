"""The benchmark harness's pure parts (benchmarks/): size plans, command lines, medians, ratios, the table."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from calibration import bandwidth_files, lower_bound, mechanism_warnings
from dataset import MIB, Dataset, file_plan
from measure import Env, Run, peak_rss_kib, verify
from nginx import Endpoints, nginx_server_block
from peers import (
    REPO,
    XKCDCRAWL_TEMPLATE,
    Ctx,
    Inputs,
    all_tools,
    aria2_argv,
    curl_argv,
    lftp_argv,
    rclone_argv,
    scrapy_files_argv,
    wget_argv,
    write_inputs,
    xkcdcrawl_argv,
)
from report import fmt_ratio, table_lines
from rounds import Result, best_peer, rotated, summarize
from run import parse_args, split_names

BASE = "http://127.0.0.1:8080"
INPUTS = Inputs(Path("/w/urls.txt"), Path("/w/urls.aria2"), Path("/w/urls.curl"))


def ctx(segments: int = 0, template: str = XKCDCRAWL_TEMPLATE) -> Ctx:
    return Ctx(BASE, 4, INPUTS, template, "/usr/bin/python3", segments)


def dataset(sizes: dict[str, int], big: list[str] | None = None) -> Dataset:
    return Dataset(Path("/data"), dict.fromkeys(sizes, "0" * 64), sizes, ["a"], big or [])


def env(data: Dataset, delay_ms: float = 100.0) -> Env:
    endpoints = Endpoints(BASE, BASE, BASE, Path("/dev/null"), "a mechanism")
    return Env(data, endpoints, delay_ms, 60.0)


def run(wall: float, rc: int = 0, verified: int = 3) -> Run:
    return Run(wall, wall / 2, 50.0, rc, verified, 10, verified, "log")


def result(name: str, kind: str, *runs: Run) -> Result:
    return Result(name, kind, "mode", f"{name} ...", "1.0", list(runs))


# ---------------------------------------------------------------- the data set


def test_small_files_are_dealt_over_the_folders_then_the_big_ones_at_the_top() -> None:
    assert file_plan(5, 10, 2, 1, 100) == [
        ("d00/f00000.bin", 10),
        ("d01/f00001.bin", 10),
        ("d00/f00002.bin", 10),
        ("d01/f00003.bin", 10),
        ("d00/f00004.bin", 10),
        ("big00.bin", 100),
    ]
    assert file_plan(0, 10, 3, 2, 7) == [("big00.bin", 7), ("big01.bin", 7)]


def test_the_url_lists_keep_the_tree(tmp_path: Path) -> None:
    inputs = write_inputs(tmp_path, "http://h", dataset({"d00/f00000.bin": 1, "big00.bin": 2}))
    assert inputs.urls.read_text() == "http://h/big00.bin\nhttp://h/d00/f00000.bin\n"
    assert inputs.aria2.read_text() == (
        "http://h/big00.bin\n  out=big00.bin\nhttp://h/d00/f00000.bin\n  out=d00/f00000.bin\n"
    )
    assert inputs.curl.read_text().startswith('url = "http://h/big00.bin"\noutput = "big00.bin"\n')


# ---------------------------------------------------------------- command lines


def test_every_tool_has_its_own_name() -> None:
    names = [tool.name for tool in all_tools()]
    assert len(set(names)) == len(names)
    assert {"xkcdcrawl", "xkcdcrawl-noop", "curl", "wget"} <= set(names)


def test_peer_command_lines() -> None:
    out = Path("/o")
    assert wget_argv(ctx(), out, "-N") == [
        *("wget", "-r", "-np", "-nH", "-l", "inf", "-e", "robots=off", "-q", "-N", "-P", "/o", f"{BASE}/"),
    ]
    assert curl_argv(ctx(), out)[:4] == ["curl", "--parallel", "--parallel-max", "4"]
    assert curl_argv(ctx(), out)[-4:] == ["--output-dir", "/o", "-K", "/w/urls.curl"]
    assert aria2_argv(ctx(), out)[:7] == ["aria2c", "-j", "4", "-x", "1", "-s", "1"]
    assert "--multi-thread-streams" not in rclone_argv(ctx(), out)
    assert scrapy_files_argv(ctx(), out)[-5:] == ["--jobs", "4", "--out", "/o", "/w/urls.txt"]


def test_segments_become_each_tools_own_option() -> None:
    out = Path("/o")
    assert aria2_argv(ctx(3), out)[3:7] == ["-x", "3", "-s", "3"]
    assert " --use-pget-n=3 . /o" in lftp_argv(ctx(3), out)[2]
    assert rclone_argv(ctx(3), out)[-4:] == ["--multi-thread-streams", "3", "--multi-thread-cutoff", "64Mi"]
    assert xkcdcrawl_argv(ctx(3), out)[-2:] == ["-s", "XKCDCRAWL_SPLIT_PARTS=3"]


def test_lftp_quotes_the_output_folder_in_its_script() -> None:
    script = lftp_argv(ctx(), Path("/out dir"))[2]
    assert script.endswith(" --parallel=4 --no-perms --ignore-time . '/out dir'")


def test_xkcdcrawl_command_fills_the_template_one_argument_a_placeholder() -> None:
    argv = xkcdcrawl_argv(ctx(), Path("/out dir"))
    assert argv[:5] == [str(REPO / ".venv" / "bin" / "scrapy"), "crawl", "listing", "-a", f"url={BASE}/"]
    assert "FILES_STORE=/out dir" in argv
    assert "CONCURRENT_REQUESTS_PER_DOMAIN=4" in argv
    assert xkcdcrawl_argv(ctx(template="{scrapy} crawl urls -a file={out}/x"), Path("/o"))[1:] == [
        "crawl",
        "urls",
        "-a",
        "file=/o/x",
    ]


def test_tool_names_on_the_command_line() -> None:
    assert split_names(["curl, wget", "", " xkcdcrawl "]) == ["curl", "wget", "xkcdcrawl"]
    assert parse_args(["--only", "curl", "--skip", "wget,aria2c"]).only == ["curl"]
    with pytest.raises(SystemExit) as error:
        parse_args(["--only", "curl,wgett"])
    assert error.value.code == 2


# ---------------------------------------------------------------- measuring


def test_peak_rss_is_the_last_number_gnu_time_wrote(tmp_path: Path) -> None:
    rss = tmp_path / "run.rss"
    rss.write_text("Command terminated by signal 9\n81234\n")
    assert peak_rss_kib(rss, 1) == 81234
    assert peak_rss_kib(tmp_path / "missing.rss", 25600) == 25600


def test_a_file_is_verified_at_any_depth_with_its_sha256(tmp_path: Path) -> None:
    good, bad = b"good", b"bad"
    digests = {rel: hashlib.sha256(good).hexdigest() for rel in ("a/f1.bin", "a/f2.bin", "f3.bin")}
    data = Dataset(tmp_path, digests, dict.fromkeys(digests, 4), ["a"], [])
    out = tmp_path / "out"
    for rel, body in [("127.0.0.1_8080/a/f1.bin", good), ("a/f2.bin", bad), ("f3.bin", good), ("index.html", b"")]:
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_bytes(body)
    assert verify(out, data) == (2, 4)


# ---------------------------------------------------------------- calibration and bounds


def test_bandwidth_is_measured_on_the_big_files_or_the_largest_up_to_64_mib() -> None:
    assert bandwidth_files(dataset({"big00.bin": 1, "a/f": 2}, big=["big00.bin"])) == ["big00.bin"]
    sizes = {"a/small": MIB, "a/large": 40 * MIB, "a/medium": 30 * MIB}
    assert bandwidth_files(dataset(sizes)) == ["a/large", "a/medium"]


def test_lower_bound_is_bytes_over_bandwidth_or_requests_times_delay_over_jobs() -> None:
    data = env(dataset({"a/f1": 5 * MIB, "a/f2": 5 * MIB, "a/f3": 0}))
    assert lower_bound("cold", data, 10 * MIB, 2) == 1.0  # 10 MiB at 10 MiB/s > 3 x 0.1 s / 2
    assert lower_bound("cold", data, 1000 * MIB, 2) == pytest.approx(0.15)
    assert lower_bound("noop", data, 10 * MIB, 2) == pytest.approx(0.1)  # the root and folder a
    assert lower_bound("startup", data, 10 * MIB, 2) is None


CALM = {
    "delay_mechanism_overhead_s": 0.01,
    "all_files_zero_delay_min_s": 1.0,
    "all_files_direct_nginx_max_s": 1.1,
    "delay_budget_s": 2.0,
    "loopback_MiB_s": 900.0,
    "loopback_direct_nginx_MiB_s": 1000.0,
}


def test_the_delay_mechanism_is_only_suspected_when_it_costs_beyond_the_noise() -> None:
    assert mechanism_warnings(CALM) == []
    costly = {**CALM, "delay_mechanism_overhead_s": 0.5, "all_files_zero_delay_min_s": 1.6}
    assert [w.split(",")[0] for w in mechanism_warnings(costly)] == [
        "the delay mechanism at 0 ms adds 0.50 s over plain nginx"
    ]
    # The same cost within the noise of plain nginx's runs: no warning.
    assert mechanism_warnings({**costly, "all_files_zero_delay_min_s": 1.0}) == []
    slow = {**CALM, "loopback_MiB_s": 700.0}
    assert mechanism_warnings(slow) == ["bandwidth through the delay mechanism is under 80% of plain nginx's"]


# ---------------------------------------------------------------- rounds


def test_the_order_rotates_each_round() -> None:
    tools = all_tools()[:3]
    assert [t.name for t in rotated(tools, 4)] == [t.name for t in tools[1:] + tools[:1]]
    assert rotated([], 1) == []


def summarized() -> list[Result]:
    results = [
        result("curl", "cold", run(3.0), run(1.0), run(2.0)),
        result("aria2c", "cold", run(1.5), run(1.5), run(1.5, verified=2)),
        result("xkcdcrawl", "cold", run(4.0), run(5.0, rc=1), run(4.0)),
        result("xkcdcrawl-noop", "noop", run(0.2), run(0.2), run(0.2)),
        result("scrapy-version", "startup", run(0.5, verified=0)),
    ]
    data = env(dataset({"a/f1": 5 * MIB, "a/f2": 5 * MIB, "a/f3": 0}))
    summarize(results, data, {"loopback_MiB_s": 10.0}, jobs=2)
    return results


def test_summary_takes_medians_and_the_ratios_to_the_best_complete_peer_and_the_bound() -> None:
    curl, aria2c, xkcdcrawl, noop, startup = summarized()
    assert (curl.wall_s, curl.wall_min_s, curl.wall_max_s, curl.cpu_s) == (2.0, 1.0, 3.0, 1.0)
    assert (curl.verified, curl.expected, curl.note) == (3, 3, "")
    # aria2c is faster but lost a file in one run: curl is the best peer.
    assert aria2c.verified == 2
    assert (curl.ratio_best_peer, aria2c.ratio_best_peer, xkcdcrawl.ratio_best_peer) == (1.0, 0.75, 2.0)
    assert xkcdcrawl.note == "exit codes [1] in 1/3 runs; "
    assert (curl.ratio_lower_bound, xkcdcrawl.ratio_lower_bound) == (2.0, 4.0)
    assert noop.ratio_best_peer is None
    assert noop.ratio_lower_bound == pytest.approx(2.0)
    assert (startup.expected, startup.ratio_best_peer, startup.ratio_lower_bound) == (0, None, None)


def test_without_a_complete_peer_the_fastest_peer_is_the_reference() -> None:
    slow, fast = result("wget", "cold", run(9.0, rc=8)), result("lftp", "cold", run(3.0, verified=1))
    for res, wall in ((slow, 9.0), (fast, 3.0)):
        res.wall_s, res.verified, res.expected = wall, 1, 3
    assert best_peer([slow, fast, result("xkcdcrawl", "cold", run(1.0))]) is fast
    assert best_peer([result("xkcdcrawl", "cold", run(1.0))]) is None


# ---------------------------------------------------------------- the table


def test_ratios_read_as_times_or_a_dash() -> None:
    assert (fmt_ratio(None), fmt_ratio(1.0), fmt_ratio(2.345)) == ("-", "1.00x", "2.35x")


def test_table_aligns_names_left_and_figures_right_then_notes() -> None:
    lines = table_lines(summarized()[2:4])
    assert lines == [
        "tool            mode  wall s  min-max s  CPU s  RSS MiB  requests  verified  x best peer  x lower bnd",
        "--------------  ----  ------  ---------  -----  -------  --------  --------  -----------  -----------",
        "xkcdcrawl       mode    4.00  4.00-5.00   2.00     50.0        10       3/3        2.00x        4.00x",
        "xkcdcrawl-noop  mode    0.20  0.20-0.20   0.10     50.0        10       3/3            -        2.00x",
        "note: xkcdcrawl: exit codes [1] in 1/3 runs",
    ]


def test_the_server_block_adds_the_delay_and_the_rate_limit_it_is_given() -> None:
    block = nginx_server_block(8080, Path("/data"), 0.02, "32m")
    assert "listen 127.0.0.1:8080 backlog=1024;" in block
    assert "root /data;" in block
    assert "access_by_lua_block { local delay = 0.020000 if delay > 0 then ngx.sleep(delay) end }" in block
    assert "limit_rate 32m;" in block
    plain = nginx_server_block(8081, Path("/data"), None)
    assert "access_by_lua_block" not in plain
    assert "limit_rate" not in plain
