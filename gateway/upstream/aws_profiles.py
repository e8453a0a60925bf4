"""AWS's shared config and credentials files (~/.aws/config, ~/.aws/credentials): a named profile
turned into a credential source, including a role assumed from another profile (`role_arn` with
`source_profile`), from the instance or container (`credential_source`), or with a web identity
token file.

Supported keys: aws_access_key_id, aws_secret_access_key, aws_session_token, role_arn,
source_profile, credential_source, web_identity_token_file, external_id, role_session_name,
duration_seconds, region. SSO, credential_process and MFA are refused with a message saying so.
"""

from __future__ import annotations

import configparser
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Final

from gateway.upstream.aws_sources import AssumeRoleSource, AwsSource, StaticSource, WebIdentitySource
from gateway.upstream.aws_sts import DEFAULT_SESSION_NAME, RoleRequest, sts_endpoint
from gateway.upstream.refresh import CredentialError
from gateway.upstream.sigv4 import AwsCredentials

Profiles = Mapping[str, Mapping[str, str]]
# credential_source values, as AWS names them: Environment, Ec2InstanceMetadata, EcsContainer.
SourceFor = Callable[[str], AwsSource]
# A chain of profiles deeper than this is a mistake (AWS's CLI has no limit, but loops are found
# by the visited set; this only bounds the work on a pathological file).
_MAX_DEPTH: Final = 16
_UNSUPPORTED: Final = (
    ("sso_session", "SSO"),
    ("sso_start_url", "SSO"),
    ("credential_process", "credential_process"),
    ("mfa_serial", "MFA"),
)


def read_profiles(config_file: Path, credentials_file: Path) -> dict[str, dict[str, str]]:
    """Every profile in both files, by name. The credentials file names sections `[name]`, the
    config file `[profile name]` (and `[default]`); where both set a key, the credentials file
    wins, as in AWS's CLI. A missing file is no error; an unreadable or malformed one is a
    CredentialError naming it."""
    profiles: dict[str, dict[str, str]] = {}
    for path, prefixed in ((config_file, True), (credentials_file, False)):
        parser = configparser.RawConfigParser(default_section="\x00none")
        try:
            if not path.is_file():
                continue
            parser.read_string(path.read_text(encoding="utf-8"), source=str(path))
        except (OSError, UnicodeDecodeError, configparser.Error) as exc:
            raise CredentialError(f"the AWS file {path} cannot be read ({type(exc).__name__})") from None
        for section in parser.sections():
            name = _profile_name(section.strip(), prefixed)
            if name is not None:
                profiles.setdefault(name, {}).update(
                    {key.strip(): value.strip() for key, value in parser.items(section)}
                )
    return profiles


def _profile_name(section: str, prefixed: bool) -> str | None:
    if not prefixed or section == "default":
        return section
    if section.startswith("profile "):
        return section.removeprefix("profile ").strip()
    return None  # [sso-session x], [services x]: not profiles


def profile_source(
    name: str,
    profiles: Profiles,
    region: str,
    source_for: SourceFor,
    sts_override: str | None = None,
) -> AwsSource:
    """The credential source a profile describes. `region` scopes STS calls unless the profile
    names its own. Raises CredentialError for a missing profile, a loop of source_profile, a
    profile with nothing usable, or an unsupported kind (SSO, credential_process, MFA)."""
    return _resolve(name, profiles, region, source_for, sts_override, ())


def _resolve(
    name: str,
    profiles: Profiles,
    region: str,
    source_for: SourceFor,
    sts_override: str | None,
    seen: tuple[str, ...],
) -> AwsSource:
    profile = profiles.get(name)
    if profile is None:
        raise CredentialError(f"the AWS profile '{name}' is in neither the config nor the credentials file")
    if name in seen or len(seen) >= _MAX_DEPTH:
        raise CredentialError(f"the AWS profiles {' -> '.join((*seen, name))} form a loop of source_profile")
    role_arn = profile.get("role_arn")
    if not role_arn:
        keys = static_keys(name, profile)
        if keys is not None:
            return keys
        for key, kind in _UNSUPPORTED:
            if key in profile:
                raise CredentialError(f"the AWS profile '{name}' uses {kind}, which Tollway does not support")
        raise CredentialError(f"the AWS profile '{name}' has no keys and no role_arn")
    if "mfa_serial" in profile:
        raise CredentialError(f"the AWS profile '{name}' needs MFA, which a gateway cannot enter")
    sts = sts_endpoint(profile.get("region") or region, sts_override)
    role = RoleRequest(
        role_arn,
        profile.get("role_session_name") or DEFAULT_SESSION_NAME,
        profile.get("external_id") or None,
        _duration(name, profile.get("duration_seconds")),
    )
    token_file = profile.get("web_identity_token_file")
    if token_file:
        return WebIdentitySource(token_file, role, sts)
    source_profile = profile.get("source_profile")
    credential_source = profile.get("credential_source")
    if source_profile and credential_source:
        raise CredentialError(f"the AWS profile '{name}' sets both source_profile and credential_source")
    if source_profile:
        if source_profile == name:
            # A profile may be its own source: its keys assume its role (AWS's CLI allows it).
            keys = static_keys(name, profile)
            if keys is None:
                raise CredentialError(f"the AWS profile '{name}' is its own source_profile but has no keys")
            base: AwsSource = keys
        else:
            base = _resolve(source_profile, profiles, region, source_for, sts_override, (*seen, name))
    elif credential_source:
        base = source_for(credential_source)
    else:
        raise CredentialError(
            f"the AWS profile '{name}' has role_arn but neither source_profile nor credential_source"
        )
    return AssumeRoleSource(base, role, sts)


def static_keys(name: str, profile: Mapping[str, str]) -> StaticSource | None:
    key_id, secret = profile.get("aws_access_key_id"), profile.get("aws_secret_access_key")
    if not (key_id and secret):
        return None
    credentials = AwsCredentials(key_id, secret, profile.get("aws_session_token") or None)
    return StaticSource(credentials, f"keys of the AWS profile '{name}'")


def _duration(name: str, value: str | None) -> int | None:
    if not value:
        return None
    try:
        seconds = int(value)
    except ValueError:
        raise CredentialError(
            f"the AWS profile '{name}' has a duration_seconds that is not a number"
        ) from None
    if not 900 <= seconds <= 43200:
        raise CredentialError(f"the AWS profile '{name}': duration_seconds must be 900 to 43200")
    return seconds
