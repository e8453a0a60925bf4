"""What each admin role may do, in one place: the checks the admin API (and the web UI) make
before an operation, each refusal a 403 in the OpenAI error shape that names the role and what it
may not do.

`admin` does anything. `team_admin` manages the keys of its own teams (create, change, revoke,
rotate) and reads their keys, spend, records and changes; it may rename its teams and change
their metadata, but not create or delete teams, nor change what a team allows (models, limits,
budget, regions, content policy): that envelope is the admin's, and the keys it manages stay
within it. `viewer` reads keys, teams, spend, records and changes, and changes nothing. Admin keys
are an admin's alone.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from gateway.admin.identity import AdminIdentity
from gateway.errors.answers import GatewayError, from_code
from gateway.errors.catalogue import ErrorCode

# The team fields a team_admin may change on its own teams.
TEAM_ADMIN_TEAM_FIELDS: Final = frozenset({"name", "metadata"})


def forbidden(identity: AdminIdentity, what: str) -> GatewayError:
    return from_code(ErrorCode.ROLE_FORBIDDEN, f"the {identity.role} '{identity.who}' may not {what}")


def require_writer(identity: AdminIdentity, what: str) -> None:
    if not identity.can_write:
        raise forbidden(identity, f"{what}: a viewer changes nothing")


def require_admin(identity: AdminIdentity, what: str) -> None:
    require_writer(identity, what)
    if not identity.is_admin:
        raise forbidden(identity, f"{what}: only an admin may")


def _teams(identity: AdminIdentity) -> str:
    return ", ".join(identity.teams) or "none"


def require_manages(identity: AdminIdentity, team_id: str | None, what: str) -> None:
    """403 unless `identity` may change keys of `team_id` (None: keys of no team)."""
    require_writer(identity, what)
    if not identity.manages_team(team_id):
        where = f"team {team_id}" if team_id else "no team"
        raise forbidden(identity, f"{what} of {where}: it manages the keys of its teams ({_teams(identity)})")


def require_sees(identity: AdminIdentity, team_id: str | None, what: str) -> None:
    """403 unless `identity` may read what belongs to `team_id`."""
    if not identity.sees_team(team_id):
        where = f"team {team_id}" if team_id else "no team"
        raise forbidden(identity, f"see {what} of {where}: it sees its own teams ({_teams(identity)})")


def require_team_fields(identity: AdminIdentity, team_id: str, fields: Iterable[str]) -> None:
    """403 unless `identity` may change these fields of the team `team_id`."""
    require_writer(identity, "change teams")
    if identity.is_admin:
        return
    if not identity.manages_team(team_id):
        raise forbidden(identity, f"change team {team_id}: it manages its teams ({_teams(identity)})")
    beyond = sorted(set(fields) - TEAM_ADMIN_TEAM_FIELDS)
    if beyond:
        raise forbidden(
            identity,
            f"change {', '.join(beyond)} of a team: a team's models, limits, budget, regions and "
            "content policy are set by an admin (a team_admin may change its name and metadata)",
        )


def team_scope(identity: AdminIdentity) -> tuple[str, ...] | None:
    """The teams a listing is narrowed to: a team admin's own, None (every team) for the others."""
    return identity.teams if identity.role == "team_admin" else None


def is_team_scope(identity: AdminIdentity) -> bool:
    return identity.role == "team_admin"
