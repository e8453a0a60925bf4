"""Tollway configs the bench runs with, written as YAML to a temp dir.

`bench_config` points tollway at the mock upstream (for `python -m bench`);
`mock_config` uses tollway's built-in mock provider (for the locust run in CI).
Both keep the request log on: a benchmark of a gateway that logs nothing would
flatter it.

    python -m bench.config mock --port 8080 --request-log /tmp/requests.log > tollway.yaml
"""

from __future__ import annotations

import argparse
import os
from typing import Final

import msgspec
import yaml

from bench.scenario import GATEWAY_MODEL, MASTER_KEY, UPSTREAM_KEY, UPSTREAM_MODEL

MOCK_MODELS: Final = ("demo", "demo-slow")
UPSTREAM_POOL: Final = 1024


class Features(msgspec.Struct, frozen=True):
    """Gateway features the bench measures with turned on (all by default: the request path users
    run). `--features none` measures the bare path for comparison."""

    keys: bool = True  # requests carry a virtual key (checked from memory), not the master key
    limits: bool = True  # the key has rpm/tpm limits and a budget, far above what the bench uses
    accounting: bool = True  # a SQLite store: every request priced and written to the audit trail
    cache: bool = False  # the answer cache on the bench model (every request after the first hits)
    guardrails: bool = False  # PII masking and the injection screen on the bench model


ALL_FEATURES: Final = Features()
NO_FEATURES: Final = Features(keys=False, limits=False, accounting=False)


def _model(features: Features) -> dict[str, object]:
    model: dict[str, object] = {"targets": [{"provider": "up", "model": UPSTREAM_MODEL}]}
    if features.cache:
        model["cache"] = {"ttl_s": 300}
    if features.guardrails:
        model["guardrails"] = {"pii": "mask", "injection": "flag"}
    return model


BENCH_KEY: Final = "sk-tw-bench-virtual-key-0123456789abcdef"


def parse_features(text: str) -> Features:
    """`all` (keys, limits, accounting), `none`, or a comma-separated subset of
    keys,limits,accounting,cache,guardrails."""
    if text == "all":
        return ALL_FEATURES
    if text == "none":
        return NO_FEATURES
    names = {name.strip() for name in text.split(",") if name.strip()}
    unknown = names - set(Features.__struct_fields__)
    if unknown:
        raise ValueError(f"unknown features: {', '.join(sorted(unknown))}")
    return Features(**{name: name in names for name in Features.__struct_fields__})


def features_text(features: Features) -> str:
    """The --features text that parses back to `features`: all, none, or the names turned on."""
    if features == ALL_FEATURES:
        return "all"
    if features == NO_FEATURES:
        return "none"
    return ",".join(name for name in Features.__struct_fields__ if getattr(features, name))


def client_key(features: Features) -> str:
    return BENCH_KEY if features.keys else MASTER_KEY


def _feature_sections(features: Features, work_dir: str) -> dict[str, object]:
    sections: dict[str, object] = {}
    if features.keys:
        key: dict[str, object] = {"secret": BENCH_KEY}
        if features.limits:
            key["limits"] = {"rpm": 10_000_000, "tpm": 10_000_000_000}
            key["budget"] = {"amount": 1_000_000, "period": "month"}
        sections["keys"] = {"bench": key}
    if features.accounting:
        sections["storage"] = {
            # The embedded default (SQLite), or the store production runs on, when given.
            "database_url": os.environ.get("TOLLWAY_BENCH_DATABASE_URL")
            or f"sqlite:///{work_dir}/bench.sqlite",
            "spool_dir": f"{work_dir}/spool",
        }
        sections["pricing"] = {"models": {f"openai/{UPSTREAM_MODEL}": {"input": 1.0, "output": 2.0}}}
    return sections


def _server(port: int, request_log: str) -> dict[str, object]:
    return {
        "server": {"host": "127.0.0.1", "port": port, "master_key": MASTER_KEY},
        "logging": {"request_log": request_log},
    }


def bench_config(
    port: int, upstream_port: int, request_log: str, features: Features | None = None, work_dir: str = "/tmp"
) -> str:
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
                "http_client": os.environ.get("TOLLWAY_BENCH_HTTP_CLIENT", "lean"),
            }
        },
        "models": {GATEWAY_MODEL: _model(features or Features())},
        **_feature_sections(features or Features(), work_dir),
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
