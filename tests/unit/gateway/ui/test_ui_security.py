"""The web UI's guard: no page and no data without a session, a form post without its CSRF token
or from another origin refused, cookie flags, sign-out, and the roles held on every page."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from html import unescape
from pathlib import Path

import httpx
import pytest

from tests.conftest import MASTER_KEY, Gateway
from tests.support.mock_idp import MockIdp
from tests.support.servers import LoopThread
from tests.support.ui_client import SEEDED_KEYS, UiClient, seed_store

pytestmark = pytest.mark.integration

PAGES = [
    "/ui",
    "/ui/",
    "/ui/keys",
    "/ui/keys/key_research_1",
    "/ui/teams",
    "/ui/teams/team_research",
    "/ui/spend",
    "/ui/spend?group_by=team",
    "/ui/audit",
    "/ui/audit?verify=1",
    "/ui/audit/1",
    "/ui/audit/changes",
    "/ui/audit/changes?verify=1",
    "/ui/models",
    "/ui/admin-keys",
]
DATA = ["/ui/data/overview", "/ui/spend.csv", "/ui/spend.csv?group_by=key"]
CHANGES = [
    ("/ui/keys", {"name": "sneaky"}),
    ("/ui/keys/key_research_1", {"name": "renamed"}),
    ("/ui/keys/key_research_1/rotate", {"grace_s": "60"}),
    ("/ui/keys/key_research_1/revoke", {}),
    ("/ui/admin-keys", {"name": "sneaky", "role": "admin"}),
    ("/ui/teams", {"name": "sneaky"}),
    ("/ui/teams/team_research", {"name": "renamed"}),
    ("/ui/teams/team_research/delete", {}),
    ("/ui/logout", {}),
]


@pytest.fixture
def ui_gateway(
    loop_thread: LoopThread, tmp_path: Path, start_gateway_with: Callable[[str], Gateway]
) -> Gateway:
    url = f"sqlite:///{tmp_path}/ui.sqlite"
    loop_thread.run(seed_store(url))
    return start_gateway_with(
        f'storage: {{database_url: "{url}", key_refresh_s: 0.2}}\n'
        "providers: {mock: {kind: mock}}\nmodels: {demo: {targets: [{provider: mock, model: mock-1}]}}\n"
        "ui: {enabled: true}\n"
    )


@pytest.fixture
def admin_ui(ui_gateway: Gateway) -> Iterator[UiClient]:
    client = UiClient(ui_gateway.url)
    assert client.sign_in_with_master_key(MASTER_KEY).status_code == 303
    yield client
    client.close()


def key_of(gateway: Gateway, key_id: str) -> dict[str, object]:
    answer = httpx.get(
        f"{gateway.url}/admin/keys/{key_id}", headers={"authorization": f"Bearer {MASTER_KEY}"}
    )
    assert answer.status_code == 200
    result: dict[str, object] = answer.json()
    return result


def changes_of(gateway: Gateway) -> list[dict[str, object]]:
    """The audit of admin changes as the admin API reads it, each change's own fields."""
    answer = httpx.get(
        f"{gateway.url}/admin/audit/changes", headers={"authorization": f"Bearer {MASTER_KEY}"}
    )
    assert answer.status_code == 200
    return [entry["change"] for entry in answer.json()["data"]]


def assert_untouched(gateway: Gateway) -> None:
    """The seeded key and teams as they were, no admin key issued, and no change recorded."""
    key = key_of(gateway, "key_research_1")
    assert key["name"] == "key_research_1" and key["status"] == "active" and "rotated_at" not in key
    assert team_names(gateway) == {"research", "other"}, "nothing changed"
    admin_keys = httpx.get(
        f"{gateway.url}/admin/admin-keys", headers={"authorization": f"Bearer {MASTER_KEY}"}
    )
    assert admin_keys.status_code == 200 and admin_keys.json()["data"] == []
    assert changes_of(gateway) == []


def team_names(gateway: Gateway) -> set[str]:
    answer = httpx.get(f"{gateway.url}/admin/teams", headers={"authorization": f"Bearer {MASTER_KEY}"})
    return {team["name"] for team in answer.json()["data"]}


