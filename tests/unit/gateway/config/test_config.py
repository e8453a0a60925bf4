"""Tests for gateway/config/ (the schema, its loading, and the `tollway check-config` command that reports its errors)."""

import logging
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.cli import main as cli
from gateway.config.load import (
    DEFAULT_CONFIG_PATH,
    EMBEDDED_DEFAULT,
    ConfigError,
    interpolate,
    load_config,
    parse_config,
    resolve_config_path,
)
from gateway.config.schema import PROVIDER_KINDS, Config, MockProvider, OpenAIProvider, TargetConfig
from tests.support import paths

REPO = paths.REPO

ISSUE_EXAMPLE = """\
server: {host: 127.0.0.1, port: 4000, master_key: "${TOLLWAY_MASTER_KEY}", max_body_bytes: 4194304}
providers:
  openai: {kind: openai, base_url: "https://api.openai.com/v1", api_key: "${OPENAI_API_KEY}"}
  local:  {kind: openai, base_url: "http://127.0.0.1:8000/v1"}
  mock:   {kind: mock}
models:
  gpt-4o-mini: {targets: [{provider: openai, model: gpt-4o-mini}]}
  demo:        {targets: [{provider: mock, model: mock-1}]}
"""
ISSUE_ENV = {"OPENAI_API_KEY": "sk-test-0123456789", "TOLLWAY_MASTER_KEY": "tw-master-key"}

# Seven problems in five sections and entries; one run must name every one of them.
BROKEN = """\
server: {port: 70000}
providers:
  openai: {kind: openai, base_url: "ftp://api.openai.com/v1"}
  weird:  {kind: opanai}
  ok:     {kind: openai}
models:
  smart: {targets: [{provider: ok, model: a}, {provider: opnai, model: b}]}
  empty: {targets: []}
  odd:   {targets: [{provider: weird, model: m}]}
extras: {}
"""
BROKEN_ERRORS = [
    "extras: unknown section",
    "server.port: Expected `int` <= 65535",
    "providers.openai.base_url: Expected `str` matching regex",
    "providers.weird.kind: Invalid value 'opanai'",
    "models.smart.targets[1].provider: unknown provider 'opnai'",
    "models.empty.targets: Expected `array` of length >= 1",
]


def errors_of(text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, env or {}, "test.yaml")
    assert caught.value.source == "test.yaml"
    assert caught.value.errors
    return caught.value.errors


def assert_errors(errors: list[str], prefixes: list[str]) -> None:
    """Each prefix starts exactly one error, and there is no error besides them."""
    for prefix in prefixes:
        assert sum(error.startswith(prefix) for error in errors) == 1, (prefix, errors)
    assert len(errors) == len(prefixes), errors


# --- interpolation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "env", "expected"),
    [
        pytest.param("${A}", {"A": "x"}, "x", id="plain"),
        pytest.param("pre-${A}-post", {"A": "x"}, "pre-x-post", id="embedded"),
        pytest.param("${A}${B}", {"A": "x", "B": "y"}, "xy", id="two"),
        pytest.param("${A:-fallback}", {}, "fallback", id="default-used"),
        pytest.param("${A:-fallback}", {"A": "set"}, "set", id="default-ignored"),
        pytest.param(
            "${A:-http://127.0.0.1:8000/v1}", {}, "http://127.0.0.1:8000/v1", id="default-with-colons"
        ),
        pytest.param("${A:-}", {}, "", id="empty-default"),
        pytest.param("${A}", {"A": ""}, "", id="set-to-empty"),
        pytest.param("$$", {}, "$", id="escape"),
        pytest.param("$${A}", {"A": "x"}, "${A}", id="escaped-reference"),
        pytest.param("pa$$word", {}, "pa$word", id="escape-inside"),
        pytest.param("cost: $5", {}, "cost: $5", id="lone-dollar"),
        pytest.param("${A}", {"A": "${B}"}, "${B}", id="value-not-expanded-again"),
        pytest.param("${A}", {"A": r"a\1b$$"}, r"a\1b$$", id="value-taken-literally"),
        pytest.param("{A}", {"A": "x"}, "{A}", id="no-dollar"),
    ],
)
def test_interpolate_strings(template: str, env: dict[str, str], expected: str) -> None:
    errors: list[str] = []
    assert interpolate(template, env, "server.host", errors) == expected
    assert errors == []


