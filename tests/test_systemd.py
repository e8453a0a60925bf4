"""systemd/: the unit file passes `systemd-analyze verify` and keeps the settings operators rely on."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
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
