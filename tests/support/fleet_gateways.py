"""N real gateway processes (`python -m gateway.cli.main serve`) sharing a redis-server of their own,
for tests/integration/test_fleet_limits.py and, run as a module, the measurement docs/limits-and-budgets.md quotes:

    PYTHONPATH=$PWD python -m tests.support.fleet_gateways --runs 10 --processes 2 3

Each run starts a fresh redis-server and fresh processes, sends 3x a key's rpm spread evenly over
the processes and over `--spread` seconds (a few callers each), and counts the answers that were
not 429s.
A Redis of their own: other gateways on the shared Redis would join the fleet (the process
registry is per Redis), and the count of live processes is part of how leases are split.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import redis.asyncio as aioredis

from tests.conftest import closed_port

SECRET = "sk-tw-fleet-" + "0" * 24
CALLERS = 4  # concurrent callers per process
SYNC_INTERVAL_S = 0.2  # the default of limits.sync_interval_s


@dataclass
class Fleet:
    urls: list[str]
    redis: aioredis.Redis


def fleet_config(redis_url: str, rpm: int, max_parallel: int | None = None) -> str:
    limits = f"rpm: {rpm}" + (f", max_parallel: {max_parallel}" if max_parallel else "")
    return (
        'logging: {request_log: "off"}\n'
        f'storage: {{redis_url: "{redis_url}"}}\n'
        f"limits: {{sync_interval_s: {SYNC_INTERVAL_S}}}\n"
        "providers: {mock: {kind: mock}}\n"
        "models: {demo: {targets: [{provider: mock, model: m}]}}\n"
        f"keys: {{app: {{secret: '{SECRET}', limits: {{{limits}}}}}}}\n"
    )


async def until(condition: Callable[[], Awaitable[object]], what: str, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if await condition():
                return
        except (httpx.HTTPError, aioredis.RedisError, OSError):
            pass
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def redis_server(port: int) -> asyncio.subprocess.Process:
    """A redis-server on `port` that keeps nothing on disk, once it answers."""
    server = await asyncio.create_subprocess_exec(
        *("redis-server", "--port", str(port), "--bind", "127.0.0.1"),
        *("--save", "", "--appendonly", "no"),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    client = aioredis.from_url(f"redis://127.0.0.1:{port}/0")
    try:
        await until(client.ping, "redis-server")
    finally:
        await client.aclose()
    return server


@contextlib.asynccontextmanager
async def gateways(config: Path, size: int, workdir: Path) -> AsyncIterator[list[str]]:
    """`size` `tollway serve` processes on `config`, each once ready: their base URLs. Stopped
    with SIGTERM (a graceful drain that flushes spend and audit records) on the way out."""
    ports = [closed_port() for _ in range(size)]
    processes: list[asyncio.subprocess.Process] = []
    try:
        for port in ports:
            command = ("-m", "gateway.cli.main", "serve", "--config", str(config), "--port", str(port))
            processes.append(
                await asyncio.create_subprocess_exec(
                    sys.executable,
                    *command,
                    cwd=workdir,
                    stdout=asyncio.subprocess.DEVNULL,
                    stderr=asyncio.subprocess.DEVNULL,
                )
            )
        urls = [f"http://127.0.0.1:{port}" for port in ports]
        async with httpx.AsyncClient(timeout=2) as http:
            for url in urls:

                async def ready(url: str = url) -> bool:
                    return (await http.get(url + "/health/ready")).status_code == 200

                await until(ready, f"{url} to be ready")
        yield urls
    finally:
        for process in processes:
            if process.returncode is None:
                process.terminate()
        for process in processes:
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                process.kill()
                await process.wait()


@contextlib.asynccontextmanager
async def fleet(size: int, rpm: int, workdir: Path, max_parallel: int | None = None) -> AsyncIterator[Fleet]:
    """`size` gateway processes on one fresh redis-server, each registered in the fleet."""
    redis_port = closed_port()
    redis_url = f"redis://127.0.0.1:{redis_port}/0"
    server = await redis_server(redis_port)
    config = workdir / f"fleet-{uuid.uuid4().hex[:8]}.yaml"
    config.write_text(fleet_config(redis_url, rpm, max_parallel))
    client = aioredis.from_url(redis_url)
    try:
        async with gateways(config, size, workdir) as urls:

            async def registered() -> bool:
                return int(await client.zcard("tollway:procs:limits")) >= size

            await until(registered, f"{size} processes in the fleet")
            yield Fleet(urls, client)
    finally:
        await client.aclose()
        server.kill()
        await server.wait()


async def burst(
    urls: list[str], total: int, spread_s: float, callers: int = CALLERS, secret: str = SECRET
) -> list[int]:
    """`total` chat requests with `secret` spread evenly over `urls` and over `spread_s` seconds
    (0: as fast as `callers` callers per process can send them): the statuses."""
    per_process = total // len(urls)
    gap_s = spread_s / per_process
    headers = {"authorization": f"Bearer {secret}"}
    body = {"model": "demo", "messages": [{"role": "user", "content": "hi"}]}
    statuses: list[int] = []
    limits = httpx.Limits(max_connections=callers * len(urls))
    async with httpx.AsyncClient(timeout=5, limits=limits) as http:
        start = time.monotonic()

        async def caller(url: str, first: int) -> None:
            for index in range(first, per_process, callers):
                await asyncio.sleep(start + index * gap_s - time.monotonic())
                response = await http.post(url + "/v1/chat/completions", json=body, headers=headers)
                statuses.append(response.status_code)

        await asyncio.gather(*(caller(url, first) for url in urls for first in range(callers)))
    return statuses


async def measure(size: int, rpm: int, runs: int, spread_s: float, workdir: Path) -> list[int]:
    admitted: list[int] = []
    for _ in range(runs):
        async with fleet(size, rpm, workdir) as gateways:
            started = time.monotonic()
            statuses = await burst(gateways.urls, 3 * rpm, spread_s)
            took = time.monotonic() - started
        assert set(statuses) <= {200, 429}, sorted(set(statuses))
        admitted.append(statuses.count(200))
        print(f"  {size} processes, rpm {rpm}: {admitted[-1]} of {3 * rpm} in {took:.2f} s", flush=True)
    return admitted


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--rpm", type=int, default=40)
    parser.add_argument("--processes", type=int, nargs="+", default=[2, 3])
    parser.add_argument("--spread", type=float, default=1.0, help="seconds over which to send (0: at once)")
    args = parser.parse_args()
    workdir = Path(f"/tmp/tollway-fleet-{uuid.uuid4().hex[:8]}")
    workdir.mkdir()
    for size in args.processes:
        found = asyncio.run(measure(size, args.rpm, args.runs, args.spread, workdir))
        print(f"{size} processes, rpm {args.rpm}, over {args.spread} s, {args.runs} runs: {sorted(found)}")


if __name__ == "__main__":
    main()
