"""`tollway keys ...`, `tollway teams ...`, `tollway admin-keys ...` and `tollway db migrate`: the
admin operations from a shell on the VM, straight against the configured store (no HTTP call, no
running gateway needed). Every change is announced over Redis when one is configured, so running
gateways apply it at once, and recorded in the audit of admin changes as made by `cli:<user>`.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Final, TypeVar

import msgspec

from gateway.admin import adminkeys
from gateway.admin.identity import AdminIdentity
from gateway.admin.ops import AdminOps
from gateway.cli.backup import BackupError, backup_sqlite
from gateway.cli.reports import add_report_commands, run_audit, run_spend
from gateway.config.schema import CONTENT_POLICIES, ROLES, Config
from gateway.errors.answers import GatewayError, bad_request
from gateway.policy import keyadmin
from gateway.policy.keysync import announce_change_once
from gateway.store import Store, StoreUnavailable, open_store

T = TypeVar("T")


def _csv(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _meta(pairs: list[str] | None) -> dict[str, str] | None:
    if not pairs:
        return None
    found = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise bad_request(f"--meta wants name=value, got {pair!r}")
        found[name] = value
    return found


def _policy_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The fields keys and teams share, from the command line, as the admin API's JSON would be."""
    fields: dict[str, Any] = {}
    if args.models is not None:
        fields["models"] = _csv(args.models)
    if args.regions is not None:
        fields["regions"] = _csv(args.regions)
    limits = {
        k: v
        for k, v in (("rpm", args.rpm), ("tpm", args.tpm), ("max_parallel", args.max_parallel))
        if v is not None
    }
    if limits:
        fields["limits"] = limits
    if args.budget is not None:
        budget: dict[str, Any] = {"amount": args.budget, "currency": args.currency, "period": args.period}
        if args.soft_pct is not None:
            budget["soft_pct"] = args.soft_pct
        fields["budget"] = budget
    if args.meta:
        fields["metadata"] = _meta(args.meta)
    if args.log_content is not None:
        fields["log_content"] = args.log_content
    return fields


def _convert(fields: dict[str, Any], kind: type[T]) -> T:
    try:
        return msgspec.convert(fields, kind)
    except msgspec.ValidationError as exc:
        raise bad_request(str(exc)) from None


def _print(value: object) -> None:
    sys.stdout.write(msgspec.json.format(msgspec.json.encode(value)).decode() + "\n")


def _cli_ops(store: Store) -> tuple[AdminOps, AdminIdentity]:
    """The admin operations as the CLI makes them: an admin (it holds the store's credentials),
    named in the audit of admin changes by the user who ran it. `_run` announces the change."""

    async def announced_by_run() -> None:
        return None

    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        user = "unknown"
    return AdminOps(store, announced_by_run, via="cli"), AdminIdentity(f"cli:{user}", "admin", "master_key")


async def _keys(args: argparse.Namespace, store: Store) -> bool:
    """Runs one `keys` action; True when it changed something."""
    ops, identity = _cli_ops(store)
    if args.action == "create":
        fields = _policy_fields(args) | {"name": args.name}
        for name in ("team_id", "owner"):
            if getattr(args, name) is not None:
                fields[name] = getattr(args, name)
        if args.endpoints is not None:
            fields["endpoints"] = _csv(args.endpoints)
        if args.expires is not None:
            fields["expires_at"] = args.expires
        if args.tags is not None:
            fields["tags"] = _csv(args.tags)
        body = msgspec.json.decode(msgspec.json.encode(fields), type=keyadmin.KeyCreate)
        record, secret = await ops.create_key(identity, body)
        _print(keyadmin.key_view(record, secret))
        print("# the key is shown only this once: store it now", file=sys.stderr)
        return True
    if args.action == "list":
        for record in await store.list_keys(limit=args.limit, after=args.after, team_id=args.team_id):
            _print(keyadmin.key_view(record))
        return False
    if args.action == "show":
        _print(keyadmin.key_view(await ops.get_key(identity, args.id)))
        return False
    if args.action == "rotate":
        record, secret = await ops.rotate_key(identity, args.id, parse_duration(args.grace, "--grace"))
        _print(keyadmin.key_view(record, secret))
        until = record.previous_expires_at
        print(
            "# the new secret is shown only this once; the old one works until "
            + (until.isoformat() if until is not None else "now (no grace)"),
            file=sys.stderr,
        )
        return True
    _print(keyadmin.key_view(await ops.revoke_key(identity, args.id)))
    return True