def test_interpolate_walks_lists_and_nested_maps() -> None:
    tree: Any = {"a": [{"b": "${X}"}, "${Y:-y}", 3, None], "c": {"d": {"e": "<${X}>"}}, "f": True}
    errors: list[str] = []
    out = interpolate(tree, {"X": "x"}, "", errors)
    assert out == {"a": [{"b": "x"}, "y", 3, None], "c": {"d": {"e": "<x>"}}, "f": True}
    assert errors == []


def test_interpolate_reports_each_missing_variable_with_its_path() -> None:
    tree: Any = {"a": [{"b": "${X}"}], "c": {"d": "${Y}-${X:-ok}"}}
    errors: list[str] = []
    interpolate(tree, {}, "", errors)
    assert errors == [
        "a[0].b: environment variable X is not set (use ${X:-default})",
        "c.d: environment variable Y is not set (use ${Y:-default})",
    ]


def test_default_applies_when_variable_is_set_but_empty() -> None:
    config = parse_config('server: {port: "${TOLLWAY_PORT:-4100}"}', {"TOLLWAY_PORT": ""}, "test.yaml")
    assert config.server.port == 4100


def test_interpolated_values_reach_the_config() -> None:
    text = """\
server: {port: "${PORT}", max_body_bytes: "${MAX:-65536}", master_key: "${KEY}"}
providers:
  local: {kind: openai, base_url: "http://${HOST}:8000/v1", headers: {OpenAI-Organization: "${ORG}"}}
models:
  m: {targets: [{provider: local, model: "${MODEL:-llama}"}, {provider: local, model: "${MODEL2}"}]}
"""
    env = {"PORT": "4001", "KEY": "k", "HOST": "10.0.0.5", "ORG": "org-42", "MODEL2": "qwen"}
    config = parse_config(text, env, "test.yaml")
    assert config.server.port == 4001  # a string from the environment, converted
    assert config.server.max_body_bytes == 65536
    assert config.server.master_key == "k"
    local = config.providers["local"]
    assert isinstance(local, OpenAIProvider)
    assert local.base_url == "http://10.0.0.5:8000/v1"
    assert local.headers == {"OpenAI-Organization": "org-42"}
    assert config.models["m"].targets == [TargetConfig("local", "llama"), TargetConfig("local", "qwen")]


def test_missing_variables_in_lists_and_maps_are_named_with_their_path() -> None:
    text = """\
providers:
  local: {kind: openai, headers: {OpenAI-Organization: "${ORG}"}}
models:
  m: {targets: [{provider: local, model: a}, {provider: local, model: "x-${MODEL}"}]}
"""
    assert_errors(
        errors_of(text),
        [
            "providers.local.headers.OpenAI-Organization: environment variable ORG is not set",
            "models.m.targets[1].model: environment variable MODEL is not set",
        ],
    )


# --- errors: paths, and every one of them at once ---------------------------------------------


def test_every_error_is_reported_in_one_go_each_with_its_path() -> None:
    errors = errors_of(BROKEN)
    assert_errors(errors, BROKEN_ERRORS)
    assert "models.smart.targets[1].provider: unknown provider 'opnai' (known: ok, openai, weird)" in errors
    for error in errors:
        assert re.match(r"^[\w-]+(\.[\w-]+|\[\d+\])*: \S", error), error


def test_config_error_message_names_the_source_and_each_error() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(BROKEN, {}, "conf/broken.yaml")
    text = str(caught.value)
    assert text.startswith("conf/broken.yaml: ")
    for prefix in BROKEN_ERRORS:
        assert prefix in text


