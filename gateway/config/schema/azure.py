"""`kind: azure` (Azure OpenAI) and where its Entra ID tokens come from."""

from __future__ import annotations

from typing import Annotated, Final

import msgspec

from gateway.config.schema.base import HttpUrl, Section
from gateway.config.schema.provider_base import BaseHttpProvider

# The scope of an Entra token that Azure OpenAI (and every Azure AI service) accepts.
COGNITIVE_SERVICES_SCOPE: Final = "https://cognitiveservices.azure.com/.default"
EntraId = Annotated[str, msgspec.Meta(min_length=1)]


class _EntraSource(Section, frozen=True, tag_field="source", kw_only=True):
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


class AzureProvider(BaseHttpProvider, frozen=True, kw_only=True, tag="azure"):
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
