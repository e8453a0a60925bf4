"""`tollway serve | check-config`: the command line."""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib.metadata
import ipaddress
import logging
import os
import signal
import sys
from pathlib import Path

import uvloop
from aiohttp import web

from gateway.accounting.pricing import PriceFileError, load_override
from gateway.cli.admin import add_admin_commands, run_admin
from gateway.cli.migrate import add_migrate_commands
from gateway.config import statedir
from gateway.config.load import ConfigError, load_config, resolve_config_path
from gateway.config.schema import Config
from gateway.observability import logs
from gateway.server.app import build_app
from gateway.server.connections import guard_connections
from gateway.server.listen import BACKLOG, bind_listeners, cannot_listen_reason
from gateway.server.reload import Reloader
from gateway.server.sdnotify import Notifier
from gateway.server.supervisor import Supervisor

log = logging.getLogger("tollway")

# Young-generation threshold raised from 700: see serve().
GC_THRESHOLDS = (10_000, 50, 100)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _print_config_errors(err: ConfigError) -> None:
    print(f"{err.source}: {len(err.errors)} error(s)", file=sys.stderr)
    for line in err.errors:
        print(f"  {line}", file=sys.stderr)


def _load_checked(path: Path) -> Config | None:
    """The config, and the imported price file it points at read once to check it; None (with
    every error printed) when either is unusable."""
    try:
        config = load_config(path)
    except ConfigError as err:
        _print_config_errors(err)
        return None
    try:
        load_override(config.pricing)
    except PriceFileError as exc:
        print(f"{path}: pricing.file: {exc}", file=sys.stderr)
        return None
    return config


async def serve(config: Config, source: Path, host: str, port: int, reuse_port: bool = False) -> int:
    """Serve until SIGTERM or SIGINT, then finish in-flight requests (up to
    server.shutdown_grace_s), flush what is queued, and stop; 0. 1 when it cannot listen."""
    notifier = Notifier()
    try:
        listeners = bind_listeners(host, port, reuse_port=reuse_port)
    except OSError as exc:
        report_cannot_listen(notifier, http_address(host, port), exc)
        return 1
    app = build_app(config)
    # handler_cancellation: a client that hangs up cancels its handler, which closes the upstream
    # connection, so the provider stops generating (and billing) an answer nobody reads.
    runner = web.AppRunner(
        app,
        handler_cancellation=True,
        access_log=None,
        shutdown_timeout=config.server.shutdown_grace_s,
        keepalive_timeout=config.server.keepalive_timeout_s,
    )
    watchdog = asyncio.create_task(notifier.watchdog())  # pings through start-up and the drain
    try:
        await runner.setup()
        guard_connections(runner, config.server)
        for sock in listeners:
            await web.SockSite(runner, sock, backlog=BACKLOG).start()
        address = http_address(host, listeners[0].getsockname()[1])
        await _serve_until_stopped(config, source, app, notifier, address)
    finally:
        # Early only after a failure: what started must still be stopped here, since left to
        # asyncio.run, a Redis loop that swallows its cancellation would keep the process alive.
        await runner.cleanup()
        watchdog.cancel()
        notifier.close()
        for sock in listeners:
            sock.close()
    log.info("stopped")
    return 0


def http_address(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def report_cannot_listen(notifier: Notifier, address: str, exc: OSError) -> None:
    """One log line naming the address, and the same to systemd (STATUS and ERRNO)."""
    reason = cannot_listen_reason(exc)
    log.error("cannot listen on %s: %s", address, reason, extra={"fields": {"address": address}})
    errno_line = f"\nERRNO={exc.errno}" if exc.errno else ""
    notifier.send(f"STATUS=cannot listen on {address}: {reason}{errno_line}")
    notifier.close()


async def _serve_until_stopped(
    config: Config, source: Path, app: web.Application, notifier: Notifier, address: str
) -> None:
    log.info(
        "listening",
        extra={
            "fields": {
                "address": address,
                "models": list(config.models),
                "config": str(source),
                "auth": "master_key" if config.server.master_key else "none",
                "state_directory": str(statedir.locate(os.environ).absolute()),
            }
        },
    )
    # Everything built so far lives as long as the process: freeze it out of the collector's
    # scans, and collect the young generation less often. With the defaults, full collections
    # over the many small objects of hundreds of open streams paused the loop for 23-100 ms
    # (measured with bench --streams), which is what made 512 concurrent streams stall.
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    notifier.ready(f"serving {len(config.models)} models on {address}")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, Reloader(app, source, notifier).request)
    await stop.wait()
    notifier.stopping()
    log.info("stopping", extra={"fields": {"grace_s": config.server.shutdown_grace_s}})


