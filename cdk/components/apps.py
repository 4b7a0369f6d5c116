"""App definitions for the handlers: the apps file's settings, with each secret kept in Secrets Manager.

The handlers read their apps from ``SOCKLESS_APPS`` (JSON) and nothing else. The template must never hold
a secret, so each app's ``secret`` in that JSON is a CloudFormation dynamic reference
(``{{resolve:secretsmanager:...}}``) that CloudFormation resolves while it deploys the function: the value
exists only in Secrets Manager and in the function's (KMS-encrypted) configuration. An app without
``secret_arn`` gets a generated secret. SSM SecureString is not offered: CloudFormation cannot resolve
``ssm-secure`` references in Lambda environment variables.

Consequences (docs/deploy.md): changing a secret's value takes effect at the next ``cdk deploy``; Lambda's
4 KB environment limit caps the number of apps at a few dozen.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from cdk.config import AppEntry

# Lambda's limit for all variables of a function together.
LAMBDA_ENVIRONMENT_LIMIT = 4096
# Room left for the other variables (table, queue, endpoints, Powertools), and the longest secret assumed.
OTHER_VARIABLES_BUDGET = 1024
MAX_SECRET_LENGTH = 128
# Generated secrets: long, and without the characters that would need escaping inside a JSON string.
SECRET_LENGTH = 40


class AppSecrets(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, apps: tuple[AppEntry, ...]) -> None:
        super().__init__(scope, construct_id)
        self.apps = apps
        self.secrets: dict[str, secretsmanager.ISecret] = {}
        for entry in apps:
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

    def _secret_value(self, entry: AppEntry) -> str:
        secret = self.secrets[entry.app_id]
        if entry.secret_json_key:
            return secret.secret_value_from_json(entry.secret_json_key).unsafe_unwrap()
        return secret.secret_value.unsafe_unwrap()

    def apps_json(self) -> str:
        """``SOCKLESS_APPS``: every app's settings with its secret as a deploy-time reference.

        Raises ``ValueError`` when the variable would exceed Lambda's environment limit (the resolved
        secrets are shorter than the references, so the check errs on the safe side).
        """
        longest = [{**entry.settings, "secret": "x" * MAX_SECRET_LENGTH} for entry in self.apps]
        estimate = len(json.dumps(longest, separators=(",", ":")))
        if estimate > LAMBDA_ENVIRONMENT_LIMIT - OTHER_VARIABLES_BUDGET:
            raise ValueError(
                f"{len(self.apps)} apps do not fit in Lambda's 4 KB environment (about {estimate} bytes); "
                "split them across deployments"
            )
        apps: list[dict[str, Any]] = [{**entry.settings, "secret": self._secret_value(entry)} for entry in self.apps]
        return cdk.Stack.of(self).to_json_string(apps)


def app_identifier(app_id: str) -> str:
    """A construct-id-safe form of an app id, stable across deploys and distinct for distinct ids."""
    readable = "".join(ch if ch.isalnum() else "_" for ch in app_id)
    return f"{readable}{hashlib.sha256(app_id.encode()).hexdigest()[:6]}" if readable != app_id else readable
