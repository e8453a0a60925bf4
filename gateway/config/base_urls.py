"""What each provider kind's `base_url` is, and the version suffix it must not carry.

Some kinds' adapters add the API version themselves (Anthropic's `{base_url}/v1/messages`), so a
`base_url` copied with `/v1` on its end (a LiteLLM habit) would send `/v1/v1/messages`. Where the
suffix can only be that mistake, it is taken off with a warning; where the version belongs in
`base_url` (OpenAI's `/v1`, Gemini's `/v1beta`) nothing is touched.
"""

from __future__ import annotations

import logging
from typing import Any, Final

log = logging.getLogger("tollway")

# kind -> the path suffixes its adapter appends itself: a base_url ending in one is cut back.
# Ollama's own OpenAI-compatible `/v1` belongs to `kind: openai`; `kind: ollama` is the native
# /api/chat at the server root, so `/v1` there is the root plus a mistake too.
REDUNDANT_SUFFIXES: Final[dict[str, tuple[str, ...]]] = {
    "anthropic": ("/v1",),
    "cohere": ("/v1", "/v2"),
    "ollama": ("/v1",),
    "vertex": ("/v1",),
    "vertex-anthropic": ("/v1",),
}


def trimmed(kind: str, base_url: str) -> str | None:
    """The base_url without a suffix its kind's adapter adds itself, or None when it has none."""
    bare = base_url.rstrip("/")
    for suffix in REDUNDANT_SUFFIXES.get(kind, ()):
        if bare.endswith(suffix):
            return bare[: -len(suffix)]
    return None


def trim_base_urls(providers: Any) -> None:
    """Cut, in place in the YAML tree of `providers:`, each redundant suffix, logging a warning
    that names the provider and the base_url to write instead."""
    if not isinstance(providers, dict):
        return
    for name, entry in providers.items():
        if not isinstance(entry, dict):
            continue
        kind, base_url = entry.get("kind"), entry.get("base_url")
        if not isinstance(kind, str) or not isinstance(base_url, str):
            continue
        fixed = trimmed(kind, base_url)
        if fixed is None:
            continue
        entry["base_url"] = fixed
        # The URL itself is not logged: it may carry credentials (https://user:pass@host).
        suffix = base_url.rstrip("/")[len(fixed) :]
        log.warning(
            "providers.%s.base_url: kind %s adds %s itself, so the %s the base_url ends with is "
            "dropped (remove it to silence this warning)",
            name,
            kind,
            suffix,
            suffix,
            extra={"fields": {"provider": str(name), "kind": kind, "dropped": suffix}},
        )
