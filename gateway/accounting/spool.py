"""The accounting spool: append-only JSON-lines segment files in one directory on local disk.

Every audit record is appended here (one `write` to the page cache, on the event loop) before it
counts as acknowledged; the store is written from memory in batches, and a segment is deleted once
all its records are in the store. When the store is down, slow or behind, the segments are what
gets replayed. So a crash or SIGKILL of the gateway loses nothing acknowledged; a power cut loses
at most what was appended since the last fsync (the accountant fsyncs the active segment every
second, and each segment it seals).

Several gateway processes may share the directory: each creates its own segments and holds an
exclusive flock on them for as long as they exist. A segment nobody holds a lock on belongs to a
process that died: `adopt()` takes it over, for replay. A segment is created under a dot-name,
locked, and only then renamed into place, so no other process can adopt it in between.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path
from typing import Final

SEGMENT_PREFIX: Final = "seg-"
SEGMENT_SUFFIX: Final = ".jsonl"


class SpoolFull(Exception):
    """Appending would take the spool past its size bound; the record is not spooled."""


class Segment:
    """One segment file. `lines` counts the lines this process appended (None for an adopted
    one, whose count is unknown); `committed` those since stored; `size` its bytes."""

    __slots__ = ("committed", "fd", "lines", "path", "sealed", "size")

    def __init__(self, path: Path, fd: int, size: int, *, lines: int | None, sealed: bool) -> None:
        self.path = path
        self.fd = fd  # holds the flock; open for appending while active
        self.size = size
        self.lines = lines
        self.committed = 0
        self.sealed = sealed

    @property
    def done(self) -> bool:
        """Every line appended here is in the store."""
        return self.lines is not None and self.committed >= self.lines

    def __repr__(self) -> str:
        return f"Segment({self.path.name}, lines={self.lines}, committed={self.committed})"


class Spool:
    """This process's segments in `directory`; the active one takes appends. Not thread-safe:
    `append`, `rotate` and `remove` are called from the event loop only."""

    def __init__(self, directory: str | os.PathLike[str], *, segment_bytes: int, max_bytes: int) -> None:
        self.directory = Path(directory)
        self._segment_bytes = segment_bytes
        self._max_bytes = max_bytes
        self._active: Segment | None = None
        self._owned: dict[Path, Segment] = {}
        self.total_bytes = 0  # of every segment this process holds

    @property
    def current(self) -> Segment | None:
        """The active segment, if one is open (`active` opens one)."""
        return self._active

    @property
    def active(self) -> Segment:
        if self._active is None:
            self._active = self._create()
        return self._active

    def adopt(self) -> list[Segment]:
        """Take over the segments of dead processes (oldest first), for replay; deletes the empty
        dot-files a crash between create and rename leaves. OSError if the directory is unusable."""
        self.directory.mkdir(parents=True, exist_ok=True)
        adopted: list[Segment] = []
        for path in sorted(self.directory.iterdir()):
            name = path.name
            is_segment = name.startswith(SEGMENT_PREFIX) and name.endswith(SEGMENT_SUFFIX)
            is_stub = name.startswith("." + SEGMENT_PREFIX)
            if path in self._owned or not (is_segment or is_stub):
                continue
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                continue  # its owner finished with it meanwhile
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)  # a live process holds it
                continue
            if not path.exists():  # deleted by its owner between our open and our lock
                os.close(fd)
                continue
            if is_stub:
                path.unlink(missing_ok=True)
                os.close(fd)
                continue
            segment = Segment(path, fd, os.fstat(fd).st_size, lines=None, sealed=True)
            self._owned[path] = segment
            self.total_bytes += segment.size
            adopted.append(segment)
        return adopted

    def append(self, line: bytes) -> Segment:
        """Append one line (ending in a newline) to the active segment, rotating first when it
        is full; the segment it went to. SpoolFull past the size bound; OSError from the disk."""
        if self.total_bytes + len(line) > self._max_bytes:
            raise SpoolFull(f"the spool holds {self.total_bytes} bytes, its bound is {self._max_bytes}")
        segment = self.active
        if segment.size and segment.size + len(line) > self._segment_bytes:
            self.rotate()
            segment = self.active
        view = memoryview(line)
        while view:
            written = os.write(segment.fd, view)
            view = view[written:]
        segment.size += len(line)
        self.total_bytes += len(line)
        assert segment.lines is not None
        segment.lines += 1
        return segment

    def rotate(self) -> Segment | None:
        """Seal the active segment (the next append opens a new one); the sealed one, or None
        when there was none or it was empty (then it is deleted)."""
        segment, self._active = self._active, None
        if segment is None:
            return None
        segment.sealed = True
        if not segment.lines:
            self.remove(segment)
            return None
        return segment

    def remove(self, segment: Segment) -> None:
        """Delete a segment whose records are all stored, and release its lock."""
        if self._active is segment:
            self._active = None
        if self._owned.pop(segment.path, None) is None:
            return
        self.total_bytes -= segment.size
        try:
            segment.path.unlink(missing_ok=True)
        finally:
            os.close(segment.fd)

    def release(self, segment: Segment) -> None:
        """Stop holding a segment without deleting it (at shutdown: the next start replays it)."""
        if self._active is segment:
            self._active = None
        if self._owned.pop(segment.path, None) is not None:
            self.total_bytes -= segment.size
            os.close(segment.fd)

    def owned(self) -> list[Segment]:
        return list(self._owned.values())

    def _create(self) -> Segment:
        self.directory.mkdir(parents=True, exist_ok=True)
        name = f"{SEGMENT_PREFIX}{time.time_ns():020d}-{os.getpid()}{SEGMENT_SUFFIX}"
        stub = self.directory / ("." + name)
        fd = os.open(stub, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            path = self.directory / name
            os.rename(stub, path)
        except BaseException:
            os.close(fd)
            stub.unlink(missing_ok=True)
            raise
        segment = Segment(path, fd, 0, lines=0, sealed=False)
        self._owned[path] = segment
        return segment


def read_segment(segment: Segment) -> list[bytes]:
    """The lines of a segment (blocking: call in a thread). A torn last line, from a power cut
    mid-write, is returned as is; the caller skips what does not decode."""
    with open(segment.path, "rb") as file:
        data = file.read()
    return [line for line in data.split(b"\n") if line]


def fsync(fd: int) -> None:
    """fsync, ignoring a descriptor closed meanwhile (blocking: call in a thread)."""
    try:
        os.fsync(fd)
    except OSError:
        pass
