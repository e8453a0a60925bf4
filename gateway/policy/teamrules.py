"""A key within its team: what a key may ask for when its team sets models, limits, a budget or
regions. The admin API and the CLI refuse a key (or a team change) that breaks the rule, and the
key sync reports stored keys that break it; requests are held to both key and team either way
(gateway/policy/auth.py `principal_of`, and the key and team subjects of limits and budgets).

The rule, field by field, when the team sets the field (a team that sets none leaves it free):
  - models: every key pattern must fall within one of the team's patterns, judged by their shape:
    a team `*` covers any run of the key's pattern (wildcards included), a team `?` one character
    or `?` or a class, a team `[class]` a literal it matches or the same class, a literal only
    itself. So `gpt-4o-mini` and `gpt-4o-*` fall within `gpt-4o*`; `gpt-*` does not.
  - limits: each of `rpm`, `tpm`, `max_parallel` the key sets is at most the team's.
  - budget: the key's is in the team's currency, over the same period or one that always lies
    inside one of the team's (a day within a week or month; anything within `total`), and its
    amount is at most the team's. Anything else is not comparable and refused.
  - regions: a subset of the team's.
A key that sets nothing for a field takes the team's.
"""

from __future__ import annotations

import fnmatch
import functools
import re
from collections.abc import Iterable, Mapping
from typing import Final

import msgspec

from gateway.config.schema import Budget, Limits, Period
from gateway.errors.answers import GatewayError, from_code
from gateway.errors.catalogue import ErrorCode
from gateway.policy.keys import KeyRecord, TeamRecord

# Key budget period -> the team periods it always lies within (weeks start on Monday and do not
# nest in months).
_NESTS_IN: Final[dict[Period, frozenset[Period]]] = {
    "day": frozenset({"day", "week", "month", "total"}),
    "week": frozenset({"week", "total"}),
    "month": frozenset({"month", "total"}),
    "total": frozenset({"total"}),
}
_GLOB: Final = re.compile(r"[*?\[]")
_GLOB_OR_CLASS_END: Final = re.compile(r"[*?\[\]]")  # what bounds a pattern's literal ends
# A key named in a refusal of a team change: this many, then "and N more".
MAX_NAMED_KEYS: Final = 5


class Excess(msgspec.Struct, frozen=True):
    """One field where a key asks for more than its team allows."""

    field: str  # "models", "limits.rpm", "budget", "regions"
    detail: str


def _tokens(pattern: str) -> list[str]:
    """A glob as fnmatch reads it: `*`, `?`, a whole `[...]` class, or one literal character."""
    found: list[str] = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "[":
            # fnmatch: a `]` right after `[` or `[!` belongs to the class; no closing `]`: literal.
            j = i + 1
            if j < len(pattern) and pattern[j] == "!":
                j += 1
            if j < len(pattern) and pattern[j] == "]":
                j += 1
            end = pattern.find("]", j)
            if end != -1:
                found.append(pattern[i : end + 1])
                i = end + 1
                continue
        found.append(char)
        i += 1
    return found


def _one_within(key: str, team: str) -> bool:
    """Whether every character the key's token matches is matched by the team's token."""
    if team == "?" or key == team:
        return True
    if len(key) == 1 and key not in "*?[" and len(team) > 1:  # a literal against a team class
        return fnmatch.fnmatchcase(key, team)
    return False


# The key sync checks every key after each change; patterns repeat across keys, so the answers do.
@functools.lru_cache(maxsize=4096)
def pattern_within(key: str, team: str) -> bool:
    """Whether every model name `key` matches is matched by `team` (sound, by the patterns' shape:
    a pattern it cannot prove within is refused)."""
    if not _GLOB.search(key):
        return fnmatch.fnmatchcase(key, team)  # a plain name: exactly whether the team's matches it
    # The team's literal ends must be the key's too (a literal covers only itself): most pairs of
    # unrelated patterns are told apart here, without the table below.
    parts = _GLOB_OR_CLASS_END.split(team)
    head, tail = parts[0], parts[-1]
    if not (key.startswith(head) and key.endswith(tail)):
        return False
    return _tokens_within(_tokens(key), _tokens(team))


