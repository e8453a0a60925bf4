"""What a running gateway holds in memory: the libraries of features it does not use are never
imported, and its resident memory under load stays within the bound docs/operations.md states.

Both drive the real `tollway serve`. The imports are read from `python -X importtime`, which
reports every module the moment it is first imported, at start-up or later inside a request, so
a library pulled in lazily by the first call of a door is seen too.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import aiohttp
import anthropic
import msgspec
import openai
import pytest
import yaml

from bench.procs import process_tree, vm_hwm_bytes
from tests.support.redis_clients import REDIS_URL

pytestmark = pytest.mark.integration

# Each costs megabytes resident (measured alone over a bare interpreter: redis-py ~20, jwt with
# cryptography ~15, the OpenTelemetry SDK and exporter ~15, jinja2 ~7, asyncpg ~13), and each
# serves one feature: Redis, Entra ID or the admin UI's OIDC, tracing, the admin UI, PostgreSQL.
UNUSED_HERE = ("redis", "jwt", "cryptography", "opentelemetry", "jinja2", "asyncpg")
# docs/operations.md: peak resident memory under load, the audit writer process included.
RSS_BOUND_MIB = 100
VIRTUAL_KEY = "sk-tw-footprint-0123456789abcdef0123"


class Running:
    """A `tollway serve` whose stderr goes to a file: start-up JSON lines and importtime's."""

    def __init__(self, process: subprocess.Popen[bytes], stderr: Path, url: str) -> None:
        self.process = process
        self.stderr = stderr
        self.url = url

    def imported(self) -> set[str]:
        """Every module imported so far, by its full dotted name."""
        names = set()
        for line in self.stderr.read_bytes().splitlines():
            if line.startswith(b"import time:") and b"|" in line:
                names.add(line.rsplit(b"|", 1)[1].strip().decode())
        names.discard("imported package")  # importtime's header line
        return names


Serve = Callable[[Path | None], Running]


def full_config(tmp_path: Path, extra: dict[str, object] | None = None) -> Path:
    """The path users run, on the built-in mock provider: a virtual key with limits and a
    budget, SQLite accounting (so the audit writer process runs), a request log to a file."""
    config: dict[str, object] = {
        "server": {"host": "127.0.0.1", "port": 0},
        "logging": {"request_log": str(tmp_path / "requests.log")},
        "storage": {
            "database_url": f"sqlite:///{tmp_path}/tollway.sqlite",
            "spool_dir": str(tmp_path / "spool"),
        },
        "keys": {
            "app": {
                "secret": VIRTUAL_KEY,
                "limits": {"rpm": 10_000_000, "tpm": 10_000_000_000},
                "budget": {"amount": 1_000_000, "period": "month"},
            }
        },
        "providers": {"mock": {"kind": "mock"}},
        "models": {"demo": {"targets": [{"provider": "mock", "model": "mock-1"}]}},
        **(extra or {}),
    }
    path = tmp_path / "tollway.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def launch(tmp_path: Path, config: Path | None, *, importtime: bool) -> Running:
    """`tollway serve` on a free port, once it logs that it listens; stderr to a file."""
    stderr = tmp_path / f"stderr-{time.monotonic_ns()}.log"
    env = {k: v for k, v in os.environ.items() if k not in ("TOLLWAY_CONFIG", "TOLLWAY_MASTER_KEY")}
    flags = ["-X", "importtime"] if importtime else []
    args = ["--config", str(config)] if config is not None else []
    with stderr.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, *flags, "-m", "gateway.cli.main", "serve", "--port", "0", *args],
            cwd=tmp_path,  # no config/ here: without --config the embedded default serves
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=sink,
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and process.poll() is None:
        for line in stderr.read_bytes().splitlines():
            if line.startswith(b"{") and b'"listening"' in line:
                return Running(process, stderr, str(msgspec.json.decode(line)["address"]))
        time.sleep(0.05)
    stop(process)
    raise AssertionError(f"tollway did not start:\n{stderr.read_text(errors='replace')[-3000:]}")


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Serve]:
    """Start `tollway serve` under `python -X importtime`; every one started is stopped."""
    started: list[Running] = []

    def start(config: Path | None) -> Running:
        started.append(launch(tmp_path, config, importtime=True))
        return started[-1]

    yield start
    for running in started:
        stop(running.process)


