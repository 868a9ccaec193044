"""The project on a real scrapyd, deployed the way users do it: scrapyd-deploy builds the egg, the
JSON API uploads it and schedules crawls, and the jobs run from the egg alone.

One scrapyd for the module, with basic auth on, as the [deploy:local] target of scrapy.cfg expects.
scrapyd-deploy writes setup.py, build/ and project.egg-info/ next to scrapy.cfg, so it runs in a
copy of the working tree (tracked and untracked files that git does not ignore), never in the repo.
"""

from __future__ import annotations

import configparser
import json
import shutil
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import pytest
import requests
from conftest import stored_files
from servers.scrapydserver import clean_env, output_of, scrapyd
from servers.xkcdsite import image_bytes

if TYPE_CHECKING:
    from collections.abc import Iterator

    from servers.xkcdsite import Site

pytestmark = pytest.mark.e2e

PROJECT = Path(__file__).resolve().parent.parent
SCRAPYD_DEPLOY = Path(sys.executable).parent / "scrapyd-deploy"
NAME = "xkcdcrawl"  # the project name in scrapy.cfg's [deploy:local]
USERNAME = "deployer"
PASSWORD = "s3cret %pass"  # a space and a %: both must survive scrapyd.conf and scrapy.cfg
JOB_TIMEOUT = 120.0
COMICS_402_406 = {
    "xkcd/1000_miles_north.png": "/comics/1000_miles_north.png",
    "xkcd/convincing_pickup_line.png": "/comics/convincing_pickup_line.png",
    "xkcd/journal_3.png": "/comics/journal_3.png",
    "xkcd/venting.png": "/comics/venting.png",
}


# ---------------------------------------------------------------- helpers


def local_session(auth: tuple[str, str] | None = None) -> requests.Session:
    """A requests session that ignores *_proxy variables and ~/.netrc: it only talks to 127.0.0.1."""
    session = requests.Session()
    session.trust_env = False
    session.auth = auth
    return session


@dataclass
class Scrapyd:
    """The running scrapyd: its URL, its folder, and its JSON API with the credentials."""

    url: str
    root: Path
    session: requests.Session

    def get(self, endpoint: str, **params: str) -> dict[str, Any]:
        return self._json(self.session.get(f"{self.url}/{endpoint}", params=params, timeout=60))

    def post(self, endpoint: str, data: list[tuple[str, str]], **files: Any) -> dict[str, Any]:
        return self._json(self.session.post(f"{self.url}/{endpoint}", data=data, files=files or None, timeout=60))

    def _json(self, response: requests.Response) -> dict[str, Any]:
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()
        assert data["status"] == "ok", data
        return data

    def schedule(self, data: list[tuple[str, str]]) -> str:
        job: str = self.post("schedule.json", data)["jobid"]
        return job

    def wait_finished(self, job: str, timeout: float = JOB_TIMEOUT) -> dict[str, Any]:
        """The job's listjobs.json entry once it has finished."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            finished: list[dict[str, Any]] = self.get("listjobs.json", project=NAME)["finished"]
            for entry in finished:
                if entry["id"] == job:
                    return entry
            time.sleep(0.25)
        raise AssertionError(f"job {job} not finished after {timeout} s:\n{self.output()}")

    def job_log(self, job: str, spider: str = "xkcd") -> Path:
        return self.root / "logs" / NAME / spider / f"{job}.log"

    def job_items(self, job: str, spider: str = "xkcd") -> list[dict[str, Any]]:
        lines = (self.root / "items" / NAME / spider / f"{job}.jl").read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line]

    def output(self) -> str:
        return output_of(self.root)


def xkcd_job(site: Site, store: Path, *args: tuple[str, str]) -> list[tuple[str, str]]:
    """schedule.json's form for the xkcd spider on the mirror, storing under store."""
    return [
        ("project", NAME),
        ("spider", "xkcd"),
        ("base_url", site.origin),
        ("setting", f"FILES_STORE={store}"),
        *args,
    ]


