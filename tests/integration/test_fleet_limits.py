"""One rpm limit through 2 and 3 real gateway processes sharing a redis-server: 3x the limit,
spread evenly over the processes and over a second, admits between the limit and the limit plus
N-1 (tests/support/fleet_gateways.py measures the same over many runs)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import fleet_gateways

pytestmark = pytest.mark.integration

RPM = 40  # refills 0.67 requests in the 1 s the requests take: not one whole request


@pytest.mark.parametrize("size", [2, 3])
async def test_processes_sharing_redis_admit_the_limit_and_at_most_n_minus_1_more(
    size: int, tmp_path: Path
) -> None:
    async with fleet_gateways.fleet(size, RPM, tmp_path) as fleet:
        statuses = await fleet_gateways.burst(fleet.urls, 3 * RPM, spread_s=1.0)
    assert set(statuses) <= {200, 429}
    admitted = statuses.count(200)
    assert RPM <= admitted <= RPM + size - 1, f"{size} processes admitted {admitted} for rpm {RPM}"
