"""s3:// stores that every worker can reach: bodies streamed to a local file, uploaded in parts.

Scrapy's S3FilesStore takes each body whole in memory. This one is the local store's twin: a file
body streams to a partial file in a local work folder (XKCDCRAWL_WORK_DIR, by default
``~/.cache/xkcdcrawl/s3/<bucket>/<prefix>``), where it resumes and is verified as in a local store,
and is then uploaded from that file in parts of PART_SIZE bytes (a multipart upload), so memory does
not grow with the file. Its sha256 goes with it as object metadata, which stat_file() answers with.

The download archive and the names book live in the bucket's bookkeeping folder, one folder each,
``<prefix>.xkcdcrawl/<ledger name>/``: each run reads every object there at its start and, at its end,
writes one object with all it read and all it added, then deletes the ones it read. Workers that
run at once each write their own object; the next run merges them. A run that is killed leaves
what it added in its local copy (in the work folder): the next run on that machine writes it back.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import shutil
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from io import BytesIO
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, cast

from scrapy.pipelines.files import S3FilesStore
from twisted.internet.threads import deferToThread

from xkcdcrawl.archive import Ledger
from xkcdcrawl.checksums import check
from xkcdcrawl.lock import pid_alive
from xkcdcrawl.stores import AtomicFSFilesStore, Origin, digests_of

if TYPE_CHECKING:
    from scrapy.crawler import Crawler
    from scrapy.pipelines.files import StatInfo
    from scrapy.pipelines.media import MediaPipeline
    from scrapy.settings import BaseSettings
    from twisted.internet.defer import Deferred

logger = logging.getLogger(__name__)

MiB = 1 << 20
# The bytes of one part of a multipart upload (S3 takes at least 5 MiB, at most 10,000 parts).
PART_SIZE = 8 * MiB
MAX_PARTS = 10_000
# The parts sent at once: at most this many parts are in memory.
UPLOAD_THREADS = 4


def work_folder(setting: str, uri: str) -> Path:
    """The local folder of an s3:// store's partial files: XKCDCRAWL_WORK_DIR/<bucket>/<prefix>."""
    base = Path(setting).expanduser() if setting else Path.home() / ".cache" / "xkcdcrawl" / "s3"
    return base.joinpath(*[part for part in uri.removeprefix("s3://").split("/") if part])


