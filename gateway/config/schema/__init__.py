"""The configuration's schema: one module per section, every Struct the YAML file decodes into.

This package declares shapes and the checks a single value carries (bounds, patterns, a Struct's
`__post_init__`); reading the file, `${ENV}` substitution and the checks across sections are
gateway/config/load.py. Nothing here imports a feature: features import their settings from here.
Every public name of the section modules is importable from `gateway.config.schema`; the root is
`Config` (root.py).
"""

from gateway.config.schema.azure import (
    COGNITIVE_SERVICES_SCOPE,
    AzureProvider,
    EntraAuth,
    EntraCertificate,
    EntraClientSecret,
    EntraId,
    EntraManagedIdentity,
    EntraWorkloadIdentity,
)
from gateway.config.schema.base import HttpUrl, Seconds, Section
from gateway.config.schema.bedrock import AssumeRoleConfig, AwsCredentialSource, AwsRegion, BedrockProvider
from gateway.config.schema.cache import CacheConfig, ModelCacheConfig
from gateway.config.schema.guardrails import (
    BUILTIN_CATEGORIES,
    BlockedContent,
    CustomCategory,
    GuardrailsConfig,
    OutputAction,
    PiiAction,
    PiiCategory,
    RuleAction,
)
from gateway.config.schema.keys import ConfigKey
from gateway.config.schema.limits import (
    Budget,
    BudgetsConfig,
    Currency,
    Endpoint,
    Limits,
    LimitsConfig,
    NonNegative,
    Period,
    SyncInterval,
)
from gateway.config.schema.logs import (
    CONTENT_POLICIES,
    MAX_TAG_LABELS,
    ContentPolicy,
    LoggingConfig,
    MetricsConfig,
)
from gateway.config.schema.models import HedgeConfig, ModelConfig, RetryConfig, TargetConfig
from gateway.config.schema.observability import (
    EVENT_KINDS,
    AlertsConfig,
    EventKind,
    Events,
    JsonWebhook,
    SlackWebhook,
    TelegramWebhook,
    TracingConfig,
    Webhook,
)
from gateway.config.schema.pricing import (
    BatchDiscount,
    LongContextPrice,
    ModelPrice,
    OutputTokens,
    PricingConfig,
    TokenPrices,
    Usd,
    UsdPerMillion,
)
from gateway.config.schema.provider_base import BaseHttpProvider, BaseProvider, BreakerConfig, Timeouts
from gateway.config.schema.providers import (
    PROVIDER_KINDS,
    AnthropicProvider,
    CohereProvider,
    GeminiProvider,
    HttpProvider,
    MistralProvider,
    MockProvider,
    OllamaProvider,
    OpenAIProvider,
    Provider,
)
from gateway.config.schema.redis import REDIS_URL_PATTERN, RedisBlock, RedisSetting, RedisTarget
from gateway.config.schema.root import Config
from gateway.config.schema.server import ServerConfig
from gateway.config.schema.storage import FilesConfig, ResponsesConfig, StorageConfig
from gateway.config.schema.tags import MAX_TAG_LENGTH, MAX_TAGS, TAG_CHARACTERS, TAG_PATTERN, KeyTags, Tag
from gateway.config.schema.ui import ROLES, GroupRole, OidcConfig, Role, SigningAlgorithm, UiConfig
from gateway.config.schema.vertex import (
    GoogleLocation,
    GoogleProject,
    VertexAnthropicProvider,
    VertexProvider,
)

__all__ = [
    "BUILTIN_CATEGORIES",
    "COGNITIVE_SERVICES_SCOPE",
    "CONTENT_POLICIES",
    "EVENT_KINDS",
    "MAX_TAGS",
    "MAX_TAG_LABELS",
    "MAX_TAG_LENGTH",
    "PROVIDER_KINDS",
    "REDIS_URL_PATTERN",
    "ROLES",
    "TAG_CHARACTERS",
    "TAG_PATTERN",
    "AlertsConfig",
    "AnthropicProvider",
    "AssumeRoleConfig",
    "AwsCredentialSource",
    "AwsRegion",
    "AzureProvider",
    "BaseHttpProvider",
    "BaseProvider",
    "BatchDiscount",
    "BedrockProvider",
    "BlockedContent",
    "BreakerConfig",
    "Budget",
    "BudgetsConfig",
    "CacheConfig",
    "CohereProvider",
    "Config",
    "ConfigKey",
    "ContentPolicy",
    "Currency",
    "CustomCategory",
    "Endpoint",
    "EntraAuth",
    "EntraCertificate",
    "EntraClientSecret",
    "EntraId",
    "EntraManagedIdentity",
    "EntraWorkloadIdentity",
    "EventKind",
    "Events",
    "FilesConfig",
    "GeminiProvider",
    "GoogleLocation",
    "GoogleProject",
    "GroupRole",
    "GuardrailsConfig",
    "HedgeConfig",
    "HttpProvider",
    "HttpUrl",
    "JsonWebhook",
    "KeyTags",
    "Limits",
    "LimitsConfig",
    "LoggingConfig",
    "LongContextPrice",
    "MetricsConfig",
    "MistralProvider",
    "MockProvider",
    "ModelCacheConfig",
    "ModelConfig",
    "ModelPrice",
    "NonNegative",
    "OidcConfig",
    "OllamaProvider",
    "OpenAIProvider",
    "OutputAction",
    "OutputTokens",
    "Period",
    "PiiAction",
    "PiiCategory",
    "PricingConfig",
    "Provider",
    "RedisBlock",
    "RedisSetting",
    "RedisTarget",
    "ResponsesConfig",
    "RetryConfig",
    "Role",
    "RuleAction",
    "Seconds",
    "Section",
    "ServerConfig",
    "SigningAlgorithm",
    "SlackWebhook",
    "StorageConfig",
    "SyncInterval",
    "Tag",
    "TargetConfig",
    "TelegramWebhook",
    "Timeouts",
    "TokenPrices",
    "TracingConfig",
    "UiConfig",
    "Usd",
    "UsdPerMillion",
    "VertexAnthropicProvider",
    "VertexProvider",
    "Webhook",
]
