"""/metrics of a real gateway, scraped over HTTP and read with prometheus-client's own parser; and
the Grafana dashboard, whose every expression may only name metrics the gateway exports."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from gateway.config.load import parse_config
from gateway.observability.metrics import VERSION, Metrics
from gateway.server.reload import reload, reload_refused
from tests.conftest import MASTER_KEY, Gateway, gateway_config
from tests.support import paths
from tests.support.servers import LoopThread, Upstream, start_gateway

REPO = paths.REPO
DASHBOARD = REPO / "config" / "grafana-tollway.json"
USER = [{"role": "user", "content": "count me"}]
# The gateway's own families, and the process's (prometheus-client's ProcessCollector).
OURS = ("tollway_", "process_")


# --- the exposition ----------------------------------------------------------------------------


def scrape(gateway: Gateway) -> dict[str, Any]:
    response = httpx.get(gateway.url + "/metrics", timeout=5)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {family.name: family for family in text_string_to_metric_families(response.text)}


def value(family: Any, name: str, **labels: str) -> float:
    """The one sample called `name` whose labels include `labels` (0 when there is none)."""
    found = [s for s in family.samples if s.name == name and labels.items() <= s.labels.items()]
    assert len(found) <= 1, found
    return float(found[0].value) if found else 0.0


def samples(family: Any, name: str, **labels: str) -> list[Sample]:
    return [s for s in family.samples if s.name == name and labels.items() <= s.labels.items()]


@pytest.fixture
def api(gateway: Gateway) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=gateway.v1, api_key=MASTER_KEY, max_retries=0, timeout=10) as sdk:
        yield sdk


@pytest.mark.integration
def test_requests_latency_tokens_and_errors_are_scraped_with_their_labels(
    gateway: Gateway, api: openai.OpenAI, upstream: Upstream
) -> None:
    before = scrape(gateway)
    assert all(name.startswith(OURS) for name in before)
    for _ in range(3):
        api.chat.completions.create(model="up-model", messages=USER)
    for _ in api.chat.completions.create(model="up-model", messages=USER, stream=True):
        pass
    api.chat.completions.create(model="demo", messages=USER)
    api.embeddings.create(model="up-model", input=["a", "b"])
    with pytest.raises(openai.NotFoundError):
        api.chat.completions.create(model="no-such-model", messages=USER)
    upstream.fail_status, upstream.fail_body = 500, b'{"error": {"message": "boom", "type": "server_error"}}'
    with pytest.raises(openai.APIStatusError) as failed:
        api.chat.completions.create(model="up-model", messages=USER)
    assert failed.value.status_code == 502

    families = scrape(gateway)
    assert all(name.startswith(OURS) for name in families)

    requests = families["tollway_requests"]
    assert requests.type == "counter"
    assert value(requests, "tollway_requests_total", model="up-model", status="200", endpoint="chat") == 4
    assert value(requests, "tollway_requests_total", model="demo", status="200", endpoint="chat") == 1
    assert (
        value(requests, "tollway_requests_total", model="up-model", status="200", endpoint="embeddings") == 1
    )
    assert value(requests, "tollway_requests_total", model="up-model", status="502", endpoint="chat") == 1
    # An unknown model is one label value, whatever name was asked for: the cardinality stays bounded.
    assert value(requests, "tollway_requests_total", model="(unknown)", status="404", endpoint="chat") == 1
    assert not samples(requests, "tollway_requests_total", model="no-such-model")
    assert {tuple(sorted(s.labels)) for s in samples(requests, "tollway_requests_total")} == {
        ("endpoint", "model", "status")
    }

    duration = families["tollway_request_duration_seconds"]
    assert duration.type == "histogram"
    count = value(duration, "tollway_request_duration_seconds_count", model="up-model", status="200")
    assert count == 5  # chat and embeddings together: the histogram has no endpoint label
    buckets = samples(duration, "tollway_request_duration_seconds_bucket", model="up-model", status="200")
    assert [s.labels["le"] for s in buckets][-1] == "+Inf" and buckets[-1].value == count
    assert [s.value for s in buckets] == sorted(s.value for s in buckets)  # cumulative
    assert value(duration, "tollway_request_duration_seconds_sum", model="up-model", status="200") > 0

    first_byte = families["tollway_time_to_first_byte_seconds"]
    assert first_byte.type == "histogram"
    # Successful answers only: not the 502.
    assert value(first_byte, "tollway_time_to_first_byte_seconds_count", model="up-model") == 5

    tokens = families["tollway_tokens"]
    # The upstream reports 11 prompt tokens per chat, 3 per embeddings call; 7 completion tokens
    # per answer and one per word when streamed ("upstream echo: count me": 4 words).
    assert value(tokens, "tollway_tokens_total", model="up-model", direction="prompt") == 11 * 4 + 3
    assert value(tokens, "tollway_tokens_total", model="up-model", direction="completion") == 7 * 3 + 4

    errors = families["tollway_upstream_errors"]
    assert value(errors, "tollway_upstream_errors_total", provider="up", kind="server") == 1
    assert not samples(errors, "tollway_upstream_errors_total", provider="mock")

    for family in families.values():
        assert family.documentation, f"{family.name} has no help text"


@pytest.mark.integration
def test_no_created_series_and_the_process_build_and_upstream_families_are_scraped(
    gateway: Gateway, api: openai.OpenAI, upstream: Upstream
) -> None:
    api.chat.completions.create(model="up-model", messages=USER)
    text = httpx.get(gateway.url + "/metrics", timeout=5).text
    assert "_created" not in text  # one series per label set, not two
    families = scrape(gateway)
    for name in ("process_cpu_seconds", "process_resident_memory_bytes", "process_open_fds"):
        assert value(families[name], name if name != "process_cpu_seconds" else name + "_total") > 0
    [build] = samples(families["tollway_build_info"], "tollway_build_info")
    assert build.value == 1 and build.labels == {"version": VERSION} and VERSION.count(".") >= 1
    upstream_duration = families["tollway_upstream_duration_seconds"]
    assert upstream_duration.type == "histogram"
    count = "tollway_upstream_duration_seconds_count"
    assert value(upstream_duration, count, provider="up", model="real-model") == 1
    assert {tuple(sorted(s.labels)) for s in samples(upstream_duration, count)} == {("model", "provider")}
    assert value(upstream_duration, "tollway_upstream_duration_seconds_sum", provider="up") > 0


@pytest.mark.integration
def test_the_last_reloads_outcome_and_time_are_gauges(
    loop_thread: LoopThread, upstream: Upstream, tmp_path: Path
) -> None:
    text = gateway_config(upstream, tmp_path / "requests.log")
    runner, url = loop_thread.run(start_gateway(text, {}))
    try:
        gateway = Gateway(url, tmp_path / "requests.log")
        started = scrape(gateway)
        ok, at = (
            "tollway_config_last_reload_successful",
            "tollway_config_last_reload_success_timestamp_seconds",
        )
        assert value(started[ok], ok) == 1
        first_at = value(started[at], at)
        assert abs(first_at - time.time()) < 60
        reload_refused(runner.app)
        refused = scrape(gateway)
        assert value(refused[ok], ok) == 0 and value(refused[at], at) == first_at  # the last success's
        time.sleep(0.01)
        loop_thread.run(reload(runner.app, parse_config(text, {}, "test.yaml")), timeout=30)
        reloaded = scrape(gateway)
        assert value(reloaded[ok], ok) == 1 and value(reloaded[at], at) > first_at
    finally:
        loop_thread.run(runner.cleanup(), timeout=30)


@pytest.mark.integration
def test_counters_only_grow_between_scrapes(gateway: Gateway, api: openai.OpenAI) -> None:
    api.chat.completions.create(model="demo", messages=USER)
    first = scrape(gateway)["tollway_requests"]
    api.chat.completions.create(model="demo", messages=USER)
    second = scrape(gateway)["tollway_requests"]
    labels = {"model": "demo", "status": "200", "endpoint": "chat"}
    assert (
        value(second, "tollway_requests_total", **labels)
        == value(first, "tollway_requests_total", **labels) + 1
    )


@pytest.mark.integration
def test_tokens_are_counted_per_key_and_team(gateway: Gateway, api: openai.OpenAI) -> None:
    for _ in range(2):
        api.chat.completions.create(model="up-model", messages=USER)
    tokens = scrape(gateway)["tollway_key_tokens"]
    # The master key is the caller here: its id is "master", and it belongs to no team ("(none)").
    assert value(tokens, "tollway_key_tokens_total", key="master", team="(none)", direction="prompt") == 22
    assert (
        value(tokens, "tollway_key_tokens_total", key="master", team="(none)", direction="completion") == 14
    )


def test_per_key_series_are_bounded() -> None:
    metrics = Metrics(max_key_series=3)
    for i in range(10):
        metrics.observe_key(f"key-{i}", "team-a" if i % 2 else None, 0.5, 10, 1)
    metrics.observe_key("key-0", None, 0.25, 0, 0)  # a key that has its series keeps it
    text = metrics.render().decode()
    families = {family.name: family for family in text_string_to_metric_families(text)}
    cost = families["tollway_key_cost_usd"]
    keys = {s.labels["key"] for s in samples(cost, "tollway_key_cost_usd_total")}
    assert keys == {"key-0", "key-1", "key-2", "(other)"}
    assert value(cost, "tollway_key_cost_usd_total", key="key-0", team="(none)") == 0.75
    assert value(cost, "tollway_key_cost_usd_total", key="(other)", team="(other)") == 3.5
    tokens = families["tollway_key_tokens"]
    assert value(tokens, "tollway_key_tokens_total", key="(other)", direction="prompt") == 70


# --- the dashboard -----------------------------------------------------------------------------

# Metrics the dashboard may read that gateway/observability/metrics.py does not define yet: their modules are
# being written. The test below fails for a name in neither list, so a typo cannot hide here.
PENDING: frozenset[str] = frozenset()
SUFFIXES = ("_bucket", "_count", "_sum", "_total", "_created")
PROMQL_WORDS = frozenset(
    {
        "sum",
        "rate",
        "irate",
        "increase",
        "by",
        "without",
        "histogram_quantile",
        "max",
        "min",
        "avg",
        "topk",
        "bottomk",
        "clamp_min",
        "clamp_max",
        "or",
        "and",
        "unless",
        "on",
        "ignoring",
        "vector",
        "label_replace",
        "count",
        "abs",
        "time",
        "offset",
        "group_left",
        "group_right",
        "le",
        "bool",
        "delta",
        "deriv",
        "max_over_time",
        "min_over_time",
        "avg_over_time",
        "absent",
        "scalar",
        "sort_desc",
        "changes",
        "resets",
        "count_values",
        "quantile_over_time",
    }
)
_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
# Strings, label matchers, ranges, $variables and the label lists of by/on/without/ignoring/group_*.
_STRIP = re.compile(
    r'"(?:[^"\\]|\\.)*"|\{[^}]*\}|\[[^\]]*\]|\$\{?\w+\}?'
    r"|\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)"
)


def exported_names() -> set[str]:
    """Every family name a fresh Metrics registry defines (target gauges come from a collector
    added at start-up, so they are registered here with no targets)."""
    metrics = Metrics()
    metrics.track_targets(list)
    metrics.track_credentials(list)
    return {family.name for family in metrics.registry.collect()}


def metric_names(expr: str) -> set[str]:
    """The metric names in a PromQL expression, suffixes of histograms and counters removed."""
    bare = _STRIP.sub(" ", expr)  # label matchers, ranges, strings and $variables
    names = set()
    for word in _IDENT.findall(bare):
        if word in PROMQL_WORDS or not word.startswith(OURS):
            assert word in PROMQL_WORDS or word.isdigit(), f"unexpected word {word!r} in {expr!r}"
            continue
        for suffix in SUFFIXES:
            if word.endswith(suffix):
                word = word[: -len(suffix)]
                break
        names.add(word)
    return names


def expressions(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, item in node.items():
            if key in ("expr", "query") and isinstance(item, str):
                yield item
            else:
                yield from expressions(item)
    elif isinstance(node, list):
        for item in node:
            yield from expressions(item)


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = msgspec.json.decode(DASHBOARD.read_bytes())
    return loaded


def test_the_name_extraction_sees_names_and_skips_labels_and_variables() -> None:
    expr = (
        "histogram_quantile(0.99, sum by (le, model) (rate(tollway_request_duration_seconds_bucket"
        '{model=~"$model", status="200"}[$__rate_interval]))) / on(model) tollway_x_total'
    )
    assert metric_names(expr) == {"tollway_request_duration_seconds", "tollway_x"}
    with pytest.raises(AssertionError):
        metric_names("sum(rate(http_requests_total[5m]))")


def test_every_dashboard_expression_reads_only_known_metrics() -> None:
    exported = exported_names()
    assert {"tollway_requests", "tollway_request_duration_seconds", "tollway_tokens"} <= exported
    allowed = exported | PENDING
    exprs = list(expressions(dashboard()["panels"]))
    assert len(exprs) >= 20
    for expr in exprs:
        names = metric_names(expr)
        assert names, f"no tollway metric in {expr!r}"
        assert names <= allowed, f"{sorted(names - allowed)} in {expr!r}"
    # Names that have landed leave PENDING; what the gateway exports is all on the board.
    assert not PENDING & exported, f"move {sorted(PENDING & exported)} out of PENDING"


def test_every_exported_metric_has_a_panel() -> None:
    found = {name for expr in expressions(dashboard()["panels"]) for name in metric_names(expr)}
    unused = exported_names() - found
    assert not unused, f"metrics with no panel on config/grafana-tollway.json: {sorted(unused)}"


def test_the_dashboard_is_an_importable_grafana_dashboard() -> None:
    board = dashboard()
    assert board["uid"] == "tollway" and board["title"]
    assert 36 <= board["schemaVersion"] <= 41
    [datasource] = [v for v in board["templating"]["list"] if v["type"] == "datasource"]
    assert datasource["query"] == "prometheus" and datasource["name"] == "datasource"
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert (
            set(panel["gridPos"]) == {"h", "w", "x", "y"}
            and panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        )
        for target in panel["targets"]:
            assert target["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            assert target["refId"]
    cells = [
        (x, y)
        for panel in board["panels"]
        for x in range(panel["gridPos"]["x"], panel["gridPos"]["x"] + panel["gridPos"]["w"])
        for y in range(panel["gridPos"]["y"], panel["gridPos"]["y"] + panel["gridPos"]["h"])
    ]
    assert len(cells) == len(set(cells)), "panels overlap"
    allowed = exported_names() | PENDING
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            metric = re.fullmatch(r"label_values\((\w+), \w+\)", variable["query"]["query"])
            assert metric is not None and metric.group(1).removesuffix("_total") in allowed
