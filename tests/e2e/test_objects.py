"""Files, uploads, batches and stored chat completions through the gateway, with the official
`openai` SDK against an OpenAI-format upstream that keeps them (tests/support/objects_upstream.py) over
real HTTP: uploads byte for byte, every object scoped to the key that made it (another key gets
404 and nothing reaches the provider), lists cut to the caller's own, and a batch taken from
create to complete with its spend accounted at the batch price."""

from __future__ import annotations

import io
import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgspec
import openai
import pytest

from adapters.schema import usage_of
from gateway.accounting.pricing import PriceTable, load_price_file
from tests.conftest import MASTER_KEY, Gateway
from tests.support.objects_upstream import USAGE, ObjectsUpstream, start_objects_upstream
from tests.support.servers import LoopThread, start_gateway

ALICE = "sk-test-alice-key-0123456789"
BOB = "sk-test-bob-key-0123456789ab"
LIMITED = "sk-test-limited-key-01234567"


@pytest.fixture
def objects_upstream(loop_thread: LoopThread) -> Iterator[ObjectsUpstream]:
    state = ObjectsUpstream()
    runner = loop_thread.run(start_objects_upstream(state))
    yield state
    loop_thread.run(runner.cleanup())


def _config(upstream: ObjectsUpstream, tmp_path: Path, poll_s: float = 3600.0) -> str:
    return f"""
server: {{master_key: "{MASTER_KEY}", max_body_bytes: 65536}}
logging: {{request_log: "off"}}
storage: {{database_url: "sqlite:///{tmp_path}/tollway.sqlite", spool_dir: "{tmp_path}/spool"}}
files: {{batch_poll_s: {poll_s}}}
providers:
  up: {{kind: openai, base_url: "{upstream.url}", api_key: "{upstream.api_key}"}}
models:
  mini: {{targets: [{{provider: up, model: gpt-4o-mini}}]}}
keys:
  alice: {{secret: "{ALICE}"}}
  bob: {{secret: "{BOB}"}}
  limited: {{secret: "{LIMITED}", models: [mini]}}
"""


_CLIENTS: list[openai.OpenAI] = []


@pytest.fixture
def gateway(loop_thread: LoopThread, objects_upstream: ObjectsUpstream, tmp_path: Path) -> Iterator[Gateway]:
    runner, url = loop_thread.run(start_gateway(_config(objects_upstream, tmp_path), {}))
    yield Gateway(url, tmp_path / "none.log")
    while _CLIENTS:
        _CLIENTS.pop().close()
    loop_thread.run(runner.cleanup())


def client(gateway: Gateway, key: str) -> openai.OpenAI:
    made = openai.OpenAI(base_url=gateway.v1, api_key=key, max_retries=0)
    _CLIENTS.append(made)
    return made


def _batch_input(lines: int) -> bytes:
    rows = [
        {
            "custom_id": f"req-{n}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"hi {n}"}]},
        }
        for n in range(lines)
    ]
    return b"\n".join(msgspec.json.encode(row) for row in rows) + b"\n"


def test_file_upload_streams_through_byte_for_byte(
    gateway: Gateway, objects_upstream: ObjectsUpstream
) -> None:
    content = os.urandom(3 * 1024 * 1024 + 5)  # far over max_body_bytes: never held whole
    alice = client(gateway, ALICE)
    made = alice.files.create(
        file=("data.bin", io.BytesIO(content), "application/octet-stream"), purpose="batch"
    )
    assert objects_upstream.contents[made.id] == content
    assert objects_upstream.auth[-1] == f"Bearer {objects_upstream.api_key}"  # the provider's key
    assert alice.files.retrieve(made.id).bytes == len(content)
    assert alice.files.content(made.id).read() == content
    deleted = alice.files.delete(made.id)
    assert deleted.deleted is True
    with pytest.raises(openai.NotFoundError):
        alice.files.retrieve(made.id)  # forgotten with it


