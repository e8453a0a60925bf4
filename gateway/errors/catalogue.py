"""The catalogue of the gateway's client-facing error codes: each code's HTTP status, OpenAI error
`type`, fault domain, retryability and a line for operators, in one place.

`gateway/errors/answers.py` builds answers from it (`from_code`), and is the only module that
builds a GatewayError; docs/errors.md is generated from it (gateway/docgen.py). Two kinds of answer
carry a code the gateway did not choose, each through one factory there: a provider's own 4xx
passed on (`from_provider`) and aiohttp's own refusals (`from_http_status`).
"""

from __future__ import annotations

import enum
from typing import Final, Literal

import msgspec

Fault = Literal["caller", "policy", "provider", "gateway"]


class Variant(msgspec.Struct, frozen=True):
    """Another status and type one code is answered with. A code keeps one meaning, but a few have
    long been sent with two statuses or types (`key_revoked` is 401 when the key is presented and
    400 when it is rotated); a variant names each pair, so that `from_code` can refuse any other."""

    status: int
    type: str
    when: str  # the one case that answers with this pair, for docs/errors.md


class CodeSpec(msgspec.Struct, frozen=True):
    """What one error code means on the wire and in metrics.

    `code` is the wire string; it is part of the spec so that no two members alias each other.
    `variants` are the other (status, type) pairs the code is sent with, each chosen by name.
    """

    code: str
    status: int
    type: str
    fault: Fault
    retryable: bool
    description: str
    variants: tuple[Variant, ...] = ()

    def pairs(self) -> tuple[tuple[int, str], ...]:
        """Every (status, type) this code may be answered with, its own first."""
        return ((self.status, self.type), *((v.status, v.type) for v in self.variants))


_INVALID: Final = "invalid_request_error"
_UPSTREAM: Final = "upstream_error"


