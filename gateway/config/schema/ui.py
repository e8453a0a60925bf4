"""The `ui:` section: the admin web UI, its single sign-on, and the roles IdP groups grant."""

from __future__ import annotations

from typing import Annotated, Final, Literal

import msgspec

from gateway.config.schema.base import HttpUrl, Seconds, Section

Role = Literal["admin", "team_admin", "viewer"]
ROLES: Final[tuple[Role, ...]] = ("admin", "team_admin", "viewer")


class GroupRole(Section, frozen=True):
    """What membership of one IdP group grants: a role, and for team_admin the teams it manages."""

    role: Role
    teams: list[str] = []

    def __post_init__(self) -> None:
        if self.role == "team_admin" and not self.teams:
            raise ValueError("a team_admin group needs the ids of its teams (teams: [team_...])")
        if self.role != "team_admin" and self.teams:
            raise ValueError("only a team_admin group names teams")


SigningAlgorithm = Literal["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"]


class OidcConfig(Section, frozen=True):
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


class UiConfig(Section, frozen=True):
    """The admin web UI at /ui (gateway/ui/)."""

    enabled: bool = False
    # A session ends this long after sign-in, or after an hour without a request.
    session_ttl_s: Seconds = 8 * 3600.0
    idle_timeout_s: Seconds = 3600.0
    oidc: OidcConfig | None = None
