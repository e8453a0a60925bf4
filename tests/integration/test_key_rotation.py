"""`GET /v1/key/info` and key rotation end to end: the openai SDK's raw HTTP as client, SQLite
and PostgreSQL as stores, and two processes sharing PostgreSQL and Redis for a rotation made on
one and honoured by the other."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import MASTER_KEY, Gateway
from tests.integration.test_admin import (  # noqa: F401 - fixtures
    MODELS,
    admin,
    admin_gateway,
    fresh_pg_database,
    sdk,
    two_processes,
    wait_ready,
)

pytestmark = pytest.mark.integration
USER = [{"role": "user", "content": "hi"}]


def info(gateway: Gateway, key: str) -> Any:
    """The SDK's raw HTTP response to GET /v1/key/info (its own HTTP library's Response type);
    the SDK raises its error types on a 4xx."""
    with sdk(gateway, key) as client:
        return client.get("/key/info", cast_to=httpx.Response)


def raw_info(gateway: Gateway, key: str) -> httpx.Response:
    return httpx.get(gateway.v1 + "/key/info", headers={"Authorization": f"Bearer {key}"})


def works(gateway: Gateway, key: str) -> bool:
    """Whether a chat call with `key` is served (False on a 401)."""
    with sdk(gateway, key) as client:
        try:
            return bool(client.chat.completions.create(model="demo", messages=USER).choices)
        except openai.AuthenticationError:
            return False


def test_a_key_describes_itself(start_gateway_with: Callable[[str], Gateway], tmp_path: Path) -> None:
    gateway = start_gateway_with(
        f'storage: {{database_url: "sqlite:///{tmp_path}/info.sqlite", key_refresh_s: 0.2}}\n'
        "pricing: {models: {'mock/mock-1': {input: 1000, output: 1000}}}\n" + MODELS
    )
    wait_ready(gateway.url)
    team = admin(gateway, "POST", "/teams", {"name": "t", "models": ["demo*"], "limits": {"rpm": 100}}).json()
    created = admin(
        gateway,
        "POST",
        "/keys",
        {
            "name": "self",
            "team_id": team["id"],
            "models": ["demo"],
            "limits": {"rpm": 10},
            "budget": {"amount": 2, "period": "day"},
            "expires_at": "2099-01-01T00:00:00Z",
        },
    ).json()
    with sdk(gateway, created["key"]) as client:
        answer = client.chat.completions.create(model="demo", messages=USER, max_tokens=20)
    assert answer.usage is not None
    spent = (answer.usage.prompt_tokens + answer.usage.completion_tokens) * 1000
    raw = info(gateway, created["key"])
    assert raw.status_code == 200, raw.text
    body = raw.json()
    assert body["object"] == "key_info" and body["id"] == created["id"] and body["team_id"] == team["id"]
    assert body["models"] == ["demo"] and body["team_models"] == ["demo*"]
    assert body["limits"] == {"rpm": 10} and body["team_limits"] == {"rpm": 100}
    assert body["budget"]["amount"] == 2 and body["spend"]["spent_micros"] == spent
    assert body["spend"]["remaining_micros"] == 2_000_000 - spent and body["spend"]["period"] == "day"
    assert body["expires_at"].startswith("2099-01-01") and "rotated" not in body
    assert created["key"] not in raw.text and "secret_hash" not in body and "sha256:" not in raw.text
    nobody = httpx.get(gateway.v1 + "/key/info")
    assert nobody.status_code == 401 and nobody.json()["error"]["code"] == "invalid_api_key"
    assert raw_info(gateway, "sk-tw-wrong").status_code == 401
    with pytest.raises(openai.AuthenticationError):
        info(gateway, "sk-tw-wrong")
    master = raw_info(gateway, MASTER_KEY)
    assert master.status_code == 400 and master.json()["error"]["code"] == "not_a_virtual_key"
    admin(gateway, "DELETE", f"/keys/{created['id']}")
    revoked = raw_info(gateway, created["key"])
    assert revoked.status_code == 401 and revoked.json()["error"]["code"] == "key_revoked"


def test_the_old_secret_works_during_the_grace_then_gets_401(admin_gateway: Gateway) -> None:  # noqa: F811
    gw = admin_gateway
    created = admin(gw, "POST", "/keys", {"name": "rotating"}).json()
    old = created["key"]
    assert works(gw, old)
    rotated = admin(gw, "POST", f"/keys/{created['id']}/rotate", {"grace_s": 2})
    assert rotated.status_code == 200, rotated.text
    view = rotated.json()
    new = view["key"]
    assert new != old and new.startswith("sk-tw-") and view["id"] == created["id"]
    assert view["rotated_at"] and view["previous_expires_at"] and "previous_secret_hash" not in view
    assert works(gw, new) and works(gw, old), "both secrets work during the grace"
    during = info(gw, old).json()
    assert during["rotated"] is True and during["expires_at"] == view["previous_expires_at"]
    shown = admin(gw, "GET", f"/keys/{created['id']}").json()
    assert "key" not in shown and "previous_secret_hash" not in shown
    time.sleep(2.2)
    with sdk(gw, old) as client, pytest.raises(openai.AuthenticationError) as ended:
        client.models.list()
    assert ended.value.code == "key_rotated" and "rotated" in ended.value.message
    assert works(gw, new)

    again = admin(gw, "POST", f"/keys/{created['id']}/rotate", {"grace_s": 0}).json()["key"]
    assert works(gw, again) and not works(gw, new), "no grace: the old secret stops at once"
    assert admin(gw, "POST", f"/keys/{created['id']}/rotate", {"grace_s": -1}).status_code == 400
    assert admin(gw, "POST", "/keys/key_nope/rotate").status_code == 404
    history = admin(gw, "GET", f"/keys/{created['id']}/history").json()["data"]
    assert [c["change"]["action"] for c in history] == ["key.create", "key.rotate", "key.rotate"]
    assert "grace 0:00:02" in history[1]["change"]["detail"] and history[1]["change"]["who"] == "master"
    assert old not in str(history) and new not in str(history) and "sha256:" not in str(history)
    admin(gw, "DELETE", f"/keys/{created['id']}")
    refused = admin(gw, "POST", f"/keys/{created['id']}/rotate")
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "key_revoked"


def test_a_rotation_on_one_process_holds_on_another(fresh_pg_database: str, tmp_path: Path) -> None:  # noqa: F811
    with two_processes(fresh_pg_database, tmp_path) as (one, two):
        created = admin(one, "POST", "/keys", {"name": "shared"}).json()
        deadline = time.monotonic() + 2
        while not works(two, created["key"]):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        new = admin(one, "POST", f"/keys/{created['id']}/rotate", {"grace_s": 3}).json()["key"]
        deadline = time.monotonic() + 1
        while not works(two, new):
            assert time.monotonic() < deadline, "the new secret must reach the other process within a second"
            time.sleep(0.05)
        assert works(two, created["key"]), "the old secret still works there during the grace"
        time.sleep(3.2)
        assert not works(two, created["key"]) and not works(one, created["key"])
        assert works(two, new) and works(one, new)
