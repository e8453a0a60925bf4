"""What a msgspec type allows at a path: field names, tags and Literal values, for error hints.

msgspec's errors say what is wrong ("Object contains unknown field `team`", "Invalid value
'gemni'") but not what would be right; the config loader and the admin API add that from here.
"""

from __future__ import annotations

import difflib
from typing import Any

import msgspec.inspect as inspect

Steps = list[str | int]


def _at(info: inspect.Type, steps: Steps, node: Any = None) -> list[inspect.Type]:
    """The types found at `steps` below `info` (a union may give several). `node`, the value
    being decoded, picks a tagged union's member by its tag when it has one."""
    if isinstance(info, inspect.Metadata):
        return _at(info.type, steps, node)
    if isinstance(info, inspect.UnionType):
        members = list(info.types)
        if isinstance(node, dict):
            chosen: list[inspect.Type] = [
                t
                for t in members
                if isinstance(t, inspect.StructType) and t.tag_field and node.get(t.tag_field) == t.tag
            ]
            members = chosen or members
        return [found for member in members for found in _at(member, steps, node)]
    if not steps:
        return [info]
    step, rest = steps[0], steps[1:]
    child = _child(node, step)
    if isinstance(info, inspect.StructType) and isinstance(step, str):
        return [found for f in info.fields if f.encode_name == step for found in _at(f.type, rest, child)]
    if isinstance(info, inspect.DictType):
        return _at(info.value_type, rest, child)
    if isinstance(info, inspect.ListType) and isinstance(step, int):
        return _at(info.item_type, rest, child)
    return []


def _child(node: Any, step: str | int) -> Any:
    if isinstance(node, dict) and isinstance(step, str):
        return node.get(step)
    if isinstance(node, list) and isinstance(step, int) and step < len(node):
        return node[step]
    return None


def choices_at(kind: Any, steps: Steps) -> list[str]:
    """The values allowed at `steps` below `kind`: a tagged union's tags (when `steps` ends at
    its tag field) or a Literal's values; [] when the path leads to neither."""
    parents = _at(inspect.type_info(kind), steps[:-1]) if steps else []
    tagged = [t for t in parents if isinstance(t, inspect.StructType) and t.tag_field == steps[-1]]
    if tagged:
        return [str(t.tag) for t in tagged]
    found = _at(inspect.type_info(kind), steps)
    return [str(value) for info in found if isinstance(info, inspect.LiteralType) for value in info.values]


def fields_at(kind: Any, steps: Steps, node: Any = None) -> list[str]:
    """The field names of the Struct at `steps` below `kind`: for a union, of the member `node`
    (the value decoded) is tagged with, else of every member."""
    names: dict[str, None] = {}
    for info in _at(inspect.type_info(kind), steps, node):
        if isinstance(info, inspect.StructType):
            names.update(dict.fromkeys(f.encode_name for f in info.fields))
    return list(names)


def hint(value: str, options: list[str]) -> str:
    """ " (expected one of: a, b; did you mean 'a'?)", or "" without options."""
    if not options:
        return ""
    text = f" (expected one of: {', '.join(options)})"
    closest = difflib.get_close_matches(value, options, n=1)
    return text + f"; did you mean '{closest[0]}'?" if closest else text
