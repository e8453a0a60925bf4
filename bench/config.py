"""Tollway configs the bench runs with, written as YAML to a temp dir.

`bench_config` points tollway at the mock upstream (for `python -m bench`);
`mock_config` uses tollway's built-in mock provider (for the locust run in CI).
Both keep the request log on: a benchmark of a gateway that logs nothing would
flatter it.

    python -m bench.config mock --port 8080 --request-log /tmp/requests.log > tollway.yaml
"""

from __future__ import annotations

import argparse
from typing import Final

import msgspec
import yaml

from bench.scenario import GATEWAY_MODEL, MASTER_KEY, UPSTREAM_KEY, UPSTREAM_MODEL

MOCK_MODELS: Final = ("demo", "demo-slow")
UPSTREAM_POOL: Final = 1024


class Features(msgspec.Struct, frozen=True):
    """Gateway features the bench measures with turned on.

    Empty while tollway has none of them. When virtual keys, rate limits or spend
    accounting land, add a flag here and the matching section in `_feature_sections`,
    so `python -m bench` keeps measuring the request path users actually run.
    """


def _feature_sections(features: Features) -> dict[str, object]:
    # The place for `keys:`, `limits:`, `budgets:` sections keyed off `features`.
    return {}


def _server(port: int, request_log: str) -> dict[str, object]:
    return {
        "server": {"host": "127.0.0.1", "port": port, "master_key": MASTER_KEY},
        "logging": {"request_log": request_log},
    }


def bench_config(port: int, upstream_port: int, request_log: str, features: Features | None = None) -> str:
    """Tollway in front of the mock upstream: model `bench` -> provider `up`."""
    config: dict[str, object] = {
        **_server(port, request_log),
        "providers": {
            "up": {
                "kind": "openai",
                "base_url": f"http://127.0.0.1:{upstream_port}/v1",
                "api_key": UPSTREAM_KEY,
                # The default pool (256) would queue the 257th concurrent stream until
                # another ends; the streams scenario drives 512.
                "max_connections": UPSTREAM_POOL,
            }
        },
        "models": {GATEWAY_MODEL: {"targets": [{"provider": "up", "model": UPSTREAM_MODEL}]}},
        **_feature_sections(features or Features()),
    }
    return yaml.safe_dump(config, sort_keys=False)


def mock_config(port: int, request_log: str) -> str:
    """Tollway on its built-in mock provider: `demo` fast, `demo-slow` at 5 ms a token."""
    config: dict[str, object] = {
        **_server(port, request_log),
        "providers": {"mock": {"kind": "mock"}, "mockslow": {"kind": "mock", "latency_ms_per_token": 5}},
        "models": {
            "demo": {"targets": [{"provider": "mock", "model": "mock-1"}]},
            "demo-slow": {"targets": [{"provider": "mockslow", "model": "mock-1"}]},
        },
    }
    return yaml.safe_dump(config, sort_keys=False)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.config", description="Print a tollway bench config."
    )
    parser.add_argument("kind", choices=("bench", "mock"))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream-port", type=int, help="required for kind 'bench'")
    parser.add_argument("--request-log", required=True)
    args = parser.parse_args(argv)
    if args.kind == "bench":
        if args.upstream_port is None:
            parser.error("--upstream-port is required for kind 'bench'")
        print(bench_config(args.port, args.upstream_port, args.request_log), end="")
    else:
        print(mock_config(args.port, args.request_log), end="")


if __name__ == "__main__":
    main()
