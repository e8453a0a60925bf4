"""The AWS credential sources and the chain that picks one (gateway/upstream/aws_sources.py,
gateway/upstream/aws_profiles.py, gateway/upstream/aws_credentials.py), against local STS, instance metadata and
container endpoints over real HTTP (tests/support/aws_mocks.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest

from gateway.config.schema import AssumeRoleConfig, BedrockProvider
from gateway.upstream.aws_credentials import ChainContext, build_aws_credentials, choose_source
from gateway.upstream.aws_profiles import read_profiles
from gateway.upstream.aws_sources import (
    AssumeRoleSource,
    ContainerSource,
    InstanceMetadataSource,
    StaticSource,
    WebIdentitySource,
    check_container_url,
)
from gateway.upstream.aws_sts import RoleRequest, assume_role, sts_endpoint
from gateway.upstream.refresh import CredentialError, CredentialsUnavailable
from gateway.upstream.sigv4 import AwsCredentials
from tests.support.aws_mocks import AwsAccount, MockMetadata, MockSts
from tests.support.servers import start_site

REGION = "us-east-1"
ROLE = "arn:aws:iam::123456789012:role/bedrock-caller"
BASE = AwsCredentials("AKIABASEUSERKEY00001", "base/Secret+Key0123456789abcdefghijklmn")


@dataclass
class Aws:
    account: AwsAccount
    sts: MockSts
    metadata: MockMetadata
    http: aiohttp.ClientSession

    def provider(self, **fields: object) -> BedrockProvider:
        return BedrockProvider(aws_region=REGION, aws_sts_endpoint=self.sts.url, **fields)  # type: ignore[arg-type]


@pytest.fixture
async def aws() -> AsyncIterator[Aws]:
    account = AwsAccount()
    account.keys[BASE.access_key_id] = (BASE.secret_access_key, None)
    sts, metadata = MockSts(account), MockMetadata(account)
    sts_runner, sts_port = await start_site(sts.app())
    md_runner, md_port = await start_site(metadata.app())
    sts.url, metadata.url = f"http://127.0.0.1:{sts_port}", f"http://127.0.0.1:{md_port}"
    async with aiohttp.ClientSession() as http:
        yield Aws(account, sts, metadata, http)
    await sts_runner.cleanup()
    await md_runner.cleanup()


def _env(tmp_path: Path, **more: str) -> dict[str, str]:
    """An environment with no AWS settings of the machine's own: files in tmp_path, no IMDS."""
    return {
        "HOME": str(tmp_path),
        "AWS_CONFIG_FILE": str(tmp_path / "config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
        **more,
    }


# --- STS -----------------------------------------------------------------------------------------


async def test_assume_role_is_signed_and_answered_with_temporary_credentials(aws: Aws) -> None:
    aws.sts.external_id = "ext-7731"
    role = RoleRequest(ROLE, "gw-session", "ext-7731", 1800)
    got = await assume_role(aws.http, sts_endpoint(REGION, aws.sts.url), role, BASE, _now())
    assert aws.sts.refused == []
    (call,) = aws.sts.calls
    assert call.key_id == BASE.access_key_id
    assert call.fields == {
        "Action": "AssumeRole",
        "Version": "2011-06-15",
        "RoleArn": ROLE,
        "RoleSessionName": "gw-session",
        "DurationSeconds": "1800",
        "ExternalId": "ext-7731",
    }
    assert got.value == aws.account.issued[-1]
    assert got.expires_at is not None and 3590 < got.expires_at - time.time() <= 3600


async def test_assume_role_with_a_wrong_secret_is_refused_by_the_signature_check(aws: Aws) -> None:
    wrong = AwsCredentials(BASE.access_key_id, "not/the/secret+0123456789abcdefghijklmn")
    with pytest.raises(
        CredentialError, match=r"STS AssumeRole refused \(403 SignatureDoesNotMatch\)"
    ) as caught:
        await assume_role(aws.http, sts_endpoint(REGION, aws.sts.url), RoleRequest(ROLE), wrong, _now())
    assert aws.sts.refused == ["mismatch"]
    assert wrong.secret_access_key not in str(caught.value)


async def test_assume_role_with_a_session_token_signs_the_token(aws: Aws) -> None:
    temporary, _ = aws.account.issue("base")
    await assume_role(aws.http, sts_endpoint(REGION, aws.sts.url), RoleRequest(ROLE), temporary, _now())
    assert aws.sts.refused == []
    aws.account.keys[temporary.access_key_id] = (temporary.secret_access_key, "another-token")
    with pytest.raises(CredentialError, match="SignatureDoesNotMatch"):
        await assume_role(aws.http, sts_endpoint(REGION, aws.sts.url), RoleRequest(ROLE), temporary, _now())
    assert aws.sts.refused == ["the security token is missing or wrong"]


async def test_web_identity_token_file_is_read_again_on_each_fetch(aws: Aws, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(aws.sts.web_identity_token + "\n")
    source = WebIdentitySource(str(token_file), RoleRequest(ROLE, "irsa"), sts_endpoint(REGION, aws.sts.url))
    first = await source.fetch(aws.http)
    assert first.value == aws.account.issued[-1] and first.value.session_token
    assert aws.sts.calls[-1].key_id is None  # unsigned
    assert aws.sts.calls[-1].fields["WebIdentityToken"] == aws.sts.web_identity_token
    token_file.write_text("rotated-but-wrong")
    with pytest.raises(CredentialError, match="InvalidIdentityToken"):
        await source.fetch(aws.http)
    token_file.unlink()
    with pytest.raises(CredentialError, match=r"web identity token file .* cannot be read"):
        await source.fetch(aws.http)


async def test_sts_being_down_is_a_credential_error_without_the_address(aws: Aws) -> None:
    aws.sts.failing = True
    with pytest.raises(CredentialError, match=r"refused \(503 ServiceUnavailable\)"):
        await assume_role(aws.http, sts_endpoint(REGION, aws.sts.url), RoleRequest(ROLE), BASE, _now())
    with pytest.raises(CredentialError, match="could not be reached") as caught:
        await assume_role(
            aws.http, sts_endpoint(REGION, "http://127.0.0.1:9"), RoleRequest(ROLE), BASE, _now()
        )
    assert "127.0.0.1" not in str(caught.value)


def test_the_sts_endpoint_is_regional_unless_overridden() -> None:
    assert sts_endpoint("eu-central-1").url == "https://sts.eu-central-1.amazonaws.com/"
    assert sts_endpoint("eu-central-1", "http://127.0.0.1:1234").url == "http://127.0.0.1:1234/"


# --- instance metadata and containers ------------------------------------------------------------


async def test_imds_v2_needs_its_token_and_gives_the_role_credentials(aws: Aws) -> None:
    got = await InstanceMetadataSource(aws.metadata.url).fetch(aws.http)
    assert aws.metadata.hits == ["token", "roles", "role"] and aws.metadata.refused == []
    assert got.value == aws.account.issued[-1]
    assert got.expires_at is not None and got.expires_at > time.time() + 3500
    # The mock does require the token (so the source above did send it):
    async with aws.http.get(aws.metadata.url + "/latest/meta-data/iam/security-credentials/") as plain:
        assert plain.status == 401


async def test_imds_without_a_role_says_so(aws: Aws) -> None:
    aws.metadata.role_name = ""
    with pytest.raises(CredentialError, match="no IAM role attached"):
        await InstanceMetadataSource(aws.metadata.url).fetch(aws.http)


async def test_container_endpoint_with_a_token_file(aws: Aws, tmp_path: Path) -> None:
    aws.metadata.container_authorization = "pod-identity-token-abc"
    token_file = tmp_path / "eks-pod-identity-token"
    token_file.write_text("pod-identity-token-abc\n")
    url = aws.metadata.url + "/container/creds"
    got = await ContainerSource(url, authorization_file=str(token_file)).fetch(aws.http)
    assert got.value == aws.account.issued[-1] and aws.metadata.refused == []
    with pytest.raises(CredentialError, match="answered 403"):
        await ContainerSource(url, authorization="wrong").fetch(aws.http)


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("http://127.0.0.1:8080/creds", True),
        ("http://localhost/creds", True),
        ("http://169.254.170.23/v1/credentials", True),
        ("http://[fd00:ec2::23]/v1/credentials", True),
        ("https://creds.example/v1", True),
        ("http://creds.example/v1", False),
        ("http://10.0.0.8/creds", False),
        ("file:///etc/passwd", False),
    ],
)
def test_container_full_uri_must_be_https_or_a_known_agent(url: str, allowed: bool) -> None:
    if allowed:
        assert check_container_url(url) == url
    else:
        with pytest.raises(CredentialError, match="must be https"):
            check_container_url(url)


