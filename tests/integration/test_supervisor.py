"""`tollway serve --workers N`: a real supervisor with real worker processes on one port."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from tests.conftest import closed_port, wait_for
from tests.integration.test_cli import clean_env

pytestmark = pytest.mark.integration

CONFIG = """
logging: {request_log: "off"}
providers: {mock: {kind: mock}}
models: {demo: {targets: [{provider: mock, model: m}]}}
"""


@contextlib.contextmanager
def supervised(
    config: Path, tmp_path: Path, workers: int = 2
) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """`tollway serve --workers N` on a free port, started once it told systemd (a notify socket
    of ours) that it is ready: the supervisor and the port. SIGTERM on leaving; killed if it has
    not exited by then."""
    notify_path = str(tmp_path / "notify.sock")
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(notify_path)
    notify.settimeout(20)
    port = closed_port()
    command = [
        sys.executable,
        "-m",
        "gateway.cli.main",
        "serve",
        "--config",
        str(config),
        "--port",
        str(port),
    ]
    supervisor = subprocess.Popen(
        [*command, "--workers", str(workers)],
        env={**clean_env(), "NOTIFY_SOCKET": notify_path},
        cwd=tmp_path,
        stderr=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
    )
    try:
        assert notify.recv(4096).startswith(b"READY=1"), (
            "the supervisor tells systemd once all workers are ready"
        )
        yield supervisor, port
    finally:
        if supervisor.poll() is None:
            supervisor.send_signal(signal.SIGTERM)
            try:
                supervisor.wait(timeout=20)
            except subprocess.TimeoutExpired:
                supervisor.kill()
                supervisor.wait()
        notify.close()


def ask(url: str) -> str:
    # A fresh connection each time, so the kernel spreads them over the workers.
    with httpx.Client(timeout=5) as client:
        response = client.post(
            url + "/v1/chat/completions",
            json={"model": "demo", "messages": [{"role": "user", "content": "hi"}]},
            headers={"connection": "close"},
        )
    assert response.status_code == 200
    return response.headers["x-request-id"][: len("req_") + 12]  # the per-process prefix


def test_workers_share_the_port_are_replaced_and_stop_cleanly(tmp_path: Path) -> None:
    config = tmp_path / "tollway.yaml"
    config.write_text(CONFIG)
    with supervised(config, tmp_path) as (supervisor, port):
        url = f"http://127.0.0.1:{port}"
        prefixes = {ask(url) for _ in range(40)}
        assert len(prefixes) == 2, "both workers serve"

        workers = psutil.Process(supervisor.pid).children()
        assert len(workers) == 2
        victim = workers[0].pid
        os.kill(victim, signal.SIGKILL)
        assert wait_for(
            lambda: len([c for c in psutil.Process(supervisor.pid).children() if c.pid != victim]) == 2,
            timeout=15.0,
        ), "a killed worker is replaced"
        assert wait_for(lambda: len({ask(url) for _ in range(20)}) == 2, timeout=15.0), (
            "and the new one serves"
        )

        workers = psutil.Process(supervisor.pid).children()
        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(timeout=20) == 0
        _, alive = psutil.wait_procs(workers, timeout=5)
        assert not alive, "the workers stop with their supervisor"


def test_limits_hold_across_workers_sharing_redis(tmp_path: Path) -> None:
    import uuid

    redis_url = os.environ.get("TOLLWAY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    secret = f"sk-tw-workers-{uuid.uuid4().hex}"  # a fresh key: no counts left in Redis from earlier runs
    config = tmp_path / "tollway.yaml"
    config.write_text(
        CONFIG
        + f'storage: {{redis_url: "{redis_url}"}}\n'
        + "limits: {sync_interval_s: 0.05}\n"
        + f"keys: {{app: {{secret: '{secret}', limits: {{rpm: 20}}}}}}\n"
    )
    with supervised(config, tmp_path) as (_, port):
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        admitted, served_by = 0, set()
        body = {"model": "demo", "messages": [{"role": "user", "content": "hi"}]}
        for _ in range(60):
            with httpx.Client(timeout=5) as client:  # a new connection each time: both workers take turns
                response = client.post(url, json=body, headers={"authorization": f"Bearer {secret}"})
            if response.status_code == 200:
                admitted += 1
                served_by.add(response.headers["x-request-id"][:16])
            else:
                assert response.status_code == 429
        assert len(served_by) == 2, "both workers served"
        # The documented bound for N processes: the limit plus N-1 (one request per process that
        # has not yet synced the key), plus what refills during the burst (20 per minute).
        assert 20 <= admitted <= 20 + 1 + 2, f"{admitted} admitted for rpm 20 across 2 workers"