async def _teams(args: argparse.Namespace, store: Store) -> bool:
    ops, identity = _cli_ops(store)
    if args.action == "create":
        body = msgspec.json.decode(
            msgspec.json.encode(_policy_fields(args) | {"name": args.name}), type=keyadmin.TeamCreate
        )
        _print(keyadmin.team_view(await ops.create_team(identity, body)))
        return True
    if args.action == "list":
        for record in await store.list_teams(limit=args.limit, after=args.after):
            _print(keyadmin.team_view(record))
        return False
    if args.action == "show":
        _print(keyadmin.team_view(await ops.get_team(identity, args.id)))
        return False
    _print(keyadmin.team_view(await ops.delete_team(identity, args.id)))
    return True


async def _admin_keys(args: argparse.Namespace, store: Store) -> bool:
    ops, identity = _cli_ops(store)
    if args.action == "create":
        fields: dict[str, Any] = {"name": args.name, "role": args.role}
        if args.teams is not None:
            fields["teams"] = _csv(args.teams)
        if args.expires is not None:
            fields["expires_at"] = args.expires
        body = msgspec.json.decode(msgspec.json.encode(fields), type=adminkeys.AdminKeyCreate)
        record, secret = await ops.create_admin_key(identity, body)
        _print(adminkeys.admin_key_view(record, secret))
        print("# the admin key is shown only this once: store it now", file=sys.stderr)
        return False  # admin keys are read from the store on each admin request: nothing to announce
    if args.action == "list":
        for found in await ops.list_admin_keys(identity, limit=args.limit, after=args.after):
            _print(adminkeys.admin_key_view(found))
        return False
    _print(adminkeys.admin_key_view(await ops.revoke_admin_key(identity, args.id)))
    return False


_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str, name: str) -> float:
    """`90`, `90s`, `15m`, `24h`, `7d` in seconds; GatewayError 400 naming the option otherwise."""
    number, unit = (text[:-1], text[-1]) if text[-1:] in _UNITS else (text, "s")
    try:
        seconds = float(number) * _UNITS[unit]
    except ValueError:
        raise bad_request(f"{name} wants a duration like 90s, 15m, 24h or 7d, not {text!r}") from None
    if not 0 <= seconds <= 30 * 86400:
        raise bad_request(f"{name} must be from 0 to 30 days")
    return seconds


async def _migrate(args: argparse.Namespace, store: Store) -> bool:
    print(f"schema at version {await store.migrate()}")
    return False


def _backup(config: Config, destination: str) -> int:
    assert config.storage.database_url is not None
    try:
        pages = backup_sqlite(config.storage.database_url, Path(destination))
    except BackupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"copied {pages} pages to {destination}")
    return 0


async def _run(config: Config, action: Callable[[Store], Awaitable[bool]]) -> None:
    assert config.storage.database_url is not None
    store = open_store(config.storage.database_url)
    try:
        await store.migrate()
        if await action(store):
            await announce_change_once(config.storage.redis_target())
    finally:
        await store.close()


def run_admin(config: Config, args: argparse.Namespace) -> int:
    """Run a keys/teams/db/audit/spend command against the configured store; the exit code."""
    if not config.storage.database_url:
        print("no store configured: set storage.database_url in the config", file=sys.stderr)
        return 2
    if args.command == "db" and args.action == "backup":
        return _backup(config, args.file)
    rates: dict[str, float] = {str(name): rate for name, rate in config.budgets.rates.items()}
    commands: dict[str, Callable[[argparse.Namespace, Store], Awaitable[bool]]] = {
        "keys": _keys,
        "teams": _teams,
        "admin-keys": _admin_keys,
        "db": _migrate,
        "audit": run_audit,
        "spend": lambda args, store: run_spend(args, store, rates),
    }
    command = commands[args.command]
    try:
        asyncio.run(_run(config, lambda store: command(args, store)))
    except msgspec.ValidationError as exc:
        print(f"invalid input: {exc}", file=sys.stderr)
        return 1
    except GatewayError as err:
        print(f"error: {err.message}", file=sys.stderr)
        return 1
    except StoreUnavailable as exc:
        print(f"the store is unavailable: {exc}", file=sys.stderr)
        return 1
    return 0