def _tokens_within(k: list[str], t: list[str]) -> bool:
    """Wildcard matching with the key's tokens as the text: a team `*` absorbs any run of them,
    every other team token exactly one it covers. Greedy, backing up to the last team `*` (each
    run between stars is best matched as early as it can be), so linear in practice."""
    i = j = 0
    star, mark = -1, 0
    while i < len(k):
        if j < len(t) and t[j] != "*" and k[i] != "*" and _one_within(k[i], t[j]):
            i, j = i + 1, j + 1
        elif j < len(t) and t[j] == "*":
            star, mark = j, i
            j += 1
        elif star != -1:
            mark += 1  # the last team `*` absorbs one more key token; retry from there
            i, j = mark, star + 1
        else:
            return False
    while j < len(t) and t[j] == "*":
        j += 1
    return j == len(t)


def _models(key: list[str], team: list[str]) -> list[Excess]:
    wider = [p for p in key if not any(pattern_within(p, allowed) for allowed in team)]
    if not wider:
        return []
    return [Excess("models", f"{', '.join(wider)} not within the team's {', '.join(team) or '(none)'}")]


def _limits(key: Limits, team: Limits) -> list[Excess]:
    found = []
    for name in ("rpm", "tpm", "max_parallel"):
        mine, ceiling = getattr(key, name), getattr(team, name)
        if mine is not None and ceiling is not None and mine > ceiling:
            found.append(Excess(f"limits.{name}", f"{mine} above the team's {ceiling}"))
    return found


def _budget(key: Budget, team: Budget) -> list[Excess]:
    if key.currency != team.currency or team.period not in _NESTS_IN[key.period]:
        detail = (
            f"{key.currency} per {key.period} is not comparable with the team's "
            f"{team.currency} per {team.period}"
        )
        return [Excess("budget", detail)]
    if key.amount > team.amount:
        return [Excess("budget.amount", f"{key.amount:g} above the team's {team.amount:g}")]
    return []


def _regions(key: list[str], team: list[str]) -> list[Excess]:
    outside = [r for r in key if r not in team]
    if not outside:
        return []
    return [Excess("regions", f"{', '.join(outside)} not among the team's {', '.join(team) or '(none)'}")]


def excesses(key: KeyRecord, team: TeamRecord) -> list[Excess]:
    """Every field where `key` asks for more than `team` allows (empty: the key fits)."""
    found: list[Excess] = []
    if key.models is not None and team.models is not None:
        found += _models(key.models, team.models)
    if key.limits is not None and team.limits is not None:
        found += _limits(key.limits, team.limits)
    if key.budget is not None and team.budget is not None:
        found += _budget(key.budget, team.budget)
    if key.regions is not None and team.regions is not None:
        found += _regions(key.regions, team.regions)
    return found


def beyond_team(keys: Iterable[KeyRecord], teams: Mapping[str, TeamRecord]) -> dict[str, list[Excess]]:
    """The active keys of active teams that ask for more than their team allows, by key id:
    what the key sync reports about keys stored before the admin API refused them."""
    found: dict[str, list[Excess]] = {}
    for key in keys:
        team = teams.get(key.team_id) if key.team_id is not None else None
        if key.revoked_at is None and team is not None and team.deleted_at is None:
            if excess := excesses(key, team):
                found[key.id] = excess
    return found


def describe(excess: Iterable[Excess]) -> str:
    """`models: x not within ...; limits.rpm: 90 above the team's 60`."""
    return "; ".join(f"{e.field}: {e.detail}" for e in excess)


def key_beyond_team(found: list[Excess]) -> GatewayError:
    """The admin API's 400 for a key that asks for more than its team; `param` is the first field."""
    return from_code(
        ErrorCode.BEYOND_TEAM,
        f"the key asks for more than its team allows: {describe(found)}",
        param=found[0].field,
    )


def team_below_keys(beyond: list[tuple[KeyRecord, list[Excess]]]) -> GatewayError:
    """The admin API's 400 for a team change that would leave some of its keys beyond it."""
    named = "; ".join(f"{k.id} ('{k.name}') {describe(e)}" for k, e in beyond[:MAX_NAMED_KEYS])
    more = f" and {len(beyond) - MAX_NAMED_KEYS} more" if len(beyond) > MAX_NAMED_KEYS else ""
    return from_code(
        ErrorCode.TEAM_BELOW_KEYS,
        f"{len(beyond)} active key(s) of this team would ask for more than it allows; narrow or "
        f"revoke them first: {named}{more}",
        param=beyond[0][1][0].field,
    )
