"""Fallback chains end to end: the official openai SDK, the real gateway on a real socket, and
fault-injecting upstreams over real HTTP (tests/support/faulty_upstream.py). One test per transition of
the chain, plus breakers, hedging, residency, pools and what the client and the log see."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator

import httpx
import msgspec
import openai
import pytest

from tests.conftest import MASTER_KEY, Gateway
from tests.support.faulty_upstream import (
    BAD_REQUEST,
    CONTEXT_TOO_LONG,
    OK,
    RESET,
    Fault,
    FaultyUpstream,
    die_after,
    error,
    hang,
    rate_limited,
    start_faulty,
)
from tests.support.servers import LoopThread

pytestmark = pytest.mark.integration

USER = [{"role": "user", "content": "hi"}]
EU_KEY = "sk-tw-eu-only-key-0123456789"


@pytest.fixture
def ups(loop_thread: LoopThread) -> Iterator[dict[str, FaultyUpstream]]:
    states = {name: FaultyUpstream(name) for name in ("a", "b", "c")}
    runners = [loop_thread.run(start_faulty(state)) for state in states.values()]
    yield states
    for runner in runners:
        loop_thread.run(runner.cleanup())


def providers(ups: dict[str, FaultyUpstream], breaker: str = "{failures: 3, cooldown_s: 30}") -> str:
    regions = {"a": "us", "b": "eu", "c": "eu"}
    lines = [
        f'  {name}: {{kind: openai, base_url: "{up.url}", api_key: "sk-{name}-secret-000000", '
        f"region: {regions[name]}, breaker: {breaker}, "
        "timeout: {connect_s: 1, first_byte_s: 0.4, total_s: 3}}"
        for name, up in ups.items()
    ]
    return "providers:\n" + "\n".join(lines) + "\n"


CHAIN = "[{provider: a, model: m-a}, {provider: b, model: m-b}]"


@pytest.fixture
def gw(start_gateway_with: Callable[[str], Gateway], ups: dict[str, FaultyUpstream]) -> Gateway:
    return start_gateway_with(
        providers(ups)
        + f"""
keys:
  eu-app: {{secret: "{EU_KEY}", regions: [eu]}}
models:
  chain: {{targets: {CHAIN}}}
  retrying: {{targets: {CHAIN}, retry: {{attempts: 2, backoff_ms: 10, max_wait_ms: 1000}}}}
  context:
    targets:
      - {{provider: a, model: m-a}}
      - {{provider: b, model: m-b}}
      - {{provider: c, model: m-c-long, on_context_length: true}}
  hedged: {{targets: {CHAIN}, hedge: {{after_ms: 100}}}}
  us-only: {{targets: [{{provider: a, model: m-a}}]}}
  pooled:
    targets:
      - {{provider: a, model: m-a, pool: main, weight: 3}}
      - {{provider: b, model: m-b, pool: main}}
      - {{provider: c, model: m-c}}
"""
    )


def sdk(gateway: Gateway, key: str = MASTER_KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.v1, api_key=key, max_retries=0, timeout=10)


def ask(
    gateway: Gateway, model: str, key: str = MASTER_KEY, client: openai.OpenAI | None = None
) -> tuple[str, httpx.Headers]:
    """One non-streamed chat call with the SDK: the answer's text and the response headers."""
    with sdk(gateway, key) if client is None else contextlib.nullcontext(client) as used:
        raw = used.chat.completions.with_raw_response.create(model=model, messages=USER)  # type: ignore[arg-type]
    return raw.parse().choices[0].message.content or "", raw.headers


def log_line(gateway: Gateway, request_id: str) -> dict[str, object]:
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        for line in gateway.log_text().splitlines():
            record: dict[str, object] = msgspec.json.decode(line)
            if record["request_id"] == request_id:
                return record
        time.sleep(0.02)
    raise AssertionError(f"no log line for {request_id}")


def targets_view(gateway: Gateway) -> dict[str, dict[str, object]]:
    response = httpx.get(gateway.url + "/admin/targets", headers={"authorization": f"Bearer {MASTER_KEY}"})
    assert response.status_code == 200
    return {row["target"]: row for row in response.json()["data"]}


