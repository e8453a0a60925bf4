"""Spend and audit reports: `GET /admin/spend`, `GET /admin/audit`, and `tollway spend`.

Spend comes from the daily rollups (one row per UTC day, key, team, model and end user), so a
report over a year reads at most a few thousand rows, never the raw records. Money is integer
micro-USD throughout; `amount` is the display value in the asked currency at the configured rate.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Final

import msgspec
from aiohttp import web
from msgspec import UNSET, UnsetType

from gateway.accounting.audit import parse_moment
from gateway.accounting.records import SpendRow
from gateway.admin.identity import AdminIdentity
from gateway.admin.scope import require_sees, team_scope
from gateway.errors.answers import GatewayError, bad_request, from_code
from gateway.errors.catalogue import ErrorCode
from gateway.policy.tags import NO_TAG
from gateway.store import Store
from gateway.store.ledger import SPEND_GROUPS, SpendGroup

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
IdentityHandler = Callable[[web.Request, AdminIdentity], Awaitable[web.StreamResponse]]
Guard = Callable[[IdentityHandler], Handler]

MAX_PAGE: Final = 1000
DEFAULT_PAGE: Final = 100
CURRENCIES: Final = ("USD", "CHF", "EUR")


class SpendQuery(msgspec.Struct, frozen=True):
    group_by: SpendGroup
    first_day: date
    last_day: date
    currency: str = "USD"
    key_id: str | None = None
    team_id: str | None = None


class SpendLine(msgspec.Struct):
    group: str | None
    requests: int
    errors: int
    tokens_in: int
    tokens_out: int
    tokens_cached: int
    cost_micros: int  # USD
    amount: float  # in `currency`, for display


class SpendReport(msgspec.Struct):
    group_by: str
    first_day: date = msgspec.field(name="from")
    last_day: date = msgspec.field(name="to")
    currency: str
    rate: float  # units of `currency` per USD
    data: list[SpendLine]
    total: SpendLine
    object: str = "spend_report"
    # How to read the lines where they do not simply add up to the total (group_by=tag).
    note: str | UnsetType = UNSET


class AuditEntry(msgspec.Struct):
    seq: int
    hash: str
    prev_hash: str
    record: msgspec.Raw


class AuditPage(msgspec.Struct):
    data: list[AuditEntry]
    has_more: bool
    next_after: str | None
    object: str = "list"


def _bad(message: str, param: str) -> GatewayError:
    return bad_request(message, param)


def _day(params: Mapping[str, str], name: str, default: date) -> date:
    text = params.get(name)
    if not text:
        return default
    try:
        return parse_moment(text, name).astimezone(UTC).date()
    except ValueError as exc:
        raise _bad(str(exc), name) from None


def spend_query(params: Mapping[str, str], today: date) -> SpendQuery:
    """A spend query from `group_by`, `from`, `to` (UTC days, both included; default: this month
    so far), `currency`, `key_id`, `team_id`. GatewayError 400 naming a bad parameter."""
    group_by = params.get("group_by", "key")
    if group_by not in SPEND_GROUPS:
        raise _bad(f"'group_by' must be one of {', '.join(SPEND_GROUPS)}", "group_by")
    first_day = _day(params, "from", today.replace(day=1))
    last_day = _day(params, "to", today)
    if last_day < first_day:
        raise _bad("'to' is before 'from'", "to")
    currency = params.get("currency", "USD").upper()
    if currency not in CURRENCIES:
        raise _bad(f"'currency' must be one of {', '.join(CURRENCIES)}", "currency")
    return SpendQuery(
        group_by,  # type: ignore[arg-type]  # checked above
        first_day,
        last_day,
        currency,
        params.get("key_id") or None,
        params.get("team_id") or None,
    )


def _line(row: SpendRow, rate: float) -> SpendLine:
    amount = round(row.cost_micros * rate / 1_000_000, 6)
    return SpendLine(
        row.group,
        row.requests,
        row.errors,
        row.tokens_in,
        row.tokens_out,
        row.tokens_cached,
        row.cost_micros,
        amount,
    )


async def _spend_rows(
    store: Store, query: SpendQuery, team_ids: Sequence[str] | None, group_by: SpendGroup
) -> list[SpendRow]:
    """The rollup by `group_by` the query asks for; within `team_ids` (when not None), summed over
    those teams."""
    teams: Sequence[str | None] = [query.team_id] if team_ids is None or query.team_id else team_ids
    sums: dict[str | None, list[int]] = {}
    for team_id in teams:
        for row in await store.spend(
            group_by=group_by,
            first_day=query.first_day,
            last_day=query.last_day,
            key_id=query.key_id,
            team_id=team_id,
        ):
            values = msgspec.structs.astuple(row)[1:]
            total = sums.setdefault(row.group, [0] * len(values))
            for index, value in enumerate(values):
                total[index] += value
    return [SpendRow(group, *total) for group, total in sorted(sums.items(), key=lambda item: item[0] or "")]


async def spend_report(
    store: Store, query: SpendQuery, rates: Mapping[str, float], team_ids: Sequence[str] | None = None
) -> SpendReport:
    """The spend report (of the teams `team_ids` only, when given: a team admin's); GatewayError
    400 when no rate is configured for the currency."""
    rate = 1.0 if query.currency == "USD" else rates.get(query.currency)
    if rate is None:
        raise _bad(f"no exchange rate for {query.currency} is configured (budgets.rates)", "currency")
    rows = await _spend_rows(store, query, team_ids, query.group_by)
    if query.group_by != "day":
        rows.sort(key=lambda row: (-row.cost_micros, row.group or ""))
    by_tag = query.group_by == "tag"
    # By tag, a request counts under each of its tags: the total is taken from the rollup that
    # counts each once.
    total = _total(await _spend_rows(store, query, team_ids, "key") if by_tag else rows)
    report = SpendReport(
        query.group_by,
        query.first_day,
        query.last_day,
        query.currency,
        rate,
        [_line(row, rate) for row in rows],
        _line(total, rate),
    )
    if by_tag:
        for line in report.data:
            line.group = line.group or NO_TAG
        report.note = TAG_NOTE
    return report


TAG_NOTE: Final = (
    f"a request with several tags counts in full under each of them, so the lines can add up to"
    f" more than the total, which counts each request once; requests without tags are under {NO_TAG}"
)


def _total(rows: list[SpendRow]) -> SpendRow:
    sums = [sum(column) for column in zip(*(msgspec.structs.astuple(r)[1:] for r in rows), strict=True)]
    return SpendRow(None, *sums) if rows else SpendRow(None, 0, 0, 0, 0, 0, 0)


def _limit(params: Mapping[str, str]) -> int:
    raw = params.get("limit", str(DEFAULT_PAGE))
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_PAGE:
        raise _bad(f"'limit' must be an integer from 1 to {MAX_PAGE}", "limit")
    return int(raw)


async def audit_page(
    store: Store, params: Mapping[str, str], team_ids: Sequence[str] | None = None
) -> AuditPage:
    """Audit records in chain order, filtered by `key_id`, `model`, `from`/`to` (started in
    [from, to)), paged by `limit` and `after` (the `next_after` of the page before); of the teams
    `team_ids` only, when given (a team admin's)."""
    limit = _limit(params)
    after_text = params.get("after")
    if after_text is not None and not after_text.isdigit():
        raise _bad("'after' must be the next_after of a previous page", "after")
    start = end = None
    try:
        if params.get("from"):
            start = parse_moment(params["from"], "from")
        if params.get("to"):
            end = parse_moment(params["to"], "to")
    except ValueError as exc:
        raise _bad(str(exc), "from" if "'from'" in str(exc) else "to") from None
    links = await store.list_records(
        limit=limit + 1,
        after=int(after_text) if after_text is not None else None,
        key_id=params.get("key_id") or None,
        model=params.get("model") or None,
        start=start,
        end=end,
        team_ids=team_ids,
    )
    entries = [
        AuditEntry(link.seq, link.hash, link.prev_hash, msgspec.Raw(link.data.encode()))
        for link in links[:limit]
    ]
    more = len(links) > limit
    return AuditPage(entries, more, str(entries[-1].seq) if more else None)


_encode: Final = msgspec.json.Encoder()


def _json(value: object) -> web.Response:
    return web.Response(body=_encode.encode(value), content_type="application/json")


def add_report_routes(
    router: web.UrlDispatcher, guard: Guard, store: Store | None, rates: Mapping[str, float]
) -> None:
    """Mount `GET /admin/spend` and `GET /admin/audit` behind `guard` (the admin API's, which
    names the caller and answers 503 when no store is configured). Every role reads them; a team
    admin reads its own teams' only."""

    def the_store() -> Store:
        if store is None:
            raise from_code(ErrorCode.NO_STORE, "no store is configured (storage.database_url)")
        return store

    async def spend(request: web.Request, identity: AdminIdentity) -> web.StreamResponse:
        query = spend_query(request.query, datetime.now(UTC).date())
        if query.team_id is not None:
            require_sees(identity, query.team_id, "the spend")
        return _json(await spend_report(the_store(), query, rates, team_scope(identity)))

    async def audit(request: web.Request, identity: AdminIdentity) -> web.StreamResponse:
        return _json(await audit_page(the_store(), request.query, team_scope(identity)))

    router.add_get("/admin/spend", guard(spend))
    router.add_get("/admin/audit", guard(audit))
