"""One YAML entry into its Struct, with every bad field reported at its path (`providers.x.kind:
...`) and a hint of what was meant, rather than msgspec's first error only."""

from __future__ import annotations

import copy
import re
from typing import Any, Final, TypeVar

import msgspec

from gateway.config.hints import choices_at, fields_at, hint

T = TypeVar("T")

_MSGSPEC_PATH: Final = re.compile(r" - at `\$(.*)`$")


def join(path: str, key: str | int) -> str:
    """`path` one step further down: `a.b` for a key, `a[1]` for an index."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)


_PATH_STEP: Final = re.compile(r"\.([^.\[]+)|\[(\d+)\]")
_UNKNOWN_FIELD: Final = re.compile(r"^Object contains unknown field `([^`]+)`$")
_MISSING_FIELD: Final = re.compile(r"^Object missing required field `([^`]+)`$")
# Bounds the retries below: no config entry has anywhere near this many fields.
_MAX_ERRORS_PER_ENTRY: Final = 32


def _split_error(exc: msgspec.ValidationError) -> tuple[str, list[str | int]]:
    """msgspec's message and the path it names, as keys and indexes relative to the entry."""
    message = str(exc)
    match = _MSGSPEC_PATH.search(message)
    if match is None:
        return message, []
    steps: list[str | int] = [key if key else int(index) for key, index in _PATH_STEP.findall(match.group(1))]
    return message[: match.start()], steps


_INVALID_VALUE: Final = re.compile(r"^Invalid (?:enum )?value '(.*)'$")


def _explain(message: str, kind: type[Any], steps: list[str | int]) -> str:
    """msgspec's "Invalid value 'gemni'", with the values allowed there and the closest one."""
    invalid = _INVALID_VALUE.match(message)
    if invalid is None:
        return message
    return message + hint(invalid.group(1), choices_at(kind, steps))


def _render(path: str, steps: list[str | int]) -> str:
    for step in steps:
        path = join(path, step)
    return path or "(top level)"


def _drop(node: Any, steps: list[str | int]) -> bool:
    """Remove the value at `steps` from a dict tree; False when it cannot (a list item, say)."""
    for step in steps[:-1]:
        try:
            node = node[step]
        except (KeyError, IndexError, TypeError):
            return False
    if steps and isinstance(node, dict) and isinstance(steps[-1], str) and steps[-1] in node:
        del node[steps[-1]]
        return True
    return False


def convert(node: Any, kind: type[T], path: str, errors: list[str]) -> T | None:
    """Validate one entry into its Struct, reporting every bad field, not just the first.

    msgspec stops at the first error, so after each one the offending key is dropped from a copy
    (the field then takes its default) and validation runs again, until it passes or an error
    cannot be stepped over (a required field, a list item). An entry that passes only with keys
    dropped is still returned, so that the checks across entries (a target's provider) see it
    too; the errors already reported keep the config from being used.
    """
    attempt = node
    dropped: set[str] = set()
    for _ in range(_MAX_ERRORS_PER_ENTRY):
        try:
            # strict=False: values that came through ${VAR} are strings even where a number is meant.
            converted = msgspec.convert(attempt, kind, strict=False)
        except msgspec.ValidationError as exc:
            message, steps = _split_error(exc)
            unknown = _UNKNOWN_FIELD.match(message)
            missing = _MISSING_FIELD.match(message)
            target = [*steps, unknown.group(1)] if unknown else steps
            if missing and _render(path, [*steps, missing.group(1)]) in dropped:
                return None  # we dropped it ourselves, after reporting why
            if unknown:
                known = hint(unknown.group(1), fields_at(kind, steps, attempt))
                errors.append(f"{_render(path, target)}: unknown field{known}")
            else:
                errors.append(f"{_render(path, steps)}: {_explain(message, kind, steps)}")
            if attempt is node:
                attempt = copy.deepcopy(node)
            if not _drop(attempt, target):
                return None
            dropped.add(_render(path, target))
        else:
            return converted
    return None


def section_map(node: Any, kind: type[T], path: str, errors: list[str]) -> dict[str, T]:
    """A section of named entries (`providers:`, `models:`...), each converted on its own so that
    one bad entry neither hides the errors of the others nor drops them."""
    if node is None:
        return {}
    if not isinstance(node, dict):
        errors.append(f"{path}: expected a mapping of names to entries")
        return {}
    result: dict[str, T] = {}
    for name, entry in node.items():
        converted = convert(entry, kind, join(path, str(name)), errors)
        if converted is not None:
            result[str(name)] = converted
    return result


def section(tree: dict[str, Any], name: str) -> Any:
    """A top-level section of the tree; an empty one (`server:`) means its defaults."""
    value = tree.get(name)
    return {} if value is None else value
