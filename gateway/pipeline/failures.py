"""What a failed upstream call means: its kind, for the retry and fallback policy
(gateway/pipeline/attempts.py), and the error the client gets if it is the last word.

Provider error answers are classified by the dialect (the adapter's classify_error); this module
only decides what the client sees: a provider's 4xx with its own status and message (a bad
parameter is the client's to fix) except 401/403, which say the gateway's provider credentials are
wrong (the operator's problem, and the text may quote the key); anything else a 502.
"""

from __future__ import annotations

from typing import Final

import msgspec

from adapters.base import ErrorKind
from adapters.openai.shapes import OpenAIErrorDetailProbe, OpenAIErrorEnvelopeProbe
from gateway.errors.answers import from_code, from_provider, upstream_failed
from gateway.errors.catalogue import ErrorCode
from gateway.pipeline.attempts import Failure
from gateway.routing.router import RouteTarget
from gateway.upstream.credentials import redact
from gateway.upstream.http import UpstreamFailure, UpstreamResponse


def network_failure(target: RouteTarget, exc: UpstreamFailure) -> Failure:
    """The provider did not connect, answer or send in time, or the connection failed or broke:
    the kind and code are the failure's own (the exception's text names no address)."""
    return Failure(exc.kind, upstream_failed(exc, target.provider))


async def failure_of(upstream: UpstreamResponse, target: RouteTarget) -> Failure:
    """A provider's error answer, classified, with the client's view of it.

    The provider's 4xx reaches the client with its status and message (a bad parameter is the
    client's to fix), except 401/403: those say the gateway's own provider credentials are
    wrong, which is the operator's problem, and the provider's text may quote part of the key.
    Anything else is a 502.
    """
    error = target.dialect.classify_error(upstream.status, upstream.headers, await upstream.read_error())
    kind = error.kind
    message = redact(error.message, target.secrets)
    if error.kind is ErrorKind.AUTH:
        client_error = from_code(
            ErrorCode.UPSTREAM_AUTH,
            f"provider '{target.provider}' rejected the gateway's credentials (HTTP {error.status})",
        )
    elif 400 <= upstream.status < 500:
        headers = None
        if error.retry_after_s is not None:
            headers = {"Retry-After": str(max(1, round(error.retry_after_s)))}
        err_type, code = error.type or "invalid_request_error", error.code
        if upstream.status == 429:
            err_type, code = _openai_429(err_type, code)
        client_error = from_provider(
            upstream.status,
            message,
            type=err_type,
            code=code,
            param=error.param,
            fault="caller" if upstream.status != 429 else "provider",
            headers=headers,
        )
    else:
        client_error = from_code(
            ErrorCode.UPSTREAM_ERROR,
            f"provider '{target.provider}' failed (HTTP {upstream.status}): {message}",
        )
    return Failure(kind, client_error, upstream.status, error.retry_after_s)


# What OpenAI's own 429s carry (its SDK and clients written against it read these): a spent quota
# is `insufficient_quota` in both; a rate limit is code `rate_limit_exceeded` with the limit that
# was hit as the type, `requests` or `tokens`.
_QUOTA: Final = "insufficient_quota"
_RATE_LIMIT_TYPES: Final = frozenset({"requests", "tokens"})


def _openai_429(err_type: str, code: str | None) -> tuple[str, str]:
    """A provider's 429 (Azure's code "429", Anthropic's `rate_limit_error`, Gemini's
    `RESOURCE_EXHAUSTED`...) as the type and code OpenAI gives its own."""
    if _QUOTA in (err_type, code):
        return _QUOTA, _QUOTA
    return (
        err_type if err_type in _RATE_LIMIT_TYPES else "requests"
    ), ErrorCode.RATE_LIMIT_EXCEEDED.value.code


_decode_envelope: Final = msgspec.json.Decoder(OpenAIErrorEnvelopeProbe)
_decode_detail: Final = msgspec.json.Decoder(OpenAIErrorDetailProbe)
# `type` values of an in-band error that say the request itself was refused (the OpenAI type,
# and the ErrorKind values the translating relay uses when a provider gives no type).
_CLIENT_ERROR_TYPES: Final = frozenset({"invalid_request_error", "bad_request", "context_length"})


def stream_error(raw: bytes, target: RouteTarget) -> Failure:
    """A provider's in-band error event that came before any output: nothing was sent yet, so
    it is answered like an error status. A refused request (a blocked prompt, too long a
    context) is the client's 400 and moves on only as such; anything else is a 502 that moves on.

    `raw` is the relay's error: the `{"error": {...}}` envelope or the bare error object.
    """
    try:
        detail = _decode_envelope.decode(raw).error or _decode_detail.decode(raw)
    except msgspec.DecodeError:
        detail = OpenAIErrorDetailProbe()
    message = redact(detail.message, target.secrets) or "no message"
    code = None if detail.code is None else str(detail.code)
    if detail.type in _CLIENT_ERROR_TYPES:
        context = code == "context_length_exceeded" or detail.type == "context_length"
        kind = ErrorKind.CONTEXT_LENGTH if context else ErrorKind.BAD_REQUEST
        refused = from_provider(400, message, type="invalid_request_error", code=code, param=detail.param)
        return Failure(kind, refused, 200)
    error = from_code(
        ErrorCode.UPSTREAM_STREAM_ERROR,
        f"provider '{target.provider}' reported an error before sending any output: {message}",
    )
    return Failure(ErrorKind.SERVER, error, 200)
