"""Who is administering, as one small value: the web UI's sign-in yields it (master key or single
sign-on), and the admin API can hold its callers to the same roles.

Three roles, from most to least: `admin` changes anything; `team_admin` manages the keys of its
own teams and sees their spend, never another team's; `viewer` reads and changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final, Literal

import msgspec

from gateway.config.schema import GroupRole, Role

Via = Literal["master_key", "admin_key", "sso"]
# When one person is in several mapped groups, the strongest role wins.
_RANK: Final[dict[str, int]] = {"admin": 3, "team_admin": 2, "viewer": 1}


class AdminIdentity(msgspec.Struct, frozen=True):
    """`who` is what the audit of admin changes names: "master", an admin key's id, or the
    SSO user's email."""

    who: str
    role: Role
    via: Via
    teams: tuple[str, ...] = ()

    @property
    def can_write(self) -> bool:
        return self.role != "viewer"

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def sees_team(self, team_id: str | None) -> bool:
        """Whether the spend, keys and records of `team_id` (None: keys of no team) are visible."""
        return self.role != "team_admin" or (team_id is not None and team_id in self.teams)

    def manages_team(self, team_id: str | None) -> bool:
        """Whether keys of `team_id` may be created, changed or revoked by this identity."""
        return self.role == "admin" or (
            self.role == "team_admin" and team_id is not None and team_id in self.teams
        )


MASTER: Final = AdminIdentity("master", "admin", "master_key")


def from_groups(who: str, groups: Iterable[str], mapping: Mapping[str, GroupRole]) -> AdminIdentity | None:
    """The identity an SSO user's groups grant (None when no group of theirs is mapped): the
    strongest role among them, and for team_admin the teams of all its team_admin groups."""
    granted = [mapping[group] for group in groups if group in mapping]
    if not granted:
        return None
    role = max((grant.role for grant in granted), key=_RANK.__getitem__)
    teams: tuple[str, ...] = ()
    if role == "team_admin":
        teams = tuple(sorted({team for grant in granted if grant.role == role for team in grant.teams}))
    return AdminIdentity(who, role, "sso", teams)
