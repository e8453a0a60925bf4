"""The configuration: msgspec Structs, YAML loading, ${ENV} interpolation, errors with paths.

The file is decoded section by section so that one run reports every error, each prefixed with
the path of the offending value (`models.smart.targets[1].provider: unknown provider 'opnai'`).
Structs are frozen and forbid unknown fields, so a typo is an error rather than a silent default.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Final, Literal, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec
import yaml

from gateway.accounting.pricing import ModelPrice, PricingConfig
from gateway.accounting.records import ContentPolicy
from gateway.admin.identity import GroupRole
from gateway.cache.answers import CacheConfig, ModelCacheConfig
from gateway.cache.answers import config_errors as cache_config_errors
from gateway.config import statedir
from gateway.config.base_urls import trim_base_urls
from gateway.config.hints import choices_at, fields_at, hint
from gateway.guardrails.checks import GuardrailsConfig
from gateway.observability.alerts import AlertsConfig
from gateway.observability.tracing import TracingConfig
from gateway.policy.keys import Budget, Currency, Endpoint, Limits
from gateway.policy.tags import KeyTags, Tag
from gateway.store import redisconn
from gateway.store.redisconn import REDIS_URL_PATTERN, RedisSetting, RedisTarget

DEFAULT_CONFIG_PATH: Final = Path("config/tollway.yaml")
EMBEDDED_DEFAULT: Final = Path(__file__).with_name("default.yaml")
# The variable that sets the embedded default's database_url; unset, the state directory's
# tollway.sqlite is used rather than the file's relative fallback.
EMBEDDED_DATABASE_VARIABLE: Final = "TOLLWAY_DATABASE_URL"

T = TypeVar("T")

Seconds = Annotated[float, msgspec.Meta(gt=0)]


class _Section(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    pass


class Timeouts(_Section, frozen=True):
    """How long to wait on an upstream: to connect, for the response headers, for all of it."""

    connect_s: Seconds = 5.0  # to open a connection
    first_byte_s: Seconds = 60.0  # for the response headers, and any silence between two stream reads
    total_s: Seconds = 600.0  # for the whole answer, streams included


class ServerConfig(_Section, frozen=True):
    # The address to listen on; one beyond loopback requires `master_key`.
    host: str = "127.0.0.1"
    port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 4000  # 0: any free port
    # Empty means "no master key" so that `${TOLLWAY_MASTER_KEY:-}` works in shared files.
    master_key: str | None = None
    # A larger request body is answered 413 (multipart uploads: only their text fields count).
    max_body_bytes: Annotated[int, msgspec.Meta(ge=1024)] = 4 * 1024 * 1024
    # After SIGTERM: how long in-flight requests and streams may take to finish before they are cut.
    shutdown_grace_s: Seconds = 30.0
    # A client must send a request's whole head (request line and headers) within this long of its
    # first byte (of connecting, for the first request), or the connection is closed: slow-loris.
    header_timeout_s: Seconds = 10.0
    # An idle keep-alive connection is closed after this long (longer than clients' own pool
    # expiry, 5 s in httpx and the OpenAI SDKs, so the client is the one that lets go first).
    keepalive_timeout_s: Seconds = 75.0
    # Client connections open at once; one more is closed at once (each is a file descriptor, and
    # LimitNOFILE in the unit file is 65536 for clients and upstreams together).
    max_connections: Annotated[int, msgspec.Meta(ge=1)] = 10_000


class LoggingConfig(_Section, frozen=True):
    # Where the per-request JSON lines go: "stdout", "stderr", "off" or a file path.
    request_log: str = "stdout"
    # What the audit record keeps of prompts and answers: full, masked (PII masked), hash (a
    # SHA-256 digest: proves what was sent without keeping it) or none.
    content: Literal["full", "masked", "hash", "none"] = "hash"


class StorageConfig(_Section, frozen=True):
    """Where keys, teams, spend and audit records live, and the Redis that processes share."""

    # sqlite:///relative.sqlite, sqlite:////absolute.sqlite or postgresql://... ; none: only the
    # master key and the keys declared in this file work, and the admin API cannot write.
    database_url: Annotated[str, msgspec.Meta(pattern=r"^(sqlite:|postgres(ql)?://)")] | None = None
    # The Redis the processes share (gateway/store/redisconn.py): redis://, redis+sentinel://hosts/service
    # or redis+cluster://hosts, or a block {sentinels: [...], service: ...} or {cluster: [...]}.
    redis: RedisSetting | None = None
    # The older name of `redis` (a URL only); give one or the other.
    redis_url: Annotated[str, msgspec.Meta(pattern=REDIS_URL_PATTERN)] | None = None
    # How often each process reloads changed keys from the store (Redis makes revokes immediate).
    key_refresh_s: Seconds = 2.0
    # Audit records older than this many days are deleted (daily spend rollups stay); none: kept.
    retention_days: Annotated[int, msgspec.Meta(ge=1)] | None = None
    # Local directory of the accounting spool (audit records not yet in the store); unset:
    # tollway-spool/ in the state directory (gateway/config/statedir.py).
    spool_dir: Annotated[str, msgspec.Meta(min_length=1)] | None = None

    def redis_target(self) -> RedisTarget | None:
        """Where the shared Redis is, or None without one (parse_config has checked it)."""
        setting = self.redis if self.redis is not None else self.redis_url
        return None if setting is None else redisconn.parse(setting)


class ResponsesConfig(_Section, frozen=True):
    """What `/v1/responses` keeps. Off: nothing (`previous_response_id` and `conversation` are
    refused with a 400). On: each response served with the client's `store` not false is kept in
    the store (storage.database_url), for `previous_response_id` and GET/DELETE/input_items."""

    store: bool = False
    # Kept responses older than this many days are deleted (checked hourly).
    retention_days: Annotated[int, msgspec.Meta(ge=1)] = 30


class FilesConfig(_Section, frozen=True):
    """Where `/v1/files`, `/v1/uploads` and `/v1/batches` go (gateway/objects/routes.py): the
    named providers, of kind openai or azure; the first unless the request names another in
    `x-tollway-provider`. Empty: every openai and azure provider, in the config's order."""

    providers: list[str] = []
    # How often the gateway asks the provider about the batches it created, to account them.
    batch_poll_s: Annotated[float, msgspec.Meta(gt=0)] = 60.0


