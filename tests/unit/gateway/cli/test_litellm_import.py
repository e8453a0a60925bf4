"""`tollway import-litellm` on LiteLLM's own configs (tests/support/fixtures/litellm/: its docs' examples
and the proxy config its repository ships): each is translated, the result passes check-config,
and the routes, targets, fallbacks and what could not come across are the ones expected."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.cli.litellm_import import Translation, translate
from gateway.config.load import parse_config
from tests.support import paths

REPO = paths.REPO
FIXTURES = paths.FIXTURES / "litellm"


def translated(name: str) -> tuple[Translation, dict[str, Any]]:
    """A fixture translated, checked as `tollway check-config` checks it (with every variable the
    output reads set, as the operator would), and the written YAML read back."""
    translation = translate((FIXTURES / name).read_text())
    text = translation.render(name)
    env = {var: f"value-of-{var}" for var in translation.env}
    env |= {v: "https://resource.example.com" for v in translation.env if v.endswith("_API_BASE")}
    env |= {v: "us-east-1" for v in translation.env if v.endswith("REGION_NAME")}
    parse_config(text, env, name)  # raises ConfigError listing every problem
    return translation, yaml.safe_load(text)


def targets(config: dict[str, Any], model: str) -> list[tuple[str, str, str | None]]:
    """A model's targets as (provider kind, upstream model, pool)."""
    kinds = {name: spec["kind"] for name, spec in config["providers"].items()}
    return [(kinds[t["provider"]], t["model"], t.get("pool")) for t in config["models"][model]["targets"]]


def why(translation: Translation, path: str) -> str:
    found = [reason for where, reason in translation.unsupported if where == path]
    assert found, f"{path} not listed among {[p for p, _ in translation.unsupported]}"
    return found[0]


def test_every_fixture_translates_and_passes_check_config() -> None:
    names = sorted(p.name for p in FIXTURES.glob("*.yaml") if p.name != "repo_proxy_config.yaml")
    assert len(names) >= 8
    for name in names:
        _, config = translated(name)
        assert config["models"], name


def test_quick_start_balances_the_azure_pair_and_keeps_bedrock() -> None:
    translation, config = translated("docs_configs_quick_start.yaml")
    assert targets(config, "gpt-4o") == [("azure", "gpt-4o-eu", "gpt-4o"), ("azure", "gpt-4o-ca", "gpt-4o")]
    assert [t.get("weight", 1) for t in config["models"]["gpt-4o"]["targets"]] == [1, 1]  # rpm 6 and 6
    eu = config["providers"][config["models"]["gpt-4o"]["targets"][0]["provider"]]
    assert eu["base_url"] == "https://my-endpoint-europe-berri-992.openai.azure.com"
    assert eu["api_key"] == "${AZURE_API_KEY_EU}" and eu["limits"] == {"rpm": 6}
    assert targets(config, "anthropic-claude") == [("bedrock", "anthropic.claude-instant-v1", None)]
    claude = config["providers"][config["models"]["anthropic-claude"]["targets"][0]["provider"]]
    assert claude["aws_region"] == "us-east-1" and claude["aws_access_key_id"] == "${AWS_ACCESS_KEY_ID}"
    vllm = config["providers"][config["models"]["vllm-models"]["targets"][0]["provider"]]
    assert (vllm["kind"], vllm["base_url"]) == ("openai", "http://0.0.0.0:4000/v1")
    assert targets(config, "vllm-models") == [("openai", "facebook/opt-125m", None)]
    assert config["server"]["master_key"] == "sk-1234"
    assert "wildcard" in why(translation, "model_list[5]")
    assert "callbacks" in why(translation, "litellm_settings.success_callback")
    assert "alerts" in why(translation, "general_settings.alerting")
    assert {"AZURE_API_KEY_EU", "AZURE_API_KEY_CA", "AWS_REGION_NAME"} <= translation.env


