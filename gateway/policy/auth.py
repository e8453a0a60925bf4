"""Who is calling, answered from memory on every request: the master key, and virtual keys kept
current by gateway/policy/keysync.py. No database round trip on the request path.

The master key is compared in constant time. A virtual key is looked up by the SHA-256 of what
the client sent: a dict lookup on a hash says nothing useful about the secret through timing.
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import re
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Final

import msgspec

from gateway.config.schema import Budget, Config, ContentPolicy, Limits
from gateway.errors.answers import from_code, model_not_found, unauthorized
from gateway.errors.catalogue import ErrorCode
from gateway.policy.keys import KeyRecord, TeamRecord, hash_secret


class ModelMatcher:
    """Logical model names or shell-style patterns (`gpt-4o*`, `claude-?-*`), compiled once.

    `within`: a second list a name must match as well, so that a key in a team serves only what
    both allow (one regex: the key's patterns as a lookahead before the team's).
    """

    __slots__ = ("_regex", "patterns", "within")

    def __init__(self, patterns: Iterable[str], within: Iterable[str] | None = None) -> None:
        self.patterns = tuple(patterns)
        self.within = tuple(within) if within is not None else None
        regex = _any_of(self.patterns)
        if self.within is not None:
            regex = f"(?={regex}){_any_of(self.within)}"
        self._regex = re.compile(regex)

    def __call__(self, model: str) -> bool:
        return self._regex.match(model) is not None


def _any_of(patterns: tuple[str, ...]) -> str:
    # fnmatch.translate anchors each pattern at the end (`\Z`); re.match anchors the start.
    return "(?:" + ("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns) or "(?!)") + ")"


class Principal(msgspec.Struct, frozen=True):
    """The authenticated caller and what it may do. `key_id` and `name` are safe to log."""

    key_id: str
    name: str
    team_id: str | None = None
    models: ModelMatcher | None = None  # None: every model
    endpoints: frozenset[str] | None = None  # None: every endpoint
    limits: Limits | None = None
    budget: Budget | None = None
    team_limits: Limits | None = None
    team_budget: Budget | None = None
    regions: tuple[str, ...] | None = None
    expires_at: float | None = None  # epoch seconds
    revoked: bool = False
    log_content: ContentPolicy | None = None  # the key's, else its team's; None: logging.content
    tags: tuple[str, ...] = ()  # default spend tags (gateway/policy/tags.py)
    # The key's secret before its last rotation: it works until expires_at (the grace's end).
    rotated: bool = False

    def check_model(self, model: str) -> None:
        """Raise GatewayError 404 when this key may not use the logical model: the same answer as
        for a model that does not exist, so that a restricted key cannot map the routes."""
        if self.models is not None and not self.models(model):
            raise model_not_found(model)

    def check_endpoint(self, endpoint: str) -> None:
        if self.endpoints is not None and endpoint not in self.endpoints:
            raise from_code(
                ErrorCode.ENDPOINT_NOT_ALLOWED, f"the key '{self.name}' may not use the {endpoint} endpoint"
            )


ANONYMOUS: Final = Principal("anonymous", "anonymous")
MASTER: Final = Principal("master", "master")


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The key the client sent: `Authorization: Bearer ...`, else `x-api-key`."""
    authorization = headers.get("Authorization")
    if authorization is not None:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    return headers.get("x-api-key")


def _epoch(moment: datetime | None) -> float | None:
    return None if moment is None else moment.timestamp()


def _models(key: KeyRecord, team: TeamRecord | None) -> ModelMatcher | None:
    team_models = team.models if team is not None else None
    if key.models is None:
        return ModelMatcher(team_models) if team_models is not None else None
    return ModelMatcher(key.models, within=team_models)


def _regions(key: KeyRecord, team: TeamRecord | None) -> tuple[str, ...] | None:
    team_regions = team.regions if team is not None else None
    if key.regions is None:
        return tuple(team_regions) if team_regions is not None else None
    return tuple(r for r in key.regions if team_regions is None or r in team_regions)


def principal_of(key: KeyRecord, team: TeamRecord | None) -> Principal:
    """What a key may do: its own settings within its team's. Models and regions are what both
    allow (a key stored before the admin API refused wider ones serves no more than its team);
    limits and budgets are both enforced, as key and team subjects. A key that sets none of a
    field takes the team's."""
    log_content = key.log_content or (team.log_content if team is not None else None)
    return Principal(
        key_id=key.id,
        name=key.name,
        team_id=key.team_id,
        models=_models(key, team),
        endpoints=frozenset(key.endpoints) if key.endpoints is not None else None,
        limits=key.limits,
        budget=key.budget,
        team_limits=team.limits if team is not None else None,
        team_budget=team.budget if team is not None else None,
        regions=_regions(key, team),
        expires_at=_epoch(key.expires_at),
        revoked=key.revoked_at is not None or (team is not None and team.deleted_at is not None),
        log_content=log_content,
        tags=tuple(key.tags) if key.tags else (),
    )


def _sent_bytes(key: str) -> bytes:
    """The key as the bytes the client sent. aiohttp decodes header values as UTF-8 with
    `surrogateescape`, so a header holding non-UTF-8 bytes (`Bearer \\xff\\xfe`) arrives with
    lone surrogates that a plain `encode()` refuses; given back as sent, it is just a wrong key."""
    return key.encode("utf-8", "surrogateescape")


def secret_hash_of(secret: str) -> str:
    """The stored form of a presented secret (virtual or admin key), as the client sent it."""
    return _digest(_sent_bytes(secret))


