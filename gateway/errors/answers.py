"""The gateway's own error answers, always in OpenAI's shape:
`{"error": {"message", "type", "code", "param"}}`.

The only module that builds a GatewayError (tests/unit/gateway/errors/test_error_codes.py scans for any
other): from a
catalogue member (`from_code` and the factories below), from a provider's own 4xx
(`from_provider`) or from aiohttp's own refusal (`from_http_status`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import msgspec
from aiohttp import web

from adapters.openai.shapes import OpenAIError, OpenAIErrorDetail
from gateway.errors.catalogue import ErrorCode, Fault

if TYPE_CHECKING:  # (not at run time: the errors do not import the HTTP clients)
    from gateway.upstream.http import UpstreamFailure

_encode: Final = msgspec.json.Encoder()


class GatewayError(Exception):
    """A request that ends in an error answer; raised anywhere on the request path.

    `fault` says whose fault it was, for metrics: caller, policy, provider or gateway.
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        fault: str = "caller",
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.fault = fault
        self.headers = headers


def error_body(message: str, type: str, code: str | None = None, param: str | None = None) -> bytes:
    """The OpenAI error body as bytes."""
    return _encode.encode(OpenAIError(OpenAIErrorDetail(message, type, code, param)))


def body_of(err: GatewayError) -> bytes:
    """The OpenAI error body of a GatewayError, for answers written before aiohttp has a request
    (gateway/server/connections.py's raw bytes)."""
    return error_body(err.message, err.type, err.code, err.param)


def error_response(
    err: GatewayError, request_id: str, body: bytes | None = None, id_header: str = "x-request-id"
) -> web.Response:
    """The HTTP answer for a GatewayError, carrying the request id (in `id_header` too, for
    clients that read it under another name): the OpenAI error body unless another `body` is given
    (another front door's error shape)."""
    headers = {"x-request-id": request_id, id_header: request_id}
    if err.headers:
        headers.update(err.headers)
    return web.Response(
        status=err.status,
        body=body_of(err) if body is None else body,
        content_type="application/json",
        headers=headers,
    )


def from_code(
    code: ErrorCode,
    message: str,
    *,
    param: str | None = None,
    headers: dict[str, str] | None = None,
    status: int | None = None,
    type: str | None = None,
) -> GatewayError:
    """The GatewayError for a catalogued code: status, type, code string and fault from its spec.

    `status` or `type` picks one of the spec's variants (key_revoked's 400, rate_limit_exceeded's
    `tokens`); a pair the catalogue does not list is a ValueError, so that no call site can invent
    a status for a code.
    """
    spec = code.value
    chosen = (spec.status, spec.type)
    if status is not None or type is not None:
        matches = [
            pair
            for pair in spec.pairs()
            if (status is None or pair[0] == status) and (type is None or pair[1] == type)
        ]
        if not matches:
            raise ValueError(f"{spec.code} is not answered with status {status} and type {type}")
        chosen = matches[0]
    return GatewayError(
        chosen[0], message, type=chosen[1], code=spec.code, param=param, fault=spec.fault, headers=headers
    )


def from_provider(
    status: int,
    message: str,
    *,
    type: str,
    code: str | None,
    param: str | None = None,
    fault: Fault = "caller",
    headers: dict[str, str] | None = None,
) -> GatewayError:
    """A provider's own 4xx passed on to the client (gateway/pipeline/failures.py): its status,
    type and code are the provider's (a 429's as OpenAI types its own), not the catalogue's, so
    they are taken as given. With from_http_status, the only way to send a code the catalogue
    does not hold; a provider's 401/403 and 5xx never come here (upstream_auth, upstream_error)."""
    if not 400 <= status < 500:
        raise ValueError(f"only a provider's 4xx is passed on, not {status}")
    return GatewayError(status, message, type=type, code=code, param=param, fault=fault, headers=headers)


def from_http_status(status: int, reason: str) -> GatewayError:
    """aiohttp's own refusal (a 405 for a method a route does not take, a 413 from its body
    limit...), raised as a web.HTTPException rather than a GatewayError: its status, and its
    reason phrase as the message and, in snake case, the code (`method_not_allowed`)."""
    return GatewayError(
        status,
        reason,
        code=reason.lower().replace(" ", "_"),
        fault="caller" if status < 500 else "gateway",
    )


def bad_request(message: str, param: str | None = None) -> GatewayError:
    return from_code(ErrorCode.INVALID_REQUEST, message, param=param)


def malformed_body() -> GatewayError:
    """A body whose framing (chunked encoding) or content encoding (gzip, deflate) is broken,
    found while reading it: the head was fine, so the request reached a handler."""
    return from_code(
        ErrorCode.MALFORMED_REQUEST,
        "the request body could not be read: its chunked framing or content encoding is invalid",
    )


def unauthorized() -> GatewayError:
    return from_code(
        ErrorCode.INVALID_API_KEY,
        "missing or invalid API key: send it as 'Authorization: Bearer <key>' or 'x-api-key'",
    )


def model_not_found(model: str) -> GatewayError:
    """A model that is not configured, or one the key may not use: one answer for both (OpenAI's
    wording), so that a restricted key cannot tell which models exist."""
    return from_code(
        ErrorCode.MODEL_NOT_FOUND,
        f"the model '{model}' does not exist or you do not have access to it",
        param="model",
    )


def body_too_large(limit: int) -> GatewayError:
    return from_code(ErrorCode.REQUEST_TOO_LARGE, f"the request body exceeds the limit of {limit} bytes")


# What the client reads when a call to a provider failed on the network, by the failure's code:
# before any of the answer went out, and once a stream had begun ({reason}: the failure's text).
_NETWORK_TEXTS: Final[dict[ErrorCode, tuple[str, str]]] = {
    ErrorCode.UPSTREAM_TIMEOUT: ("did not answer in time", "stopped sending in time"),
    ErrorCode.UPSTREAM_UNREACHABLE: ("could not be reached: {reason}", "broke off the stream: {reason}"),
}


def upstream_failed(failure: UpstreamFailure, provider: str, *, streaming: bool = False) -> GatewayError:
    """The answer for a provider call that failed on the network: the code is the one
    gateway/upstream/http.py's NETWORK_FAILURES gave the failure, whichever client made the call."""
    before, during = _NETWORK_TEXTS[failure.code]
    text = (during if streaming else before).format(reason=failure)
    return from_code(failure.code, f"provider '{provider}' {text}")


def store_unavailable(what: str) -> GatewayError:
    """A 503 for a read of the store on the request path that failed or took too long."""
    return from_code(ErrorCode.STORE_UNAVAILABLE, f"the store of {what} is unavailable; try again shortly")