def test_the_ui_is_off_unless_enabled(start_gateway_with: Callable[[str], Gateway]) -> None:
    gateway = start_gateway_with("providers: {mock: {kind: mock}}\n")
    for path in ("/ui", "/ui/login", "/ui/static/ui.js"):
        answer = httpx.get(gateway.url + path)
        assert answer.status_code == 404 and answer.json()["error"]["code"] == "not_found"


def test_no_page_and_no_data_without_a_session(ui_gateway: Gateway, admin_ui: UiClient) -> None:
    stranger = httpx.Client(base_url=ui_gateway.url, follow_redirects=False, timeout=10)
    forged = httpx.Client(
        base_url=ui_gateway.url,
        follow_redirects=False,
        timeout=10,
        cookies={"tollway_ui": "made-up-session-id"},
    )
    for client in (stranger, forged):
        for path in PAGES:
            answer = client.get(path)
            assert answer.status_code == 303 and answer.headers["location"] == "/ui/login", path
            assert "key_research_1" not in answer.text and "team_research" not in answer.text
        for path in DATA:
            answer = client.get(path)
            assert answer.status_code == 401, path
            assert "requests" not in answer.text and "cost" not in answer.text
        for path, form in CHANGES:
            answer = client.post(
                path, data={"csrf": admin_ui.csrf, **form}, headers={"Origin": ui_gateway.url}
            )
            assert answer.status_code == 303 and answer.headers["location"] == "/ui/login", path
        client.close()
    assert_untouched(ui_gateway)
    # and the same pages do answer with a session, so the checks above can fail
    for path in PAGES:
        assert admin_ui.get(path).status_code == 200, path
    for path in DATA:
        assert admin_ui.get(path).status_code == 200, path
    # the sign-in page and the assets need no session
    for path in ("/ui/login", "/ui/static/ui.css", "/ui/static/uPlot.iife.min.js"):
        assert stranger_get(ui_gateway, path) == 200


def stranger_get(gateway: Gateway, path: str) -> int:
    return httpx.get(gateway.url + path).status_code


def test_a_form_post_without_its_csrf_token_is_refused(ui_gateway: Gateway, admin_ui: UiClient) -> None:
    for path, form in CHANGES:
        answer = admin_ui.post(path, {**form, "name": "changed"} if form else form, csrf=False)
        assert answer.status_code == 403 and "did not come from this page" in answer.text, path
        wrong = admin_ui.post(path, {"csrf": "not-the-token", **form})
        assert wrong.status_code == 403, path
    assert_untouched(ui_gateway)
    assert admin_ui.signed_in(), "a refused sign-out did not sign out"
    made = admin_ui.post("/ui/teams", {"name": "made-with-token"})
    assert made.status_code == 303 and "made-with-token" in team_names(ui_gateway)


def test_a_session_cookie_sent_from_another_origin_is_refused(
    ui_gateway: Gateway, admin_ui: UiClient
) -> None:
    evil = "http://evil.example"
    answer = admin_ui.post("/ui/teams", {"name": "from-evil"}, origin=evil)
    assert answer.status_code == 403 and "another site" in answer.text
    no_origin = admin_ui.post("/ui/teams", {"name": "from-nowhere"}, origin=None)
    assert no_origin.status_code == 403
    referer = admin_ui.http.post(
        "/ui/teams",
        data={"csrf": admin_ui.csrf, "name": "from-evil-referer"},
        headers={"Referer": evil + "/x"},
    )
    assert referer.status_code == 403
    for path in ("/ui/keys", "/ui/data/overview", "/ui/spend.csv"):
        read = admin_ui.http.get(path, headers={"Origin": evil})
        assert read.status_code == 403 and "key_research_1" not in read.text, path
    assert team_names(ui_gateway) == {"research", "other"}
    assert admin_ui.post("/ui/teams", {"name": "same-origin"}).status_code == 303


