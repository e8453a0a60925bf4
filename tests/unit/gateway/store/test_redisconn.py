"""storage.redis in each of its forms: what parse makes of it, what it refuses (with the reason),
and that the shared client of each kind is the one redis-py class that handles its failover."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.sentinel import SentinelConnectionPool

from gateway.config.load import ConfigError, parse_config
from gateway.config.schema.redis import RedisBlock, RedisTarget, parse, parse_url
from gateway.store.redisconn import connect, hash_tag


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ("redis://127.0.0.1:6379/2", RedisTarget("plain", url="redis://127.0.0.1:6379/2")),
        (
            "redis+sentinel://:pw@a:26380,b/primary/3",
            RedisTarget(
                "sentinel", nodes=(("a", 26380), ("b", 26379)), service="primary", db=3, password="pw"
            ),
        ),
        (
            "rediss+cluster://a:7000,b:7001",
            RedisTarget("cluster", nodes=(("a", 7000), ("b", 7001)), tls=True),
        ),
        (
            RedisBlock(sentinels=["s1:1", "s2:2"], service="tw", sentinel_password="x"),
            RedisTarget("sentinel", nodes=(("s1", 1), ("s2", 2)), service="tw", sentinel_password="x"),
        ),
        (RedisBlock(cluster=["c1"]), RedisTarget("cluster", nodes=(("c1", 6379),))),
    ],
)
def test_each_form_parses(setting: str | RedisBlock, expected: RedisTarget) -> None:
    assert parse(setting) == expected


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("redis+sentinel://a:1", "service_name"),
        ("redis+sentinel://a:1/s/x", "db must be a number"),
        ("redis+cluster://a:1/0", "cluster has no service name or db"),
        ("redis+gossip://a:1", "unknown scheme"),
        ("redis+cluster://:x@", "names no host"),
    ],
)
def test_bad_urls_say_what_is_wrong(url: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_url(url)


def test_config_errors_name_storage_redis() -> None:
    with pytest.raises(ConfigError, match=r"storage\.redis: sentinels need the service name"):
        parse_config('storage: {redis: {sentinels: ["a:1"]}}', {}, "x")
    with pytest.raises(ConfigError, match="not both"):
        parse_config('storage: {redis: "redis://a", redis_url: "redis://b"}', {}, "x")
    assert parse_config(
        'storage: {redis_url: "redis://a:1/0"}', {}, "x"
    ).storage.redis_target() == RedisTarget("plain", url="redis://a:1/0")


def test_the_password_is_never_described() -> None:
    target = parse_url("redis+sentinel://:hunter2@a:1/s")
    assert "hunter2" not in target.describe() and "hunter2" not in repr(target)


async def test_each_kind_gets_the_client_that_follows_its_failover() -> None:
    plain = connect(parse_url("redis://127.0.0.1:1/0"))
    sentinel = connect(parse_url("redis+sentinel://127.0.0.1:1/s"))
    cluster = connect(parse_url("redis+cluster://127.0.0.1:1"))
    try:
        assert isinstance(plain, aioredis.Redis) and not isinstance(
            plain.connection_pool, SentinelConnectionPool
        )
        assert isinstance(sentinel, aioredis.Redis) and isinstance(
            sentinel.connection_pool, SentinelConnectionPool
        )
        assert isinstance(cluster, RedisCluster)
    finally:
        for client in (plain, sentinel, cluster):
            await client.aclose()


def test_keys_of_one_subject_share_a_tag() -> None:
    counter = "tollway:" + hash_tag("lim:key:a}b:req")
    assert counter.split("{", 1)[1].split("}", 1)[0] == (counter + ":p").split("{", 1)[1].split("}", 1)[0]
