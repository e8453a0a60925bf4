"""Roles in the admin API, end to end over a real socket with SQLite and the real PostgreSQL:
admin keys per role, a team admin held to its own teams' keys, spend, records and changes, a
viewer that changes nothing, each refusal a 403 in the OpenAI error shape."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest

from tests.conftest import MASTER_KEY, Gateway, wait_for
from tests.integration.test_admin import admin, admin_gateway, fresh_pg_database, sdk  # noqa: F401 - fixtures

pytestmark = pytest.mark.integration
USER = [{"role": "user", "content": "hi"}]


def refused(response: httpx.Response, role: str, words: str) -> None:
    """A 403 in the OpenAI error shape, naming the role and what it may not do."""
    assert response.status_code == 403, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "code", "param"}
    assert error["type"] == "permission_error" and error["code"] == "role_forbidden", error
    assert f"the {role} " in error["message"] and words in error["message"], error["message"]


def issue(gateway: Gateway, role: str, teams: list[str] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"name": f"{role} key", "role": role}
    if teams is not None:
        body["teams"] = teams
    created = admin(gateway, "POST", "/admin-keys", body)
    assert created.status_code == 201, created.text
    view = created.json()
    assert view["key"].startswith("sk-tw-admin-") and "secret_hash" not in view
    return view


def ids(response: httpx.Response) -> set[str]:
    assert response.status_code == 200, response.text
    return {item["id"] for item in response.json()["data"]}


def test_a_team_admin_manages_only_its_own_teams_keys(admin_gateway: Gateway) -> None:  # noqa: F811 - the fixture
    gw = admin_gateway
    team_a = admin(gw, "POST", "/teams", {"name": "a", "budget": {"amount": 10}}).json()["id"]
    team_b = admin(gw, "POST", "/teams", {"name": "b"}).json()["id"]
    key_a = admin(gw, "POST", "/keys", {"name": "ka", "team_id": team_a}).json()
    key_b = admin(gw, "POST", "/keys", {"name": "kb", "team_id": team_b}).json()
    loose = admin(gw, "POST", "/keys", {"name": "no team"}).json()
    lead = issue(gw, "team_admin", [team_a])["key"]

    def call(method: str, path: str, body: Any = None) -> httpx.Response:
        return admin(gw, method, path, body, key=lead)

    assert ids(call("GET", "/keys")) == {key_a["id"]}, "a team admin lists only its teams' keys"
    refused(call("GET", f"/keys?team_id={team_b}"), "team_admin", f"keys of team {team_b}")
    refused(call("GET", f"/keys/{key_b['id']}"), "team_admin", "see key")
    refused(call("GET", f"/keys/{loose['id']}"), "team_admin", "no team")
    refused(call("PATCH", f"/keys/{key_b['id']}", {"name": "x"}), "team_admin", "see key")
    refused(call("DELETE", f"/keys/{key_b['id']}"), "team_admin", "see key")
    refused(call("POST", f"/keys/{key_b['id']}/rotate"), "team_admin", "see key")
    refused(call("POST", "/keys", {"name": "k", "team_id": team_b}), "team_admin", "create keys of team")
    refused(call("POST", "/keys", {"name": "k"}), "team_admin", "create keys of no team")
    refused(call("PATCH", f"/keys/{key_a['id']}", {"team_id": team_b}), "team_admin", "move keys to")
    refused(call("GET", f"/keys/{key_b['id']}/history"), "team_admin", "see key")
    assert admin(gw, "GET", f"/keys/{key_b['id']}").json()["name"] == "kb", "nothing changed"

    mine = call("POST", "/keys", {"name": "mine", "team_id": team_a, "budget": {"amount": 1}})
    assert mine.status_code == 201 and mine.json()["key"], mine.text
    assert call("PATCH", f"/keys/{key_a['id']}", {"limits": {"rpm": 5}}).json()["limits"] == {"rpm": 5}
    beyond = call("POST", "/keys", {"name": "big", "team_id": team_a, "budget": {"amount": 50}})
    assert beyond.status_code == 400, "a team admin's keys stay within the team, as anyone's"
    assert call("POST", f"/keys/{key_a['id']}/rotate", {"grace_s": 60}).status_code == 200
    assert call("DELETE", f"/keys/{mine.json()['id']}").json()["status"] == "revoked"

    assert ids(call("GET", "/teams")) == {team_a}
    refused(call("GET", f"/teams/{team_b}"), "team_admin", f"team {team_b}")
    refused(call("POST", "/teams", {"name": "c"}), "team_admin", "create teams")
    refused(call("DELETE", f"/teams/{team_a}"), "team_admin", "delete teams")
    refused(call("PATCH", f"/teams/{team_a}", {"budget": {"amount": 99}}), "team_admin", "change budget")
    refused(call("PATCH", f"/teams/{team_b}", {"name": "mine now"}), "team_admin", f"of team {team_b}")
    assert call("PATCH", f"/teams/{team_a}", {"name": "a, renamed"}).json()["name"] == "a, renamed"

    refused(call("GET", "/admin-keys"), "team_admin", "list admin keys")
    refused(call("POST", "/admin-keys", {"name": "x", "role": "admin"}), "team_admin", "issue admin keys")
    refused(call("GET", f"/spend?team_id={team_b}"), "team_admin", "spend of team")

    changes = call("GET", "/audit/changes").json()["data"]
    touched = {(c["change"]["action"], c["change"]["subject_id"]) for c in changes}
    assert ("key.rotate", key_a["id"]) in touched and ("team.update", team_a) in touched
    assert all(c["change"]["subject_id"] not in (key_b["id"], team_b, loose["id"]) for c in changes), (
        "a team admin reads the changes of its own teams only"
    )
    history = call("GET", f"/keys/{key_a['id']}/history").json()["data"]
    assert [c["change"]["action"] for c in history] == ["key.create", "key.update", "key.rotate"]


def test_a_team_admin_reads_only_its_teams_spend_and_records(admin_gateway: Gateway) -> None:  # noqa: F811 - the fixture
    gw = admin_gateway
    team_a = admin(gw, "POST", "/teams", {"name": "a"}).json()["id"]
    team_b = admin(gw, "POST", "/teams", {"name": "b"}).json()["id"]
    secrets = {
        team: admin(gw, "POST", "/keys", {"name": team, "team_id": team, "tags": [f"of:{team}"]}).json()[
            "key"
        ]
        for team in (team_a, team_b)
    }
    for secret in secrets.values():
        with sdk(gw, secret) as client:
            assert client.chat.completions.create(model="demo", messages=USER).choices
    assert wait_for(lambda: len(admin(gw, "GET", "/audit").json()["data"]) == 2, timeout=10)
    lead = issue(gw, "team_admin", [team_a])["key"]
    records = admin(gw, "GET", "/audit", key=lead).json()["data"]
    assert [r["record"]["team_id"] for r in records] == [team_a]
    spend = admin(gw, "GET", "/spend?group_by=team", key=lead).json()
    assert [line["group"] for line in spend["data"]] == [team_a] and spend["total"]["requests"] == 1
    everyone = admin(gw, "GET", "/spend?group_by=team").json()
    assert {line["group"] for line in everyone["data"]} == {team_a, team_b}
    # By tag too: the team admin's lines and total are its teams' only.
    tagged = admin(gw, "GET", "/spend?group_by=tag", key=lead).json()
    assert [line["group"] for line in tagged["data"]] == [f"of:{team_a}"] and tagged["total"]["requests"] == 1
    all_tags = admin(gw, "GET", "/spend?group_by=tag").json()
    assert {line["group"] for line in all_tags["data"]} == {f"of:{team_a}", f"of:{team_b}"}
    assert all_tags["total"]["requests"] == 2


def test_a_viewer_reads_and_changes_nothing(admin_gateway: Gateway) -> None:  # noqa: F811 - the fixture
    gw = admin_gateway
    team = admin(gw, "POST", "/teams", {"name": "t"}).json()["id"]
    key = admin(gw, "POST", "/keys", {"name": "k", "team_id": team}).json()
    viewer = issue(gw, "viewer")["key"]

    def call(method: str, path: str, body: Any = None) -> httpx.Response:
        return admin(gw, method, path, body, key=viewer)

    assert ids(call("GET", "/keys")) == {key["id"]} and ids(call("GET", "/teams")) == {team}
    assert call("GET", f"/keys/{key['id']}").status_code == 200
    for path in ("/spend", "/audit", "/audit/changes", f"/keys/{key['id']}/history"):
        assert call("GET", path).status_code == 200, path
    for method, path, body, what in (
        ("POST", "/keys", {"name": "x", "team_id": team}, "create keys"),
        ("PATCH", f"/keys/{key['id']}", {"name": "x"}, "change keys"),
        ("DELETE", f"/keys/{key['id']}", None, "revoke keys"),
        ("POST", f"/keys/{key['id']}/rotate", {}, "rotate keys"),
        ("POST", "/teams", {"name": "x"}, "create teams"),
        ("PATCH", f"/teams/{team}", {"name": "x"}, "change teams"),
        ("DELETE", f"/teams/{team}", None, "delete teams"),
        ("POST", "/admin-keys", {"name": "x", "role": "admin"}, "issue admin keys"),
        ("GET", "/admin-keys", None, "list admin keys"),
    ):
        refused(call(method, path, body), "viewer", what)
    assert admin(gw, "GET", f"/keys/{key['id']}").json()["name"] == "k"
    assert (
        len(admin(gw, "GET", "/keys").json()["data"]) == 1
        and len(admin(gw, "GET", "/teams").json()["data"]) == 1
    )


def test_admin_keys_are_issued_listed_and_revoked(admin_gateway: Gateway) -> None:  # noqa: F811 - the fixture
    gw = admin_gateway
    issued = issue(gw, "admin")
    assert admin(gw, "POST", "/teams", {"name": "by an admin key"}, key=issued["key"]).status_code == 201
    listed = admin(gw, "GET", "/admin-keys").json()["data"]
    assert [(k["id"], k["role"], k["status"]) for k in listed] == [(issued["id"], "admin", "active")]
    assert "key" not in listed[0] and "secret_hash" not in listed[0]
    bad = admin(gw, "POST", "/admin-keys", {"name": "x", "role": "team_admin"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "teams"
    unknown = admin(gw, "POST", "/admin-keys", {"name": "x", "role": "team_admin", "teams": ["team_nope"]})
    assert unknown.status_code == 400 and unknown.json()["error"]["code"] == "team_not_found"
    assert admin(gw, "POST", "/admin-keys", {"name": "x", "role": "root"}).status_code == 400
    assert admin(gw, "DELETE", f"/admin-keys/{issued['id']}").json()["status"] == "revoked"
    gone = admin(gw, "GET", "/keys", key=issued["key"])
    assert gone.status_code == 401 and gone.json()["error"]["code"] == "key_revoked"
    assert admin(gw, "GET", "/keys", key="sk-tw-admin-not-a-key").status_code == 401
    changes = admin(gw, "GET", "/audit/changes").json()["data"]
    made = [(c["change"]["action"], c["change"]["who"]) for c in changes]
    assert made == [
        ("admin_key.create", "master"),
        ("team.create", issued["id"]),
        ("admin_key.revoke", "master"),
    ], "each change names who made it: the master key, or the admin key's id"
    with sdk(gw, issued["key"]) as client, pytest.raises(openai.AuthenticationError):
        client.models.list()  # an admin key is no virtual key
    assert MASTER_KEY not in str(changes)