# Tags with series of their own: each is a label value of two counters on every scrape.
MAX_TAG_LABELS: Final = 50


class MetricsConfig(_Section, frozen=True):
    """What the Prometheus metrics break down beyond models, keys and providers."""

    # Spend tags (gateway/policy/tags.py) counted in tollway_tag_requests / tollway_tag_cost_usd. Only
    # these: clients choose their tags, and every other tag would be a new series.
    tag_labels: Annotated[list[Tag], msgspec.Meta(max_length=MAX_TAG_LABELS)] = []


class ConfigKey(_Section, frozen=True):
    """A virtual key declared in the config file, for setups without admin calls. Give exactly
    one of `secret` (usually "${VAR}") or `secret_hash` ("sha256:<hex>")."""

    secret: Annotated[str, msgspec.Meta(min_length=16)] | None = None
    secret_hash: Annotated[str, msgspec.Meta(pattern=r"^sha256:[0-9a-f]{64}$")] | None = None
    models: list[str] | None = None  # the logical models it may use; unset: every one
    endpoints: list[Endpoint] | None = None  # the endpoints (rights) it may call; unset: every one
    limits: Limits | None = None
    budget: Budget | None = None
    # Only targets of providers tagged with one of these regions serve it; unset: any provider.
    regions: list[str] | None = None
    metadata: dict[str, str] | None = None  # free-form labels of the operator's own
    # What audit records of this key keep of prompts and answers; absent: logging.content.
    log_content: ContentPolicy | None = None
    # Spend tags every request of this key carries besides its own (gateway/policy/tags.py).
    tags: KeyTags | None = None


class BreakerConfig(_Section, frozen=True):
    """When a target is skipped for a while: after `failures` failed calls in a row it cools down
    for `cooldown_s` (longer if the provider's Retry-After asks), then one probe call decides."""

    failures: Annotated[int, msgspec.Meta(ge=1)] = 3  # failed calls in a row that open the breaker
    cooldown_s: Seconds = 30.0  # how long the target is skipped before its probe call


class _Provider(_Section, frozen=True, tag_field="kind", kw_only=True):
    timeout: Timeouts = Timeouts()
    # Where the provider processes data (`eu`, `ch`, `us`...): keys restricted to regions use only
    # targets of providers tagged with one of them.
    region: Annotated[str, msgspec.Meta(min_length=1)] | None = None
    breaker: BreakerConfig = BreakerConfig()
    # The gateway's own quota at this provider, shared by every key (gateway/policy/limits.py).
    limits: Limits | None = None


HttpUrl = Annotated[str, msgspec.Meta(pattern=r"^https?://[^\s/]+")]