# --- moving on -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "kind"),
    [
        pytest.param(error(500), "server", id="500"),
        pytest.param(error(502), "server", id="502"),
        pytest.param(error(503), "overloaded", id="503"),
        pytest.param(error(529), "overloaded", id="529"),
        pytest.param(rate_limited("30"), "rate_limited", id="429"),
        pytest.param(error(401, "bad key sk-a-secret-000000"), "auth", id="provider-401"),
        pytest.param(hang(5), "timeout", id="hang-before-first-byte"),
        pytest.param(RESET, "unreachable", id="connection-reset"),
        pytest.param(die_after(0), "unreachable", id="body-cut-off"),
    ],
)
def test_a_failing_target_moves_on_to_the_next(
    gw: Gateway, ups: dict[str, FaultyUpstream], fault: Fault, kind: str
) -> None:
    ups["a"].then(fault)
    started = time.monotonic()
    text, headers = ask(gw, "chain")
    assert text == "b says: hi"
    assert headers["x-tollway-target"] == "b/m-b"
    assert headers["x-tollway-attempts"] == "2"
    assert time.monotonic() - started < 2.0
    assert len(ups["a"].requests) == 1 and len(ups["b"].requests) == 1
    assert ups["a"].requests[0]["model"] == "m-a" and ups["b"].requests[0]["model"] == "m-b"
    line = log_line(gw, headers["x-request-id"])
    assert line["status"] == 200 and line["provider"] == "b" and line["target_model"] == "m-b"
    attempts = line["attempts"]
    assert isinstance(attempts, list) and [a["target"] for a in attempts] == ["a/m-a", "b/m-b"]
    assert attempts[0]["error"] == kind and attempts[1]["status"] == 200 and "error" not in attempts[1]
    assert "sk-a-secret" not in gw.log_text()


def test_429_is_retried_on_the_same_target_after_its_retry_after(
    gw: Gateway, ups: dict[str, FaultyUpstream]
) -> None:
    ups["a"].then(rate_limited("0.3"))
    started = time.monotonic()
    text, headers = ask(gw, "retrying")
    assert time.monotonic() - started >= 0.3, "Retry-After is honoured"
    assert text == "a says: hi" and headers["x-tollway-target"] == "a/m-a"
    assert headers["x-tollway-attempts"] == "2"
    assert len(ups["a"].requests) == 2 and not ups["b"].requests


def test_a_retry_after_longer_than_max_wait_moves_on_at_once(
    gw: Gateway, ups: dict[str, FaultyUpstream]
) -> None:
    ups["a"].then(rate_limited("20"))
    started = time.monotonic()
    text, _ = ask(gw, "retrying")
    assert text == "b says: hi" and time.monotonic() - started < 1.0
    assert len(ups["a"].requests) == 1


def test_a_5xx_is_retried_with_backoff_then_moves_on(gw: Gateway, ups: dict[str, FaultyUpstream]) -> None:
    ups["a"].then(error(500), error(500))
    text, headers = ask(gw, "retrying")
    assert text == "b says: hi" and headers["x-tollway-attempts"] == "3"
    assert len(ups["a"].requests) == 2


def test_a_client_fault_is_answered_at_once_without_trying_others(
    gw: Gateway, ups: dict[str, FaultyUpstream]
) -> None:
    ups["a"].then(BAD_REQUEST)
    with sdk(gw) as client, pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="retrying", messages=USER)  # type: ignore[arg-type]
    assert caught.value.code == "invalid_value" and caught.value.param == "temperature"
    assert caught.value.response.headers["x-tollway-attempts"] == "1"
    assert len(ups["a"].requests) == 1 and not ups["b"].requests


def test_context_length_moves_only_to_a_larger_context_target(
    gw: Gateway, ups: dict[str, FaultyUpstream]
) -> None:
    ups["a"].then(CONTEXT_TOO_LONG)
    text, headers = ask(gw, "context")
    assert text == "c says: hi" and headers["x-tollway-target"] == "c/m-c-long"
    assert not ups["b"].requests, "b has no larger context: skipped"


def test_context_length_without_a_larger_target_is_the_clients_error(
    gw: Gateway, ups: dict[str, FaultyUpstream]
) -> None:
    ups["a"].then(CONTEXT_TOO_LONG)
    with sdk(gw) as client, pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="chain", messages=USER)  # type: ignore[arg-type]
    assert caught.value.code == "context_length_exceeded"
    assert not ups["b"].requests


