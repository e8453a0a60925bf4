"""`tollway prices import` (tests/support/fixtures/prices/litellm_excerpt.json is an excerpt of LiteLLM's
model_prices_and_context_window.json), the imported file laid over the shipped table, a request's
cost through the gateway at the imported price, and the table's age: warning and gauge."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import msgspec
import openai
import pytest
from aiohttp import web

from adapters.schema import usage_of
from gateway.accounting.pricing import (
    STALE_AFTER_DAYS,
    PriceTable,
    age_days,
    load_override,
    load_price_file,
    today_utc,
)
from gateway.accounting.records import AuditRecord, decode_record
from gateway.cli.price_import import import_prices
from gateway.config.load import parse_config
from gateway.observability.metrics import Metrics
from gateway.store import open_store
from tests.support import paths
from tests.support.servers import LoopThread, start_gateway, start_site

REPO = paths.REPO
EXCERPT = paths.FIXTURES / "prices" / "litellm_excerpt.json"
MASTER = "sk-master-0123456789abcdef0123"


def test_litellm_entries_map_to_our_fields_and_the_rest_is_reported() -> None:
    table, kinds, report = import_prices([EXCERPT], date(2026, 6, 1))
    assert table.as_of == date(2026, 6, 1)
    assert set(kinds) == {"azure", "bedrock"}
    assert kinds["azure"]["gpt-5.4"] == {
        "input": 2.5,
        "output": 15.0,
        "cached_input": 0.25,
        "long_context": {"threshold": 272000, "input": 5.0, "output": 22.5, "cached_input": 0.5},
        "max_output_tokens": 128000,
    }
    assert kinds["azure"]["gpt-5.1-codex-mini"]["cached_input"] == 0.025  # mode responses is served
    assert kinds["bedrock"]["us.writer.palmyra-x4-v1:0"] == {
        "input": 2.5,
        "output": 10.0,
        "max_output_tokens": 8192,
    }
    assert kinds["bedrock"]["amazon.nova-canvas-v1:0"] == {"per_image": {"default": 0.06}}
    assert report.imported == {"azure": 4, "bedrock": 4}
    assert report.skipped == {
        "a region-, tier- or size-specific entry": 1,  # 1024-x-1024/dall-e-2
        "provider 'aiml' is not a kind Tollway serves": 1,
    }
    # Priority-tier prices, which our table cannot hold, are counted by field.
    assert report.unsupported["input_cost_per_token_priority"] == 2
    assert report.unsupported["output_cost_per_token_above_272k_tokens_priority"] == 1
    lines = "\n".join(report.lines())
    assert lines.startswith("imported 8 prices: ") and "azure 4" in lines and "e.g. aiml/dall-e-3" in lines


def test_our_own_yaml_imports_and_a_later_file_wins(tmp_path: Path) -> None:
    ours = tmp_path / "ours.yaml"
    ours.write_text(
        'pricing:\n  models:\n    "azure/gpt-5.4": {input: 2, output: 12}\n    "openai/tuned": {input: 3, output: 6}\n'
    )
    _, kinds, report = import_prices([EXCERPT, ours], date(2026, 6, 1))
    assert report.imported == {"azure": 4, "bedrock": 4, "openai": 1}  # gpt-5.4 counted once
    assert kinds["azure"]["gpt-5.4"] == {"input": 2.0, "output": 12.0}
    assert kinds["openai"]["tuned"] == {"input": 3.0, "output": 6.0}
    shipped = tmp_path / "shipped.yaml"
    shipped.write_text(
        "as_of: 2030-01-02\nkinds:\n  mistral:\n    models:\n      new-model: {input: 1, output: 2}\n"
    )
    table, kinds, _ = import_prices([shipped], date(2026, 6, 1))
    assert table.as_of == date(2030, 1, 2) and kinds == {
        "mistral": {"new-model": {"input": 1.0, "output": 2.0}}
    }


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli.main", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
        check=False,
    )


def test_the_command_writes_the_file_the_config_names_and_costs_come_from_it(tmp_path: Path) -> None:
    (tmp_path / "tollway.yaml").write_text(
        "providers:\n  az: {kind: azure, base_url: 'https://r.openai.azure.com', api_key: k}\n"
        "pricing: {file: prices/imported.yaml}\n"
    )
    done = run_cli(
        "prices", "import", str(EXCERPT), "--config", "tollway.yaml", "--as-of", "2026-06-01", cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert "prices/imported.yaml: as_of 2026-06-01" in done.stdout and "skipped 2 entries" in done.stdout
    written = (tmp_path / "prices" / "imported.yaml").read_text()
    assert (
        written.startswith("# Imported prices") and "provider 'aiml' is not a kind Tollway serves" in written
    )
    checked = run_cli("check-config", "tollway.yaml", cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr
    config = parse_config((tmp_path / "tollway.yaml").read_text(), {}, "t")
    config = msgspec.structs.replace(
        config,
        pricing=msgspec.structs.replace(config.pricing, file=str(tmp_path / "prices" / "imported.yaml")),
    )
    imported = load_override(config.pricing)
    assert imported is not None and imported.as_of == date(2026, 6, 1)
    table = PriceTable.from_config(config)
    # gpt-5.1-chat is in no shipped table: its price is the imported one ($1.25 / $0.125 / $10).
    assert (
        table.cost_for("az", "gpt-5.1-chat", usage_of(1000, 500, cached_tokens=200)) == 800 * 1.25 + 25 + 5000
    )
    assert table.max_output_tokens("az", "gpt-5.1-chat") == 128000
    # A broken file the config names stops check-config with its reason.
    (tmp_path / "prices" / "imported.yaml").write_text("as_of: yesterday\nkinds: {}\n")
    broken = run_cli("check-config", "tollway.yaml", cwd=tmp_path)
    assert broken.returncode == 1 and "pricing.file" in broken.stderr and "not a price file" in broken.stderr


# --- through the gateway --------------------------------------------------------------------


def azure_upstream() -> web.Application:
    """Azure's chat path, answering with usage that has cached tokens."""

    async def chat(request: web.Request) -> web.Response:
        body = await request.json(loads=msgspec.json.decode)
        answer = {
            "id": "chatcmpl-az-1",
            "object": "chat.completion",
            "created": 1700000000,
            "model": request.match_info["deployment"],
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}
            ],
            "usage": {
                "prompt_tokens": 1000,
                "completion_tokens": 500,
                "total_tokens": 1500,
                "prompt_tokens_details": {"cached_tokens": 200},
            },
        }
        assert body["messages"]
        return web.Response(body=msgspec.json.encode(answer), content_type="application/json")

    app = web.Application()
    app.router.add_post("/openai/deployments/{deployment}/chat/completions", chat)
    return app


