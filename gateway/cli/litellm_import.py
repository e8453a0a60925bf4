"""`tollway import-litellm`: a LiteLLM proxy `config.yaml` translated into a Tollway config.

LiteLLM groups deployments by `model_name`; a group becomes one of our logical models whose
targets are its deployments (balanced in one pool, or one pool per `order`), followed by the
targets of the groups it falls back to. Each distinct way of reaching a provider (kind, base URL,
key, version, region, limits, timeouts) becomes one provider. `os.environ/VAR` becomes `${VAR}`,
and where LiteLLM reads a provider's key from a default variable (OPENAI_API_KEY...) the output
names that variable, so the translated file asks for the same environment.

Whatever has no counterpart is not dropped silently: each item is listed with its path and why,
on stderr and as comments at the top of the written file.

Past 800 lines, and still one job: the translator walks LiteLLM's file section by section, and
each section's method needs the same notes and environment references.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import yaml

from gateway.cli.price_import import ImportReport, litellm_price

_ENV_REF: Final = re.compile(r"^os\.environ/([A-Za-z_][A-Za-z0-9_]*)$")
_ENV_VAR: Final = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-[^}]*)?\}")
_HTTP: Final = re.compile(r"^https?://[^\s/<>]+")


@dataclass(frozen=True)
class _Kind:
    """How one LiteLLM provider prefix is reached through Tollway."""

    kind: str
    key_env: str | None = None  # where LiteLLM reads the key when the config gives none
    base_url: str | None = None  # an OpenAI-compatible service's own API root
    needs_base: bool = False  # LiteLLM requires api_base (self-hosted servers)


# LiteLLM provider prefix -> our kind. OpenAI-compatible services are `kind: openai` at their
# documented API root. Adding a kind here (Vertex AI, once served) is all a new mapping needs.
_KINDS: Final[Mapping[str, _Kind]] = {
    "openai": _Kind("openai", "OPENAI_API_KEY"),
    "text-completion-openai": _Kind("openai", "OPENAI_API_KEY"),
    "azure": _Kind("azure", "AZURE_API_KEY"),
    "anthropic": _Kind("anthropic", "ANTHROPIC_API_KEY"),
    "gemini": _Kind("gemini", "GEMINI_API_KEY"),
    "mistral": _Kind("mistral", "MISTRAL_API_KEY"),
    "cohere": _Kind("cohere", "COHERE_API_KEY"),
    "cohere_chat": _Kind("cohere", "COHERE_API_KEY"),
    "bedrock": _Kind("bedrock"),
    "ollama": _Kind("ollama"),
    "ollama_chat": _Kind("ollama"),
    "hosted_vllm": _Kind("openai", needs_base=True),
    "vllm": _Kind("openai", needs_base=True),
    "lm_studio": _Kind("openai", needs_base=True),
    "llamafile": _Kind("openai", needs_base=True),
    "openai_like": _Kind("openai", needs_base=True),
    "groq": _Kind("openai", "GROQ_API_KEY", "https://api.groq.com/openai/v1"),
    "openrouter": _Kind("openai", "OPENROUTER_API_KEY", "https://openrouter.ai/api/v1"),
    "together_ai": _Kind("openai", "TOGETHERAI_API_KEY", "https://api.together.xyz/v1"),
    "fireworks_ai": _Kind("openai", "FIREWORKS_AI_API_KEY", "https://api.fireworks.ai/inference/v1"),
    "deepseek": _Kind("openai", "DEEPSEEK_API_KEY", "https://api.deepseek.com/v1"),
    "xai": _Kind("openai", "XAI_API_KEY", "https://api.x.ai/v1"),
    "perplexity": _Kind("openai", "PERPLEXITYAI_API_KEY", "https://api.perplexity.ai"),
}
# Why a provider LiteLLM knows has no target here (others: "no Tollway adapter").
_NOT_SERVED: Final[Mapping[str, str]] = {
    "vertex_ai": "Vertex AI needs kind vertex / vertex-anthropic with Google credentials "
    "(vertex_project, vertex_location, vertex_credentials): configure it by hand",
    "huggingface": "no Hugging Face Inference adapter; a TGI endpoint is kind openai with "
    "base_url <endpoint>/v1",
    "sagemaker": "no SageMaker adapter",
}
# A bare model name (no prefix): LiteLLM infers the provider; these are the unambiguous ones.
_BARE: Final = (
    (
        re.compile(
            r"^(gpt-|o\d|chatgpt|text-embedding-|dall-e|whisper|tts-|omni-moderation|davinci|babbage)"
        ),
        "openai",
    ),
    (re.compile(r"^claude-"), "anthropic"),
    (re.compile(r"^command"), "cohere"),
    (re.compile(r"^(mistral-|open-mistral|codestral|magistral|ministral|pixtral)"), "mistral"),
)
_STRATEGIES: Final[Mapping[str, str]] = {
    "simple-shuffle": "weighted",
    "least-busy": "least_inflight",
    "latency-based-routing": "latency",
}
# LiteLLM's Entra ID client credentials of an Azure deployment, each read from litellm_params or
# else its variable; it signs in with them only without an api_key (litellm/llms/azure/
# common_utils.py), and so does the import.
_ENTRA_SECRET: Final[Mapping[str, str]] = {
    "tenant_id": "AZURE_TENANT_ID",
    "client_id": "AZURE_CLIENT_ID",
    "client_secret": "AZURE_CLIENT_SECRET",
}
# Every field of an Azure deployment that entra() reads (and lists when it cannot carry it).
_ENTRA_PARAMS: Final = frozenset({*_ENTRA_SECRET, "azure_scope", "azure_ad_token"})
_STATIC_AD_TOKEN: Final = (
    "a fixed Entra ID token expires within hours and is not renewed: give the provider "
    "entra: {source: client_secret | certificate | managed_identity | workload_identity} (docs/providers.md: "
    "Azure OpenAI with Entra ID)"
)
# Azure API versions before this do not report usage on streams (docs/providers/azure.md#urls-and-auth).
_AZURE_MIN_VERSION: Final = "2024-09-01"
_AZURE_VERSION: Final = "2024-10-21"
_MAX_ATTEMPTS: Final = 10
# Deployment fields that only set default request parameters or client options.
_REQUEST_DEFAULTS: Final = frozenset(
    {
        "temperature",
        "max_tokens",
        "seed",
        "top_p",
        "stop",
        "frequency_penalty",
        "presence_penalty",
        "drop_params",
    }
)
_HANDLED_PARAMS: Final = frozenset(
    {
        "model",
        "api_base",
        "api_key",
        "api_version",
        "rpm",
        "tpm",
        "order",
        "weight",
        "timeout",
        "stream_timeout",
        "max_retries",
        "aws_region_name",
        "aws_access_key_id",
        "aws_secret_access_key",
        "aws_session_token",
        "organization",
        "extra_headers",
        "input_cost_per_token",
        "output_cost_per_token",
    }
)
# Settings of ours that have no effect to carry, each with why (litellm_settings / general_settings).
_SETTING_REASONS: Final[Mapping[str, str]] = {
    "drop_params": "Tollway drops tune-only fields for translated upstreams itself and refuses "
    "those that would change the answer",
    "set_verbose": "debug logging: Tollway logs JSON lines at its own level",
    "success_callback": "logging callbacks: Tollway has /metrics, the request log, the audit trail "
    "and OpenTelemetry tracing (tracing:)",
    "failure_callback": "logging callbacks: see success_callback",
    "callbacks": "logging callbacks: see success_callback",
    "alerting": "Slack alerting: Tollway's alerts: section posts to webhooks (configure it by hand)",
    "alerting_threshold": "see alerting",
    "alert_to_webhook_url": "see alerting",
    "database_url": "LiteLLM's database (keys, teams, spend) is not read: point storage.database_url "
    "at a new database and re-issue keys",
    "store_model_in_db": "models live in the config file",
    "key_management_system": "secrets come from the environment (${VAR})",
}


@dataclass
class Translation:
    """The translated config, what could not be carried (path, why) and the variables it reads."""

    config: dict[str, Any]
    unsupported: list[tuple[str, str]] = field(default_factory=list)
    env: set[str] = field(default_factory=set)

    def render(self, source: str) -> str:
        """The config as YAML, headed by comments listing what did not come across."""
        lines = [
            f"# Translated from the LiteLLM config {source} by `tollway import-litellm`.",
            "# Check it with `tollway check-config`. Environment variables it reads: "
            + (", ".join(sorted(self.env)) or "none"),
        ]
        if self.unsupported:
            lines.append("# Not carried over (path: why):")
            lines += [f"#   {path}: {why}" for path, why in self.unsupported]
        body = yaml.dump(self.config, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=120)
        return "\n".join(lines) + "\n" + body


class _Dumper(yaml.SafeDumper):
    """Writes a value used twice (an alias's targets) in full, not as a YAML anchor."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


@dataclass
class _Target:
    provider: str
    model: str
    order: int | None
    weight: int | None
    rpm: int | None
    tpm: int | None
    retries: int | None


class _Translator:
    def __init__(self, tree: Mapping[str, Any]) -> None:
        self.tree = tree
        self.out = Translation({})
        self.providers: dict[str, dict[str, Any]] = {}
        self._provider_keys: dict[str, str] = {}  # a provider's identity -> its name
        self.groups: dict[str, list[_Target]] = {}
        self.prices: dict[str, dict[str, Any]] = {}

    def skip(self, path: str, why: str) -> None:
        self.out.unsupported.append((path, why))

    def value(self, raw: Any) -> Any:
        """`os.environ/VAR` as `${VAR}` (noting VAR); other values as they are, `$` escaped."""
        if isinstance(raw, str):
            match = _ENV_REF.match(raw.strip())
            if match:
                self.out.env.add(match.group(1))
                return f"${{{match.group(1)}}}"
            return raw.replace("$", "$$")
        return raw

    def env(self, name: str, default: str | None = None) -> str:
        self.out.env.add(name)
        return f"${{{name}:-{default}}}" if default is not None else f"${{{name}}}"

    # --- model_list ---------------------------------------------------------------------------

    def deployments(self) -> None:
        entries = self.tree.get("model_list") or []
        if not isinstance(entries, list):
            self.skip("model_list", "expected a list of deployments")
            return
        for index, entry in enumerate(entries):
            path = f"model_list[{index}]"
            if not isinstance(entry, Mapping) or not isinstance(entry.get("litellm_params"), Mapping):
                self.skip(path, "a deployment needs model_name and litellm_params")
                continue
            self.deployment(path, entry)

    def deployment(self, path: str, entry: Mapping[str, Any]) -> None:
        name = str(entry.get("model_name", ""))
        params: Mapping[str, Any] = entry["litellm_params"]
        model = str(params.get("model", ""))
        if not name or not model:
            self.skip(path, "a deployment needs model_name and litellm_params.model")
            return
        if "*" in name or "*" in model:
            self.skip(path, f"wildcard route '{name}' -> '{model}': Tollway serves the models it names")
            return
        prefix, sep, upstream_model = model.partition("/")
        if not sep:
            prefix = next((kind for pattern, kind in _BARE if pattern.match(model)), "")
            upstream_model = model
            if not prefix:
                self.skip(path, f"cannot tell the provider of '{model}' (give it a prefix such as openai/)")
                return
        kind = _KINDS.get(prefix)
        if kind is None:
            why = _NOT_SERVED.get(prefix, f"provider '{prefix}' has no Tollway adapter")
            self.skip(f"{path} ({name})", why)
            return
        provider = self.provider(path, kind, params, entry)
        if provider is None:
            return
        for key in params:
            if key in _REQUEST_DEFAULTS:
                self.skip(
                    f"{path}.litellm_params.{key}",
                    "default request parameters per deployment: clients send them",
                )
            elif key in _ENTRA_PARAMS and kind.kind == "azure":
                pass  # entra() carried it or said why not
            elif key not in _HANDLED_PARAMS and not key.startswith("vertex_"):
                self.skip(f"{path}.litellm_params.{key}", "no Tollway equivalent")
        info = entry.get("model_info")
        if isinstance(info, Mapping):
            self.model_info(path, kind.kind, upstream_model, info)
        price = litellm_price(params, ImportReport())
        if price is not None:
            self.prices[f"{kind.kind}/{upstream_model}"] = price
        self.groups.setdefault(name, []).append(
            _Target(
                provider,
                upstream_model,
                _int(params.get("order")),
                _int(params.get("weight")),
                _int(entry.get("rpm", params.get("rpm"))),
                _int(entry.get("tpm", params.get("tpm"))),
                _int(params.get("max_retries")),
            )
        )

    def model_info(self, path: str, kind: str, model: str, info: Mapping[str, Any]) -> None:
        price = litellm_price(info, ImportReport())
        if price is not None:
            self.prices[f"{kind}/{model}"] = price
        for key in info:
            if key == "base_model":
                self.skip(
                    f"{path}.model_info.base_model",
                    "name Azure deployments after their model, or price them under pricing.models",
                )
            elif key not in ("id", "mode", "version", "description") and not re.search("cost|price", key):
                self.skip(f"{path}.model_info.{key}", "no Tollway equivalent")

    def provider(
        self, path: str, kind: _Kind, params: Mapping[str, Any], entry: Mapping[str, Any]
    ) -> str | None:
        """The name of the provider this deployment reaches, created on first use."""
        spec: dict[str, Any] = {"kind": kind.kind}
        if not self.endpoint(path, kind, params, spec):
            return None
        self.credentials(path, kind, params, spec)
        if kind.kind == "azure":
            spec["api_version"] = self.azure_version(path, params)
        if kind.kind == "bedrock":
            self.bedrock(params, spec)
        self.headers(path, params, spec)
        self.bounds(params, entry, spec)
        if any(k.startswith("vertex_") for k in params):
            self.skip(f"{path}.litellm_params.vertex_*", _NOT_SERVED["vertex_ai"])
        return self.name(spec)

    def endpoint(self, path: str, kind: _Kind, params: Mapping[str, Any], spec: dict[str, Any]) -> bool:
        """The provider's `base_url` into `spec`; False: the deployment is left out (no usable URL)."""
        base = params.get("api_base")
        if base is not None:
            base = self.value(base)
            if not isinstance(base, str) or not (base.startswith("${") or _HTTP.match(base)):
                self.skip(
                    f"{path}.litellm_params.api_base", f"'{base}' is not an http(s) URL: deployment left out"
                )
                return False
            spec["base_url"] = base.rstrip("/")
        elif kind.base_url:
            spec["base_url"] = kind.base_url
        elif kind.needs_base:
            self.skip(f"{path}.litellm_params.api_base", "this provider needs api_base: deployment left out")
            return False
        elif kind.kind == "azure":
            spec["base_url"] = self.env("AZURE_API_BASE")
        return True

    def credentials(self, path: str, kind: _Kind, params: Mapping[str, Any], spec: dict[str, Any]) -> None:
        """The key (or Azure's Entra ID sign-in) into `spec`: from params, else the usual variable."""
        key = params.get("api_key")
        entra = self.entra(path, params) if kind.kind == "azure" else None
        if key is not None:
            spec["api_key"] = self.value(key)
        elif entra is not None:
            spec["entra"] = entra
        elif kind.key_env:
            spec["api_key"] = self.env(kind.key_env)

    def azure_version(self, path: str, params: Mapping[str, Any]) -> Any:
        """An Azure deployment's api_version, raised to one whose streams report usage."""
        version = params.get("api_version")
        version = (
            self.value(version) if version is not None else self.env("AZURE_API_VERSION", _AZURE_VERSION)
        )
        if isinstance(version, str) and not version.startswith("${") and version < _AZURE_MIN_VERSION:
            self.skip(
                f"{path}.litellm_params.api_version",
                f"{version} replaced by {_AZURE_VERSION}: "
                f"usage of streams needs {_AZURE_MIN_VERSION} or later",
            )
            version = _AZURE_VERSION
        return version

    def bedrock(self, params: Mapping[str, Any], spec: dict[str, Any]) -> None:
        """A Bedrock deployment's region and AWS keys into `spec`: from params, else AWS's variables."""
        region = params.get("aws_region_name")
        spec["aws_region"] = self.value(region) if region is not None else self.env("AWS_REGION_NAME")
        for name, env in (
            ("aws_access_key_id", "AWS_ACCESS_KEY_ID"),
            ("aws_secret_access_key", "AWS_SECRET_ACCESS_KEY"),
        ):
            spec[name] = self.value(params[name]) if name in params else self.env(env)
        token = params.get("aws_session_token")
        spec["aws_session_token"] = (
            self.value(token) if token is not None else self.env("AWS_SESSION_TOKEN", "")
        )

    def headers(self, path: str, params: Mapping[str, Any], spec: dict[str, Any]) -> None:
        """Extra headers and an OpenAI organization into `spec`'s headers."""
        headers: dict[str, Any] = {}
        if isinstance(params.get("extra_headers"), Mapping):
            headers.update({str(k): self.value(v) for k, v in params["extra_headers"].items()})
        if params.get("organization") is not None:
            if isinstance(params["organization"], list):
                self.skip(
                    f"{path}.litellm_params.organization",
                    "several organizations: one provider per organization",
                )
            else:
                headers["OpenAI-Organization"] = self.value(params["organization"])
        if headers:
            spec["headers"] = headers

    def bounds(self, params: Mapping[str, Any], entry: Mapping[str, Any], spec: dict[str, Any]) -> None:
        """The deployment's timeouts and rate limits into `spec`."""
        timeout: dict[str, float] = {}
        if (total := _positive(params.get("timeout"))) is not None:
            timeout["total_s"] = total
        if (first := _positive(params.get("stream_timeout"))) is not None:
            # LiteLLM's stream timeout bounds the wait on a stream; ours on its first byte and gaps.
            timeout["first_byte_s"] = first
        if timeout:
            spec["timeout"] = timeout
        limits = {k: v for k in ("rpm", "tpm") if (v := _int(entry.get(k, params.get(k)))) is not None}
        if limits:
            spec["limits"] = limits

    def entra(self, path: str, params: Mapping[str, Any]) -> dict[str, Any] | None:
        """An Azure deployment's Entra ID sign-in as our `entra:` (None: it has none we carry);
        what it gives that does not come across is listed."""
        where = f"{path}.litellm_params"
        if "azure_ad_token" in params:
            self.skip(f"{where}.azure_ad_token", _STATIC_AD_TOKEN)
        given = [name for name in (*_ENTRA_SECRET, "azure_scope") if params.get(name) is not None]
        if not any(name in given for name in _ENTRA_SECRET):
            if "azure_scope" in given:
                self.skip(f"{where}.azure_scope", "no Entra ID sign-in (tenant_id, client_id, client_secret)")
            return None
        if params.get("api_key") is not None:
            for name in given:
                self.skip(f"{where}.{name}", "LiteLLM signs in with the api_key given instead")
            return None
        entra: dict[str, Any] = {"source": "client_secret"}
        for name, variable in _ENTRA_SECRET.items():
            entra[name] = self.value(params[name]) if name in given else self.env(variable)
        if "azure_scope" in given:
            entra["scope"] = self.value(params["azure_scope"])
        return entra

    def name(self, spec: dict[str, Any]) -> str:
        identity = yaml.safe_dump(spec, sort_keys=True)
        found = self._provider_keys.get(identity)
        if found is not None:
            return found
        kind = str(spec["kind"])
        name, n = kind, 1
        while name in self.providers:
            n += 1
            name = f"{kind}-{n}"
        self.providers[name] = spec
        self._provider_keys[identity] = name
        return name

    # --- models, fallbacks, router settings ---------------------------------------------------

    def settings(self, section: str) -> Mapping[str, Any]:
        found = self.tree.get(section)
        return found if isinstance(found, Mapping) else {}

    def router_setting(self, key: str) -> Any:
        """router_settings wins over litellm_settings (LiteLLM reads both for these)."""
        router, module = self.settings("router_settings"), self.settings("litellm_settings")
        return router.get(key, module.get(key))

    def models(self) -> dict[str, Any]:
        strategy = self.router_setting("routing_strategy")
        balance = "weighted"
        if strategy is not None:
            balance = _STRATEGIES.get(str(strategy), "weighted")
            if str(strategy) not in _STRATEGIES:
                self.skip(
                    "router_settings.routing_strategy", f"'{strategy}' has no counterpart: balanced by weight"
                )
        retries = _int(self.router_setting("num_retries"))
        models: dict[str, Any] = {}
        own: dict[str, list[dict[str, Any]]] = {}
        for name, targets in self.groups.items():
            model: dict[str, Any] = {"targets": self.targets(name, targets)}
            if balance != "weighted":
                model["balance"] = balance
            attempts = max([retries or 0, *(t.retries or 0 for t in targets)]) + 1
            if attempts > 1:
                model["retry"] = {"attempts": min(attempts, _MAX_ATTEMPTS)}
            models[name] = model
            own[name] = list(model["targets"])
        self.fallbacks(models, own, "fallbacks", on_context_length=False)
        self.fallbacks(models, own, "context_window_fallbacks", on_context_length=True)
        self.default_fallbacks(models, own)
        self.aliases(models)
        if self.router_setting("content_policy_fallbacks"):
            self.skip(
                "router_settings.content_policy_fallbacks",
                "Tollway falls back on errors, not on content filters",
            )
        return models

    def targets(self, group: str, targets: list[_Target]) -> list[dict[str, Any]]:
        """A group's deployments: lowest `order` first, each order one step of the chain (the
        deployments of a step one pool, weighted); without orders, all of them one pool."""
        tiers: dict[int, list[_Target]] = {}
        for t in targets:
            tiers.setdefault(t.order or 0, []).append(t)
        out = []
        for order in sorted(tiers):
            members = tiers[order]
            for t, weight in zip(members, _weights(members), strict=True):
                spec: dict[str, Any] = {"provider": t.provider, "model": t.model}
                if len(members) > 1:
                    spec["pool"] = f"{group}-{order}" if len(tiers) > 1 else group
                    if weight != 1:
                        spec["weight"] = weight
                out.append(spec)
        return out

    def fallbacks(
        self, models: dict[str, Any], own: dict[str, list[dict[str, Any]]], key: str, on_context_length: bool
    ) -> None:
        rules = self.router_setting(key)
        if not rules:
            return
        if not isinstance(rules, list):
            self.skip(f"router_settings.{key}", "expected a list of {group: [fallback groups]}")
            return
        for index, rule in enumerate(rules):
            if not isinstance(rule, Mapping):
                self.skip(f"router_settings.{key}[{index}]", "expected {group: [fallback groups]}")
                continue
            for group, chain in rule.items():
                self.chain(models, own, f"{key}[{index}].{group}", str(group), chain, on_context_length)

    def chain(
        self,
        models: dict[str, Any],
        own: dict[str, list[dict[str, Any]]],
        path: str,
        group: str,
        chain: Any,
        on_context_length: bool,
    ) -> None:
        """Append the own targets of each group `group` falls back to (not their fallbacks:
        LiteLLM does not follow a fallback's fallbacks)."""
        if group not in models:
            self.skip(path, f"falls back from '{group}', which is not a translated model")
            return
        targets: list[dict[str, Any]] = models[group]["targets"]
        for fallback in chain if isinstance(chain, list) else [chain]:
            source = own.get(str(fallback))
            if source is None:
                self.skip(path, f"falls back to '{fallback}', which is not a translated model")
                continue
            step = len(targets)  # a pool name of its own for each step, so its members stay adjacent
            for target in source:
                added = dict(target)
                if "pool" in added:
                    added["pool"] = f"{added['pool']}-{step}"
                if on_context_length:
                    added["on_context_length"] = True
                targets.append(added)

    def default_fallbacks(self, models: dict[str, Any], own: dict[str, list[dict[str, Any]]]) -> None:
        chain = self.router_setting("default_fallbacks")
        if not chain:
            return
        chain = chain if isinstance(chain, list) else [chain]
        for group in [g for g in models if g not in chain]:
            self.chain(models, own, f"default_fallbacks.{group}", group, chain, on_context_length=False)

    def aliases(self, models: dict[str, Any]) -> None:
        aliases = self.router_setting("model_group_alias")
        if not isinstance(aliases, Mapping):
            return
        for alias, group in aliases.items():
            target = group.get("model") if isinstance(group, Mapping) else group
            if isinstance(group, Mapping) and group.get("hidden"):
                self.skip(
                    f"router_settings.model_group_alias.{alias}.hidden", "every model is listed on /v1/models"
                )
            if str(target) in models and str(alias) not in models:
                models[str(alias)] = models[str(target)]
            else:
                self.skip(
                    f"router_settings.model_group_alias.{alias}", f"'{target}' is not a translated model"
                )

    def breaker(self) -> dict[str, Any]:
        breaker: dict[str, Any] = {}
        fails = _int(self.router_setting("allowed_fails"))
        if fails is not None:
            # LiteLLM cools a deployment down after more than allowed_fails failures in a minute;
            # our breaker opens after this many failed calls in a row.
            breaker["failures"] = fails + 1
        cooldown = _positive(self.router_setting("cooldown_time"))
        if cooldown is not None:
            breaker["cooldown_s"] = cooldown
        return breaker

    def timeouts(self) -> None:
        timeout = _positive(
            self.router_setting("timeout") or self.settings("litellm_settings").get("request_timeout")
        )
        breaker = self.breaker()
        for spec in self.providers.values():
            if timeout is not None:
                spec.setdefault("timeout", {}).setdefault("total_s", timeout)
            if breaker:
                spec["breaker"] = dict(breaker)

    # --- server, storage, cache ---------------------------------------------------------------

    def redis_url(self, params: Mapping[str, Any], prefix: str) -> str | None:
        host, port, password = (params.get(f"{prefix}{k}") for k in ("host", "port", "password"))
        if params.get(f"{prefix}url"):
            return str(self.value(params[f"{prefix}url"]))
        if host is None:
            return None
        auth = f":{self.value(password)}@" if password is not None else ""
        return f"redis://{auth}{self.value(host)}:{self.value(port) if port is not None else 6379}"

    def cache(self, models: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
        module = self.settings("litellm_settings")
        redis = self.redis_url(self.settings("router_settings"), "redis_")
        if not module.get("cache"):
            return {}, redis
        raw = module.get("cache_params")
        params: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
        kind = str(params.get("type", "redis"))
        section: dict[str, Any] = {}
        model_cache: dict[str, Any] = {}
        ttl = _positive(params.get("ttl"))
        if ttl is not None:
            model_cache = {"ttl_s": max(int(ttl), 1), "max_ttl_s": max(int(ttl), 86400)}
        if kind == "redis":
            url = self.redis_url(params, "") or redis
            if url is None:  # LiteLLM's default: REDIS_HOST / REDIS_PORT / REDIS_PASSWORD
                password, host = self.env("REDIS_PASSWORD", ""), self.env("REDIS_HOST")
                url = f"redis://:{password}@{host}:{self.env('REDIS_PORT', '6379')}"
            section = {"backend": "redis", "redis_url": url}
            if params.get("namespace"):
                section["redis_prefix"] = f"{params['namespace']}:"
        elif kind != "local":
            self.skip(
                "litellm_settings.cache_params.type",
                f"'{kind}' cache: Tollway caches in memory or Redis (memory used)",
            )
        for key in params:
            if key not in ("type", "ttl", "host", "port", "password", "namespace", "url"):
                self.skip(f"litellm_settings.cache_params.{key}", "no Tollway equivalent")
        self.skip(
            "litellm_settings.cache",
            "LiteLLM shares cached answers between all keys; Tollway's default scope is one team "
            "(set scope: global under each model's cache for the same)",
        )
        for model in models.values():
            model["cache"] = dict(model_cache)
        return section, redis

    def general(self) -> dict[str, Any]:
        server: dict[str, Any] = {}
        general = self.settings("general_settings")
        if general.get("master_key") is not None:
            key = self.value(general["master_key"])
            server["master_key"] = key
            if isinstance(key, str) and not key.startswith("${"):
                self.skip(
                    "general_settings.master_key",
                    "kept, but a literal key in a file: move it to an environment variable",
                )
        for key in general:
            if key != "master_key":
                self.skip(f"general_settings.{key}", _SETTING_REASONS.get(key) or "no Tollway equivalent")
        return server

    def leftovers(self) -> None:
        handled_module = {
            "num_retries",
            "request_timeout",
            "fallbacks",
            "context_window_fallbacks",
            "default_fallbacks",
            "allowed_fails",
            "cooldown_time",
            "cache",
            "cache_params",
            "content_policy_fallbacks",
        }
        for key in self.settings("litellm_settings"):
            if key not in handled_module:
                self.skip(f"litellm_settings.{key}", _SETTING_REASONS.get(key) or "no Tollway equivalent")
        handled_router = {
            "routing_strategy",
            "num_retries",
            "timeout",
            "fallbacks",
            "context_window_fallbacks",
            "default_fallbacks",
            "content_policy_fallbacks",
            "model_group_alias",
            "allowed_fails",
            "cooldown_time",
            "redis_host",
            "redis_port",
            "redis_password",
            "redis_url",
        }
        for key in self.settings("router_settings"):
            if key not in handled_router:
                self.skip(f"router_settings.{key}", "no Tollway equivalent")
        variables = self.settings("environment_variables")
        if variables:
            # Names only: the values are often secrets, and this report goes to a terminal.
            self.skip(
                "environment_variables",
                f"set {', '.join(sorted(map(str, variables)))} in the environment (systemd EnvironmentFile)",
            )
        known = {
            "model_list",
            "litellm_settings",
            "general_settings",
            "router_settings",
            "environment_variables",
        }
        for key in self.tree:
            if key not in known:
                self.skip(str(key), "no Tollway equivalent")

    def translate(self) -> Translation:
        self.deployments()
        models = self.models()
        self.timeouts()
        cache, redis = self.cache(models)
        server = self.general()
        self.leftovers()
        config: dict[str, Any] = {}
        if server:
            config["server"] = server
        if redis:
            config["storage"] = {"redis_url": redis}
        config["providers"] = self.providers
        config["models"] = models
        if cache:
            config["cache"] = cache
        if self.prices:
            config["pricing"] = {"models": self.prices}
        for text in _strings(config):
            self.out.env.update(_ENV_VAR.findall(text))
        self.out.config = config
        return self.out


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.replace("_", "").isdigit():
        return int(value.replace("_", ""))
    return None


def _positive(value: Any) -> float | None:
    """A number above zero, else None (YAML gives ints, floats, strings and booleans)."""
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value)
    return None


def _weights(targets: list[_Target]) -> list[int]:
    """Explicit `weight`s; else, as LiteLLM's simple-shuffle does, rpm (or tpm) when every
    deployment of the group sets it; scaled into our 1..1000."""
    for values in (
        [t.weight for t in targets],
        [t.rpm for t in targets],
        [t.tpm for t in targets],
    ):
        known = [v for v in values if v is not None and v > 0]
        if len(known) == len(values):
            top = max(known)
            scaled = [max(1, round(1000 * v / top)) if top > 1000 else v for v in known]
            common = math.gcd(*scaled)  # 6 and 6 rpm: equal shares, weight 1 each
            return [v // common for v in scaled]
    return [1] * len(targets)


def _strings(node: Any) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, Mapping):
        return [s for v in node.values() for s in _strings(v)]
    if isinstance(node, list):
        return [s for v in node for s in _strings(v)]
    return []


def translate(text: str) -> Translation:
    """A LiteLLM proxy config (YAML text) as a Tollway config; raises ValueError on bad YAML."""
    try:
        tree = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ValueError(f"not valid YAML{where}: {getattr(exc, 'problem', None) or exc}") from None
    if not isinstance(tree, Mapping):
        raise ValueError("expected a mapping with model_list at the top level")
    return _Translator(tree).translate()