def _policy_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", help="allowed logical models or patterns, comma-separated (default: all)")
    parser.add_argument("--regions", help="allowed provider regions, comma-separated (default: all)")
    parser.add_argument("--rpm", type=int, help="requests per minute")
    parser.add_argument("--tpm", type=int, help="tokens per minute")
    parser.add_argument("--max-parallel", type=int, help="requests in flight at once")
    parser.add_argument("--budget", type=float, help="spend allowed per period")
    parser.add_argument("--currency", default="USD", choices=("USD", "CHF", "EUR"))
    parser.add_argument("--period", default="month", choices=("day", "week", "month", "total"))
    parser.add_argument("--soft-pct", type=int, help="alert when this share of the budget is spent")
    parser.add_argument("--meta", action="append", metavar="NAME=VALUE", help="metadata (repeatable)")
    parser.add_argument(
        "--log-content",
        choices=CONTENT_POLICIES,
        help="what audit records keep of prompts and answers (default: the team's, else logging.content)",
    )


def add_admin_commands(commands: Any, add_config: Callable[[argparse.ArgumentParser], None]) -> None:
    """Register `keys`, `teams`, `db`, `audit` and `spend` on the top-level subparsers."""
    keys = commands.add_parser("keys", help="create, list, show, rotate or revoke virtual keys")
    key_actions = keys.add_subparsers(dest="action", required=True)
    create = key_actions.add_parser("create", help="create a key; prints its secret once")
    create.add_argument("--name", required=True)
    create.add_argument("--team", dest="team_id")
    create.add_argument("--owner")
    create.add_argument("--endpoints", help="chat,embeddings (default: all)")
    create.add_argument("--expires", help="RFC 3339 time, e.g. 2027-01-01T00:00:00Z")
    create.add_argument("--tags", help="default spend tags of its requests, comma-separated")
    _policy_options(create)
    listing = key_actions.add_parser("list")
    listing.add_argument("--team", dest="team_id")
    listing.add_argument("--limit", type=int, default=100)
    listing.add_argument("--after")
    for action in ("show", "revoke"):
        key_actions.add_parser(action).add_argument("id")
    rotate = key_actions.add_parser(
        "rotate", help="a new secret; the old one keeps working for the grace (default 24h)"
    )
    rotate.add_argument("id")
    rotate.add_argument(
        "--grace", default="24h", help="how long the old secret still works: 90s, 15m, 24h, 7d"
    )
    teams = commands.add_parser("teams", help="create, list, show or delete teams")
    team_actions = teams.add_subparsers(dest="action", required=True)
    team_create = team_actions.add_parser("create")
    team_create.add_argument("--name", required=True)
    _policy_options(team_create)
    team_list = team_actions.add_parser("list")
    team_list.add_argument("--limit", type=int, default=100)
    team_list.add_argument("--after")
    for action in ("show", "delete"):
        team_actions.add_parser(action).add_argument("id")
    admin_keys = commands.add_parser(
        "admin-keys", help="issue, list or revoke keys to the admin API, per role"
    )
    admin_key_actions = admin_keys.add_subparsers(dest="action", required=True)
    admin_create = admin_key_actions.add_parser("create", help="issue an admin key; prints its secret once")
    admin_create.add_argument("--name", required=True)
    admin_create.add_argument("--role", required=True, choices=ROLES)
    admin_create.add_argument("--teams", help="team_admin: the ids of its teams, comma-separated")
    admin_create.add_argument("--expires", help="RFC 3339 time, e.g. 2027-01-01T00:00:00Z")
    admin_list = admin_key_actions.add_parser("list")
    admin_list.add_argument("--limit", type=int, default=100)
    admin_list.add_argument("--after")
    admin_key_actions.add_parser("revoke").add_argument("id")
    db = commands.add_parser("db", help="database maintenance")
    db_actions = db.add_subparsers(dest="action", required=True)
    db_actions.add_parser("migrate", help="apply pending schema migrations")
    db_actions.add_parser("backup", help="online copy of the SQLite store").add_argument("file")
    for sub in (key_actions, team_actions, admin_key_actions, db_actions):
        for leaf in sub.choices.values():
            add_config(leaf)
    for leaf in add_report_commands(commands):
        add_config(leaf)
