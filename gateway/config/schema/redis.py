"""`storage.redis`: the forms it takes (a URL or a block), and what one names, parsed and checked
without connecting. The client built from it is gateway/store/redisconn.py."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Final, Literal
from urllib.parse import unquote, urlsplit

import msgspec

from gateway.config.schema.base import Section

DEFAULT_PORT: Final = 6379
SENTINEL_PORT: Final = 26379
# What a config field holding a Redis URL accepts (parse_url says what is wrong beyond that).
REDIS_URL_PATTERN: Final = r"^(rediss?(\+sentinel|\+cluster)?|unix)://"

_Node = Annotated[str, msgspec.Meta(pattern=r"^[^\s:,/]+(:\d{1,5})?$")]


class RedisBlock(Section, frozen=True):
    """`storage.redis` as a block: exactly one of `url`, `sentinels` (with `service`), `cluster`."""

    url: str | None = None
    sentinels: list[_Node] = []
    service: str | None = None  # the name the sentinels monitor (`sentinel monitor <name> ...`)
    cluster: list[_Node] = []
    db: Annotated[int, msgspec.Meta(ge=0)] = 0
    username: str | None = None
    password: str | None = None
    sentinel_password: str | None = None  # when the sentinels ask for one of their own
    tls: bool = False


RedisSetting = str | RedisBlock


@dataclass(frozen=True)
class RedisTarget:
    """Where the process's Redis is, parsed once from the config."""

    mode: Literal["plain", "sentinel", "cluster"]
    url: str = ""  # plain only
    nodes: tuple[tuple[str, int], ...] = ()  # sentinels, or cluster seed nodes
    service: str = ""
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    sentinel_password: str | None = field(default=None, repr=False)
    tls: bool = False

    def describe(self) -> str:
        """For log lines: the mode and addresses, never a password."""
        if self.mode == "plain":
            parts = urlsplit(self.url)
            return f"redis {parts.hostname or parts.path}:{parts.port or DEFAULT_PORT}"
        nodes = ",".join(f"{host}:{port}" for host, port in self.nodes)
        return (
            f"redis sentinel {nodes} service {self.service}"
            if self.mode == "sentinel"
            else f"redis cluster {nodes}"
        )


def _nodes(text: str, default_port: int) -> tuple[tuple[str, int], ...]:
    found: list[tuple[str, int]] = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        host, _, port = item.rpartition(":") if ":" in item else (item, "", "")
        if not host or (port and not port.isdigit()):
            raise ValueError(f"not a host:port: {item!r}")
        found.append((host.strip("[]"), int(port) if port else default_port))
    if not found:
        raise ValueError("names no host")
    return tuple(found)


def parse_url(url: str) -> RedisTarget:
    """A RedisTarget from one of the URL forms above; ValueError naming what is wrong."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError("expected redis://, rediss://, unix://, redis+sentinel:// or redis+cluster://")
    scheme = scheme.lower()
    if scheme in ("redis", "rediss", "unix"):
        return RedisTarget("plain", url=url)
    if scheme not in ("redis+sentinel", "rediss+sentinel", "redis+cluster", "rediss+cluster"):
        raise ValueError(f"unknown scheme {scheme}://")
    tls = scheme.startswith("rediss")
    credentials, at, location = rest.rpartition("@")
    if not at:
        credentials, location = "", rest
    username, _, password = credentials.partition(":")
    hosts, _, path = location.partition("/")
    segments = [unquote(part) for part in path.split("/") if part]
    user, secret = unquote(username) or None, unquote(password) or None
    if scheme.endswith("cluster"):
        if segments:
            raise ValueError("a cluster has no service name or db in its URL (cluster: db 0 only)")
        return RedisTarget(
            "cluster", nodes=_nodes(hosts, DEFAULT_PORT), username=user, password=secret, tls=tls
        )
    if not segments or len(segments) > 2:
        raise ValueError("expected redis+sentinel://host:port,host:port/service_name[/db]")
    if len(segments) == 2 and not segments[1].isdigit():
        raise ValueError(f"db must be a number, not {segments[1]!r}")
    db = int(segments[1]) if len(segments) == 2 else 0
    nodes = _nodes(hosts, SENTINEL_PORT)
    return RedisTarget(
        "sentinel", nodes=nodes, service=segments[0], db=db, username=user, password=secret, tls=tls
    )


def parse(setting: RedisSetting) -> RedisTarget:
    """A RedisTarget from `storage.redis` (a URL or a block); ValueError naming what is wrong."""
    if isinstance(setting, str):
        return parse_url(setting)
    chosen = [name for name in ("url", "sentinels", "cluster") if getattr(setting, name)]
    if len(chosen) != 1:
        raise ValueError("give exactly one of url, sentinels (with service) or cluster")
    if setting.url is not None:
        return parse_url(setting.url)
    user, secret, tls = setting.username, setting.password, setting.tls
    if setting.cluster:
        if setting.db:
            raise ValueError("a cluster has only db 0")
        nodes = _nodes(",".join(setting.cluster), DEFAULT_PORT)
        return RedisTarget("cluster", nodes=nodes, username=user, password=secret, tls=tls)
    if not setting.service:
        raise ValueError("sentinels need the service name they monitor (service:)")
    return RedisTarget(
        "sentinel",
        nodes=_nodes(",".join(setting.sentinels), SENTINEL_PORT),
        service=setting.service,
        db=setting.db,
        username=user,
        password=secret,
        sentinel_password=setting.sentinel_password,
        tls=tls,
    )