class _HttpProvider(_Provider, frozen=True, kw_only=True):
    """What every provider reached over HTTP has: where, the key, extra headers, a pool size."""

    base_url: HttpUrl  # the API root the adapter's paths are appended to
    api_key: str | None = None  # the provider's key; never logged, scrubbed from error texts
    # Extra headers sent upstream (OpenAI-Organization, a proxy's auth...). Treated as secrets.
    headers: dict[str, str] = {}
    # Every open stream holds a connection: a pool smaller than the streams a gateway carries
    # makes the next stream wait for one to end. 1024 file descriptors fit well in the unit's
    # LimitNOFILE (65536).
    max_connections: Annotated[int, msgspec.Meta(ge=1)] = 1024
    # The HTTP client: `lean` (keep-alive connections as raw protocols, aiohttp's C parser, one
    # timer per request: about a fifth of aiohttp's CPU per call) or `aiohttp` (its ClientSession).
    http_client: Literal["lean", "aiohttp"] = "lean"
    # false: the provider's models take no reasoning control (gpt-4.1 behind `openai`, a vLLM
    # model, Claude 3.5): a `reasoning_effort`, however it came, is dropped and named in
    # `x-tollway-dropped-fields` rather than sent.
    reasoning: bool = True


class OpenAIProvider(_HttpProvider, frozen=True, kw_only=True, tag="openai"):
    """OpenAI or any server that speaks its API (vLLM, TGI, llama.cpp, Ollama's /v1)."""

    base_url: HttpUrl = "https://api.openai.com/v1"
    # Whether the server has OpenAI's Responses API (`POST {base_url}/responses`): then requests
    # to the gateway's /v1/responses are passed through to it byte for byte. Unset: only when
    # `base_url` is OpenAI's own; OpenAI-compatible servers get such requests translated to chat.
    serves_responses: bool | None = None

    @property
    def responses_passthrough(self) -> bool:
        if self.serves_responses is not None:
            return self.serves_responses
        return self.base_url.rstrip("/").startswith("https://api.openai.com/")


# The scope of an Entra token that Azure OpenAI (and every Azure AI service) accepts.
COGNITIVE_SERVICES_SCOPE: Final = "https://cognitiveservices.azure.com/.default"
EntraId = Annotated[str, msgspec.Meta(min_length=1)]


class _EntraSource(_Section, frozen=True, tag_field="source", kw_only=True):
    """Where an Azure provider's Entra ID tokens come from (gateway/upstream/azure_credentials.py)."""

    scope: Annotated[str, msgspec.Meta(pattern=r"^https://\S+/\.default$")] = COGNITIVE_SERVICES_SCOPE


class _EntraApp(_EntraSource, frozen=True, kw_only=True):
    """An app registration of a tenant, signing in as itself (the client credentials grant)."""

    tenant_id: EntraId
    client_id: EntraId
    # Absent: $AZURE_AUTHORITY_HOST, else https://login.microsoftonline.com (sovereign clouds
    # have their own: https://login.microsoftonline.us, https://login.chinacloudapi.cn).
    authority_host: HttpUrl | None = None


class EntraClientSecret(_EntraApp, frozen=True, kw_only=True, tag="client_secret"):
    client_secret: EntraId


class EntraCertificate(_EntraApp, frozen=True, kw_only=True, tag="certificate"):
    """A certificate uploaded to the app registration: a PEM file with its private key and the
    certificate, read again on each refresh (so a renewed one is picked up)."""

    certificate_file: EntraId
    certificate_password: str | None = None


class EntraManagedIdentity(_EntraSource, frozen=True, kw_only=True, tag="managed_identity"):
    """The identity Azure gives the VM, App Service or Container App; `client_id` picks a
    user-assigned one (absent or empty: the system-assigned identity)."""

    client_id: str | None = None


class EntraWorkloadIdentity(_EntraSource, frozen=True, kw_only=True, tag="workload_identity"):
    """AKS workload identity (or any federated credential): a token file exchanged for an Entra
    token. Each absent field is taken from the variable the AKS webhook sets: $AZURE_TENANT_ID,
    $AZURE_CLIENT_ID, $AZURE_FEDERATED_TOKEN_FILE, $AZURE_AUTHORITY_HOST (empty counts as absent,
    so that `${VAR:-}` works)."""

    tenant_id: str | None = None
    client_id: str | None = None
    token_file: str | None = None
    authority_host: HttpUrl | None = None


EntraAuth = EntraClientSecret | EntraCertificate | EntraManagedIdentity | EntraWorkloadIdentity


class AzureProvider(_HttpProvider, frozen=True, kw_only=True, tag="azure"):
    """Azure OpenAI: `base_url` is the resource endpoint; a target's `model` is the deployment.

    Authentication: `api_key` (sent as `api-key`), or `entra` (an Entra ID token, fetched and
    refreshed by the gateway, sent as `Authorization: Bearer`). Raises ValueError (a config error
    at the provider's path) when both are given.
    """

    base_url: HttpUrl
    # 2024-10-21 is the first GA version that accepts stream_options, which usage accounting needs.
    api_version: str = "2024-10-21"
    entra: EntraAuth | None = None

    def __post_init__(self) -> None:
        if self.api_key and self.entra is not None:
            raise ValueError("give either api_key or entra, not both")


