"""The checks that span sections, run once every section has decoded: references to providers,
pools, and the settings that need another (a store, a Redis, a way to sign in)."""

from __future__ import annotations

from gateway.config.schema import AzureProvider, Config, ModelConfig, OpenAIProvider, StorageConfig
from gateway.config.schema.cache import config_errors as cache_config_errors


def cross_section_errors(config: Config, provider_names: set[str]) -> list[str]:
    """Every problem across sections, in the order they are reported. `provider_names` are the
    names under `providers:` in the file, including those whose entry failed to decode."""
    errors: list[str] = []
    for name, key in config.keys.items():
        if (key.secret is None) == (key.secret_hash is None):
            errors.append(f"keys.{name}: give exactly one of secret or secret_hash")
    if config.responses.store and not config.storage.database_url:
        errors.append("responses.store: keeping responses needs a store (set storage.database_url)")
    errors.extend(_redis_errors(config.storage))
    shared_redis = config.storage.redis is not None or config.storage.redis_url is not None
    errors.extend(cache_config_errors(config.cache, shared_redis))
    if config.ui.enabled and not config.server.master_key and config.ui.oidc is None:
        errors.append("ui.enabled: nobody could sign in: set server.master_key or ui.oidc")
    _check_references(config, provider_names, errors)
    return errors


def _check_references(config: Config, provider_names: set[str], errors: list[str]) -> None:
    # Names from the file, not from `config.providers`: a provider that failed validation is
    # already reported, and must not make every reference to it an error too.
    known = ", ".join(sorted(provider_names)) or "none configured"
    for name, model in config.models.items():
        for index, target in enumerate(model.targets):
            if target.provider not in provider_names:
                errors.append(
                    f"models.{name}.targets[{index}].provider: unknown provider "
                    f"'{target.provider}' (known: {known})"
                )
        _check_pools(name, model, errors)
    for index, name in enumerate(config.files.providers):
        provider = config.providers.get(name)
        if name not in provider_names:
            errors.append(f"files.providers[{index}]: unknown provider '{name}' (known: {known})")
        elif provider is not None and not isinstance(provider, OpenAIProvider | AzureProvider):
            errors.append(f"files.providers[{index}]: provider '{name}' is not of kind openai or azure")


def _check_pools(name: str, model: ModelConfig, errors: list[str]) -> None:
    """A pool's members must be adjacent: the chain is read in order, and a pool is one step."""
    closed: set[str] = set()
    previous: str | None = None
    for index, target in enumerate(model.targets):
        if target.pool != previous and previous is not None:
            closed.add(previous)
        if target.pool is not None and target.pool in closed:
            errors.append(
                f"models.{name}.targets[{index}].pool: members of pool '{target.pool}' must be adjacent"
            )
        previous = target.pool


def _redis_errors(storage: StorageConfig) -> list[str]:
    if storage.redis is not None and storage.redis_url is not None:
        return ["storage.redis_url: give storage.redis or storage.redis_url (its older name), not both"]
    try:
        storage.redis_target()
    except ValueError as exc:
        return [f"storage.redis: {exc}"]
    return []
