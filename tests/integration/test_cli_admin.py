"""`tollway keys|teams|db` against the configured store, as an operator on the VM runs them."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import msgspec
import openai
import pytest

from tests.integration.test_admin import wait_ready
from tests.integration.test_cli import clean_env, start, stop

pytestmark = pytest.mark.integration


def tollway(*args: str, config: Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli.main", *args, "--config", str(config)],
        capture_output=True,
        timeout=30,
        env=clean_env(),
        cwd=config.parent,
    )


def test_cli_creates_lists_and_revokes_keys_a_running_gateway_honours(tmp_path: Path) -> None:
    config = tmp_path / "tollway.yaml"
    config.write_text(
        'server: {master_key: "cli-master-key"}\nlogging: {request_log: "off"}\n'
        f'storage: {{database_url: "sqlite:///{tmp_path}/keys.sqlite", key_refresh_s: 0.2}}\n'
        "budgets: {rates: {CHF: 0.80}}\n"
        "providers: {mock: {kind: mock}}\nmodels: {demo: {targets: [{provider: mock, model: m}]}}\n"
    )
    assert tollway("db", "migrate", config=config).stdout.startswith(b"schema at version")
    team = msgspec.json.decode(
        tollway("teams", "create", "--name", "ops", "--models", "demo", config=config).stdout
    )
    made = tollway(
        "keys",
        "create",
        "--name",
        "deploy-bot",
        "--team",
        team["id"],
        "--rpm",
        "30",
        "--budget",
        "200",
        "--currency",
        "CHF",
        "--meta",
        "owner=ops",
        config=config,
    )
    assert made.returncode == 0, made.stderr
    key = msgspec.json.decode(made.stdout)
    assert key["budget"] == {"amount": 200.0, "currency": "CHF", "period": "month", "soft_pct": None}
    assert key["metadata"] == {"owner": "ops"} and b"shown only this once" in made.stderr
    listed = tollway("keys", "list", config=config).stdout
    assert key["id"].encode() in listed and key["key"].encode() not in listed

    served = start(["--config", str(config)], cwd=tmp_path)
    try:
        wait_ready(served.url)  # keys are loaded from the store after the port opens
        with openai.OpenAI(base_url=served.url + "/v1", api_key=key["key"], max_retries=0) as client:
            assert client.chat.completions.create(
                model="demo", messages=[{"role": "user", "content": "x"}]
            ).choices
            assert tollway("keys", "revoke", key["id"], config=config).returncode == 0
            deadline = time.monotonic() + 3
            while True:
                try:
                    client.models.list()
                except openai.AuthenticationError:
                    break
                assert time.monotonic() < deadline, "the gateway must pick up a revoke made by the CLI"
                time.sleep(0.05)
    finally:
        assert stop(served) == 0


def test_cli_rejects_bad_input_and_missing_store(tmp_path: Path) -> None:
    config = tmp_path / "tollway.yaml"
    config.write_text(f'storage: {{database_url: "sqlite:///{tmp_path}/keys.sqlite"}}\n')
    bad = tollway("keys", "create", "--name", "x", "--budget", "-5", config=config)
    assert bad.returncode == 1 and b"budget.amount" in bad.stderr
    assert tollway("keys", "show", "key_missing", config=config).returncode == 1
    no_store = tmp_path / "nostore.yaml"
    no_store.write_text("providers: {}\n")
    assert tollway("keys", "list", config=no_store).returncode == 2


def test_db_backup_is_an_online_consistent_copy(tmp_path: Path) -> None:
    config = tmp_path / "tollway.yaml"
    config.write_text(f'storage: {{database_url: "sqlite:///{tmp_path}/keys.sqlite"}}\n')
    for i in range(3):
        assert tollway("keys", "create", "--name", f"k{i}", config=config).returncode == 0
    copy = tmp_path / "backups" / "copy.sqlite"
    done = tollway("db", "backup", str(copy), config=config)
    assert done.returncode == 0, done.stderr
    restored = tmp_path / "restored.yaml"
    restored.write_text(f'storage: {{database_url: "sqlite:///{copy}"}}\n')
    assert tollway("keys", "list", config=restored).stdout.count(b'"id"') == 3
    again = tollway("db", "backup", str(copy), config=config)
    assert again.returncode == 1 and b"exists" in again.stderr, "a backup never overwrites a file"
    pg = tmp_path / "pg.yaml"
    pg.write_text('storage: {database_url: "postgresql://postgres@127.0.0.1:5432/test"}\n')
    assert b"pg_dump" in tollway("db", "backup", str(tmp_path / "x"), config=pg).stderr


def test_cli_sets_log_content_on_teams_and_keys(tmp_path: Path) -> None:
    config = tmp_path / "tollway.yaml"
    config.write_text(f'storage: {{database_url: "sqlite:///{tmp_path}/keys.sqlite"}}\n')
    made = tollway("teams", "create", "--name", "legal", "--log-content", "masked", config=config)
    assert made.returncode == 0, made.stderr
    team = msgspec.json.decode(made.stdout)
    assert team["log_content"] == "masked"
    key = msgspec.json.decode(
        tollway(
            "keys", "create", "--name", "quiet", "--team", team["id"], "--log-content", "none", config=config
        ).stdout
    )
    assert key["log_content"] == "none"
    shown = msgspec.json.decode(tollway("keys", "show", key["id"], config=config).stdout)
    assert shown["log_content"] == "none"
    inherits = msgspec.json.decode(tollway("keys", "create", "--name", "plain", config=config).stdout)
    assert "log_content" not in inherits, "without the option the key inherits"
    bad = tollway("keys", "create", "--name", "x", "--log-content", "everything", config=config)
    assert bad.returncode == 2 and b"--log-content" in bad.stderr and b"invalid choice" in bad.stderr


def test_cli_refuses_a_key_beyond_its_team(tmp_path: Path) -> None:
    config = tmp_path / "tollway.yaml"
    config.write_text(f'storage: {{database_url: "sqlite:///{tmp_path}/keys.sqlite"}}\n')
    made = tollway(
        "teams",
        "create",
        "--name",
        "demo-only",
        "--models",
        "demo*",
        "--rpm",
        "60",
        "--budget",
        "10",
        config=config,
    )
    assert made.returncode == 0, made.stderr
    team = msgspec.json.decode(made.stdout)
    for options, field in (
        (["--models", "secret-model"], b"models"),
        (["--models", "demo,*"], b"models"),
        (["--rpm", "61"], b"limits.rpm"),
        (["--budget", "11"], b"budget.amount"),
        (["--budget", "5", "--currency", "CHF"], b"budget"),
    ):
        refused = tollway("keys", "create", "--name", "k", "--team", team["id"], *options, config=config)
        assert refused.returncode == 1, (options, refused.stdout)
        assert b"asks for more than its team allows" in refused.stderr and field in refused.stderr
        assert b"sk-tw-" not in refused.stdout, "no secret for a key that was not made"
    assert tollway("keys", "list", config=config).stdout == b"", "nothing written"
    fits = tollway(
        "keys",
        "create",
        "--name",
        "k",
        "--team",
        team["id"],
        "--models",
        "demo-1",
        "--rpm",
        "60",
        config=config,
    )
    assert fits.returncode == 0, fits.stderr
    assert msgspec.json.decode(fits.stdout)["models"] == ["demo-1"]
