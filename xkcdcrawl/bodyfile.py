"""Writing a response body into its partial file as it arrives, off the reactor thread.

Writer threads take every chunk of every streamed body, in order, write it at its offset
and hash it (hashlib and os.pwrite release the GIL, so this runs beside the reactor on
the other cores). The reactor thread only queues chunks, and pauses the
connections while more than ``HIGH_WATER`` bytes wait: memory stays flat whatever the
size of the files.

Next to a partial file ``<key>.part`` lies ``<key>.json``, what a later run needs to
resume it: the URL, the validator (ETag, else Last-Modified) for ``If-Range``, the full
length and, for a file fetched in parallel ranges, how much of each range is on disk.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import queue
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

# Bytes queued for the disk before the connections pause.
HIGH_WATER = 8 << 20
# Bytes queued below which they resume.
LOW_WATER = 2 << 20
# Seconds between two records of a segmented file's progress.
STATE_EVERY = 1.0


@dataclass
class PartialState:
    """What a run leaves next to a partial file so that the next one can resume it."""

    url: str
    # ETag (strong) or Last-Modified: If-Range.
    validator: str | None
    # The whole file's.
    length: int | None
    # Parallel ranges: [start, end (inclusive), bytes of it on disk]
    segments: list[list[int]] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path) -> PartialState | None:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(str(data["url"]), data["validator"], data["length"], list(data.get("segments") or []))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def save(self, path: Path) -> None:
        temp = path.with_name(path.name + ".tmp")
        temp.write_text(json.dumps(asdict(self)), encoding="utf-8")
        temp.replace(path)


class DiskError(Exception):
    """The body could not be written to its partial file (a full disk...)."""

    def __init__(self, error: OSError) -> None:
        super().__init__(f"cannot write the file: {error.strerror or error}")
        self.error = error


class BodyFile:
    """One body, or one range of it, being written into a partial file from ``offset``."""

    def __init__(self, path: Path, offset: int, *, truncate: bool, algorithms: tuple[str, ...] = ()) -> None:
        self.path = path
        self.start = offset
        # Bytes on disk (writer thread).
        self.written = 0
        # Bytes handed over (reactor thread).
        self.queued = 0
        self.hashers = {name: hashlib.new(name) for name in algorithms}
        self.error: OSError | None = None
        # Saved with the progress of `segment`.
        self.state: PartialState | None = None
        self.state_path: Path | None = None
        self.segment: list[int] | None = None
        # The writer thread it is given to.
        self.lane: int | None = None
        self._state_saved = 0.0
        self._flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if truncate else 0)
        self.fd: int | None = None

    # Writer thread: opening there too keeps a truncation behind the writes queued before it.

    def _write(self, data: bytes) -> None:
        if self.error is not None:
            return
        try:
            if self.fd is None:
                self.fd = os.open(self.path, self._flags, 0o644)
            view = memoryview(data)
            while view:
                done = os.pwrite(self.fd, view, self.start + self.written)
                view = view[done:]
                self.written += done
        except OSError as error:
            self.error = error
            return
        for hasher in self.hashers.values():
            hasher.update(data)
        if self.segment is not None and time.monotonic() - self._state_saved > STATE_EVERY:
            self._save_state()

    def _save_state(self) -> None:
        assert self.state is not None
        assert self.state_path is not None
        assert self.segment is not None
        self.segment[2] = self.start + self.written - self.segment[0]
        self._state_saved = time.monotonic()
        with contextlib.suppress(OSError):
            self.state.save(self.state_path)

    def _close(self) -> None:
        if self.fd is None and self.error is None:
            # An empty body still makes its (empty) file.
            try:
                self.fd = os.open(self.path, self._flags, 0o644)
            except OSError as error:
                self.error = error
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = None
        if self.segment is not None:
            self._save_state()

    @property
    def digests(self) -> dict[str, str]:
        """{algorithm: hex digest} of the bytes written, when they are the whole file from its first byte."""
        return {name: h.hexdigest() for name, h in self.hashers.items()} if self.start == 0 else {}


class _Lane:
    """One writer thread and its queue: the bodies given to it are written in order."""

    def __init__(self, writer: DiskWriter, number: int) -> None:
        self.tasks: queue.SimpleQueue[tuple[BodyFile | None, bytes | None, Callable[[], None] | None]] = (
            queue.SimpleQueue()
        )
        # This lane's thread only.
        self.written = 0
        self.thread = threading.Thread(target=writer._run, args=(self,), name=f"xkcdcrawl-writer-{number}")
        self.thread.daemon = True
        self.thread.start()


class DiskWriter:
    """The threads that write (and hash) every streamed body, chunk by chunk, in order.

    A body stays on one thread (its order), bodies are dealt out to ``lanes`` threads: hashing
    and copying 8 files at once is more than one core's work.
    """

    def __init__(self, call_in_reactor: Callable[..., Any], lanes: int = 2) -> None:
        self._call_in_reactor = call_in_reactor
        self._lane_count = lanes
        self._lanes: list[_Lane] = []
        self._next = 0
        # Reactor thread.
        self._queued = 0
        # Resume callbacks, reactor thread.
        self._paused: list[Callable[[], None]] = []
        self._resuming = False

    @property
    def backlog(self) -> int:
        return self._queued - sum(lane.written for lane in self._lanes)

    def write(self, body: BodyFile, data: bytes) -> None:
        body.queued += len(data)
        self._queued += len(data)
        self._lane(body).tasks.put((body, data, None))

    def close(self, body: BodyFile, then: Callable[[], None]) -> None:
        """Close the file once every chunk queued for it is written; then `then()` in the reactor."""
        self._lane(body).tasks.put((body, None, then))

    def pause_until_drained(self, resume: Callable[[], None]) -> None:
        self._paused.append(resume)

    def stop(self) -> None:
        for lane in self._lanes:
            lane.tasks.put((None, None, None))
        for lane in self._lanes:
            lane.thread.join(timeout=60)
        self._lanes = []

    def _lane(self, body: BodyFile) -> _Lane:
        if body.lane is None:
            if len(self._lanes) < self._lane_count:
                self._lanes.append(_Lane(self, len(self._lanes)))
            body.lane = self._next % len(self._lanes)
            self._next += 1
        return self._lanes[body.lane]

    def _run(self, lane: _Lane) -> None:
        while True:
            body, data, then = lane.tasks.get()
            if body is None:
                return
            if data is not None:
                body._write(data)
                lane.written += len(data)
                if self._paused and not self._resuming and self.backlog < LOW_WATER:
                    self._resuming = True
                    self._call_in_reactor(self._resume)
            else:
                body._close()
                assert then is not None
                self._call_in_reactor(then)

    def _resume(self) -> None:
        self._resuming = False
        if self.backlog >= LOW_WATER:
            return
        paused, self._paused = self._paused, []
        for resume in paused:
            resume()
