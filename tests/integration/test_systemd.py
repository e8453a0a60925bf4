"""systemd/: the unit file passes `systemd-analyze verify` and keeps the settings operators rely on;
a start that cannot listen fails at once under the notify protocol."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import msgspec
import pytest

from tests.integration.test_cli import clean_env
from tests.support import paths

REPO = paths.REPO
UNIT = REPO / "systemd" / "tollway.service"


def test_unit_verifies(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is needed (.ci/run installs systemd when it is missing)"
    # verify checks that ExecStart exists: point it at this environment's tollway.
    tollway = shutil.which("tollway") or str(Path(sys.executable).with_name("tollway"))
    unit = tmp_path / "tollway.service"
    unit.write_text(UNIT.read_text().replace("/opt/tollway/venv/bin/tollway", tollway))
    result = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "tollway.service" not in result.stderr, result.stderr


def test_unit_has_notify_watchdog_and_hardening() -> None:
    settings = dict(
        line.split("=", 1)
        for line in UNIT.read_text().splitlines()
        if "=" in line and not line.startswith("#")
    )
    assert settings["Type"] == "notify" and settings["WatchdogSec"]
    assert settings["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert settings["EnvironmentFile"] == "/etc/tollway/tollway.env"
    assert settings["StateDirectory"] == "tollway" and settings["ProtectSystem"] == "strict"
    for flag in ("NoNewPrivileges", "ProtectHome", "PrivateTmp"):
        assert settings[flag] == "yes"
    assert "AF_INET" in settings["RestrictAddressFamilies"] and settings["LimitNOFILE"]
    assert int(settings["TimeoutStopSec"]) > 30, "longer than the default shutdown grace"
    env_example = (REPO / "systemd" / "tollway.env.example").read_text()
    assert "TOLLWAY_MASTER_KEY=" in env_example


@pytest.mark.integration
@pytest.mark.parametrize("workers", [1, 2])
def test_a_taken_port_fails_the_start_at_once_with_one_line(tmp_path: Path, workers: int) -> None:
    """Under the notify protocol as systemd speaks it (a datagram socket in $NOTIFY_SOCKET): a port
    that is taken ends `tollway serve` within 2 s, non-zero, with one log line naming the address
    and no READY=1, rather than hanging until systemd's start timeout. With Redis configured, as
    when it used to hang."""
    notify_path = str(tmp_path / "notify.sock")
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(notify_path)
    notify.settimeout(0.1)
    config = tmp_path / "tollway.yaml"
    config.write_text(TAKEN_PORT_CONFIG)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
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
        started = time.monotonic()
        result = subprocess.run(
            [*command, "--workers", str(workers)],
            env={**clean_env(), "NOTIFY_SOCKET": notify_path},
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=20,
        )
        took = time.monotonic() - started
    messages = []
    with contextlib.suppress(TimeoutError):
        while True:
            messages.append(notify.recv(4096).decode())
    notify.close()
    assert result.returncode == 1
    assert took < 2.0, f"took {took:.2f} s"
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    line = msgspec.json.decode(lines[0])
    assert line["level"] == "error" and line["address"] == f"http://127.0.0.1:{port}"
    assert "address already in use" in line["msg"]
    assert messages == [f"STATUS=cannot listen on http://127.0.0.1:{port}: address already in use\nERRNO=98"]


TAKEN_PORT_CONFIG = """
logging: {request_log: "off"}
storage: {redis_url: "redis://127.0.0.1:6379/0"}
providers: {mock: {kind: mock}}
models: {demo: {targets: [{provider: mock, model: m}]}}
"""


def operations_check_config_command() -> str:
    """docs/operations.md's step 2 command that checks the config with the env file loaded, as written."""
    lines = (REPO / "docs" / "operations.md").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if "/etc/tollway/tollway.env;" in line)
    end = next(i for i in range(start, len(lines)) if "check-config /etc/tollway/tollway.yaml" in lines[i])
    return "\n".join(lines[start : end + 1])


