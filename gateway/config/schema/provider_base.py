"""What every provider kind has (timeouts, region, circuit breaker, quota), and what every
provider reached over HTTP has besides (base URL, key, headers, pool, client)."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from gateway.config.schema.base import HttpUrl, Seconds, Section
from gateway.config.schema.limits import Limits


class Timeouts(Section, frozen=True):
    """How long to wait on an upstream: to connect, for the response headers, for all of it."""

    connect_s: Seconds = 5.0  # to open a connection
    first_byte_s: Seconds = 60.0  # for the response headers, and any silence between two stream reads
    total_s: Seconds = 600.0  # for the whole answer, streams included


class BreakerConfig(Section, frozen=True):
    """When a target is skipped for a while: after `failures` failed calls in a row it cools down
    for `cooldown_s` (longer if the provider's Retry-After asks), then one probe call decides."""

    failures: Annotated[int, msgspec.Meta(ge=1)] = 3  # failed calls in a row that open the breaker
    cooldown_s: Seconds = 30.0  # how long the target is skipped before its probe call


class BaseProvider(Section, frozen=True, tag_field="kind", kw_only=True):
    timeout: Timeouts = Timeouts()
    # Where the provider processes data (`eu`, `ch`, `us`...): keys restricted to regions use only
    # targets of providers tagged with one of them.
    region: Annotated[str, msgspec.Meta(min_length=1)] | None = None
    breaker: BreakerConfig = BreakerConfig()
    # The gateway's own quota at this provider, shared by every key (gateway/policy/limits.py).
    limits: Limits | None = None


class BaseHttpProvider(BaseProvider, frozen=True, kw_only=True):
    """What every provider reached over HTTP has: where, the key, extra headers, a pool size."""

    base_url: HttpUrl  # the API root the adapter's paths are appended to
    api_key: str | None = None  # the provider's key; never logged, scrubbed from error texts
    # Extra headers sent upstream (OpenAI-Organization, a proxy's auth...). Treated as secrets.
    headers: dict[str, str] = {}
    # Every open stream holds a connection: a pool smaller than the streams a gateway carries
    # makes the next stream wait for one to end. 1024 file descriptors fit well in the unit's
    # LimitNOFILE (65536).
    max_connections: Annotated[int, msgspec.Meta(ge=1)] = 1024
    # The HTTP client: `lean` (keep-alive connections as raw protocols, aiohttp's C parser, one
    # timer per request: about a fifth of aiohttp's CPU per call) or `aiohttp` (its ClientSession).
    http_client: Literal["lean", "aiohttp"] = "lean"
    # false: the provider's models take no reasoning control (gpt-4.1 behind `openai`, a vLLM
    # model, Claude 3.5): a `reasoning_effort`, however it came, is dropped and named in
    # `x-tollway-dropped-fields` rather than sent.
    reasoning: bool = True
