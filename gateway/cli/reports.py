"""`tollway audit verify|export` and `tollway spend`: the audit trail and spend reports from a
shell on the VM, straight against the configured store (registered by gateway/cli/admin.py)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import msgspec

from gateway.accounting import audit, reports
from gateway.admin import changes as admin_changes
from gateway.errors.answers import bad_request, from_code
from gateway.errors.catalogue import ErrorCode
from gateway.store import Store
from gateway.store.ledger import SPEND_GROUPS


def _moment(text: str | None, name: str) -> datetime | None:
    if not text:
        return None
    try:
        return audit.parse_moment(text, name)
    except ValueError as exc:
        raise bad_request(str(exc)) from None


def _print(value: object) -> None:
    sys.stdout.write(msgspec.json.format(msgspec.json.encode(value)).decode() + "\n")


async def run_audit(args: argparse.Namespace, store: Store) -> bool:
    """`audit verify`: prints the result, GatewayError (exit 1) naming the first broken record.
    `audit export`: JSON lines to --output or stdout."""
    start, end = _moment(args.start, "--from"), _moment(args.end, "--to")
    if args.action == "verify":
        result = await audit.verify(store, start, end)
        # The audit of admin changes is checked whole, whatever the period: it is small.
        changes = await admin_changes.verify(store)
        _print(msgspec.structs.asdict(result) | {"admin_changes": changes})
        if result.broken is not None:
            broken = result.broken
            who = f" (request {broken.request_id})" if broken.request_id else ""
            raise from_code(
                ErrorCode.AUDIT_CHAIN_BROKEN,
                f"the audit chain is broken at seq {broken.seq}{who}: {broken.reason}",
            )
        if changes.broken is not None:
            broken = changes.broken
            what = f" (a change of {broken.request_id})" if broken.request_id else ""
            raise from_code(
                ErrorCode.AUDIT_CHAIN_BROKEN,
                f"the chain of admin changes is broken at seq {broken.seq}{what}: {broken.reason}",
            )
        print(
            f"ok: {result.checked} records checked, head {result.head_seq} {result.head_hash}",
            file=sys.stderr,
        )
        print(
            f"ok: {changes.checked} admin changes checked, head {changes.head_seq} {changes.head_hash}",
            file=sys.stderr,
        )
        return False
    if args.output and args.output != "-":
        out = await asyncio.to_thread(open, args.output, "wb")
        with out:
            count = await audit.export(store, out.write, start, end)
    else:
        count = await audit.export(store, sys.stdout.buffer.write, start, end)
        sys.stdout.flush()
    print(f"exported {count} records", file=sys.stderr)
    return False


async def run_spend(args: argparse.Namespace, store: Store, rates: Mapping[str, float]) -> bool:
    """`spend`: the same report as GET /admin/spend, as JSON."""
    params = {
        name: value
        for name, value in (
            ("group_by", args.group_by),
            ("from", args.start),
            ("to", args.end),
            ("currency", args.currency),
            ("key_id", args.key_id),
            ("team_id", args.team_id),
        )
        if value
    }
    query = reports.spend_query(params, datetime.now(UTC).date())
    _print(await reports.spend_report(store, query, rates))
    return False


def add_report_commands(commands: Any) -> list[argparse.ArgumentParser]:
    """Register `audit verify|export` and `spend`; the leaf parsers (for the --config option)."""
    audit_cmd = commands.add_parser("audit", help="verify or export the tamper-evident audit trail")
    actions = audit_cmd.add_subparsers(dest="action", required=True)
    verify = actions.add_parser(
        "verify", help="check the hash chains (requests, admin changes); names the first broken link"
    )
    export = actions.add_parser("export", help="write records as JSON lines (for an auditor)")
    for leaf in (verify, export):
        leaf.add_argument("--from", dest="start", help="date (2025-03-01) or RFC 3339 time, included")
        leaf.add_argument("--to", dest="end", help="date or RFC 3339 time, excluded")
    export.add_argument("--output", "-o", help="file to write (default: stdout)")
    spend = commands.add_parser("spend", help="spend per key, team, model, user, day or tag")
    spend.add_argument("--group-by", default="key", choices=SPEND_GROUPS)
    spend.add_argument("--from", dest="start", help="first UTC day (default: the 1st of this month)")
    spend.add_argument("--to", dest="end", help="last UTC day, included (default: today)")
    spend.add_argument("--currency", default="USD", choices=reports.CURRENCIES)
    spend.add_argument("--key", dest="key_id")
    spend.add_argument("--team", dest="team_id")
    return [verify, export, spend]