def _digest(sent: bytes) -> str:
    return "sha256:" + hashlib.sha256(sent).hexdigest()


class KeyRing:
    """Every known key in memory, by the hash of its secret; replaced wholesale on change."""

    def __init__(self, master_key: str | None, config_keys: Iterable[tuple[str, Principal]] = ()) -> None:
        self._master = master_key.encode() if master_key else None
        self._static = dict(config_keys)  # keys declared in the config file, by secret hash
        self._by_hash: dict[str, Principal] = dict(self._static)
        self._keys: dict[str, KeyRecord] = {}
        self._teams: dict[str, TeamRecord] = {}

    @property
    def open(self) -> bool:
        """No master key and no virtual keys: every caller is let in (loopback demos)."""
        return self._master is None and not self._by_hash and not self._keys

    @classmethod
    def from_config(cls, config: Config) -> KeyRing:
        """The ring a start-up serves with: the config's master key and the keys it declares (the
        store's keys come in later, from KeySync)."""
        return cls(config.server.master_key or None, config_principals(config))

    def replace_from_config(self, config: Config) -> None:
        """A reload's master key and config-declared keys (`replace_static` of what `from_config`
        reads, so a start and a reload cannot read the config differently)."""
        self.replace_static(config.server.master_key or None, config_principals(config))

    def replace_static(self, master_key: str | None, config_keys: Iterable[tuple[str, Principal]]) -> None:
        """A reload's master key and config-declared keys; the store's keys stay as they are."""
        self._master = master_key.encode() if master_key else None
        self._static = dict(config_keys)
        self._by_hash = self._index()

    def _index(self) -> dict[str, Principal]:
        """Every secret's principal: config keys, store keys, and the old secrets of keys rotated
        whose grace has not ended at the last change (the end is checked on each request)."""
        by_hash = dict(self._static)
        for record in self._keys.values():
            owner = self._teams.get(record.team_id) if record.team_id else None
            principal = by_hash[record.secret_hash] = principal_of(record, owner)
            if record.previous_secret_hash is not None and record.previous_expires_at is not None:
                grace_end = record.previous_expires_at.timestamp()
                if principal.expires_at is not None:
                    grace_end = min(grace_end, principal.expires_at)
                by_hash[record.previous_secret_hash] = msgspec.structs.replace(
                    principal, expires_at=grace_end, rotated=True
                )
        return by_hash

    @property
    def has_master(self) -> bool:
        return self._master is not None

    def presents_virtual_key(self, headers: Mapping[str, str]) -> bool:
        key = presented_key(headers)
        return key is not None and secret_hash_of(key) in self._by_hash

    def is_master(self, headers: Mapping[str, str]) -> bool:
        key = presented_key(headers)
        return (
            self._master is not None
            and key is not None
            and hmac.compare_digest(_sent_bytes(key), self._master)
        )

    def authenticate(self, headers: Mapping[str, str]) -> Principal:
        """The caller behind these headers; GatewayError 401 for a missing, wrong, revoked or
        expired key."""
        key = presented_key(headers)
        if key is None:
            if self.open:
                return ANONYMOUS
            raise unauthorized()
        sent = _sent_bytes(key)
        if self._master is not None and hmac.compare_digest(sent, self._master):
            return MASTER
        principal = self._by_hash.get(_digest(sent))
        if principal is None:
            if self.open:
                return ANONYMOUS
            raise unauthorized()
        if principal.revoked:
            raise from_code(ErrorCode.KEY_REVOKED, "this API key has been revoked")
        if principal.expires_at is not None and principal.expires_at <= time.time():
            if principal.rotated:
                raise from_code(
                    ErrorCode.KEY_ROTATED,
                    "this API key was rotated and its grace period has ended: use the new secret",
                )
            raise from_code(ErrorCode.KEY_EXPIRED, "this API key has expired")
        return principal

    def apply(self, keys: Iterable[KeyRecord], teams: Iterable[TeamRecord]) -> int:
        """Take in changed keys and teams from the store; returns how many records changed."""
        changed = 0
        for team in teams:
            if self._teams.get(team.id) != team:
                self._teams[team.id] = team
                changed += 1
        for key in keys:
            if self._keys.get(key.id) != key:
                self._keys[key.id] = key
                changed += 1
        if changed:
            self._by_hash = self._index()  # one assignment: a request never sees a half-built ring
        return changed

    def records(self) -> tuple[Mapping[str, KeyRecord], Mapping[str, TeamRecord]]:
        """The store's keys and teams as last applied, by id (read-only views)."""
        return MappingProxyType(self._keys), MappingProxyType(self._teams)


def config_principals(config: Config) -> list[tuple[str, Principal]]:
    """Keys declared in the config file, by the hash of their secret."""
    epoch = datetime.fromtimestamp(0, UTC)
    found = []
    for name, key in config.keys.items():
        secret_hash = key.secret_hash or hash_secret(key.secret or "")
        record = KeyRecord(
            id=f"cfg_{name}",
            name=name,
            secret_hash=secret_hash,
            created_at=epoch,
            updated_at=epoch,
            models=key.models,
            endpoints=list(key.endpoints) if key.endpoints is not None else None,
            limits=key.limits,
            budget=key.budget,
            regions=key.regions,
            metadata=key.metadata,
            log_content=key.log_content,
            tags=key.tags,
        )
        found.append((secret_hash, principal_of(record, None)))
    return found
