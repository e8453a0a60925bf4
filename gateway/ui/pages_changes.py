"""The audit of admin changes in the UI: the list (beside the request records on the Audit page),
one change in full with the subject before and after, the chain's verification, and a key's own
history on its page. Read through the admin operations, so a team admin sees its teams' changes
only."""

from __future__ import annotations

from typing import Final

import msgspec
from aiohttp import web

from gateway.accounting.records import AdminChange, decode_change
from gateway.admin import changes as admin_changes
from gateway.admin.changes import ChangePage
from gateway.admin.identity import AdminIdentity
from gateway.admin.ops import AdminOps
from gateway.errors.answers import from_code
from gateway.errors.catalogue import ErrorCode
from gateway.ui.context import Ui
from gateway.ui.sessions import Session

CHANGES_PAGE: Final = 50
HISTORY: Final = 100  # a key's changes shown on its page; the rest are a link away


class ChangeRow(msgspec.Struct, frozen=True):
    seq: int
    hash: str
    change: AdminChange


def rows_of(page: ChangePage) -> list[ChangeRow]:
    return [ChangeRow(entry.seq, entry.hash, decode_change(bytes(entry.change))) for entry in page.data]


async def history_of(ops: AdminOps, identity: AdminIdentity, key_id: str) -> tuple[list[ChangeRow], bool]:
    """The key's first HISTORY changes, oldest first (its creation, edits, rotations, revoke),
    and whether there are more."""
    page = await ops.key_history(identity, key_id, {"limit": str(HISTORY)})
    return rows_of(page), page.has_more


def _pretty(raw: msgspec.Raw) -> str:
    return msgspec.json.format(bytes(raw), indent=2).decode()


class ChangePages:
    def __init__(self, ui: Ui) -> None:
        self._ui = ui

    def add_routes(self, router: web.UrlDispatcher) -> None:
        page = self._ui.page
        router.add_get("/ui/audit/changes", page(self.changes))
        router.add_get("/ui/audit/changes/{seq:[0-9]+}", page(self.change))

    async def changes(self, request: web.Request, session: Session) -> web.StreamResponse:
        params = {
            name: value for name in ("subject_id", "after") if (value := request.query.get(name, "").strip())
        }
        page = await self._ui.ops().changes(session.identity, {**params, "limit": str(CHANGES_PAGE)})
        verification = (
            await admin_changes.verify(self._ui.the_store()) if request.query.get("verify") else None
        )
        return self._ui.render(
            request,
            session,
            "changes.html",
            rows=rows_of(page),
            next_after=page.next_after,
            subject_id=params.get("subject_id", ""),
            verification=verification,
        )

    async def change(self, request: web.Request, session: Session) -> web.StreamResponse:
        seq = int(request.match_info["seq"])
        # One change through the same scoped read as the list: a team admin finds only its own.
        page = await self._ui.ops().changes(session.identity, {"after": str(seq - 1), "limit": "1"})
        if not page.data or page.data[0].seq != seq:
            raise from_code(ErrorCode.NOT_FOUND, f"no admin change {seq} that you may see")
        entry = page.data[0]
        change = decode_change(bytes(entry.change))
        return self._ui.render(
            request,
            session,
            "change.html",
            entry=entry,
            change=change,
            before=_pretty(change.before),
            after=_pretty(change.after),
        )