@pytest.fixture
def loop_thread() -> Iterator[LoopThread]:
    thread = LoopThread()
    yield thread
    thread.stop()


@pytest.mark.integration
def test_a_request_costs_the_imported_price_in_its_audit_record(
    loop_thread: LoopThread, tmp_path: Path
) -> None:
    override = tmp_path / "imported.yaml"
    assert run_cli("prices", "import", str(EXCERPT), "-o", str(override), cwd=tmp_path).returncode == 0
    upstream, port = loop_thread.run(start_site(azure_upstream()))
    database = f"sqlite:///{tmp_path / 'state.sqlite'}"
    config = f"""
server: {{master_key: {MASTER}}}
storage: {{database_url: "{database}", spool_dir: "{tmp_path / "spool"}"}}
logging: {{request_log: "off"}}
providers:
  az: {{kind: azure, base_url: "http://127.0.0.1:{port}", api_key: upstream-key}}
models:
  chat: {{targets: [{{provider: az, model: gpt-5.1-chat}}]}}
pricing: {{file: "{override}"}}
"""
    gateway, url = loop_thread.run(start_gateway(config, {}))
    try:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key=MASTER, max_retries=0)
        raw = client.chat.completions.with_raw_response.create(
            model="chat", messages=[{"role": "user", "content": "x"}]
        )
        expected = round(800 * 1.25 + 200 * 0.125 + 500 * 10.0)  # micro-USD at the imported price
        assert raw.headers["x-tollway-cost-usd"] == f"0.{expected:06d}"
        request_id = raw.headers["x-request-id"]
        record = loop_thread.run(audit_record(database, request_id), timeout=15)
        assert record.cost_micros == expected and (record.tokens_in, record.tokens_out) == (1000, 500)
    finally:
        loop_thread.run(gateway.cleanup())
        loop_thread.run(upstream.cleanup())