@pytest.mark.parametrize(
    ("text", "error"),
    [
        pytest.param(
            "servers: {port: 4000}", "servers: unknown section (expected one of", id="unknown-section"
        ),
        pytest.param(
            "providers: {openai: {kind: openai, api_kye: sk-1}}",
            "providers.openai.api_kye: unknown field",
            id="unknown-provider-field",
        ),
        pytest.param("server: {prot: 4000}", "server.prot: unknown field", id="unknown-server-field"),
        pytest.param(
            "providers: {openai: {kind: opneai}}",
            "providers.openai.kind: Invalid value 'opneai'",
            id="bad-kind",
        ),
        pytest.param(
            "providers: {openai: {base_url: 'https://x'}}",
            "providers.openai: Object missing required field `kind`",
            id="missing-kind",
        ),
        pytest.param(
            "providers: {local: {kind: openai, base_url: 'ftp://host/v1'}}",
            "providers.local.base_url: ",
            id="base-url-ftp",
        ),
        pytest.param(
            "providers: {local: {kind: openai, base_url: 'localhost:8000/v1'}}",
            "providers.local.base_url: ",
            id="base-url-no-scheme",
        ),
        pytest.param("models: {m: {targets: []}}", "models.m.targets: ", id="empty-targets"),
        pytest.param(
            "models: {m: {targets: [{provider: x}]}}",
            "models.m.targets[0]: Object missing required field `model`",
            id="target-without-model",
        ),
        pytest.param(
            "models: {m: {targets: [{provider: x, model: ''}]}}",
            "models.m.targets[0].model: ",
            id="target-empty-model",
        ),
        pytest.param(
            "models: {m: {targets: [{provider: openai, model: gpt}]}}",
            "models.m.targets[0].provider: unknown provider 'openai' (known: none configured)",
            id="no-providers-at-all",
        ),
        pytest.param("server: {port: 65536}", "server.port: ", id="port-too-high"),
        pytest.param("server: {port: -1}", "server.port: ", id="port-negative"),
        pytest.param("server: {port: http}", "server.port: ", id="port-not-a-number"),
        pytest.param("server: {max_body_bytes: 10}", "server.max_body_bytes: ", id="body-limit-tiny"),
        pytest.param(
            "providers: {mock: {kind: mock, timeout: {connect_s: 0}}}",
            "providers.mock.timeout.connect_s: ",
            id="zero-timeout",
        ),
        pytest.param(
            "providers: {mock: {kind: mock, fail_status: 200}}", "providers.mock.fail_status: ", id="ok"
        ),
        pytest.param("providers: [mock]", "providers: expected a mapping", id="providers-list"),
        pytest.param("models: {m: gpt-4o}", "models.m: ", id="model-not-mapping"),
        pytest.param("logging: {request_log: 5}", "logging.request_log: ", id="log-not-string"),
    ],
)
def test_single_error_names_its_path(text: str, error: str) -> None:
    assert_errors(errors_of(text), [error])


def test_provider_that_failed_is_not_reported_again_by_its_models() -> None:
    text = """\
providers: {fast: {kind: openai, base_url: "nope"}}
models:
  a: {targets: [{provider: fast, model: x}]}
  b: {targets: [{provider: fast, model: y}]}
"""
    assert_errors(errors_of(text), ["providers.fast.base_url: "])


def test_broken_yaml_is_an_error_with_its_location() -> None:
    errors = errors_of("server:\n  port: [4000\nproviders: {}\n")
    assert len(errors) == 1
    assert errors[0].startswith("test.yaml:3:10: YAML syntax: ")
    assert "\n" not in errors[0]


@pytest.mark.parametrize("text", ["- server\n- models\n", "just a string\n", "42\n"])
def test_top_level_must_be_a_mapping(text: str) -> None:
    assert errors_of(text) == ["(top level): expected a mapping with server, providers, models"]


@pytest.mark.parametrize("text", ["", "# nothing yet\n", "server:\nproviders:\nmodels:\n"])
def test_empty_file_and_sections_mean_defaults(text: str) -> None:
    assert parse_config(text, {}, "test.yaml") == Config()


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as caught:
        load_config(path, {})
    assert caught.value.source == str(path)
    assert caught.value.errors == ["cannot read the file: No such file or directory"]


def test_directory_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path, {})
    assert caught.value.errors == ["cannot read the file: Is a directory"]


def test_file_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("server: {host: caf\xe9}\n".encode("latin-1"))
    with pytest.raises(ConfigError) as caught:
        load_config(path, {})
    assert caught.value.source == str(path)


def test_two_errors_in_one_entry_are_both_reported() -> None:
    assert_errors(
        errors_of("server: {port: 70000, max_body_bytes: 10}"),
        ["server.port: ", "server.max_body_bytes: "],
    )


def test_load_config_uses_the_given_environment(tmp_path: Path) -> None:
    path = tmp_path / "tollway.yaml"
    path.write_text(ISSUE_EXAMPLE, encoding="utf-8")
    config = load_config(path, ISSUE_ENV)
    assert config.server.master_key == "tw-master-key"


# --- which file, and the shipped ones ----------------------------------------------------------


