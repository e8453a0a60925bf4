"""The cost of a streamed call in its usage chunk: `usage.cost` in USD (OpenRouter's field; the
SDKs keep extra fields and ignore them), for OpenAI-format streams whose client asked for usage."""

from __future__ import annotations

from typing import Final

from adapters.schema import StreamError
from gateway.accounting.pricing import PriceTable, usd_text
from gateway.pipeline.context import RequestContext
from gateway.pipeline.relay import openai_error_event

_MARKS: Final = (b'"usage":{', b'"usage": {')


class CostStamp:
    """A StreamTap (gateway/pipeline/relay.py) that writes the call's cost, priced from the usage the relay
    has just read (`ctx.usage`), into the chunk that carries it. Other chunks pass untouched; only
    a chunk holding a usage object is looked at."""

    __slots__ = ("_ctx", "_prices")

    def __init__(self, prices: PriceTable, ctx: RequestContext) -> None:
        self._prices = prices
        self._ctx = ctx

    def feed(self, data: bytes) -> bytes:
        ctx = self._ctx
        if ctx.usage is None or ctx.provider is None or ctx.target_model is None:
            return data
        for mark in _MARKS:
            at = data.find(mark)
            if at >= 0:
                cost = self._prices.cost_for(ctx.provider, ctx.target_model, ctx.usage)
                end = at + len(mark)
                return data[:end] + b'"cost":' + usd_text(cost).encode() + b"," + data[end:]
        return data

    def close(self) -> bytes:
        return b""

    def error(self, error: StreamError) -> bytes:
        return openai_error_event(error)
