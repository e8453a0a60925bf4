"""Single sign-on to the web UI against a mock IdP over real HTTP (tests/support/mock_idp.py): the code
flow with PKCE, the group-to-role mapping, and every kind of bad ID token refused for its reason."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import httpx
import pytest

from gateway.admin.identity import from_groups
from gateway.config.schema import GroupRole
from gateway.ui.oidc import claim_at, code_challenge
from tests.conftest import Gateway
from tests.support.mock_idp import Forgery, MockIdp
from tests.support.ui_client import UiClient

pytestmark = pytest.mark.integration


@pytest.fixture
def browser(sso_gateway: Gateway) -> Iterator[UiClient]:
    client = UiClient(sso_gateway.url)
    yield client
    client.close()


@pytest.mark.parametrize(
    ("groups", "shown"),
    [
        (["tollway-admins"], "admin"),
        (["research-leads"], "team_admin: team_research"),
        (["auditors"], "viewer"),
        (["auditors", "tollway-admins", "unrelated"], "admin"),
    ],
)
def test_sso_signs_in_and_maps_groups_to_a_role(
    idp: MockIdp, browser: UiClient, groups: list[str], shown: str
) -> None:
    idp.groups = groups
    assert browser.sign_in_with_sso().status_code == 303
    page = browser.get("/ui")
    assert page.status_code == 200, page.text
    assert "alice@example.com" in page.text and f'role-{shown.split(":")[0]}">{shown}<' in page.text
    assert idp.token_calls == 1 and idp.refused == [], (
        "the IdP checked the client secret and the PKCE verifier"
    )


def test_a_user_in_no_mapped_group_cannot_sign_in(
    idp: MockIdp, browser: UiClient, caplog: pytest.LogCaptureFixture
) -> None:
    idp.groups = ["everyone"]
    with caplog.at_level(logging.WARNING, "tollway"):
        answer = browser.sign_in_with_sso()
    assert answer.status_code == 401 and "tollway_ui=" not in answer.headers.get("set-cookie", "")
    assert not browser.signed_in()
    assert "alice@example.com is in no group" in caplog.text


@pytest.mark.parametrize(
    ("forge", "reason"),
    [
        ("expired", "ExpiredSignatureError"),
        ("audience", "InvalidAudienceError"),
        ("issuer", "InvalidIssuerError"),
        ("unknown_key", "a key the IdP does not publish"),
        ("wrong_key", "InvalidSignatureError"),
        ("none", "signed with 'none', not an allowed algorithm"),
        ("hmac", "signed with 'HS256', not an allowed algorithm"),
        ("nonce", "nonce is not the one of this sign-in"),
    ],
)
def test_every_bad_id_token_is_refused(
    idp: MockIdp, browser: UiClient, caplog: pytest.LogCaptureFixture, forge: Forgery, reason: str
) -> None:
    idp.forge = forge
    with caplog.at_level(logging.WARNING, "tollway"):
        answer = browser.sign_in_with_sso()
    assert answer.status_code == 401, answer.text
    assert "Single sign-on failed" in answer.text
    assert not browser.signed_in(), "no session from a bad token"
    assert reason in caplog.text, caplog.text
    assert idp.token_calls == 1, "the code was redeemed, and its token refused"

    idp.forge = None  # the same browser signs in once the IdP is honest again
    assert browser.sign_in_with_sso().status_code == 303 and browser.signed_in()


def test_a_callback_from_another_browser_or_replayed_is_refused(idp: MockIdp, sso_gateway: Gateway) -> None:
    victim, attacker = UiClient(sso_gateway.url), UiClient(sso_gateway.url)
    try:
        start = attacker.http.get("/ui/sso/start")
        back = httpx.get(start.headers["Location"], follow_redirects=False).headers["Location"]
        callback = "/ui/sso/callback?" + back.split("?", 1)[1]
        # The attacker's callback URL opened in the victim's browser signs nobody in.
        assert victim.http.get(callback).status_code == 400 and not victim.signed_in()
        assert idp.token_calls == 0, "the code was not even redeemed"
        # The attacker's own browser can use it once; a replay finds no sign-in under way.
        assert attacker.http.get(callback).status_code == 303 and attacker.signed_in()
        assert attacker.http.get(callback).status_code == 400
    finally:
        victim.close()
        attacker.close()


def test_group_mapping_and_claim_paths() -> None:
    mapping = {
        "admins": GroupRole("admin"),
        "leads-a": GroupRole("team_admin", ["team_a"]),
        "leads-b": GroupRole("team_admin", ["team_b", "team_a"]),
        "readers": GroupRole("viewer"),
    }
    lead = from_groups("bob@example.com", ["leads-b", "readers", "leads-a"], mapping)
    assert lead is not None and lead.role == "team_admin" and lead.teams == ("team_a", "team_b")
    assert lead.manages_team("team_b") and not lead.manages_team("team_c") and not lead.manages_team(None)
    reader = from_groups("carol@example.com", ["readers"], mapping)
    assert reader is not None and not reader.can_write and reader.sees_team("team_c")
    assert from_groups("dave@example.com", ["nobody"], mapping) is None
    with pytest.raises(ValueError, match="needs the ids of its teams"):
        GroupRole("team_admin")
    claims = {"realm_access": {"roles": ["admins", 3]}, "groups": "readers"}
    assert claim_at(claims, "realm_access.roles") == ["admins"] and claim_at(claims, "groups") == ["readers"]
    assert claim_at(claims, "missing.path") == []
    # RFC 7636 appendix B's worked example
    assert (
        code_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk")
        == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    )