class AnthropicProvider(_HttpProvider, frozen=True, kw_only=True, tag="anthropic"):
    base_url: HttpUrl = "https://api.anthropic.com"
    api_version: str = "2023-06-01"
    # Anthropic requires max_tokens; this is sent when the client gives none.
    default_max_tokens: Annotated[int, msgspec.Meta(ge=1)] = 4096


class GeminiProvider(_HttpProvider, frozen=True, kw_only=True, tag="gemini"):
    base_url: HttpUrl = "https://generativelanguage.googleapis.com/v1beta"


class MistralProvider(_HttpProvider, frozen=True, kw_only=True, tag="mistral"):
    base_url: HttpUrl = "https://api.mistral.ai/v1"


class CohereProvider(_HttpProvider, frozen=True, kw_only=True, tag="cohere"):
    base_url: HttpUrl = "https://api.cohere.com"


class OllamaProvider(_HttpProvider, frozen=True, kw_only=True, tag="ollama"):
    """Ollama's native /api/chat. (Its OpenAI-compatible /v1 is `kind: openai`.)"""

    base_url: HttpUrl = "http://127.0.0.1:11434"


AwsRegion = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9]+(-[a-z0-9]+)+$")]
# Where a Bedrock provider's AWS credentials come from (gateway/upstream/aws_credentials.py): `chain` tries
# each in AWS's order; any other value uses that one source only.
AwsCredentialSource = Literal[
    "chain", "keys", "env", "web_identity", "pod_identity", "profile", "ecs", "imds"
]


class AssumeRoleConfig(_Section, frozen=True):
    """A role assumed (STS AssumeRole) with the credentials the source gives, renewed before the
    session ends."""

    role_arn: Annotated[str, msgspec.Meta(pattern=r"^arn:aws[a-z-]*:iam::\d{12}:role/.+$")]
    # The secret-like token a third party's role may demand (the confused-deputy guard).
    external_id: Annotated[str, msgspec.Meta(min_length=2, max_length=1224)] | None = None
    # What CloudTrail shows as the session: STS's own limits on the characters and length.
    session_name: Annotated[str, msgspec.Meta(pattern=r"^[\w+=,.@-]{2,64}$")] = "tollway"
    # STS's bounds; a role may allow less than 12 hours (its MaxSessionDuration), then STS says so.
    duration_s: Annotated[int, msgspec.Meta(ge=900, le=43200)] = 3600


class BedrockProvider(_HttpProvider, frozen=True, kw_only=True, tag="bedrock"):
    """AWS Bedrock Runtime (the Converse API); a target's `model` is a model id, an inference
    profile id or an ARN.

    Authentication: `api_key` (a Bedrock API key, sent as a bearer token) when set; otherwise each
    request is signed (SigV4) with AWS credentials from `aws_credentials`
    (gateway/upstream/aws_credentials.py):
    `chain` (the default) takes the first of the config's `aws_access_key_id` and
    `aws_secret_access_key` (plus `aws_session_token`), the environment, a web identity token file
    or EKS Pod Identity, the shared files' profile (`aws_profile` names one and forces this source),
    the ECS container endpoint, the EC2 instance metadata service. `assume_role` assumes a role
    on top of whichever it is. Empty values (`${AWS_SESSION_TOKEN:-}`) count as unset.
    `aws_region` (us-east-1...) is the AWS region: it names the endpoint and scopes the
    signature, so it is required unless `base_url` is given and `api_key` is used. (`region`, as
    for every provider, is the data-residency tag.)

    Raises ValueError (a config error at the provider's path) for half a key pair, sources that
    contradict each other, or a missing `aws_region`.
    """

    # Absent: the region's public endpoint, https://bedrock-runtime.{aws_region}.amazonaws.com,
    # filled in by __post_init__ (so every built BedrockProvider has a real base_url).
    base_url: HttpUrl = ""
    aws_region: AwsRegion | None = None
    aws_access_key_id: str | None = None
    aws_secret_access_key: str | None = None
    aws_session_token: str | None = None
    aws_credentials: AwsCredentialSource = "chain"
    aws_profile: Annotated[str, msgspec.Meta(min_length=1)] | None = None
    assume_role: AssumeRoleConfig | None = None
    # Where STS calls go; absent: https://sts.{aws_region}.amazonaws.com (a VPC endpoint, a test).
    aws_sts_endpoint: HttpUrl | None = None

    def __post_init__(self) -> None:
        problems = self._credential_problems()
        if problems:
            raise ValueError(problems[0])  # msgspec reports one error per entry
        if not self.aws_region:
            if not self.base_url:
                raise ValueError("aws_region is required (e.g. us-east-1) when base_url is not given")
            if not self.api_key:
                raise ValueError("aws_region is required (e.g. us-east-1) to sign requests with AWS keys")
        if not self.base_url:
            # The one way to complete a frozen Struct while it is being built (msgspec's documented use).
            msgspec.structs.force_setattr(
                self, "base_url", f"https://bedrock-runtime.{self.aws_region}.amazonaws.com"
            )

    def _credential_problems(self) -> list[str]:
        keys = bool(self.aws_access_key_id and self.aws_secret_access_key)
        source = self.aws_credentials
        problems = []
        if self.api_key:
            # The API key wins over keys left in a shared file; an explicit AWS source does not.
            if source != "chain" or self.aws_profile or self.assume_role:
                problems.append("api_key (a Bedrock API key) authenticates alone: drop the AWS settings")
            return problems
        if bool(self.aws_access_key_id) != bool(self.aws_secret_access_key):
            problems.append("give both aws_access_key_id and aws_secret_access_key, or neither")
        if source == "keys" and not keys:
            problems.append("aws_credentials: keys needs aws_access_key_id and aws_secret_access_key")
        if keys and source not in ("chain", "keys"):
            problems.append(f"aws_access_key_id is given but aws_credentials is {source}")
        if self.aws_profile and (keys or source not in ("chain", "profile")):
            problems.append("aws_profile names the source: drop the keys or the other aws_credentials")
        return problems

    @property
    def signs_requests(self) -> bool:
        """Whether requests are signed with AWS credentials (rather than sent with api_key)."""
        return not self.api_key