def test_another_key_gets_404_and_nothing_reaches_the_provider(
    gateway: Gateway, objects_upstream: ObjectsUpstream
) -> None:
    made = client(gateway, ALICE).files.create(file=("a.jsonl", io.BytesIO(b"{}\n")), purpose="batch")
    bob = client(gateway, BOB)
    calls = len(objects_upstream.seen)
    for attempt in (
        lambda: bob.files.retrieve(made.id),
        lambda: bob.files.content(made.id),
        lambda: bob.files.delete(made.id),
        lambda: bob.batches.create(
            input_file_id=made.id, endpoint="/v1/chat/completions", completion_window="24h"
        ),
    ):
        with pytest.raises(openai.NotFoundError) as refused:
            attempt()
        assert made.id in refused.value.message
    assert len(objects_upstream.seen) == calls
    assert made.id in objects_upstream.files  # not deleted

    # A file the gateway did not create is nobody's: only the master key reaches it.
    objects_upstream.files["file-foreign"] = {"id": "file-foreign", "object": "file", "bytes": 1}
    with pytest.raises(openai.NotFoundError):
        client(gateway, ALICE).files.retrieve("file-foreign")
    assert client(gateway, MASTER_KEY).files.retrieve("file-foreign").id == "file-foreign"


def test_lists_show_only_the_callers_own_objects(gateway: Gateway, objects_upstream: ObjectsUpstream) -> None:
    alice, bob = client(gateway, ALICE), client(gateway, BOB)
    mine = {
        alice.files.create(file=(f"{n}.jsonl", io.BytesIO(b"{}\n")), purpose="batch").id for n in range(3)
    }
    theirs = bob.files.create(file=("b.jsonl", io.BytesIO(b"{}\n")), purpose="batch").id
    objects_upstream.files["file-foreign"] = {"id": "file-foreign", "object": "file", "purpose": "batch"}
    # One item a page: the SDK follows the cursor through the filtered pages.
    assert {f.id for f in alice.files.list(limit=1)} == mine
    assert [f.id for f in bob.files.list()] == [theirs]
    assert {f.id for f in client(gateway, MASTER_KEY).files.list()} == mine | {theirs, "file-foreign"}
    assert list(bob.files.list(purpose="fine-tune")) == []  # the query reaches the provider
    assert ("GET", "/v1/files", "purpose=fine-tune&limit=100") in objects_upstream.seen


def _spend_by_key(gateway: Gateway) -> dict[str | None, int]:
    answer = httpx.get(
        gateway.url + "/admin/spend?group_by=key", headers={"Authorization": f"Bearer {MASTER_KEY}"}
    )
    assert answer.status_code == 200, answer.text
    return {line["group"]: line["cost_micros"] for line in answer.json()["data"]}


def _batch_price(lines: int) -> int:
    usage = usage_of(USAGE["prompt_tokens"], USAGE["completion_tokens"])
    table = PriceTable(load_price_file(), provider_kinds={"up": "openai"})
    each = table.batch_cost_for("up", "gpt-4o-mini", usage)
    full = table.cost_for("up", "gpt-4o-mini", usage)
    assert each * 2 == full  # OpenAI's batch discount is half the price
    return lines * each


def _wait_for_spend(
    gateway: Gateway, key: str, expected: int, timeout: float = 10.0
) -> dict[str | None, int]:
    deadline = time.monotonic() + timeout
    spend = _spend_by_key(gateway)
    while spend.get(key) != expected and time.monotonic() < deadline:
        time.sleep(0.1)
        spend = _spend_by_key(gateway)
    return spend


def test_batch_create_to_complete_is_accounted_once_at_the_batch_price(
    gateway: Gateway, objects_upstream: ObjectsUpstream
) -> None:
    alice, bob = client(gateway, ALICE), client(gateway, BOB)
    source = alice.files.create(file=("in.jsonl", io.BytesIO(_batch_input(3))), purpose="batch")
    batch = alice.batches.create(
        input_file_id=source.id,
        endpoint="/v1/chat/completions",
        completion_window="24h",
        metadata={"run": "1"},
    )
    assert objects_upstream.batches[batch.id]["metadata"] == {"run": "1"}
    with pytest.raises(openai.NotFoundError):
        bob.batches.retrieve(batch.id)
    with pytest.raises(openai.NotFoundError):
        bob.batches.cancel(batch.id)
    assert [b.id for b in bob.batches.list()] == []

    done = alice.batches.retrieve(batch.id)
    assert done.status == "completed" and done.output_file_id
    output = alice.files.content(done.output_file_id).read()  # the batch's output is its owner's
    assert output.count(b"\n") == 3
    with pytest.raises(openai.NotFoundError):
        bob.files.content(done.output_file_id)

    spend = _wait_for_spend(gateway, "cfg_alice", _batch_price(3))
    assert spend["cfg_alice"] == _batch_price(3)
    alice.batches.retrieve(batch.id)  # seen again: not accounted again
    time.sleep(0.5)
    assert _spend_by_key(gateway)["cfg_alice"] == _batch_price(3)
    assert [b.id for b in alice.batches.list()] == [batch.id]


