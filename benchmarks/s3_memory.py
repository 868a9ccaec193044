"""Peak memory of a crawl into an s3:// store: one big file from nginx into moto's server, both on 127.0.0.1.

    .venv/bin/python benchmarks/s3_memory.py --size-mib 300 [--project OTHER_CHECKOUT]

Prints the crawl's peak RSS (the kernel's VmHWM), its wall time and whether the object in the
bucket is the file, byte for byte. --project runs another checkout's xkcdcrawl (an older
commit, to compare) with this one's servers. Run by hand, not in CI.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(HERE / "tests"))

from servers.s3server import s3_server
from servers.webservers import nginx

MiB = 1 << 20


def big_file(path: Path, size: int) -> str:
    """`size` bytes, no two MiB alike; returns its sha256."""
    digest = hashlib.sha256()
    with path.open("wb") as out:
        for start in range(0, size, MiB):
            block = start.to_bytes(8, "big") + hashlib.sha256(str(start).encode()).digest() * (MiB // 32)
            chunk = block[: min(MiB, size - start)]
            out.write(chunk)
            digest.update(chunk)
    return digest.hexdigest()


def peak_rss_kib(proc: subprocess.Popen[bytes]) -> int:
    """Poll the child's VmHWM until it exits (ru_maxrss would count this process too)."""
    peak = 0
    while proc.poll() is None:
        with contextlib.suppress(OSError):
            status = Path(f"/proc/{proc.pid}/status").read_text(encoding="utf-8")
            if "VmHWM:" in status:
                peak = max(peak, int(status.split("VmHWM:")[1].split()[0]))
        time.sleep(0.02)
    return peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mib", type=int, default=300)
    parser.add_argument("--project", type=Path, default=HERE, help="the checkout whose xkcdcrawl runs")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="xkcdcrawl-s3mem-") as tmp, s3_server() as s3:
        root = Path(tmp) / "root"
        root.mkdir()
        expected = big_file(root / "big.bin", args.size_mib * MiB)
        s3.client().create_bucket(Bucket="bench")
        with nginx(root) as url:
            settings = {**s3.settings(), "FILES_STORE": "s3://bench/m/", "XKCDCRAWL_WORK_DIR": f"{tmp}/work"}
            settings["XKCDCRAWL_PROGRESS_INTERVAL"] = "0"
            cmd = [sys.executable, "-m", "scrapy", "crawl", "listing", "-a", f"url={url}"]
            cmd += [arg for name, value in settings.items() for arg in ("-s", f"{name}={value}")]
            started = time.monotonic()
            proc = subprocess.Popen(cmd, cwd=args.project, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            peak = peak_rss_kib(proc)
            elapsed = time.monotonic() - started
            stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        client, digest = s3.client(), hashlib.sha256()
        keys = [e["Key"] for e in client.list_objects_v2(Bucket="bench", Prefix="m/").get("Contents", [])]
        for key in keys:
            if key.endswith("big.bin"):
                for chunk in client.get_object(Bucket="bench", Key=key)["Body"].iter_chunks(MiB):
                    digest.update(chunk)
    print(f"project {args.project}: exit {proc.returncode}, {args.size_mib} MiB file")
    print(f"  peak RSS {peak / 1024:.0f} MiB, {elapsed:.1f} s, object exact: {digest.hexdigest() == expected}")
    if proc.returncode != 0:
        print(stderr[-2000:])


if __name__ == "__main__":
    main()
