"""Web UI sessions: a server-side store in memory, the session cookie, and the checks every
state-changing request passes (CSRF token, same origin).

The cookie holds only a random id; who is signed in, and the session's CSRF token, stay on the
server, so signing out (or a restart) ends the session for good. Sessions are per process: behind
several gateway processes, the load balancer keeps a browser on one (sticky sessions).
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import urlsplit

from aiohttp import web

from gateway.admin.identity import AdminIdentity

COOKIE: Final = "tollway_ui"
LOGIN_COOKIE: Final = "tollway_ui_login"  # the CSRF token of the sign-in form, before a session exists
PATH: Final = "/ui"
# Sessions kept at most: past it the oldest go first, so a flood of sign-ins cannot fill memory.
MAX_SESSIONS: Final = 10_000
PENDING_TTL_S: Final = 600.0  # an SSO sign-in left at the IdP's page for longer starts over
MAX_PENDING: Final = 10_000


@dataclass
class Session:
    identity: AdminIdentity
    csrf: str
    expires_at: float  # absolute: session_ttl_s after sign-in
    seen_at: float
    flash: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Pending:
    """An SSO sign-in under way: what the callback must see again (RFC 6749 state, OIDC nonce)
    and the PKCE verifier (RFC 7636) that proves the code is ours."""

    nonce: str
    verifier: str
    created_at: float


def new_token() -> str:
    return secrets.token_urlsafe(32)


def is_https(request: web.Request) -> bool:
    """Whether the browser reached us over TLS: our own, or a proxy's that says so."""
    forwarded = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    return request.scheme == "https" or forwarded == "https"


def own_origin(request: web.Request) -> str:
    host = request.headers.get("X-Forwarded-Host", request.host).split(",")[0].strip()
    return f"{'https' if is_https(request) else 'http'}://{host}"


def cross_origin(request: web.Request) -> bool:
    """Whether the request came from a page of another site: an Origin that is not ours, or on a
    POST without Origin a Referer that is not ours. (A link followed from elsewhere carries a
    foreign Referer and is harmless: only a change is judged by it.)"""
    origin = request.headers.get("Origin")
    if origin is None:
        referer = request.headers.get("Referer")
        if referer is None or request.method != "POST":
            return False
        parts = urlsplit(referer)
        origin = f"{parts.scheme}://{parts.netloc}"
    return origin != own_origin(request)


def tokens_match(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


class Sessions:
    """Signed-in sessions and SSO sign-ins under way, with their expiry."""

    def __init__(self, ttl_s: float, idle_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl_s = ttl_s
        self._idle_s = idle_s
        self._clock = clock
        self._sessions: dict[str, Session] = {}
        self._pending: dict[str, Pending] = {}

    def open(self, identity: AdminIdentity) -> tuple[str, Session]:
        """A new session for `identity`: its id (for the cookie) and the session."""
        now = self._clock()
        self._prune(now)
        session_id = new_token()
        session = Session(identity, new_token(), now + self._ttl_s, now)
        self._sessions[session_id] = session
        return session_id, session

    def get(self, session_id: str | None) -> Session | None:
        """The live session of a cookie's id; an expired or idle one is dropped."""
        if not session_id:
            return None
        session = self._sessions.get(session_id)
        if session is None:
            return None
        now = self._clock()
        if now >= session.expires_at or now - session.seen_at >= self._idle_s:
            del self._sessions[session_id]
            return None
        session.seen_at = now
        return session

    def close(self, session_id: str | None) -> None:
        if session_id:
            self._sessions.pop(session_id, None)

    def begin_sso(self) -> tuple[str, Pending]:
        """A new state value and what its callback must match."""
        now = self._clock()
        self._pending = {k: p for k, p in self._pending.items() if now - p.created_at < PENDING_TTL_S}
        while len(self._pending) >= MAX_PENDING:
            del self._pending[next(iter(self._pending))]
        state = new_token()
        pending = Pending(new_token(), secrets.token_urlsafe(64), now)
        self._pending[state] = pending
        return state, pending

    def finish_sso(self, state: str) -> Pending | None:
        """The sign-in `state` belongs to, once only (a replayed callback finds nothing)."""
        pending = self._pending.pop(state, None)
        if pending is None or self._clock() - pending.created_at >= PENDING_TTL_S:
            return None
        return pending

    def _prune(self, now: float) -> None:
        if len(self._sessions) < MAX_SESSIONS:
            return
        self._sessions = {
            k: s for k, s in self._sessions.items() if now < s.expires_at and now - s.seen_at < self._idle_s
        }
        while len(self._sessions) >= MAX_SESSIONS:
            del self._sessions[next(iter(self._sessions))]


def set_cookie(
    response: web.StreamResponse, request: web.Request, name: str, value: str, max_age: float
) -> None:
    """HttpOnly (no script reads it), SameSite=Lax (not sent on another site's form posts),
    Secure when the browser came over TLS, and only for /ui."""
    response.set_cookie(
        name,
        value,
        max_age=int(max_age),
        path=PATH,
        httponly=True,
        secure=is_https(request),
        samesite="Lax",
    )


def clear_cookie(response: web.StreamResponse, name: str) -> None:
    response.del_cookie(name, path=PATH)
