"""Virtual keys and teams: the records the store keeps and the admin API shows.

A key's secret (`sk-tw-...`) is shown once, at creation; only its SHA-256 is kept. SHA-256 and not
a slow password hash: the secret is 32 random bytes, so there is nothing to brute-force, and the
hot path hashes every presented key.
"""

from __future__ import annotations

import base64
import hashlib
import os
from datetime import datetime
from typing import Annotated, Final, Literal

import msgspec

from gateway.config.schema import Budget, ContentPolicy, Limits, Role

SECRET_PREFIX: Final = "sk-tw-"
# Admin keys (gateway/admin/adminkeys.py) look different, so that one pasted into a client is spotted.
ADMIN_SECRET_PREFIX: Final = "sk-tw-admin-"
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Pattern = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class KeyRecord(msgspec.Struct, frozen=True, omit_defaults=True):
    """A virtual key as stored. `models`/`endpoints`/`regions` absent means "no restriction"
    (for models: the team's list applies, if it has one); `log_content` absent means the team's
    policy, else the global `logging.content`."""

    id: str
    name: str
    secret_hash: str
    created_at: datetime
    updated_at: datetime
    team_id: str | None = None
    owner: str | None = None
    models: list[str] | None = None
    endpoints: list[str] | None = None
    limits: Limits | None = None
    budget: Budget | None = None
    regions: list[str] | None = None
    metadata: dict[str, str] | None = None
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    # Kept in the store's JSON `data` column, so records written before it load as None.
    log_content: ContentPolicy | None = None
    # Default spend tags, added to every request's own (gateway/policy/tags.py); also in `data`.
    tags: list[str] | None = None
    # Rotation (also in `data`): the secret replaced last keeps working until the grace ends.
    # Only one is kept: rotating again within the grace ends the older secret at once.
    previous_secret_hash: str | None = None
    previous_expires_at: datetime | None = None
    rotated_at: datetime | None = None


class TeamRecord(msgspec.Struct, frozen=True, omit_defaults=True):
    """A team: defaults its keys inherit (models, limits, budget, regions, log_content)."""

    id: str
    name: str
    created_at: datetime
    updated_at: datetime
    models: list[str] | None = None
    limits: Limits | None = None
    budget: Budget | None = None
    regions: list[str] | None = None
    metadata: dict[str, str] | None = None
    deleted_at: datetime | None = None
    log_content: ContentPolicy | None = None


class AdminKeyRecord(msgspec.Struct, frozen=True, omit_defaults=True):
    """A key to the admin API for one role (gateway/admin/adminkeys.py), so that the master key need
    not be shared. Hashed like a virtual key; `teams`: the teams a team_admin manages."""

    id: str
    name: str
    secret_hash: str
    role: Role
    created_at: datetime
    updated_at: datetime
    teams: list[str] | None = None
    created_by: str | None = None  # who issued it, as the audit of admin changes names them
    expires_at: datetime | None = None
    revoked_at: datetime | None = None


def new_secret(prefix: str = SECRET_PREFIX) -> str:
    """A fresh key secret: the prefix and 32 random bytes, URL-safe base64 without padding."""
    return prefix + base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()


def hash_secret(secret: str) -> str:
    return "sha256:" + hashlib.sha256(secret.encode()).hexdigest()


def new_id(prefix: Literal["key", "team", "adm"]) -> str:
    return f"{prefix}_{os.urandom(8).hex()}"
