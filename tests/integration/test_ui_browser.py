"""The web UI in a real browser: Debian's headless Chromium driven by Playwright (the system
browser, no download) against a real gateway on SQLite and on PostgreSQL. It signs in, creates a
team and a key, copies the secret, calls through the openai SDK, finds the call on the overview,
spend and audit pages, verifies the chain, rotates the key (the old secret works during a short
grace, then gets 401), finds the changes in the key's history and the audit of admin changes,
issues and revokes an admin key, revokes the key and signs out.

Every page is screenshotted to tests/artifacts/ui/ (git-ignored). The run fails on a page that
shows a server error, on a JavaScript console error or uncaught exception, and on any request
that failed or was answered with an error status (a broken asset).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import openai
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, Playwright, Request, Response, sync_playwright

from gateway.policy.keys import KeyRecord, hash_secret
from gateway.store import open_store
from tests.conftest import MASTER_KEY, Gateway
from tests.integration.test_admin import fresh_pg_database  # noqa: F401 - a fixture
from tests.support import paths
from tests.support.servers import LoopThread
from tests.support.stores import make_record

pytestmark = pytest.mark.integration

ARTIFACTS = paths.TESTS / "artifacts" / "ui"
PG_URL = os.environ.get("TOLLWAY_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
VIEWPORT = {"width": 1280, "height": 800}  # a laptop screen: every page must work at this size
USER = [{"role": "user", "content": "hello from the browser test"}]
GRACE_S = 5.0  # the rotation's grace in this test: long enough to call with the old secret


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    # As root in a container Chromium's sandbox cannot start; the pages are our own.
    launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
    yield launched
    launched.close()


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/ui.sqlite"
        return
    # A database of its own, dropped after (the fixture of the admin API's tests).
    yield request.getfixturevalue("fresh_pg_database")


async def seed_history(database_url: str) -> None:
    """Two weeks of calls by two older keys, so the spend chart has days to draw."""
    store = open_store(database_url)
    await store.migrate()
    today = datetime.now(UTC).replace(hour=8, minute=0, second=0, microsecond=0)
    records = [
        make_record(n, at=today - timedelta(days=day), prefix=f"hist{day}", key_id=key, team_id=None,
                    model=model, cost_micros=(day % 5 + 1) * 12_000 * (2 if key == "key_batch" else 1))
        for day in range(1, 15)
        for n, (key, model) in enumerate([("key_batch", "demo"), ("key_chat", "fast")])
    ]  # fmt: skip
    try:
        await store.write_records(records)
    finally:
        await store.close()


class Watch:
    """What must not happen on any page: collected as the browser runs, asserted at the end."""

    def __init__(self, page: Page) -> None:
        self.problems: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.problems.append(f"uncaught: {error}"))
        page.on("requestfailed", self._failed)
        page.on("response", self._response)

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.problems.append(f"console error: {message.text}")

    def _failed(self, request: Request) -> None:
        # A download ends its request in the page's view: the file still arrives. A request the
        # browser itself abandoned as the test moved on to the next page (net::ERR_ABORTED: the
        # favicon, on a loaded machine) is no broken asset; one the server refused shows in
        # `_response` as its status.
        if request.url.split("?")[0].endswith(".csv") or request.failure == "net::ERR_ABORTED":
            return
        self.problems.append(f"request failed: {request.url} {request.failure}")

    def _response(self, response: Response) -> None:
        if response.status >= 400:
            self.problems.append(f"{response.status} for {response.url}")


def until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Poll from here: the pages' CSP forbids the eval that Playwright's wait_for_function uses."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "the page never got there"
        time.sleep(0.1)


def copied_secret(page: Page) -> str:
    """The secret a page shows once, copied with its copy button (checked on the clipboard)."""
    page.wait_for_selector("#secret")
    secret = page.input_value("#secret")
    page.click("button[data-copy=secret]")
    page.wait_for_selector("#copied:not([hidden])")
    assert page.evaluate("navigator.clipboard.readText()") == secret, "the copy button copied the secret"
    return secret


def call(gateway: Gateway, secret: str) -> bool:
    """A chat call with `secret` through the official SDK; openai.AuthenticationError if refused."""
    with openai.OpenAI(base_url=gateway.v1, api_key=secret, max_retries=0, timeout=10) as client:
        answer = client.chat.completions.create(model="demo", messages=USER, max_tokens=20)  # type: ignore[arg-type]
        return bool(answer.choices[0].message.content)


def visit(page: Page, shots: list[str], prefix: str, name: str, path: str | None = None) -> None:
    """Go to `path` (or stay), check the page shows no server error, and screenshot it."""
    if path is not None:
        answer = page.goto(path)
        assert answer is not None and answer.status < 400, (
            f"{path}: {answer.status if answer else 'no answer'}"
        )
    page.wait_for_load_state("load")
    body = page.content()
    assert "internal gateway error" not in body and "Traceback" not in body, name
    assert page.locator("nav a").count() in (0, 7), "the nav bar reaches every page"
    shot = ARTIFACTS / f"{prefix}-{name}.png"
    page.screenshot(path=str(shot))
    shots.append(shot.name)


def test_the_ui_end_to_end_in_chromium(
    browser: Browser,
    database_url: str,
    loop_thread: LoopThread,
    tmp_path: Path,
    start_gateway_with: Callable[[str], Gateway],
) -> None:
    prefix = "sqlite" if database_url.startswith("sqlite") else "postgres"
    loop_thread.run(seed_history(database_url))
    gateway = start_gateway_with(
        f"""