# --- the shared files ----------------------------------------------------------------------------


def _files(tmp_path: Path, config: str, credentials: str = "") -> None:
    (tmp_path / "config").write_text(config)
    (tmp_path / "credentials").write_text(credentials)


async def test_profile_role_arn_with_source_profile_assumes_the_role(aws: Aws, tmp_path: Path) -> None:
    _files(
        tmp_path,
        f"[profile bedrock]\nrole_arn = {ROLE}\nsource_profile = base\nexternal_id = ext-1\n"
        "role_session_name = from-profile\nduration_seconds = 900\nregion = us-east-1\n",
        f"[base]\naws_access_key_id = {BASE.access_key_id}\naws_secret_access_key = {BASE.secret_access_key}\n",
    )
    aws.sts.external_id = "ext-1"
    source = choose_source(ChainContext(aws.provider(aws_profile="bedrock"), _env(tmp_path)))
    assert isinstance(source, AssumeRoleSource) and isinstance(source.base, StaticSource)
    got = await source.fetch(aws.http)
    assert aws.sts.refused == []
    assert aws.sts.calls[-1].key_id == BASE.access_key_id
    assert aws.sts.calls[-1].fields["RoleSessionName"] == "from-profile"
    assert aws.sts.calls[-1].fields["DurationSeconds"] == "900"
    assert got.value == aws.account.issued[-1]


