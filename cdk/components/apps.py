"""App definitions for the handlers: the apps file's settings, with each secret kept in Secrets Manager (or
in SSM Parameter Store SecureStrings the apps file names, when every app has ``secret_parameter``).

The handlers read their apps from ``SOCKLESS_APPS`` (JSON settings, no secrets) and where each secret is
from ``APP_SECRETS``; they read the secrets themselves on a container's first invocation
(functions/app_secrets.py). The template never holds a secret, and holds no dynamic reference for one
either: CloudFormation allows 60 per template, and the references used to be repeated in all eight
functions, so 8 apps could not deploy (#14 defect 3). An app without ``secret_arn`` gets a generated
secret. Each function's role may read exactly the app secrets (``secretsmanager:GetSecretValue``).

Consequences (docs/deploy.md): a changed secret reaches the functions when their containers are replaced
(any deploy of a function does that; ``-c apps_revision=N`` forces one); Lambda's 4 KB environment limit
caps the number of apps (about 30 with a few settings each).

SSM: a standard SecureString parameter has no monthly charge where a secret costs $0.40 (docs/cost.md), but
CloudFormation cannot create SecureString parameters, so the team creates them (docs/deploy.md) and the apps
file names them. The functions may call ``ssm:GetParameters`` on exactly those; Parameter Store's AWS managed
key (``aws/ssm``) lets every principal of the account decrypt
(https://docs.aws.amazon.com/systems-manager/latest/userguide/ps-restrict-decryption.html), a customer-managed
key needs ``kms:Decrypt`` granted by the team.
"""

from __future__ import annotations

import hashlib
import json
import shlex
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from cdk.config import AppEntry

# Lambda's limit for all variables of a function together.
LAMBDA_ENVIRONMENT_LIMIT = 4096
# Room left for the other variables (table, queue, endpoints, Powertools).
OTHER_VARIABLES_BUDGET = 1024
# The part of a generated secret's ARN after "...:secret:" (CloudFormation's name plus AWS's 6-character
# suffix): counted at this length when the environment's size is estimated.
MAX_SECRET_REFERENCE = 80
SECRETS_MANAGER = "secretsmanager"
SSM = "ssm"
# Generated secrets: long, and without the characters that would need escaping inside a JSON string.
SECRET_LENGTH = 40


