"""Budgets with an injected wall clock: reservations that cannot jointly overspend, settlement,
the two kinds of refusal, currencies, period resets in Europe/Zurich, threshold alerts, restore
from a SpendSource, status for the admin API, and the policy that picks a request's budgets."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime

import msgspec
import pytest

from gateway.config.load import parse_config
from gateway.config.schema import Budget, BudgetsConfig
from gateway.errors.answers import GatewayError, error_response
from gateway.policy.auth import Principal
from gateway.policy.budgetpolicy import BudgetPolicy, BudgetSubject, SpendSource, key_budget, user_budget
from gateway.policy.budgets import BudgetBook, Threshold

USD = 1_000_000  # micro-USD per dollar


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now.timestamp()

    def __call__(self) -> float:
        return self.now

    def set(self, moment: datetime) -> None:
        self.now = moment.timestamp()


def zurich(**overrides: object) -> BudgetsConfig:
    fields: dict[str, object] = {"timezone": "Europe/Zurich", "rates": {"CHF": 0.80, "EUR": 0.93}}
    fields.update(overrides)
    return msgspec.convert(fields, BudgetsConfig)


def subject(amount: float, currency: str = "USD", period: str = "month", **extra: object) -> BudgetSubject:
    budget = msgspec.convert({"amount": amount, "currency": currency, "period": period, **extra}, Budget)
    return BudgetSubject("key:k1", "key 'ci'", budget)


def book_at(moment: datetime, **kwargs: object) -> tuple[BudgetBook, Clock]:
    clock = Clock(moment)
    return BudgetBook(zurich(), clock, **kwargs), clock  # type: ignore[arg-type]


def refused(book: BudgetBook, subjects: list[BudgetSubject], worst: int) -> GatewayError:
    with pytest.raises(GatewayError) as caught:
        book.reserve(subjects, worst)
    assert caught.value.status == 429
    return caught.value


MID_MARCH = datetime(2025, 3, 15, 12, tzinfo=UTC)


def test_reserve_then_settle_to_the_actual_cost() -> None:
    book, _ = book_at(MID_MARCH)
    budget = subject(10)
    reservation = book.reserve([budget], 4 * USD)
    assert book.status(budget).reserved_micros == 4 * USD
    reservation.settle(1 * USD)
    reservation.settle(3 * USD)  # idempotent
    status = book.status(budget)
    assert (status.spent_micros, status.reserved_micros, status.remaining_micros) == (USD, 0, 9 * USD)


def test_concurrent_reservations_cannot_jointly_overspend() -> None:
    book, _ = book_at(MID_MARCH)
    budget = subject(10)
    held = [book.reserve([budget], 3 * USD) for _ in range(3)]
    # 9 reserved, 0 spent: a 4th reservation of 3 would overspend if all cost their worst case.
    err = refused(book, [budget], 3 * USD)
    assert err.code == "budget_busy" and err.headers is not None
    assert err.headers["Retry-After"] == "1" and "x-should-retry" not in err.headers
    book.reserve([budget], 1 * USD).settle(1 * USD)  # 1 still fits exactly
    for reservation in held:
        reservation.settle(3 * USD)
    assert book.status(budget).spent_micros == 10 * USD  # exactly the limit, never more
    err = refused(book, [budget], 1)
    assert err.code == "budget_exceeded"


def test_an_exhausted_budget_names_itself_and_says_do_not_retry() -> None:
    book, _ = book_at(MID_MARCH)
    budget = subject(200, "CHF")
    book.reserve([budget], 240 * USD).settle(240 * USD)  # CHF 192 of CHF 200
    err = refused(book, [budget], 20 * USD)
    assert err.code == "budget_exceeded" and err.type == "insufficient_quota"
    assert err.message == (
        "Budget exceeded for key 'ci': CHF 192.00 of CHF 200.00 spent this month, and this request "
        "may cost up to CHF 16.00. It resets on 2025-04-01 00:00 Europe/Zurich."
    )
    response = error_response(err, "req_1")
    assert response.headers["x-should-retry"] == "false" and "Retry-After" not in response.headers


def test_currency_conversion_at_the_configured_rate() -> None:
    book, _ = book_at(MID_MARCH)
    # 0.80 CHF per USD: CHF 200 is USD 250.
    assert book.status(subject(200, "CHF")).limit_micros == 250 * USD
    eur = book.status(BudgetSubject("team:t", "team 't'", Budget(93, "EUR")))
    assert eur.limit_micros == 100 * USD
    book.reserve([subject(200, "CHF")], 10 * USD).settle(10 * USD)
    status = book.status(subject(200, "CHF"))
    assert (status.currency, status.spent, status.remaining) == ("CHF", 8.0, 192.0)


def test_a_currency_without_a_rate_is_a_gateway_error() -> None:
    book = BudgetBook(msgspec.convert({"timezone": "UTC"}, BudgetsConfig), Clock(MID_MARCH))
    with pytest.raises(GatewayError) as caught:
        book.reserve([subject(5, "EUR")], 1)
    assert caught.value.status == 500 and caught.value.code == "budget_currency_unknown"
    with pytest.raises(GatewayError):  # no half-made account was kept
        book.reserve([subject(5, "EUR")], 1)


def test_all_or_nothing_across_key_team_and_user() -> None:
    book, _ = book_at(MID_MARCH)
    key = subject(100)
    team = BudgetSubject("team:t1", "team 't1'", Budget(1))
    err = refused(book, [key, team], 2 * USD)
    assert "team 't1'" in err.message
    assert book.status(key).reserved_micros == 0  # the key's budget was not touched


def test_daily_budget_resets_at_zurich_midnight_on_a_dst_day() -> None:
    # 2025-03-30 has 23 hours in Zurich: it ends at 22:00 UTC.
    book, clock = book_at(datetime(2025, 3, 30, 21, 59, tzinfo=UTC))
    daily = subject(1, period="day")
    book.reserve([daily], USD).settle(USD)
    assert book.status(daily).period_end == datetime(2025, 3, 30, 22, tzinfo=UTC)
    refused(book, [daily], 1)
    clock.set(datetime(2025, 3, 30, 22, tzinfo=UTC))
    status = book.status(daily)
    assert (status.spent_micros, status.period_start) == (0, datetime(2025, 3, 30, 22, tzinfo=UTC))
    book.reserve([daily], USD)


def test_monthly_budget_resets_on_the_first_and_carries_open_reservations() -> None:
    book, clock = book_at(datetime(2025, 1, 31, 22, 59, tzinfo=UTC))
    monthly = subject(10)
    book.reserve([monthly], 6 * USD).settle(6 * USD)
    open_reservation = book.reserve([monthly], 4 * USD)
    clock.set(datetime(2025, 1, 31, 23, 0, tzinfo=UTC))  # 1 February in Zurich
    status = book.status(monthly)
    assert status.spent_micros == 0 and status.reserved_micros == 4 * USD
    assert status.period_end == datetime(2025, 2, 28, 23, tzinfo=UTC)
    open_reservation.settle(2 * USD)  # a call that spanned midnight counts in the new month
    assert book.status(monthly).spent_micros == 2 * USD


def test_weekly_and_total_budgets() -> None:
    book, clock = book_at(datetime(2025, 3, 30, 12, tzinfo=UTC))  # a Sunday
    weekly = BudgetSubject("key:w", "key 'w'", Budget(5, period="week"))
    total = BudgetSubject("key:t", "key 't'", Budget(5, period="total"))
    for budget in (weekly, total):
        book.reserve([budget], 5 * USD).settle(5 * USD)
    clock.set(datetime(2025, 3, 30, 22, tzinfo=UTC))  # Monday 00:00 CEST
    book.reserve([weekly], 5 * USD)
    err = refused(book, [total], 1)
    assert err.message.endswith("It is a total budget and does not reset.")
    assert book.status(total).period_end is None


def test_a_changed_budget_applies_at_once() -> None:
    book, _ = book_at(MID_MARCH)
    book.reserve([subject(10)], 8 * USD).settle(8 * USD)
    refused(book, [subject(10)], 3 * USD)
    book.reserve([subject(20)], 3 * USD)  # raised: same spend, more room
    assert book.status(subject(20, period="day")).spent_micros == 0  # new period kind: a new count


def test_thresholds_fire_once_each_per_period() -> None:
    alerts: list[tuple[str, Threshold, int, int]] = []
    book, clock = book_at(
        MID_MARCH, on_threshold=lambda s, kind, spent, limit: alerts.append((s.key, kind, spent, limit))
    )
    budget = subject(10, soft_pct=80)
    book.reserve([budget], 7 * USD).settle(7 * USD)
    assert alerts == []
    book.reserve([budget], USD).settle(USD)
    book.reserve([budget], USD).settle(USD)
    assert alerts == [("key:k1", "soft", 8 * USD, 10 * USD)]
    book.reserve([budget], USD).settle(USD)
    refused(book, [budget], 1)
    assert alerts[1:] == [("key:k1", "exhausted", 10 * USD, 10 * USD)]
    clock.set(datetime(2025, 4, 1, 12, tzinfo=UTC))
    book.reserve([budget], 9 * USD).settle(9 * USD)
    assert [kind for _, kind, _, _ in alerts] == ["soft", "exhausted", "soft"]


def test_a_failing_alert_hook_never_fails_a_request(caplog: pytest.LogCaptureFixture) -> None:
    def broken(s: BudgetSubject, kind: Threshold, spent: int, limit: int) -> None:
        raise RuntimeError("webhook down")

    book, _ = book_at(MID_MARCH, on_threshold=broken)
    with caplog.at_level(logging.WARNING, "tollway"):
        book.reserve([subject(1, soft_pct=10)], USD).settle(USD)
    assert "budget alert hook failed: RuntimeError" in caplog.text


class FakeSpend:
    """A SpendSource double: fixed totals per `since`."""

    def __init__(self, totals: dict[datetime, dict[str, int]]) -> None:
        self.totals = totals
        self.asked: list[datetime] = []

    async def spend_totals(self, since: datetime) -> Mapping[str, int]:
        self.asked.append(since)
        return self.totals.get(since, {})


async def test_spend_is_restored_for_each_current_period() -> None:
    book, _ = book_at(datetime(2025, 3, 19, 12, tzinfo=UTC))  # a Wednesday
    month = datetime(2025, 2, 28, 23, tzinfo=UTC)
    week = datetime(2025, 3, 16, 23, tzinfo=UTC)
    source = FakeSpend({month: {"key:k1": 7 * USD, "team:t": 2 * USD}, week: {"key:k1": 3 * USD}})
    spend: SpendSource = source
    await book.load(spend)
    assert source.asked == [
        datetime(1970, 1, 1, tzinfo=UTC),
        month,
        week,
        datetime(2025, 3, 18, 23, tzinfo=UTC),
    ]
    assert book.status(subject(10)).spent_micros == 7 * USD
    assert book.status(subject(10, period="week")).spent_micros == 3 * USD
    assert book.status(subject(10, period="day")).spent_micros == 0
    refused(book, [subject(10)], 4 * USD)
    book.reserve([subject(10)], 3 * USD)


def test_restore_after_accounts_exist_never_lowers_spend() -> None:
    book, _ = book_at(MID_MARCH)
    book.reserve([subject(10)], 2 * USD).settle(2 * USD)
    start = datetime(2025, 2, 28, 23, tzinfo=UTC)
    book.restore(start, {"key:k1": 5 * USD})
    assert book.status(subject(10)).spent_micros == 7 * USD
    book.restore(start, {"key:k1": 1 * USD})
    assert book.status(subject(10)).spent_micros == 7 * USD


def test_a_restored_budget_already_past_its_threshold_does_not_alert_again() -> None:
    alerts: list[Threshold] = []
    book, _ = book_at(MID_MARCH, on_threshold=lambda s, kind, spent, limit: alerts.append(kind))
    book.restore(datetime(2025, 2, 28, 23, tzinfo=UTC), {"key:k1": 9 * USD})
    book.reserve([subject(10, soft_pct=50)], USD // 2).settle(USD // 2)
    assert alerts == []


def test_status_for_the_admin_api() -> None:
    book, _ = book_at(MID_MARCH)
    book.reserve([subject(200, "CHF")], 50 * USD).settle(25 * USD)
    status = book.status(subject(200, "CHF"))
    assert msgspec.to_builtins(status) == {
        "currency": "CHF",
        "period": "month",
        "limit": 200.0,
        "spent": 20.0,
        "remaining": 180.0,
        "limit_micros": 250 * USD,
        "spent_micros": 25 * USD,
        "reserved_micros": 0,
        "remaining_micros": 225 * USD,
        "period_start": "2025-02-28T23:00:00Z",
        "period_end": "2025-03-31T22:00:00Z",
    }


def test_newcomer_and_lease_modes() -> None:
    """What FleetSync drives: before its first sync a process may make one reservation and asks
    for a sync at once; with a lease, up to its lease; the fleet's open reservations count."""
    book, _ = book_at(MID_MARCH)
    pokes: list[bool] = []
    book.attach(lambda urgent: pokes.append(urgent))
    budget = subject(9)
    book.fleet_state(True, 3)
    book.reserve([budget], 3 * USD)
    assert pokes == [True]
    err = refused(book, [budget], 1)
    assert err.code == "budget_busy"  # the fleet may have room; this process's share is used up
    [(redis_key, lease, ttl)] = list(book.leases())
    assert redis_key == f"bud:key:k1:month:{int(datetime(2025, 2, 28, 23, tzinfo=UTC).timestamp())}"
    assert ttl > 16 * 24 * 3600 * 1000  # outlives the month by a week
    delta, _, _, _ = lease.begin_push()
    # Redis: 1 spent by others, others hold 2 and have 1 outstanding; our lease is 4.
    lease.finish_push(
        delta, [b"1000000", b"4000000", b"2000000", b"1000000", b"2"], book.now(), 1.0, book.now()
    )
    book.reserve([budget], USD)  # 3 + 1 of our 4
    err = refused(book, [budget], USD)
    assert err.code == "budget_busy"
    status = book.status(budget)
    assert (status.spent_micros, status.reserved_micros) == (USD, 5 * USD)