def test_cookie_flags_and_sign_out(ui_gateway: Gateway) -> None:
    client = UiClient(ui_gateway.url)
    client.get("/ui/login")
    plain = client.post("/ui/login", {"master_key": MASTER_KEY})
    cookie = next(c for c in plain.headers.get_list("set-cookie") if c.startswith("tollway_ui="))
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/ui" in cookie
    assert "Secure" not in cookie, "plain HTTP: a Secure cookie would never come back"

    behind_tls = httpx.Client(
        base_url=ui_gateway.url, follow_redirects=False, headers={"X-Forwarded-Proto": "https"}
    )
    page = behind_tls.get("/ui/login")
    token = page.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    login_cookie = next(c for c in page.headers.get_list("set-cookie") if c.startswith("tollway_ui_login="))
    assert "Secure" in login_cookie
    # httpx keeps a Secure cookie from plain HTTP, as a browser on the proxy's HTTPS would send it.
    tls = behind_tls.post(
        "/ui/login",
        data={"csrf": token, "master_key": MASTER_KEY},
        headers={
            "Origin": ui_gateway.url.replace("http://", "https://"),
            "Cookie": f"tollway_ui_login={token}",
        },
    )
    assert tls.status_code == 303
    secure = next(c for c in tls.headers.get_list("set-cookie") if c.startswith("tollway_ui="))
    assert "Secure" in secure and "HttpOnly" in secure
    behind_tls.close()

    client.get("/ui")
    session_cookie = client.http.cookies.get("tollway_ui")
    assert client.post("/ui/logout", {}).headers["location"] == "/ui/login"
    assert not client.signed_in()
    assert session_cookie
    replay = httpx.get(ui_gateway.url + "/ui", cookies={"tollway_ui": session_cookie})
    assert replay.status_code == 303 and replay.headers["location"] == "/ui/login", "dead on the server too"
    client.close()


def test_a_wrong_master_key_signs_nobody_in(ui_gateway: Gateway) -> None:
    client = UiClient(ui_gateway.url)
    client.get("/ui/login")
    answer = client.post("/ui/login", {"master_key": MASTER_KEY + "x"})
    assert answer.status_code == 401 and "not the master key" in answer.text
    assert not client.signed_in()
    client.get("/ui/login")
    other_site = client.post("/ui/login", {"master_key": MASTER_KEY}, origin="http://evil.example")
    assert other_site.status_code == 403 and not client.signed_in()
    client.close()


def test_a_team_admin_sees_and_changes_only_its_own_teams_keys(idp: MockIdp, sso_gateway: Gateway) -> None:
    idp.groups = ["research-leads"]
    lead = UiClient(sso_gateway.url)
    assert lead.sign_in_with_sso().status_code == 303
    own, other = SEEDED_KEYS["team_research"], SEEDED_KEYS["team_other"]
    listing = lead.get("/ui/keys")
    assert listing.status_code == 200 and own in listing.text and other not in listing.text
    for path in (f"/ui/keys/{other}", "/ui/keys?team_id=team_other", "/ui/teams/team_other",
                 "/ui/spend?team_id=team_other", "/ui/spend.csv?team_id=team_other"):  # fmt: skip
        refused = lead.get(path)
        assert refused.status_code == 403, path
        assert (
            "team_admin 'alice@example.com' may not see" in unescape(refused.text)
            and "team_research" in refused.text
        )
        assert "<table" not in refused.text and "<dl" not in refused.text and "requests" not in refused.text
    assert "team_other" not in lead.get("/ui/teams").text
    trail = lead.get("/ui/audit")
    assert own in trail.text and other not in trail.text, "records of other teams are left out"
    assert lead.get("/ui/audit/1").status_code == 200 and lead.get("/ui/audit/2").status_code == 403
    spend = lead.get("/ui/spend.csv?group_by=key&from=2025-03-01&to=2025-03-02")
    assert own in spend.text and other not in spend.text
    admin_keys = lead.get("/ui/admin-keys")
    assert admin_keys.status_code == 403 and "only an admin may" in admin_keys.text
    assert "Admin keys" not in lead.get("/ui").text, "the nav offers admin keys to admins only"
    lead.get("/ui/keys")
    for path, form in [
        (f"/ui/keys/{other}/revoke", {}),
        (f"/ui/keys/{other}/rotate", {"grace_s": "0"}),
        (f"/ui/keys/{other}", {"name": "renamed", "team_id": "team_other"}),
        ("/ui/keys", {"name": "theirs", "team_id": "team_other"}),
        ("/ui/keys", {"name": "no-team", "team_id": ""}),
        ("/ui/teams", {"name": "new-team"}),
        ("/ui/admin-keys", {"name": "mine", "role": "admin"}),
    ]:
        refused = lead.post(path, form)
        assert refused.status_code == 403 and "Not allowed" in refused.text, path
        assert "team_admin 'alice@example.com' may not" in unescape(refused.text), path
    assert key_of(sso_gateway, other)["status"] == "active" and "rotated_at" not in key_of(sso_gateway, other)
    # its own team: allowed, and each change is in the audit of admin changes under the SSO email
    created = lead.post("/ui/keys", {"name": "ours", "team_id": "team_research"})
    assert created.status_code == 200 and "sk-tw-" in created.text
    rotated = lead.post(f"/ui/keys/{own}/rotate", {"grace_s": "3600"})
    assert rotated.status_code == 200 and "has a new secret" in rotated.text and "grace-end" in rotated.text
    assert lead.post(f"/ui/keys/{own}/revoke", {}).status_code == 303
    assert key_of(sso_gateway, own)["status"] == "revoked"
    made = changes_of(sso_gateway)
    assert [(c["action"], c["who"], c["role"], c["via"]) for c in made] == [
        ("key.create", "alice@example.com", "team_admin", "sso"),
        ("key.rotate", "alice@example.com", "team_admin", "sso"),
        ("key.revoke", "alice@example.com", "team_admin", "sso"),
    ]
    assert made[1]["subject_id"] == own and "old one works until" in str(made[1]["detail"])
    history = lead.get(f"/ui/keys/{own}")
    assert "key.rotate" in history.text and "key.revoke" in history.text
    lead.close()