GoogleProject = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9.:_-]*$")]
GoogleLocation = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$")]


class _VertexProvider(_HttpProvider, frozen=True, kw_only=True):
    """Google Vertex AI: models served under `project` in `location` (a region such as
    europe-west4, or `global`), reached with Google credentials (gateway/upstream/google_credentials.py):
    `credentials_file` (a service-account key or an `authorized_user` file) when set, else
    Application Default Credentials ($GOOGLE_APPLICATION_CREDENTIALS, gcloud's ADC file, then the
    GCE/GKE metadata server).

    Raises ValueError (a config error at the provider's path) for an `api_key`: Vertex takes
    OAuth access tokens, which the gateway gets and refreshes itself.
    """

    # Absent: Vertex's endpoint for the location, https://{location}-aiplatform.googleapis.com
    # (https://aiplatform.googleapis.com for `global`), filled in by __post_init__. A test or a
    # private endpoint (Private Service Connect) gives its own; `/v1/projects/...` is added to it.
    base_url: HttpUrl = ""
    project: GoogleProject
    location: GoogleLocation
    credentials_file: Annotated[str, msgspec.Meta(min_length=1)] | None = None

    def __post_init__(self) -> None:
        if self.api_key:
            raise ValueError(
                "Vertex AI takes Google credentials, not an api_key: give credentials_file, or none "
                "for Application Default Credentials"
            )
        if not self.base_url:
            host = "aiplatform.googleapis.com"
            if self.location != "global":
                host = f"{self.location}-{host}"
            # The one way to complete a frozen Struct while it is being built (msgspec's documented use).
            msgspec.structs.force_setattr(self, "base_url", f"https://{host}")


class VertexProvider(_VertexProvider, frozen=True, kw_only=True, tag="vertex"):
    """Gemini on Vertex AI (`publishers/google`), in the Gemini adapter's translation."""


class VertexAnthropicProvider(_VertexProvider, frozen=True, kw_only=True, tag="vertex-anthropic"):
    """Claude on Vertex AI (`publishers/anthropic`), in the Anthropic adapter's translation; a
    target's `model` is Vertex's model id (`claude-sonnet-4-5@20250929`)."""

    # Vertex's version of the Messages API, sent in the body (Anthropic's own is a header).
    anthropic_version: str = "vertex-2023-10-16"
    # Anthropic requires max_tokens; this is sent when the client gives none.
    default_max_tokens: Annotated[int, msgspec.Meta(ge=1)] = 4096


class MockProvider(_Provider, frozen=True, kw_only=True, tag="mock"):
    """The built-in fake provider: deterministic answers from the prompt, no network, no key."""

    # A pause between streamed tokens (and the total for a non-streamed answer).
    latency_ms_per_token: Annotated[float, msgspec.Meta(ge=0)] = 0.0
    first_token_latency_ms: Annotated[float, msgspec.Meta(ge=0)] = 0.0  # a pause before the first token
    # When set, every call fails with this HTTP status (for demos of error handling and fallback).
    fail_status: Annotated[int, msgspec.Meta(ge=400, le=599)] | None = None
    # The size of an embedding unless the request asks for `dimensions`.
    embedding_dimensions: Annotated[int, msgspec.Meta(ge=1, le=8192)] = 16