def test_policy_collects_key_team_and_end_user_budgets() -> None:
    config = parse_config("budgets: {end_user: {amount: 1, period: day}}", {}, "test")
    policy = BudgetPolicy(config.budgets)
    principal = Principal("key_1", "ci", team_id="team_1", budget=Budget(10), team_budget=Budget(100))
    assert [s.key for s in policy.subjects(principal, "bob")] == [
        "key:key_1",
        "team:team_1",
        "user:key_1:bob",
    ]
    assert policy.subjects(Principal("key_2", "free"), None) == []
    assert key_budget(principal, Budget(1)).label == "key 'ci'"
    assert user_budget("key_1", "y" * 300, Budget(1)).key.startswith("user:key_1:sha256:")


def test_config_sections() -> None:
    config = parse_config(
        'budgets: {timezone: "Europe/Zurich", rates: {CHF: 0.8, EUR: 0.93}}\n'
        "limits: {sync_interval_s: 0.1, end_user: {rpm: 10}}\n",
        {},
        "test",
    )
    assert config.budgets.rates == {"CHF": 0.8, "EUR": 0.93} and config.limits.sync_interval_s == 0.1
    for text, message in [
        ("budgets: {timezone: Mars/Olympus}", "budgets: unknown time zone 'Mars/Olympus'"),
        ("budgets: {rates: {CHF: 0}}", "budgets.rates"),
        ("budgets: {rates: {USD: 0.9}}", "rates.USD must be 1"),
        ("limits: {sync_interval_s: 0}", "limits.sync_interval_s"),
    ]:
        with pytest.raises(Exception, match=message.replace(".", r"\.")):
            parse_config(text, {}, "test")
