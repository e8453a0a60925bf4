"""The audit writer process: the accountant's batches of audit records written to the store by a
child process, so that their Python work never competes with the event loop for the GIL.

Writing a batch is Python work (decoding, chaining and hashing every record, binding thousands of
parameters) around the database's own. Done on a thread of the gateway, it holds the GIL the event
loop needs, and every system call the loop makes (a socket write, the spool append) is a chance for
that thread to take it: measured with the bench at saturation, the in-process writer took ~25% of
the gateway's throughput, far more than the writes themselves. In a child process it runs on the
other core, and the gateway's part of a batch is one encode and one pipe write.

The child is started on first use and again after it ends. A batch in flight when it dies, or when
the accountant's timeout cuts the exchange, is retried by the accountant (the store keeps a record
once, by request id); the cut child is killed, since its pipe would be out of step. The database
URL goes to the child on its stdin, not on its command line, where `ps` would show a password. The
child ends when its stdin closes, so it never outlives the gateway, even one killed by SIGKILL.

Wire: frames of a 4-byte big-endian length and a JSON body. To the child: {"database_url": ...},
then each batch as a JSON array of records. From the child, one reply per batch: `Reply`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Final

import msgspec

from gateway.accounting.records import AuditRecord
from gateway.store import Store, StoreUnavailable, open_store, sqlite_path

if TYPE_CHECKING:
    from gateway.accounting.accountant import AuditWriter

log = logging.getLogger("tollway")

_HEADER: Final = 4
_encoder: Final = msgspec.json.Encoder()
# What the child needs on its import path: the directory this package was loaded from, so that it
# runs the same code as the gateway that started it.
_CODE_ROOT: Final = str(Path(__file__).resolve().parents[2])


class RecordRefused(Exception):
    """The store refused a batch for what is in it (not an outage): the accountant sets the
    faulty record aside."""


class Reply(msgspec.Struct, omit_defaults=True):
    """The child's answer to one batch: how many records were newly stored, or why none were."""

    written: int = 0
    unavailable: str | None = None  # the store is down or failed: retry later
    refused: str | None = None  # the batch holds a record the store will never take


class Hello(msgspec.Struct):
    database_url: str


def audit_writer(store: Store, database_url: str) -> AuditWriter:
    """What the accountant writes through: a child process, except for an in-memory SQLite
    database, which only this process can see."""
    if database_url.startswith("sqlite:") and sqlite_path(database_url) == ":memory:":
        return store
    return WriterProcess(store, database_url)


def frame(body: bytes) -> bytes:
    return len(body).to_bytes(_HEADER, "big") + body


class WriterProcess:
    """Audit records written through a child process; migrations and retention go through the
    gateway's own store (they are rare and not on the request path)."""

    def __init__(self, store: Store, database_url: str) -> None:
        self._store = store
        self._database_url = database_url
        self._child: asyncio.subprocess.Process | None = None
        self._lock = asyncio.Lock()  # one exchange on the pipe at a time

    @property
    def pid(self) -> int | None:
        """The running child's pid (None before the first write or after it ended)."""
        child = self._child
        return child.pid if child is not None and child.returncode is None else None

    async def migrate(self) -> int:
        return await self._store.migrate()

    async def prune_records(self, before: datetime) -> int:
        return await self._store.prune_records(before)

    async def write_records(self, records: Sequence[AuditRecord]) -> int:
        """Store the records (see Store.write_records). StoreUnavailable when the store or the
        child failed; RecordRefused when the store refused the batch's content."""
        payload = frame(_encoder.encode(list(records)))
        async with self._lock:
            try:
                child = await self._running()
                reply = await _exchange(child, payload)
            except (OSError, EOFError, asyncio.IncompleteReadError, msgspec.DecodeError) as exc:
                self._kill()
                raise StoreUnavailable(f"the audit writer process failed: {exc!r}") from None
            except BaseException:
                self._kill()  # cut mid-exchange (a timeout): the pipe is out of step
                raise
        if reply.unavailable is not None:
            raise StoreUnavailable(reply.unavailable)
        if reply.refused is not None:
            raise RecordRefused(reply.refused)
        return reply.written

    async def close(self, timeout_s: float = 5.0) -> None:
        """Close the child's stdin (it finishes its batch and exits); kill it if it does not."""
        child, self._child = self._child, None
        if child is None or child.returncode is not None:
            return
        if child.stdin is not None:
            child.stdin.close()
        try:
            await asyncio.wait_for(child.wait(), timeout_s)
        except TimeoutError:
            log.warning("the audit writer process did not exit within %.0f s: killed", timeout_s)
            child.kill()
            await child.wait()

    async def _running(self) -> asyncio.subprocess.Process:
        child = self._child
        if child is not None and child.returncode is None:
            return child
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_CODE_ROOT, env.get("PYTHONPATH")) if p)
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "gateway.accounting.writer_process",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env=env,
        )
        assert child.stdin is not None
        child.stdin.write(frame(_encoder.encode(Hello(self._database_url))))
        self._child = child
        return child

    def _kill(self) -> None:
        child, self._child = self._child, None
        if child is not None and child.returncode is None:
            try:
                child.kill()
            except ProcessLookupError:
                pass