HttpProvider = (
    OpenAIProvider
    | AzureProvider
    | AnthropicProvider
    | GeminiProvider
    | MistralProvider
    | CohereProvider
    | OllamaProvider
    | BedrockProvider
    | VertexProvider
    | VertexAnthropicProvider
)
Provider = HttpProvider | MockProvider
PROVIDER_KINDS: Final = (
    "openai",
    "azure",
    "anthropic",
    "gemini",
    "mistral",
    "cohere",
    "ollama",
    "bedrock",
    "vertex",
    "vertex-anthropic",
    "mock",
)


class TargetConfig(_Section, frozen=True):
    provider: str  # a name under `providers`
    model: Annotated[str, msgspec.Meta(min_length=1)]  # the model name the provider is asked for
    # Adjacent targets with the same `pool` name share one place in the fallback chain: each call
    # goes to one of them (by the model's `balance`), the others are tried before moving on.
    pool: Annotated[str, msgspec.Meta(min_length=1)] | None = None
    # Its share of a pool's calls under `balance: weighted` (and the tie-break of least_inflight).
    weight: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 1
    # A larger-context fallback: after a target refused the prompt as too long, only the
    # targets flagged with this are tried.
    on_context_length: bool = False


class RetryConfig(_Section, frozen=True):
    """Calls per target (1: no retry, straight to the next target) for failures worth retrying
    (429, 5xx, 529, timeouts, broken connections), `backoff_ms` doubling between them. A
    Retry-After up to `max_wait_ms` is waited out; a longer one moves on to the next target."""

    attempts: Annotated[int, msgspec.Meta(ge=1, le=10)] = 1  # calls per target
    backoff_ms: Annotated[float, msgspec.Meta(ge=0)] = 200.0  # the first pause, doubled after each
    max_wait_ms: Annotated[float, msgspec.Meta(ge=0)] = 5000.0  # the longest Retry-After waited out


class HedgeConfig(_Section, frozen=True):
    """After `after_ms` without a first byte from the current call, the next target is called
    too; the first to answer wins and the other is cancelled."""

    after_ms: Annotated[float, msgspec.Meta(gt=0)]  # how long without a first byte before the hedge


class ModelConfig(_Section, frozen=True):
    targets: Annotated[list[TargetConfig], msgspec.Meta(min_length=1)]
    # Wins over the provider's timeouts for this model.
    timeout: Timeouts | None = None
    retry: RetryConfig = RetryConfig()
    # How a pool picks its member: weighted random, fewest calls in flight, lowest recent latency.
    balance: Literal["weighted", "least_inflight", "latency"] = "weighted"
    hedge: HedgeConfig | None = None
    # Requests/tokens per minute and concurrency for this model, across all keys.
    limits: Limits | None = None
    # Answer cache for this model (off when absent); gateway/cache/answers.py.
    cache: ModelCacheConfig | None = None
    # PII, blocked content and prompt-injection policy (off when absent); gateway/guardrails/checks.py.
    guardrails: GuardrailsConfig | None = None


SyncInterval = Annotated[float, msgspec.Meta(ge=0.01, le=5.0)]


class LimitsConfig(_Section, frozen=True):
    """Rate-limit settings beyond keys, models and providers (gateway/policy/limits.py)."""

    # Applies to each end user (the request's `user` field) of each key separately.
    end_user: Limits | None = None
    # How often each process shares its consumption through storage.redis_url.
    sync_interval_s: SyncInterval = 0.2


class BudgetsConfig(_Section, frozen=True):
    """Budget periods and currencies (gateway/policy/budgets.py)."""

    # Days, weeks (from Monday) and months start at midnight in this IANA time zone.
    timezone: str = "UTC"
    # Units of the currency per US dollar (CHF: 0.80 means 1 USD = 0.80 CHF); USD is 1.
    rates: dict[Currency, Annotated[float, msgspec.Meta(gt=0)]] = {}
    # Applies to each end user (the request's `user` field) of each key separately.
    end_user: Budget | None = None
    sync_interval_s: SyncInterval = 0.2

    def __post_init__(self) -> None:
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone '{self.timezone}' (use an IANA name)") from None
        if self.rates.get("USD", 1.0) != 1.0:
            raise ValueError("rates.USD must be 1 (rates are units of a currency per US dollar)")


SigningAlgorithm = Literal["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"]