def test_load_balancing_example_fallbacks_retries_timeouts_and_alias() -> None:
    translation, config = translated("docs_configs_load_balancing.yaml")
    # zephyr-beta is served through Hugging Face, which has no adapter: so are its fallbacks.
    assert "zephyr-beta" not in config["models"]
    assert "Hugging Face" in why(translation, "model_list[0] (zephyr-beta)")
    assert "not a translated model" in why(translation, "fallbacks[0].zephyr-beta")
    gpt4o = config["models"]["gpt-4o"]
    assert targets(config, "gpt-4o") == [("openai", "gpt-4o", None), ("openai", "gpt-3.5-turbo-16k", None)]
    assert gpt4o["targets"][1]["on_context_length"] is True  # context_window_fallbacks
    assert gpt4o["retry"] == {"attempts": 3}  # router_settings.num_retries 2 wins over litellm_settings' 3
    assert config["models"]["gpt-4"] == gpt4o  # model_group_alias
    provider = config["providers"][gpt4o["targets"][0]["provider"]]
    assert provider["timeout"] == {"total_s": 30.0} and provider["breaker"] == {"failures": 4}
    assert config["storage"]["redis_url"] == "redis://:<your redis password>@<your redis host>:1992"


def test_model_params_example_headers_organization_and_request_defaults() -> None:
    translation, config = translated("docs_configs_model_params.yaml")
    team1 = config["providers"][config["models"]["gpt-4-team1"]["targets"][0]["provider"]]
    assert team1["api_version"] == "2024-10-21"
    assert "usage of streams" in why(translation, "model_list[0].litellm_params.api_version")
    assert "a fixed Entra ID token expires" in why(translation, "model_list[0].litellm_params.azure_ad_token")
    assert "clients send them" in why(translation, "model_list[1].litellm_params.temperature")
    openai = config["providers"][config["models"]["openai-gpt-4o"]["targets"][0]["provider"]]
    assert openai["headers"] == {
        "AI-Resource Group": "ishaan-resource",
        "OpenAI-Organization": "org-ikDc4ex8NB",
    }
    assert openai["api_key"] == "sk-123"
    assert "mistral-7b" not in config["models"]
    assert "not an http(s) URL" in why(translation, "model_list[3].litellm_params.api_base")


def test_router_settings_example_weights_by_rpm_and_drops_the_placeholder() -> None:
    translation, config = translated("docs_load_balancing.yaml")
    assert targets(config, "gpt-3.5-turbo") == [
        ("azure", "gpt-turbo-small-ca", "gpt-3.5-turbo"),
        ("azure", "gpt-turbo-large", "gpt-3.5-turbo"),
    ]
    # rpm 6 : 1440, scaled into weights of at most 1000 (4 : 1000), then reduced.
    assert [t.get("weight", 1) for t in config["models"]["gpt-3.5-turbo"]["targets"]] == [1, 250]
    assert config["models"]["gpt-4"]["targets"] == config["models"]["gpt-3.5-turbo"]["targets"]
    assert "not an http(s) URL" in why(translation, "model_list[0].litellm_params.api_base")


def test_fallback_example_and_a_fallback_from_a_dropped_model() -> None:
    translation, config = translated("docs_reliability_fallbacks.yaml")
    assert targets(config, "gpt-4") == [("azure", "gpt-4-ca", None)]
    assert "not a translated model" in why(translation, "fallbacks[0].gpt-3.5-turbo")


def test_cache_example_becomes_a_redis_cache_on_every_model() -> None:
    translation, config = translated("docs_caching_redis.yaml")
    assert config["cache"]["backend"] == "redis"
    assert config["cache"]["redis_url"] == "redis://:${REDIS_PASSWORD:-}@${REDIS_HOST}:${REDIS_PORT:-6379}"
    for model in ("gpt-3.5-turbo", "text-embedding-ada-002"):
        assert config["models"][model]["cache"] == {"ttl_s": 600, "max_ttl_s": 86400}
    assert targets(config, "text-embedding-ada-002") == [("openai", "text-embedding-ada-002", None)]
    assert config["providers"]["openai"]["api_key"] == "${OPENAI_API_KEY}"
    assert "one team" in why(translation, "litellm_settings.cache")


