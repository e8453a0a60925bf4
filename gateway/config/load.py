"""Reading a configuration file: which file, YAML, `${ENV}` substitution, the YAML 1.1 booleans
that mean a switch's value, each section decoded into its Struct (gateway/config/schema/), then
the checks across sections (gateway/config/checks.py).

The file is decoded section by section so that one run reports every error, each prefixed with
the path of the offending value (`models.smart.targets[1].provider: unknown provider 'opnai'`).
Structs are frozen and forbid unknown fields, so a typo is an error rather than a silent default.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import msgspec
import yaml

from gateway.config import statedir
from gateway.config.base_urls import trim_base_urls
from gateway.config.checks import cross_section_errors
from gateway.config.convert import convert, section, section_map
from gateway.config.env import interpolate
from gateway.config.schema import (
    AlertsConfig,
    BudgetsConfig,
    CacheConfig,
    Config,
    ConfigKey,
    FilesConfig,
    LimitsConfig,
    LoggingConfig,
    MetricsConfig,
    ModelConfig,
    ModelPrice,
    PricingConfig,
    Provider,
    ResponsesConfig,
    ServerConfig,
    StorageConfig,
    TracingConfig,
    UiConfig,
)

DEFAULT_CONFIG_PATH: Final = Path("config/tollway.yaml")
EMBEDDED_DEFAULT: Final = Path(__file__).with_name("default.yaml")
# The variable that sets the embedded default's database_url; unset, the state directory's
# tollway.sqlite is used rather than the file's relative fallback.
EMBEDDED_DATABASE_VARIABLE: Final = "TOLLWAY_DATABASE_URL"


class ConfigError(Exception):
    """The configuration is unusable; `errors` lists every problem, each with its path."""

    def __init__(self, source: str, errors: list[str]) -> None:
        super().__init__(f"{source}: " + "; ".join(errors))
        self.source = source
        self.errors = errors


# Switches a YAML 1.1 boolean may set: `request_log: off` (as one would write it) reaches us as
# False, not "off". Each path ("*" for any entry name) maps the boolean to the value it means; a
# boolean missing from a switch's map stays what it was, and msgspec reports it.
_SWITCHES: Final[dict[tuple[str, ...], dict[bool, object]]] = {
    ("logging", "request_log"): {False: "off", True: "stdout"},
    ("logging", "content"): {False: "none"},
    ("keys", "*", "log_content"): {False: "none"},
    ("models", "*", "cache"): {False: None, True: {}},
    ("models", "*", "hedge"): {False: None},
    ("models", "*", "guardrails", "pii"): {False: None},
    ("models", "*", "guardrails", "output_pii"): {False: None},
    ("models", "*", "guardrails", "injection"): {False: None},
}


def _read_switches(node: Any, path: tuple[str, ...], meaning: dict[bool, object]) -> None:
    """Replace, in place, a boolean at `path` under `node` by what it means for that switch."""
    if not isinstance(node, dict):
        return
    head, rest = path[0], path[1:]
    keys = list(node) if head == "*" else [head] if head in node else []
    for key in keys:
        value = node[key]
        if rest:
            _read_switches(value, rest, meaning)
        elif isinstance(value, bool) and value in meaning:
            node[key] = copy.deepcopy(meaning[value])  # `{}` must not be shared between entries


def yaml_error(exc: yaml.YAMLError, source: str) -> str:
    """A YAML syntax error as one `file:line:column: problem` line (editors jump to it), with
    where the enclosing construct began; PyYAML's own text names "<unicode string>" instead."""
    if not isinstance(exc, yaml.MarkedYAMLError) or exc.problem_mark is None:
        return f"(YAML) {exc}".replace("\n", " ")
    mark = exc.problem_mark  # 0-based, as PyYAML counts
    line = f"{source}:{mark.line + 1}:{mark.column + 1}: YAML syntax: {exc.problem}"
    if exc.context and exc.context_mark is not None:
        start = exc.context_mark
        line += f" ({exc.context} at line {start.line + 1}, column {start.column + 1})"
    return line


