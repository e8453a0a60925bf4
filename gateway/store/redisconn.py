"""The one Redis client of a gateway process, built from `storage.redis`: a plain Redis, a primary
found through Sentinel, or a Redis Cluster (Valkey the same way).

Every Redis user (limits and budgets sync, cooldowns, the answer cache's shared tier, key-change
announcements, the readiness probe) takes this client, so a process holds one connection pool
(one per cluster node) instead of one per feature, and a failover is handled in one place:

- Sentinel: redis-py's `Sentinel.master_for` asks the sentinels for the primary on each new
  connection; a connection that fails (the primary died) or finds a replica (READONLY, the old
  primary came back demoted) is dropped, so the next call goes to the new primary.
- Cluster: `RedisCluster` routes each command by the key's slot and reloads the slot map on
  MOVED or a lost node. Commands and scripts that name several keys must keep them in one slot:
  the fleet sync wraps each dimension's keys in one hash tag, the cooldowns share one tag.

Accepted forms of `storage.redis` (parsed and checked by gateway/config/schema/redis.py):

    redis://[user:password@]host:port/db       (rediss:// for TLS, unix:///path.sock)
    redis+sentinel://[:password@]host:port,host:port/service[/db]
    redis+cluster://[:password@]host:port,host:port
    {sentinels: [host:port, ...], service: name, password: ..., sentinel_password: ..., db: 0}
    {cluster: [host:port, ...], password: ...}

Nothing here connects: a client is built without I/O and connects on its first command.
"""

from __future__ import annotations

from typing import Final

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.sentinel import Sentinel, SentinelManagedConnection, SentinelManagedSSLConnection
from redis.exceptions import RedisClusterException

from gateway.config.schema.redis import RedisTarget

# A client used by background tasks only: a call that takes longer than this is a Redis in
# trouble (each feature bounds its own calls tighter where it must, e.g. the cache's GET).
SOCKET_TIMEOUT_S: Final = 2.0
CONNECT_TIMEOUT_S: Final = 1.0

RedisClient = aioredis.Redis | RedisCluster
# What a Redis call may raise when Redis is down, slow or failing over. redis-py's cluster errors
# (a slot not covered while a node is away, a cluster it cannot reach) are not RedisErrors.
REDIS_ERRORS: Final = (aioredis.RedisError, RedisClusterException, OSError, TimeoutError)


def connect(target: RedisTarget, *, socket_timeout: float = SOCKET_TIMEOUT_S) -> RedisClient:
    """The client for `target` (no I/O yet). Close it with `await client.aclose()`."""
    connect_timeout = CONNECT_TIMEOUT_S
    if target.mode == "plain":
        client: aioredis.Redis = aioredis.from_url(
            target.url, socket_timeout=socket_timeout, socket_connect_timeout=connect_timeout
        )
        return client
    if target.mode == "cluster":
        return RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in target.nodes],
            username=target.username,
            password=target.password,
            ssl=target.tls,
            socket_timeout=socket_timeout,
            socket_connect_timeout=connect_timeout,
        )
    sentinel = Sentinel(
        list(target.nodes),
        sentinel_kwargs={
            "password": target.sentinel_password,
            "socket_timeout": socket_timeout,
            "socket_connect_timeout": connect_timeout,
        },
        socket_timeout=socket_timeout,
        socket_connect_timeout=connect_timeout,
    )
    # TLS to the primary is a connection class of its own in redis-py's Sentinel support.
    connection = SentinelManagedSSLConnection if target.tls else SentinelManagedConnection
    primary: aioredis.Redis = sentinel.master_for(
        target.service,
        db=target.db,
        username=target.username,
        password=target.password,
        connection_class=connection,
    )
    return primary


def hash_tag(subject: str) -> str:
    """`{subject}`: keys that share it share a cluster slot. The tag is the text up to the first
    `}`, so a subject containing braces still gives every key of that subject one slot."""
    return "{" + subject + "}"