class OidcConfig(_Section, frozen=True):
    """Single sign-on for the web UI: OpenID Connect, authorization code flow with PKCE."""

    # The IdP's issuer; its /.well-known/openid-configuration is read at the first sign-in.
    issuer: HttpUrl
    client_id: Annotated[str, msgspec.Meta(min_length=1)]
    # Where the IdP sends the browser back: https://<gateway>/ui/sso/callback, as registered.
    redirect_url: HttpUrl
    client_secret: str | None = None
    # The ID token claim holding the user's groups or roles; a dotted path reaches into objects
    # (Keycloak's realm roles: realm_access.roles).
    claim: str = "groups"
    # IdP group (or role) name -> what it grants; a user in no mapped group cannot sign in.
    roles: dict[str, GroupRole] = {}
    scopes: list[str] = msgspec.field(default_factory=lambda: ["openid", "email", "profile"])
    # Signature algorithms accepted on the ID token; "none" and the HMAC family never are.
    algorithms: list[SigningAlgorithm] = msgspec.field(default_factory=lambda: ["RS256", "PS256", "ES256"])
    display_name: str = "single sign-on"


class UiConfig(_Section, frozen=True):
    """The admin web UI at /ui (gateway/ui/)."""

    enabled: bool = False
    # A session ends this long after sign-in, or after an hour without a request.
    session_ttl_s: Seconds = 8 * 3600.0
    idle_timeout_s: Seconds = 3600.0
    oidc: OidcConfig | None = None


class Config(_Section, frozen=True):
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


class ConfigError(Exception):
    """The configuration is unusable; `errors` lists every problem, each with its path."""

    def __init__(self, source: str, errors: list[str]) -> None:
        super().__init__(f"{source}: " + "; ".join(errors))
        self.source = source
        self.errors = errors


_VAR: Final = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_MSGSPEC_PATH: Final = re.compile(r" - at `\$(.*)`$")


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)


def interpolate(node: Any, env: Mapping[str, str], path: str, errors: list[str]) -> Any:
    """Replace `${VAR}` and `${VAR:-default}` in every string of a YAML tree; `$$` is a `$`.

    A variable that is unset and has no default is reported in `errors` under the value's path.
    """
    if isinstance(node, str):

        def substitute(match: re.Match[str]) -> str:
            if match.group(0) == "$$":
                return "$"
            name, default = match.group(1), match.group(2)
            value = env.get(name)
            if default is not None and not value:
                return default  # as in the shell, `:-` also replaces a variable set to ""
            if value is not None:
                return value
            errors.append(f"{path}: environment variable {name} is not set (use ${{{name}:-default}})")
            return ""

        return _VAR.sub(substitute, node)
    if isinstance(node, dict):
        return {key: interpolate(value, env, _join(path, str(key)), errors) for key, value in node.items()}
    if isinstance(node, list):
        return [interpolate(value, env, _join(path, i), errors) for i, value in enumerate(node)]
    return node


_PATH_STEP: Final = re.compile(r"\.([^.\[]+)|\[(\d+)\]")
_UNKNOWN_FIELD: Final = re.compile(r"^Object contains unknown field `([^`]+)`$")
_MISSING_FIELD: Final = re.compile(r"^Object missing required field `([^`]+)`$")
# Bounds the retries below: no config entry has anywhere near this many fields.
_MAX_ERRORS_PER_ENTRY: Final = 32


def _split_error(exc: msgspec.ValidationError) -> tuple[str, list[str | int]]:
    """msgspec's message and the path it names, as keys and indexes relative to the entry."""
    message = str(exc)
    match = _MSGSPEC_PATH.search(message)
    if match is None:
        return message, []
    steps: list[str | int] = [key if key else int(index) for key, index in _PATH_STEP.findall(match.group(1))]
    return message[: match.start()], steps


_INVALID_VALUE: Final = re.compile(r"^Invalid (?:enum )?value '(.*)'$")


def _explain(message: str, kind: type[Any], steps: list[str | int]) -> str:
    """msgspec's "Invalid value 'gemni'", with the values allowed there and the closest one."""
    invalid = _INVALID_VALUE.match(message)
    if invalid is None:
        return message
    return message + hint(invalid.group(1), choices_at(kind, steps))


def _render(path: str, steps: list[str | int]) -> str:
    for step in steps:
        path = _join(path, step)
    return path or "(top level)"


def _drop(node: Any, steps: list[str | int]) -> bool:
    """Remove the value at `steps` from a dict tree; False when it cannot (a list item, say)."""
    for step in steps[:-1]:
        try:
            node = node[step]
        except (KeyError, IndexError, TypeError):
            return False
    if steps and isinstance(node, dict) and isinstance(steps[-1], str) and steps[-1] in node:
        del node[steps[-1]]
        return True
    return False


