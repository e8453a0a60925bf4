"""Prism (pinned in tests/support/npm/, installed by tests/support/npm_clients.py) as a real upstream made from
OpenAI's published OpenAPI description (../shared/reference/openai-openapi-2026-08.yaml).

Prism answers every operation of the description with data generated from its schemas (`-d`:
random ids, so objects do not collide) and refuses, with a 422, a request that does not match it:
a missing or mistyped parameter, a body of the wrong shape, no bearer key. So a call that passes
through the gateway and gets a 2xx went upstream as the description says it should.

The description is cut to the paths under test and the components they reach (the whole of it
takes Prism most of a minute to load; the cut, a few seconds). The cut is kept in the repository
(`CUT`), since a clone in CI need not have ../shared beside it: `python -m tests.support.prism` makes it
again from the description.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import yaml

from tests.support import npm_clients, paths

ROOT = paths.REPO
DESCRIPTION = ROOT.parent / "shared" / "reference" / "openai-openapi-2026-08.yaml"
CUT = paths.FIXTURES / "openai" / "openapi-objects.json"
PREFIXES = ("/files", "/uploads", "/batches", "/chat/completions")


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def cut_description(prefixes: Iterable[str] = PREFIXES) -> dict[str, Any]:
    """The description with only the paths under `prefixes` and the components they reach."""
    full = yaml.load(DESCRIPTION.read_text(encoding="utf-8"), Loader=yaml.CSafeLoader)
    wanted = tuple(prefixes)
    paths = {path: ops for path, ops in full["paths"].items() if path.startswith(wanted)}
    components: dict[str, dict[str, Any]] = {}
    pending = list(_refs(paths))
    while pending:
        ref = pending.pop()
        _, _, section, name = ref.split("/", 3)  # "#/components/schemas/Batch"
        if name in components.setdefault(section, {}):
            continue
        value = full["components"][section][name]
        components[section][name] = value
        pending.extend(_refs(value))
    for name in ("securitySchemes",):
        if name in full["components"]:
            components[name] = full["components"][name]
    kept = {k: full[k] for k in ("openapi", "info", "servers", "security") if k in full}
    return {**kept, "paths": paths, "components": components}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Prism:
    """A running `prism mock -d`; `url` is its base URL (the description's paths at its root)."""

    def __init__(self, workdir: Path) -> None:
        prism = npm_clients.install() / "node_modules" / ".bin" / "prism"
        spec = CUT
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = (workdir / "prism.log").open("wb")
        self._process = subprocess.Popen(
            [str(prism), "mock", "-d", "-h", "127.0.0.1", "-p", str(self.port), str(spec)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"prism exited with {self._process.returncode}")
            try:
                httpx.get(self.url + "/batches", headers={"Authorization": "Bearer x"}, timeout=1.0)
                return
            except httpx.TransportError:
                time.sleep(0.2)
        raise RuntimeError("prism did not start in time")

    def stop(self) -> None:
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._log.close()


if __name__ == "__main__":
    CUT.write_bytes(msgspec.json.format(msgspec.json.encode(cut_description()), indent=1) + b"\n")
    print(f"wrote {CUT}")
