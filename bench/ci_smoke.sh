#!/usr/bin/env bash
# What CI runs for the bench, from .ci/run with the repo root as cwd and `python`
# the project's interpreter. Two gates, each bounded in time and loopback-only:
#   1. python -m bench --smoke: tollway vs the floor and the bare mock upstream
#      (< 60 s); fails on any failed request or tollway < 0.45x the floor's req/s.
#   2. ~25 s of locust's realistic mix (30 users) against tollway on its built-in
#      mock provider; fails on any locust failure. bench.locust_run writes the temp
#      config, starts and always stops tollway.
set -euo pipefail

# Keys and limits on; accounting off: on this 2-core box its SQLite writes compete with the
# gateway for the CPU (about -20% throughput, see docs/benchmarks.md), which would make the gate flaky.
python -m bench --smoke --features keys,limits
python -m bench.locust_run --users 30 --spawn-rate 10 --run-time 25