async def test_profile_chains_two_roles(aws: Aws, tmp_path: Path) -> None:
    second = "arn:aws:iam::123456789012:role/second"
    aws.sts.roles.add(second)
    _files(
        tmp_path,
        f"[profile first]\nrole_arn = {ROLE}\nsource_profile = base\n"
        f"[profile second]\nrole_arn = {second}\nsource_profile = first\n",
        f"[base]\naws_access_key_id = {BASE.access_key_id}\naws_secret_access_key = {BASE.secret_access_key}\n",
    )
    source = choose_source(ChainContext(aws.provider(aws_profile="second"), _env(tmp_path)))
    got = await source.fetch(aws.http)
    first_call, second_call = aws.sts.calls
    assert (first_call.fields["RoleArn"], first_call.key_id) == (ROLE, BASE.access_key_id)
    # The second role is assumed with the first role's temporary credentials.
    assert (second_call.fields["RoleArn"], second_call.key_id) == (
        second,
        aws.account.issued[0].access_key_id,
    )
    assert got.value == aws.account.issued[1] and aws.sts.refused == []


async def test_profile_credential_source_instance_metadata(aws: Aws, tmp_path: Path) -> None:
    _files(tmp_path, f"[default]\nrole_arn = {ROLE}\ncredential_source = Ec2InstanceMetadata\n")
    env = _env(tmp_path, AWS_EC2_METADATA_SERVICE_ENDPOINT=aws.metadata.url)
    del env["AWS_EC2_METADATA_DISABLED"]
    got = await choose_source(ChainContext(aws.provider(), env)).fetch(aws.http)
    assert aws.metadata.hits == ["token", "roles", "role"]
    assert aws.sts.calls[-1].key_id == aws.account.issued[0].access_key_id  # the instance's keys
    assert got.value == aws.account.issued[1]


