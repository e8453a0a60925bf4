"""The router: logical model to fallback chain, residency, and the per-target shared state."""

from __future__ import annotations

import random

import pytest

from gateway.config.load import parse_config
from gateway.errors.answers import GatewayError
from gateway.routing.router import Router
from tests.unit.gateway.pipeline.test_attempts import CONFIG, fail, labels


@pytest.fixture
def router() -> Router:
    return Router(parse_config(CONFIG, {}, "test.yaml"), rng=random.Random(3))


def test_residency_keeps_only_targets_in_the_allowed_regions(router: Router) -> None:
    assert labels(router.plan("chain", ("eu",)), fail("invalid_answer")) == ["a/m", "c/m"]
    assert labels(router.plan("chain", ("us", "ch")), fail("invalid_answer")) == ["b/m"]
    with pytest.raises(GatewayError) as refused:
        router.plan("single", ("eu", "ch"))
    assert refused.value.status == 403 and refused.value.code == "region_not_allowed"
    assert "eu, ch" in refused.value.message and "single" in refused.value.message


def test_unknown_model_is_a_404(router: Router) -> None:
    with pytest.raises(GatewayError) as missing:
        router.plan("nope")
    assert missing.value.status == 404


def test_a_target_used_by_several_models_shares_one_breaker_and_its_load() -> None:
    router = Router(parse_config(CONFIG, {}, "test.yaml"))
    chain = router.routes["chain"].targets
    context = router.routes["context"].targets
    assert chain[0].label == "a/m" and context[0].label == "a/small"
    assert chain[0].breaker is not context[0].breaker, "another model at the provider: another target"
    shared = Router(parse_config(CONFIG.replace("model: small}", "model: m}"), {}, "test.yaml"))
    assert shared.routes["chain"].targets[0].breaker is shared.routes["context"].targets[0].breaker
    assert shared.routes["chain"].targets[0].stats is shared.routes["context"].targets[0].stats
    states = {s.target: s for s in shared.target_states()}
    assert states["a/m"].models == ["chain", "context"] and states["a/m"].region == "eu"
    assert states["a/m"].state == "closed" and states["d/m"].region is None


def test_pools_group_adjacent_members_into_one_step() -> None:
    router = Router(parse_config(CONFIG, {}, "test.yaml"))
    chain = router.routes["pooled"].chain
    assert [[t.label for t in step] for step in chain] == [["a/p", "b/p"], ["c/p"]]


def test_breaker_changes_are_reported_by_target() -> None:
    seen: list[tuple[str, str]] = []
    router = Router(parse_config(CONFIG, {}, "test.yaml"), on_breaker_change=lambda t, s: seen.append((t, s)))
    for _ in range(2):
        router.breakers["a/m"].record_failure(probe=False)
    assert seen == [("a/m", "open")]


@pytest.mark.parametrize(
    ("chosen", "expected"), [(None, "LeanTransport"), ("lean", "LeanTransport"), ("aiohttp", "HttpTransport")]
)
async def test_each_provider_gets_the_http_client_it_names(chosen: str | None, expected: str) -> None:
    from gateway.config.schema import OpenAIProvider
    from gateway.upstream.transports import build_transport

    provider = OpenAIProvider(
        base_url="http://127.0.0.1:9/v1", **({} if chosen is None else {"http_client": chosen})
    )
    transport = build_transport(provider)
    try:
        assert type(transport).__name__ == expected
    finally:
        await transport.aclose()