def exercise_every_door(url: str, key: str) -> None:
    """One call through each door the embedded default serves, streamed and not, and the
    operator's endpoints: whatever they import lazily is imported by the time this returns."""
    with openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0) as sdk:
        messages: list[openai.types.chat.ChatCompletionMessageParam] = [{"role": "user", "content": "ping"}]
        assert sdk.chat.completions.create(model="demo", messages=messages).choices[0].message.content
        assert list(sdk.chat.completions.create(model="demo", messages=messages, stream=True))
        assert sdk.responses.create(model="demo", input="ping").output_text
        assert list(sdk.responses.create(model="demo", input="ping", stream=True))
        assert sdk.embeddings.create(model="demo", input="ping").data
    with anthropic.Anthropic(base_url=url, api_key=key, max_retries=0) as claude:
        said = claude.messages.create(
            model="demo", max_tokens=32, messages=[{"role": "user", "content": "ping"}]
        )
        assert said.content
        with claude.messages.stream(
            model="demo", max_tokens=32, messages=[{"role": "user", "content": "ping"}]
        ) as stream:
            assert stream.get_final_message().content
    for path in ("/metrics", "/health/ready", "/v1/models"):
        asked = urllib.request.Request(url + path, headers={"Authorization": f"Bearer {key}"})
        with urllib.request.urlopen(asked, timeout=30) as answer:
            assert answer.status == 200, path


def unused_libraries(imported: set[str]) -> list[str]:
    return sorted(name for name in imported if name.split(".")[0] in UNUSED_HERE)


def test_the_embedded_default_imports_no_library_of_a_feature_it_does_not_use(serve: Serve) -> None:
    running = serve(None)
    exercise_every_door(running.url, "unused")
    assert "aiohttp" in running.imported()  # the reading sees the gateway's own imports
    assert unused_libraries(running.imported()) == []


def test_every_feature_of_the_path_users_run_still_imports_none_of_them(serve: Serve, tmp_path: Path) -> None:
    running = serve(full_config(tmp_path))
    exercise_every_door(running.url, VIRTUAL_KEY)
    assert unused_libraries(running.imported()) == []


def test_a_configured_redis_is_imported_when_it_is_configured(serve: Serve, tmp_path: Path) -> None:
    # The other side: the reading is not blind to a library imported after start-up's own
    # imports. (redis-py brings some of the others itself: its own tracing and TLS helpers.)
    storage = {"database_url": f"sqlite:///{tmp_path}/tollway.sqlite", "redis": REDIS_URL}
    running = serve(full_config(tmp_path, {"storage": storage}))
    exercise_every_door(running.url, VIRTUAL_KEY)
    assert "redis.asyncio" in unused_libraries(running.imported())


def peak_rss_mib(pid: int) -> dict[int, float]:
    """VmHWM, the kernel's high-water mark of resident memory, of `pid` and each descendant."""
    return {each: vm_hwm_bytes(each) / 2**20 for each in process_tree(pid)}


async def load(url: str, requests: int, concurrency: int) -> int:
    """`requests` chat completions, `concurrency` at a time, half of them streamed; the OKs."""
    body = {"model": "demo", "messages": [{"role": "user", "content": "ping " * 40}]}
    headers = {"Authorization": f"Bearer {VIRTUAL_KEY}"}
    left = iter(range(requests))
    ok = 0

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal ok
        for n in left:
            async with session.post(
                url + "/v1/chat/completions", json={**body, "stream": n % 2 == 0}
            ) as answer:
                await answer.read()
                ok += answer.status == 200

    async with aiohttp.ClientSession(headers=headers) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    return ok


def test_resident_memory_under_load_stays_within_the_stated_bound(tmp_path: Path) -> None:
    # Without importtime: it keeps a record per module, which is not what a user runs.
    running = launch(tmp_path, full_config(tmp_path), importtime=False)
    try:
        ok = asyncio.run(load(running.url, requests=6000, concurrency=64))
        assert ok == 6000
        time.sleep(1.5)  # the accountant's last batches reach the writer process
        peaks = peak_rss_mib(running.process.pid)
        assert len(peaks) == 2, f"the gateway and its audit writer process: {peaks}"
        assert sum(peaks.values()) < RSS_BOUND_MIB, f"peak RSS by process, MiB: {peaks}"
    finally:
        stop(running.process)