class StreamingS3FilesStore(S3FilesStore):
    """Scrapy's S3FilesStore with the local store's streaming, resuming and verifying."""

    # XKCDCRAWL_WORK_DIR, set by NamedFilesPipeline._update_stores().
    WORK_DIR = ""

    def __init__(self, uri: str) -> None:
        # s3://bucket and s3://bucket/prefix mean s3://bucket/ and s3://bucket/prefix/.
        bucket, _, prefix = uri.removeprefix("s3://").partition("/")
        uri = f"s3://{bucket}/{prefix.strip('/')}/" if prefix.strip("/") else f"s3://{bucket}/"
        super().__init__(uri)
        self.local = AtomicFSFilesStore(work_folder(self.WORK_DIR, uri))
        # What the server said of each stored object looked at (its metadata), until asked for.
        self._origins: dict[str, Origin] = {}

    def key(self, path: str) -> str:
        return f"{self.prefix}{path}"

    # What the pipeline asks of a store it streams into (as of AtomicFSFilesStore).

    def resumable(self) -> set[str]:
        return self.local.resumable()

    def partial_for(self, path: str) -> tuple[Path, Path]:
        return self.local.partial_for(path)

    def discard(self, part: Path) -> None:
        self.local.discard(part)

    def sweep(self, before: float, keep: set[Path]) -> None:
        self.local.sweep(before, keep)

    def stat_now(self, path: str) -> StatInfo | None:
        # Only the bucket knows: see stat_file().
        return None

    def stat_file(self, path: str, info: MediaPipeline.SpiderInfo) -> Deferred[StatInfo]:
        """{} for nothing stored, else its mtime and the sha256 it was uploaded with (else its ETag)."""
        return deferToThread(self._stat, path)

    def _stat(self, path: str) -> StatInfo:
        from botocore.exceptions import ClientError  # type: ignore[import-untyped]

        try:
            head = self.s3_client.head_object(Bucket=self.bucket, Key=self.key(path))
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
                return {}
            raise
        stat = cast("dict[str, Any]", self._onsuccess(head))
        stat["size"] = head.get("ContentLength")
        metadata = head.get("Metadata", {})
        if checksum := metadata.get("sha256"):
            stat["checksum"] = checksum
        if origin := metadata.get("origin"):
            with contextlib.suppress(ValueError):
                self._origins[path] = json.loads(origin)
        return cast("StatInfo", stat)

    def origin(self, path: str) -> Origin:
        """What the server said of a stored object when it was uploaded (from its metadata)."""
        return self._origins.pop(path, {})

    def remember_origin(self, path: str, origin: Origin) -> None:
        """Nothing: an object's metadata cannot change without copying it (its size still tells)."""

    def persist_verified(
        self, path: str, buf: BytesIO, expected: dict[str, str], origin: Origin | None = None
    ) -> Deferred[str]:
        """A body that came whole in memory (a page-sized one): checked, then put in one request."""
        return deferToThread(self._persist, path, buf, expected, origin)

    def _persist(self, path: str, buf: BytesIO, expected: dict[str, str], origin: Origin | None = None) -> str:
        digests = digests_of(buf.getbuffer(), {"sha256", *expected})
        check(expected, digests)
        buf.seek(0)
        self._put(path, buf, digests["sha256"], origin)
        return digests["sha256"]

    def finalize(
        self,
        part: Path,
        path: str,
        length: int | None,
        digests: dict[str, str],
        expected: dict[str, str],
        origin: Origin | None = None,
    ) -> Deferred[str]:
        """Upload a streamed partial file once it is whole and as the server said; fires with its sha256."""
        return deferToThread(self._finalize, part, path, length, digests, expected, origin)

    def _finalize(
        self,
        part: Path,
        path: str,
        length: int | None,
        digests: dict[str, str],
        expected: dict[str, str],
        origin: Origin | None,
    ) -> str:
        with part.open("rb") as f:
            digest = self.local.verify(part, f, length, digests, expected)
            size = os.fstat(f.fileno()).st_size
            f.seek(0)
            if size <= PART_SIZE:
                self._put(path, f, digest, origin)
            else:
                self._upload_in_parts(path, f, size, digest, origin)
        self.local.discard(part)
        return digest

    def _extra(self, sha256: str, origin: Origin | None) -> dict[str, Any]:
        metadata = {"sha256": sha256}
        if origin:
            # S3 metadata is ASCII: json.dumps() escapes the rest.
            metadata["origin"] = json.dumps(origin, separators=(",", ":"))
        return {"ACL": self.POLICY, "Metadata": metadata, **self._headers_to_botocore_kwargs(self.HEADERS)}

    def _put(self, path: str, body: Any, sha256: str, origin: Origin | None = None) -> None:
        self.s3_client.put_object(Bucket=self.bucket, Key=self.key(path), Body=body, **self._extra(sha256, origin))

    def _upload_in_parts(self, path: str, f: BinaryIO, size: int, sha256: str, origin: Origin | None = None) -> None:
        """A multipart upload, UPLOAD_THREADS parts at a time (each read when it is sent); aborted on any error."""
        client, where = self.s3_client, {"Bucket": self.bucket, "Key": self.key(path)}
        part_size = max(PART_SIZE, -(-size // MAX_PARTS))
        upload = client.create_multipart_upload(**where, **self._extra(sha256, origin))["UploadId"]

        def send(number: int) -> dict[str, Any]:
            chunk = os.pread(f.fileno(), part_size, (number - 1) * part_size)
            sent = client.upload_part(**where, UploadId=upload, PartNumber=number, Body=chunk)
            return {"ETag": sent["ETag"], "PartNumber": number}

        pool = ThreadPoolExecutor(UPLOAD_THREADS, thread_name_prefix="xkcdcrawl-upload")
        try:
            parts = list(pool.map(send, range(1, -(-size // part_size) + 1)))
            client.complete_multipart_upload(**where, UploadId=upload, MultipartUpload={"Parts": parts})
        except BaseException:
            pool.shutdown(cancel_futures=True)
            client.abort_multipart_upload(**where, UploadId=upload)
            raise
        finally:
            pool.shutdown()


class BucketLedger(Ledger):
    """A Ledger kept in the bucket under <prefix>.xkcdcrawl/<name>/, one object per run that added to it."""

    def __init__(self, store: StreamingS3FilesStore, name: str) -> None:
        self.client, self.bucket = store.s3_client, store.bucket
        self.folder = store.key(f".xkcdcrawl/{name}/")
        run = f"{int(time.time())}-{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        self.object = f"{self.folder}{run}.jsonl"
        # A local copy of this run's own (workers on one machine share the work folder).
        local = store.local.root / ".xkcdcrawl" / "ledgers" / f"{name}-{run}.jsonl"
        local.parent.mkdir(parents=True, exist_ok=True)
        self.read = self._download(local)
        # What killed runs on this machine recorded and never wrote back: written back by this one.
        self.added = self._adopt(local, name)
        super().__init__(local)

    def _download(self, local: Path) -> list[str]:
        """Every object of this ledger, one after the other, into the local copy; their keys."""
        keys = []
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.folder)
        with local.open("wb") as out:
            for page in pages:
                for entry in page.get("Contents", []):
                    body = self.client.get_object(Bucket=self.bucket, Key=entry["Key"])["Body"]
                    while chunk := body.read(MiB):
                        out.write(chunk)
                    # A line cut short by a killed run ends here.
                    out.write(b"\n")
                    keys.append(entry["Key"])
        return keys

    @staticmethod
    def _adopt(local: Path, name: str) -> int:
        """Append the local copies of dead runs' ledgers (``<name>-<time>-<host>-<pid>-<token>``); how many."""
        adopted = 0
        for orphan in local.parent.glob(f"{name}-*.jsonl"):
            pid = orphan.stem.rsplit("-", 2)[-2]
            if orphan == local or not pid.isdigit() or pid_alive(int(pid)):
                continue
            with local.open("ab") as out, orphan.open("rb") as data:
                shutil.copyfileobj(data, out)
                out.write(b"\n")
            orphan.unlink()
            adopted += 1
        return adopted

    def record(self, key: str, value: Any) -> None:
        super().record(key, value)
        self.added += 1

    def close(self) -> None:
        """Write back all that was read and added, as one object; the objects read go."""
        if self._out is None or self._out.closed:
            return
        super().close()
        assert self.path is not None
        try:
            # Nothing new and nothing to merge means no write.
            if self.added or len(self.read) > 1:
                with self.path.open("rb") as body:
                    self.client.put_object(Bucket=self.bucket, Key=self.object, Body=body)
                for key in self.read:
                    self.client.delete_object(Bucket=self.bucket, Key=key)
        finally:
            self.path.unlink(missing_ok=True)


def bucket_ledger(crawler: Crawler, name: str) -> BucketLedger:
    """The ledger <name> of the crawl's s3:// FILES_STORE."""
    configure(crawler.settings)
    return BucketLedger(StreamingS3FilesStore(str(crawler.settings["FILES_STORE"])), name)


def configure(settings: BaseSettings) -> None:
    """The store's class settings, as FilesPipeline._update_stores() sets them, and its work folder."""
    for name in (
        "ACCESS_KEY_ID",
        "SECRET_ACCESS_KEY",
        "SESSION_TOKEN",
        "ENDPOINT_URL",
        "REGION_NAME",
        "USE_SSL",
        "VERIFY",
    ):
        setattr(StreamingS3FilesStore, f"AWS_{name}", settings[f"AWS_{name}"])
    StreamingS3FilesStore.POLICY = settings["FILES_STORE_S3_ACL"]
    StreamingS3FilesStore.WORK_DIR = settings.get("XKCDCRAWL_WORK_DIR") or ""


def unusable(settings: BaseSettings) -> str | None:
    """Why the s3:// FILES_STORE cannot be used (no such bucket, no access, no answer), or None."""
    from botocore.exceptions import BotoCoreError, ClientError

    uri = str(settings["FILES_STORE"])
    bucket = uri.removeprefix("s3://").partition("/")[0]
    configure(settings)
    try:
        StreamingS3FilesStore(uri).s3_client.head_bucket(Bucket=bucket)
    except ClientError as error:
        problem = error.response.get("Error", {})
        return f"FILES_STORE={uri!r}: bucket {bucket!r}: {problem.get('Code')} {problem.get('Message')}"
    except (BotoCoreError, ValueError) as error:
        return f"FILES_STORE={uri!r}: {error}"
    except OSError as error:
        # The local work folder cannot be written to.
        return f"FILES_STORE={uri!r}: cannot write to XKCDCRAWL_WORK_DIR ({error.filename}): {error.strerror}"
    return None