def test_the_poller_accounts_a_batch_nobody_retrieves(
    loop_thread: LoopThread, objects_upstream: ObjectsUpstream, tmp_path: Path
) -> None:
    runner, url = loop_thread.run(start_gateway(_config(objects_upstream, tmp_path, poll_s=0.2), {}))
    try:
        gateway = Gateway(url, tmp_path / "none.log")
        bob = client(gateway, BOB)
        source = bob.files.create(file=("in.jsonl", io.BytesIO(_batch_input(2))), purpose="batch")
        bob.batches.create(input_file_id=source.id, endpoint="/v1/chat/completions", completion_window="24h")
        assert _wait_for_spend(gateway, "cfg_bob", _batch_price(2)).get("cfg_bob") == _batch_price(2)
    finally:
        while _CLIENTS:
            _CLIENTS.pop().close()
        loop_thread.run(runner.cleanup())


def test_a_key_limited_to_models_cannot_create_batches(gateway: Gateway) -> None:
    with pytest.raises(openai.PermissionDeniedError) as refused:
        client(gateway, LIMITED).batches.create(
            input_file_id="file-x", endpoint="/v1/chat/completions", completion_window="24h"
        )
    assert "limited to some models" in refused.value.message


def test_uploads_in_parts_make_a_file_of_the_same_owner(
    gateway: Gateway, objects_upstream: ObjectsUpstream
) -> None:
    alice, bob = client(gateway, ALICE), client(gateway, BOB)
    parts = [os.urandom(1024 * 1024), os.urandom(512 * 1024 + 3)]
    upload = alice.uploads.create(
        bytes=sum(map(len, parts)), filename="big.jsonl", mime_type="text/jsonl", purpose="batch"
    )
    with pytest.raises(openai.NotFoundError):
        bob.uploads.parts.create(upload.id, data=io.BytesIO(b"x"))
    part_ids = [alice.uploads.parts.create(upload.id, data=io.BytesIO(part)).id for part in parts]
    with pytest.raises(openai.NotFoundError):
        bob.uploads.complete(upload.id, part_ids=part_ids)
    done = alice.uploads.complete(upload.id, part_ids=part_ids)
    assert done.file is not None
    assert alice.files.content(done.file.id).read() == b"".join(parts)
    with pytest.raises(openai.NotFoundError):
        bob.files.retrieve(done.file.id)
    with pytest.raises(openai.NotFoundError):
        bob.uploads.cancel(upload.id)


def test_stored_chat_completions_are_scoped_to_their_key(
    gateway: Gateway, objects_upstream: ObjectsUpstream
) -> None:
    alice, bob = client(gateway, ALICE), client(gateway, BOB)
    kept = alice.chat.completions.create(
        model="mini", messages=[{"role": "user", "content": "hi"}], store=True, metadata={"a": "1"}
    )
    alice.chat.completions.create(model="mini", messages=[{"role": "user", "content": "not kept"}])
    chunks = list(
        alice.chat.completions.create(
            model="mini", messages=[{"role": "user", "content": "hi"}], store=True, stream=True
        )
    )
    streamed = chunks[0].id
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "stored"
    assert [c.id for c in alice.chat.completions.list()] == [kept.id, streamed]
    assert alice.chat.completions.retrieve(streamed).id == streamed
    assert list(bob.chat.completions.list()) == []
    assert alice.chat.completions.retrieve(kept.id).id == kept.id
    updated = alice.chat.completions.update(kept.id, metadata={"a": "2"})
    assert updated.metadata == {"a": "2"}
    assert [m.content for m in alice.chat.completions.messages.list(kept.id)] == ["hi"]
    for attempt in (
        lambda: bob.chat.completions.retrieve(kept.id),
        lambda: bob.chat.completions.update(kept.id, metadata={"b": "1"}),
        lambda: bob.chat.completions.messages.list(kept.id),
        lambda: bob.chat.completions.delete(kept.id),
    ):
        with pytest.raises(openai.NotFoundError):
            attempt()
    assert alice.chat.completions.delete(kept.id).deleted is True
    assert kept.id not in objects_upstream.completions