@pytest.fixture
def in_empty_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def make_local_config(root: Path) -> None:
    (root / "config").mkdir()
    (root / "config" / "tollway.yaml").write_text("providers: {}\n", encoding="utf-8")


def test_resolve_prefers_explicit_path(in_empty_dir: Path) -> None:
    make_local_config(in_empty_dir)
    assert resolve_config_path("given.yaml", {"TOLLWAY_CONFIG": "env.yaml"}) == Path("given.yaml")


def test_resolve_then_environment(in_empty_dir: Path) -> None:
    make_local_config(in_empty_dir)
    assert resolve_config_path(None, {"TOLLWAY_CONFIG": "/etc/tollway.yaml"}) == Path("/etc/tollway.yaml")
    assert resolve_config_path("", {"TOLLWAY_CONFIG": "/etc/tollway.yaml"}) == Path("/etc/tollway.yaml")


def test_resolve_then_config_dir_of_working_directory(in_empty_dir: Path) -> None:
    make_local_config(in_empty_dir)
    path = resolve_config_path(None, {"TOLLWAY_CONFIG": ""})
    assert path == DEFAULT_CONFIG_PATH
    assert path.resolve() == in_empty_dir / "config" / "tollway.yaml"


def test_resolve_falls_back_to_embedded_default(in_empty_dir: Path) -> None:
    path = resolve_config_path(None, {})
    assert path == EMBEDDED_DEFAULT
    assert path.is_file()


def test_shipped_config_is_the_embedded_default() -> None:
    assert (REPO / "config" / "tollway.yaml").read_bytes() == EMBEDDED_DEFAULT.read_bytes()


@pytest.mark.parametrize(
    "path", [REPO / "config" / "tollway.yaml", EMBEDDED_DEFAULT], ids=["repo", "embedded"]
)
def test_shipped_config_serves_demo_with_an_empty_environment(path: Path) -> None:
    config = load_config(path, {})
    assert "demo" in config.models
    (target,) = config.models["demo"].targets
    assert isinstance(config.providers[target.provider], MockProvider)
    assert not config.server.master_key  # none needed on loopback
    assert cli.is_loopback(config.server.host)


def test_issue_example_loads_with_its_keys_set() -> None:
    config = parse_config(ISSUE_EXAMPLE, ISSUE_ENV, "tollway.yaml")
    assert config.server.master_key == "tw-master-key"
    assert (config.server.host, config.server.port, config.server.max_body_bytes) == (
        "127.0.0.1",
        4000,
        4194304,
    )
    openai, local, mock = config.providers["openai"], config.providers["local"], config.providers["mock"]
    assert isinstance(openai, OpenAIProvider) and openai.api_key == "sk-test-0123456789"
    assert isinstance(local, OpenAIProvider) and local.api_key is None
    assert local.base_url == "http://127.0.0.1:8000/v1"
    assert isinstance(mock, MockProvider)
    assert config.models["gpt-4o-mini"].targets == [TargetConfig("openai", "gpt-4o-mini")]
    assert config.models["demo"].targets == [TargetConfig("mock", "mock-1")]


def test_issue_example_names_both_missing_keys() -> None:
    assert_errors(
        errors_of(ISSUE_EXAMPLE),
        [
            "server.master_key: environment variable TOLLWAY_MASTER_KEY is not set",
            "providers.openai.api_key: environment variable OPENAI_API_KEY is not set",
        ],
    )


# --- tollway check-config ----------------------------------------------------------------------


@pytest.fixture(autouse=True)
def restore_tollway_logger() -> Iterator[None]:
    """cli.main() installs a handler on the `tollway` logger bound to the (captured) stderr."""
    logger = logging.getLogger("tollway")
    handlers, level, propagate = logger.handlers[:], logger.level, logger.propagate
    yield
    logger.handlers[:] = handlers
    logger.setLevel(level)
    logger.propagate = propagate


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "tollway.yaml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_check_config_ok(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in ISSUE_ENV.items():
        monkeypatch.setenv(name, value)
    path = write(tmp_path, ISSUE_EXAMPLE)
    assert cli.main(["check-config", path]) == 0
    out, err = capsys.readouterr()
    assert out == f"{path}: ok (3 providers, 2 models)\n"
    assert err == ""