def test_when_every_target_fails_the_client_gets_the_last_error(
    gw: Gateway, ups: dict[str, FaultyUpstream]
) -> None:
    ups["a"].then(error(500))
    ups["b"].then(error(529, "overloaded"))
    with sdk(gw) as client, pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="chain", messages=USER)  # type: ignore[arg-type]
    assert caught.value.status_code == 502 and "'b'" in caught.value.message
    headers = caught.value.response.headers
    assert headers["x-tollway-attempts"] == "2" and "x-tollway-target" not in headers
    line = log_line(gw, headers["x-request-id"])
    assert line["status"] == 502 and line["error_kind"] == "overloaded"
    assert [(a["target"], a["status"]) for a in line["attempts"]] == [("a/m-a", 500), ("b/m-b", 529)]  # type: ignore[union-attr]


def test_a_rate_limit_at_the_end_of_the_chain_keeps_its_retry_after(
    gw: Gateway, ups: dict[str, FaultyUpstream]
) -> None:
    ups["a"].then(error(500))
    ups["b"].then(rate_limited("7"))
    response = httpx.post(
        gw.v1 + "/chat/completions",
        json={"model": "chain", "messages": USER},
        headers={"authorization": f"Bearer {MASTER_KEY}"},
    )
    assert response.status_code == 429 and response.headers["retry-after"] == "7"


# --- streams ---------------------------------------------------------------------------------


def stream_text(gateway: Gateway, model: str) -> tuple[str, httpx.Headers]:
    with sdk(gateway) as client:
        raw = client.chat.completions.with_raw_response.create(model=model, messages=USER, stream=True)  # type: ignore[arg-type]
        text = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
    return text, raw.headers


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param(error(503), id="503"),
        pytest.param(die_after(0), id="200-then-reset-before-the-first-event"),
        pytest.param(Fault(delay_s=5), id="hang-before-headers"),
        pytest.param(Fault(first_event_delay_s=5), id="headers-then-silence"),
    ],
)
def test_a_stream_falls_back_until_its_first_byte(
    gw: Gateway, ups: dict[str, FaultyUpstream], fault: Fault
) -> None:
    ups["a"].then(fault)
    text, headers = stream_text(gw, "chain")
    assert text == "b says: hi", "the client sees only the answer of the target that served it"
    assert headers["x-tollway-target"] == "b/m-b" and headers["x-tollway-attempts"] == "2"
    assert headers["content-type"].startswith("text/event-stream")


def test_an_in_band_error_before_any_output_falls_back(gw: Gateway, ups: dict[str, FaultyUpstream]) -> None:
    ups["a"].then(Fault(error_event=b'{"error": {"message": "overloaded, sorry", "type": "server_error"}}'))
    text, headers = stream_text(gw, "chain")
    assert text == "b says: hi" and headers["x-tollway-attempts"] == "2"


def test_an_in_band_refusal_before_any_output_is_the_clients_400(
    gw: Gateway, ups: dict[str, FaultyUpstream]
) -> None:
    refusal = b'{"error": {"message": "prompt blocked by policy", "type": "invalid_request_error", "code": "content_filter"}}'
    ups["a"].then(Fault(error_event=refusal))
    with sdk(gw) as client, pytest.raises(openai.BadRequestError) as caught:
        list(client.chat.completions.create(model="chain", messages=USER, stream=True))  # type: ignore[arg-type]
    assert caught.value.code == "content_filter" and "prompt blocked by policy" in caught.value.message
    assert not ups["b"].requests


def test_a_stream_that_breaks_after_its_first_byte_ends_with_an_error_event(
    gw: Gateway, ups: dict[str, FaultyUpstream]
) -> None:
    ups["a"].then(die_after(3))
    received = []
    with sdk(gw) as client, pytest.raises(openai.APIError) as caught:
        stream = client.chat.completions.with_raw_response.create(model="chain", messages=USER, stream=True)  # type: ignore[arg-type]
        request_id = stream.headers["x-request-id"]
        for chunk in stream.parse():
            received.append(chunk.choices[0].delta.content or "" if chunk.choices else "")
    assert "".join(received) == "a says:", "what was sent stays sent"
    assert "broke off" in caught.value.message
    assert not ups["b"].requests, "no fallback once the first byte has gone out"
    line = log_line(gw, request_id)
    assert line["status"] == 502 and line["error_code"] == "upstream_unreachable"
    assert [a["target"] for a in line["attempts"]] == ["a/m-a"]  # type: ignore[union-attr]