def test_a_team_admin_reads_only_its_own_teams_admin_changes(idp: MockIdp, sso_gateway: Gateway) -> None:
    master = {"authorization": f"Bearer {MASTER_KEY}"}
    for team in ("team_research", "team_other"):
        made = httpx.post(f"{sso_gateway.url}/admin/keys", json={"name": f"by-master-{team}", "team_id": team},
                          headers=master)  # fmt: skip
        assert made.status_code == 201
    idp.groups = ["research-leads"]
    lead = UiClient(sso_gateway.url)
    assert lead.sign_in_with_sso().status_code == 303
    page = lead.get("/ui/audit/changes")
    assert page.status_code == 200 and "by-master" not in page.text  # the list names subjects by id
    seqs = [int(n) for n in re.findall(r'href="/ui/audit/changes/(\d+)"', page.text)]
    assert seqs == [1], "the change of team_other's key is left out"
    assert lead.get("/ui/audit/changes/1").status_code == 200
    refused = lead.get("/ui/audit/changes/2")
    assert refused.status_code == 404 and "by-master-team_other" not in refused.text
    lead.close()


def test_a_viewer_reads_everything_and_changes_nothing(idp: MockIdp, sso_gateway: Gateway) -> None:
    idp.groups = ["auditors"]
    viewer = UiClient(sso_gateway.url)
    assert viewer.sign_in_with_sso().status_code == 303
    for path in ("/ui/keys", "/ui/teams", "/ui/spend", "/ui/audit", "/ui/audit/changes",
                 f"/ui/keys/{SEEDED_KEYS['team_other']}"):  # fmt: skip
        page = viewer.get(path)
        assert page.status_code == 200 and 'action="/ui/keys"' not in page.text, path
        assert (
            "Revoke key" not in page.text and "Rotate key" not in page.text and "Create team" not in page.text
        )
    viewer.get("/ui/keys")
    for path, form in CHANGES[:-1]:
        refused = viewer.post(path, {**form, "name": "changed", "team_id": "team_research"})
        assert refused.status_code == 403 and "Not allowed" in refused.text, path
        assert "viewer 'alice@example.com' may not" in unescape(refused.text), path
    assert viewer.get("/ui/admin-keys").status_code == 403
    assert key_of(sso_gateway, "key_research_1")["name"] == "key_research_1"
    assert "rotated_at" not in key_of(sso_gateway, "key_research_1")
    assert team_names(sso_gateway) == {"research", "other"}
    assert changes_of(sso_gateway) == []
    assert viewer.post("/ui/logout", {}).status_code == 303, "a viewer may still sign out"
    viewer.close()