def test_check_config_lists_every_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("TOLLWAY_MASTER_KEY", raising=False)
    path = write(tmp_path, BROKEN.replace("port: 70000", 'port: 70000, master_key: "${TOLLWAY_MASTER_KEY}"'))
    assert cli.main(["check-config", path]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    expected = [*BROKEN_ERRORS, "server.master_key: environment variable TOLLWAY_MASTER_KEY is not set"]
    assert lines[0] == f"{path}: {len(expected)} error(s)"
    assert_errors([line.removeprefix("  ") for line in lines[1:]], expected)
    assert all(line.startswith("  ") for line in lines[1:])


def test_check_config_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = str(tmp_path / "absent.yaml")
    assert cli.main(["check-config", path]) == 1
    assert (
        capsys.readouterr().err == f"{path}: 1 error(s)\n  cannot read the file: No such file or directory\n"
    )


def test_check_config_as_a_command(tmp_path: Path) -> None:
    env = {**os.environ, **ISSUE_ENV}
    env.pop("TOLLWAY_CONFIG", None)
    good = tmp_path / "good.yaml"
    good.write_text(ISSUE_EXAMPLE, encoding="utf-8")
    bad = tmp_path / "bad.yaml"
    bad.write_text(BROKEN, encoding="utf-8")

    def check(path: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "gateway.cli.main", "check-config", str(path)],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=60,
            check=False,
        )

    ok = check(good)
    assert (ok.returncode, ok.stdout, ok.stderr) == (0, f"{good}: ok (3 providers, 2 models)\n", "")
    failed = check(bad)
    assert failed.returncode == 1
    assert failed.stdout == ""
    for prefix in BROKEN_ERRORS:
        assert f"\n  {prefix}" in failed.stderr


# --- fallback chains: retry, pools, hedging, regions, breakers (issue 8) ----------------------

ROUTING = """
providers:
  eu: {kind: mock, region: eu, breaker: {failures: 5, cooldown_s: 12}}
  us: {kind: mock}
models:
  smart:
    targets:
      - {provider: eu, model: x, pool: main, weight: 3}
      - {provider: us, model: x, pool: main}
      - {provider: us, model: big, on_context_length: true}
    retry: {attempts: 2, backoff_ms: 50}
    balance: least_inflight
    hedge: {after_ms: 300}
    timeout: {connect_s: 2, first_byte_s: 20, total_s: 120}
"""


def test_routing_fields_parse_with_their_defaults() -> None:
    config = parse_config(ROUTING, {}, "test.yaml")
    smart = config.models["smart"]
    assert smart.retry.attempts == 2 and smart.retry.backoff_ms == 50 and smart.retry.max_wait_ms == 5000
    assert smart.balance == "least_inflight" and smart.hedge is not None and smart.hedge.after_ms == 300
    assert [t.pool for t in smart.targets] == ["main", "main", None]
    assert smart.targets[0].weight == 3 and smart.targets[2].on_context_length
    assert config.providers["eu"].region == "eu" and config.providers["us"].region is None
    assert config.providers["eu"].breaker.failures == 5 and config.providers["us"].breaker.cooldown_s == 30
    plain = parse_config(
        "models: {m: {targets: [{provider: p, model: x}]}}\nproviders: {p: {kind: mock}}", {}, "t"
    )
    assert plain.models["m"].retry.attempts == 1 and plain.models["m"].hedge is None


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        pytest.param(
            "{targets: [{provider: eu, model: a, pool: p}, {provider: us, model: b}, {provider: us, model: c, pool: p}]}",
            "models.m.targets[2].pool: members of pool 'p' must be adjacent",
            id="pool-not-adjacent",
        ),
        pytest.param(
            "{targets: [{provider: eu, model: a, weight: 0}]}", "models.m.targets[0].weight", id="weight"
        ),
        pytest.param(
            "{targets: [{provider: eu, model: a}], retry: {attempts: 0}}",
            "models.m.retry.attempts",
            id="attempts",
        ),
        pytest.param(
            "{targets: [{provider: eu, model: a}], hedge: {}}", "models.m.hedge", id="hedge-without-delay"
        ),
        pytest.param(
            "{targets: [{provider: eu, model: a}], balance: fastest}", "models.m.balance", id="balance"
        ),
    ],
)
def test_routing_errors_name_their_path(model: str, expected: str) -> None:
    text = f"providers: {{eu: {{kind: mock, region: eu}}, us: {{kind: mock}}}}\nmodels: {{m: {model}}}\n"
    with pytest.raises(ConfigError) as caught:
        parse_config(text, {}, "test.yaml")
    assert any(e.startswith(expected) for e in caught.value.errors), caught.value.errors


