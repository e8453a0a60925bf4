"""The listening sockets of `tollway serve`, bound before anything else starts.

Binding first means a taken port (or an address this machine does not have) ends the process at
once with one log line, before any Redis client, store pool or background task exists that would
have to be shut down again: a start that cannot listen has nothing to clean up.
"""

from __future__ import annotations

import contextlib
import socket
from typing import Final

BACKLOG: Final = 2048


def bind_listeners(host: str, port: int, *, reuse_port: bool = False) -> list[socket.socket]:
    """Listening, non-blocking sockets on every address `host` resolves to, all on `port` (0: the
    first one's free port for all). OSError (nothing left open) when any of them cannot be bound."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    bound: list[socket.socket] = []
    seen: set[tuple[int, object]] = set()
    try:
        for family, kind, proto, _name, address in infos:
            if (family, address[0]) in seen:
                continue
            seen.add((family, address[0]))
            sock = socket.socket(family, kind, proto)
            bound.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                # Without it "::" would also take the IPv4 port that the "0.0.0.0" socket binds.
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((address[0], port, *address[2:]))
            if port == 0:
                port = sock.getsockname()[1]
            sock.listen(BACKLOG)
            sock.setblocking(False)
    except BaseException:
        for sock in bound:
            with contextlib.suppress(OSError):
                sock.close()
        raise
    return bound


def cannot_listen_reason(exc: OSError) -> str:
    """What went wrong, as an operator reads it ("address already in use"), without a traceback."""
    return exc.strerror.lower() if exc.strerror else str(exc)
