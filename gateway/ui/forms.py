"""HTML form fields -> the admin API's own input Structs (gateway/policy/keyadmin.py), so the UI validates
exactly as the API does: the fields become the JSON body the API would get, decoded by the
API's decoder, and a bad value is the API's GatewayError 400 naming the field.

A form always sends every field, so an empty field means "none" (a patch clears it).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final, TypeVar

import msgspec

from gateway.admin.adminkeys import AdminKeyCreate
from gateway.admin.api import decode_body
from gateway.errors.answers import bad_request
from gateway.policy.keyadmin import KeyCreate, KeyPatch, KeyRotate, TeamCreate, TeamPatch

T = TypeVar("T")
_SPLIT: Final = re.compile(r"[\s,]+")
_LIMITS: Final = ("rpm", "tpm", "max_parallel")
# The rotation form's choices of grace for the old secret, in seconds; the API's default first.
GRACES: Final = ((86400, "24 hours"), (3600, "1 hour"), (7 * 86400, "7 days"), (0, "none: it stops now"))


def _text(form: Mapping[str, str], name: str) -> str | None:
    value = form.get(name, "").strip()
    return value or None


def _number(form: Mapping[str, str], name: str, kind: type[int] | type[float]) -> int | float | None:
    text = _text(form, name)
    if text is None:
        return None
    try:
        return kind(text)
    except ValueError:
        raise bad_request(f"'{name}' must be a number, not {text[:40]!r}", name) from None


def _items(form: Mapping[str, str], name: str) -> list[str] | None:
    text = _text(form, name)
    return [item for item in _SPLIT.split(text) if item] if text else None


def _limits(form: Mapping[str, str]) -> dict[str, int | float] | None:
    found = {name: value for name in _LIMITS if (value := _number(form, name, int)) is not None}
    return found or None


def _budget(form: Mapping[str, str]) -> dict[str, object] | None:
    amount = _number(form, "budget_amount", float)
    if amount is None:
        return None
    return {
        "amount": amount,
        "currency": form.get("budget_currency", "USD"),
        "period": form.get("budget_period", "month"),
    }


def _expiry(form: Mapping[str, str]) -> str | None:
    # <input type="datetime-local"> sends "2026-03-01T12:00" with no zone: the page says UTC.
    text = _text(form, "expires_at")
    if text is None:
        return None
    return text if text.endswith("Z") or "+" in text[10:] else text + ("Z" if len(text) > 10 else "T00:00Z")


def _decode(fields: dict[str, object], kind: type[T]) -> T:
    return decode_body(msgspec.json.encode(fields), kind)


def key_fields(form: Mapping[str, str]) -> dict[str, object]:
    return {
        "name": form.get("name", "").strip(),
        "team_id": _text(form, "team_id"),
        "owner": _text(form, "owner"),
        "models": _items(form, "models"),
        "limits": _limits(form),
        "budget": _budget(form),
        "expires_at": _expiry(form),
        "tags": _items(form, "tags"),
    }


def key_create(form: Mapping[str, str]) -> KeyCreate:
    return _decode(key_fields(form), KeyCreate)


def key_patch(form: Mapping[str, str]) -> KeyPatch:
    return _decode(key_fields(form), KeyPatch)


def team_fields(form: Mapping[str, str]) -> dict[str, object]:
    return {
        "name": form.get("name", "").strip(),
        "models": _items(form, "models"),
        "limits": _limits(form),
        "budget": _budget(form),
    }


def team_create(form: Mapping[str, str]) -> TeamCreate:
    return _decode(team_fields(form), TeamCreate)


def team_patch(form: Mapping[str, str]) -> TeamPatch:
    return _decode(team_fields(form), TeamPatch)


def key_rotate(form: Mapping[str, str]) -> KeyRotate:
    """The grace chosen, or the seconds typed in `grace_other_s` (which win when given)."""
    other = _number(form, "grace_other_s", float)
    grace = other if other is not None else _number(form, "grace_s", float)
    return _decode({} if grace is None else {"grace_s": grace}, KeyRotate)


def admin_key_create(form: Mapping[str, str]) -> AdminKeyCreate:
    return _decode(
        {
            "name": form.get("name", "").strip(),
            "role": form.get("role", ""),
            "teams": _items(form, "teams"),
            "expires_at": _expiry(form),
        },
        AdminKeyCreate,
    )