def test_repository_examples() -> None:
    translation, config = translated("repo_azure_config.yaml")
    team1 = config["providers"][config["models"]["gpt-4-team1"]["targets"][0]["provider"]]
    assert team1["timeout"] == {"total_s": 5.0, "first_byte_s": 0.5} and team1["limits"] == {"tpm": 20000}
    assert config["models"]["gpt-4-team1"]["retry"] == {"attempts": 5}  # max_retries 4
    translation, config = translated("repo_load_balancer.yaml")
    assert targets(config, "gpt-3.5-turbo") == [
        ("openai", "gpt-3.5-turbo", "gpt-3.5-turbo"),
        ("openai", "gpt-3.5-turbo", "gpt-3.5-turbo"),
        ("openai", "gpt-3.5-turbo", "gpt-3.5-turbo"),
    ]
    router = config["providers"][config["models"]["gpt-3.5-turbo"]["targets"][2]["provider"]]
    assert router["base_url"] == "https://openrouter.ai/api/v1"
    assert "mistralai" in why(translation, "model_list[3] (mistral-7b-instruct)")
    listed = why(translation, "environment_variables")
    assert "REDIS_PASSWORD" in listed and "eYVX71" not in listed  # names, never values
    translation, config = translated("repo_proxy_config_72404b1.yaml")
    assert targets(config, "fake-openai-endpoint") == [("openai", "fake", None)]


def test_the_shipped_proxy_config_is_refused_with_the_line_of_its_yaml_error() -> None:
    with pytest.raises(ValueError, match=r"not valid YAML at line 36, column 3"):
        translate((FIXTURES / "repo_proxy_config.yaml").read_text())
    # With its indentation mended, it translates: Vertex AI is listed, the OpenAI endpoint kept.
    text = (FIXTURES / "repo_proxy_config.yaml").read_text().replace("\n master_key", "\n  master_key")
    for key in ("alerting", "alerting_threshold", "alert_to_webhook_url"):
        text = text.replace(f"\n {key}:", f"\n  {key}:")
    translation = translate(text)
    config = yaml.safe_load(translation.render("mended"))
    parse_config(translation.render("mended"), {}, "mended")
    assert list(config["models"]) == ["fake-azure-endpoint"]
    assert "Vertex AI" in why(translation, "model_list[0] (gemini-vision)")
    assert "Vertex AI" in why(translation, "model_list[1] (gemini-vision)")
    assert "secrets come from the environment" in why(translation, "general_settings.key_management_system")
    assert "callbacks" in why(translation, "litellm_settings.success_callback")


def test_order_weight_strategy_and_default_fallbacks() -> None:
    translation = translate(
        """
model_list:
  - model_name: smart
    litellm_params: {model: azure/gpt-4o, api_base: "os.environ/AZURE_API_BASE", order: 1, weight: 3}
  - model_name: smart
    litellm_params: {model: azure/gpt-4o-b, api_base: "https://b.openai.azure.com", order: 1, weight: 1}
  - model_name: smart
    litellm_params: {model: openai/gpt-4o, order: 2}
  - model_name: cheap
    litellm_params: {model: anthropic/claude-haiku-4-5, api_key: "os.environ/ANTHROPIC_KEY", input_cost_per_token: 0.000001, output_cost_per_token: 0.000005}
router_settings:
  routing_strategy: least-busy
  default_fallbacks: ["cheap"]
  cooldown_time: 45
"""
    )
    text = translation.render("inline")
    parse_config(text, {v: "https://a.openai.azure.com" for v in translation.env}, "inline")
    config = yaml.safe_load(text)
    smart = config["models"]["smart"]
    assert [(t["model"], t.get("pool"), t.get("weight", 1)) for t in smart["targets"]] == [
        ("gpt-4o", "smart-1", 3),
        ("gpt-4o-b", "smart-1", 1),
        ("gpt-4o", None, 1),  # order 2: the next step of the chain
        ("claude-haiku-4-5", None, 1),  # default_fallbacks
    ]
    assert smart["balance"] == "least_inflight"
    assert config["providers"]["azure"]["base_url"] == "${AZURE_API_BASE}"
    assert config["providers"]["anthropic"]["breaker"] == {"cooldown_s": 45.0}
    assert config["pricing"]["models"]["anthropic/claude-haiku-4-5"] == {"input": 1.0, "output": 5.0}
    assert config["models"]["cheap"]["targets"] == [{"provider": "anthropic", "model": "claude-haiku-4-5"}]