async def audit_record(database: str, request_id: str) -> AuditRecord:
    """The request's audit record, once the accountant has written it (off the request path)."""
    store = open_store(database)
    try:
        await store.migrate()
        for _ in range(200):
            for link in await store.list_records(limit=100):
                if link.request_id == request_id:
                    return decode_record(link.data)
            await asyncio.sleep(0.05)
    finally:
        await store.close()
    raise AssertionError(f"no audit record for {request_id}")


# --- the table's age ------------------------------------------------------------------------


def test_an_old_table_warns_once_and_the_gauge_counts_its_days(caplog: pytest.LogCaptureFixture) -> None:
    config = parse_config("providers: {m: {kind: mock}}", {}, "t")
    as_of = load_price_file().as_of
    stale = as_of + timedelta(days=STALE_AFTER_DAYS + 30)
    metrics = Metrics()
    with caplog.at_level(logging.WARNING, logger="tollway"):
        PriceTable.from_config(config, metrics, today=lambda: stale)
    warnings = [r for r in caplog.records if "price table is" in r.getMessage()]
    assert len(warnings) == 1
    assert warnings[0].fields == {  # type: ignore[attr-defined]
        "as_of": as_of.isoformat(),
        "age_days": STALE_AFTER_DAYS + 30,
        "price_file": str(REPO / "gateway" / "accounting" / "prices.yaml"),
    }
    assert metrics.registry.get_sample_value("tollway_price_table_age_days") == STALE_AFTER_DAYS + 30
    caplog.clear()
    fresh = Metrics()
    with caplog.at_level(logging.WARNING, logger="tollway"):
        PriceTable.from_config(config, fresh, today=lambda: as_of + timedelta(days=STALE_AFTER_DAYS))
    assert not [r for r in caplog.records if "price table is" in r.getMessage()]
    assert fresh.registry.get_sample_value("tollway_price_table_age_days") == STALE_AFTER_DAYS


def test_an_imported_file_newer_than_the_shipped_table_makes_it_young(tmp_path: Path) -> None:
    shipped = load_price_file().as_of
    override = tmp_path / "imported.yaml"
    newer = shipped + timedelta(days=200)
    override.write_text(
        f"as_of: {newer.isoformat()}\nkinds:\n  openai:\n    models:\n      x: {{input: 1, output: 1}}\n"
    )
    config = parse_config(f"pricing: {{file: '{override}'}}", {}, "t")
    metrics = Metrics()
    table = PriceTable.from_config(config, metrics, today=lambda: newer + timedelta(days=3))
    assert table.as_of == newer
    assert metrics.registry.get_sample_value("tollway_price_table_age_days") == 3
    assert age_days(newer, newer - timedelta(days=1)) == 0


@pytest.mark.integration
def test_serve_logs_the_stale_table_warning_as_a_json_line(tmp_path: Path) -> None:
    (tmp_path / "tollway.yaml").write_text(
        "providers: {m: {kind: mock}}\nmodels: {d: {targets: [{provider: m, model: x}]}}\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli.main", "serve", "--config", "tollway.yaml", "--port", "0"],
        cwd=tmp_path,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert process.stderr is not None
    lines = []
    try:
        for raw in process.stderr:
            lines.append(msgspec.json.decode(raw))
            if lines[-1].get("msg") == "listening":
                break
    finally:
        process.terminate()
        process.wait(timeout=10)
        process.stderr.close()
    stale = [line for line in lines if "price table is" in line.get("msg", "")]
    # Whether it fires depends on today's date against the shipped as_of: both ways are checked.
    expected = age_days(load_price_file().as_of, today_utc()) > STALE_AFTER_DAYS
    assert bool(stale) == expected
    if stale:
        assert stale[0]["level"] == "warning" and stale[0]["age_days"] == age_days(
            load_price_file().as_of, today_utc()
        )