class AppSecrets(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, apps: tuple[AppEntry, ...]) -> None:
        super().__init__(scope, construct_id)
        self.apps = apps
        # config.load_apps makes sure it is every app or none.
        self.source = SSM if apps and all(entry.secret_parameter for entry in apps) else SECRETS_MANAGER
        self.secrets: dict[str, secretsmanager.ISecret] = {}
        for entry in apps:
            if self.source == SSM:
                continue
            construct_name = f"App{app_identifier(entry.app_id)}Secret"
            if entry.secret_arn:
                secret = secretsmanager.Secret.from_secret_complete_arn(self, construct_name, entry.secret_arn)
            else:
                secret = secretsmanager.Secret(
                    self,
                    construct_name,
                    description=f"sockless app {entry.app_id}: the Pusher app secret (key {entry.key})",
                    generate_secret_string=secretsmanager.SecretStringGenerator(
                        password_length=SECRET_LENGTH, exclude_punctuation=True, include_space=False
                    ),
                    # Deleting it would break every backend that signs with it: a teardown keeps it.
                    removal_policy=cdk.RemovalPolicy.RETAIN,
                )
            self.secrets[entry.app_id] = secret

    def _reference(self, entry: AppEntry) -> str:
        """Where ``entry``'s secret is: its SSM parameter's name, or the rest of its ARN after the stack's own
        ``arn_prefix`` (a generated secret), or the whole ARN of an imported one; ``#key`` for a JSON secret."""
        if entry.secret_parameter:
            reference = entry.secret_parameter
        else:
            # arn:aws:secretsmanager:region:account:secret:NAME-xxxxxx -> NAME-xxxxxx (a name holds no ':').
            generated = cdk.Fn.select(6, cdk.Fn.split(":", self.secrets[entry.app_id].secret_arn))
            reference = entry.secret_arn or generated
        return f"{reference}#{entry.secret_json_key}" if entry.secret_json_key else reference

    def apps_json(self) -> str:
        """``SOCKLESS_APPS``: every app's settings, without its secret.

        Raises ``ValueError`` when the apps and their secret references would exceed Lambda's environment
        limit (counted with the longest reference a generated secret can have)."""
        settings = [dict(entry.settings) for entry in self.apps]
        references = {
            entry.app_id: (entry.secret_parameter or entry.secret_arn or "x" * MAX_SECRET_REFERENCE)
            + (f"#{entry.secret_json_key}" * bool(entry.secret_json_key))
            for entry in self.apps
        }
        estimate = len(json.dumps(settings, separators=(",", ":"))) + len(json.dumps(references, separators=(",", ":")))
        if estimate > LAMBDA_ENVIRONMENT_LIMIT - OTHER_VARIABLES_BUDGET:
            raise ValueError(
                f"{len(self.apps)} apps do not fit in Lambda's 4 KB environment (about {estimate} bytes); "
                "split them across deployments"
            )
        return cdk.Stack.of(self).to_json_string(settings)

    def secrets_json(self) -> str:
        """``APP_SECRETS``: where each app's secret is (functions/app_secrets.py reads it)."""
        stack = cdk.Stack.of(self)
        prefix = f"arn:{stack.partition}:secretsmanager:{stack.region}:{stack.account}:secret:"
        spec: dict[str, Any] = {"source": self.source}
        if self.source == SECRETS_MANAGER:
            spec["arn_prefix"] = prefix
        spec["apps"] = {entry.app_id: self._reference(entry) for entry in self.apps}
        return stack.to_json_string(spec)

    def grant_read(self, grantee: iam.IGrantable) -> None:
        """``secretsmanager:GetSecretValue`` on exactly the app secrets, or ``ssm:GetParameters`` on exactly their
        parameters (a secret or parameter encrypted with a customer-managed KMS key also needs ``kms:Decrypt``
        on that key: docs/deploy.md)."""
        if self.source == SSM:
            stack = cdk.Stack.of(self)
            arns = sorted(
                {
                    f"arn:{stack.partition}:ssm:{stack.region}:{stack.account}:parameter/"
                    + str(entry.secret_parameter).lstrip("/")
                    for entry in self.apps
                }
            )
            iam.Grant.add_to_principal(grantee=grantee, actions=["ssm:GetParameters"], resource_arns=arns)
            return
        arns = sorted({secret.secret_arn for secret in self.secrets.values()}, key=str)
        iam.Grant.add_to_principal(grantee=grantee, actions=["secretsmanager:GetSecretValue"], resource_arns=arns)

    def location(self, app_id: str) -> str:
        """Where app ``app_id``'s secret is: its SSM parameter's name, or its secret's ARN."""
        entry = next(entry for entry in self.apps if entry.app_id == app_id)
        return entry.secret_parameter or self.secrets[app_id].secret_arn

    def read_command(self, app_id: str) -> str:
        """The AWS CLI command that prints app ``app_id``'s secret (the value never appears in the template); for a
        JSON secret (``secret_json_key``) its member, picked out by the Python the deploying machine has."""
        where = self.location(app_id)
        if self.source == SSM:
            command = f"aws ssm get-parameter --with-decryption --name {where} --query Parameter.Value --output text"
        else:
            command = f"aws secretsmanager get-secret-value --secret-id {where} --query SecretString --output text"
        key = next(entry for entry in self.apps if entry.app_id == app_id).secret_json_key
        if key:
            pick = f"import json, sys; print(json.load(sys.stdin)[{json.dumps(key)}])"
            command += f" | python3 -c {shlex.quote(pick)}"
        return command


def app_identifier(app_id: str) -> str:
    """A construct-id-safe form of an app id, stable across deploys and distinct for distinct ids."""
    readable = "".join(ch if ch.isalnum() else "_" for ch in app_id)
    return f"{readable}{hashlib.sha256(app_id.encode()).hexdigest()[:6]}" if readable != app_id else readable