def _convert(node: Any, kind: type[T], path: str, errors: list[str]) -> T | None:
    """Validate one entry into its Struct, reporting every bad field, not just the first.

    msgspec stops at the first error, so after each one the offending key is dropped from a copy
    (the field then takes its default) and validation runs again, until it passes or an error
    cannot be stepped over (a required field, a list item). An entry that passes only with keys
    dropped is still returned, so that the checks across entries (a target's provider) see it
    too; the errors already reported keep the config from being used.
    """
    attempt = node
    dropped: set[str] = set()
    for _ in range(_MAX_ERRORS_PER_ENTRY):
        try:
            # strict=False: values that came through ${VAR} are strings even where a number is meant.
            converted = msgspec.convert(attempt, kind, strict=False)
        except msgspec.ValidationError as exc:
            message, steps = _split_error(exc)
            unknown = _UNKNOWN_FIELD.match(message)
            missing = _MISSING_FIELD.match(message)
            target = [*steps, unknown.group(1)] if unknown else steps
            if missing and _render(path, [*steps, missing.group(1)]) in dropped:
                return None  # we dropped it ourselves, after reporting why
            if unknown:
                known = hint(unknown.group(1), fields_at(kind, steps, attempt))
                errors.append(f"{_render(path, target)}: unknown field{known}")
            else:
                errors.append(f"{_render(path, steps)}: {_explain(message, kind, steps)}")
            if attempt is node:
                attempt = copy.deepcopy(node)
            if not _drop(attempt, target):
                return None
            dropped.add(_render(path, target))
        else:
            return converted
    return None


def _section_map(node: Any, kind: type[T], path: str, errors: list[str]) -> dict[str, T]:
    if node is None:
        return {}
    if not isinstance(node, dict):
        errors.append(f"{path}: expected a mapping of names to entries")
        return {}
    result: dict[str, T] = {}
    for name, entry in node.items():
        converted = _convert(entry, kind, _join(path, str(name)), errors)
        if converted is not None:
            result[str(name)] = converted
    return result


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


def _section(tree: dict[str, Any], name: str) -> Any:
    value = tree.get(name)
    return {} if value is None else value


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
    server = _convert(_section(tree, "server"), ServerConfig, "server", errors)
    logging_ = _convert(_section(tree, "logging"), LoggingConfig, "logging", errors)
    providers: dict[str, Provider] = _section_map(tree.get("providers"), Provider, "providers", errors)  # type: ignore[arg-type]
    models = _section_map(tree.get("models"), ModelConfig, "models", errors)
    storage = _convert(_section(tree, "storage"), StorageConfig, "storage", errors)
    # Price entries one by one, so an error names its "<kind>/<model>" (msgspec's path would not).
    pricing_tree = _section(tree, "pricing")
    prices = pricing_tree.pop("models", None) if isinstance(pricing_tree, dict) else None
    pricing = _convert(pricing_tree, PricingConfig, "pricing", errors)
    price_models = _section_map(prices, ModelPrice, "pricing.models", errors)
    if pricing is not None:
        pricing = msgspec.structs.replace(pricing, models=price_models)
    keys = _section_map(tree.get("keys"), ConfigKey, "keys", errors)
    limits = _convert(_section(tree, "limits"), LimitsConfig, "limits", errors)
    budgets = _convert(_section(tree, "budgets"), BudgetsConfig, "budgets", errors)
    alerts = _convert(_section(tree, "alerts"), AlertsConfig, "alerts", errors)
    tracing = _convert(_section(tree, "tracing"), TracingConfig, "tracing", errors)
    cache = _convert(_section(tree, "cache"), CacheConfig, "cache", errors)
    responses = _convert(_section(tree, "responses"), ResponsesConfig, "responses", errors)
    files = _convert(_section(tree, "files"), FilesConfig, "files", errors)
    ui = _convert(_section(tree, "ui"), UiConfig, "ui", errors)
    metrics = _convert(_section(tree, "metrics"), MetricsConfig, "metrics", errors)
    for name, key in keys.items():
        if (key.secret is None) == (key.secret_hash is None):
            errors.append(f"keys.{name}: give exactly one of secret or secret_hash")
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
    if config.responses.store and not config.storage.database_url:
        errors.append("responses.store: keeping responses needs a store (set storage.database_url)")
    errors.extend(_redis_errors(config.storage))
    shared_redis = config.storage.redis is not None or config.storage.redis_url is not None
    errors.extend(cache_config_errors(config.cache, shared_redis))
    if config.ui.enabled and not config.server.master_key and config.ui.oidc is None:
        errors.append("ui.enabled: nobody could sign in: set server.master_key or ui.oidc")
    provider_tree = tree.get("providers")
    provider_names = {str(name) for name in provider_tree} if isinstance(provider_tree, dict) else set()
    _check_references(config, provider_names, errors)
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


def _redis_errors(storage: StorageConfig) -> list[str]:
    if storage.redis is not None and storage.redis_url is not None:
        return ["storage.redis_url: give storage.redis or storage.redis_url (its older name), not both"]
    try:
        storage.redis_target()
    except ValueError as exc:
        return [f"storage.redis: {exc}"]
    return []


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
