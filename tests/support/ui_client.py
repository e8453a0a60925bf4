"""A browser-like client of the web UI for the tests that need no browser: a cookie jar, the
CSRF token of the last page, and the two ways to sign in."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from gateway.policy.keys import KeyRecord, TeamRecord, hash_secret
from gateway.store import open_store
from tests.support.mock_idp import MockIdp, start_idp
from tests.support.servers import LoopThread
from tests.support.stores import make_record

_CSRF = re.compile(r'name="csrf" value="([^"]+)"')
T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
# Two teams and a key in each, written to the store before the gateway starts, so a config can
# name the teams a team_admin group manages.
TEAMS = ("team_research", "team_other")
SEEDED_KEYS = {"team_research": "key_research_1", "team_other": "key_other_1"}


async def seed_store(database_url: str) -> None:
    store = open_store(database_url)
    await store.migrate()
    try:
        for team in TEAMS:
            await store.put_team(
                TeamRecord(id=team, name=team.removeprefix("team_"), created_at=T0, updated_at=T0)
            )
            key_id = SEEDED_KEYS[team]
            secret = f"sk-tw-seeded-{key_id}-0123456789abcdef"
            await store.put_key(
                KeyRecord(
                    id=key_id,
                    name=key_id,
                    secret_hash=hash_secret(secret),
                    created_at=T0,
                    updated_at=T0,
                    team_id=team,
                )
            )
        # A call by each key, so the audit and spend pages have something to show or to hide.
        await store.write_records(
            [make_record(n, key_id=SEEDED_KEYS[team], team_id=team) for n, team in enumerate(TEAMS, start=1)]
        )
    finally:
        await store.close()


class UiClient:
    def __init__(self, base: str) -> None:
        self.base = base
        self.http = httpx.Client(base_url=base, follow_redirects=False, timeout=10)
        self.csrf = ""

    def close(self) -> None:
        self.http.close()

    def get(self, path: str, **kwargs: object) -> httpx.Response:
        answer = self.http.get(path, **kwargs)  # type: ignore[arg-type]
        found = _CSRF.search(answer.text)
        if found:
            self.csrf = found.group(1)
        return answer

    def post(
        self, path: str, data: dict[str, str], *, origin: str | None = "", csrf: bool = True
    ) -> httpx.Response:
        headers = {} if origin is None else {"Origin": origin or self.base}
        body = {**({"csrf": self.csrf} if csrf else {}), **data}
        return self.http.post(path, data=body, headers=headers)

    def sign_in_with_master_key(self, key: str) -> httpx.Response:
        self.get("/ui/login")
        answer = self.post("/ui/login", {"master_key": key})
        self.get("/ui")
        return answer

    def sign_in_with_sso(self) -> httpx.Response:
        """Through the IdP, as a browser follows the redirects; the answer of the callback."""
        start = self.http.get("/ui/sso/start")
        assert start.status_code == 303, start.text
        at_idp = httpx.get(start.headers["Location"], follow_redirects=False, timeout=10)
        assert at_idp.status_code == 302, at_idp.text
        # The IdP sends the browser to the configured redirect URL, whose host the tests cannot
        # know before the gateway has its port: the same path and query, here.
        back = urlsplit(at_idp.headers["Location"])
        answer = self.http.get(f"{back.path}?{back.query}")
        self.get("/ui")
        return answer

    def signed_in(self) -> bool:
        return self.http.get("/ui").status_code == 200


@pytest.fixture
def idp(loop_thread: LoopThread) -> Iterator[MockIdp]:
    state = MockIdp()
    runner = loop_thread.run(start_idp(state))
    yield state
    loop_thread.run(runner.cleanup())


def sso_config(idp: MockIdp, database_url: str) -> str:
    return f"""
storage: {{database_url: "{database_url}", key_refresh_s: 0.2}}
providers: {{mock: {{kind: mock}}}}
models: {{demo: {{targets: [{{provider: mock, model: mock-1}}]}}}}
ui:
  enabled: true
  oidc:
    issuer: "{idp.url}"
    client_id: "{idp.client_id}"
    client_secret: "{idp.client_secret}"
    redirect_url: "https://tollway.example/ui/sso/callback"
    display_name: Example IdP
    roles:
      tollway-admins: {{role: admin}}
      research-leads: {{role: team_admin, teams: [team_research]}}
      auditors: {{role: viewer}}
"""


@pytest.fixture
def sso_gateway(
    idp: MockIdp, loop_thread: LoopThread, tmp_path: Path, start_gateway_with: Callable[[str], Any]
) -> Any:
    url = f"sqlite:///{tmp_path}/ui.sqlite"
    loop_thread.run(seed_store(url))
    return start_gateway_with(sso_config(idp, url))
