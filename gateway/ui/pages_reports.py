"""The Overview, Spend, Audit and Models pages: read-only views over the gateway's counters, the
spend rollups (gateway/accounting/reports.py), the audit chain (gateway/accounting/audit.py) and the
router's state."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Final

import msgspec
from aiohttp import web

from gateway.accounting import audit
from gateway.accounting.records import ChainLink
from gateway.accounting.reports import SpendQuery, SpendReport, spend_query, spend_report
from gateway.admin.identity import AdminIdentity
from gateway.admin.scope import require_sees, team_scope
from gateway.errors.answers import bad_request, from_code
from gateway.errors.catalogue import ErrorCode
from gateway.ui.context import SECURITY_HEADERS, Ui
from gateway.ui.overview import Overview, costs, in_flight, request_counts
from gateway.ui.pages_keys import visible_teams
from gateway.ui.sessions import Session

AUDIT_PAGE: Final = 50
AUDIT_SCANS: Final = 20  # store pages read at most to fill one page of a filtered audit view
CHART_DAYS: Final = 92  # the chart draws at most this many days (the table has no bound)
CHART_SERIES: Final = 6  # the groups that cost the most get a line each
CHART_GROUPS: Final = ("key", "team", "model", "tag", "day")
_encode: Final = msgspec.json.Encoder()


class ChartData(msgspec.Struct):
    days: list[int]  # UTC midnight, unix seconds (what uPlot's time axis takes)
    series: list[tuple[str, list[float]]]
    currency: str


def _today() -> date:
    return datetime.now(UTC).date()


def checked_query(params: Mapping[str, str], identity: AdminIdentity) -> SpendQuery:
    """The spend query of the page's parameters; 403 for a team the identity does not see (as
    GET /admin/spend answers)."""
    query = spend_query(params, _today())
    if query.team_id is not None:
        require_sees(identity, query.team_id, "the spend")
    return query


async def chart_data(
    ui: Ui, query: SpendQuery, report: SpendReport, team_ids: Sequence[str] | None
) -> ChartData:
    """One line per top group over the days of the query: one report per day, each a read of
    that day's rollups (the store sums one dimension at a time)."""
    first = max(query.first_day, query.last_day - timedelta(days=CHART_DAYS - 1))
    days = [first + timedelta(days=n) for n in range((query.last_day - first).days + 1)]
    stamps = [int(datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp()) for d in days]
    if query.group_by == "day":
        by_day = {line.group: line.amount for line in report.data}
        return ChartData(stamps, [("total", [by_day.get(d.isoformat(), 0.0) for d in days])], query.currency)
    top = [line.group for line in report.data[:CHART_SERIES]]
    values: dict[str | None, list[float]] = {group: [] for group in top}
    for day in days:
        daily = await spend_report(
            ui.the_store(), msgspec.structs.replace(query, first_day=day, last_day=day), ui.rates, team_ids
        )
        amounts = {line.group: line.amount for line in daily.data}
        for group in top:
            values[group].append(amounts.get(group, 0.0))
    return ChartData(stamps, [(group or "(none)", values[group]) for group in top], query.currency)


def _script_json(value: object) -> str:
    """JSON to place inside a <script type="application/json"> element: with `<` escaped, a
    group name (a model name a client sent) cannot close the element early."""
    return _encode.encode(value).decode().replace("<", "\\u003c")


def spend_csv(report: SpendReport) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(
        [
            report.group_by,
            "requests",
            "errors",
            "tokens_in",
            "tokens_out",
            "tokens_cached",
            "cost_micros_usd",
            f"amount_{report.currency.lower()}",
        ]
    )
    for line in [*report.data, report.total]:
        name = line.group if line is not report.total else "total"
        writer.writerow(
            [
                name or "",
                line.requests,
                line.errors,
                line.tokens_in,
                line.tokens_out,
                line.tokens_cached,
                line.cost_micros,
                f"{line.amount:.6f}",
            ]
        )
    return out.getvalue()


class AuditFilter(msgspec.Struct, frozen=True):
    key_id: str | None
    model: str | None
    status: str  # "", "ok" (< 400), "error" (>= 400) or one status code
    start: datetime | None
    end: datetime | None

    def admits(self, link: ChainLink) -> bool:
        if self.status == "ok":
            return link.status < 400
        if self.status == "error":
            return link.status >= 400
        return not self.status or str(link.status) == self.status


def audit_filter(params: Mapping[str, str]) -> AuditFilter:
    moments: dict[str, datetime | None] = {}
    for name in ("from", "to"):
        text = params.get(name, "").strip()
        try:
            moments[name] = audit.parse_moment(text, name) if text else None
        except ValueError as exc:
            raise bad_request(str(exc), name) from None
    status = params.get("status", "").strip()
    if status not in ("", "ok", "error") and not (status.isdigit() and len(status) == 3):
        raise bad_request("'status' must be ok, error or a status code such as 429", "status")
    return AuditFilter(
        params.get("key_id", "").strip() or None,
        params.get("model", "").strip() or None,
        status,
        moments["from"],
        moments["to"],
    )


