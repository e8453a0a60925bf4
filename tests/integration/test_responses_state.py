"""Kept responses (`responses: {store: true}`) end to end with the official `openai` SDK over real
sockets, on SQLite and the real PostgreSQL: a two-turn conversation by `previous_response_id`
(the mock, and an Anthropic-format upstream that gets the whole conversation), retrieve, delete,
input_items with paging, each scoped to the key that made the response; the store off still
refusing; retention. And a Responses upstream's operations passed through, scoped
(tests/support/native_upstream.py as the upstream)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import msgspec
import openai
import pytest

from gateway.config.load import ConfigError, parse_config
from gateway.objects.responses_state import ResponsesState
from gateway.store.responses import StoredResponse
from tests.conftest import MASTER_KEY, Gateway
from tests.e2e.test_responses_gateway import anthropic_text
from tests.integration.test_admin import fresh_pg_database  # noqa: F401 - a fixture
from tests.support import paths
from tests.support.native_upstream import Answer, NativeUpstream
from tests.support.stores import opened_store

pytestmark = pytest.mark.integration

ALICE = "sk-alice-0123456789abcdef"
BOB = "sk-bob-0123456789abcdef00"
FIXTURES = paths.FIXTURES
SSE = "text/event-stream"


def keys_and_models(url: str) -> str:
    timeout = "timeout: {connect_s: 1, first_byte_s: 3, total_s: 8}"
    return f"""
keys:
  alice: {{secret: "{ALICE}"}}
  bob: {{secret: "{BOB}"}}
providers:
  mock: {{kind: mock}}
  oai: {{kind: openai, base_url: "{url}/v1", api_key: "sk-oai-0123456789", serves_responses: true, {timeout}}}
  claude: {{kind: anthropic, base_url: "{url}", api_key: "sk-ant-0123456789", {timeout}}}
models:
  mock: {{targets: [{{provider: mock, model: mock-1}}]}}
  openai: {{targets: [{{provider: oai, model: gpt-5.5}}]}}
  anthropic: {{targets: [{{provider: claude, model: claude-x}}]}}