# --- breakers --------------------------------------------------------------------------------


def test_a_target_that_keeps_failing_cools_down_then_is_probed(
    start_gateway_with: Callable[[str], Gateway], ups: dict[str, FaultyUpstream]
) -> None:
    gateway = start_gateway_with(
        providers(ups, breaker="{failures: 2, cooldown_s: 0.6}") + f"models:\n  chain: {{targets: {CHAIN}}}\n"
    )
    ups["a"].default = error(500)
    for _ in range(2):
        assert ask(gateway, "chain")[0] == "b says: hi"
    assert len(ups["a"].requests) == 2
    view = targets_view(gateway)["a/m-a"]
    assert view["state"] == "open" and view["failures"] == 2 and view["last_failure"] == "server"
    assert 0 < float(view["cooldown_remaining_s"]) <= 0.6  # type: ignore[arg-type]
    metrics = httpx.get(gateway.url + "/metrics").text
    assert 'tollway_target_breaker_state{target="a/m-a"} 2.0' in metrics
    assert 'tollway_breaker_transitions_total{state="open",target="a/m-a"} 1.0' in metrics

    text, headers = ask(gateway, "chain")
    assert text == "b says: hi" and headers["x-tollway-attempts"] == "1", "a is skipped while open"
    assert len(ups["a"].requests) == 2

    time.sleep(0.65)
    ups["a"].default = OK
    assert targets_view(gateway)["a/m-a"]["state"] == "half_open"
    text, headers = ask(gateway, "chain")
    assert text == "a says: hi", "the probe call went to a and closed the breaker"
    assert targets_view(gateway)["a/m-a"]["state"] == "closed"
    assert 'tollway_target_breaker_state{target="a/m-a"} 0.0' in httpx.get(gateway.url + "/metrics").text


async def test_while_the_probe_is_out_other_requests_skip_the_target(
    start_gateway_with: Callable[[str], Gateway], ups: dict[str, FaultyUpstream]
) -> None:
    gateway = start_gateway_with(
        providers(ups, breaker="{failures: 1, cooldown_s: 0.2}") + f"models:\n  chain: {{targets: {CHAIN}}}\n"
    )
    ups["a"].then(error(500), Fault(delay_s=0.3))  # trip, then a slow but good probe
    async with openai.AsyncOpenAI(base_url=gateway.v1, api_key=MASTER_KEY, max_retries=0) as client:
        await client.chat.completions.create(model="chain", messages=USER)  # type: ignore[arg-type]
        await asyncio.sleep(0.25)
        probe = asyncio.create_task(client.chat.completions.create(model="chain", messages=USER))  # type: ignore[arg-type]
        await asyncio.sleep(0.1)
        other = await client.chat.completions.create(model="chain", messages=USER)  # type: ignore[arg-type]
        assert other.choices[0].message.content == "b says: hi"
        assert (await probe).choices[0].message.content == "a says: hi"
    assert len(ups["a"].requests) == 2


def test_every_target_cooling_down_is_a_503_with_retry_after(
    start_gateway_with: Callable[[str], Gateway], ups: dict[str, FaultyUpstream]
) -> None:
    gateway = start_gateway_with(
        providers(ups, breaker="{failures: 1, cooldown_s: 30}")
        + "models:\n  solo: {targets: [{provider: a, model: m-a}]}\n"
    )
    ups["a"].then(error(500))
    with sdk(gateway) as client:
        with pytest.raises(openai.InternalServerError):
            client.chat.completions.create(model="solo", messages=USER)  # type: ignore[arg-type]
        with pytest.raises(openai.APIStatusError) as caught:
            client.chat.completions.create(model="solo", messages=USER)  # type: ignore[arg-type]
    assert caught.value.status_code == 503 and caught.value.code == "targets_cooling_down"
    assert 29 <= int(caught.value.response.headers["retry-after"]) <= 30
    assert caught.value.response.headers["x-tollway-attempts"] == "0"
    assert len(ups["a"].requests) == 1