def test_azure_entra_client_secrets_become_entra_and_the_rest_is_listed() -> None:
    translation = translate(
        """
model_list:
  - model_name: sp
    litellm_params:
      model: azure/gpt-4o
      api_base: https://sp.openai.azure.com
      tenant_id: os.environ/AZURE_TENANT_ID
      client_id: os.environ/AZURE_CLIENT_ID
      client_secret: os.environ/AZURE_CLIENT_SECRET
      azure_scope: https://cognitiveservices.azure.com/.default
  - model_name: half
    litellm_params: {model: azure/gpt-4o, api_base: https://half.openai.azure.com, client_id: app-1}
  - model_name: keyed
    litellm_params: {model: azure/gpt-4o, api_base: https://k.openai.azure.com, api_key: k, tenant_id: t}
  - model_name: fixed
    litellm_params: {model: azure/gpt-4o, api_base: https://f.openai.azure.com, azure_ad_token: eyJ0eX}
  - model_name: other
    litellm_params: {model: openai/gpt-4o, client_secret: s}
"""
    )
    text = translation.render("inline")
    parse_config(text, {v: f"value-of-{v}" for v in translation.env}, "inline")
    config = yaml.safe_load(text)
    provider = {
        model: config["providers"][config["models"][model]["targets"][0]["provider"]]
        for model in config["models"]
    }
    assert provider["sp"]["entra"] == {
        "source": "client_secret",
        "tenant_id": "${AZURE_TENANT_ID}",
        "client_id": "${AZURE_CLIENT_ID}",
        "client_secret": "${AZURE_CLIENT_SECRET}",
        "scope": "https://cognitiveservices.azure.com/.default",
    }
    assert "api_key" not in provider["sp"]
    # LiteLLM takes a setting that its litellm_params lack from the variable: so does the import.
    assert provider["half"]["entra"] == {
        "source": "client_secret",
        "tenant_id": "${AZURE_TENANT_ID}",
        "client_id": "app-1",
        "client_secret": "${AZURE_CLIENT_SECRET}",
    }
    assert provider["keyed"]["api_key"] == "k" and "entra" not in provider["keyed"]
    assert "api_key given instead" in why(translation, "model_list[2].litellm_params.tenant_id")
    assert provider["fixed"]["api_key"] == "${AZURE_API_KEY}" and "entra" not in provider["fixed"]
    assert "a fixed Entra ID token expires" in why(translation, "model_list[3].litellm_params.azure_ad_token")
    assert "no Tollway equivalent" in why(translation, "model_list[4].litellm_params.client_secret")


def test_the_command_writes_the_file_and_lists_what_it_left_out(tmp_path: Path) -> None:
    out = tmp_path / "tollway.yaml"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway.cli.main",
            "import-litellm",
            str(FIXTURES / "repo_load_balancer.yaml"),
            "-o",
            str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "model_list[3] (mistral-7b-instruct): provider 'mistralai' has no Tollway adapter" in done.stderr
    assert "#   model_list[3] (mistral-7b-instruct): provider 'mistralai'" in out.read_text()
    checked = subprocess.run(
        [sys.executable, "-m", "gateway.cli.main", "check-config", str(out)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "OPENROUTER_API_KEY": "k"},
        check=False,
    )
    assert checked.returncode == 0, checked.stderr
    assert "ok (3 providers, 1 models)" in checked.stdout
