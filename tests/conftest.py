from __future__ import annotations

import os
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.native_upstream import native_upstream  # noqa: F401 - a fixture, shared by every test file
from tests.support.redis_clients import shared, unreachable  # noqa: F401 - Redis client fixtures
from tests.support.servers import LoopThread, Upstream, start_gateway, start_upstream
from tests.support.ui_client import idp, sso_gateway  # noqa: F401 - fixtures of the web UI's tests

MASTER_KEY = "test-master-key-7f3a"

# A Bedrock provider without keys falls through the AWS credential chain to the instance metadata
# service at 169.254.169.254: never a test's target. Tests of that source point it at a local
# server (AWS_EC2_METADATA_SERVICE_ENDPOINT) and lift this for themselves.
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
# The state directory (gateway/config/statedir.py) of every gateway a test starts without naming its
# paths: one per test run, never the developer's ~/.local/state/tollway nor another run's.
os.environ.pop("STATE_DIRECTORY", None)
os.environ["XDG_STATE_HOME"] = tempfile.mkdtemp(prefix="tollway-test-state-")


@pytest.fixture(scope="session")
def loop_thread() -> Iterator[LoopThread]:
    thread = LoopThread()
    yield thread
    thread.stop()


@pytest.fixture
def upstream(loop_thread: LoopThread) -> Iterator[Upstream]:
    state = Upstream()
    runner = loop_thread.run(start_upstream(state))
    yield state
    loop_thread.run(runner.cleanup())


def closed_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@dataclass
class Gateway:
    url: str
    log_path: Path

    @property
    def v1(self) -> str:
        return self.url + "/v1"

    def log_text(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""


def gateway_config(upstream: Upstream, log_path: Path, extra_models: str = "") -> str:
    return f"""
server: {{master_key: "{MASTER_KEY}", max_body_bytes: 65536}}
logging: {{request_log: "{log_path}"}}
providers:
  up: {{kind: openai, base_url: "{upstream.url}", api_key: "{upstream.api_key}",
        timeout: {{connect_s: 1, first_byte_s: 1.5, total_s: 5}}}}
  mock: {{kind: mock}}
  broken: {{kind: mock, fail_status: 503}}
  dead: {{kind: openai, base_url: "http://127.0.0.1:{closed_port()}/v1", api_key: "sk-dead-secret-0000"}}
models:
  up-model: {{targets: [{{provider: up, model: real-model}}]}}
  up-short: {{targets: [{{provider: up, model: real-model}}], timeout: {{connect_s: 1, first_byte_s: 2, total_s: 0.6}}}}
  demo: {{targets: [{{provider: mock, model: mock-1}}]}}
  broken: {{targets: [{{provider: broken, model: mock-1}}]}}
  dead: {{targets: [{{provider: dead, model: any}}]}}
{extra_models}
"""


@pytest.fixture
def gateway(loop_thread: LoopThread, upstream: Upstream, tmp_path: Path) -> Iterator[Gateway]:
    log_path = tmp_path / "requests.log"
    runner, url = loop_thread.run(start_gateway(gateway_config(upstream, log_path), {}))
    yield Gateway(url, log_path)
    loop_thread.run(runner.cleanup())


@pytest.fixture
def start_gateway_with(loop_thread: LoopThread, tmp_path: Path) -> Iterator[Callable[[str], Gateway]]:
    """Starts a gateway from a YAML config text (the master key is MASTER_KEY); stopped after."""
    runners = []

    def start(config_yaml: str) -> Gateway:
        log_path = tmp_path / f"requests-{len(runners)}.log"
        text = (
            f'server: {{master_key: "{MASTER_KEY}"}}\nlogging: {{request_log: "{log_path}"}}\n' + config_yaml
        )
        runner, url = loop_thread.run(start_gateway(text, {}))
        runners.append(runner)
        return Gateway(url, log_path)

    yield start
    for runner in runners:
        loop_thread.run(runner.cleanup(), timeout=30)


def wait_for(condition: Callable[[], bool], timeout: float = 3.0) -> bool:
    """Poll `condition` until it holds or `timeout` passes (for what the gateway does off the
    request path: log lines, records); its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()
