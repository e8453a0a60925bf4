"""`${VAR}` and `${VAR:-default}` in the YAML tree, replaced from the environment before it is
decoded; an unset variable without a default is an error at the value's path."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from gateway.config.convert import join

_VAR: Final = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def interpolate(node: Any, env: Mapping[str, str], path: str, errors: list[str]) -> Any:
    """Replace `${VAR}` and `${VAR:-default}` in every string of a YAML tree; `$$` is a `$`.

    A variable that is unset and has no default is reported in `errors` under the value's path.
    """
    if isinstance(node, str):

        def substitute(match: re.Match[str]) -> str:
            if match.group(0) == "$$":
                return "$"
            name, default = match.group(1), match.group(2)
            value = env.get(name)
            if default is not None and not value:
                return default  # as in the shell, `:-` also replaces a variable set to ""
            if value is not None:
                return value
            errors.append(f"{path}: environment variable {name} is not set (use ${{{name}:-default}})")
            return ""

        return _VAR.sub(substitute, node)
    if isinstance(node, dict):
        return {key: interpolate(value, env, join(path, str(key)), errors) for key, value in node.items()}
    if isinstance(node, list):
        return [interpolate(value, env, join(path, i), errors) for i, value in enumerate(node)]
    return node
