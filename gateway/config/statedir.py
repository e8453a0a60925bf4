"""Where the gateway keeps what it writes by default: the embedded default's SQLite file, the
accounting spool and the imported price file. Under systemd that is $STATE_DIRECTORY (the unit's
StateDirectory=); elsewhere the XDG state directory, so that starting `tollway serve` in some
folder leaves nothing behind in it; ./.tollway/ only when there is no usable home either."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Final

APP: Final = "tollway"
FALLBACK: Final = Path(".tollway")
SPOOL: Final = "tollway-spool"
DATABASE: Final = "tollway.sqlite"


def locate(env: Mapping[str, str]) -> Path:
    """The state directory for this environment (not created here)."""
    systemd = env.get("STATE_DIRECTORY", "")
    if systemd:
        # systemd passes one path per StateDirectory= entry, colon-separated: the first is ours.
        return Path(systemd.split(":")[0])
    xdg = env.get("XDG_STATE_HOME", "")
    if xdg and Path(xdg).is_absolute():  # the XDG spec: a relative value is to be ignored
        return Path(xdg) / APP
    home = env.get("HOME", "")
    if home and os.access(home, os.W_OK):
        return Path(home) / ".local" / "state" / APP
    return FALLBACK


def prepare(env: Mapping[str, str]) -> Path:
    """The state directory, created (private to the user) when missing."""
    directory = locate(env)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    return directory