def test_targets_view_needs_the_master_key(gw: Gateway) -> None:
    assert httpx.get(gw.url + "/admin/targets").status_code == 401
    refused = httpx.get(gw.url + "/admin/targets", headers={"authorization": f"Bearer {EU_KEY}"})
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "admin_only"
    view = targets_view(gw)
    assert set(view) == {"a/m-a", "b/m-b", "c/m-c-long", "c/m-c"}
    assert view["a/m-a"]["region"] == "us" and view["a/m-a"]["state"] == "closed"
    assert sorted(view["a/m-a"]["models"]) == ["chain", "context", "hedged", "pooled", "retrying", "us-only"]  # type: ignore[arg-type]


# --- hedging ---------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_hedging_takes_the_first_answer_and_cancels_the_other(
    gw: Gateway, ups: dict[str, FaultyUpstream], stream: bool
) -> None:
    ups["a"].then(Fault(delay_s=0.35))  # slow to a first byte, within its timeout
    started = time.monotonic()
    if stream:
        text, headers = stream_text(gw, "hedged")
    else:
        text, headers = ask(gw, "hedged")
    assert text == "b says: hi" and headers["x-tollway-target"] == "b/m-b"
    assert time.monotonic() - started < 0.33, "b started after 100 ms and answered first"
    assert headers["x-tollway-attempts"] == "2"
    deadline = time.monotonic() + 2
    while ups["a"].cancelled == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert ups["a"].cancelled == 1 and ups["a"].completed == 0, "the loser's call is cancelled"
    attempts = log_line(gw, headers["x-request-id"])["attempts"]
    assert [(a["target"], a.get("error")) for a in attempts] == [("a/m-a", "cancelled"), ("b/m-b", None)]  # type: ignore[union-attr]
    metrics = httpx.get(gw.url + "/metrics").text
    assert 'tollway_hedged_calls_total{model="hedged"} 1.0' in metrics
    assert targets_view(gw)["a/m-a"]["inflight"] == 0


def test_no_hedge_when_the_first_target_answers_in_time(gw: Gateway, ups: dict[str, FaultyUpstream]) -> None:
    text, headers = ask(gw, "hedged")
    assert text == "a says: hi" and headers["x-tollway-attempts"] == "1"
    assert not ups["b"].requests


def test_a_hedged_failure_still_falls_back(gw: Gateway, ups: dict[str, FaultyUpstream]) -> None:
    ups["a"].then(error(500))
    text, headers = ask(gw, "hedged")
    assert text == "b says: hi" and headers["x-tollway-attempts"] == "2"


# --- residency -------------------------------------------------------------------------------


def test_residency_refuses_when_no_target_is_in_the_keys_regions(
    gw: Gateway, ups: dict[str, FaultyUpstream]
) -> None:
    with sdk(gw, EU_KEY) as client, pytest.raises(openai.PermissionDeniedError) as caught:
        client.chat.completions.create(model="us-only", messages=USER)  # type: ignore[arg-type]
    assert caught.value.code == "region_not_allowed"
    assert "(eu)" in caught.value.message and "us-only" in caught.value.message
    assert not ups["a"].requests


def test_residency_uses_only_targets_in_the_keys_regions(gw: Gateway, ups: dict[str, FaultyUpstream]) -> None:
    text, headers = ask(gw, "chain", EU_KEY)
    assert text == "b says: hi" and headers["x-tollway-attempts"] == "1"
    assert not ups["a"].requests, "a is in the us: never called for this key, though healthy"
    assert ask(gw, "chain")[0] == "a says: hi", "the master key has no region restriction"


# --- pools -----------------------------------------------------------------------------------


def test_a_pool_spreads_calls_by_weight(gw: Gateway, ups: dict[str, FaultyUpstream]) -> None:
    with sdk(gw) as client:
        served = [ask(gw, "pooled", client=client)[0].split(" ")[0] for _ in range(40)]
    assert set(served) == {"a", "b"} and served.count("a") > served.count("b")
    assert not ups["c"].requests


def test_a_failing_pool_member_falls_to_the_other_member_first(
    gw: Gateway, ups: dict[str, FaultyUpstream]
) -> None:
    ups["a"].default = error(500, "a is down")
    ups["a"].then(error(500), error(500))  # the breaker (3 failures) opens after a third
    for _ in range(6):
        assert ask(gw, "pooled")[0] == "b says: hi"
    assert not ups["c"].requests
