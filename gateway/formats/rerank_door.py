"""The front door of `/v1/rerank` (and Cohere's `/v2/rerank`): Cohere's v2 rerank format in and
out (adapters/cohere/rerank.py), on the same pipeline as every endpoint, behind the `rerank` key right."""

from __future__ import annotations

from aiohttp import web

from adapters.cohere import rerank
from gateway.errors.answers import GatewayError, error_response
from gateway.formats.frontdoor import OpenAIDoor


class RerankDoor(OpenAIDoor):
    """Decodes a rerank request; its errors carry Cohere's `message` as well as OpenAI's `error`."""

    def __init__(self) -> None:
        super().__init__(rerank.OPERATION, rerank.decode_request)

    def error(self, err: GatewayError, request_id: str) -> web.Response:
        return error_response(err, request_id, rerank.error_body(err.message, err.type, err.code, err.param))


RERANK_DOOR = RerankDoor()