# --- kind: bedrock ------------------------------------------------------------------------------

BEDROCK_ENV = {
    "AWS_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE",
    "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
}
BEDROCK_KEYS = 'aws_access_key_id: "${AWS_ACCESS_KEY_ID}", aws_secret_access_key: "${AWS_SECRET_ACCESS_KEY}"'


def bedrock_provider(fields: str, env: dict[str, str] | None = None) -> Any:
    config = parse_config(
        f"providers: {{bed: {{kind: bedrock, {fields}}}}}", BEDROCK_ENV if env is None else env, "test.yaml"
    )
    return config.providers["bed"]


def test_bedrock_with_aws_keys_from_the_environment() -> None:
    provider = bedrock_provider(
        f'aws_region: eu-central-1, {BEDROCK_KEYS}, aws_session_token: "${{AWS_SESSION_TOKEN:-}}", region: eu'
    )
    assert type(provider).__name__ == "BedrockProvider"
    assert provider.base_url == "https://bedrock-runtime.eu-central-1.amazonaws.com"
    assert (provider.aws_access_key_id, provider.aws_secret_access_key) == (
        BEDROCK_ENV["AWS_ACCESS_KEY_ID"],
        BEDROCK_ENV["AWS_SECRET_ACCESS_KEY"],
    )
    assert not provider.aws_session_token  # `${VAR:-}` unset: no token, not an error
    assert provider.api_key is None
    assert (provider.aws_region, provider.region) == ("eu-central-1", "eu")  # AWS region vs residency


def test_bedrock_with_an_api_key_and_its_own_endpoint_needs_no_region() -> None:
    provider = bedrock_provider(
        'api_key: "${AWS_BEARER_TOKEN_BEDROCK}", base_url: "https://vpce.example/"',
        {"AWS_BEARER_TOKEN_BEDROCK": "ABSKbedrock-key-0123"},
    )
    assert (provider.api_key, provider.base_url, provider.aws_region) == (
        "ABSKbedrock-key-0123",
        "https://vpce.example/",
        None,
    )


def test_bedrock_session_token_and_explicit_base_url() -> None:
    provider = bedrock_provider(
        f'aws_region: us-west-2, {BEDROCK_KEYS}, aws_session_token: "${{AWS_SESSION_TOKEN}}", base_url: "http://127.0.0.1:9000"',
        {**BEDROCK_ENV, "AWS_SESSION_TOKEN": "IQoJb3JpZ2luX2VjEXAMPLETOKEN"},
    )
    assert provider.aws_session_token == "IQoJb3JpZ2luX2VjEXAMPLETOKEN"
    assert provider.base_url == "http://127.0.0.1:9000"


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        pytest.param(
            "aws_region: us-east-1, aws_credentials: keys",
            "providers.bed: aws_credentials: keys needs aws_access_key_id and aws_secret_access_key",
            id="keys-source-without-keys",
        ),
        pytest.param(
            'aws_region: us-east-1, aws_access_key_id: "${AWS_ACCESS_KEY_ID}"',
            "providers.bed: give both aws_access_key_id and aws_secret_access_key, or neither",
            id="key-id-without-secret",
        ),
        pytest.param(
            'aws_region: us-east-1, aws_access_key_id: "${AWS_ACCESS_KEY_ID}", aws_secret_access_key: "${EMPTY:-}"',
            "providers.bed: give both aws_access_key_id",
            id="secret-empty-from-the-environment",
        ),
        pytest.param(
            'api_key: "${EMPTY:-}"',
            "providers.bed: aws_region is required (e.g. us-east-1) when base_url is not given",
            id="api-key-empty-from-the-environment",
        ),
        pytest.param(
            f"aws_region: us-east-1, {BEDROCK_KEYS}, aws_credentials: imds",
            "providers.bed: aws_access_key_id is given but aws_credentials is imds",
            id="keys-and-another-source",
        ),
        pytest.param(
            f"aws_region: us-east-1, {BEDROCK_KEYS}, aws_profile: prod",
            "providers.bed: aws_profile names the source",
            id="keys-and-a-profile",
        ),
        pytest.param(
            "api_key: ABSK-key, aws_region: us-east-1, aws_profile: prod",
            "providers.bed: api_key (a Bedrock API key) authenticates alone",
            id="api-key-and-a-profile",
        ),
        pytest.param(
            "aws_region: us-east-1, assume_role: {role_arn: 'arn:aws:iam::123:role/x'}",
            "providers.bed.assume_role.role_arn: Expected `str` matching regex",
            id="role-arn-malformed",
        ),
        pytest.param(
            "aws_region: us-east-1, assume_role: {role_arn: 'arn:aws:iam::123456789012:role/x', duration_s: 60}",
            "providers.bed.assume_role.duration_s: Expected `int` >= 900",
            id="role-duration-too-short",
        ),
        pytest.param(
            "aws_region: us-east-1, aws_credentials: sso",
            "providers.bed.aws_credentials: Invalid enum value 'sso'",
            id="unknown-source",
        ),
        pytest.param(
            BEDROCK_KEYS,
            "providers.bed: aws_region is required (e.g. us-east-1) when base_url is not given",
            id="no-region-no-base-url",
        ),
        pytest.param(
            "api_key: ABSK-key",
            "providers.bed: aws_region is required (e.g. us-east-1) when base_url is not given",
            id="api-key-no-region-no-base-url",
        ),
        pytest.param(
            f'{BEDROCK_KEYS}, base_url: "http://127.0.0.1:9000"',
            "providers.bed: aws_region is required (e.g. us-east-1) to sign requests with AWS keys",
            id="aws-keys-need-a-region-even-with-base-url",
        ),
        pytest.param(
            f"aws_region: us-east-1, {BEDROCK_KEYS}, aws_secret_key: x",
            "providers.bed.aws_secret_key: unknown field",
            id="typo",
        ),
        pytest.param(
            f"aws_region: us-east-1, {BEDROCK_KEYS}, base_url: bedrock.example",
            "providers.bed.base_url: ",
            id="base-url-without-scheme",
        ),
    ],
)
def test_bedrock_errors_name_their_path(fields: str, error: str) -> None:
    text = f"providers: {{bed: {{kind: bedrock, {fields}}}}}"
    assert_errors(errors_of(text, BEDROCK_ENV), [error])


