"""Which rate-limited subjects a request touches: its key, its team, its end user (the `user`
field, per key), its logical model and its provider target, each with its limits (gateway/policy/limits.py
enforces them). Limits come from the key and team records and from the config's `limits:` under a
model, a provider, and `limits.end_user`.
"""

from __future__ import annotations

from typing import Final

import msgspec

from gateway.config.schema import Config, Limits
from gateway.policy.auth import Principal
from gateway.policy.budgetpolicy import end_user_id

CHARS_PER_TOKEN: Final = 4  # the usual rough ratio for English text and JSON


class Subject(msgspec.Struct, frozen=True):
    """Something a limit applies to. `key` is unique across kinds; `label` names it in errors."""

    key: str
    label: str
    limits: Limits


def key_subject(principal: Principal, limits: Limits) -> Subject:
    return Subject(f"key:{principal.key_id}", f"key '{principal.name}'", limits)


def team_subject(team_id: str, limits: Limits) -> Subject:
    return Subject(f"team:{team_id}", f"team '{team_id}'", limits)


def user_subject(key_id: str, user: str, limits: Limits) -> Subject:
    """An end user (the request's `user` field), scoped to the key that sent it: two tenants'
    "alice" are two people."""
    return Subject(f"user:{key_id}:{end_user_id(user)}", f"end user '{user[:128]}'", limits)


def model_subject(model: str, limits: Limits) -> Subject:
    return Subject(f"model:{model}", f"model '{model}'", limits)


def provider_subject(provider: str, limits: Limits) -> Subject:
    return Subject(f"provider:{provider}", f"the gateway's quota for provider '{provider}'", limits)


def estimate_tokens(prompt_bytes: int, max_output_tokens: int) -> int:
    """A request's tokens before the call, for `tpm`: its body at ~4 bytes per token plus the most
    it may generate (what OpenAI itself charges against a TPM limit up front)."""
    return prompt_bytes // CHARS_PER_TOKEN + max_output_tokens


class LimitPolicy:
    """Which subjects a request touches, and their limits, from the config and the caller's key."""

    def __init__(self, config: Config) -> None:
        self._models = {
            name: model_subject(name, model.limits)
            for name, model in config.models.items()
            if model.limits is not None
        }
        self._providers = {
            name: provider_subject(name, provider.limits)
            for name, provider in config.providers.items()
            if provider.limits is not None
        }
        self._end_user = config.limits.end_user

    def provider_quotas(self) -> dict[str, Subject]:
        """The gateway's own quota per provider name (admitted per upstream call)."""
        return dict(self._providers)

    def subjects(
        self, principal: Principal, model: str, provider: str | None, user: str | None
    ) -> list[Subject]:
        """The limited subjects of one request (possibly none)."""
        found: list[Subject] = []
        if principal.limits is not None:
            found.append(key_subject(principal, principal.limits))
        if principal.team_id is not None and principal.team_limits is not None:
            found.append(team_subject(principal.team_id, principal.team_limits))
        if user and self._end_user is not None:
            found.append(user_subject(principal.key_id, user, self._end_user))
        model_subject_ = self._models.get(model)
        if model_subject_ is not None:
            found.append(model_subject_)
        if provider is not None:
            provider_subject_ = self._providers.get(provider)
            if provider_subject_ is not None:
                found.append(provider_subject_)
        return found
