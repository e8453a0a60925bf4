"""Object owners in both stores and in memory (gateway/objects/state.py), the pure parts of the
object passthrough (adapters/openai/objects.py: URLs, list filtering, batch output lines) and the
batch price (gateway/accounting/pricing.py `batch_cost_for`)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest

from adapters.openai import objects as openai_objects
from adapters.schema import usage_of
from gateway.accounting.batches import batch_record
from gateway.accounting.pricing import PriceTable, load_price_file
from gateway.config.load import ConfigError, parse_config
from gateway.objects.state import ObjectOwners
from gateway.store.objects import OwnedObject
from tests.support.stores import opened_store, reopen

NOW = datetime(2026, 8, 1, 12, 0, tzinfo=UTC)


def _owned(
    object_id: str, key_id: str = "cfg_alice", kind: str = "file", team: str | None = None
) -> OwnedObject:
    return msgspec.convert(
        {
            "id": object_id,
            "kind": kind,
            "provider": "up",
            "key_id": key_id,
            "team_id": team,
            "created_at": NOW,
        },
        OwnedObject,
    )


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
async def test_owners_in_the_store_keep_their_first_owner_and_settle_once(kind: str, tmp_path: Path) -> None:
    async with opened_store(kind, tmp_path) as store:
        await store.put_objects([_owned("file-1"), _owned("batch_1", kind="batch", team="team_x")])
        await store.put_objects([_owned("file-1", key_id="cfg_bob")])  # the same id again
        found = {o.id: o for o in await store.get_objects(["file-1", "batch_1", "file-unknown"])}
        assert set(found) == {"file-1", "batch_1"}
        assert found["file-1"].key_id == "cfg_alice" and found["file-1"].created_at == NOW
        assert found["batch_1"].visible_to("cfg_carol", "team_x")
        assert [o.id for o in await store.open_batches(10)] == ["batch_1"]

        other = reopen(store)  # another process on the same database
        try:
            settled = [await store.settle_batch("batch_1", NOW), await other.settle_batch("batch_1", NOW)]
        finally:
            await other.close()
        assert settled == [True, False]
        assert await store.open_batches(10) == []
        assert await store.delete_object("file-1") and not await store.delete_object("file-1")


async def test_owners_write_in_the_background_and_read_back_after_a_restart(tmp_path: Path) -> None:
    async with opened_store("sqlite", tmp_path) as store:
        owners = ObjectOwners(store, flush_interval_s=0.01, clock=NOW.timestamp)
        owners.start()
        owners.remember(_owned("file-1"))
        owners.remember(_owned("file-1", key_id="cfg_bob"))  # cannot take it over
        assert (await owners.find("file-1")) == _owned("file-1")  # in memory at once
        await owners.aclose()
        restarted = ObjectOwners(store, clock=NOW.timestamp)
        found = await restarted.find("file-1")
        assert found is not None and found.key_id == "cfg_alice"
        assert await restarted.find("file-2") is None


async def test_without_a_store_owners_live_in_memory() -> None:
    owners = ObjectOwners(clock=NOW.timestamp)
    owners.remember(_owned("batch_1", kind="batch"))
    assert [o.id for o in await owners.open_batches()] == ["batch_1"]
    assert await owners.settle("batch_1") is True
    assert await owners.settle("batch_1") is False
    assert await owners.open_batches() == []


def test_urls_for_openai_and_azure() -> None:
    assert (
        openai_objects.object_url("openai", "https://api.openai.com/v1", None, "files", "purpose=batch")
        == "https://api.openai.com/v1/files?purpose=batch"
    )
    # Azure: files and batches under /openai, not under a deployment, with the api-version first.
    assert (
        openai_objects.object_url(
            "azure", "https://r.openai.azure.com", "2024-10-21", "batches/b%201", "limit=2"
        )
        == "https://r.openai.azure.com/openai/batches/b%201?api-version=2024-10-21&limit=2"
    )
    assert openai_objects.quoted("a b/c") == "a%20b%2Fc"


def test_a_list_page_is_cut_to_the_items_kept() -> None:
    body = b'{"object":"list","data":[{"id":"f1","bytes":1},{"id":"f2"},{"id":"f3"}],"has_more":true}'
    page = openai_objects.filter_page(body, {"f1", "f3"}.__contains__)
    assert page is not None and page.last_upstream_id == "f3" and page.has_more
    assert msgspec.json.decode(openai_objects.encode_page(page.items, False)) == {
        "data": [{"id": "f1", "bytes": 1}, {"id": "f3"}],
        "has_more": False,
        "first_id": "f1",
        "last_id": "f3",
        "object": "list",
    }
    assert openai_objects.filter_page(b"not json", bool) is None


def test_batch_output_lines_in_any_split() -> None:
    lines = [
        b'{"id":"r1","custom_id":"a","response":{"status_code":200,"body":{"model":"gpt-4o-mini",'
        b'"usage":{"prompt_tokens":10,"completion_tokens":5,"prompt_tokens_details":{"cached_tokens":4}}}}}',
        b'{"id":"r2","custom_id":"b","response":null,"error":{"code":"x","message":"failed"}}',
        b'{"id":"r3","custom_id":"c","response":{"status_code":200,"body":{"model":"gpt-5",'
        b'"usage":{"input_tokens":7,"output_tokens":3}}}}',  # a /v1/responses batch
    ]
    data = b"\n".join(lines) + b"\n"
    for split in (1, 7, 50, len(data)):
        reader = openai_objects.BatchOutputReader()
        found = [u for start in range(0, len(data), split) for u in reader.feed(data[start : start + split])]
        found += list(reader.close())
        assert [(u.line_id, u.model, u.usage) for u in found] == [
            ("r1", "gpt-4o-mini", usage_of(10, 5, 4)),
            ("r3", "gpt-5", usage_of(7, 3)),
        ]


def test_batch_price_is_the_price_less_the_discount() -> None:
    table = PriceTable(load_price_file(), provider_kinds={"up": "openai", "az": "azure", "m": "mistral"})
    usage = usage_of(1_000_000, 100_000)
    # gpt-4o: $2.50/M input, $10/M output; half off: 1.25 + 0.50 USD.
    assert table.batch_cost_for("up", "gpt-4o", usage) == 1_750_000
    assert table.batch_cost_for("az", "gpt-4o", usage) == 1_750_000  # Azure inherits OpenAI's
    assert table.batch_discount("mistral", "mistral-large-latest") == 0.0
    line = openai_objects.BatchUsage("r1", "gpt-4o", usage)
    record = batch_record(_owned("batch_1", kind="batch"), line, 1_750_000, NOW)
    assert record.request_id == "batch_1/r1" and record.key_id == "cfg_alice" and record.endpoint == "batches"


def test_files_providers_must_be_openai_or_azure_providers() -> None:
    text = """
providers:
  claude: {kind: anthropic, api_key: "k"}
  az: {kind: azure, base_url: "https://r.openai.azure.com", api_key: "k"}
files: {providers: [claude, nope]}
"""
    with pytest.raises(ConfigError) as refused:
        parse_config(text, {}, "t.yaml")
    assert refused.value.errors == [
        "files.providers[0]: provider 'claude' is not of kind openai or azure",
        "files.providers[1]: unknown provider 'nope' (known: az, claude)",
    ]
    assert parse_config(text.replace("[claude, nope]", "[]"), {}, "t.yaml").file_providers() == ["az"]
