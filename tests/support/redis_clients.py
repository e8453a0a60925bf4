"""Fixtures: a process's shared Redis client (gateway/store/redisconn.py) of the real Redis, and one of a
Redis that is not there (a closed port), each closed after the test."""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator

import pytest

from gateway.config.schema.redis import parse_url
from gateway.store.redisconn import RedisClient, connect

REDIS_URL = os.environ.get("TOLLWAY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
async def shared() -> AsyncIterator[RedisClient]:
    client = connect(parse_url(REDIS_URL))
    yield client
    await client.aclose()


@pytest.fixture
async def unreachable() -> AsyncIterator[RedisClient]:
    with socket.socket() as probe:  # a port nothing listens on (conftest imports this module)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = connect(parse_url(f"redis://127.0.0.1:{port}/0"))
    yield client
    await client.aclose()
