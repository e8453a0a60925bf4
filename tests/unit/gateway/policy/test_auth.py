"""gateway/policy/auth.py: master key, virtual keys from memory, team inheritance, model patterns."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from gateway.config.schema import Limits
from gateway.errors.answers import GatewayError, model_not_found
from gateway.policy.auth import ANONYMOUS, MASTER, KeyRing, ModelMatcher, presented_key, principal_of
from gateway.policy.keys import KeyRecord, TeamRecord, hash_secret, new_secret

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
SECRET = new_secret()


def key(**fields: object) -> KeyRecord:
    base: dict[str, object] = {
        "id": "key_1",
        "name": "app",
        "secret_hash": hash_secret(SECRET),
        "created_at": NOW,
        "updated_at": NOW,
    }
    return KeyRecord(**(base | fields))  # type: ignore[arg-type]


def team(**fields: object) -> TeamRecord:
    base: dict[str, object] = {"id": "team_1", "name": "research", "created_at": NOW, "updated_at": NOW}
    return TeamRecord(**(base | fields))  # type: ignore[arg-type]


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def test_secret_format() -> None:
    assert SECRET.startswith("sk-tw-") and len(SECRET) >= 6 + 43
    assert new_secret() != SECRET


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Authorization": "Bearer abc"}, "abc"),
        ({"Authorization": "bearer  abc "}, "abc"),
        ({"x-api-key": "abc"}, "abc"),
        ({"Authorization": "Basic abc", "x-api-key": "k"}, "k"),
        ({}, None),
    ],
)
def test_presented_key(headers: dict[str, str], expected: str | None) -> None:
    assert presented_key(headers) == expected


def test_master_key_and_wrong_keys() -> None:
    ring = KeyRing("master-secret")
    assert ring.authenticate(bearer("master-secret")) is MASTER
    for headers in ({}, bearer("master-secre"), bearer("master-secret2")):
        with pytest.raises(GatewayError) as caught:
            ring.authenticate(headers)
        assert caught.value.status == 401


@pytest.mark.parametrize("name", ["Authorization", "x-api-key"])
def test_a_key_of_non_utf8_bytes_is_a_wrong_key(name: str) -> None:
    # aiohttp hands such a header over decoded with surrogateescape: b"\xff\xfe\xc3" is this.
    sent = b"\xff\xfe\xc3".decode("utf-8", "surrogateescape")
    headers = {name: f"Bearer {sent}" if name == "Authorization" else sent}
    ring = KeyRing("master-secret")
    ring.apply([key()], [])
    with pytest.raises(GatewayError) as caught:
        ring.authenticate(headers)
    assert caught.value.status == 401
    assert not ring.is_master(headers) and not ring.presents_virtual_key(headers)


def test_open_only_without_any_key() -> None:
    assert KeyRing(None).authenticate({}) is ANONYMOUS
    ring = KeyRing(None)
    ring.apply([key()], [])
    with pytest.raises(GatewayError):
        ring.authenticate({})
    assert ring.authenticate(bearer(SECRET)).key_id == "key_1"


def test_virtual_key_lifecycle() -> None:
    ring = KeyRing("m")
    assert ring.apply([key()], []) == 1
    assert ring.authenticate(bearer(SECRET)).name == "app"
    assert ring.apply([key()], []) == 0, "an unchanged record is not a change"
    ring.apply([key(revoked_at=NOW, updated_at=NOW + timedelta(seconds=1))], [])
    with pytest.raises(GatewayError) as caught:
        ring.authenticate(bearer(SECRET))
    assert caught.value.code == "key_revoked"


def test_expired_key() -> None:
    ring = KeyRing("m")
    past = datetime.fromtimestamp(time.time() - 1, UTC)
    ring.apply([key(expires_at=past)], [])
    with pytest.raises(GatewayError) as caught:
        ring.authenticate(bearer(SECRET))
    assert caught.value.code == "key_expired"
    ring.apply([key(expires_at=past + timedelta(hours=1))], [])
    assert ring.authenticate(bearer(SECRET)).key_id == "key_1"


def test_team_defaults_are_inherited_and_key_settings_narrow_them() -> None:
    research = team(models=["claude-*"], regions=["eu"], limits=Limits(rpm=100))
    inherited = principal_of(key(team_id="team_1"), research)
    assert (
        inherited.models is not None and inherited.models("claude-sonnet") and not inherited.models("gpt-4o")
    )
    assert inherited.regions == ("eu",) and inherited.team_limits == Limits(rpm=100)
    own = principal_of(key(team_id="team_1", models=["claude-3*"], regions=["eu", "us"]), research)
    assert own.models is not None and own.models("claude-3-opus") and not own.models("claude-sonnet")
    assert own.regions == ("eu",), "a key's regions count only where its team's allow them"


def test_a_key_wider_than_its_team_is_held_to_both() -> None:
    """A key stored with models outside its team's (before the admin API refused it) serves
    only what both allow: the team's list is a ceiling, not a default."""
    demo_only = team(models=["demo*"], regions=["eu"])
    wide = principal_of(key(team_id="team_1", models=["secret-model", "demo-?"], regions=["us"]), demo_only)
    assert wide.models is not None
    assert not wide.models("secret-model"), "outside the team's models"
    assert wide.models("demo-1") and not wide.models("demo-12") and not wide.models("demo")
    assert wide.regions == (), "no region both allow: the key's requests find no target"
    with pytest.raises(GatewayError) as caught:
        wide.check_model("secret-model")
    assert caught.value.status == 404


