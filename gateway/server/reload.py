"""Reloading the configuration in place (SIGHUP): one reload at a time, a refused config leaving
the previous one serving, and the swap of the runtime that new requests get. `tollway serve`
only wires the signal to `Reloader.request`; what a reload does is all here."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import msgspec
from aiohttp import web

from gateway.config.load import ConfigError, load_config
from gateway.config.schema import Config
from gateway.server.app import HOLDER, SHARED
from gateway.server.runtime import build_runtime
from gateway.server.sdnotify import Notifier

log = logging.getLogger("tollway")


async def reload(app: web.Application, config: Config) -> None:
    """Swap in a runtime built from `config` for new requests; the old one closes once the
    requests it serves have finished. Settings read only at start-up (server address, storage,
    alerts) keep their old values until a restart: a warning names any that changed."""
    holder = app[HOLDER]
    old = holder.current
    assert old is not None
    for name in ("server", "storage", "alerts"):
        before, after = getattr(old.config, name), getattr(config, name)
        if before != after and not (name == "server" and _only_master_key_changed(before, after)):
            log.warning("reload: changes to '%s' take effect at the next restart", name)
    shared = app[SHARED]
    try:
        shared.ring.replace_from_config(config)
        holder.current = await build_runtime(config, shared)
    except BaseException:
        shared.metrics.config_loaded(False)
        raise
    shared.metrics.config_loaded(True)
    await old.aclose(drain_s=config.server.shutdown_grace_s)


def reload_refused(app: web.Application) -> None:
    """Note that a reload was refused (its config has errors): the previous one still serves."""
    app[SHARED].metrics.config_loaded(False)


def _only_master_key_changed(before: object, after: object) -> bool:
    return msgspec.structs.replace(before, master_key=None) == msgspec.structs.replace(after, master_key=None)  # type: ignore[type-var]


class Reloader:
    """Reloads `app` from the file at `source` each time one is requested, one after another:
    a second SIGHUP during a reload waits its turn, so two runtimes are never built at once."""

    def __init__(self, app: web.Application, source: Path, notifier: Notifier) -> None:
        self._app = app
        self._source = source
        self._notifier = notifier
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()  # held so that none is collected mid-run

    def request(self) -> None:
        """Start a reload (the SIGHUP handler: it must not block)."""
        task = asyncio.create_task(self.run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def run(self) -> None:
        async with self._lock:
            self._notifier.reloading()
            try:
                fresh = load_config(self._source)
            except ConfigError as err:
                reload_refused(self._app)
                log.error(
                    "reload refused: the config has errors; still serving the previous one",
                    extra={"fields": {"errors": err.errors, "config": str(self._source)}},
                )
            else:
                await reload(self._app, fresh)
                log.info(
                    "reloaded", extra={"fields": {"models": list(fresh.models), "config": str(self._source)}}
                )
            self._notifier.ready()