def test_the_operations_check_config_command_reads_the_shipped_env_file(tmp_path: Path) -> None:
    # `env $(cat tollway.env | xargs)` failed on this file's comment lines ("env: '#': No such
    # file or directory"). The command must load the file's values, comments and all.
    env_file = tmp_path / "tollway.env"
    example = (REPO / "systemd" / "tollway.env.example").read_text()
    assert "\n# " in example and "\n\n" in example, "the example has the comments that broke it"
    env_file.write_text(example.replace("TOLLWAY_MASTER_KEY=\n", "TOLLWAY_MASTER_KEY=from-the-env-file\n"))
    config = tmp_path / "tollway.yaml"
    # No defaults: an unset variable is an error, so only values read from the file pass.
    config.write_text(
        'server: {host: 0.0.0.0, master_key: "${TOLLWAY_MASTER_KEY}"}\n'
        'storage: {database_url: "${TOLLWAY_DATABASE_URL}"}\n'
        'providers: {openai: {kind: openai, api_key: "${OPENAI_API_KEY}"}}\n'
        "models: {m: {targets: [{provider: openai, model: gpt-4o-mini}]}}\n"
    )
    command = operations_check_config_command()
    command = command.replace("sudo ", "").replace("/etc/tollway/tollway.env", str(env_file))
    command = command.replace("/etc/tollway/tollway.yaml", str(config))
    command = command.replace("/opt/tollway/venv/bin/tollway", f"{sys.executable} -m gateway.cli.main")
    # runuser needs root (CI is): run as this same user; elsewhere run the rest of the line as is.
    user = pwd.getpwuid(os.geteuid()).pw_name
    command = command.replace("runuser -u tollway --", f"runuser -u {user} --" if os.geteuid() == 0 else "")
    env = {k: v for k, v in clean_env().items() if not k.endswith("_API_KEY") and k != "TOLLWAY_DATABASE_URL"}
    result = subprocess.run(
        ["sh", "-c", command], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{config}: ok (1 providers, 1 models)")


UNIT_SCORE_TODAY = 1.7  # `systemd-analyze security` before the filter and PrivateUsers were added


def test_unit_exposure_stays_at_or_below_today(tmp_path: Path) -> None:
    tollway = shutil.which("tollway") or str(Path(sys.executable).with_name("tollway"))
    unit = tmp_path / "tollway.service"
    unit.write_text(UNIT.read_text().replace("/opt/tollway/venv/bin/tollway", tollway))
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    score = float(result.stdout.rsplit("Overall exposure level for tollway.service: ", 1)[1].split()[0])
    assert score <= UNIT_SCORE_TODAY, result.stdout[-2000:]
    text = UNIT.read_text()
    for line in (
        "SystemCallFilter=@system-service",
        "SystemCallFilter=~@privileged @resources",
        "RemoveIPC=yes",
    ):
        assert f"\n{line}\n" in text
    assert (
        "\nPrivateUsers=yes\n" in text and "\n#IPAddressDeny=any\n" in text and "\n#IPAddressAllow=" in text
    )


@pytest.mark.integration
def test_the_gateway_serves_under_the_units_syscall_filter_and_a_user_namespace(tmp_path: Path) -> None:
    """Two SO_REUSEPORT workers on uvloop, each with its audit writer child, under the unit's
    SystemCallFilter (tests/support/seccomp_exec.py) and, as PrivateUsers= gives, a user namespace."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = tmp_path / "tollway.yaml"
    config.write_text(
        f'logging: {{request_log: "off"}}\nstorage: {{database_url: "sqlite:///{tmp_path}/store.sqlite"}}\n'
        "providers: {mock: {kind: mock}}\nmodels: {demo: {targets: [{provider: mock, model: m}]}}\n"
    )
    serve = [sys.executable, "-m", "gateway.cli.main", "serve", "--config", str(config), "--port", str(port)]
    command = ["unshare", "--user", "--map-current-user", sys.executable, "-m", "tests.support.seccomp_exec"]
    process = subprocess.Popen(
        [*command, *serve, "--workers", "2"], cwd=REPO, env=clean_env(), stderr=subprocess.PIPE, text=True
    )
    try:
        answered = None
        deadline = time.monotonic() + 20
        while answered is None and time.monotonic() < deadline and process.poll() is None:
            with contextlib.suppress(httpx.HTTPError):
                body = {"model": "demo", "messages": [{"role": "user", "content": "filtered"}]}
                answered = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=body, timeout=5)
            time.sleep(0.1)
        assert answered is not None and answered.status_code == 200, process.poll()
        assert answered.json()["choices"][0]["message"]["content"] == "You said: filtered"
    finally:
        process.terminate()
        code = process.wait(timeout=40)
        assert process.stderr is not None
        log = process.stderr.read()
        process.stderr.close()
    assert code == 0, log[-3000:]
    assert "Operation not permitted" not in log and "Traceback" not in log, log[-3000:]
