"""The `server:` section: where the gateway listens, and the bounds it holds clients to."""

from __future__ import annotations

from typing import Annotated

import msgspec

from gateway.config.schema.base import Seconds, Section


class ServerConfig(Section, frozen=True):
    # The address to listen on; one beyond loopback requires `master_key`.
    host: str = "127.0.0.1"
    port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 4000  # 0: any free port
    # Empty means "no master key" so that `${TOLLWAY_MASTER_KEY:-}` works in shared files.
    master_key: str | None = None
    # A larger request body is answered 413 (multipart uploads: only their text fields count).
    max_body_bytes: Annotated[int, msgspec.Meta(ge=1024)] = 4 * 1024 * 1024
    # After SIGTERM: how long in-flight requests and streams may take to finish before they are cut.
    shutdown_grace_s: Seconds = 30.0
    # A client must send a request's whole head (request line and headers) within this long of its
    # first byte (of connecting, for the first request), or the connection is closed: slow-loris.
    header_timeout_s: Seconds = 10.0
    # An idle keep-alive connection is closed after this long (longer than clients' own pool
    # expiry, 5 s in httpx and the OpenAI SDKs, so the client is the one that lets go first).
    keepalive_timeout_s: Seconds = 75.0
    # Client connections open at once; one more is closed at once (each is a file descriptor, and
    # LimitNOFILE in the unit file is 65536 for clients and upstreams together).
    max_connections: Annotated[int, msgspec.Meta(ge=1)] = 10_000
