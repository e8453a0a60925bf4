"""`kind: bedrock` (AWS Bedrock Runtime): its region, the sources of its AWS credentials, an
assumed role."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from gateway.config.schema.base import HttpUrl, Section
from gateway.config.schema.provider_base import BaseHttpProvider

AwsRegion = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9]+(-[a-z0-9]+)+$")]
# Where a Bedrock provider's AWS credentials come from (gateway/upstream/aws_credentials.py): `chain` tries
# each in AWS's order; any other value uses that one source only.
AwsCredentialSource = Literal[
    "chain", "keys", "env", "web_identity", "pod_identity", "profile", "ecs", "imds"
]


class AssumeRoleConfig(Section, frozen=True):
    """A role assumed (STS AssumeRole) with the credentials the source gives, renewed before the
    session ends."""

    role_arn: Annotated[str, msgspec.Meta(pattern=r"^arn:aws[a-z-]*:iam::\d{12}:role/.+$")]
    # The secret-like token a third party's role may demand (the confused-deputy guard).
    external_id: Annotated[str, msgspec.Meta(min_length=2, max_length=1224)] | None = None
    # What CloudTrail shows as the session: STS's own limits on the characters and length.
    session_name: Annotated[str, msgspec.Meta(pattern=r"^[\w+=,.@-]{2,64}$")] = "tollway"
    # STS's bounds; a role may allow less than 12 hours (its MaxSessionDuration), then STS says so.
    duration_s: Annotated[int, msgspec.Meta(ge=900, le=43200)] = 3600


class BedrockProvider(BaseHttpProvider, frozen=True, kw_only=True, tag="bedrock"):
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
