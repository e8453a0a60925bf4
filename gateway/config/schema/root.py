"""The whole configuration file: one field per section."""

from __future__ import annotations

from gateway.config.schema.azure import AzureProvider
from gateway.config.schema.base import Section
from gateway.config.schema.cache import CacheConfig
from gateway.config.schema.keys import ConfigKey
from gateway.config.schema.limits import BudgetsConfig, LimitsConfig
from gateway.config.schema.logs import LoggingConfig, MetricsConfig
from gateway.config.schema.models import ModelConfig
from gateway.config.schema.observability import AlertsConfig, TracingConfig
from gateway.config.schema.pricing import PricingConfig
from gateway.config.schema.providers import OpenAIProvider, Provider
from gateway.config.schema.server import ServerConfig
from gateway.config.schema.storage import FilesConfig, ResponsesConfig, StorageConfig
from gateway.config.schema.ui import UiConfig


class Config(Section, frozen=True):
    server: ServerConfig = ServerConfig()
    logging: LoggingConfig = LoggingConfig()
    providers: dict[str, Provider] = {}
    models: dict[str, ModelConfig] = {}
    storage: StorageConfig = StorageConfig()
    keys: dict[str, ConfigKey] = {}
    pricing: PricingConfig = PricingConfig()
    limits: LimitsConfig = LimitsConfig()
    budgets: BudgetsConfig = BudgetsConfig()
    alerts: AlertsConfig = AlertsConfig()
    tracing: TracingConfig = TracingConfig()
    cache: CacheConfig = CacheConfig()
    responses: ResponsesConfig = ResponsesConfig()
    files: FilesConfig = FilesConfig()
    ui: UiConfig = UiConfig()
    metrics: MetricsConfig = MetricsConfig()

    def file_providers(self) -> list[str]:
        """The providers that serve files and batches, the default first."""
        if self.files.providers:
            return list(self.files.providers)
        return [name for name, p in self.providers.items() if isinstance(p, OpenAIProvider | AzureProvider)]