def parse_config(text: str, env: Mapping[str, str], source: str) -> Config:
    """Parse one YAML configuration; raises ConfigError listing every problem found."""
    try:
        tree = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(source, [yaml_error(exc, source)]) from None
    if tree is None:
        tree = {}
    if not isinstance(tree, dict):
        raise ConfigError(source, ["(top level): expected a mapping with server, providers, models"])
    errors: list[str] = []
    tree = interpolate(tree, env, "", errors)
    for switch, meaning in _SWITCHES.items():
        _read_switches(tree, switch, meaning)
    trim_base_urls(tree.get("providers"))
    known_sections = set(Config.__struct_fields__)
    for key in tree:
        if key not in known_sections:
            errors.append(f"{key}: unknown section (expected one of {', '.join(sorted(known_sections))})")
    # An empty section (`server:`) means defaults; anything else that is not a mapping is an error.
    server = convert(section(tree, "server"), ServerConfig, "server", errors)
    logging_ = convert(section(tree, "logging"), LoggingConfig, "logging", errors)
    providers: dict[str, Provider] = section_map(tree.get("providers"), Provider, "providers", errors)  # type: ignore[arg-type]
    models = section_map(tree.get("models"), ModelConfig, "models", errors)
    storage = convert(section(tree, "storage"), StorageConfig, "storage", errors)
    # Price entries one by one, so an error names its "<kind>/<model>" (msgspec's path would not).
    pricing_tree = section(tree, "pricing")
    prices = pricing_tree.pop("models", None) if isinstance(pricing_tree, dict) else None
    pricing = convert(pricing_tree, PricingConfig, "pricing", errors)
    price_models = section_map(prices, ModelPrice, "pricing.models", errors)
    if pricing is not None:
        pricing = msgspec.structs.replace(pricing, models=price_models)
    keys = section_map(tree.get("keys"), ConfigKey, "keys", errors)
    limits = convert(section(tree, "limits"), LimitsConfig, "limits", errors)
    budgets = convert(section(tree, "budgets"), BudgetsConfig, "budgets", errors)
    alerts = convert(section(tree, "alerts"), AlertsConfig, "alerts", errors)
    tracing = convert(section(tree, "tracing"), TracingConfig, "tracing", errors)
    cache = convert(section(tree, "cache"), CacheConfig, "cache", errors)
    responses = convert(section(tree, "responses"), ResponsesConfig, "responses", errors)
    files = convert(section(tree, "files"), FilesConfig, "files", errors)
    ui = convert(section(tree, "ui"), UiConfig, "ui", errors)
    metrics = convert(section(tree, "metrics"), MetricsConfig, "metrics", errors)
    config = Config(
        server or ServerConfig(),
        logging_ or LoggingConfig(),
        providers,
        models,
        storage or StorageConfig(),
        keys,
        pricing=pricing or PricingConfig(),
        limits=limits or LimitsConfig(),
        budgets=budgets or BudgetsConfig(),
        alerts=alerts or AlertsConfig(),
        tracing=tracing or TracingConfig(),
        cache=cache or CacheConfig(),
        responses=responses or ResponsesConfig(),
        files=files or FilesConfig(),
        ui=ui or UiConfig(),
        metrics=metrics or MetricsConfig(),
    )
    provider_tree = tree.get("providers")
    provider_names = {str(name) for name in provider_tree} if isinstance(provider_tree, dict) else set()
    errors.extend(cross_section_errors(config, provider_names))
    if errors:
        raise ConfigError(source, errors)
    return _in_state_directory(config, env, source == str(EMBEDDED_DEFAULT))


def _in_state_directory(config: Config, env: Mapping[str, str], embedded: bool) -> Config:
    """The config with the embedded default's own SQLite file in the state directory, unless
    $TOLLWAY_DATABASE_URL names one. What an operator's file says stays as written (relative
    paths from the working directory); an unset spool_dir is placed at start (gateway/server/app.py)."""
    if not embedded or env.get(EMBEDDED_DATABASE_VARIABLE):
        return config
    database_url = f"sqlite:///{statedir.locate(env) / statedir.DATABASE}"
    return msgspec.structs.replace(
        config, storage=msgspec.structs.replace(config.storage, database_url=database_url)
    )


def resolve_config_path(explicit: str | None, env: Mapping[str, str]) -> Path:
    """Which file to load: --config, else $TOLLWAY_CONFIG, else config/tollway.yaml, else the
    embedded default (which serves the mock provider with no keys)."""
    if explicit:
        return Path(explicit)
    from_env = env.get("TOLLWAY_CONFIG")
    if from_env:
        return Path(from_env)
    if DEFAULT_CONFIG_PATH.is_file():
        return DEFAULT_CONFIG_PATH
    return EMBEDDED_DEFAULT


def load_config(path: Path, env: Mapping[str, str] | None = None) -> Config:
    """Read and parse a configuration file; ConfigError when unreadable or invalid."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(path), [f"cannot read the file: {exc.strerror}"]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(str(path), [f"the file is not UTF-8 (byte {exc.start})"]) from None
    return parse_config(text, os.environ if env is None else env, str(path))
