"""`GET /v1/key/info`: a virtual key describes itself to whoever holds it: its models, limits,
budget and the spend of the budget's current period, expiry and team; never its secret or hash.

Answered from memory (the key ring and the budget book), like every request with a key.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Final

import msgspec
from aiohttp import web

from gateway.accounting.records import utc
from gateway.config.schema import Budget, Limits
from gateway.errors.answers import from_code, unauthorized
from gateway.errors.catalogue import ErrorCode
from gateway.policy.auth import ANONYMOUS, MASTER, KeyRing, Principal
from gateway.policy.budgetpolicy import BudgetStatus, BudgetSubject, key_budget, team_budget

SpendOf = Callable[[BudgetSubject], BudgetStatus | None]


class KeyInfo(msgspec.Struct, omit_defaults=True):
    """What a key may do and has spent. Models, limits and budget are the key's own; the team's
    apply as well (`team_*`): a call must fit both."""

    id: str
    name: str
    object: str  # "key_info"; no default, so that omit_defaults keeps it
    team_id: str | None = None
    models: list[str] | None = None  # None: every model (within the team's)
    team_models: list[str] | None = None
    endpoints: list[str] | None = None
    limits: Limits | None = None
    team_limits: Limits | None = None
    budget: Budget | None = None
    spend: BudgetStatus | None = None  # the key budget's current period
    team_budget: Budget | None = None
    team_spend: BudgetStatus | None = None
    regions: list[str] | None = None
    created_at: datetime | None = None
    expires_at: datetime | None = None  # when this secret stops working
    rotated_at: datetime | None = None
    # Called with the secret a rotation replaced: it works until expires_at, then the new one must.
    rotated: bool = False


_encode: Final = msgspec.json.Encoder()


def key_info(principal: Principal, ring: KeyRing, spend_of: SpendOf) -> KeyInfo:
    keys, teams = ring.records()
    record = keys.get(principal.key_id)
    team = teams.get(principal.team_id) if principal.team_id is not None else None
    matcher = principal.models
    if record is not None:
        models = record.models
    else:  # a key declared in the config file: what its principal holds
        models = list(matcher.patterns) if matcher is not None else None
    return KeyInfo(
        id=principal.key_id,
        name=principal.name,
        object="key_info",
        team_id=principal.team_id,
        models=models,
        team_models=team.models if team is not None else None,
        endpoints=sorted(principal.endpoints) if principal.endpoints is not None else None,
        limits=principal.limits,
        team_limits=principal.team_limits,
        budget=principal.budget,
        spend=spend_of(key_budget(principal, principal.budget)) if principal.budget else None,
        team_budget=principal.team_budget,
        team_spend=(
            spend_of(team_budget(principal.team_id, principal.team_budget))
            if principal.team_budget is not None and principal.team_id is not None
            else None
        ),
        regions=list(principal.regions) if principal.regions is not None else None,
        created_at=record.created_at if record is not None else None,
        expires_at=utc(principal.expires_at) if principal.expires_at is not None else None,
        rotated_at=record.rotated_at if record is not None else None,
        rotated=principal.rotated,
    )


def key_info_handler(ring: KeyRing, spend_of: SpendOf) -> Callable[[web.Request], Awaitable[web.Response]]:
    """The handler: 401 for a missing, wrong, revoked or expired key; 400 for the master key."""

    async def handler(request: web.Request) -> web.Response:
        principal = ring.authenticate(request.headers)
        if principal is ANONYMOUS:
            raise unauthorized()
        if principal is MASTER:
            raise from_code(
                ErrorCode.NOT_A_VIRTUAL_KEY,
                "the master key is not a virtual key: /v1/key/info describes the key it is called with",
            )
        body = _encode.encode(key_info(principal, ring, spend_of))
        return web.Response(body=body, content_type="application/json")

    return handler
