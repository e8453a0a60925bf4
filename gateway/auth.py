"""Who is calling: the master key now; virtual keys (issue: keys and teams) plug in here.

Runs on every request from memory only; the comparison is constant-time so that response timing
says nothing about how much of a guessed key was right.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from typing import Final

import msgspec

from gateway.errors import unauthorized


class Principal(msgspec.Struct, frozen=True):
    """The authenticated caller. `key_id` is safe to log; it is never the secret."""

    key_id: str


ANONYMOUS: Final = Principal("anonymous")
MASTER: Final = Principal("master")


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The key the client sent: `Authorization: Bearer ...`, else `x-api-key`."""
    authorization = headers.get("Authorization")
    if authorization is not None:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    return headers.get("x-api-key")


class Authenticator:
    """Checks the caller's key. With no master key configured, every caller is anonymous."""

    def __init__(self, master_key: str | None) -> None:
        self._master = master_key.encode() if master_key else None

    @property
    def required(self) -> bool:
        return self._master is not None

    def authenticate(self, headers: Mapping[str, str]) -> Principal:
        """The caller behind these headers; raises GatewayError (401) for a missing or wrong key."""
        if self._master is None:
            return ANONYMOUS
        key = presented_key(headers)
        if key is not None and hmac.compare_digest(key.encode(), self._master):
            return MASTER
        raise unauthorized()