@pytest.mark.parametrize(
    ("config", "error"),
    [
        (
            "[profile a]\nrole_arn = r\nsource_profile = b\n[profile b]\nrole_arn = r\nsource_profile = a\n",
            "loop",
        ),
        ("[profile a]\nrole_arn = r\n", "neither source_profile nor credential_source"),
        ("[profile a]\nsso_session = corp\nsso_account_id = 1\n", "uses SSO"),
        ("[profile a]\ncredential_process = /bin/creds\n", "uses credential_process"),
        ("[profile a]\nrole_arn = r\nsource_profile = a\n", "its own source_profile but has no keys"),
        ("[profile a]\nrole_arn = r\ncredential_source = Somewhere\n", "unknown credential_source"),
        ("[profile a]\nrole_arn = r\ncredential_source = Environment\n", "Environment, which has none"),
        ("[profile a]\nregion = us-east-1\n", "has no keys and no role_arn"),
        ("[profile b]\naws_access_key_id = x\naws_secret_access_key = y\n", "'a' is in neither"),
        ("[profile a\n", "cannot be read"),
    ],
)
def test_profile_problems_are_named(tmp_path: Path, config: str, error: str) -> None:
    _files(tmp_path, config)
    provider = BedrockProvider(aws_region=REGION, aws_profile="a")
    with pytest.raises(CredentialError, match=error):
        choose_source(ChainContext(provider, _env(tmp_path)))


def test_the_credentials_file_wins_over_the_config_file(tmp_path: Path) -> None:
    _files(
        tmp_path,
        "[default]\naws_access_key_id = FROMCONFIG\nregion = eu-west-1\n[profile x]\nregion = us-west-2\n"
        "[sso-session corp]\nsso_region = us-east-1\n",
        "[default]\naws_access_key_id = FROMCREDS\naws_secret_access_key = s\n",
    )
    profiles = read_profiles(tmp_path / "config", tmp_path / "credentials")
    assert profiles == {
        "default": {"aws_access_key_id": "FROMCREDS", "region": "eu-west-1", "aws_secret_access_key": "s"},
        "x": {"region": "us-west-2"},
    }


# --- the chain -----------------------------------------------------------------------------------

ENV_KEYS = {"AWS_ACCESS_KEY_ID": "AKIAFROMENVIRONMENT1", "AWS_SECRET_ACCESS_KEY": "env/secret"}


def _chain(tmp_path: Path, provider: BedrockProvider, **env: str) -> str:
    """Which source the chain picks, by kind (and where a static one is from)."""
    source = choose_source(ChainContext(provider, env, ecs_host="http://127.0.0.1:1"))
    if isinstance(source, StaticSource):
        return source.description
    return type(source).__name__


def test_the_chain_takes_the_first_source_present_in_order(tmp_path: Path) -> None:
    _files(tmp_path, "[default]\naws_access_key_id = AKIAPROFILE\naws_secret_access_key = p\n")
    (tmp_path / "token").write_text("t")
    keyed = BedrockProvider(aws_region=REGION, aws_access_key_id="AKIACONFIG", aws_secret_access_key="c")
    bare = BedrockProvider(aws_region=REGION)
    web = {"AWS_WEB_IDENTITY_TOKEN_FILE": str(tmp_path / "token"), "AWS_ROLE_ARN": ROLE}
    pod = {"AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://169.254.170.23/v1/credentials"}
    ecs = {"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": "/v2/credentials/abc"}
    everything = {**_env(tmp_path), **ENV_KEYS, **web, **pod, **ecs}
    everything.pop("AWS_EC2_METADATA_DISABLED")
    assert _chain(tmp_path, keyed, **everything) == "keys in the config"
    assert _chain(tmp_path, bare, **everything) == "environment variables"
    without = {k: v for k, v in everything.items() if k not in ENV_KEYS}
    assert _chain(tmp_path, bare, **without) == "WebIdentitySource"
    without = {k: v for k, v in without.items() if k not in web}
    assert _chain(tmp_path, bare, **without) == "ContainerSource"  # Pod Identity's full URI
    without = {k: v for k, v in without.items() if k not in pod}
    assert _chain(tmp_path, bare, **without) == "keys of the AWS profile 'default'"
    (tmp_path / "credentials").unlink()
    (tmp_path / "config").unlink()
    source = choose_source(ChainContext(bare, without, ecs_host="http://127.0.0.1:1"))
    assert isinstance(source, ContainerSource) and source.url == "http://127.0.0.1:1/v2/credentials/abc"
    without = {k: v for k, v in without.items() if k not in ecs}
    assert _chain(tmp_path, bare, **without) == "InstanceMetadataSource"
    with pytest.raises(CredentialError, match="no AWS credentials found"):
        _chain(tmp_path, bare, **without, AWS_EC2_METADATA_DISABLED="true")


