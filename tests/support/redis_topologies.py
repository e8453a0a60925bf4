"""Redis as production runs it, started by the tests from Debian's redis-server and redis-sentinel
on free ports in a temporary directory: a primary with a replica watched by three sentinels, and
a three-node Redis Cluster. Both are missing-binary failures, never skips (.ci/run installs them).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import redis.asyncio as aioredis

from tests.conftest import closed_port
from tests.support.fleet_gateways import until

SERVICE = "tollway-primary"
# Sentinel marks the primary down after this long without an answer: short, so a test's
# failover takes about a second, as a tuned production set-up would (the default is 30 s).
DOWN_AFTER_MS = 500


def _binary(name: str) -> str:
    found = shutil.which(name)
    assert found is not None, f"{name} is missing: apt-get install redis-server redis-sentinel (.ci/run does)"
    return found


async def _spawn(*argv: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )


def _server_args(port: int, workdir: Path) -> tuple[str, ...]:
    return (
        *("--port", str(port), "--bind", "127.0.0.1", "--dir", str(workdir)),
        *("--save", "", "--appendonly", "no", "--dbfilename", f"dump-{port}.rdb"),
    )


async def _stop(processes: list[asyncio.subprocess.Process]) -> None:
    for process in processes:
        if process.returncode is None:
            process.kill()
    for process in processes:
        await process.wait()


@dataclass
class SentinelSet:
    """One primary, one replica, three sentinels (quorum 2) monitoring SERVICE."""

    servers: dict[int, asyncio.subprocess.Process]
    sentinels: list[int]
    others: list[asyncio.subprocess.Process] = field(default_factory=list)

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.sentinels)
        return f"redis+sentinel://{hosts}/{SERVICE}"

    async def primary_port(self) -> int:
        """The primary's port as the first sentinel that answers reports it."""
        for port in self.sentinels:
            client = aioredis.Redis(host="127.0.0.1", port=port, socket_timeout=1)
            try:
                host_port = await client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE)
                return int(host_port[1])
            except (aioredis.RedisError, OSError):
                continue
            finally:
                await client.aclose()
        raise AssertionError("no sentinel answers")

    async def kill(self, port: int) -> None:
        """SIGKILL the server on `port`: the sudden death of a primary's VM, as far as a client sees."""
        process = self.servers[port]
        process.kill()
        await process.wait()


@contextlib.asynccontextmanager
async def sentinel_set(workdir: Path) -> AsyncIterator[SentinelSet]:
    server_bin, sentinel_bin = _binary("redis-server"), _binary("redis-sentinel")
    primary, replica = closed_port(), closed_port()
    sentinel_ports = [closed_port() for _ in range(3)]
    started = SentinelSet({}, sentinel_ports)
    try:
        started.servers[primary] = await _spawn(server_bin, *_server_args(primary, workdir))
        started.servers[replica] = await _spawn(
            server_bin, *_server_args(replica, workdir), "--replicaof", "127.0.0.1", str(primary)
        )
        for port in sentinel_ports:
            conf = workdir / f"sentinel-{port}.conf"  # sentinel rewrites its file: one each
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {workdir}\n"
                f"sentinel monitor {SERVICE} 127.0.0.1 {primary} 2\n"
                f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}\n"
                f"sentinel failover-timeout {SERVICE} 5000\n"
            )
            started.others.append(await _spawn(sentinel_bin, str(conf)))
        replica_client = aioredis.Redis(host="127.0.0.1", port=replica)
        try:

            async def replicating() -> bool:
                info = await replica_client.info("replication")
                return info.get("master_link_status") == "up"

            await until(replicating, "the replica to follow the primary")
        finally:
            await replica_client.aclose()
        for port in sentinel_ports:
            client = aioredis.Redis(host="127.0.0.1", port=port)
            try:

                async def knows_all(client: aioredis.Redis = client) -> bool:
                    replicas = await client.execute_command("SENTINEL", "REPLICAS", SERVICE)
                    peers = await client.execute_command("SENTINEL", "SENTINELS", SERVICE)
                    return len(replicas) == 1 and len(peers) == 2

                await until(knows_all, f"sentinel {port} to know the replica and its peers")
            finally:
                await client.aclose()
        yield started
    finally:
        await _stop([*started.servers.values(), *started.others])


@dataclass
class ClusterSet:
    ports: list[int]
    processes: list[asyncio.subprocess.Process]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{port}" for port in self.ports)


def _cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free and valid too."""
    while True:
        port = closed_port()
        if port + 10000 > 65535:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port


@contextlib.asynccontextmanager
async def cluster(workdir: Path, nodes: int = 3) -> AsyncIterator[ClusterSet]:
    """A Redis Cluster of `nodes` primaries (no replicas), every slot assigned, state ok."""
    server_bin, cli_bin = _binary("redis-server"), _binary("redis-cli")
    ports = [_cluster_port() for _ in range(nodes)]
    started = ClusterSet(ports, [])
    try:
        for port in ports:
            started.processes.append(
                await _spawn(
                    server_bin,
                    *_server_args(port, workdir),
                    *("--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{port}.conf"),
                    *("--cluster-node-timeout", "2000"),
                )
            )
        for port in ports:
            client = aioredis.Redis(host="127.0.0.1", port=port)
            try:
                await until(client.ping, f"cluster node {port}")
            finally:
                await client.aclose()
        create = await asyncio.create_subprocess_exec(
            cli_bin,
            "--cluster",
            "create",
            *(f"127.0.0.1:{port}" for port in ports),
            *("--cluster-replicas", "0", "--cluster-yes"),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await create.communicate()
        assert create.returncode == 0, output.decode(errors="replace")
        for port in ports:
            client = aioredis.Redis(host="127.0.0.1", port=port)
            try:

                async def ok(client: aioredis.Redis = client) -> bool:
                    info = await client.execute_command("CLUSTER", "INFO")
                    text = info.decode() if isinstance(info, bytes) else str(info)
                    return "cluster_state:ok" in text

                await until(ok, f"cluster node {port} to report state ok")
            finally:
                await client.aclose()
        yield started
    finally:
        await _stop(started.processes)
