"""Programs from the npm registry that the tests run (Codex CLI, Prism), installed where the tests
find them.

tests/support/npm/package-lock.json pins them, with the registry's integrity hashes. They are installed
with `npm ci` into a cache folder named after the lockfile's digest, outside the work tree (the
Codex package and its native binary are some 400 MB): a second install, or a fresh clone in CI,
finds them there at once, and a changed lockfile gets a folder of its own.

`python -m tests.support.npm_clients` installs them (`.ci/run` does, before the tests) and prints where.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Final

from tests.support import paths

_SPEC: Final = paths.NPM
_FILES: Final = ("package.json", "package-lock.json")


def install_dir() -> Path:
    """The cache folder for the lockfile as it is now."""
    digest = hashlib.sha256((_SPEC / "package-lock.json").read_bytes()).hexdigest()[:16]
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "tollway" / f"npm-{digest}"


def codex_cli() -> Path:
    """The `codex` command as npm installs it (its launcher, which runs the native binary)."""
    return install_dir() / "node_modules" / ".bin" / "codex"


def _installed() -> bool:
    bins = install_dir() / "node_modules" / ".bin"
    return all((bins / name).exists() for name in ("codex", "prism"))


def install() -> Path:
    """Installs the pinned clients unless they already are; the folder they are in."""
    target = install_dir()
    if _installed():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # Installed beside the target and renamed into place: an install cut short is never taken
    # for a finished one.
    staging = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
    try:
        for name in _FILES:
            shutil.copy(_SPEC / name, staging / name)
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--ignore-scripts", "--loglevel=error"],
            cwd=staging,
            check=True,
            stdin=subprocess.DEVNULL,
        )
        try:
            staging.rename(target)
        except OSError:
            if not _installed():  # else another test process installed it meanwhile
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


if __name__ == "__main__":
    folder = install()
    version = subprocess.run(
        [str(codex_cli()), "--version"], capture_output=True, text=True, check=True
    ).stdout.strip()
    print(f"{version} in {folder}", file=sys.stderr)