async def _exchange(child: asyncio.subprocess.Process, payload: bytes) -> Reply:
    assert child.stdin is not None and child.stdout is not None
    child.stdin.write(payload)
    await child.stdin.drain()
    return msgspec.json.decode(await _read_frame(child.stdout), type=Reply)


async def _read_frame(reader: asyncio.StreamReader) -> bytes:
    """The next frame's body; asyncio.IncompleteReadError at the end of the stream."""
    header = await reader.readexactly(_HEADER)
    return await reader.readexactly(int.from_bytes(header, "big"))


# --- the child ----------------------------------------------------------------------------------

_batch_decoder: Final = msgspec.json.Decoder(list[AuditRecord])


async def write_batch(store: Store, body: bytes) -> Reply:
    """One batch into the store, every failure turned into a reply (the child never dies of a
    bad batch)."""
    try:
        records = _batch_decoder.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        return Reply(refused=f"an undecodable batch: {exc}")
    try:
        return Reply(written=await store.write_records(records))
    except StoreUnavailable as exc:
        return Reply(unavailable=str(exc))
    except Exception as exc:
        return Reply(refused=f"{type(exc).__name__}: {exc}")


async def serve(reader: asyncio.StreamReader, reply_fd: int) -> None:
    """Read the hello and then batches until stdin ends; reply to each on `reply_fd`."""
    try:
        hello = msgspec.json.decode(await _read_frame(reader), type=Hello)
    except asyncio.IncompleteReadError:
        return
    store = open_store(hello.database_url)
    try:
        while True:
            try:
                body = await _read_frame(reader)
            except asyncio.IncompleteReadError:
                return  # the gateway closed the pipe, or died
            reply = frame(_encoder.encode(await write_batch(store, body)))
            try:
                # A blocking write of a few bytes, which the gateway is waiting to read.
                os.write(reply_fd, reply)
            except BrokenPipeError:
                # The gateway died (killed) while this batch was written; its next start replays
                # the spool, and the store keeps each record once.
                log.warning("the gateway is gone, exiting: it replays its spool when it starts")
                return
    finally:
        await store.close()


async def _child_main() -> None:
    # Replies go out on a private copy of stdout, and fd 1 becomes stderr: a stray print from
    # any library cannot corrupt the frames.
    reply_fd = os.dup(1)
    os.dup2(2, 1)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(0, "rb"))
    await serve(reader, reply_fd)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="tollway audit writer: %(levelname)s %(message)s")
    # Ctrl-C and systemd's stop reach the whole process group; the gateway then flushes its
    # queue through this process, so it ends only when the gateway closes its stdin.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    import uvloop

    uvloop.run(_child_main())


if __name__ == "__main__":
    main()
