"""gateway/policy/teamrules.py: when a key asks for more than its team allows."""

from __future__ import annotations

import fnmatch
import itertools

import pytest

from gateway.config.schema import Budget, Limits
from gateway.policy.teamrules import beyond_team, excesses, pattern_within
from tests.unit.gateway.policy.test_auth import NOW, key, team


@pytest.mark.parametrize(
    ("key_pattern", "team_pattern", "within"),
    [
        ("demo", "demo", True),
        ("demo", "demo*", True),
        ("demo-slow", "demo*", True),
        ("demo-*", "demo*", True),
        ("demo*", "demo*", True),
        ("demo?", "demo*", True),
        ("demo-[ab]", "demo*", True),
        ("demo-[ab]", "demo-[ab]", True),
        ("demo-a", "demo-[ab]", True),
        ("demo-c", "demo-[ab]", False),
        ("demo-[ab]", "demo-a", False),
        ("demo-[ab]", "demo-?", True),
        ("demo-?", "demo-[ab]", False),
        ("demo-?", "demo-?", True),
        ("demo-*", "demo-?", False),  # `*` may match no character, or several
        ("demo*", "demo?*", False),  # `demo` itself is outside `demo?*`
        ("demo?*", "demo*", True),
        ("*", "demo*", False),
        ("d*", "demo*", False),
        ("secret-model", "demo", False),
        ("secret-model", "*", True),
        ("*", "*", True),
        ("", "*", True),
        ("demo", "", False),
        ("*a", "*[ab]", True),
        ("x*-yz", "x*[ab]yz", False),
        ("x*ayz", "x*[ab]yz", True),
        ("a[", "a[", True),  # an unclosed bracket is a literal, as in fnmatch
        ("a[", "a?", True),
    ],
)
def test_pattern_within(key_pattern: str, team_pattern: str, within: bool) -> None:
    assert pattern_within(key_pattern, team_pattern) is within


def test_pattern_within_is_sound_on_every_short_name() -> None:
    """Whenever a key pattern is judged within a team pattern, no name it matches is outside."""
    patterns = ["a", "ab", "a*", "*b", "a?", "?", "*", "a[ab]", "[ab]*", "a?*", "*a*", "[!a]b", "b"]
    names = ["".join(chars) for n in range(4) for chars in itertools.product("ab", repeat=n)]
    for key_pattern, team_pattern in itertools.product(patterns, repeat=2):
        if pattern_within(key_pattern, team_pattern):
            wider = [
                n
                for n in names
                if fnmatch.fnmatchcase(n, key_pattern) and not fnmatch.fnmatchcase(n, team_pattern)
            ]
            assert not wider, (key_pattern, team_pattern, wider)


@pytest.mark.parametrize(
    ("key_fields", "team_fields", "fields"),
    [
        ({"models": ["secret-model"]}, {"models": ["demo"]}, ["models"]),
        ({"models": ["demo-1", "demo-*"]}, {"models": ["demo*"]}, []),
        ({"models": ["demo-1"]}, {}, []),
        ({}, {"models": ["demo"]}, []),
        ({"limits": Limits(rpm=61, tpm=10)}, {"limits": Limits(rpm=60, tpm=10)}, ["limits.rpm"]),
        (
            {"limits": Limits(rpm=10, max_parallel=9)},
            {"limits": Limits(max_parallel=8)},
            ["limits.max_parallel"],
        ),
        ({"limits": Limits(tpm=10**9)}, {"limits": Limits(rpm=5)}, []),
        ({"budget": Budget(amount=10)}, {"budget": Budget(amount=10)}, []),
        ({"budget": Budget(amount=11)}, {"budget": Budget(amount=10)}, ["budget.amount"]),
        ({"budget": Budget(amount=5, period="day")}, {"budget": Budget(amount=10)}, []),
        ({"budget": Budget(amount=5)}, {"budget": Budget(amount=10, period="day")}, ["budget"]),
        ({"budget": Budget(amount=5, period="week")}, {"budget": Budget(amount=10)}, ["budget"]),
        ({"budget": Budget(amount=5, currency="CHF")}, {"budget": Budget(amount=10)}, ["budget"]),
        ({"budget": Budget(amount=5)}, {"budget": Budget(amount=10, period="total")}, []),
        ({"regions": ["eu", "us"]}, {"regions": ["eu"]}, ["regions"]),
        ({"regions": ["eu"]}, {"regions": ["eu", "us"]}, []),
        (
            {"models": ["x"], "limits": Limits(rpm=9), "regions": ["us"]},
            {"models": ["demo"], "limits": Limits(rpm=1), "regions": ["eu"]},
            ["models", "limits.rpm", "regions"],
        ),
    ],
)
def test_excesses(key_fields: dict[str, object], team_fields: dict[str, object], fields: list[str]) -> None:
    found = excesses(key(team_id="team_1", **key_fields), team(**team_fields))
    assert [e.field for e in found] == fields


def test_beyond_team_skips_revoked_keys_and_deleted_teams() -> None:
    narrow = team(models=["demo"])
    wide = key(id="key_wide", team_id="team_1", models=["secret-model"])
    teams = {"team_1": narrow, "team_2": team(id="team_2", models=["demo"], deleted_at=NOW)}
    keys = [
        wide,
        key(id="key_ok", team_id="team_1", models=["demo"]),
        key(id="key_revoked", team_id="team_1", models=["secret-model"], revoked_at=NOW),
        key(id="key_gone", team_id="team_2", models=["secret-model"]),
        key(id="key_alone", models=["secret-model"]),
    ]
    found = beyond_team(keys, teams)
    assert list(found) == ["key_wide"] and found["key_wide"][0].field == "models"
