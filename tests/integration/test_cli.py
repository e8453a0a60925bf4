"""The `tollway` command as a user runs it: a real subprocess, real sockets, the openai SDK."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import msgspec
import openai
import pytest

from tests.support import paths

pytestmark = pytest.mark.integration

REPO = paths.REPO


class Served:
    def __init__(self, process: subprocess.Popen[bytes], started: dict[str, object]) -> None:
        self.process = process
        self.started = started
        self.url = str(started["address"])


def start(args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 15.0) -> Served:
    """Run `tollway serve` and wait for its start-up line (JSON on stderr)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli.main", "serve", "--port", "0", *args],
        cwd=cwd,
        env={**clean_env(), **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert process.stderr is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line:
            break
        record = msgspec.json.decode(line)
        if record.get("msg") == "listening":
            return Served(process, record)
    process.kill()
    raise AssertionError(f"tollway did not start: exit {process.wait()}")


def stop(served: Served) -> int:
    """SIGTERM, as systemd sends it; a process still there after 10 s is killed (so no test leaks
    it) and the test fails with what the process last logged."""
    served.process.terminate()
    assert served.process.stderr is not None
    try:
        return served.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        served.process.kill()
        served.process.wait()
        tail = served.process.stderr.read()[-4000:].decode(errors="replace")
        raise AssertionError(f"tollway did not stop within 10 s of SIGTERM; it logged:\n{tail}") from None
    finally:
        served.process.stderr.close()


def clean_env() -> dict[str, str]:
    """The environment without Tollway's own variables, as on a fresh machine (the state
    directory: this test run's, from tests/conftest.py)."""
    own = ("TOLLWAY_CONFIG", "TOLLWAY_MASTER_KEY", "STATE_DIRECTORY")
    return {key: value for key, value in os.environ.items() if key not in own}


def run_tollway(config: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
    """`tollway ARGS --config CONFIG` to its end, in the config's folder, output captured."""
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli.main", *args, "--config", str(config)],
        capture_output=True,
        timeout=timeout,
        env=clean_env(),
        cwd=config.parent,
    )


@pytest.fixture
def default_server(tmp_path: Path) -> Iterator[Served]:
    served = start([], cwd=tmp_path)  # no config/ here: the embedded default serves
    yield served
    stop(served)


def test_embedded_default_answers_with_the_mock_provider(default_server: Served) -> None:
    assert default_server.started["models"] == ["demo", "demo-slow"]
    assert str(default_server.started["config"]).endswith("default.yaml")
    with openai.OpenAI(base_url=default_server.url + "/v1", api_key="unused", max_retries=0) as sdk:
        answer = sdk.chat.completions.create(model="demo", messages=[{"role": "user", "content": "ping"}])
        assert answer.choices[0].message.content == "You said: ping"
        streamed = sdk.chat.completions.create(
            model="demo", messages=[{"role": "user", "content": "ping"}], stream=True
        )
        assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == "You said: ping"


def test_config_is_found_in_the_working_directory_and_sigterm_exits_cleanly(tmp_path: Path) -> None:
    (tmp_path / "config").mkdir()
    shutil.copy(REPO / "config" / "tollway.yaml", tmp_path / "config" / "tollway.yaml")
    served = start([], cwd=tmp_path, env={"TOLLWAY_MASTER_KEY": "cli-test-key"})
    try:
        assert served.started["config"] == "config/tollway.yaml"
        assert served.started["auth"] == "master_key"
        with openai.OpenAI(base_url=served.url + "/v1", api_key="wrong", max_retries=0) as sdk:
            with pytest.raises(openai.AuthenticationError):
                sdk.models.list()
        with openai.OpenAI(base_url=served.url + "/v1", api_key="cli-test-key", max_retries=0) as sdk:
            assert [m.id for m in sdk.models.list()] == ["demo", "demo-slow"]
    finally:
        assert stop(served) == 0


def test_refuses_a_public_address_without_a_master_key(tmp_path: Path) -> None:
    env = clean_env()
    result = subprocess.run(
        [sys.executable, "-m", "gateway.cli.main", "serve", "--host", "0.0.0.0", "--port", "0"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        timeout=15,
    )
    assert result.returncode == 2
    assert b"master key" in result.stderr and b"TOLLWAY_MASTER_KEY" in result.stderr


def test_a_broken_config_stops_serve_with_every_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("providers: {a: {kind: opnai}}\nmodels: {m: {targets: [{provider: b, model: x}]}}\n")
    result = subprocess.run(
        [sys.executable, "-m", "gateway.cli.main", "serve", "--config", str(path)],
        cwd=tmp_path,
        capture_output=True,
        timeout=15,
    )
    assert result.returncode == 1
    assert b"providers.a.kind" in result.stderr
    assert b"models.m.targets[0].provider: unknown provider 'b'" in result.stderr


def test_sigterm_lets_open_streams_finish_then_exits_zero(tmp_path: Path) -> None:
    import threading

    import httpx

    config = tmp_path / "slow.yaml"
    config.write_text(
        'logging: {request_log: "off"}\n'
        "providers: {slow: {kind: mock, latency_ms_per_token: 40}}\n"
        "models: {slow: {targets: [{provider: slow, model: m}]}}\n"
    )
    served = start(["--config", str(config)], cwd=tmp_path)
    words = " ".join(f"w{i}" for i in range(25))  # ~30 tokens: about 1.2 s per stream
    results: list[str] = []

    def stream() -> None:
        body = {"model": "slow", "stream": True, "messages": [{"role": "user", "content": words}]}
        with httpx.stream("POST", served.url + "/v1/chat/completions", json=body, timeout=30) as response:
            results.append("".join(response.iter_text()))

    threads = [threading.Thread(target=stream) for _ in range(5)]
    for thread in threads:
        thread.start()
    time.sleep(0.4)  # the streams are open and mid-answer
    served.process.terminate()
    for thread in threads:
        thread.join(timeout=20)
    assert served.process.wait(timeout=20) == 0
    assert served.process.stderr is not None
    served.process.stderr.close()
    assert len(results) == 5
    assert all("data: [DONE]\n\n" in text for text in results), "every open stream completes"


def test_sighup_reloads_without_losing_a_request_and_refuses_a_broken_config(tmp_path: Path) -> None:
    import asyncio
    import signal

    import httpx

    config = tmp_path / "tollway.yaml"
    base = (
        'logging: {request_log: "off"}\n'
        "providers: {mock: {kind: mock}, slow: {kind: mock, latency_ms_per_token: 15}}\n"
        "models:\n  demo: {targets: [{provider: mock, model: m}]}\n  slow: {targets: [{provider: slow, model: m}]}\n"
    )
    config.write_text(base)
    served = start(["--config", str(config)], cwd=tmp_path)
    words = " ".join(f"w{i}" for i in range(30))

    async def one(client: httpx.AsyncClient, i: int) -> bool:
        stream = i % 2 == 0
        body = {
            "model": "slow" if stream else "demo",
            "stream": stream,
            "messages": [{"role": "user", "content": words}],
        }
        response = await client.post(served.url + "/v1/chat/completions", json=body)
        return response.status_code == 200 and (not stream or "data: [DONE]\n\n" in response.text)

    async def load_during_reload() -> list[bool]:
        limits = httpx.Limits(max_connections=300)
        async with httpx.AsyncClient(timeout=30, limits=limits) as client:
            requests = [asyncio.create_task(one(client, i)) for i in range(300)]
            await asyncio.sleep(0.3)  # streams are open and mid-answer
            config.write_text(base + "  added: {targets: [{provider: mock, model: m}]}\n")
            served.process.send_signal(signal.SIGHUP)
            return await asyncio.gather(*requests)

    try:
        results = asyncio.run(load_during_reload())
        assert all(results), f"{results.count(False)} of 300 requests failed across the reload"
        models: list[str] = []
        deadline = time.monotonic() + 10
        while "added" not in models and time.monotonic() < deadline:
            models = [m["id"] for m in httpx.get(served.url + "/v1/models").json()["data"]]
            time.sleep(0.1)
        assert "added" in models, "the reloaded config serves new requests"

        config.write_text("providers: {mock: {kind: opnai}}\n")
        served.process.send_signal(signal.SIGHUP)
        assert served.process.stderr is not None
        deadline = time.monotonic() + 10
        refused = b""
        while b"reload refused" not in refused and time.monotonic() < deadline:
            refused += served.process.stderr.readline()
        assert b"reload refused" in refused and b"providers.mock.kind" in refused
        models = [m["id"] for m in httpx.get(served.url + "/v1/models").json()["data"]]
        assert models == ["demo", "slow", "added"], "a broken config keeps the old one serving"
    finally:
        assert stop(served) == 0


def test_version_prints_the_installed_package_version(tmp_path: Path) -> None:
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    result = subprocess.run(
        [sys.executable, "-m", "gateway.cli.main", "--version"], cwd=tmp_path, capture_output=True, timeout=15
    )
    assert result.returncode == 0
    assert result.stdout.decode().strip() == f"tollway {declared}"


def test_the_embedded_default_keeps_its_state_out_of_the_working_directory(tmp_path: Path) -> None:
    cwd, xdg = tmp_path / "cwd", tmp_path / "xdg"
    cwd.mkdir()
    served = start([], cwd=cwd, env={"XDG_STATE_HOME": str(xdg)})
    try:
        with openai.OpenAI(base_url=served.url + "/v1", api_key="unused", max_retries=0) as sdk:
            sdk.chat.completions.create(model="demo", messages=[{"role": "user", "content": "ping"}])
    finally:
        assert stop(served) == 0
    assert list(cwd.iterdir()) == []
    state = xdg / "tollway"
    assert served.started["state_directory"] == str(state)
    assert (state / "tollway.sqlite").is_file() and (state / "tollway-spool").is_dir()


def test_systemds_state_directory_wins_and_the_start_line_names_it(tmp_path: Path) -> None:
    cwd, xdg, systemd = tmp_path / "cwd", tmp_path / "xdg", tmp_path / "lib-tollway"
    cwd.mkdir()
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli.main", "serve", "--port", "0"],
        cwd=cwd,
        env={**clean_env(), "XDG_STATE_HOME": str(xdg), "STATE_DIRECTORY": f"{systemd}:{tmp_path / 'other'}"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert process.stderr is not None
    records = []
    for line in process.stderr:
        records.append(msgspec.json.decode(line))
        if records[-1].get("msg") == "listening":
            break
    served = Served(process, records[-1])
    try:  # a request first: the default store and spool are opened and written
        with openai.OpenAI(base_url=served.url + "/v1", api_key="unused", max_retries=0) as sdk:
            sdk.chat.completions.create(model="demo", messages=[{"role": "user", "content": "ping"}])
    finally:
        assert stop(served) == 0
    assert served.started["state_directory"] == str(systemd)
    assert (systemd / "tollway.sqlite").is_file() and (systemd / "tollway-spool").is_dir()
    assert list(cwd.iterdir()) == [] and not xdg.exists() and not (tmp_path / "other").exists()