def test_bedrock_without_keys_takes_the_aws_chain_and_its_options() -> None:
    provider = bedrock_provider(
        "aws_region: eu-west-1, aws_profile: prod, aws_sts_endpoint: 'https://sts.vpce.example', "
        "assume_role: {role_arn: 'arn:aws:iam::123456789012:role/bedrock', external_id: ext-42}",
        {},
    )
    assert provider.signs_requests and provider.aws_credentials == "chain"
    assert (provider.aws_profile, provider.aws_sts_endpoint) == ("prod", "https://sts.vpce.example")
    assert provider.assume_role.role_arn == "arn:aws:iam::123456789012:role/bedrock"
    assert (provider.assume_role.external_id, provider.assume_role.session_name) == ("ext-42", "tollway")
    assert provider.assume_role.duration_s == 3600
    assert bedrock_provider("aws_region: us-east-1", {}).aws_access_key_id is None


def test_bedrock_region_must_be_a_region_name() -> None:
    text = f'providers: {{bed: {{kind: bedrock, aws_region: "us-east-1.evil.example/", {BEDROCK_KEYS}}}}}'
    errors = errors_of(text, BEDROCK_ENV)
    assert errors[0].startswith("providers.bed.aws_region: Expected `str` matching regex"), errors


def test_bedrock_model_targets_resolve() -> None:
    text = f"""
providers: {{bed: {{kind: bedrock, aws_region: us-east-1, {BEDROCK_KEYS}}}}}
models: {{claude: {{targets: [{{provider: bed, model: "anthropic.claude-3-5-sonnet-20240620-v1:0"}}]}}}}
"""
    config = parse_config(text, BEDROCK_ENV, "test.yaml")
    assert config.models["claude"].targets[0].model == "anthropic.claude-3-5-sonnet-20240620-v1:0"


# --- keys declared in the file -------------------------------------------------------------------


def test_a_config_key_may_set_its_own_log_content() -> None:
    text = "keys: {quiet: {secret: 'quiet-secret-0123456789', log_content: none}, plain: {secret_hash: '%s'}}"
    config = parse_config(text % ("sha256:" + "0" * 64), {}, "test.yaml")
    assert config.keys["quiet"].log_content == "none"
    assert config.keys["plain"].log_content is None, "absent: logging.content applies"


