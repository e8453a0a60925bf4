"""gateway/server/tasks.py: background tasks stop even when one swallows its cancellation."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from gateway.server.tasks import stop_tasks


async def test_a_task_that_swallows_one_cancellation_is_cancelled_again() -> None:
    rounds = 0

    async def stubborn() -> None:
        nonlocal rounds
        while True:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                rounds += 1
                if rounds == 1:
                    continue  # what a wait_for that lost the race does: carry on
                raise

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    started = time.monotonic()
    await stop_tasks([task])
    assert task.cancelled()
    assert rounds == 2
    assert time.monotonic() - started < 1.0


async def test_a_task_that_never_stops_is_left_behind_after_the_patience(
    caplog: pytest.LogCaptureFixture,
) -> None:
    released = False

    async def immortal() -> None:
        while True:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                if released:
                    raise

    task = asyncio.create_task(immortal(), name="immortal")
    await asyncio.sleep(0)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="tollway"):
        await stop_tasks([task], patience_s=0.5)
    assert 0.4 < time.monotonic() - started < 1.5
    assert "immortal" in caplog.text
    assert not task.done()
    released = True  # leave the loop clean for the next test
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_failed_task_is_reported_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    async def broken() -> None:
        raise RuntimeError("boom")

    task = asyncio.create_task(broken(), name="broken")
    await asyncio.sleep(0)
    with caplog.at_level(logging.WARNING, logger="tollway"):
        await stop_tasks([task])
    assert "boom" in caplog.text


async def test_tasks_already_done_are_fine() -> None:
    task = asyncio.create_task(asyncio.sleep(0))
    await task
    await stop_tasks([task])