def test_deleted_team_disables_its_keys() -> None:
    ring = KeyRing("m")
    ring.apply([key(team_id="team_1")], [team()])
    assert ring.authenticate(bearer(SECRET)).team_id == "team_1"
    ring.apply([], [team(deleted_at=NOW)])
    with pytest.raises(GatewayError):
        ring.authenticate(bearer(SECRET))


def test_a_forbidden_model_is_a_404_like_an_unknown_one_and_an_endpoint_a_403() -> None:
    principal = principal_of(key(models=["demo", "gpt-4o*"], endpoints=["chat"]), None)
    principal.check_model("demo")
    principal.check_model("gpt-4o-mini")
    with pytest.raises(GatewayError) as caught:
        principal.check_model("demo-slow")
    unknown = model_not_found("demo-slow")
    assert (caught.value.status, caught.value.code, caught.value.message, caught.value.type) == (
        unknown.status,
        unknown.code,
        unknown.message,
        unknown.type,
    )
    assert caught.value.status == 404 and "demo-slow" in caught.value.message
    principal.check_endpoint("chat")
    with pytest.raises(GatewayError) as denied:
        principal.check_endpoint("embeddings")
    assert denied.value.status == 403


def test_model_matcher_is_anchored() -> None:
    matcher = ModelMatcher(["gpt-4o", "claude-?-*"])
    assert matcher("gpt-4o") and not matcher("gpt-4o-mini") and not matcher("x-gpt-4o")
    assert matcher("claude-3-opus") and not matcher("claude-35-opus")
    assert not ModelMatcher([])("anything")


@pytest.mark.parametrize(
    ("key_policy", "team_policy", "expected"),
    [
        ("none", "full", "none"),  # the key's own policy wins over its team's
        (None, "masked", "masked"),  # else the team's
        ("hash", None, "hash"),
        (None, None, None),  # else None: the global logging.content applies
    ],
)
def test_log_content_resolves_key_then_team_then_global(
    key_policy: str | None, team_policy: str | None, expected: str | None
) -> None:
    principal = principal_of(key(team_id="team_1", log_content=key_policy), team(log_content=team_policy))
    assert principal.log_content == expected


def test_log_content_of_a_key_without_team_and_of_the_built_in_principals() -> None:
    assert principal_of(key(log_content="full"), None).log_content == "full"
    assert principal_of(key(), None).log_content is None
    assert MASTER.log_content is None and ANONYMOUS.log_content is None


def test_a_teams_new_log_content_reaches_its_keys_in_the_ring() -> None:
    ring = KeyRing("m")
    ring.apply([key(team_id="team_1"), key(id="key_2", secret_hash=hash_secret("other"))], [team()])
    assert ring.authenticate(bearer(SECRET)).log_content is None
    ring.apply([], [team(log_content="none", updated_at=NOW + timedelta(seconds=1))])
    assert ring.authenticate(bearer(SECRET)).log_content == "none"
    assert ring.authenticate(bearer("other")).log_content is None, "a key outside the team keeps the global"
