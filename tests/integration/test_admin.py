"""The admin API and virtual keys end to end: real gateway on a real socket, the openai SDK as
client, SQLite and the real PostgreSQL as stores, two processes sharing PostgreSQL and Redis."""

from __future__ import annotations

import contextlib
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import msgspec
import openai
import pytest

from gateway.config.load import parse_config
from gateway.policy.auth import config_principals
from gateway.policy.keys import KeyRecord, TeamRecord, hash_secret
from gateway.store import open_store
from tests.conftest import MASTER_KEY, Gateway, wait_for
from tests.integration.test_cli import Served, start, stop
from tests.support.servers import LoopThread

pytestmark = pytest.mark.integration

PG_URL = os.environ.get("TOLLWAY_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("TOLLWAY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
MODELS = """
providers: {mock: {kind: mock}}
models:
  demo: {targets: [{provider: mock, model: mock-1}]}
  demo-slow: {targets: [{provider: mock, model: mock-1}]}
  other: {targets: [{provider: mock, model: mock-1}]}
"""
USER = [{"role": "user", "content": "hi"}]


@pytest.fixture
def fresh_pg_database(loop_thread: LoopThread) -> Iterator[str]:
    """A new PostgreSQL database for one test, dropped after."""
    name = f"tollway_test_{uuid.uuid4().hex[:12]}"

    async def admin(sql: str) -> None:
        connection = await asyncpg.connect(PG_URL)
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    loop_thread.run(admin(f'CREATE DATABASE "{name}"'))
    yield PG_URL.rsplit("/", 1)[0] + "/" + name
    loop_thread.run(admin(f'DROP DATABASE "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", pytest.param("postgres")])
def admin_gateway(request: pytest.FixtureRequest, tmp_path: Path) -> Gateway:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/store.sqlite"
    else:
        # Before the gateway, so that it is torn down (database dropped) after the gateway stops.
        url = request.getfixturevalue("fresh_pg_database")
    start_gateway_with: Callable[[str], Gateway] = request.getfixturevalue("start_gateway_with")
    gateway = start_gateway_with(f'storage: {{database_url: "{url}", key_refresh_s: 0.2}}\n' + MODELS)
    wait_ready(gateway.url)
    return gateway


def wait_ready(url: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if httpx.get(url + "/health/ready").status_code == 200:
            return
        time.sleep(0.05)
    raise AssertionError("gateway never became ready")


def admin(
    gateway: Gateway, method: str, path: str, body: Any = None, key: str | None = MASTER_KEY
) -> httpx.Response:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    content = msgspec.json.encode(body) if body is not None and not isinstance(body, bytes) else body
    return httpx.request(method, gateway.url + "/admin" + path, content=content, headers=headers, timeout=10)


def sdk(gateway: Gateway, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.v1, api_key=key, max_retries=0, timeout=10)


def test_key_lifecycle_create_use_restrict_revoke(admin_gateway: Gateway) -> None:
    team = admin(admin_gateway, "POST", "/teams", {"name": "research", "models": ["demo*"]})
    assert team.status_code == 201, team.text
    created = admin(
        admin_gateway, "POST", "/keys", {"name": "app", "team_id": team.json()["id"], "limits": {"rpm": 60}}
    )
    assert created.status_code == 201, created.text
    view = created.json()
    secret = view["key"]
    assert secret.startswith("sk-tw-") and view["status"] == "active" and view["limits"] == {"rpm": 60}
    shown = admin(admin_gateway, "GET", f"/keys/{view['id']}").json()
    assert "key" not in shown and "secret_hash" not in shown, "the secret is shown once, at creation only"

    with sdk(admin_gateway, secret) as client:
        assert (
            client.chat.completions.create(model="demo", messages=USER).choices[0].message.content
            == "You said: hi"
        )
        assert {m.id for m in client.models.list()} == {"demo", "demo-slow"}, (
            "the team's models are inherited"
        )
        with pytest.raises(openai.NotFoundError) as denied:
            client.chat.completions.create(model="other", messages=USER)
        assert "other" in denied.value.message

        beyond = admin(admin_gateway, "PATCH", f"/keys/{view['id']}", {"models": ["other"]})
        assert beyond.status_code == 400 and beyond.json()["error"]["param"] == "models", beyond.text
        patched = admin(admin_gateway, "PATCH", f"/keys/{view['id']}", {"models": ["demo-slow"]})
        assert patched.status_code == 200 and patched.json()["models"] == ["demo-slow"]
        assert client.chat.completions.create(model="demo-slow", messages=USER).choices
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(model="demo", messages=USER)

        revoked = admin(admin_gateway, "DELETE", f"/keys/{view['id']}")
        assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
        with pytest.raises(openai.AuthenticationError) as gone:
            client.chat.completions.create(model="demo-slow", messages=USER)
        assert "revoked" in gone.value.message
    assert admin(admin_gateway, "GET", f"/keys/{view['id']}").json()["revoked_at"], "the record stays"


def test_deleting_a_team_disables_its_keys(admin_gateway: Gateway) -> None:
    team_id = admin(admin_gateway, "POST", "/teams", {"name": "temp"}).json()["id"]
    secret = admin(admin_gateway, "POST", "/keys", {"name": "k", "team_id": team_id}).json()["key"]
    with sdk(admin_gateway, secret) as client:
        assert client.chat.completions.create(model="demo", messages=USER).choices
        assert admin(admin_gateway, "DELETE", f"/teams/{team_id}").json()["status"] == "deleted"
        with pytest.raises(openai.AuthenticationError):
            client.chat.completions.create(model="demo", messages=USER)
    refused = admin(admin_gateway, "POST", "/keys", {"name": "late", "team_id": team_id})
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "team_id"


def test_lists_are_paginated(admin_gateway: Gateway) -> None:
    ids = {admin(admin_gateway, "POST", "/keys", {"name": f"k{i}"}).json()["id"] for i in range(5)}
    first = admin(admin_gateway, "GET", "/keys?limit=2").json()
    assert len(first["data"]) == 2 and first["has_more"] is True
    seen = [k["id"] for k in first["data"]]
    after = first["next_after"]
    while after:
        page = admin(admin_gateway, "GET", f"/keys?limit=2&after={after}").json()
        seen += [k["id"] for k in page["data"]]
        after = page["next_after"]
    assert set(seen) == ids and seen == sorted(seen)
    assert admin(admin_gateway, "GET", "/keys?limit=0").status_code == 400


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"name": 5}, "name"),
        ({"name": "x", "colour": "red"}, "colour"),
        ({"name": "x", "budget": {"amount": -1}}, "budget.amount"),
        ({"name": "x", "budget": {"amount": 5, "currency": "GBP"}}, "budget.currency"),
        ({"name": "x", "limits": {"rpm": -3}}, "limits.rpm"),
        ({"name": "x", "expires_at": "2027-01-01T00:00:00"}, "expires_at"),  # no time zone
        ({"name": "x", "endpoints": ["telepathy"]}, "endpoints[0]"),
        (b"{not json", None),
    ],
)
def test_bad_admin_input_is_a_400_and_writes_nothing(
    admin_gateway: Gateway, body: Any, param: str | None
) -> None:
    response = admin(admin_gateway, "POST", "/keys", body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param
    assert admin(admin_gateway, "GET", "/keys").json()["data"] == []


@pytest.mark.parametrize(
    ("path", "body", "param", "meant"),
    [
        ("/keys", {"name": "x", "team": "t"}, "team", "team_id"),
        ("/teams", {"name": "x", "limits": {"rpmm": 1}}, "limits.rpmm", "rpm"),
    ],
)
def test_an_unknown_admin_field_names_the_one_meant(
    admin_gateway: Gateway, path: str, body: Any, param: str, meant: str
) -> None:
    response = admin(admin_gateway, "POST", path, body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param
    assert error["message"].startswith(
        f"Object contains unknown field `{param.rsplit('.', 1)[-1]}` (expected one of: "
    )
    assert f"did you mean '{meant}'?" in error["message"]


def test_admin_needs_the_master_key(admin_gateway: Gateway) -> None:
    secret = admin(admin_gateway, "POST", "/keys", {"name": "app"}).json()["key"]
    assert admin(admin_gateway, "GET", "/keys", key=None).status_code == 401
    assert admin(admin_gateway, "GET", "/keys", key="wrong").status_code == 401
    assert admin(admin_gateway, "POST", "/keys", {"name": "sneaky"}, key=secret).status_code == 403
    assert len(admin(admin_gateway, "GET", "/keys").json()["data"]) == 1
    assert admin(admin_gateway, "GET", "/keys/key_nope").status_code == 404


def test_keys_declared_in_the_config(start_gateway_with: Callable[[str], Gateway]) -> None:
    gateway = start_gateway_with("keys:\n  ci: {secret: 'ci-secret-0123456789', models: [demo]}\n" + MODELS)
    with sdk(gateway, "ci-secret-0123456789") as client:
        assert client.chat.completions.create(model="demo", messages=USER).choices
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(model="other", messages=USER)
    no_store = admin(gateway, "POST", "/keys", {"name": "x"})
    assert no_store.status_code == 503 and no_store.json()["error"]["code"] == "no_store"


@contextlib.contextmanager
def two_processes(database_url: str, tmp_path: Path) -> Iterator[tuple[Gateway, Gateway]]:
    """Two `tollway serve` processes sharing the database and Redis, both subscribed to key
    changes. A long refresh interval: only the Redis announcement brings a change over fast."""
    config = tmp_path / "shared.yaml"
    config.write_text(
        f'server: {{master_key: "{MASTER_KEY}"}}\nlogging: {{request_log: "off"}}\n'
        f'storage: {{database_url: "{database_url}", redis_url: "{REDIS_URL}", key_refresh_s: 60}}\n' + MODELS
    )
    first: Served = start(["--config", str(config)], cwd=tmp_path)
    second: Served = start(["--config", str(config)], cwd=tmp_path)
    try:
        for served in (first, second):
            wait_ready(served.url)
        time.sleep(0.3)  # both processes subscribed to the change channel
        yield Gateway(first.url, tmp_path / "a"), Gateway(second.url, tmp_path / "b")
    finally:
        assert stop(first) == 0 and stop(second) == 0


def test_revoke_on_one_process_is_enforced_by_another_within_a_second(
    fresh_pg_database: str, tmp_path: Path
) -> None:
    with two_processes(fresh_pg_database, tmp_path) as (one, two):
        created = admin(one, "POST", "/keys", {"name": "shared"}).json()
        with sdk(two, created["key"]) as client:
            deadline = time.monotonic() + 1.0
            while True:
                try:
                    client.models.list()
                    break
                except openai.AuthenticationError:
                    assert time.monotonic() < deadline, (
                        "a new key must reach the other process within a second"
                    )
                    time.sleep(0.02)
            assert admin(one, "DELETE", f"/keys/{created['id']}").status_code == 200
            revoked_at = time.monotonic()
            while True:
                try:
                    client.models.list()
                except openai.AuthenticationError:
                    break
                assert time.monotonic() - revoked_at < 1.0, (
                    "the revoke must reach the other process within a second"
                )
                time.sleep(0.02)


def test_a_keys_view_shows_its_budget_spend(
    start_gateway_with: Callable[[str], Gateway], tmp_path: Path
) -> None:
    gateway = start_gateway_with(
        f'storage: {{database_url: "sqlite:///{tmp_path}/spend.sqlite", key_refresh_s: 0.2}}\n'
        "pricing: {models: {'mock/mock-1': {input: 1000, output: 1000}}}\n" + MODELS
    )
    wait_ready(gateway.url)
    created = admin(
        gateway, "POST", "/keys", {"name": "metered", "budget": {"amount": 5, "period": "day"}}
    ).json()
    with sdk(gateway, created["key"]) as client:
        answer = client.chat.completions.create(model="demo", messages=USER, max_tokens=50)
    assert answer.usage is not None
    expected = (answer.usage.prompt_tokens + answer.usage.completion_tokens) * 1000  # micro-USD
    spend = admin(gateway, "GET", f"/keys/{created['id']}").json()["spend"]
    assert spend["spent_micros"] == expected and spend["currency"] == "USD" and spend["period"] == "day"
    assert spend["remaining_micros"] == 5_000_000 - expected and spend["period_end"]


def test_log_content_is_set_kept_and_cleared_on_keys_and_teams(admin_gateway: Gateway) -> None:
    team = admin(admin_gateway, "POST", "/teams", {"name": "legal", "log_content": "masked"})
    assert team.status_code == 201 and team.json()["log_content"] == "masked", team.text
    team_id = team.json()["id"]
    created = admin(admin_gateway, "POST", "/keys", {"name": "k", "team_id": team_id, "log_content": "none"})
    assert created.status_code == 201 and created.json()["log_content"] == "none", created.text
    key_id = created.json()["id"]
    assert admin(admin_gateway, "GET", f"/keys/{key_id}").json()["log_content"] == "none"

    patched = admin(admin_gateway, "PATCH", f"/keys/{key_id}", {"log_content": "hash"})
    assert patched.status_code == 200 and patched.json()["log_content"] == "hash"
    renamed = admin(admin_gateway, "PATCH", f"/keys/{key_id}", {"name": "renamed"})
    assert renamed.json()["log_content"] == "hash", "a field left out of a PATCH stays"
    cleared = admin(admin_gateway, "PATCH", f"/keys/{key_id}", {"log_content": None})
    assert cleared.status_code == 200 and "log_content" not in cleared.json(), "null: inherit again"
    assert "log_content" not in admin(admin_gateway, "GET", f"/keys/{key_id}").json()
    listed = admin(admin_gateway, "GET", f"/keys?team_id={team_id}").json()["data"]
    assert [k.get("log_content") for k in listed] == [None]

    team_patched = admin(admin_gateway, "PATCH", f"/teams/{team_id}", {"log_content": "full"})
    assert team_patched.status_code == 200 and team_patched.json()["log_content"] == "full"
    assert admin(admin_gateway, "GET", f"/teams/{team_id}").json()["log_content"] == "full"
    team_cleared = admin(admin_gateway, "PATCH", f"/teams/{team_id}", {"log_content": None})
    assert team_cleared.status_code == 200 and "log_content" not in team_cleared.json()
    assert "log_content" not in admin(admin_gateway, "GET", f"/teams/{team_id}").json()


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/keys", {"name": "x", "log_content": "everything"}),
        ("POST", "/teams", {"name": "x", "log_content": "FULL"}),
        ("PATCH", "/keys/{key}", {"log_content": "masked-ish"}),
        ("PATCH", "/teams/{team}", {"log_content": 0}),
    ],
)
def test_an_unknown_log_content_is_a_400_naming_the_field(
    admin_gateway: Gateway, method: str, path: str, body: dict[str, Any]
) -> None:
    team_id = admin(admin_gateway, "POST", "/teams", {"name": "t", "log_content": "hash"}).json()["id"]
    key_id = admin(admin_gateway, "POST", "/keys", {"name": "k", "log_content": "hash"}).json()["id"]
    response = admin(admin_gateway, method, path.format(key=key_id, team=team_id), body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == "log_content"
    assert "log_content" in response.json()["error"]["message"]
    assert admin(admin_gateway, "GET", f"/keys/{key_id}").json()["log_content"] == "hash", "nothing written"
    assert admin(admin_gateway, "GET", f"/teams/{team_id}").json()["log_content"] == "hash"
    assert len(admin(admin_gateway, "GET", "/keys").json()["data"]) == 1


def test_a_config_keys_log_content_reaches_its_principal() -> None:
    config = parse_config(
        "keys:\n  quiet: {secret: 'quiet-secret-0123456789', log_content: none}\n"
        "  plain: {secret: 'plain-secret-0123456789'}\n",
        {},
        "test.yaml",
    )
    by_name = {principal.name: principal for _, principal in config_principals(config)}
    assert by_name["quiet"].log_content == "none" and by_name["plain"].log_content is None


# --- a key within its team ---------------------------------------------------------------------

CEILING = {
    "name": "demo-team",
    "models": ["demo*"],
    "limits": {"rpm": 60, "max_parallel": 4},
    "budget": {"amount": 10, "currency": "USD", "period": "month"},
    "regions": ["eu", "ch"],
}
BEYOND = [
    ({"models": ["secret-model"]}, "models"),
    ({"models": ["demo", "*"]}, "models"),
    ({"limits": {"rpm": 61}}, "limits.rpm"),
    ({"limits": {"max_parallel": 5}}, "limits.max_parallel"),
    ({"budget": {"amount": 10.5}}, "budget.amount"),
    ({"budget": {"amount": 1, "currency": "CHF"}}, "budget"),
    ({"budget": {"amount": 1, "period": "total"}}, "budget"),
    ({"regions": ["eu", "us"]}, "regions"),
]


def test_the_admin_api_refuses_a_key_beyond_its_team(admin_gateway: Gateway) -> None:
    team_id = admin(admin_gateway, "POST", "/teams", CEILING).json()["id"]
    for fields, param in BEYOND:
        refused = admin(admin_gateway, "POST", "/keys", {"name": "k", "team_id": team_id, **fields})
        assert refused.status_code == 400, (fields, refused.text)
        error = refused.json()["error"]
        assert error["param"] == param and error["code"] == "beyond_team", (fields, error)
        assert param in error["message"]
    assert admin(admin_gateway, "GET", "/keys").json()["data"] == [], "nothing written"

    within = {
        "models": ["demo", "demo-*"],
        "limits": {"rpm": 60, "tpm": 1000},
        "budget": {"amount": 2, "period": "day"},
        "regions": ["ch"],
    }
    made = admin(admin_gateway, "POST", "/keys", {"name": "fits", "team_id": team_id, **within})
    assert made.status_code == 201, made.text
    key_id = made.json()["id"]
    for fields, param in BEYOND:
        refused = admin(admin_gateway, "PATCH", f"/keys/{key_id}", fields)
        assert refused.status_code == 400 and refused.json()["error"]["param"] == param, refused.text
    assert admin(admin_gateway, "GET", f"/keys/{key_id}").json()["models"] == ["demo", "demo-*"]

    # A key that fits no team moved into a narrow one; a key without a team is free.
    free = admin(admin_gateway, "POST", "/keys", {"name": "free", "models": ["other"]})
    assert free.status_code == 201, free.text
    moved = admin(admin_gateway, "PATCH", f"/keys/{free.json()['id']}", {"team_id": team_id})
    assert moved.status_code == 400 and moved.json()["error"]["param"] == "models", moved.text


def test_a_team_is_not_narrowed_below_its_keys(admin_gateway: Gateway) -> None:
    team_id = admin(admin_gateway, "POST", "/teams", CEILING).json()["id"]
    key = admin(
        admin_gateway, "POST", "/keys", {"name": "wide", "team_id": team_id, "limits": {"rpm": 50}}
    ).json()
    narrowed = admin(admin_gateway, "PATCH", f"/teams/{team_id}", {"limits": {"rpm": 40}})
    assert narrowed.status_code == 400, narrowed.text
    error = narrowed.json()["error"]
    assert error["code"] == "team_below_keys" and error["param"] == "limits.rpm"
    assert key["id"] in error["message"] and "'wide'" in error["message"]
    assert admin(admin_gateway, "GET", f"/teams/{team_id}").json()["limits"]["rpm"] == 60, "unchanged"
    # Models only: the key sets none, so it takes whatever the team allows.
    assert admin(admin_gateway, "PATCH", f"/teams/{team_id}", {"models": ["demo"]}).status_code == 200
    assert admin(admin_gateway, "DELETE", f"/keys/{key['id']}").status_code == 200
    revoked_ok = admin(admin_gateway, "PATCH", f"/teams/{team_id}", {"limits": {"rpm": 40}})
    assert revoked_ok.status_code == 200, "a revoked key does not hold its team back"


def _error_of(response: httpx.Response, model: str) -> tuple[int, object]:
    """Status and error (message, type, code, param) with the model's name taken out."""
    error = msgspec.json.decode(response.content.replace(model.encode(), b"<model>"))["error"]
    return response.status_code, error


def test_a_forbidden_model_looks_like_an_unknown_one(start_gateway_with: Callable[[str], Gateway]) -> None:
    gateway = start_gateway_with(
        "keys:\n  narrow: {secret: 'narrow-secret-0123456789', models: ['demo*']}\n" + MODELS
    )
    headers = {"authorization": "Bearer narrow-secret-0123456789"}
    bodies: dict[str, Callable[[str], dict[str, Any]]] = {
        "/v1/chat/completions": lambda m: {"model": m, "messages": USER},
        "/v1/embeddings": lambda m: {"model": m, "input": "hi"},
        "/v1/messages": lambda m: {"model": m, "max_tokens": 5, "messages": USER},
        "/v1/messages/count_tokens": lambda m: {"model": m, "messages": USER},
    }
    for path, body in bodies.items():
        answers = {
            model: _error_of(
                httpx.post(gateway.url + path, json=body(model), headers=headers, timeout=10), model
            )
            # exists but forbidden; exists nowhere; matches the key's pattern but exists nowhere
            for model in ("other", "nope", "demo-nope")
        }
        assert answers["other"][0] == 404, (path, answers)
        assert answers["other"] == answers["nope"] == answers["demo-nope"], (path, answers)
    listed = httpx.get(gateway.v1 + "/models", headers=headers).json()["data"]
    assert sorted(m["id"] for m in listed) == ["demo", "demo-slow"]


def test_a_stored_key_beyond_its_team_is_reported_and_served_only_what_both_allow(
    start_gateway_with: Callable[[str], Gateway],
    loop_thread: LoopThread,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A key written before the admin API refused wide keys (here: straight into the store)."""
    url = f"sqlite:///{tmp_path}/old.sqlite"
    moment = datetime.now(UTC)
    team = TeamRecord(id="team_old", name="demo-only", created_at=moment, updated_at=moment, models=["demo"])
    wide = KeyRecord(
        id="key_wide",
        name="legacy",
        secret_hash=hash_secret("legacy-secret-0123456789"),
        created_at=moment,
        updated_at=moment,
        team_id="team_old",
        models=["other", "demo*"],
    )

    async def seed() -> None:
        store = open_store(url)
        try:
            await store.migrate()
            await store.put_team(team)
            await store.put_key(wide)
        finally:
            await store.close()

    loop_thread.run(seed())
    caplog.set_level(logging.WARNING, logger="tollway")
    gateway = start_gateway_with(f'storage: {{database_url: "{url}", key_refresh_s: 0.2}}\n' + MODELS)
    wait_ready(gateway.url)

    warned = [r.getMessage() for r in caplog.records if "key_wide" in r.getMessage()]
    assert len(warned) == 1 and "'legacy'" in warned[0] and "team_old" in warned[0] and "models" in warned[0]
    assert "1 key(s) ask for more than their team allows" in caplog.text
    degraded = httpx.get(gateway.url + "/health/ready").json()["degraded"]
    assert degraded == ["keys: 1 ask for more than their team allows"]
    assert "tollway_keys_beyond_team 1.0" in httpx.get(gateway.url + "/metrics").text

    with sdk(gateway, "legacy-secret-0123456789") as client:
        assert client.chat.completions.create(model="demo", messages=USER).choices, "in both"
        for outside in ("other", "demo-slow"):  # the key's only; the key's pattern, not the team's
            with pytest.raises(openai.NotFoundError):
                client.chat.completions.create(model=outside, messages=USER)
        assert [m.id for m in client.models.list()] == ["demo"]

        fixed = admin(gateway, "PATCH", "/keys/key_wide", {"models": ["demo"]})
        assert fixed.status_code == 200, fixed.text
        assert httpx.get(gateway.url + "/health/ready").json()["degraded"] == []
        assert "tollway_keys_beyond_team 0.0" in httpx.get(gateway.url + "/metrics").text
        assert "0 key(s) ask for more than their team allows" in caplog.text

    # The team narrowed behind the admin API's back: its key is checked again.
    async def narrow_team() -> None:
        store = open_store(url)
        try:
            moved = msgspec.structs.replace(team, models=["demo-slow"], updated_at=datetime.now(UTC))
            await store.put_team(moved)
        finally:
            await store.close()

    loop_thread.run(narrow_team())
    assert wait_for(lambda: httpx.get(gateway.url + "/health/ready").json()["degraded"] != [])
    assert "tollway_keys_beyond_team 1.0" in httpx.get(gateway.url + "/metrics").text