def test_an_unknown_log_content_names_its_path() -> None:
    text = "keys: {quiet: {secret: 'quiet-secret-0123456789', log_content: everything}}"
    assert_errors(errors_of(text), ["keys.quiet.log_content: Invalid enum value 'everything'"])


def test_yaml_booleans_turn_switches_on_and_off() -> None:
    # `off`, `no` and `false` are one YAML 1.1 boolean; docs/configuration.md writes `request_log: off`.
    text = """\
logging: {request_log: off, content: no}
providers: {mock: {kind: mock}}
keys: {app: {secret: "0123456789abcdef", log_content: off}}
models:
  plain: {targets: [{provider: mock, model: m}], cache: off, hedge: off,
          guardrails: {pii: off, output_pii: false, injection: off}}
  cached: {targets: [{provider: mock, model: m}], cache: on}
"""
    config = parse_config(text, {}, "switches.yaml")
    assert config.logging.request_log == "off"
    assert config.logging.content == "none"
    assert config.keys["app"].log_content == "none"
    plain = config.models["plain"]
    assert plain.cache is None and plain.hedge is None
    assert plain.guardrails is not None
    assert (plain.guardrails.pii, plain.guardrails.output_pii, plain.guardrails.injection) == (
        None,
        None,
        None,
    )
    assert config.models["cached"].cache is not None and config.models["cached"].cache.ttl_s == 300
    assert parse_config("logging: {request_log: on}\n", {}, "on.yaml").logging.request_log == "stdout"


def test_a_boolean_a_switch_has_no_meaning_for_is_still_an_error() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config("logging: {content: yes}\n", {}, "yes.yaml")
    assert caught.value.errors == ["logging.content: Expected `str`, got `bool`"]


def test_a_typo_does_not_hide_the_other_errors_of_its_entry() -> None:
    # A `retries:` typo used to drop the whole model, so its unknown provider went unreported.
    text = """\
providers: {openai: {kind: openai, extra: 1, max_connections: 0}}
models: {smart: {retries: {attempts: 2}, retry: {attempts: 99}, targets: [{provider: opnai, model: x}]}}
"""
    with pytest.raises(ConfigError) as caught:
        parse_config(text, {}, "typos.yaml")
    extra, *rest = caught.value.errors
    # The fields of kind openai only, not of every kind.
    assert extra.startswith("providers.openai.extra: unknown field (expected one of: timeout, ")
    assert "serves_responses" in extra and "aws_region" not in extra and "did you mean" not in extra
    assert rest == [
        "providers.openai.max_connections: Expected `int` >= 1",
        "models.smart.retries: unknown field (expected one of: targets, timeout, retry, balance, hedge, "
        "limits, cache, guardrails); did you mean 'retry'?",
        "models.smart.retry.attempts: Expected `int` <= 10",
        "models.smart.targets[0].provider: unknown provider 'opnai' (known: openai)",
    ]


def test_a_yaml_syntax_error_names_the_file_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "tollway.yaml"
    path.write_text("server:\n  port: 4000\n bad: [\n")
    result = subprocess.run(
        [sys.executable, "-m", "gateway.cli.main", "check-config", str(path)], capture_output=True, timeout=30
    )
    assert result.returncode == 1
    lines = result.stderr.decode().splitlines()
    assert lines[1].strip() == (
        f"{path}:3:2: YAML syntax: expected <block end>, but found '<block mapping start>' "
        "(while parsing a block mapping at line 1, column 1)"
    )
    assert "<unicode string>" not in result.stderr.decode()


def test_an_invalid_kind_or_choice_lists_the_valid_ones_and_the_closest() -> None:
    text = """\
providers: {p: {kind: gemni, api_key: k}, m: {kind: mock}}
models: {x: {balance: latncy, targets: [{provider: m, model: x}]}}
"""
    with pytest.raises(ConfigError) as caught:
        parse_config(text, {}, "kinds.yaml")
    kind_error, balance_error = caught.value.errors
    assert kind_error.startswith("providers.p.kind: Invalid value 'gemni' (expected one of: openai, azure, ")
    assert kind_error.endswith("; did you mean 'gemini'?")
    assert all(kind in kind_error for kind in PROVIDER_KINDS)
    assert balance_error == (
        "models.x.balance: Invalid enum value 'latncy' "
        "(expected one of: latency, least_inflight, weighted); did you mean 'latency'?"
    )