storage: {{database_url: "{database_url}", key_refresh_s: 0.2, spool_dir: "{tmp_path}/spool"}}
budgets: {{rates: {{CHF: 0.80, EUR: 0.92}}}}
pricing: {{models: {{"mock/mock-1": {{input: 2000, output: 6000}}}}}}
providers: {{mock: {{kind: mock}}}}
models:
  demo: {{targets: [{{provider: mock, model: mock-1}}]}}
  fast: {{targets: [{{provider: mock, model: mock-1}}]}}
ui: {{enabled: true}}
"""
    )
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(
        base_url=gateway.url, viewport=VIEWPORT, permissions=["clipboard-read", "clipboard-write"]
    )
    page = context.new_page()
    page.set_default_timeout(10_000)
    watch = Watch(page)
    shots: list[str] = []

    # Signed out, every page sends the browser to sign in.
    page.goto("/ui/keys")
    assert page.url.endswith("/ui/login")
    visit(page, shots, prefix, "login")
    page.fill("input[name=master_key]", MASTER_KEY)
    page.click("text=Sign in with the master key")
    page.wait_for_url(re.compile(r"/ui$"))
    assert page.inner_text("[data-field=requests]") == "0"

    # A team, then a key in it.
    visit(page, shots, prefix, "teams", "/ui/teams")
    page.fill("#create-team input[name=name]", "research")
    page.fill("#create-team input[name=rpm]", "600")
    page.click("text=Create team")
    page.wait_for_url(re.compile(r"/ui/teams/team_"))
    team_id = page.url.rsplit("/", 1)[1]
    visit(page, shots, prefix, "team")

    visit(page, shots, prefix, "keys", "/ui/keys")
    page.fill("#create-key input[name=name]", "browser-app")
    page.select_option("#create-key select[name=team_id]", team_id)
    page.fill("#create-key input[name=owner]", "alice@example.com")
    page.fill("#create-key input[name=budget_amount]", "50")
    page.click("text=Create key")
    secret = copied_secret(page)
    assert secret.startswith("sk-tw-")
    visit(page, shots, prefix, "key-created")
    key_link = page.locator("a[href^='/ui/keys/key_']").first.get_attribute("href")
    assert key_link is not None
    key_id = key_link.rsplit("/", 1)[1]

    # A call with the copied secret through the official SDK.
    assert call(gateway, secret)

    # The overview counts it without a reload (it refreshes itself every few seconds).
    page.goto("/ui")
    until(lambda: page.inner_text("[data-field=requests]") == "1")
    until(lambda: not page.inner_text("[data-field=cost_today]").startswith("0.0000"))
    visit(page, shots, prefix, "overview")

    # Spend: the new key's call, once the record is written (off the request path).
    deadline = datetime.now(UTC) + timedelta(seconds=10)
    while True:
        page.goto(f"/ui/spend?group_by=key&from={(datetime.now(UTC) - timedelta(days=14)).date()}")
        if key_id in page.inner_text("#spend") or datetime.now(UTC) > deadline:
            break
        page.wait_for_timeout(200)
    assert key_id in page.inner_text("#spend")
    page.wait_for_selector("#chart canvas")
    assert page.locator("#chart .u-legend th").count() >= 3, "a line for each key"
    visit(page, shots, prefix, "spend")
    usd = float(page.inner_text("#spend-total"))
    page.select_option("#spend-form select[name=currency]", "CHF")
    page.click("#spend-form button")
    page.wait_for_url(re.compile(r"currency=CHF"))
    assert float(page.inner_text("#spend-total")) == pytest.approx(usd * 0.80, rel=1e-3)
    with page.expect_download() as download_info:
        page.click("#csv")
    csv_text = Path(download_info.value.path()).read_text()
    assert csv_text.startswith("key,requests") and key_id in csv_text and "amount_chf" in csv_text
    page.goto(f"/ui/spend?group_by=model&from={(datetime.now(UTC) - timedelta(days=14)).date()}")
    assert "demo" in page.inner_text("#spend") and "fast" in page.inner_text("#spend")
    visit(page, shots, prefix, "spend-by-model")

    # Audit: search by the key, open the record, verify the chain.
    visit(page, shots, prefix, "audit", f"/ui/audit?key_id={key_id}")
    rows = page.locator("#records tbody tr")
    assert rows.count() == 1 and "200" in rows.first.inner_text()
    page.fill("#audit-form input[name=status]", "error")
    page.click("#audit-form button")
    assert "No record matches" in page.inner_text("#records")
    page.goto(f"/ui/audit?key_id={key_id}")
    page.click("#records tbody tr a")
    page.wait_for_url(re.compile(r"/ui/audit/\d+$"))
    assert key_id in page.inner_text("#record") and '"status": 200' in page.inner_text("#record")
    visit(page, shots, prefix, "audit-record")
    page.goto("/ui/audit")
    page.click("text=Verify the chain")
    page.wait_for_selector("#verification")
    assert "The chain holds" in page.inner_text("#verification")
    assert re.fullmatch(r"[0-9a-f]{64}", page.inner_text("#head-hash"))
    visit(page, shots, prefix, "audit-verified")

    visit(page, shots, prefix, "models", "/ui/models")
    assert "mock/mock-1" in page.inner_text("main") and "closed" in page.inner_text("main")

    # Revoke: the key stops working at once.
    visit(page, shots, prefix, "key", f"/ui/keys/{key_id}")
    page.fill("#edit-key input[name=rpm]", "120")
    page.click("#edit-key button")
    page.wait_for_selector("text=Saved.")
    assert page.input_value("#edit-key input[name=rpm]") == "120"

    # Rotate with a short grace: a new secret shown once; the old one works until the grace ends.
    page.fill("#rotate-key input[name=grace_other_s]", str(GRACE_S))
    page.click("text=Rotate key")
    page.wait_for_selector("text=has a new secret")
    rotated_at = time.monotonic()
    new_secret = copied_secret(page)
    assert new_secret.startswith("sk-tw-") and new_secret != secret
    assert page.locator("#grace-end").count() == 1, "the page says when the old secret stops"
    visit(page, shots, prefix, "key-rotated")
    assert call(gateway, new_secret) and call(gateway, secret), "both secrets work during the grace"
    assert time.monotonic() - rotated_at < GRACE_S, "the old secret was tried within its grace"
    until(lambda: time.monotonic() - rotated_at > GRACE_S + 0.5, timeout_s=GRACE_S + 5)
    with pytest.raises(openai.AuthenticationError) as refused:
        call(gateway, secret)
    assert refused.value.status_code == 401 and refused.value.code == "key_rotated"
    assert call(gateway, new_secret), "the new secret works on"

    # The key's history shows its creation, edit and rotation, by the signed-in admin.
    visit(page, shots, prefix, "key-history", f"/ui/keys/{key_id}")
    history = page.inner_text("#history")
    assert all(action in history for action in ("key.create", "key.update", "key.rotate")), history
    assert "master" in history

    page.click("text=Revoke key")
    page.wait_for_selector("text=is revoked")
    assert "revoked" in page.inner_text("h1")
    for revoked in (new_secret, secret):
        with pytest.raises(openai.AuthenticationError):
            call(gateway, revoked)

    # The audit of admin changes: the UI's changes are in it, in a chain that verifies.
    visit(page, shots, prefix, "audit-changes", "/ui/audit/changes")
    listed = page.inner_text("#changes")
    assert all(action in listed for action in ("team.create", "key.create", "key.rotate", "key.revoke"))
    page.click("text=Verify the chain of changes")
    page.wait_for_selector("#verification")
    assert "The chain holds" in page.inner_text("#verification")
    visit(page, shots, prefix, "audit-changes-verified")
    page.click("#changes tbody tr:has-text('key.rotate') a")
    page.wait_for_url(re.compile(r"/ui/audit/changes/\d+$"))
    assert '"rotated_at"' in page.inner_text("#after") and '"rotated_at"' not in page.inner_text("#before")
    assert "sk-tw-" not in page.inner_text("main"), "no secret in the audit"
    visit(page, shots, prefix, "audit-change")

    # Admin keys: issue one for a viewer (its secret shown once), then revoke it.
    visit(page, shots, prefix, "admin-keys", "/ui/admin-keys")
    page.fill("#create-admin-key input[name=name]", "finance-reader")
    page.select_option("#create-admin-key select[name=role]", "viewer")
    page.click("text=Issue admin key")
    admin_secret = copied_secret(page)
    assert admin_secret.startswith("sk-tw-admin-")
    visit(page, shots, prefix, "admin-key-created")
    with httpx.Client(base_url=gateway.url, headers={"authorization": f"Bearer {admin_secret}"}) as api:
        assert api.get("/admin/keys").status_code == 200
        assert api.post("/admin/teams", json={"name": "nope"}).status_code == 403
        page.goto("/ui/admin-keys")
        page.click("#admin-keys tbody tr:has-text('finance-reader') button")
        page.wait_for_selector("text=is revoked")
        assert api.get("/admin/keys").status_code == 401

    # 1,000 keys: the list stays one page of 50, quick to draw, with a next page.
    loop_thread.run(_many_keys(database_url, 1000, team_id))
    started = datetime.now(UTC)
    visit(page, shots, prefix, "keys-many", f"/ui/keys?team_id={team_id}")
    assert (datetime.now(UTC) - started).total_seconds() < 3
    assert page.locator("#keys tbody tr").count() == 50 and page.locator("a[rel=next]").count() == 1
    page.fill("form.filters input[name=q]", "bulk-0999")
    page.click("form.filters button")
    assert page.locator("#keys tbody tr").count() == 1

    page.click("text=Sign out")
    page.wait_for_url(re.compile(r"/ui/login$"))
    page.goto("/ui/spend")
    assert page.url.endswith("/ui/login"), "signed out: no page without signing in again"
    context.close()
    assert watch.problems == [], watch.problems
    assert len(shots) >= 20


async def _many_keys(database_url: str, count: int, team_id: str) -> None:
    store = open_store(database_url)
    await store.migrate()
    moment = datetime.now(UTC)
    records = [
        KeyRecord(id=f"key_bulk_{n:04d}", name=f"bulk-{n:04d}", secret_hash=hash_secret(f"bulk-{n}"),
                  created_at=moment, updated_at=moment, team_id=team_id)
        for n in range(count)
    ]  # fmt: skip
    try:
        for start in range(0, count, 50):  # PostgreSQL takes a batch on several pooled connections
            await asyncio.gather(*(store.put_key(record) for record in records[start : start + 50]))
    finally:
        await store.close()