"""


@pytest.fixture(params=["sqlite", "postgres"])
def kept_gw(request: pytest.FixtureRequest, tmp_path: Path, native_upstream: NativeUpstream) -> Gateway:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/store.sqlite"
    else:
        url = request.getfixturevalue("fresh_pg_database")
    # After the database, so that the gateway stops before the database is dropped.
    start_gateway_with: Callable[[str], Gateway] = request.getfixturevalue("start_gateway_with")
    return start_gateway_with(
        f'storage: {{database_url: "{url}", spool_dir: "{tmp_path}/spool"}}\n'
        "responses: {store: true, retention_days: 7}\n" + keys_and_models(native_upstream.url)
    )


def client(gw: Gateway, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.v1, api_key=key, max_retries=0, timeout=10)


# --- kept responses ---------------------------------------------------------------------------


def test_two_turns_on_the_mock_and_what_is_kept(kept_gw: Gateway) -> None:
    with client(kept_gw, ALICE) as alice, client(kept_gw, BOB) as bob:
        first = alice.responses.create(model="mock", input="Hello there", instructions="Be brief.")
        assert first.to_dict()["store"] is True
        second = alice.responses.create(
            model="mock", input=[{"role": "user", "content": "And again"}], previous_response_id=first.id
        )
        assert second.output_text == "You said: And again"
        assert second.previous_response_id == first.id and second.id != first.id

        again = alice.responses.retrieve(second.id)
        assert again.id == second.id and again.output_text == "You said: And again"

        # The expanded input: the first turn's input and output, then the second's own.
        items = alice.responses.input_items.list(second.id, order="asc")
        assert [item.type for item in items.data] == ["message", "message", "message"]
        texts = [item.content[0].text for item in items.data]  # type: ignore[union-attr,index]
        assert texts == ["Hello there", "You said: Hello there", "And again"]
        assert all(item.id for item in items.data)
        newest_first = alice.responses.input_items.list(second.id)  # desc by default
        assert [item.id for item in newest_first.data] == [item.id for item in items.data][::-1]

        page = alice.responses.input_items.list(second.id, order="asc", limit=2)
        assert [item.id for item in page.data] == [
            item.id for item in items.data[:2]
        ] and page.has_more is True
        rest = alice.responses.input_items.list(second.id, order="asc", limit=2, after=items.data[1].id)
        assert [item.id for item in rest.data] == [items.data[2].id] and rest.has_more is False
        paged = list(alice.responses.input_items.list(second.id, order="asc", limit=1))
        assert [item.id for item in paged] == [item.id for item in items.data]
        raw = httpx.get(
            f"{kept_gw.v1}/responses/{second.id}/input_items",
            params={"limit": "2", "order": "asc"},
            headers={"Authorization": f"Bearer {ALICE}"},
        ).json()
        assert (raw["object"], raw["first_id"], raw["last_id"]) == (
            "list",
            items.data[0].id,
            items.data[1].id,
        )
        for bad in ({"limit": "0"}, {"limit": "101"}, {"order": "sideways"}):
            refused = httpx.get(
                f"{kept_gw.v1}/responses/{second.id}/input_items",
                params=bad,
                headers={"Authorization": f"Bearer {ALICE}"},
            )
            assert refused.status_code == 400 and refused.json()["error"]["param"] in bad

        # Another key: the response does not exist, whichever way it asks.
        for attempt in (
            lambda: bob.responses.retrieve(first.id),
            lambda: bob.responses.input_items.list(first.id),
            lambda: bob.responses.delete(first.id),
            lambda: bob.responses.create(model="mock", input="x", previous_response_id=first.id),
        ):
            with pytest.raises(openai.NotFoundError) as missing:
                attempt()
            assert first.id in missing.value.message
        with pytest.raises(openai.NotFoundError) as unknown:
            alice.responses.create(model="mock", input="x", previous_response_id="resp_nope")
        assert unknown.value.body["message"] == "Previous response with id 'resp_nope' not found."  # type: ignore[index]
        assert unknown.value.param == "previous_response_id"

        deleted = httpx.delete(
            f"{kept_gw.v1}/responses/{first.id}", headers={"Authorization": f"Bearer {ALICE}"}
        )
        assert deleted.json() == {"id": first.id, "object": "response", "deleted": True}
        assert deleted.headers["x-request-id"]
        with pytest.raises(openai.NotFoundError):
            alice.responses.retrieve(first.id)
        with pytest.raises(openai.NotFoundError):
            alice.responses.create(model="mock", input="x", previous_response_id=first.id)

        unkept = alice.responses.create(model="mock", input="Forget me", store=False)
        assert unkept.to_dict()["store"] is False
        with pytest.raises(openai.NotFoundError):
            alice.responses.retrieve(unkept.id)


def test_a_translated_upstream_gets_the_whole_conversation_and_a_stream_is_kept(
    kept_gw: Gateway, native_upstream: NativeUpstream
) -> None:
    native_upstream.queue(Answer(anthropic_text("Bern is cool.")))
    native_upstream.queue(Answer(anthropic_text("About 18 degrees.")))
    with client(kept_gw, ALICE) as alice:
        events = list(
            alice.responses.create(
                model="mock", input="Weather in Bern?", instructions="Old rules.", stream=True
            )
        )
        first = events[-1].response  # type: ignore[union-attr]
        assert first.output_text == "You said: Weather in Bern?"
        second = alice.responses.create(
            model="anthropic", input="How warm?", previous_response_id=first.id, instructions="New rules."
        )
        assert second.output_text == "Bern is cool."
        third = alice.responses.create(model="anthropic", input="Exactly?", previous_response_id=second.id)
        assert third.output_text == "About 18 degrees."
    sent = msgspec.json.decode(native_upstream.requests[0].body)
    assert sent["system"] == "New rules."  # the earlier instructions are not carried over
    assert [(m["role"], m["content"]) for m in sent["messages"]] == [
        ("user", "Weather in Bern?"),
        ("assistant", "You said: Weather in Bern?"),
        ("user", "How warm?"),
    ]
    later = msgspec.json.decode(native_upstream.requests[1].body)
    assert "system" not in later
    assert [m["role"] for m in later["messages"]] == ["user", "assistant", "user", "assistant", "user"]


def test_team_mates_see_each_others_responses(
    tmp_path: Path, start_gateway_with: Callable[[str], Gateway], native_upstream: NativeUpstream
) -> None:
    gw = start_gateway_with(
        f'storage: {{database_url: "sqlite:///{tmp_path}/t.sqlite", key_refresh_s: 0.2, spool_dir: "{tmp_path}/s"}}\n'
        "responses: {store: true}\n" + keys_and_models(native_upstream.url)
    )
    admin = {"Authorization": f"Bearer {MASTER_KEY}"}
    team = httpx.post(gw.url + "/admin/teams", json={"name": "research"}, headers=admin).json()["id"]
    secrets = [
        httpx.post(gw.url + "/admin/keys", json={"name": n, "team_id": team}, headers=admin).json()["key"]
        for n in ("one", "two")
    ]
    made = None
    for _ in range(100):  # keys reach the gateway within key_refresh_s
        try:
            with client(gw, secrets[0]) as one:
                made = one.responses.create(model="mock", input="Team work")
            with client(gw, secrets[1]) as two:
                made = one_seen = two.responses.retrieve(made.id)
            break
        except openai.AuthenticationError:
            asyncio.run(asyncio.sleep(0.05))
    assert made is not None and one_seen.output_text == "You said: Team work"
    with client(gw, ALICE) as alice, pytest.raises(openai.NotFoundError):
        alice.responses.retrieve(made.id)


def test_store_off_still_refuses_a_previous_response_id(
    tmp_path: Path, start_gateway_with: Callable[[str], Gateway], native_upstream: NativeUpstream
) -> None:
    gw = start_gateway_with(
        f'storage: {{database_url: "sqlite:///{tmp_path}/off.sqlite", spool_dir: "{tmp_path}/s"}}\n'
        + keys_and_models(native_upstream.url)
    )
    with client(gw, ALICE) as alice:
        first = alice.responses.create(model="mock", input="Hello")
        assert first.to_dict()["store"] is False
        with pytest.raises(openai.BadRequestError) as refused:
            alice.responses.create(model="mock", input="x", previous_response_id=first.id)
        assert "keeps no responses" in refused.value.message
        with pytest.raises(openai.NotFoundError):
            alice.responses.retrieve(first.id)


def test_check_config_refuses_keeping_responses_without_a_store() -> None:
    with pytest.raises(ConfigError) as refused:
        parse_config("responses: {store: true}\n", {}, "t.yaml")
    assert refused.value.errors == [
        "responses.store: keeping responses needs a store (set storage.database_url)"
    ]
    with pytest.raises(ConfigError) as typo:
        parse_config(
            'responses: {store: true, keep_days: 3}\nstorage: {database_url: "sqlite:///x"}\n', {}, "t"
        )
    assert [e.split(" (", 1)[0] for e in typo.value.errors] == ["responses.keep_days: unknown field"]
    assert "did you mean 'retention_days'" in typo.value.errors[0]


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
async def test_retention_deletes_old_rows(kind: str, tmp_path: Path) -> None:
    now = datetime(2026, 3, 1, tzinfo=UTC)
    async with opened_store(kind, tmp_path) as store:

        def row(rid: str, age_days: float) -> StoredResponse:
            at = now - timedelta(days=age_days)
            return StoredResponse(rid, "cfg_alice", None, at, "mock", "completed", input=[msgspec.Raw(b"{}")])

        await store.put_responses([row("resp_old", 8), row("resp_new", 6), row("resp_native", 9)])
        state = ResponsesState(store, True, retention_days=7, clock=now.timestamp)
        assert await state.prune() == 2
        assert (
            await store.get_response("resp_old") is None and await store.get_response("resp_native") is None
        )
        kept = await store.get_response("resp_new")
        assert (
            kept is not None
            and kept.input == [msgspec.Raw(b"{}")]
            and kept.created_at == now - timedelta(days=6)
        )
        assert await state.find("resp_new", "cfg_alice", None) is not None
        assert await state.find("resp_new", "cfg_bob", None) is None
        later = ResponsesState(store, True, retention_days=5, clock=now.timestamp)
        assert await later.find("resp_new", "cfg_alice", None) is None  # past retention, not yet pruned


async def test_writes_wait_for_nothing_and_reach_the_store(tmp_path: Path) -> None:
    async with opened_store("sqlite", tmp_path) as store:
        state = ResponsesState(store, True, flush_interval_s=0.01)
        state.start()
        try:
            at = datetime.now(UTC)
            state.remember(StoredResponse("resp_1", "k", None, at, "mock", "completed"))
            assert await store.get_response("resp_1") is None  # remembered, not yet written
            assert await state.find("resp_1", "k", None) is not None  # from memory meanwhile
            for _ in range(200):
                if await store.get_response("resp_1") is not None:
                    break
                await asyncio.sleep(0.01)
            assert await store.get_response("resp_1") is not None
        finally:
            await state.aclose()


# --- a Responses upstream's operations ---------------------------------------------------------


def native_answer(rid: str, status: str = "completed") -> bytes:
    answer: Any = msgspec.json.decode((FIXTURES / "responses/openai_text.json").read_bytes())
    answer["id"], answer["status"] = rid, status
    return msgspec.json.encode(answer)


@pytest.fixture
def native_gw(
    tmp_path: Path, start_gateway_with: Callable[[str], Gateway], native_upstream: NativeUpstream
) -> Gateway:
    # No store at all: which key made a native response is remembered in memory.
    return start_gateway_with(keys_and_models(native_upstream.url))


def test_native_operations_pass_through_scoped(native_gw: Gateway, native_upstream: NativeUpstream) -> None:
    native_upstream.queue(Answer(native_answer("resp_up1")))
    with client(native_gw, ALICE) as alice, client(native_gw, BOB) as bob:
        made = alice.responses.create(model="openai", input="Hello", background=True)
        assert made.id == "resp_up1"
        upstream_calls = len(native_upstream.requests)
        for attempt in (
            lambda: bob.responses.retrieve(made.id),
            lambda: bob.responses.cancel(made.id),
            lambda: bob.responses.delete(made.id),
            lambda: bob.responses.input_items.list(made.id),
        ):
            with pytest.raises(openai.NotFoundError):
                attempt()
        with pytest.raises(openai.BadRequestError) as stateless:  # as for an id never seen
            bob.responses.create(model="openai", input="x", previous_response_id=made.id)
        assert "keeps no responses" in stateless.value.message
        assert len(native_upstream.requests) == upstream_calls  # none of them reached the upstream

        native_upstream.queue(Answer(native_answer("resp_up1", "in_progress")))
        assert (
            alice.responses.retrieve(made.id, include=["message.output_text.logprobs"]).status
            == "in_progress"
        )
        got = native_upstream.last
        assert got.method == "GET" and got.headers["Authorization"] == "Bearer sk-oai-0123456789"
        assert (
            got.path_qs == "/v1/responses/resp_up1?include%5B%5D=message.output_text.logprobs"
        )  # as the SDK sent it

        native_upstream.queue(Answer(native_answer("resp_up1", "cancelled")))
        assert alice.responses.cancel(made.id).status == "cancelled"
        assert (native_upstream.last.method, native_upstream.last.path_qs) == (
            "POST",
            "/v1/responses/resp_up1/cancel",
        )

        listing = b'{"object":"list","data":[],"first_id":null,"last_id":null,"has_more":false}'
        native_upstream.queue(Answer(listing))
        assert alice.responses.input_items.list(made.id, limit=5).data == []
        assert native_upstream.last.path_qs == "/v1/responses/resp_up1/input_items?limit=5"

        native_upstream.queue(Answer(b'{"object":"response.input_tokens","input_tokens":7}'))
        counted = alice.responses.input_tokens.count(
            model="openai", input="Hello", previous_response_id=made.id
        )
        assert counted.input_tokens == 7
        sent = msgspec.json.decode(native_upstream.last.body)
        assert native_upstream.last.path_qs == "/v1/responses/input_tokens"
        assert sent["model"] == "gpt-5.5" and sent["previous_response_id"] == "resp_up1"
        with pytest.raises(openai.NotFoundError):
            bob.responses.input_tokens.count(model="openai", input="Hello", previous_response_id=made.id)
        with pytest.raises(openai.BadRequestError):
            alice.responses.input_tokens.count(model="mock", input="Hello")  # no Responses upstream

        compacted = b'{"id":"resp_c","object":"response.compaction","created_at":1,"output":[],"usage":null}'
        native_upstream.queue(Answer(compacted))
        alice.responses.compact(model="openai", input="Hello")
        assert native_upstream.last.path_qs == "/v1/responses/compact"
        assert msgspec.json.decode(native_upstream.last.body)["model"] == "gpt-5.5"

        # A follow-up turn: the upstream keeps the response, so the id goes to it as it came.
        native_upstream.queue(Answer(native_answer("resp_up2")))
        follow = alice.responses.create(model="openai", input="More", previous_response_id=made.id)
        assert follow.id == "resp_up2"
        assert msgspec.json.decode(native_upstream.last.body)["previous_response_id"] == "resp_up1"
        with pytest.raises(openai.BadRequestError) as elsewhere:  # a translated upstream cannot
            alice.responses.create(model="anthropic", input="More", previous_response_id=made.id)
        assert elsewhere.value.param == "previous_response_id"

        native_upstream.queue(Answer(b'{"id":"resp_up1","object":"response","deleted":true}'))
        alice.responses.delete(made.id)
        assert (native_upstream.last.method, native_upstream.last.path_qs) == (
            "DELETE",
            "/v1/responses/resp_up1",
        )
        with pytest.raises(openai.NotFoundError):
            alice.responses.retrieve(made.id)  # forgotten once the upstream deleted it


def test_a_streamed_native_response_is_remembered(
    native_gw: Gateway, native_upstream: NativeUpstream
) -> None:
    native_upstream.queue(Answer((FIXTURES / "responses/openai_text.sse").read_bytes(), content_type=SSE))
    with client(native_gw, ALICE) as alice, client(native_gw, BOB) as bob:
        events = list(alice.responses.create(model="openai", input="Hello", stream=True))
        rid = events[0].response.id  # type: ignore[union-attr]
        with pytest.raises(openai.NotFoundError):
            bob.responses.retrieve(rid)
        native_upstream.queue(Answer(native_answer(rid)))
        assert alice.responses.retrieve(rid).id == rid
        assert native_upstream.last.path_qs == f"/v1/responses/{rid}"
