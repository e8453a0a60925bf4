"""Fields a front door lets go of for a translated upstream because they only tune or optimise:
the one rule every door (Messages, Responses, Chat) follows for what the gateway does not model.

- A same-format upstream gets every field as the client sent it, unknown ones included.
- A translated upstream does not get fields that only tune or optimise the call (context
  management, prompt-cache keys and hints, service tier, metadata, store, include lists...): the
  door names them in the request's `dropped` (short paths, each once, in the order met), and the
  gateway names them in the answer's `x-tollway-dropped-fields` header and counts them in
  `tollway_dropped_fields_total{door, field}`. A field the door does not know at all is dropped
  the same way: a door never refuses a request for a field it does not know.
- Fields whose loss would change what the client gets (`n` > 1, a schema the target cannot
  enforce, logprobs, `top_k`, server tools...) are not dropped: the door lists them as
  `native_only` and a translated upstream refuses the request with a 400 naming field and
  provider.

Pure data and two helpers; the header and the metric are set by gateway/pipeline/core.py.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final
from urllib.parse import quote

HEADER: Final = "x-tollway-dropped-fields"
# The types of tools (hosted ones: `web_search`, `mcp`...) a translated upstream was not given.
TOOLS_HEADER: Final = "x-tollway-dropped-tools"
# The metric's `field` label for a dropped name outside TUNE_ONLY: the label set stays bounded.
OTHER: Final = "other"
# The header names what the client sent (an unknown field, a tool type): each name is cut to
# MAX_NAME characters and the value to about MAX_HEADER bytes, so a client cannot make the answer's
# headers as large as its body.
MAX_NAME: Final = 64
MAX_HEADER: Final = 1024
# Characters a name keeps as they are: those of field paths (`tools[0].cache_control`). Any other
# (a control character, a space, a comma, `%`, non-ASCII) is percent-escaped as UTF-8: a newline
# in a header would be refused by the server as the answer is written.
_KEPT: Final = "[]._-:/*@+="

TUNE_ONLY: Final = frozenset(
    {
        # Anthropic Messages
        "cache_control",  # prompt-cache breakpoints (on any block, tool or the top level)
        "context_management",  # server-side edits of the context (clearing, compaction)
        "container",  # a code-execution container id: nothing without Anthropic's server tools
        "service_tier",
        "speed",
        "inference_geo",
        "diagnostics",
        "defer_loading",  # tool search's lazy loading: the tool is simply there from the start
        "eager_input_streaming",
        # OpenAI Chat Completions and Responses
        "metadata",
        "store",
        "include",
        "prompt_cache_key",
        "prompt_cache_options",
        "prompt_cache_retention",
        "safety_identifier",
        "stream_options",
        "truncation",
        "text.verbosity",
        "reasoning.summary",
        "max_tool_calls",
        "personality",
    }
)
# Dropped names the metric labels besides TUNE_ONLY: a Responses request whose tools were all
# hosted ones goes without `tools` and `tool_choice` (the tools named in TOOLS_HEADER); a
# `reasoning_effort` goes to no target without a control for it (gateway/formats/dialects.py).
_ALSO_LABELLED: Final = frozenset({"tools", "tool_choice", "reasoning_effort"})


def metric_label(field: str) -> str:
    """The `field` label of a dropped name: the name when it is a known one, else OTHER."""
    return field if field in TUNE_ONLY or field in _ALSO_LABELLED else OTHER


def header_value(dropped: Iterable[str]) -> str:
    """The `x-tollway-dropped-fields` (or `-tools`) value: the names, comma-separated, each
    percent-escaped where it is not plain (a client's own field or tool names can hold anything)
    and cut to MAX_NAME characters; past MAX_HEADER bytes the rest are counted, not named
    (`+N more`)."""
    names = list(dropped)
    parts: list[str] = []
    size = 0
    for n, name in enumerate(names):
        part = quote(name[:MAX_NAME], safe=_KEPT)
        if parts and size + len(part) + 1 > MAX_HEADER:
            parts.append(f"+{len(names) - n} more")
            break
        parts.append(part)
        size += len(part) + 1
    return ",".join(parts)


def note(dropped: list[str], field: str) -> None:
    """Add `field` to a door's dropped list unless it is there already (the list stays short:
    twenty tools with `cache_control` name it once)."""
    if field not in dropped:
        dropped.append(field)