def cmd_serve(args: argparse.Namespace) -> int:
    source = resolve_config_path(args.config, os.environ)
    config = _load_checked(source)
    if config is None:
        return 1
    try:  # before anything opens the SQLite file or the spool that default to it
        statedir.prepare(os.environ)
    except OSError as exc:
        print(f"cannot create the state directory: {exc}", file=sys.stderr)
        return 1
    host = args.host or config.server.host
    port = config.server.port if args.port is None else args.port
    if not config.server.master_key and not is_loopback(host):
        print(
            f"refusing to serve on {host} without a master key: anyone who can reach it could spend "
            'your provider credit.\nSet one, e.g. `server: {master_key: "${TOLLWAY_MASTER_KEY}"}` '
            "in the config and `export TOLLWAY_MASTER_KEY=$(openssl rand -hex 32)`, or serve on "
            "127.0.0.1.",
            file=sys.stderr,
        )
        return 2
    if args.workers > 1:
        worker_args = ["serve", "--config", str(source), "--host", host, "--port", str(port), "--reuse-port"]
        notifier = Notifier()
        try:  # a port the workers could not share: say so once, rather than restart them forever
            for sock in bind_listeners(host, port, reuse_port=True):
                sock.close()
        except OSError as exc:
            report_cannot_listen(notifier, http_address(host, port), exc)
            return 1
        supervisor = Supervisor(worker_args, args.workers, config.server.shutdown_grace_s, notifier)
        return uvloop.run(supervisor.run())
    return uvloop.run(serve(config, source, host, port, reuse_port=args.reuse_port))


def cmd_check_config(args: argparse.Namespace) -> int:
    path = Path(args.file)
    config = _load_checked(path)
    if config is None:
        return 1
    print(f"{path}: ok ({len(config.providers)} providers, {len(config.models)} models)")
    return 0


def version() -> str:
    """The installed distribution's version; "unknown" when run from a tree that was never installed."""
    try:
        return importlib.metadata.version("tollway")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="tollway", description="Tollway, a self-hosted LLM gateway.")
    top.add_argument("--version", action="version", version=f"tollway {version()}")
    commands = top.add_subparsers(dest="command", required=True)
    serve_cmd = commands.add_parser("serve", help="serve the gateway")
    add_config_option(serve_cmd)
    serve_cmd.add_argument("--host", help="address to listen on (overrides server.host)")
    serve_cmd.add_argument("--port", type=int, help="port to listen on (overrides server.port; 0 picks one)")
    serve_cmd.add_argument(
        "--workers", type=int, default=1, help="processes sharing the port (SO_REUSEPORT), under a supervisor"
    )
    serve_cmd.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)
    serve_cmd.set_defaults(run=cmd_serve)  # after add_config_option, which sets the admin default
    check = commands.add_parser("check-config", help="validate a config file and list every error")
    check.add_argument("file")
    check.set_defaults(run=cmd_check_config)
    add_admin_commands(commands, add_config_option)
    add_migrate_commands(commands)
    return top


def add_config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        help="config file (default: $TOLLWAY_CONFIG, else config/tollway.yaml, else the built-in demo)",
    )
    parser.set_defaults(run=cmd_admin)


def cmd_admin(args: argparse.Namespace) -> int:
    try:
        config = load_config(resolve_config_path(args.config, os.environ))
    except ConfigError as err:
        _print_config_errors(err)
        return 1
    return run_admin(config, args)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logs.setup()
    code: int = args.run(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
