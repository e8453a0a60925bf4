"""The error catalogue: each spec is coherent, codes are unique, and answers built from it keep
their wire shape."""

from __future__ import annotations

import ast
from typing import Final

import pytest

from gateway.errors.answers import from_code, from_http_status, from_provider
from gateway.errors.catalogue import ErrorCode
from tests.support import paths


@pytest.mark.parametrize("member", list(ErrorCode), ids=lambda m: m.name)
def test_spec_is_coherent(member: ErrorCode) -> None:
    spec = member.value
    assert spec.code == member.name.lower()
    assert 400 <= spec.status < 600
    if spec.status < 500:
        assert spec.fault in ("caller", "policy")
    else:
        assert spec.fault in ("provider", "gateway")
    assert spec.description.endswith(".")
    # A variant keeps the code's side of the line between the caller's errors and the gateway's.
    for variant in spec.variants:
        assert (variant.status < 500) == (spec.status < 500) and variant.when.endswith(".")
        assert (variant.status, variant.type) != (spec.status, spec.type)


def test_codes_are_unique() -> None:
    codes = [member.value.code for member in ErrorCode]
    assert len(codes) == len(set(codes))


def test_from_code_carries_the_spec() -> None:
    err = from_code(ErrorCode.UPSTREAM_TIMEOUT, "late", param="p", headers={"retry-after": "1"})
    assert (err.status, err.type, err.code, err.fault) == (
        504,
        "upstream_error",
        "upstream_timeout",
        "provider",
    )
    assert (err.message, err.param, err.headers) == ("late", "p", {"retry-after": "1"})


def test_a_variant_is_chosen_by_status_or_type() -> None:
    rotated = from_code(ErrorCode.KEY_REVOKED, "revoked", status=400)
    assert (rotated.status, rotated.type, rotated.code) == (400, "invalid_request_error", "key_revoked")
    presented = from_code(ErrorCode.KEY_REVOKED, "revoked")
    assert (presented.status, presented.type) == (401, "authentication_error")
    tokens = from_code(ErrorCode.RATE_LIMIT_EXCEEDED, "slow", type="tokens")
    assert (tokens.status, tokens.type, tokens.fault) == (429, "tokens", "policy")
    assert from_code(ErrorCode.RATE_LIMIT_EXCEEDED, "slow", type="requests").type == "requests"


@pytest.mark.parametrize(
    ("code", "status", "type_"),
    [
        (ErrorCode.KEY_REVOKED, 403, None),
        (ErrorCode.RATE_LIMIT_EXCEEDED, None, "minutes"),
        (ErrorCode.NOT_FOUND, 410, None),
    ],
)
def test_a_pair_the_catalogue_does_not_list_is_refused(
    code: ErrorCode, status: int | None, type_: str | None
) -> None:
    with pytest.raises(ValueError):
        from_code(code, "no", status=status, type=type_)


def test_a_provider_4xx_is_passed_on_as_given_and_nothing_else_is() -> None:
    err = from_provider(
        422, "bad", type="invalid_request_error", code="weird_param", param="p", fault="caller"
    )
    assert (err.status, err.type, err.code, err.param, err.fault) == (
        422,
        "invalid_request_error",
        "weird_param",
        "p",
        "caller",
    )
    with pytest.raises(ValueError):
        from_provider(500, "boom", type="server_error", code=None)


def test_aiohttp_refusals_are_named_by_their_reason() -> None:
    err = from_http_status(405, "Method Not Allowed")
    assert (err.status, err.message, err.type, err.code) == (
        405,
        "Method Not Allowed",
        "invalid_request_error",
        "method_not_allowed",
    )


REPO = paths.REPO

# Only the catalogue's own modules build a GatewayError (issue #24): everywhere else an answer comes
# from a member (from_code and the factories beside it), a provider's own 4xx (from_provider) or
# aiohttp's refusal (from_http_status). The ratchet that counted hand-built sites per file is empty.
_CATALOGUE_MODULES: Final = {"gateway/errors/answers.py", "gateway/errors/catalogue.py"}


def _hand_built() -> dict[str, int]:
    found: dict[str, int] = {}
    for package in ("gateway", "adapters"):
        for path in sorted((REPO / package).rglob("*.py")):
            shown = path.relative_to(REPO).as_posix()
            if shown in _CATALOGUE_MODULES:
                continue
            calls = sum(
                1
                for node in ast.walk(ast.parse(path.read_text()))
                if isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "GatewayError"
            )
            if calls:
                found[shown] = calls
    return found


def test_no_gateway_error_is_built_outside_the_catalogue() -> None:
    found = _hand_built()
    assert not found, f"build these from gateway.errors.catalogue with errors.from_code: {found}"
