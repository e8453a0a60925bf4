"""The spool's segment files: append, rotation, bounds, and adoption of a dead process's files
(flock) while live processes keep theirs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.accounting.spool import Spool, SpoolFull, read_segment
from tests.support import paths


def test_append_rotate_remove(tmp_path: Path) -> None:
    spool = Spool(tmp_path, segment_bytes=100, max_bytes=10_000)
    first = spool.append(b"a" * 60 + b"\n")
    assert spool.append(b"b" * 30 + b"\n") is first
    second = spool.append(b"c" * 30 + b"\n")  # would pass 100 bytes: a new segment
    assert second is not first and first.sealed and not second.sealed
    assert (first.lines, second.lines, spool.total_bytes) == (2, 1, 61 + 31 + 31)
    assert read_segment(first) == [b"a" * 60, b"b" * 30]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([first.path.name, second.path.name])
    spool.remove(first)
    assert not first.path.exists() and spool.total_bytes == 31
    assert spool.rotate() is second and spool.current is None
    spool.remove(second)
    assert list(tmp_path.iterdir()) == []
    assert spool.rotate() is None


def test_bound(tmp_path: Path) -> None:
    spool = Spool(tmp_path, segment_bytes=1000, max_bytes=50)
    spool.append(b"x" * 40 + b"\n")
    with pytest.raises(SpoolFull):
        spool.append(b"y" * 20 + b"\n")


def test_adopt_takes_only_unlocked_segments(tmp_path: Path) -> None:
    live = Spool(tmp_path, segment_bytes=1000, max_bytes=10_000)
    held = live.append(b"live\n")
    # A dead process's segment (nobody holds its lock), and a stub left between create and rename.
    dead = tmp_path / "seg-00000000000000000001-99999.jsonl"
    dead.write_bytes(b"one\ntwo\n")
    stub = tmp_path / ".seg-00000000000000000002-99999.jsonl"
    stub.write_bytes(b"")
    (tmp_path / "unrelated.txt").write_text("left alone")
    newcomer = Spool(tmp_path, segment_bytes=1000, max_bytes=10_000)
    adopted = newcomer.adopt()
    assert [segment.path for segment in adopted] == [dead]
    assert adopted[0].lines is None and read_segment(adopted[0]) == [b"one", b"two"]
    assert not stub.exists() and held.path.exists() and (tmp_path / "unrelated.txt").exists()
    # Another process cannot adopt it either while the newcomer holds it.
    third = Spool(tmp_path, segment_bytes=1000, max_bytes=10_000)
    assert third.adopt() == []
    newcomer.remove(adopted[0])
    assert not dead.exists()


def test_a_killed_process_releases_its_segments(tmp_path: Path) -> None:
    code = (
        f"import sys, os, signal; sys.path.insert(0, {str(paths.REPO)!r})\n"
        "from gateway.accounting.spool import Spool\n"
        f"s = Spool({str(tmp_path)!r}, segment_bytes=1000, max_bytes=10000); s.append(b'kept\\n')\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    assert subprocess.run([sys.executable, "-c", code], timeout=30).returncode == -9
    adopted = Spool(tmp_path, segment_bytes=1000, max_bytes=10_000).adopt()
    assert len(adopted) == 1 and read_segment(adopted[0]) == [b"kept"]
    assert adopted[0].path.name.endswith(f"-{os.getpid()}.jsonl") is False
