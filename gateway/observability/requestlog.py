"""One structured JSON line per request, written off the event loop.

The loop thread only encodes the record (a microsecond with msgspec) and appends the bytes to a
batch; a timer hands each batch to a writer thread, which does the blocking write, so a slow disk
or a full pipe to journald never stalls a request. Batching on the loop side matters: waking the
writer once per request made it fight the loop for the GIL, which cost more than the write.
"""

from __future__ import annotations

import asyncio
import queue
import sys
import threading
from typing import IO, Final

import msgspec


class AttemptRecord(msgspec.Struct, omit_defaults=True):
    """One upstream call of a request: the target ("provider/model"), the upstream's status when
    it answered, the failure kind when it failed (`cancelled`: a hedged call that lost), and how
    long it took to its answer or failure, in milliseconds."""

    target: str  # the target called, as "provider/model"
    ms: float = 0.0  # milliseconds from sending the call to its answer or failure
    status: int | None = None  # the upstream's HTTP status, when one came
    error: str | None = None  # the failure kind (an ErrorKind value: `timeout`, `unreachable`, `cancelled`)


class RequestRecord(msgspec.Struct, omit_defaults=True):
    """What the log says about one request. Never carries a prompt, an answer or a secret."""

    ts: float  # unix time (wall clock) when the request started
    request_id: str  # the same id as the `x-request-id` header, the audit record and any error
    endpoint: str  # what was asked for: chat, embeddings, messages, responses, rerank...
    status: int  # the HTTP status sent to the client; 499 when the client hung up first
    latency_ms: float  # from the request's first bytes to the last byte of the answer
    stream: bool  # whether the answer was streamed
    key_id: str | None = None  # the id of the gateway key that called (never the secret)
    team_id: str | None = None  # the key's team
    user: str | None = None  # the request's end-user id (its `user` field), as the client sent it
    model: str | None = None  # the logical model the client asked for
    provider: str | None = None  # the provider that answered
    target_model: str | None = None  # the provider's model name that answered
    ttfb_ms: float | None = None  # to the first byte of a successful answer (streams: first event)
    tokens_in: int | None = None  # prompt tokens, as the provider reported them (or estimated)
    tokens_out: int | None = None  # completion tokens, likewise
    error_code: str | None = None  # the answer's error code, when it was an error (docs/errors.md)
    error_kind: str | None = None  # the last upstream failure's kind, when an upstream failed
    attempts: list[AttemptRecord] | None = None  # every upstream call, in the order they started
    overhead_ms: float | None = None  # time in the gateway itself, upstream waits excluded
    cache: str | None = None  # "hit" when answered from the answer cache
    flags: list[str] | None = None  # guardrail findings (categories only)
    cost_micros: int | None = None  # what the request cost, in millionths of a USD
    tags: list[str] | None = None  # spend tags: the key's and the request's (gateway/policy/tags.py)
    trace_id: str | None = None  # the request's trace (32 hex digits) when tracing is configured


_encode: Final = msgspec.json.Encoder()
_STOP: Final = b""
# How long lines wait on the loop side before going to the writer: log latency, not request latency.
FLUSH_INTERVAL_S: Final = 0.05


class RequestLog:
    """A background writer of JSON lines to a stream or file ("stdout", "stderr", "off", path)."""

    def __init__(self, destination: str) -> None:
        self._queue: queue.SimpleQueue[bytes] = queue.SimpleQueue()
        self._owned: IO[bytes] | None = None
        self._out: IO[bytes] | None
        if destination == "off":
            self._out = None
        elif destination == "stdout":
            self._out = sys.stdout.buffer
        elif destination == "stderr":
            self._out = sys.stderr.buffer
        else:
            self._out = self._owned = open(destination, "ab")
        self._thread: threading.Thread | None = None
        self._batch: list[bytes] = []
        self._flush_scheduled = False
        if self._out is not None:
            self._thread = threading.Thread(target=self._run, name="tollway-request-log", daemon=True)
            self._thread.start()

    def write(self, record: RequestRecord) -> None:
        """Queue one line; call from the event loop."""
        if self._thread is None:
            return
        self._batch.append(_encode.encode(record))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_later(FLUSH_INTERVAL_S, self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._batch:
            batch, self._batch = self._batch, []
            self._queue.put(b"\n".join(batch) + b"\n")

    def _run(self) -> None:
        out = self._out
        assert out is not None
        while True:
            line = self._queue.get()
            batch = [line]
            # Drain what queued up meanwhile: one write call per burst, not per request.
            while line != _STOP:
                try:
                    line = self._queue.get_nowait()
                except queue.Empty:
                    break
                batch.append(line)
            try:
                out.write(b"".join(batch))
                out.flush()
            except (OSError, ValueError):
                pass  # a closed stdout must not take the gateway down with it
            if batch[-1] == _STOP:
                return

    def close(self) -> None:
        """Write what is queued, then stop the writer."""
        self._flush()
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join(timeout=5)
            self._thread = None
        if self._owned is not None:
            self._owned.close()
            self._owned = None