class ReportPages:
    def __init__(self, ui: Ui) -> None:
        self._ui = ui

    def add_routes(self, router: web.UrlDispatcher) -> None:
        page = self._ui.page
        router.add_get("/ui", page(self.overview))
        router.add_get("/ui/", page(self.overview))
        router.add_get("/ui/data/overview", page(self.overview_data, data=True))
        router.add_get("/ui/spend", page(self.spend))
        router.add_get("/ui/spend.csv", page(self.spend_download, data=True))
        router.add_get("/ui/audit", page(self.audit))
        router.add_get("/ui/audit/{seq:[0-9]+}", page(self.audit_record))
        router.add_get("/ui/models", page(self.models))

    async def _overview(self, identity: AdminIdentity, currency: str) -> Overview:
        requests, errors, p50, p99 = request_counts(self._ui.metrics)
        today = month = None
        if self._ui.store is not None:
            today, month = await costs(self._ui.store, identity, _today(), currency, self._ui.rates)
        return Overview(
            requests,
            errors,
            in_flight(self._ui.metrics),
            p50,
            p99,
            today,
            month,
            currency,
            self._ui.degraded(),
        )

    def _currency(self, request: web.Request) -> str:
        currency = request.query.get("currency", "USD").upper()
        return currency if currency == "USD" or currency in self._ui.rates else "USD"

    async def overview(self, request: web.Request, session: Session) -> web.StreamResponse:
        currency = self._currency(request)
        numbers = await self._overview(session.identity, currency)
        return self._ui.render(
            request, session, "overview.html", o=numbers, currencies=self._currencies(), currency=currency
        )

    async def overview_data(self, request: web.Request, session: Session) -> web.StreamResponse:
        numbers = await self._overview(session.identity, self._currency(request))
        return web.Response(
            body=_encode.encode(numbers), content_type="application/json", headers=SECURITY_HEADERS
        )

    def _currencies(self) -> list[str]:
        return ["USD", *sorted(c for c in self._ui.rates if c != "USD")]

    async def spend(self, request: web.Request, session: Session) -> web.StreamResponse:
        query = checked_query(request.query, session.identity)
        scope = team_scope(session.identity)
        report = await spend_report(self._ui.the_store(), query, self._ui.rates, scope)
        chart = await chart_data(self._ui, query, report, scope) if query.group_by in CHART_GROUPS else None
        return self._ui.render(
            request,
            session,
            "spend.html",
            report=report,
            query=query,
            chart=_script_json(chart) if chart is not None else None,
            currencies=self._currencies(),
            groups=(*CHART_GROUPS, "user"),
            teams=await visible_teams(self._ui.ops(), session.identity),
            csv_query=request.query_string,
        )

    async def spend_download(self, request: web.Request, session: Session) -> web.StreamResponse:
        query = checked_query(request.query, session.identity)
        report = await spend_report(self._ui.the_store(), query, self._ui.rates, team_scope(session.identity))
        name = f"tollway-spend-{query.group_by}-{query.first_day}-{query.last_day}.csv"
        return web.Response(
            text=spend_csv(report),
            content_type="text/csv",
            headers={**SECURITY_HEADERS, "Content-Disposition": f'attachment; filename="{name}"'},
        )

    async def audit(self, request: web.Request, session: Session) -> web.StreamResponse:
        store, identity = self._ui.the_store(), session.identity
        wanted = audit_filter(request.query)
        after_text = request.query.get("after", "")
        cursor = int(after_text) if after_text.isdigit() else None
        rows: list[ChainLink] = []
        more = False
        for _ in range(AUDIT_SCANS):
            links = await store.list_records(
                limit=AUDIT_PAGE, after=cursor, key_id=wanted.key_id, model=wanted.model,
                start=wanted.start, end=wanted.end, team_ids=team_scope(identity),
            )  # fmt: skip
            for link in links:
                if wanted.admits(link):
                    rows.append(link)
                cursor = link.seq
                if len(rows) == AUDIT_PAGE:
                    break
            # A full page may end just at the last record: then the next page is empty, no harm.
            more = len(links) == AUDIT_PAGE or len(rows) == AUDIT_PAGE
            if len(rows) == AUDIT_PAGE or not more:
                break
        verification = await audit.verify(store) if request.query.get("verify") else None
        params = {k: v for k, v in request.query.items() if k not in ("after", "verify")}
        return self._ui.render(
            request,
            session,
            "audit.html",
            rows=rows,
            next_after=cursor if more else None,
            params=params,
            verification=verification,
        )

    async def audit_record(self, request: web.Request, session: Session) -> web.StreamResponse:
        seq = int(request.match_info["seq"])
        links = await self._ui.the_store().list_records(limit=1, after=seq - 1)
        if not links or links[0].seq != seq:
            raise from_code(ErrorCode.NOT_FOUND, f"no audit record {seq} (pruned, or not written yet)")
        link = links[0]
        require_sees(session.identity, link.team_id, f"record {seq}, a record")
        # The record as stored: its content already cut to what logging.content allowed.
        shown = msgspec.json.format(link.data.encode(), indent=2).decode()
        return self._ui.render(request, session, "audit_record.html", link=link, record=shown)

    async def models(self, request: web.Request, session: Session) -> web.StreamResponse:
        states = {state.target: state for state in self._ui.targets()}
        return self._ui.render(request, session, "models.html", models=self._ui.models(), states=states)