class ErrorCode(enum.Enum):
    """Every client-facing error code with a fixed status, type and fault."""

    INVALID_REQUEST = CodeSpec(
        "invalid_request", 400, _INVALID, "caller", False, "The request body or a parameter is invalid."
    )
    MALFORMED_REQUEST = CodeSpec(
        "malformed_request",
        400,
        _INVALID,
        "caller",
        False,
        "The request could not be read: broken chunked framing or content encoding.",
    )
    INVALID_API_KEY = CodeSpec(
        "invalid_api_key", 401, "authentication_error", "caller", False, "The API key is missing or unknown."
    )
    MODEL_NOT_FOUND = CodeSpec(
        "model_not_found",
        404,
        _INVALID,
        "caller",
        False,
        "The model is not configured, or the key may not use it (one answer for both).",
    )
    REQUEST_TOO_LARGE = CodeSpec(
        "request_too_large", 413, _INVALID, "caller", False, "The request body exceeds the configured limit."
    )
    UNSUPPORTED_ENDPOINT = CodeSpec(
        "unsupported_endpoint",
        400,
        _INVALID,
        "caller",
        False,
        "No configured provider can serve this endpoint for the model.",
    )
    UPSTREAM_TIMEOUT = CodeSpec(
        "upstream_timeout",
        504,
        _UPSTREAM,
        "provider",
        True,
        "The provider did not answer, or stopped sending, in time.",
    )
    UPSTREAM_UNREACHABLE = CodeSpec(
        "upstream_unreachable",
        502,
        _UPSTREAM,
        "provider",
        True,
        "The provider could not be reached, or broke off the connection.",
    )
    UPSTREAM_INCOMPLETE = CodeSpec(
        "upstream_incomplete",
        502,
        _UPSTREAM,
        "provider",
        True,
        "The provider ended its answer before it was complete.",
    )
    UPSTREAM_OVERRUN = CodeSpec(
        "upstream_overrun",
        502,
        _UPSTREAM,
        "provider",
        False,
        "The provider answered more than the request allows; the answer was cut.",
    )
    NO_STORE = CodeSpec(
        "no_store",
        503,
        "server_error",
        "gateway",
        False,
        "The admin API, a report or the UI needs the store, and none is configured (storage.database_url).",
    )
    AUDIT_CHAIN_BROKEN = CodeSpec(
        "audit_chain_broken",
        400,
        _INVALID,
        "caller",
        False,
        "`tollway audit verify` found a record that does not chain to the one before (the CLI's"
        " exit 1; no HTTP answer carries it).",
    )
    TOO_MANY_CONNECTIONS = CodeSpec(
        "too_many_connections",
        503,
        "server_error",
        "gateway",
        True,
        "The gateway holds server.max_connections open connections; a new one is answered and closed.",
    )
    STORE_UNAVAILABLE = CodeSpec(
        "store_unavailable",
        503,
        "server_error",
        "gateway",
        True,
        "A read of the gateway's store failed or took too long.",
    )
    ADMIN_DISABLED = CodeSpec(
        "admin_disabled",
        403,
        "permission_error",
        "caller",
        False,
        "The admin API is off: server.master_key is not set.",
    )
    ADMIN_ONLY = CodeSpec(
        "admin_only", 403, "permission_error", "caller", False, "The endpoint needs an admin key."
    )
    ROLE_FORBIDDEN = CodeSpec(
        "role_forbidden", 403, "permission_error", "caller", False, "The admin key's role may not do this."
    )
    CONTENT_BLOCKED = CodeSpec(
        "content_blocked",
        400,
        _INVALID,
        "policy",
        False,
        "The prompt holds a term the model's guardrails block (guardrails.blocked, action block).",
    )
    PROMPT_INJECTION = CodeSpec(
        "prompt_injection",
        400,
        _INVALID,
        "policy",
        False,
        "A user or tool message looks like a prompt injection and the model's guardrails block it"
        " (guardrails.injection: block).",
    )
    PII_DETECTED = CodeSpec(
        "pii_detected",
        400,
        _INVALID,
        "policy",
        False,
        "The prompt holds personal data and the model's guardrails block it (guardrails.pii: block).",
    )
    ENDPOINT_NOT_ALLOWED = CodeSpec(
        "endpoint_not_allowed", 403, "permission_error", "policy", False, "The key may not use this endpoint."
    )
    REGION_NOT_ALLOWED = CodeSpec(
        "region_not_allowed",
        403,
        "permission_error",
        "policy",
        False,
        "No target of the model is in a region the key may use.",
    )
    BEYOND_TEAM = CodeSpec(
        "beyond_team", 400, _INVALID, "caller", False, "A key asks for more than its team allows."
    )
    TEAM_BELOW_KEYS = CodeSpec(
        "team_below_keys",
        400,
        _INVALID,
        "caller",
        False,
        "A team change would leave active keys asking for more than it allows.",
    )
    TEAM_NOT_FOUND = CodeSpec(
        "team_not_found",
        400,
        _INVALID,
        "caller",
        False,
        "The team named in the request does not exist.",
        (Variant(404, _INVALID, "The team the admin API's path names does not exist."),),
    )
    KEY_NOT_FOUND = CodeSpec(
        "key_not_found", 404, _INVALID, "caller", False, "The key the admin API's path names does not exist."
    )
    ADMIN_KEY_NOT_FOUND = CodeSpec(
        "admin_key_not_found",
        404,
        _INVALID,
        "caller",
        False,
        "The admin key the admin API's path names does not exist.",
    )
    NOT_A_VIRTUAL_KEY = CodeSpec(
        "not_a_virtual_key",
        400,
        _INVALID,
        "caller",
        False,
        "/v1/key/info was called with the master key, which is not a virtual key.",
    )
    INVALID_CACHE_TTL = CodeSpec(
        "invalid_cache_ttl",
        400,
        _INVALID,
        "caller",
        False,
        "The cache TTL header is not a whole number of seconds.",
    )
    KEY_EXPIRED = CodeSpec(
        "key_expired", 401, "authentication_error", "caller", False, "The API key has expired."
    )
    KEY_REVOKED = CodeSpec(
        "key_revoked",
        401,
        "authentication_error",
        "caller",
        False,
        "The API key, or admin key, has been revoked.",
        (Variant(400, _INVALID, "A revoked key was asked to rotate (the admin API, the CLI, the UI)."),),
    )
    KEY_ROTATED = CodeSpec(
        "key_rotated",
        401,
        "authentication_error",
        "caller",
        False,
        "The API key was rotated and its grace period is over.",
    )
    NOT_FOUND = CodeSpec("not_found", 404, _INVALID, "caller", False, "No such route or stored object.")
    HEADERS_TOO_LARGE = CodeSpec(
        "headers_too_large",
        431,
        _INVALID,
        "caller",
        False,
        "The request's header fields are too large or too many.",
    )
    REQUEST_LINE_TOO_LONG = CodeSpec(
        "request_line_too_long", 414, _INVALID, "caller", False, "The request line exceeds the limit."
    )
    RATE_LIMIT_EXCEEDED = CodeSpec(
        "rate_limit_exceeded",
        429,
        "requests",
        "policy",
        True,
        "A request limit (rpm) of the key, its team or the gateway's quota at a provider is reached;"
        " the type says which kind of limit, as OpenAI's own 429s do.",
        (Variant(429, "tokens", "The limit reached counts tokens (tpm)."),),
    )
    BUDGET_EXCEEDED = CodeSpec(
        "budget_exceeded",
        429,
        "insufficient_quota",
        "policy",
        False,
        "A budget the request counts against is spent.",
    )
    BUDGET_BUSY = CodeSpec(
        "budget_busy",
        429,
        "insufficient_quota",
        "policy",
        True,
        "A budget is held by requests in flight; it may free up shortly.",
    )
    BUDGET_CURRENCY_UNKNOWN = CodeSpec(
        "budget_currency_unknown",
        500,
        "server_error",
        "gateway",
        False,
        "A budget is in a currency the gateway has no rate for.",
    )
    INTERNAL_ERROR = CodeSpec(
        "internal_error", 500, "server_error", "gateway", False, "An unexpected failure inside the gateway."
    )
    TARGETS_COOLING_DOWN = CodeSpec(
        "targets_cooling_down",
        503,
        _UPSTREAM,
        "provider",
        True,
        "Every target of the model is cooling down after failures.",
    )
    UPSTREAM_AUTH = CodeSpec(
        "upstream_auth", 502, _UPSTREAM, "gateway", False, "The provider refused the gateway's credentials."
    )
    UPSTREAM_ERROR = CodeSpec(
        "upstream_error",
        502,
        _UPSTREAM,
        "provider",
        True,
        "The provider answered with an error the gateway does not pass on as is.",
    )
    UPSTREAM_INVALID_ANSWER = CodeSpec(
        "upstream_invalid_answer",
        502,
        _UPSTREAM,
        "provider",
        True,
        "The provider's answer is not valid JSON.",
    )
    UPSTREAM_STREAM_ERROR = CodeSpec(
        "upstream_stream_error",
        502,
        _UPSTREAM,
        "provider",
        True,
        "The provider sent an error event inside its stream.",
    )