def test_a_named_profile_that_is_missing_is_an_error_not_a_fall_through(tmp_path: Path) -> None:
    _files(tmp_path, "[default]\naws_access_key_id = a\naws_secret_access_key = b\n")
    bare = BedrockProvider(aws_region=REGION)
    with pytest.raises(CredentialError, match="'prod' is in neither"):
        _chain(tmp_path, bare, **_env(tmp_path), AWS_PROFILE="prod")
    assert (
        _chain(tmp_path, bare, **_env(tmp_path), AWS_PROFILE="default") == "keys of the AWS profile 'default'"
    )


def test_an_explicit_source_is_the_only_one_tried(tmp_path: Path) -> None:
    env = {**_env(tmp_path), **ENV_KEYS}
    imds = BedrockProvider(aws_region=REGION, aws_credentials="imds")
    env_only = BedrockProvider(aws_region=REGION, aws_credentials="env")
    del env["AWS_EC2_METADATA_DISABLED"]
    assert _chain(tmp_path, imds, **env) == "InstanceMetadataSource"
    assert _chain(tmp_path, env_only, **env) == "environment variables"
    with pytest.raises(CredentialError, match="aws_credentials is web_identity, but AWS_WEB_IDENTITY"):
        _chain(tmp_path, BedrockProvider(aws_region=REGION, aws_credentials="web_identity"), **env)


def test_assume_role_goes_on_top_of_whichever_source(tmp_path: Path) -> None:
    provider = BedrockProvider(
        aws_region="eu-west-1",
        assume_role=AssumeRoleConfig(ROLE, external_id="x-1", session_name="gw"),
    )
    source = choose_source(ChainContext(provider, {**_env(tmp_path), **ENV_KEYS}))
    assert isinstance(source, AssumeRoleSource)
    assert source.base.description == "environment variables"
    assert source.role == RoleRequest(ROLE, "gw", "x-1", 3600)
    assert source.sts.url == "https://sts.eu-west-1.amazonaws.com/"


async def test_a_source_missing_at_start_up_is_retried_until_it_appears(aws: Aws, tmp_path: Path) -> None:
    provider = aws.provider(aws_credentials="web_identity")
    token_file = tmp_path / "token"
    env = {**_env(tmp_path), "AWS_ROLE_ARN": ROLE}
    credentials = build_aws_credentials("bed", provider, env, first_backoff_s=0.05, max_backoff_s=0.05)
    await credentials.start()
    with pytest.raises(CredentialsUnavailable):
        credentials.current()
    env["AWS_WEB_IDENTITY_TOKEN_FILE"] = str(token_file)  # the mount arrives late
    token_file.write_text(aws.sts.web_identity_token)
    for _ in range(100):
        if credentials.up:
            break
        await asyncio.sleep(0.02)
    assert credentials.current() == aws.account.issued[-1]
    await credentials.aclose()


def _now() -> datetime:
    return datetime.now(UTC)
