"""Types shared by every adapter: the upstream request, the target, and the error vocabulary."""

from __future__ import annotations

import enum

import msgspec


class UpstreamRequest(msgspec.Struct, frozen=True):
    """One HTTP request to a provider, fully built except for credentials.

    The gateway attaches credentials (gateway/credentials.py) and sends it; adapters never see a
    secret.
    """

    method: str
    url: str
    headers: tuple[tuple[str, str], ...]
    body: bytes


class Target(msgspec.Struct, frozen=True):
    """Where one attempt goes: the provider's base URL and the model it should run."""

    provider: str
    base_url: str
    model: str


class ErrorKind(enum.Enum):
    """What went wrong upstream, in the terms that decide retries and fallback."""

    RATE_LIMITED = "rate_limited"
    OVERLOADED = "overloaded"
    TIMEOUT = "timeout"
    AUTH = "auth"
    BAD_REQUEST = "bad_request"
    CONTEXT_LENGTH = "context_length"
    NOT_FOUND = "not_found"
    SERVER = "server"


class UpstreamError(msgspec.Struct, frozen=True):
    """A provider's error answer, classified.

    `message` is the provider's own text (the gateway redacts secrets before showing it);
    `retry_after_s` is the wait the provider asked for, when it said.
    """

    kind: ErrorKind
    status: int
    message: str
    type: str | None = None
    code: str | None = None
    param: str | None = None
    retry_after_s: float | None = None


class InvalidRequest(ValueError):
    """The client's request cannot be served as sent; the gateway answers 400 with this text."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


class InvalidUpstreamAnswer(ValueError):
    """The provider answered 2xx with something that is not its documented format (a 502)."""