def git_files() -> list[str]:
    """The working tree as git sees it: tracked files and untracked ones it does not ignore."""
    out = subprocess.run(
        ["git", "-C", str(PROJECT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        check=True,
    ).stdout
    return [name for name in out.decode().split("\0") if name and (PROJECT / name).is_file()]


def spider_names() -> list[str]:
    """The project's spiders: one module per spider in xkcdcrawl/spiders/, named as the spider."""
    modules = (PurePosixPath(n) for n in git_files() if n.startswith(f"{NAME}/spiders/"))
    return sorted(m.stem for m in modules if m.suffix == ".py" and m.stem != "__init__")


def copy_working_tree(dest: Path) -> Path:
    for name in git_files():
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(PROJECT / name, target)
    return dest


def deploy(
    checkout: Path, home: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """scrapyd-deploy ARGS in checkout, as a user would type it, with nothing but env from us."""
    return subprocess.run(
        [str(SCRAPYD_DEPLOY), *args],
        cwd=checkout,
        env={**clean_env(home), **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def point_target_at(checkout: Path, url: str) -> None:
    """Edit the copy's scrapy.cfg: [deploy:local] url = the test scrapyd (the rest as committed)."""
    path = checkout / "scrapy.cfg"
    cfg = configparser.RawConfigParser()  # raw: ${SCRAPYD_USERNAME} stays as written
    cfg.read(path, encoding="utf-8")
    cfg.set("deploy:local", "url", f"{url}/")
    with path.open("w", encoding="utf-8") as f:
        cfg.write(f)


def job_stderr(output: str, job: str) -> list[str]:
    """What the job wrote to stderr, as scrapyd's own log shows it: [Launcher,PID/stderr] LINE."""
    starts = [line for line in output.splitlines() if "Process started:" in line and f"job='{job}'" in line]
    assert len(starts) == 1, f"no 'Process started' line for job {job}:\n{output}"
    tag = f"[Launcher,{starts[0].split(' pid=', 1)[1].split(' ', 1)[0]}/stderr] "
    return [line.split(tag, 1)[1] for line in output.splitlines() if tag in line]


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_working_tree(tmp_path_factory.mktemp("checkout"))


@pytest.fixture(scope="module")
def egg(checkout: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """scrapyd-deploy --build-egg, offline, in the copy of the working tree."""
    out = tmp_path_factory.mktemp("egg") / f"{NAME}.egg"
    run = deploy(checkout, out.parent, f"--build-egg={out}")
    assert run.returncode == 0, run.stderr
    return out


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scrapyd]:
    root = tmp_path_factory.mktemp("scrapyd")
    with scrapyd(root, username=USERNAME, password=PASSWORD) as url:
        yield Scrapyd(url, root, local_session((USERNAME, PASSWORD)))


@pytest.fixture(scope="module")
def deployed(server: Scrapyd, egg: Path) -> dict[str, Any]:
    """addversion.json with the egg (curl -F project=... -F version=1 -F egg=@xkcdcrawl.egg)."""
    with egg.open("rb") as f:
        return server.post("addversion.json", [("project", NAME), ("version", "1")], egg=(egg.name, f))


# ---------------------------------------------------------------- the egg


def test_egg_holds_every_module_of_the_package_and_nothing_else(egg: Path) -> None:
    with zipfile.ZipFile(egg) as z:
        names = z.namelist()
        entry_points = z.read("EGG-INFO/entry_points.txt").decode()
    assert {PurePosixPath(n).parts[0] for n in names} == {"EGG-INFO", NAME}  # no tests/, benchmarks/, scripts/
    sources = {n for n in git_files() if n.startswith(f"{NAME}/") and n.endswith(".py")}
    assert {n for n in names if n.endswith(".py")} == sources  # a folder without __init__.py would be missing
    assert "settings = xkcdcrawl.settings" in entry_points


def test_scrapyd_deploy_leftovers_are_ignored_by_git(egg: Path, checkout: Path) -> None:
    tree = {PurePosixPath(n).parts[0] for n in git_files()}
    # A folder as "build/": .gitignore's "build/" matches folders only, and these are not in the repo.
    leftovers = sorted(p.name + "/" * p.is_dir() for p in checkout.iterdir() if p.name not in tree)
    assert {"setup.py", "build/", "project.egg-info/"} <= set(leftovers), leftovers  # why it runs in a copy
    ignored = subprocess.run(
        ["git", "-C", str(PROJECT), "check-ignore", "--stdin", "-z"],
        input="\0".join(leftovers),
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    assert sorted(filter(None, ignored.split("\0"))) == leftovers


# ---------------------------------------------------------------- deploying


def test_addversion_deploys_every_spider(server: Scrapyd, deployed: dict[str, Any]) -> None:
    assert (deployed["project"], deployed["version"], deployed["spiders"]) == (NAME, "1", len(spider_names()))
    assert server.get("listprojects.json")["projects"] == [NAME]
    assert sorted(server.get("listspiders.json", project=NAME, _version="1")["spiders"]) == spider_names()


def test_scrapyd_deploy_to_the_scrapy_cfg_target(server: Scrapyd, checkout: Path, tmp_path: Path) -> None:
    point_target_at(checkout, server.url)
    credentials = {"SCRAPYD_USERNAME": USERNAME, "SCRAPYD_PASSWORD": PASSWORD}
    run = deploy(checkout, tmp_path, "local", "--version", "2", env=credentials)
    assert run.returncode == 0, run.stderr
    assert f'Deploying to project "{NAME}" in {server.url}/addversion.json' in run.stderr
    answer = {k: v for k, v in json.loads(run.stdout).items() if k in ("status", "project", "version", "spiders")}
    assert answer == {"status": "ok", "project": NAME, "version": "2", "spiders": len(spider_names())}
    assert "2" in server.get("listversions.json", project=NAME)["versions"]


def test_scrapyd_deploy_without_the_credential_variables_is_refused(
    server: Scrapyd, checkout: Path, egg: Path, tmp_path: Path
) -> None:
    point_target_at(checkout, server.url)
    run = deploy(checkout, tmp_path, "local", "--version", "3", f"--egg={egg}")  # no SCRAPYD_* set
    assert run.returncode == 1
    assert "Deploy failed (401)" in run.stderr
    assert "3" not in server.get("listversions.json", project=NAME)["versions"]


# ---------------------------------------------------------------- running


@pytest.mark.usefixtures("deployed")
def test_xkcd_job_stores_the_images_and_logs_the_summary(server: Scrapyd, xkcd: Site, tmp_path: Path) -> None:
    store = tmp_path / "store"
    job = server.schedule(xkcd_job(xkcd, store, ("start", "402"), ("end", "406")))  # scrapyd adds -a _job=ID
    finished = server.wait_finished(job)
    output = server.output()
    ended = f"Process finished: project='{NAME}' spider='xkcd' job='{job}'"  # exit status 0
    assert ended in output, job_stderr(output, job)
    assert stored_files(store) == {path: image_bytes(url) for path, url in COMICS_402_406.items()}
    assert sorted(item["num"] for item in server.job_items(job)) == [402, 403, 405, 406]
    assert finished["log_url"] == f"/logs/{NAME}/xkcd/{job}.log"
    log = server.job_log(job).read_text(encoding="utf-8")
    assert "Traceback" not in log
    assert " ERROR: " not in log
    summary = [line.split(" INFO: ", 1)[1] for line in log.splitlines() if " INFO: Files: " in line]
    assert summary == ["Files: 4 downloaded, 0 uptodate, 0 failed, 0 filtered, 1 comics missing"]


@pytest.mark.usefixtures("deployed")
def test_bad_argument_job_ends_with_one_line_and_no_files(server: Scrapyd, xkcd: Site, tmp_path: Path) -> None:
    store = tmp_path / "store"
    job = server.schedule(xkcd_job(xkcd, store, ("end", "0")))
    finished = server.wait_finished(job)
    assert not store.exists()
    # Refused before Scrapy opens LOG_FILE: the crawl command writes its one line there itself.
    assert finished["log_url"] == f"/logs/{NAME}/xkcd/{job}.log"
    log = server.job_log(job).read_text(encoding="utf-8")
    assert log == "scrapy crawl xkcd: error: end='0': must be 1 or more\n"
    output = server.output()
    assert job_stderr(output, job) == ["scrapy crawl xkcd: error: end='0': must be 1 or more"]
    assert f"Process died: exitstatus=2 project='{NAME}' spider='xkcd' job='{job}'" in output
    assert "Traceback" not in output


# ---------------------------------------------------------------- basic auth


@pytest.mark.usefixtures("deployed")
def test_schedule_needs_the_credentials(server: Scrapyd, xkcd: Site, tmp_path: Path) -> None:
    store = tmp_path / "store"
    form = xkcd_job(xkcd, store, ("start", "1"), ("end", "1"))
    before = server.get("daemonstatus.json")
    for auth in (None, (USERNAME, "wrong"), ("someone", PASSWORD)):
        refused = local_session(auth).post(f"{server.url}/schedule.json", data=form, timeout=60)
        assert refused.status_code == 401, auth
        assert refused.headers["WWW-Authenticate"].lower().startswith("basic "), auth
    after = server.get("daemonstatus.json")
    assert [after[k] for k in ("pending", "running", "finished")] == [0, 0, before["finished"]]
    job = server.schedule(form)
    server.wait_finished(job)
    expected = {"xkcd/barrel_cropped_(1).jpg": image_bytes("/comics/barrel_cropped_(1).jpg")}
    assert stored_files(store) == expected, job_stderr(server.output(), job)


# ---------------------------------------------------------------- one crawl per store


@pytest.mark.usefixtures("deployed")
def test_a_second_job_on_the_same_store_is_refused(server: Scrapyd, xkcd: Site, tmp_path: Path) -> None:
    """A cron run that starts while yesterday's still runs: exit status 2, one line, no request."""
    store = tmp_path / "store"
    first = server.schedule(xkcd_job(xkcd, store, ("start", "1"), ("end", "8"), ("setting", "DOWNLOAD_DELAY=1")))
    deadline = time.monotonic() + 60
    while not list((store / ".xkcdcrawl" / "crawls").glob("*.json")):
        assert time.monotonic() < deadline, job_stderr(server.output(), first)
        time.sleep(0.1)
    second = server.schedule(xkcd_job(xkcd, store, ("start", "10"), ("end", "10")))
    server.wait_finished(second)
    assert not any("/10/" in hit for hit in xkcd.hits)  # asked nothing, while the first one still ran
    assert list((store / ".xkcdcrawl" / "crawls").glob("*.json"))
    server.wait_finished(first)
    output = server.output()
    assert f"Process died: exitstatus=2 project='{NAME}' spider='xkcd' job='{second}'" in output
    assert f"Process finished: project='{NAME}' spider='xkcd' job='{first}'" in output
    [line] = [line for line in server.job_log(second).read_text(encoding="utf-8").splitlines() if " ERROR: " in line]
    assert f"Not crawling: store {store} is in use by crawl pid " in line
    assert "(spider xkcd, started " in line
    assert "xkcd/barrel_cropped_(1).jpg" in stored_files(store)
